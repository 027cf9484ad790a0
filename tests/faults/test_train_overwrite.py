"""`--overwrite` against a live writer is refused before anything is touched (issue 11, item 2).

The running job is a real `effrep` process. While the second command runs, the first is paused with
SIGSTOP, so every file it owns is frozen: a snapshot (inode and content of every file) taken right before
the second command must equal one taken right after it. Then the first job continues and must finish
normally, with every output it names in place.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from effrep_hpc.config import load_config
from effrep_hpc.runners.quant import run_quant_train
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.h5 import FileBusyError, WriterLock
from effrep_hpc.store.sweep import live_writers, read_statuses, register_writer, release_writer, runs_dir, writer_entries

ROOT = Path(__file__).resolve().parents[2]
TINY = ("data.name=digits", "data.train_size=400", "model.name=digits_mlp", "model.kwargs={widths: [16, 16]}",
        "train.batch_size=64", "train.lr=0.1", "train.schedule=constant", "run.progress=false", "run.threads=1")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "effrep_hpc.cli", *args]


def env() -> dict[str, str]:
    out = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    out.pop("SLURM_JOB_ID", None)
    return out


def snapshot(root: Path) -> dict[str, tuple[int, str]]:
    """(inode, sha256) of every file under ``root``: a deleted, replaced or rewritten file shows."""
    return {str(p.relative_to(root)): (p.stat().st_ino, hashlib.sha256(p.read_bytes()).hexdigest())
            for p in sorted(root.rglob("*")) if p.is_file()}


def wait_for(proc: subprocess.Popen, ready: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        try:
            if ready():
                return
        except (OSError, KeyError, ValueError):
            pass  # a file being created
        time.sleep(0.02)
    proc.kill()
    pytest.fail(f"the first job {'ended' if proc.poll() is not None else 'stalled'} before {what}; make it longer")


def refused_while_paused(first: subprocess.Popen, root: Path, second: list[str]) -> subprocess.CompletedProcess:
    """Pause ``first``, run ``second``, check nothing under ``root`` changed, resume ``first``."""
    first.send_signal(signal.SIGSTOP)
    try:
        before = snapshot(root)
        proc = subprocess.run(second, cwd=ROOT, env=env(), capture_output=True, text=True, timeout=120)
        assert snapshot(root) == before, "the refused --overwrite deleted or changed the running job's files"
    finally:
        first.send_signal(signal.SIGCONT)
    return proc


def assert_busy(proc: subprocess.CompletedProcess, target: Path) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
    assert str(target) in lines[0] and "being written by" in lines[0]


def test_train_overwrite_against_a_live_writer_deletes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    args = ["train", "configs/demo/digits.yaml", *TINY, f"run.out={out}", "train.epochs=150", "train.keep_every=1"]
    first = subprocess.Popen(cli(*args), cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for(first, lambda: load_checkpoint(out / "checkpoint.pt")["epoch"] >= 2, "its second checkpoint")
    proc = refused_while_paused(first, out, cli(*args, "--overwrite"))
    assert_busy(proc, out / "checkpoint.pt")
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert load_checkpoint(out / "checkpoint.pt")["epoch"] == 150
    assert f"metrics: {out / 'metrics.h5'}" in stdout and (out / "metrics.h5").is_file()
    assert len(list((out / "weights").glob("epoch_*.pt"))) == 151, "no weight snapshot was deleted"


def test_quant_sweep_overwrite_against_a_live_sweep_deletes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "sweep"
    sweep = out / "sweep.h5"
    args = ["quant", "sweep", "configs/demo/quant_digits.yaml", *TINY, f"run.out={out}", "train.epochs=40",
            "quant.sweep.algorithms=[fp, bc]", "quant.sweep.bits=[1]", "quant.sweep.seeds=[0]", "dist.backend=serial"]
    first = subprocess.Popen(cli(*args), cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def training() -> bool:  # the first run has checkpointed (so _runs/ exists) and the writer is registered
        return load_checkpoint(runs_dir(sweep) / "run_0000.pt")["epoch"] >= 1 and len(writer_entries(sweep)) == 1

    wait_for(first, training, "its first run checkpointed")
    proc = refused_while_paused(first, out, cli(*args, "--overwrite"))
    assert_busy(proc, sweep)
    assert "running sweep" in proc.stderr and "nothing was deleted" in proc.stderr
    stdout, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr
    assert read_statuses(sweep) == ["done"] * 2
    assert writer_entries(sweep) == [], "a finished sweep leaves no writer entry, so a later --overwrite may start over"


def test_writer_entries_show_live_processes_and_drop_dead_ones(tmp_path: Path) -> None:
    sweep = tmp_path / "sweep.h5"
    mine = register_writer(sweep)
    # another live process (an array task of the same sweep): registered, alive, not this one
    other = subprocess.Popen([sys.executable, "-c", "import sys, time; from effrep_hpc.store.sweep import register_writer; "
                              f"register_writer({str(sweep)!r}); print('ok', flush=True); time.sleep(60)"],
                             cwd=ROOT, env=env(), stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout is not None and other.stdout.readline().strip() == "ok"
        live = live_writers(sweep, mine)
        assert [w["pid"] for w in live] == [other.pid]
        assert len(writer_entries(sweep)) == 2
    finally:
        other.kill()
        other.wait()
    # killed without cleaning up: its entry is stale (its pid is gone) and is removed by the next look
    assert len(writer_entries(sweep)) == 2 and live_writers(sweep, mine) == []
    assert writer_entries(sweep) == [mine]
    release_writer(sweep)  # a sweep that ends before its process does
    assert writer_entries(sweep) == []


def assert_refused_under_a_live_writer(out: Path, held: Path, command: Callable[[], object]) -> None:
    """``command`` (an --overwrite run on ``out``) fails while ``held`` is locked, leaving every file under ``out``."""
    before = snapshot(out)
    with WriterLock(held):  # a live writer of these files (this very process, which is alive)
        with pytest.raises(FileBusyError, match="being written by another job"):
            command()
    assert snapshot(out) == before


def test_quant_train_overwrite_refuses_a_live_writer_before_deleting(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, f"run.out={tmp_path}", "train.epochs=1", "quant.algorithm=bc"])
    run_quant_train(cfg)
    assert_refused_under_a_live_writer(tmp_path, tmp_path / "quant_checkpoint.pt", lambda: run_quant_train(cfg, overwrite=True))


def test_prune_retrain_overwrite_refuses_a_live_writer_before_deleting(tmp_path: Path) -> None:
    from effrep_hpc.runners.prune import run_prune

    base = ["data.name=digits", "model.name=digits_vgg", "run.progress=false", "run.threads=1", f"run.out={tmp_path}"]
    run_train(load_config(None, [*base, "train.epochs=1", "train.keep_every=0"]))
    cfg = load_config(None, [*base, "prune.ratios={features.0: 0.5}", "prune.retrain_epochs=1"])
    out = run_prune(cfg, retrain=True).out
    assert_refused_under_a_live_writer(out, out / "checkpoint.pt", lambda: run_prune(cfg, retrain=True, overwrite=True))
