"""A study's outputs (`python -m analysis study`): the figure grids and the table of test error beside sharpness.

The study directory is built here by hand from the documented layouts: study.json as the study runner keeps it
(/tmp contract: kind "study", schema_version 1, runs with nodes and outputs), surface files per
docs/surface-format.md (conftest's h5py writer), `effrep hessian`'s JSON, and metrics.h5 as
effrep_hpc.store.curves lays it out (root attributes kind/fields, one preallocated NaN row per planned epoch,
a `done` flag per row). Expected values are computed here with numpy or by hand.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from matplotlib.collections import QuadMesh
from matplotlib.contour import ContourSet

from analysis.cli import main
from analysis.study import (
    contour_grid,
    convexity_grid,
    flat_width,
    line_overlay,
    load_study,
    panel_layout,
    study_table,
    trajectory_grid,
)
from tests.analysis.conftest import write_surface_file
from tests.analysis.test_trajectory_figures import write_trajectory_file

FIELDS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
PAPER_LEVELS = np.arange(0.1, 10.0 + 1e-9, 0.5)  # the landscape paper's 0.1:10:0.5


# --- writers for the files of a study --------------------------------------------------------------------


def write_metrics(path: Path, test_acc: list[float], planned: int) -> Path:
    """metrics.h5 as store/curves.py writes it: `planned` NaN rows, the first len(test_acc) written and done."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "metrics"
        f.attrs["schema_version"] = 1
        f.attrs["config"] = f"train: {{epochs: {planned}}}\n"
        f.attrs["fields"] = ",".join(FIELDS)
        for name in FIELDS:
            f.create_dataset(name, data=np.full(planned, np.nan))
        f.create_dataset("done", data=np.zeros(planned, dtype=bool))
        for epoch, acc in enumerate(test_acc):
            for name in FIELDS:
                f[name][epoch] = {"epoch": epoch, "test_acc": acc}.get(name, 0.5)
            f["done"][epoch] = True
    return path


