"""Issue 11 items 6 and 11 (cleaning half): stale writer locks (empty, garbled, pid reused) are taken over,
live ones are not, and stray temporary files of dead writers are removed on the next start."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import numpy as np
import pytest

import effrep_hpc.store.h5 as h5
from effrep_hpc.store.atomic import TMP_GRACE_S, clean_stale_tmp
from effrep_hpc.store.h5 import LOCK_GRACE_S, FileBusyError, WriterLock, process_start_time
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter
from effrep_hpc.store.sweep import locked, run_checkpoint


def lock_of(target: Path) -> Path:
    return Path(str(target) + ".lock")


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture
def live_pid() -> Iterator[int]:
    """A live process on this host that is not this one."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("content", [b"", b'{"host": "n', b"\x00\x00\x00\x00", b"[1, 2]", b'{"host": "x"}'],
                         ids=["empty", "truncated", "zeros", "not-a-dict", "no-pid"])
def test_an_empty_or_garbled_lock_is_taken_over_only_after_the_grace_period(tmp_path: Path, content: bytes) -> None:
    target = tmp_path / "s.h5"
    lock_of(target).write_bytes(content)
    with pytest.raises(FileBusyError, match="empty or unreadable"):  # a writer may be filling it right now
        WriterLock(target).acquire()
    assert lock_of(target).read_bytes() == content
    age(lock_of(target), LOCK_GRACE_S + 1)
    with WriterLock(target):
        assert json.loads(lock_of(target).read_text())["pid"] == os.getpid()
    assert not lock_of(target).exists()


def test_pid_reuse_is_detected_by_the_start_time(tmp_path: Path, live_pid: int) -> None:
    target = tmp_path / "s.h5"
    me = {"host": socket.gethostname(), "pid": live_pid, "slurm_job": None}
    started = process_start_time(live_pid)
    assert started is not None
    # the recorded process is this pid's current one: busy
    lock_of(target).write_text(json.dumps({**me, "started": started}))
    with pytest.raises(FileBusyError, match=f"pid {live_pid}"):
        WriterLock(target).acquire()
    # an old-format lock (no start time) keeps the old behaviour: a live pid is busy
    lock_of(target).write_text(json.dumps(me))
    with pytest.raises(FileBusyError):
        WriterLock(target).acquire()
    # the pid now names another process than the one that took the lock: stale
    lock_of(target).write_text(json.dumps({**me, "started": started - 1}))
    with WriterLock(target):
        assert json.loads(lock_of(target).read_text())["started"] == process_start_time(os.getpid())
    # ... also when the reused pid is this very process's
    mine = {**me, "pid": os.getpid(), "started": process_start_time(os.getpid())}
    lock_of(target).write_text(json.dumps({**mine, "started": mine["started"] - 1}))
    with WriterLock(target):
        pass
    lock_of(target).write_text(json.dumps(mine))  # a lock this process holds is not stale
    with pytest.raises(FileBusyError):
        WriterLock(target).acquire()


def test_a_lock_of_a_dead_process_is_taken_over(tmp_path: Path, dead_pid: int) -> None:
    target = tmp_path / "s.h5"
    lock_of(target).write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid, "started": 1}))
    with WriterLock(target):
        pass


def test_a_sweep_does_not_wait_for_a_stale_empty_lock(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "sweep.h5"
    lock_of(path).touch()
    age(lock_of(path), LOCK_GRACE_S + 1)
    began = time.monotonic()
    with locked(path, timeout=600):
        pass
    assert time.monotonic() - began < 2
    # a fresh empty lock is waited for until it is older than the grace period (shortened here)
    monkeypatch.setattr(h5, "LOCK_GRACE_S", 0.5)
    lock_of(path).touch()
    began = time.monotonic()
    with locked(path, timeout=600):
        pass
    assert 0.4 < time.monotonic() - began < 5


def test_stale_tmp_files_of_dead_writers_are_removed(tmp_path: Path, dead_pid: int, live_pid: int) -> None:
    names = {
        "dead_old": f".s.h5.tmp-{dead_pid}",
        "not_tmp": f".s.h5.tmpx-{dead_pid}",
        "live_old": f".s.h5.tmp-{live_pid}",
        "mine_old": f".s.h5.tmp-{os.getpid()}",
        "other_output": f".t.h5.tmp-{dead_pid}",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"half")
        age(tmp_path / name, TMP_GRACE_S + 1)
    # a dead writer's, but younger than the grace period (it may be a live writer's on another node)
    fresh = tmp_path / f".s.h5.part.tmp-{dead_pid}"
    fresh.write_bytes(b"half")
    assert clean_stale_tmp(tmp_path, "s.h5") == [tmp_path / names["dead_old"]]
    left = {p.name for p in tmp_path.iterdir()}
    assert left == (set(names.values()) - {names["dead_old"]}) | {fresh.name}


def test_writers_clean_their_outputs_tmp_files_on_start(tmp_path: Path, dead_pid: int) -> None:
    surface = tmp_path / "s.h5"
    stray = tmp_path / f".s.h5.tmp-{dead_pid}"
    stray.write_bytes(b"half an HDF5 file")
    age(stray, TMP_GRACE_S + 1)
    spec = SurfaceSpec(x=np.linspace(-1, 1, 3), y=None, metrics=["train_loss"])
    with SurfaceWriter(surface, spec):
        assert not stray.exists()
    # a killed sweep's per-run checkpoint temporary file
    sweep = tmp_path / "sweep.h5"
    ckpt = run_checkpoint(sweep, "run_0003")
    ckpt.parent.mkdir()
    stray = ckpt.with_name(f".{ckpt.name}.tmp-{dead_pid}")
    stray.write_bytes(b"half a checkpoint")
    age(stray, TMP_GRACE_S + 1)
    with locked(sweep, timeout=1):
        pass
    assert not stray.exists()


def test_training_removes_stale_temporary_checkpoints_of_killed_writers(tmp_path: Path) -> None:
    import os
    import time

    from effrep_hpc.config import Scope, load_config
    from effrep_hpc.store.checkpoint import TrainingFiles

    stale = tmp_path / ".checkpoint.pt.tmp-999999"  # pid beyond pid_max: not a live process
    stale.write_bytes(b"half a checkpoint")
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".checkpoint.pt.tmp-999998"
    fresh.write_bytes(b"maybe a writer on another node")
    cfg = load_config(None, [f"run.out={tmp_path}"])
    with TrainingFiles(tmp_path / "checkpoint.pt", kind="train", config=cfg, scope=Scope("train", ("train",)), epochs=1):
        pass
    assert not stale.exists() and fresh.exists()
