"""`effrep trajectory` end to end: the PCA plane of a run's snapshots, the projected path, the scan, resume, bad input."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from effrep_hpc.cli import main
from effrep_hpc.config import load_config
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.surface import read_surface
from tests.runners.runner_helpers import ROOT

CONFIG = ROOT / "configs/demo/digits.yaml"
MODEL = "model.kwargs={widths: [8, 8, 8]}"
EPOCHS = 5
SMALL = (MODEL, "run.progress=false", "run.threads=1", "landscape.train_size=64", "landscape.test=false",
         "landscape.x=-1:1:5", "landscape.y=-1:1:4")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    run_train(load_config(CONFIG, [f"run.out={out}", MODEL, f"train.epochs={EPOCHS}", "train.milestones=[3]",
                                   "train.keep_every=1", "run.progress=false"]))
    return out


def args(trained: Path, tmp: Path, *extra: str, name: str = "traj") -> list[str]:
    return ["trajectory", str(CONFIG), f"run.out={trained}", f"trajectory.surface={tmp / name}.h5",
            f"trajectory.direction_file={tmp / name}_dirs.h5", *SMALL, *extra]


@pytest.fixture(scope="module")
def scanned(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    tmp = tmp_path_factory.mktemp("scan")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(args(trained, tmp, f"trajectory.export={tmp / 'original.h5'}")) == 0
    return tmp, out.getvalue()


def in_process(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    """`effrep ARGV` in this process (no interpreter start-up): exit code, stdout, stderr."""
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def _covered(state: dict[str, torch.Tensor]) -> np.ndarray:
    """The flattened weights the paper's PCA covers: tensors of two or more dimensions (landscape.bias_bn=ignore)."""
    return np.concatenate([v.double().numpy().ravel() for k, v in state.items()
                           if v.dim() >= 2 and v.is_floating_point()])


def test_the_path_is_the_least_squares_projection_of_each_snapshot(trained: Path, scanned: tuple[Path, str]) -> None:
    tmp, stdout = scanned
    data = read_surface(tmp / "traj.h5")
    with h5py.File(tmp / "traj.h5", "r") as f:
        path = {k: f["trajectory"][k][()] for k in f["trajectory"]}
        ratios = f["trajectory"].attrs["explained_variance_ratio"]
        stored = {a: {k: torch.from_numpy(f["directions"][a][k][()]) for k in f["directions"][a]} for a in "xy"}
    files = sorted((trained / "weights").glob("epoch_*.pt"))
    assert path["epoch"].tolist() == list(range(EPOCHS + 1))
    # an independent least squares: numpy's lstsq on the flattened weights minus the final checkpoint's
    final = load_checkpoint(trained / "checkpoint.pt")["model"]
    ref = _covered(final)
    d = np.stack([_covered({k: stored[a][k] for k in final if k in stored[a]}) for a in "xy"], axis=1)
    for i, file in enumerate(files):
        r = _covered(load_checkpoint(file)["model"]) - ref
        c, *_ = np.linalg.lstsq(d, r, rcond=None)
        assert np.allclose([path["x"][i], path["y"][i]], c, rtol=1e-6, atol=1e-9)
        assert path["residual"][i] == pytest.approx(np.linalg.norm(r - d @ c), rel=1e-6, abs=1e-9)
        assert path["distance"][i] == pytest.approx(np.linalg.norm(r), rel=1e-6)
    assert path["x"][-1] == 0.0 and path["y"][-1] == 0.0  # the reference is the final epoch: the origin
    # the explained variance is sklearn's on the same difference matrix
    diffs = np.stack([_covered(load_checkpoint(f)["model"]) - ref for f in files])
    assert np.allclose(ratios, PCA(n_components=2).fit(diffs).explained_variance_ratio_, rtol=1e-6)
    # the grid covers the whole path, and the printed line says the explained variance
    x, y = data["xcoordinates"], data["ycoordinates"]
    assert x[0] < path["x"].min() and path["x"].max() < x[-1] and y[0] < path["y"].min() and path["y"].max() < y[-1]
    assert (len(x), len(y)) == (5, 4) and data["done"].all()
    assert f"{100 * ratios[0]:.1f}%" in stdout and stdout.strip().splitlines()[-1] == f"surface: {tmp / 'traj.h5'}"


def test_values_equal_a_landscape_scan_on_the_same_directions(trained: Path, scanned: tuple[Path, str], tmp_path: Path) -> None:
    tmp, _ = scanned
    data = read_surface(tmp / "traj.h5")
    x, y = data["xcoordinates"], data["ycoordinates"]
    axis = [f"landscape.{a}={float(v[0])!r}:{float(v[-1])!r}:{len(v)}" for a, v in (("x", x), ("y", y))]
    plain = tmp_path / "plain.h5"
    assert main(["landscape", str(CONFIG), f"run.out={trained}", f"landscape.surface={plain}",
                 f"landscape.directions={tmp / 'traj.h5'}", *SMALL, *axis]) == 0
    other = read_surface(plain)
    assert np.array_equal(other["xcoordinates"], x) and np.array_equal(other["ycoordinates"], y)
    assert np.array_equal(other["train_loss"], data["train_loss"]) and np.array_equal(other["train_acc"], data["train_acc"])


def test_a_rerun_reuses_the_directions_and_computes_nothing(
    trained: Path, scanned: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, _ = scanned
    before = (tmp / "traj_dirs.h5").stat().st_mtime_ns
    code, out, _ = in_process(capsys, args(trained, tmp))
    assert code == 0 and "PCA of" not in out and "computed 0 point(s)" in out
    assert (tmp / "traj_dirs.h5").stat().st_mtime_ns == before


def test_the_original_format_export_imports_to_the_same_scan(
    trained: Path, scanned: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    tmp, _ = scanned
    with h5py.File(tmp / "original.h5", "r") as f:
        assert {"xdirection", "ydirection", "explained_variance_ratio_"} <= set(f)
        exported = f["explained_variance_ratio_"][()]
    code, out, _ = in_process(capsys, args(trained, tmp, f"trajectory.directions={tmp / 'original.h5'}", name="imported"))
    assert code == 0 and "projecting" in out
    ours, imported = read_surface(tmp / "traj.h5"), read_surface(tmp / "imported.h5")
    assert np.array_equal(ours["train_loss"], imported["train_loss"])
    with h5py.File(tmp / "imported.h5", "r") as f:
        assert np.array_equal(f["trajectory"].attrs["explained_variance_ratio"], exported)
        assert f["trajectory"].attrs["method"] == "imported" and f.attrs["directions_source"].startswith("imported")


def test_bad_input_is_one_line_and_exit_2(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # no snapshots: the run was trained without train.keep_every
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(trained / "checkpoint.pt", bare / "checkpoint.pt")
    code, _, err = in_process(capsys, args(bare, tmp_path))
    assert code == 2 and "train.keep_every" in err and len(err.strip().splitlines()) == 1
    # a snapshot of another architecture among the run's own
    mixed = tmp_path / "mixed"
    shutil.copytree(trained / "weights", mixed)
    other = tmp_path / "other"
    run_train(load_config(CONFIG, [f"run.out={other}", "model.kwargs={widths: [8, 8, 16]}", "train.epochs=1",
                                   "train.keep_every=1", "run.progress=false"]))
    shutil.copy(other / "weights/epoch_0001.pt", mixed / "epoch_0002.pt")
    capsys.readouterr()
    code, _, err = in_process(capsys, args(trained, tmp_path, f"trajectory.snapshots={mixed}"))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "snapshot 2" in err and "shape" in err
    assert not (tmp_path / "traj.h5").exists()
