"""Landscape scans end to end: values at their (x, y), rank counts, kill and resume, bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effrep_hpc.config import load_config
from effrep_hpc.data import load_dataset
from effrep_hpc.landscape.evaluate import subset
from effrep_hpc.runners.landscape import load_model
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.surface import read_surface
from tests.runners.runner_helpers import effrep, effrep_cmd, kill_when_done

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/demo/digits.yaml"
BIN = Path(sys.executable).parent
MPIEXEC = BIN / "mpiexec"
SMALL = ("landscape.train_size=256", "landscape.batch_size=256", "run.progress=false", "run.threads=1")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(CONFIG, [f"run.out={out}", "train.epochs=2", "train.milestones=[1]", "run.progress=false"])
    run_train(cfg)
    return out


def scan_args(trained: Path, surface: Path, *extra: str) -> list[str]:
    return ["landscape", str(CONFIG), f"run.out={trained}", f"landscape.surface={surface}", *SMALL, *extra]


def test_values_sit_at_their_coordinates(trained: Path, tmp_path: Path) -> None:
    surface = tmp_path / "s.h5"
    proc = effrep(*scan_args(trained, surface, "landscape.x=-1:1:7", "landscape.y=-0.5:1:4"))
    assert proc.stdout.strip().splitlines()[-1] == f"surface: {surface}"
    data = read_surface(surface)
    assert data["train_loss"].shape == (4, 7) and data["done"].all()
    assert data["attrs"]["axes"] == "y,x"
    # Recompute three points directly: weights w0 + a*dx + b*dy from the directions stored in the file.
    cfg = load_config(CONFIG, [f"run.out={trained}"])
    model = load_model(trained / "checkpoint.pt", cfg, torch.device("cpu"))
    ds = load_dataset("digits")
    x, y = subset(ds.x_train, ds.y_train, 256, 0)
    with h5py.File(surface) as f:
        dx = {k: torch.from_numpy(f["directions/x"][k][()]) for k in f["directions/x"]}
        dy = {k: torch.from_numpy(f["directions/y"][k][()]) for k in f["directions/y"]}
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    rng = np.random.default_rng(0)
    for j, i in [(0, 6), (3, 0), tuple(rng.integers([4, 7]))]:
        a, b = data["xcoordinates"][i], data["ycoordinates"][j]
        with torch.no_grad():
            for n, p in model.named_parameters():
                p.copy_(w0[n] + a * dx[n] + b * dy[n])
            logits = model.eval()(x)
            loss = torch.nn.functional.cross_entropy(logits, y).item()
            acc = 100.0 * (logits.argmax(1) == y).float().mean().item()
        assert data["train_loss"][j, i] == pytest.approx(loss, rel=1e-5), (j, i)
        assert data["train_acc"][j, i] == pytest.approx(acc, abs=1e-6)
    # the loss is lowest near the centre of the trained model, not at a corner
    centre = data["train_loss"][2, 3]
    assert centre < data["train_loss"][0, 0] and centre < data["train_loss"][3, 6]


# slow (~30 s): test_sigkill_then_resume_is_bitwise_equal checks 2 MPI ranks against a serial scan, and
# tests/launch/test_launch_local.py array tasks + merge against it, in the default run.
@pytest.mark.slow
@pytest.mark.mpi
def test_two_ranks_equal_one_rank_and_array_merge(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:6", "landscape.y=-1:1:5", "landscape.tile_size=3")
    effrep(*scan_args(trained, tmp_path / "one.h5", *grid, "dist.backend=serial"))
    effrep(*scan_args(trained, tmp_path / "two.h5", *grid), mpi=2)
    one, two = read_surface(tmp_path / "one.h5"), read_surface(tmp_path / "two.h5")
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)
    # three array tasks, each into its own shard, then merged
    shards = []
    for task in range(3):
        proc = effrep(*scan_args(trained, tmp_path / "arr.h5", *grid, "dist.backend=array", f"dist.task_id={task}", "dist.num_tasks=3"))
        shards.append(proc.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    effrep("merge", *shards, "-o", str(tmp_path / "arr.h5"))
    merged = read_surface(tmp_path / "arr.h5")
    for name in ("train_loss", "test_acc"):
        np.testing.assert_array_equal(one[name], merged[name], err_msg=name)


@pytest.mark.mpi
def test_sigkill_then_resume_is_bitwise_equal(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:8", "landscape.y=-1:1:6", "landscape.tile_size=2")
    effrep(*scan_args(trained, tmp_path / "ref.h5", *grid, "dist.backend=serial"))
    surface = tmp_path / "killed.h5"
    # at most half of the 48 points, so the kill lands before the scan ends
    kill_when_done(effrep_cmd(*scan_args(trained, surface, *grid), mpi=2), surface, int(np.random.default_rng().integers(4, 24)))
    # Readable by h5py right after the kill (hence locking=False, which is how every reader of ours opens
    # files), and partially done.
    with h5py.File(surface, "r", locking=False) as f:
        partial = f["done"][()].copy()
        assert 0 < partial.sum() < partial.size
        assert np.isnan(f["train_loss"][()][~partial]).all()
        assert np.isfinite(f["train_loss"][()][partial]).all()
    effrep(*scan_args(trained, surface, *grid), mpi=2)
    ref, resumed = read_surface(tmp_path / "ref.h5"), read_surface(surface)
    assert resumed["done"].all()
    for name in ("train_loss", "train_acc", "test_loss", "test_acc"):
        np.testing.assert_array_equal(ref[name], resumed[name], err_msg=name)


# slow (~30 s, it trains a second model): tests/faults/test_bad_inputs.py covers these inputs in the default run.
@pytest.mark.slow
def test_bad_input_is_clear_and_leaves_files_untouched(trained: Path, tmp_path: Path) -> None:
    surface = tmp_path / "s.h5"
    base = ("landscape.x=-1:1:3", "landscape.y=-1:1:3")
    effrep(*scan_args(trained, surface, *base))
    before = surface.read_bytes()
    # a checkpoint of another architecture
    other = tmp_path / "other"
    run_train(load_config(CONFIG, [f"run.out={other}", "model.name=digits_mlp", "train.epochs=1", "run.progress=false"]))
    stale = tmp_path / "stale_dirs.h5"
    with h5py.File(stale, "w") as f:  # the original research code's direction format, for another model
        g = f.create_group("xdirection")
        for k, p in enumerate(load_model(other / "checkpoint.pt", load_config(CONFIG, ["model.name=digits_mlp"]), torch.device("cpu")).parameters()):
            g.create_dataset(str(k), data=np.zeros(tuple(p.shape), np.float32))
    cases = [
        (("landscape.norm=filtre",), "did you mean 'filter'"),
        (("landscape.x=0:1:0",), "empty"),
        ((f"landscape.checkpoint={other / 'checkpoint.pt'}",), "digits_mlp"),
        ((f"landscape.directions={stale}", "landscape.y=null"), "direction"),
        (("landscape.x=-1:1:4",), "x grid"),
        (("landscape.xseed=7",), "directions"),
    ]
    for extra, words in cases:
        proc = effrep(*scan_args(trained, surface, *base, *extra), check=False)
        assert proc.returncode == 2, (extra, proc.stderr)
        assert words in proc.stderr, (extra, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert surface.read_bytes() == before, extra
    # a second job on a file that is being written is refused
    spec_holder = read_surface(surface)
    assert spec_holder["done"].all()
    from effrep_hpc.store.h5 import WriterLock

    with WriterLock(surface):
        proc = effrep(*scan_args(trained, surface, *base), check=False)
    assert proc.returncode == 2 and "being written by another job" in proc.stderr
    assert surface.read_bytes() == before
    # --overwrite starts over on purpose
    proc = effrep(*scan_args(trained, surface, "landscape.x=-1:1:4", "landscape.y=-1:1:3"), "--overwrite")
    assert read_surface(surface)["train_loss"].shape == (3, 4)


def test_1d_interpolation_between_checkpoints(trained: Path, tmp_path: Path) -> None:
    start = trained / "weights" / "epoch_0000.pt"
    end = trained / "checkpoint.pt"
    surface = tmp_path / "interp.h5"
    effrep(*scan_args(trained, surface, f"landscape.checkpoint={start}", f"landscape.target={end}", "landscape.x=0:1:5", "landscape.y=null"))
    data = read_surface(surface)
    assert data["train_loss"].shape == (5,) and data["attrs"]["axes"] == "x"
    # from the random initialisation (x=0) to the trained model (x=1) the loss falls
    assert data["train_loss"][-1] < data["train_loss"][0]


# slow (~17 s): tests/mpi/test_torch_dist.py checks the torch.distributed backend's delivery, and
# tests/runners/test_train.py a torchrun job end to end, in the default run.
@pytest.mark.slow
@pytest.mark.torchrun
def test_torchrun_scan_equals_serial(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:5", "landscape.y=-1:1:3", "landscape.tile_size=2")
    effrep(*scan_args(trained, tmp_path / "one.h5", *grid, "dist.backend=serial"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2", "-m", "effrep_hpc.cli",
           *scan_args(trained, tmp_path / "two.h5", *grid)]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"surface: {tmp_path / 'two.h5'}" in proc.stdout
    one, two = read_surface(tmp_path / "one.h5"), read_surface(tmp_path / "two.h5")
    for name in ("train_loss", "test_acc"):
        np.testing.assert_array_equal(one[name], two[name], err_msg=name)


def test_directions_reused_from_a_surface_file(trained: Path, tmp_path: Path) -> None:
    first = tmp_path / "first.h5"
    effrep(*scan_args(trained, first, "landscape.x=-1:1:3", "landscape.y=-1:1:3", "landscape.xseed=11", "landscape.yseed=12"))
    again = tmp_path / "again.h5"
    # different seeds, but the directions come from the first file: the values must be identical
    effrep(*scan_args(trained, again, "landscape.x=-1:1:3", "landscape.y=-1:1:3", f"landscape.directions={first}"))
    a, b = read_surface(first), read_surface(again)
    assert a["attrs"]["directions_hash"] == b["attrs"]["directions_hash"]
    np.testing.assert_array_equal(a["train_loss"], b["train_loss"])
