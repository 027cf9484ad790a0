"""The store: surface files (create, tile writes, resume refusal, lock, merge) and checkpoints."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from effrep_hpc.store.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from effrep_hpc.store.h5 import FileBusyError
from effrep_hpc.store.shards import shard_path
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter, merge_shards, read_surface

METRICS = ["train_loss", "train_acc"]


def spec(nx: int = 5, ny: int | None = 3, model_hash: str = "m", directions_hash: str = "d") -> SurfaceSpec:
    return SurfaceSpec(
        x=np.linspace(-1, 1, nx),
        y=None if ny is None else np.linspace(-0.5, 1, ny),
        metrics=list(METRICS),
        config_yaml="a: 1\n",
        model_hash=model_hash,
        directions_hash=directions_hash,
    )


def test_surface_layout_and_nan_pending(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    s = spec()
    with SurfaceWriter(path, s) as w:
        assert list(w.pending()) == list(range(15))
        # points in arbitrary order across rows: (j, i) = divmod(k, nx)
        flat = np.array([7, 1, 2, 14, 3])
        w.write(flat, {"train_loss": flat * 10.0, "train_acc": flat * 1.0})
    data = read_surface(path)
    assert data["train_loss"].shape == (3, 5)
    assert data["attrs"]["axes"] == "y,x" and data["attrs"]["schema_version"] == 1
    for k in [7, 1, 2, 14, 3]:
        j, i = divmod(k, 5)
        assert data["done"][j, i] and data["train_loss"][j, i] == k * 10.0
    assert np.isnan(data["train_loss"][~data["done"]]).all()
    assert data["done"].sum() == 5


def test_1d_surface(tmp_path: Path) -> None:
    path = tmp_path / "s1.h5"
    with SurfaceWriter(path, spec(nx=7, ny=None)) as w:
        w.write(np.array([6, 0, 1]), {"train_loss": np.array([6.0, 0.0, 1.0]), "train_acc": np.zeros(3)})
    data = read_surface(path)
    assert data["train_loss"].shape == (7,) and data["attrs"]["axes"] == "x"
    assert data["train_loss"][6] == 6.0 and data["done"].sum() == 3


def test_resume_keeps_done_points_and_refuses_other_scans(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with SurfaceWriter(path, spec()) as w:
        w.write(np.array([0, 1]), {"train_loss": np.ones(2), "train_acc": np.ones(2)})
    before = path.read_bytes()
    with SurfaceWriter(path, spec()) as w:
        assert w.resumed and list(w.pending()) == list(range(2, 15))
    for other, words in [(spec(nx=6), "x grid"), (spec(model_hash="other"), "model"), (spec(directions_hash="z"), "directions")]:
        with pytest.raises(ValueError, match=words) as info:
            SurfaceWriter(path, other)
        assert "--overwrite" in str(info.value)
    assert path.read_bytes() == before
    assert not Path(str(path) + ".lock").exists()


def test_second_writer_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with SurfaceWriter(path, spec()):
        with pytest.raises(FileBusyError, match="another job"):
            SurfaceWriter(path, spec())


def test_merge_shards_equals_single_writer(tmp_path: Path) -> None:
    surface = tmp_path / "s.h5"
    rng = np.random.default_rng(0)
    loss = rng.random(15)
    blocks = [np.arange(0, 5), np.arange(5, 10), np.arange(10, 15)]
    shards = []
    for t, block in enumerate(blocks):
        p = shard_path(surface, t, 3)
        with SurfaceWriter(p, spec()) as w:
            w.write(block, {"train_loss": loss[block], "train_acc": loss[block]})
        shards.append(p)
    _, done, total = merge_shards(shards, surface)
    data = read_surface(surface)
    assert done == total == 15
    np.testing.assert_array_equal(data["train_loss"].reshape(-1), loss)
    # a shard of another scan is refused
    bad = tmp_path / "bad.h5"
    with SurfaceWriter(bad, spec(model_hash="x")):
        pass
    with pytest.raises(ValueError, match="does not belong"):
        merge_shards(shards + [bad], tmp_path / "out.h5")


def test_checkpoint_round_trip_and_refusals(tmp_path: Path) -> None:
    path = save_checkpoint(tmp_path / "c.pt", {"model": {"w": torch.arange(3.0)}, "epoch": 2})
    data = load_checkpoint(path)
    assert data["epoch"] == 2 and torch.equal(data["model"]["w"], torch.arange(3.0))

    class Evil:
        def __reduce__(self):  # noqa: ANN204
            return (print, ("pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Evil()}, evil)
    with pytest.raises(CheckpointError, match="arbitrary code"):
        load_checkpoint(evil)
    plain = tmp_path / "plain.pt"
    torch.save({"w": torch.zeros(1)}, plain)
    with pytest.raises(CheckpointError, match="not an effrep checkpoint"):
        load_checkpoint(plain)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(pickle.dumps([1, 2]) + b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(junk)


def test_requeued_slurm_task_takes_over_its_own_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from effrep_hpc.store.h5 import WriterLock

    target = tmp_path / "s.h5"
    lock = Path(str(target) + ".lock")
    # a lock left on another node by the killed first incarnation of array task 12345_3
    lock.write_text(json.dumps({"host": "node-a", "pid": 1, "slurm_job": "12345_3"}))
    monkeypatch.setenv("SLURM_ARRAY_JOB_ID", "12345")
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "4")
    with pytest.raises(FileBusyError):
        WriterLock(target).acquire()
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "3")
    with WriterLock(target):
        assert json.loads(lock.read_text())["slurm_job"] == "12345_3"
    assert not lock.exists()