def write_hessian(path: Path, top: float | None, trace: float | None) -> Path:
    """`effrep hessian`'s result file (non-finite values are stored as null)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"kind": "hessian_point", "top_eigenvalues": [top, None if top is None else top / 2],
                                "min_eigenvalue": -0.1, "trace": trace, "trace_stderr": 0.5, "hvps": 100}))
    return path


def write_scan1d(path: Path, x: np.ndarray, loss: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_surface_file(path, x, None, {"train_loss": loss, "train_acc": 100.0 * np.exp(-loss)})


def write_scan2d(path: Path, scale: float, n: int = 21) -> Path:
    """A bowl 0.1 + scale * (x^2 + y^2) on [-1, 1]^2."""
    path.parent.mkdir(parents=True, exist_ok=True)
    x = np.linspace(-1.0, 1.0, n)
    X, Y = np.meshgrid(x, x)
    loss = 0.1 + scale * (X**2 + Y**2)
    return write_surface_file(path, x, x, {"train_loss": loss, "train_acc": 100.0 * np.exp(-loss)})


def write_eigmap(path: Path, ratio: np.ndarray, done: np.ndarray | None = None) -> Path:
    """An eigenvalue map (`effrep curvature`): eig_ratio and the eigenvalues it comes from."""
    path.parent.mkdir(parents=True, exist_ok=True)
    ny, nx = ratio.shape
    top = np.full(ratio.shape, 10.0)
    return write_surface_file(path, np.linspace(-1, 1, nx), np.linspace(-1, 1, ny),
                              {"max_eig": top, "min_eig": -ratio * top, "eig_ratio": ratio}, done)


def write_manifest(root: Path, variants: list[dict], seeds: list[int], nodes: dict[tuple[str, int], dict],
                   pairs: list[dict] | None = None, **extra: object) -> Path:
    """study.json in the layout the study runner keeps."""
    runs = [{"variant": v, "seed": s, "dir": f"runs/{v}/seed{s}", "nodes": n} for (v, s), n in nodes.items()]
    data = {"kind": "study", "schema_version": 1, "name": "toy", "config": "study: {}\n", "variants": variants,
            "seeds": seeds, "runs": runs, "pairs": pairs or [], "figures": {}, "table": {}} | extra
    root.mkdir(parents=True, exist_ok=True)
    (root / "study.json").write_text(json.dumps(data))
    return root / "study.json"


def done(**outputs: str) -> dict:
    return {"status": "done", "outputs": outputs}


# Per variant and seed: final test accuracy, top eigenvalue, trace, and the 1D curve's curvature.
TEST_ACC = {("narrow", 0): 91.25, ("narrow", 1): 90.5, ("narrow", 2): 92.0,
            ("wide", 0): 95.5, ("wide", 1): 96.25, ("wide", 2): 95.0}
TOP = {("narrow", 0): 41.0, ("narrow", 1): 37.5, ("narrow", 2): 44.25, ("wide", 0): 12.0, ("wide", 1): 13.5, ("wide", 2): 11.0}
TRACE = {key: 10.0 * value + 3.0 for key, value in TOP.items()}
CURVATURE = {("narrow", 0): 4.0, ("narrow", 1): 5.0, ("narrow", 2): 4.5, ("wide", 0): 0.8, ("wide", 1): 1.0, ("wide", 2): 0.9}
X1D = np.linspace(-1.0, 1.0, 41)


@pytest.fixture
def study_dir(tmp_path: Path) -> Path:
    """Two variants x three seeds, every measurement done; the wide variant's convexity map at seed 0 hand-built."""
    root = tmp_path / "study"
    nodes = {}
    for (v, s), acc in TEST_ACC.items():
        d = f"runs/{v}/seed{s}"
        # 8 of 12 planned epochs done: "last" is the last row marked done; rows after it are NaN
        write_metrics(root / d / "metrics.h5", [acc - 5.0, acc - 1.0] + [acc - 0.5] * 5 + [acc], planned=12)
        write_hessian(root / d / "hessian.json", TOP[(v, s)], TRACE[(v, s)])
        write_scan1d(root / d / "scan1d.h5", X1D, 0.2 + CURVATURE[(v, s)] * X1D**2)
        write_scan2d(root / d / "scan2d.h5", 12.0 if v == "narrow" else 2.0)
        ratio = np.full((5, 6), 0.3)
        write_eigmap(root / d / "curvature.h5", ratio)
        nodes[(v, s)] = {"train": done(checkpoint=f"{d}/checkpoint.pt", metrics=f"{d}/metrics.h5"),
                         "scan1d": done(surface=f"{d}/scan1d.h5"), "scan2d": done(surface=f"{d}/scan2d.h5"),
                         "hessian": done(hessian=f"{d}/hessian.json"), "curvature": done(surface=f"{d}/curvature.h5")}
    variants = [{"name": "narrow", "overrides": {"model.width": 4}, "group": {"width": 4}},
                {"name": "wide", "overrides": {"model.width": 16}, "group": {"width": 16}}]
    write_manifest(root, variants, [0, 1, 2], nodes)
    return root


def row_of(rows, name):
    return next(r for r in rows if r.variant.name == name)


# --- the 1D width ------------------------------------------------------------------------------------------


def test_width_of_a_parabola_meets_its_crossing_points() -> None:
    # 2 (x - 0.25)^2 + 0.5 reaches min + 0.1 at x = 0.25 -+ sqrt(0.05); on a fine grid linear interpolation is exact
    # to ~h^2
    x = np.linspace(-1.0, 1.0, 2001)
    width = flat_width(x, 2.0 * (x - 0.25) ** 2 + 0.5)
    assert width is not None and width.bounded
    assert width.left == pytest.approx(0.25 - np.sqrt(0.05), abs=1e-6)
    assert width.right == pytest.approx(0.25 + np.sqrt(0.05), abs=1e-6)
    assert width.value == pytest.approx(2.0 * np.sqrt(0.05), abs=2e-6)


