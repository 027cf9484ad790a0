"""The torch.distributed backend with two gloo processes started by torchrun: delivery and failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("queue_job.py")

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.torchrun,
    pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed"),
]


def torchrun(out: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """Two local processes via torchrun (which sets WORLD_SIZE, so 'auto' must pick torch)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(JOB), "--out", str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def test_every_result_delivered_once_on_rank0(tmp_path: Path) -> None:
    proc = torchrun(tmp_path, "--items", "50", "--sleep-max", "0.002")
    assert proc.returncode == 0, proc.stderr[-3000:]
    writer = json.loads((tmp_path / "writer.json").read_text())
    assert (writer["kind"], writer["size"]) == ("torch", 2)
    delivered = writer["delivered"]
    assert Counter(item for item, *_ in delivered) == Counter(range(50))
    assert all(result_item == item and square == item * item for item, result_item, square, _ in delivered)
    # static strided assignment: even items on rank 0, odd ones on rank 1
    assert all(rank == item % 2 for item, *_, rank in delivered)
    assert writer["progress"] == [[k, 50] for k in range(1, 51)]
    per_rank = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    assert all(rec["shared"] == {"token": 4242, "array": [0.5, 1.5]} for rec in per_rank), "broadcast"
    # run returns on rank 1 only after rank 0 has delivered the last round
    assert per_rank[1]["returned"] >= writer["last_delivery"]


def test_failure_on_rank1_is_reported_by_rank0_and_ends_both(tmp_path: Path) -> None:
    proc = torchrun(tmp_path, "--items", "20", "--sleep-max", "0", "--fail-rank", "1")
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "WorkerError: rank 1 raised while computing item #1" in log
    assert "deliberate failure on rank 1" in log
    assert not (tmp_path / "writer.json").exists()
