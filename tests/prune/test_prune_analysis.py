"""The torch-free sensitivity figures: files written for each kind, errors for wrong files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from effrep_hpc.store.sensitivity import SensitivityWriter

ROOT = Path(__file__).resolve().parents[2]


def _file(path: Path, criteria: list[str], layers: list[str]) -> Path:
    from test_prune_store import make_spec

    n = len(layers)
    spec = make_spec(
        layers=layers, criteria=criteria, layer_ids=list(range(1, n + 1)), widths=[8] * n,
        kept=np.tile([7, 5, 4, 1], (n, 1)), flops_fraction=np.full((n, 4), 0.9), filter_l1=np.ones((n, 8)),
    )
    with SensitivityWriter(path, spec) as w:
        for flat in range(spec.num_cells - 1):  # one cell pending: a gap, not an error
            w.write(flat, 90.0 - flat, 0.5)
    return path


def test_figures_2_and_8_are_written_per_criterion(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.cli import main

    src = _file(tmp_path / "scan.h5", ["l1", "random", "largest"], ["features.0", "features.1"])
    assert main(["sensitivity", str(src), "--out", str(tmp_path / "fig")]) == 0
    written = [Path(line.split(": ", 1)[1]) for line in capsys.readouterr().out.splitlines()]
    names = sorted(p.name for p in written)
    assert names == sorted(
        ["scan_layers_l1.png", "scan_layers_random.png", "scan_layers_largest.png", "scan_criteria.png", "scan_filters.png"]
    )
    assert all(p.stat().st_size > 5000 for p in written)


def test_resnet_layers_are_split_by_stage_and_one_criterion_skips_figure_8(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.cli import main
    from analysis.sensitivity import load_sensitivity

    src = _file(tmp_path / "r.h5", ["l1"], ["layer1.0.conv1", "layer1.1.conv1", "layer2.0.conv1"])
    assert [s for s, _ in load_sensitivity(src).stages()] == ["layer1", "layer2"]
    assert main(["sensitivity", str(src), "--kind", "layers", "--format", "pdf"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote: {tmp_path / 'r_layers_l1.pdf'}"
    assert main(["sensitivity", str(src), "--kind", "criteria"]) == 2
    assert "holds one criterion" in capsys.readouterr().err


def test_a_surface_file_is_refused_with_a_hint(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    import h5py

    from analysis.cli import main

    path = tmp_path / "surface.h5"
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "surface"
    assert main(["sensitivity", str(path)]) == 2
    assert "not a sensitivity file (kind='surface')" in capsys.readouterr().err


def test_analysis_sensitivity_imports_neither_torch_nor_effrep() -> None:
    code = "import sys, analysis.sensitivity; print('torch' in sys.modules, 'effrep_hpc' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