def test_width_interpolates_linearly_between_grid_points() -> None:
    # x^2 on a 0.25 grid: loss 0.0625 at 0.25 (<= 0.1), 0.25 at 0.5; by hand 0.25 + (0.1 - 0.0625) / 0.1875 * 0.25 = 0.3
    x = np.linspace(-1.0, 1.0, 9)
    width = flat_width(x, x**2)
    assert width is not None and width.bounded
    assert (width.left, width.right) == pytest.approx((-0.3, 0.3))
    # a V whose minimum is a grid point is linear between grid points, so the crossings are exact:
    # 0.5 + 0.3 |x - 0.25| = 0.6 at x = 0.25 -+ 1/3, both between points of the 0.05 grid
    x = np.linspace(-1.0, 1.0, 41)
    width = flat_width(x, 0.5 + 0.3 * np.abs(x - 0.25))
    assert (width.left, width.right) == pytest.approx((0.25 - 1 / 3, 0.25 + 1 / 3))
    # a point not computed is no part of the curve: without x = 0.5 the crossing is interpolated from 0.25 to 0.75
    x = np.linspace(-1.0, 1.0, 9)
    valid = np.ones(9, dtype=bool)
    valid[6] = False
    width = flat_width(x, x**2, valid)
    assert width.right == pytest.approx(0.25 + (0.1 - 0.0625) / (0.5625 - 0.0625) * 0.5)


def test_width_of_a_curve_that_stays_flat_to_the_edge_is_a_lower_bound() -> None:
    x = np.linspace(-1.0, 1.0, 41)
    width = flat_width(x, 0.05 * x**2)  # rises only 0.05 at the edges
    assert width is not None and not width.bounded and width.value == pytest.approx(2.0)
    width = flat_width(x, (x + 1.0) ** 2)  # minimum on the left edge: one crossing, one edge
    assert not width.bounded
    assert (width.left, width.right) == pytest.approx((-1.0, -1.0 + np.sqrt(0.1)), abs=2e-3)
    assert flat_width(x, np.full_like(x, np.nan)) is None


# --- the table ---------------------------------------------------------------------------------------------


def test_table_gives_mean_and_sample_std_over_seeds_as_numpy(study_dir: Path) -> None:
    rows = study_table(load_study(study_dir))
    for name in ("narrow", "wide"):
        row = row_of(rows, name)
        keys = [(name, s) for s in range(3)]
        expected = {
            "test_error": [100.0 - TEST_ACC[k] for k in keys],
            "top_eigenvalue": [TOP[k] for k in keys],
            "trace": [TRACE[k] for k in keys],
            # the 1D curve 0.2 + c x^2 is within 0.1 of its minimum for |x| <= sqrt(0.1 / c)
            "width": [2.0 * np.sqrt(0.1 / CURVATURE[k]) for k in keys],
        }
        for column, values in expected.items():
            stat = getattr(row, column)
            tol = 2e-3 if column == "width" else 1e-12  # the width: linear interpolation on the 0.05 grid
            assert stat.n == 3 and stat.seeds == [0, 1, 2]
            assert stat.mean == pytest.approx(np.mean(values), abs=tol), column
            assert stat.std == pytest.approx(np.std(values, ddof=1), abs=tol), column
    assert row_of(rows, "narrow").width.mean < row_of(rows, "wide").width.mean  # sharper curve, narrower basin


def test_convex_fraction_counts_computed_finite_points_only(study_dir: Path) -> None:
    # 5 x 6 map: 30 points; 4 pending (not done, value 0 that must not count), 2 done but NaN / inf
    ratio = np.full((5, 6), 0.4)
    ratio[0, :5] = 0.05  # 5 nearly convex
    ratio[2, 2] = 0.0999  # just below the threshold
    ratio[3, 3] = 0.1  # on it: not below
    ratio[4, 0], ratio[4, 1] = np.nan, np.inf
    done_mask = np.ones_like(ratio, dtype=bool)
    done_mask[1, :4] = False
    ratio[1, :4] = 0.0
    write_eigmap(study_dir / "runs/wide/seed0/curvature.h5", ratio, done_mask)
    row = row_of(study_table(load_study(study_dir)), "wide")
    # valid = 30 - 4 pending - 2 non-finite = 24; below 0.1: 5 + 1 = 6
    assert row.convex_fraction.values == pytest.approx([6 / 24, 0.0, 0.0])


