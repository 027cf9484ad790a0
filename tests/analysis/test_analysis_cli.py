"""The `python -m analysis` command line: files written and announced, errors, help, import purity."""

from __future__ import annotations

import os
import pkgutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import analysis
from analysis.cli import main

ROOT = Path(__file__).resolve().parents[2]


def _run(argv, capsys) -> tuple[int, list[Path], str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    wrote = [Path(line.removeprefix("wrote: ")) for line in captured.out.splitlines() if line.startswith("wrote: ")]
    return rc, wrote, captured.err


def test_contour_writes_three_non_blank_pngs_next_to_the_input(holey_file, capsys, image_checks):
    colourful_fraction, pixel_std = image_checks
    rc, wrote, _ = _run(["contour", holey_file, "--dpi", "60"], capsys)
    assert rc == 0
    d = holey_file.parent
    assert wrote == [d / "holey_train_loss_contour.png", d / "holey_train_loss_contourf.png", d / "holey_train_loss_heatmap.png"]
    for png in wrote:
        assert pixel_std(png) > 0.05, png
    assert colourful_fraction(wrote[1]) > 0.2 and colourful_fraction(wrote[2]) > 0.2  # filled views


def test_contour_kind_metric_log_format_and_out_dir(bowl_file, tmp_path, capsys):
    out = tmp_path / "figs"
    rc, wrote, _ = _run(
        ["contour", bowl_file, "--kind", "heatmap", "--metric", "test_acc", "--log", "--format", "pdf", "--out", out], capsys
    )
    assert rc == 0 and wrote == [out / "bowl_test_acc_heatmap_log.pdf"]
    assert wrote[0].read_bytes()[:5] == b"%PDF-"


def test_plot1d_on_1d_and_2d_files(line_file, bowl_file, capsys, image_checks):
    colourful_fraction, pixel_std = image_checks
    rc, wrote, _ = _run(["plot1d", line_file, "--log", "--dpi", "60"], capsys)
    assert rc == 0 and wrote == [line_file.parent / "line_plot1d_log.png"]
    assert pixel_std(wrote[0]) > 0.02 and colourful_fraction(wrote[0]) > 0.003

    rc, wrote, err = _run(["plot1d", bowl_file], capsys)
    assert rc == 2 and not wrote
    assert "bowl.h5 is a 2D surface" in err and "contour" in err and "--at-y" in err

    rc, wrote, _ = _run(["plot1d", bowl_file, "--at-y", "-0.2", "--dpi", "60"], capsys)
    assert rc == 0 and wrote == [bowl_file.parent / "bowl_plot1d_ym0.2.png"]


def test_surface3d_png_and_pdf_are_not_blank(holey_file, tmp_path, capsys, image_checks):
    colourful_fraction, pixel_std = image_checks
    rc, wrote, _ = _run(["surface3d", holey_file, "--out", tmp_path, "--format", "png", "--format", "pdf", "--dpi", "60"], capsys)
    assert rc == 0
    assert wrote == [tmp_path / "holey_train_loss_surface3d.png", tmp_path / "holey_train_loss_surface3d.pdf"]
    assert colourful_fraction(wrote[0]) > 0.1 and pixel_std(wrote[0]) > 0.05
    assert wrote[1].read_bytes()[:5] == b"%PDF-"


def test_compare_writes_one_png_next_to_the_first_file(bowl_file, holey_file, tmp_path, capsys, image_checks):
    colourful_fraction, _ = image_checks
    rc, wrote, _ = _run(["compare", bowl_file, holey_file, "--labels", "clean,holey", "--dpi", "60"], capsys)
    assert rc == 0 and wrote == [bowl_file.parent / "bowl_vs_holey_train_loss_compare.png"]
    assert colourful_fraction(wrote[0]) > 0.2
    rc, wrote, _ = _run(["compare", bowl_file, holey_file, "--name", "mine", "--out", tmp_path / "c"], capsys)
    assert rc == 0 and wrote == [tmp_path / "c" / "mine.png"]
    rc, _, err = _run(["compare", bowl_file, holey_file, "--labels", "only-one"], capsys)
    assert rc == 2 and "1 labels for 2 files" in err


def test_not_a_surface_file_exits_2_naming_the_file(tmp_path, capsys):
    import h5py

    path = tmp_path / "model.h5"
    with h5py.File(path, "w") as f:
        f["weights"] = np.zeros(3)
    for command in ("contour", "plot1d", "surface3d", "vtk", "render"):
        rc, wrote, err = _run([command, path], capsys)
        assert rc == 2 and not wrote, command
        assert "model.h5 is not a surface file" in err and "weights" in err, command


def test_missing_metric_and_empty_surface_exit_2(bowl_file, make_surface_file, bowl_spec, capsys):
    rc, _, err = _run(["contour", bowl_file, "--metric", "val_loss"], capsys)
    assert rc == 2 and "no dataset 'val_loss'" in err and "train_loss" in err and "test_acc" in err
    empty = make_surface_file(
        "empty.h5", bowl_spec.x, bowl_spec.y, {"train_loss": np.full((41, 51), np.nan)}, np.zeros((41, 51), bool)
    )
    for command in ("contour", "surface3d", "vtk", "render"):
        rc, wrote, err = _run([command, empty], capsys)
        assert rc == 2 and not wrote, command
        assert "empty.h5" in err and "no computed, finite points" in err, command


def test_1d_file_to_2d_commands_suggests_plot1d(line_file, capsys):
    for command in ("contour", "surface3d"):
        rc, _, err = _run([command, line_file], capsys)
        assert rc == 2 and "line.h5 is a 1D surface" in err and "plot1d" in err, command


@pytest.mark.parametrize(
    "command, options",
    [
        ("contour", ["--kind", "--levels", "--vmin", "--vmax", "--log", "--metric", "--out"]),
        ("plot1d", ["--log", "--at-y", "--at-x", "--out"]),
        ("surface3d", ["--zmax", "--log", "--elev", "--format", "--out"]),
        ("vtk", ["--zmax", "--log", "--flat", "--cells", "--only", "--out"]),
        ("render", ["--contours", "--view", "--zscale", "--cmap", "--size", "--out"]),
        ("compare", ["--labels", "--kind", "--levels", "--name", "--out"]),
    ],
)
def test_every_command_has_help_listing_its_options(command, options, capsys):
    assert main([command, "--help"]) == 0
    text = capsys.readouterr().out
    for option in options:
        assert option in text, option


def test_usage_errors_return_2(capsys):
    assert main([]) == 2
    assert main(["contour"]) == 2  # no file
    assert main(["nosuch"]) == 2
    assert "invalid choice" in capsys.readouterr().err


def test_python_dash_m_analysis_runs_and_reports(bowl_file, tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "MPLBACKEND": "Agg"}
    done = subprocess.run(
        [
            sys.executable, "-m", "analysis", "contour", str(bowl_file), "--kind", "contourf", "--out", str(tmp_path),
            "--dpi", "40",
        ],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"wrote: {tmp_path / 'bowl_train_loss_contourf.png'}"]
    bad = subprocess.run(
        [sys.executable, "-m", "analysis", "vtk", str(tmp_path / "nothere.h5")],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=120,
    )
    assert bad.returncode == 2 and "nothere.h5: no such file" in bad.stderr


def test_importing_every_analysis_module_pulls_in_neither_torch_nor_effrep_hpc():
    modules = sorted(
        f"analysis.{m.name}" for m in pkgutil.iter_modules(analysis.__path__) if m.name != "__main__"
    )
    assert {"analysis.cli", "analysis.surface", "analysis.vtkexport", "analysis.render"} <= set(modules)
    code = (
        f"import analysis, {', '.join(modules)}; import sys; "
        "assert 'torch' not in sys.modules and not any(m.startswith('effrep_hpc') for m in sys.modules), 'impure'; "
        "assert 'pyvista' not in sys.modules, 'pyvista imported eagerly'"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
