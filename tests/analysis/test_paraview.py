"""Real ParaView (pvbatch) opens the files `python -m analysis vtk` writes and draws a bowl, not a needle.

Slow, and skipped where pvbatch is not installed (Debian: `apt-get install paraview xvfb`). Debian's
ParaView has no headless OpenGL (`pvbatch --force-offscreen-rendering` aborts), so the test runs it
under `xvfb-run -a`; without xvfb-run it needs a display.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from analysis.cli import main
from tests.analysis.conftest import demo_like_loss

pytestmark = pytest.mark.slow

# Runs inside pvbatch's own Python: paraview.simple and the standard library only.
# What a user gets from File > Open + Apply, coloured by one array, seen from an elevated oblique camera.
# A job's "overlays" (e.g. the trajectory's polyline) are opened into the same view in solid red, 3 px wide;
# "array": null leaves the main file in its solid default colour, "hide": true makes it invisible.
PVBATCH_SCRIPT = r"""
import json, math, sys
from paraview.simple import ColorBy, CreateView, GetColorTransferFunction, OpenDataFile, Render, SaveScreenshot, Show

for job in json.load(open(sys.argv[1])):
    reader = OpenDataFile(job["file"])
    view = CreateView("RenderView")
    view.ViewSize = [800, 600]
    view.OrientationAxesVisibility = 0
    view.UseColorPaletteForBackground = 0
    view.Background = [1.0, 1.0, 1.0]
    display = Show(reader, view)
    if job["array"]:
        ColorBy(display, ("POINTS", job["array"]))
        display.RescaleTransferFunctionToDataRange(True, False)
        GetColorTransferFunction(job["array"]).ApplyPreset("Viridis (matplotlib)", True)
    if job.get("hide"):
        display.Opacity = 0.0  # invisible, yet still what the camera is fitted to
    for extra in job.get("overlays", []):
        overlay = Show(OpenDataFile(extra), view)
        ColorBy(overlay, None)
        overlay.AmbientColor = overlay.DiffuseColor = [1.0, 0.0, 0.0]
        overlay.LineWidth = 3.0
    x0, x1, y0, y1, z0, z1 = reader.GetDataInformation().GetBounds()
    centre = [(x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2]
    elev, azim = math.radians(30.0), math.radians(-60.0)
    view.CameraFocalPoint = centre
    view.CameraPosition = [centre[0] + math.cos(elev) * math.cos(azim),
                           centre[1] + math.cos(elev) * math.sin(azim), centre[2] + math.sin(elev)]
    view.CameraViewUp = [0.0, 0.0, 1.0]
    view.ResetCamera()
    Render(view)
    SaveScreenshot(job["png"], view, ImageResolution=[800, 600])
    print("rendered", job["png"], flush=True)
"""


def pvbatch_command() -> list[str]:
    """How to start pvbatch here: under xvfb-run when there is one, else on the current display."""
    pvbatch = shutil.which("pvbatch")
    if pvbatch is None:
        pytest.skip("pvbatch is not installed (Debian: apt-get install paraview xvfb)")
    xvfb_run = shutil.which("xvfb-run")
    if xvfb_run is not None:
        return [xvfb_run, "-a", pvbatch]
    if os.environ.get("DISPLAY"):
        return [pvbatch]
    pytest.skip("pvbatch needs xvfb-run (Debian: apt-get install xvfb) or a display")


def render(jobs: list[dict], tmp_path: Path) -> None:
    """Render every job {file, png, array[, overlays]} in one pvbatch run (ParaView's start-up is most of the time)."""
    script, job_file = tmp_path / "screenshot.py", tmp_path / "jobs.json"
    script.write_text(PVBATCH_SCRIPT)
    job_file.write_text(json.dumps(jobs))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [*pvbatch_command(), str(script), str(job_file)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    for job in jobs:
        assert Path(job["png"]).is_file(), result.stdout[-2000:] + result.stderr[-2000:]


def drawn(path: str) -> tuple[np.ndarray, np.ndarray]:
    """(rgb image, mask of pixels that are not the white background)."""
    rgb = mpimg.imread(path)[..., :3].astype(np.float64)
    return rgb, (rgb < 0.97).any(axis=-1)


def aspect(mask: np.ndarray) -> float:
    """Width over height of the drawn pixels' bounding box."""
    rows, cols = np.nonzero(mask)
    return (np.ptp(cols) + 1) / (np.ptp(rows) + 1)


@pytest.fixture
def demo_like_file(make_surface_file):
    """Like the demo's scan: 25 x 25 points on [-1, 1]^2, train loss from 0.003 to 39, a pending corner."""
    x, loss = demo_like_loss()
    y = x
    acc = 100.0 * np.exp(-loss)
    done = np.ones_like(loss, dtype=bool)
    done[-6:, :6] = False
    metrics = {"train_loss": loss, "train_acc": acc, "test_loss": 1.1 * loss, "test_acc": acc}
    for values in metrics.values():
        values[~done] = np.nan
    return make_surface_file("demo.h5", x, y, metrics, done)


def kinks(path: str) -> float:
    """Fraction of drawn pixels where brightness bends sharply (second difference > 0.02): facet edges."""
    rgb, mask = drawn(path)
    lum = rgb.mean(axis=-1)
    inner = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
    across = np.abs(lum[1:-1, :-2] - 2 * lum[1:-1, 1:-1] + lum[1:-1, 2:])
    down = np.abs(lum[:-2, 1:-1] - 2 * lum[1:-1, 1:-1] + lum[2:, 1:-1])
    return float((np.maximum(across, down)[inner] > 0.02).mean())


def without_normals(path: str, out: Path) -> str:
    """A copy of the .vtp without its Normals array (what ParaView got before the export wrote them)."""
    from vtkmodules.vtkIOXML import vtkXMLPolyDataReader, vtkXMLPolyDataWriter

    reader = vtkXMLPolyDataReader()
    reader.SetFileName(path)
    reader.Update()
    data = reader.GetOutput()
    data.GetPointData().RemoveArray("Normals")
    writer = vtkXMLPolyDataWriter()
    writer.SetFileName(str(out))
    writer.SetInputData(data)
    assert writer.Write() == 1
    return str(out)


def _vtk(capsys, *argv: str) -> list[str]:
    assert main(["vtk", *argv]) == 0
    return [line.removeprefix("wrote: ") for line in capsys.readouterr().out.splitlines() if line.startswith("wrote: ")]


def test_pvbatch_draws_a_bowl_coloured_by_height_and_done(demo_like_file, tmp_path, capsys):
    out = str(tmp_path / "vtk")
    vts, vtp = _vtk(capsys, str(demo_like_file), "--out", out, "--zmax", "10", "--log")
    (raw_vtp,) = _vtk(capsys, str(demo_like_file), "--out", out, "--zscale", "1", "--only", "vtp")
    (flat_vts,) = _vtk(capsys, str(demo_like_file), "--out", out, "--flat", "--only", "vts")
    jobs = [
        {"file": vtp, "png": str(tmp_path / "vtp.png"), "array": "height"},
        {"file": vts, "png": str(tmp_path / "vts.png"), "array": "height"},
        {"file": raw_vtp, "png": str(tmp_path / "raw.png"), "array": "height"},
        {"file": flat_vts, "png": str(tmp_path / "done.png"), "array": "done"},
        {"file": without_normals(vtp, tmp_path / "faceted.vtp"), "png": str(tmp_path / "faceted.png"), "array": "height"},
    ]
    render(jobs, tmp_path)

    for name in ("vtp", "vts"):
        rgb, mask = drawn(str(tmp_path / f"{name}.png"))
        assert mask.mean() > 0.05, f"{name}: only {mask.mean():.1%} of the screenshot is drawn"
        colours = np.unique(np.round(rgb[mask] * 255).astype(np.uint8), axis=0)
        assert len(colours) > 200, f"{name}: {len(colours)} distinct colours: not a shaded, colour-mapped surface"
        assert aspect(mask) > 1.2, f"{name}: drawn region {aspect(mask):.2f} wide per unit high: not a bowl"
    # Smooth shading: the written normals leave far fewer facet edges than the same surface without them.
    assert kinks(str(tmp_path / "vtp.png")) < 0.5 * kinks(str(tmp_path / "faceted.png"))
    # The same surface with z = raw loss (what the export wrote before zscale) is a needle on screen.
    assert aspect(drawn(str(tmp_path / "raw.png"))[1]) < 0.5

    # Flat grid coloured by done: both ends of Viridis show, done (yellow) and pending (purple).
    rgb, mask = drawn(str(tmp_path / "done.png"))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    yellow = mask & (r > 0.6) & (g > 0.6) & (b < 0.4)
    purple = mask & (b > g + 0.1) & (r > g + 0.05)
    assert yellow.mean() > 0.02 and purple.mean() > 0.002, (yellow.mean(), purple.mean())
    assert yellow.sum() > 5 * purple.sum()  # 36 of 625 points are pending


def test_pvbatch_shows_the_trajectory_polyline_on_top_of_the_surface(tmp_path, capsys):
    from tests.analysis.test_trajectory_figures import write_trajectory_file

    surface_file = write_trajectory_file(tmp_path / "pca.h5")
    out = str(tmp_path / "vtk")
    # Linear height: the bowl is shallow enough that the oblique camera sees its whole floor (with --log the
    # funnel's near rim rightly hides the path's end), so every part of the path must show.
    vts, vtp, path = _vtk(capsys, str(surface_file), "--out", out)
    assert path.endswith("_trajectory.vtp")
    jobs = [
        {"file": vtp, "png": str(tmp_path / "both.png"), "array": "height", "overlays": [path]},
        {"file": vts, "png": str(tmp_path / "grid.png"), "array": "height", "overlays": [path]},
        {"file": vtp, "png": str(tmp_path / "surface.png"), "array": "height"},
        # The path alone, seen from the same camera (the view fits the surface, drawn white on white).
        {"file": vtp, "png": str(tmp_path / "alone.png"), "array": None, "overlays": [path], "hide": True},
    ]
    render(jobs, tmp_path)

    def red(png: str) -> np.ndarray:
        rgb = mpimg.imread(png)[..., :3]
        return (rgb[..., 0] > 0.8) & (rgb[..., 1] < 0.3) & (rgb[..., 2] < 0.3)

    assert not red(str(tmp_path / "surface.png")).any()  # viridis has no red: red pixels are the path
    alone = red(str(tmp_path / "alone.png")).sum()
    assert alone > 300, alone
    for name in ("both", "grid"):
        shown = red(str(tmp_path / f"{name}.png")).sum()
        # On top: nearly all of the path is seen over the surface (none of it sinks into the bowl).
        assert shown > 0.9 * alone, (name, shown, alone)