def test_table_files_exist_and_agree(study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["study", str(study_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    wrote = [Path(line.removeprefix("wrote: ")) for line in printed.splitlines() if line.startswith("wrote: ")]
    assert {p.name for p in wrote} >= {"table.csv", "table.json", "table.md"}
    assert all(p.is_file() and p.stat().st_size > 0 for p in wrote)
    assert not (study_dir / "table.csv").exists()  # --out: the study directory is left alone
    table = json.loads((out / "table.json").read_text())
    lines = list(csv.DictReader((out / "table.csv").open()))
    md = (out / "table.md").read_text()
    assert md in printed  # the Markdown table is printed as written
    assert [line["variant"] for line in lines] == [r["variant"] for r in table["rows"]] == ["narrow", "wide"]
    for line, row in zip(lines, table["rows"]):
        values = [100.0 - TEST_ACC[(row["variant"], s)] for s in range(3)]
        for column in ("test_error", "top_eigenvalue", "trace", "width", "convex_fraction"):
            for key in ("mean", "std"):
                assert float(line[f"{column}_{key}"]) == row[column][key], (column, key)
            assert int(line[f"{column}_n"]) == row[column]["n"] == 3
        # four significant digits in CSV/JSON
        assert row["test_error"]["mean"] == float(f"{np.mean(values):.4g}")
        assert row["test_error"]["std"] == float(f"{np.std(values, ddof=1):.4g}")
    # table.md: the std to two significant digits, the mean to as many decimals (by hand from TEST_ACC:
    # narrow errors 8.75, 9.5, 8.0 -> 8.75 ± 0.75; wide 4.5, 3.75, 5.0 -> 4.4167 ± 0.6292)
    assert "| narrow | width=4 | 8.75 ± 0.75 (n=3) |" in md
    assert "| wide | width=16 | 4.42 ± 0.63 (n=3) |" in md


def test_missing_measurements_are_na_not_a_crash(study_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    manifest = json.loads((study_dir / "study.json").read_text())
    for run in manifest["runs"]:
        if run["variant"] == "wide":
            run["nodes"]["hessian"] = {"status": "failed", "error": "out of memory", "outputs": {}}
            run["nodes"]["scan1d"]["status"] = "pending"
            del run["nodes"]["scan2d"]
    (study_dir / "runs/narrow/seed1/curvature.h5").unlink()  # done in the manifest, but the file is gone
    manifest["variants"].append({"name": "extra", "overrides": {}, "group": {"width": 64}})  # never ran
    (study_dir / "study.json").write_text(json.dumps(manifest))
    out = tmp_path / "out"
    assert main(["study", str(study_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "curvature.h5 is missing" in printed
    table = {r["variant"]: r for r in json.loads((out / "table.json").read_text())["rows"]}
    assert table["wide"]["top_eigenvalue"] == {"mean": None, "std": None, "n": 0, "seeds": [], "values": []}
    assert table["wide"]["width"]["n"] == 0 and table["wide"]["test_error"]["n"] == 3
    assert table["narrow"]["convex_fraction"]["n"] == 2 and table["narrow"]["convex_fraction"]["seeds"] == [0, 2]
    assert all(table["extra"][c]["n"] == 0 for c in ("test_error", "top_eigenvalue", "trace", "width", "convex_fraction"))
    line = next(r for r in csv.DictReader((out / "table.csv").open()) if r["variant"] == "extra")
    assert line["test_error_mean"] == line["trace_std"] == "" and line["trace_n"] == "0"
    md_row = next(r for r in (out / "table.md").read_text().splitlines() if r.startswith("| extra |"))
    assert md_row.count("n/a") == 6
    # the 2D grid still has a panel for every variant; the missing ones say so
    fig = contour_grid(load_study(study_dir), 0)
    texts = {ax.get_title().split("\n")[0]: [t.get_text() for t in ax.texts] for ax in fig.axes if ax.get_title()}
    assert texts["wide"] == ["n/a\n(not measured)"] and texts["extra"] == ["n/a\n(not measured)"]
    assert not [t for t in texts["narrow"] if "n/a" in t]  # its contour labels only


def test_a_width_that_is_a_lower_bound_is_flagged(study_dir: Path) -> None:
    write_scan1d(study_dir / "runs/wide/seed1/scan1d.h5", X1D, 0.2 + 0.05 * X1D**2)
    study = load_study(study_dir)
    from analysis.study import table_csv, table_markdown

    rows = study_table(study)
    wide = row_of(rows, "wide")
    assert wide.width.lower_bounds == 1 and 2.0 in wide.width.values
    md = table_markdown(study, rows, "train_loss")
    md_row = next(r for r in md.splitlines() if r.startswith("| wide |"))
    assert "| > " in md_row and "lower bound" in md and "wide (1 of 3 seeds)" in md
    line = next(r for r in csv.DictReader(table_csv(rows).splitlines()) if r["variant"] == "wide")
    assert line["width_lower_bound_seeds"] == "1"


# --- the figures -------------------------------------------------------------------------------------------


def contour_sets(fig) -> list:
    """The contour sets and heatmaps of the panels (not of the colour bar's axes)."""
    panels = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    return [c for ax in panels for c in ax.collections if isinstance(c, (ContourSet, QuadMesh))]


def test_every_panel_shares_one_norm_and_one_set_of_levels(study_dir: Path) -> None:
    study = load_study(study_dir)
    fig = contour_grid(study, 0)
    sets = contour_sets(fig)
    assert len(sets) == 2
    # the narrow bowl spans 0.1..24.1, the wide one 0.1..4.1: alone, the wide one would get its own levels;
    # together both get the paper's 0.1:10:0.5 coloured over 0.1..10
    for cs in sets:
        np.testing.assert_allclose(cs.levels, PAPER_LEVELS)
        assert (cs.norm.vmin, cs.norm.vmax) == pytest.approx((0.1, 10.0))
    fig = convexity_grid(study, 0)
    meshes = contour_sets(fig)
    assert len(meshes) == 2 and all((m.norm.vmin, m.norm.vmax) == (0.0, 0.5) for m in meshes)


def test_trajectory_grid_shares_levels_and_draws_each_path(tmp_path: Path) -> None:
    root = tmp_path / "study"
    nodes = {}
    for k, name in enumerate(("sgd", "adam")):
        (root / f"runs/{name}/seed0").mkdir(parents=True)
        write_trajectory_file(root / f"runs/{name}/seed0/trajectory.h5")
        if k == 1:  # make the second scan's loss five times larger: one shared scale must span both
            with h5py.File(root / f"runs/{name}/seed0/trajectory.h5", "a") as f:
                f["train_loss"][...] = 5.0 * f["train_loss"][()]
        nodes[(name, 0)] = {"trajectory": done(surface=f"runs/{name}/seed0/trajectory.h5")}
    write_manifest(root, [{"name": "sgd", "overrides": {}}, {"name": "adam", "overrides": {}}], [0], nodes)
    fig = trajectory_grid(load_study(root), 0)
    sets = contour_sets(fig)
    assert len(sets) == 2
    assert all(np.array_equal(cs.levels, sets[0].levels) for cs in sets)
    assert len({(cs.norm.vmin, cs.norm.vmax) for cs in sets}) == 1
    paths = [line for ax in fig.axes for line in ax.lines if line.get_gid() == "trajectory-path"]
    assert len(paths) == 2
    assert any("PC1 + PC2: 83.4 %" in ax.get_title() for ax in fig.axes)  # 62.34 % + 21.04 %


def test_panels_follow_the_group_labels() -> None:
    from analysis.study import Variant

    variants = [Variant(f"resnet{d}{'' if s else '_noshort'}", {"depth": d, "shortcut": s})
                for s in (True, False) for d in (20, 56, 110)]
    nrows, ncols, places = panel_layout(variants)
    assert (nrows, ncols) == (2, 3)  # rows: shortcut yes / no; columns: depth, as the paper's fig. 5
    assert places[variants.index(Variant("resnet56_noshort", {"depth": 56, "shortcut": False}))] == (1, 1)
    assert places[0] == (0, 0) and places[2] == (0, 2)
    # without labels, or labels that put two variants in one cell: in order, four to a row
    assert panel_layout([Variant(str(k)) for k in range(6)])[:2] == (2, 4)
    assert panel_layout([Variant("a", {"bs": 1}), Variant("b", {"bs": 1})])[2] == [(0, 0), (0, 1)]


def test_1d_scans_are_overlaid_loss_solid_left_accuracy_dashed_right(study_dir: Path) -> None:
    fig = line_overlay(load_study(study_dir), 1, log=True)
    left, right = fig.axes[0], fig.axes[1]
    assert [line.get_label() for line in left.lines] == ["narrow", "wide"]
    assert all(line.get_linestyle() == "-" for line in left.lines) and left.get_yscale() == "log"
    assert [line.get_linestyle() for line in right.lines] == ["--", "--"]
    assert [line.get_color() for line in left.lines] == [line.get_color() for line in right.lines]
    np.testing.assert_allclose(left.lines[1].get_ydata(), 0.2 + CURVATURE[("wide", 1)] * X1D**2)


def test_1d_scans_of_other_normalizations_get_panels_of_their_own(study_dir: Path) -> None:
    # the wide variant scanned along unnormalized directions over +-0.1: its x is in other units
    write_surface_file(study_dir / "runs/wide/seed1/scan1d.h5", X1D / 10, None,
                       {"train_loss": 0.2 + X1D**2, "train_acc": 100.0 * np.exp(-X1D**2)}, attrs={"norm": "none"})
    fig = line_overlay(load_study(study_dir), 1)
    panels = [ax for ax in fig.axes if ax.get_ylabel().endswith("(solid)")]
    assert [ax.get_title() for ax in panels] == ["directions normalized by filter", "unnormalized directions"]
    assert [[line.get_label() for line in ax.lines] for ax in panels] == [["narrow"], ["wide"]]
    assert panels[0].get_xlim() == pytest.approx((-1.0, 1.0)) and panels[1].get_xlim() == pytest.approx((-0.1, 0.1))


def test_cli_writes_every_grid_in_each_format(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", str(study_dir), "--format", "png,pdf", "--seed", "2"]) == 0
    names = {Path(line.removeprefix("wrote: ")).name for line in capsys.readouterr().out.splitlines()
             if line.startswith("wrote: ")}
    for stem in ("scan2d_train_loss_seed2", "scan1d_train_loss_seed2", "convexity_seed2"):
        assert {f"{stem}.png", f"{stem}.pdf"} <= names
    assert (study_dir / "figures" / "scan2d_train_loss_seed2.png").read_bytes().startswith(b"\x89PNG")
    assert (study_dir / "figures" / "convexity_seed2.pdf").read_bytes().startswith(b"%PDF-")


@pytest.mark.parametrize(
    ("change", "message"),
    [({"kind": "surface"}, "kind 'surface'"), ({"schema_version": 2}, "schema_version 2"), (None, "no study.json")],
)
def test_a_wrong_manifest_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str], change, message) -> None:
    root = tmp_path / "study"
    if change is not None:
        write_manifest(root, [{"name": "a", "overrides": {}}], [0], {}, **change)
    else:
        root.mkdir()
    assert main(["study", str(root)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (root / "table.csv").exists()


def test_a_seed_the_study_does_not_have_is_a_one_line_error(study_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", str(study_dir), "--seed", "7"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--seed 7" in err[0] and "0, 1, 2" in err[0]


def test_a_cell_shows_the_mean_to_the_stds_decimals_and_never_more_than_six_digits() -> None:
    from analysis.study import Stat, cell

    def of(*values: float) -> str:
        stat = Stat()
        for seed, value in enumerate(values):
            stat.add(seed, value)
        return cell(stat)

    assert of(100.5, 101.2, 100.0) == "100.57 ± 0.6 (n=3)"  # mean 100.5667, std 0.603
    assert of(2.0, 2.0) == "2 ± 0 (n=2)" and of(3.25) == "3.25 (n=1)"
    # a path entirely in its plane: the std is 1e-11, the mean is not printed to 13 decimals
    assert of(99.999999999906, 99.99999999993, 99.99999999995) == "100.0000 ± 2.2e-11 (n=3)"
