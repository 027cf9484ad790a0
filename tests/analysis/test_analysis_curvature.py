"""`python -m analysis convexity` and `spectrum`: the convexity map of an eigenvalue map and the spectral density."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from matplotlib.collections import QuadMesh

from analysis.cli import main
from analysis.curvature import convexity_figure, spectrum_figure
from analysis.surface import load_surface
from tests.analysis.conftest import write_surface_file


def _eigen_map(path: Path, *, pending: bool = False) -> Path:
    x, y = np.linspace(-1, 1, 9), np.linspace(-1, 1, 7)
    X, Y = np.meshgrid(x, y)
    top = 10.0 + 5.0 * (X**2 + Y**2)
    low = -np.abs(X * Y) * 4.0 + 0.2  # positive (convex) near the axes, negative in the corners
    done = np.ones(top.shape, bool)
    if pending:
        done[-2:, :] = False
    metrics = {"max_eig": top, "min_eig": low, "eig_ratio": np.abs(low / top), "hvps": np.full(top.shape, 30.0)}
    for values in metrics.values():
        values[~done] = np.nan
    return write_surface_file(path, x, y, metrics, done=done)


def test_convexity_map_shows_the_ratio_on_a_fixed_scale_with_the_convex_share(tmp_path: Path) -> None:
    surface = load_surface(_eigen_map(tmp_path / "map.h5", pending=True))
    fig = convexity_figure(surface, vmax=0.5)
    mesh = [c for c in fig.axes[0].collections if isinstance(c, QuadMesh)][0]
    assert mesh.norm.vmin == 0.0 and mesh.norm.vmax == 0.5
    shown = np.ma.asarray(mesh.get_array())
    ratio = surface.values("eig_ratio")
    assert shown.mask.sum() == np.isnan(ratio).sum()  # pending points grey, not a colour
    share = np.mean(ratio[np.isfinite(ratio)] < 0.1)
    assert f"{share:.0%} of {np.isfinite(ratio).sum()} points below 0.1" in fig.axes[0].get_title()


def test_cli_writes_both_figures_and_refuses_a_result_without_density(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = _eigen_map(tmp_path / "map.h5")
    assert main(["convexity", str(path), "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig" / "map_convexity.png").stat().st_size > 0
    grid = np.linspace(-1, 12, 200)
    density = np.exp(-0.5 * grid**2) / np.sqrt(2 * np.pi)
    result = {"top_eigenvalues": [11.0, 9.5], "min_eigenvalue": -0.8, "trace": 40.0, "trace_stderr": 1.5, "hvps": 100,
              "density": {"grid": grid.tolist(), "values": density.tolist(), "sigma": 0.1}}
    (tmp_path / "h.json").write_text(json.dumps(result))
    assert main(["spectrum", str(tmp_path / "h.json")]) == 0
    assert (tmp_path / "h_spectrum.png").stat().st_size > 0
    fig = spectrum_figure(result, "h")
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    marked = sorted(line.get_xdata()[0] for line in ax.lines[1:])
    assert marked == pytest.approx(sorted([11.0, 9.5, -0.8]))
    result["density"] = None
    (tmp_path / "bare.json").write_text(json.dumps(result))
    capsys.readouterr()
    assert main(["spectrum", str(tmp_path / "bare.json")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "density_probes" in err[0]
    assert main(["convexity", str(path), "--vmax", "0"]) == 2
