"""The MPI work queue under a real mpiexec: each result reaches rank 0 once, all ranks work, failures end the job."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
JOB = Path(__file__).with_name("queue_job.py")


def _find_mpiexec() -> str | None:
    beside_python = Path(sys.executable).with_name("mpiexec")
    return str(beside_python) if beside_python.exists() else shutil.which("mpiexec")


MPIEXEC = _find_mpiexec()
pytestmark = [
    pytest.mark.mpi,
    pytest.mark.skipif(
        MPIEXEC is None, reason="no mpiexec beside the Python executable or on PATH (pip install mpich)"
    ),
    pytest.mark.skipif(importlib.util.find_spec("mpi4py") is None, reason="mpi4py is not installed"),
]


def launch(
    ranks: int, out: Path, *args: str, via_mpi4py: bool = True, timeout: float = 60
) -> subprocess.CompletedProcess:
    """Run queue_job.py on ``ranks`` ranks; a hang fails the test through TimeoutExpired."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    python = [sys.executable, "-m", "mpi4py"] if via_mpi4py else [sys.executable]
    cmd = [MPIEXEC, "-n", str(ranks), *python, str(JOB), "--out", str(out), *args]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def read_outputs(out: Path, ranks: int) -> tuple[dict, list[float]]:
    """Rank 0's record, and the time run returned on each rank (checking broadcast on the way)."""
    writer = json.loads((out / "writer.json").read_text())
    per_rank = [json.loads((out / f"rank{r}.json").read_text()) for r in range(ranks)]
    assert all(rec["shared"] == {"token": 4242, "array": [0.5, 1.5]} for rec in per_rank), "broadcast"
    return writer, [rec["returned"] for rec in per_rank]


@pytest.mark.parametrize("serve", ["on", "off"])
@pytest.mark.parametrize("ranks", [2, 3])
def test_every_result_delivered_once_on_rank0_and_all_ranks_compute(
    tmp_path: Path, ranks: int, serve: str
) -> None:
    proc = launch(ranks, tmp_path, "--items", "50", "--sleep-max", "0.01", "--serve-thread", serve)
    assert proc.returncode == 0, proc.stderr
    writer, returned = read_outputs(tmp_path, ranks)
    assert (writer["kind"], writer["size"], writer["serve_thread"]) == ("mpi", ranks, serve == "on")
    delivered = writer["delivered"]
    assert Counter(item for item, *_ in delivered) == Counter(range(50))
    for item, result_item, square, _ in delivered:
        assert result_item == item and square == item * item
    per_rank = Counter(rank for *_, rank in delivered)
    assert per_rank[0] > 0, "rank 0 must compute items too"
    assert all(per_rank[r] > 0 for r in range(1, ranks)), per_rank
    assert writer["progress"] == [[k, 50] for k in range(1, 51)]
    # run returns on a worker only after rank 0 has delivered the last result
    assert min(returned[1:]) >= writer["last_delivery"]


@pytest.mark.parametrize("serve", ["on", "off"])
def test_large_array_results_arrive_intact(tmp_path: Path, serve: str) -> None:
    # 2 MB results go by rendezvous, not eagerly; the writer compares every array it receives
    args = ("--items", "12", "--sleep-max", "0.005", "--payload-bytes", "2000000", "--serve-thread", serve)
    proc = launch(3, tmp_path, *args)
    assert proc.returncode == 0, proc.stderr
    writer, _ = read_outputs(tmp_path, 3)
    assert sorted(d[0] for d in writer["delivered"]) == list(range(12))


@pytest.mark.parametrize("serve", ["on", "off"])
def test_rank0_can_leave_computing_to_the_workers(tmp_path: Path, serve: str) -> None:
    proc = launch(3, tmp_path, "--items", "30", "--sleep-max", "0.005", "--root-idle", "--serve-thread", serve)
    assert proc.returncode == 0, proc.stderr
    writer, _ = read_outputs(tmp_path, 3)
    assert Counter(d[0] for d in writer["delivered"]) == Counter(range(30))
    assert Counter(d[3] for d in writer["delivered"]).keys() == {1, 2}


def test_one_rank_runs_serially_with_the_mpi_backend(tmp_path: Path) -> None:
    proc = launch(1, tmp_path, "--kind", "mpi", "--items", "9", "--sleep-max", "0")
    assert proc.returncode == 0, proc.stderr
    writer, _ = read_outputs(tmp_path, 1)
    assert (writer["kind"], writer["size"]) == ("mpi", 1)
    assert [d[0] for d in writer["delivered"]] == list(range(9))


def test_fewer_items_than_ranks(tmp_path: Path) -> None:
    proc = launch(3, tmp_path, "--items", "2", "--sleep-max", "0")
    assert proc.returncode == 0, proc.stderr
    writer, returned = read_outputs(tmp_path, 3)
    assert sorted(d[0] for d in writer["delivered"]) == [0, 1]
    assert len(returned) == 3


@pytest.mark.parametrize("serve", ["on", "off"])
@pytest.mark.parametrize("fail_rank", [1, 0])
def test_exception_in_compute_ends_the_job(tmp_path: Path, fail_rank: int, serve: str) -> None:
    proc = launch(3, tmp_path, "--fail-rank", str(fail_rank), "--serve-thread", serve, timeout=60)
    assert proc.returncode != 0
    assert f"deliberate failure on rank {fail_rank}" in proc.stdout + proc.stderr
    assert not (tmp_path / "writer.json").exists()


def test_writer_log_names_the_failing_rank_and_its_traceback(tmp_path: Path) -> None:
    # the failing rank lingers before dying, so rank 0 reads its report and raises WorkerError
    proc = launch(2, tmp_path, "--fail-rank", "1", "--fail-linger", "3", timeout=60)
    assert proc.returncode != 0
    log = proc.stdout + proc.stderr
    assert "WorkerError: rank 1 raised while computing item #" in log
    assert "RuntimeError: deliberate failure on rank 1" in log


def test_abort_on_error_ends_a_job_not_started_with_m_mpi4py(tmp_path: Path) -> None:
    proc = launch(3, tmp_path, "--fail-rank", "1", "--abort-guard", via_mpi4py=False, timeout=60)
    assert proc.returncode != 0
    assert "deliberate failure on rank 1" in proc.stdout + proc.stderr


def test_two_ranks_nearly_double_throughput(tmp_path: Path) -> None:
    # items sleep 10 ms without using the CPU, so even a busy two-core machine shows the speed-up
    args = ("--kind", "mpi", "--items", "60", "--sleep-fixed", "0.01")
    one = launch(1, tmp_path / "one", *args)
    two = launch(2, tmp_path / "two", *args)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    t1 = read_outputs(tmp_path / "one", 1)[0]["elapsed"]
    t2 = read_outputs(tmp_path / "two", 2)[0]["elapsed"]
    assert t1 / t2 > 1.5, f"1 rank {t1:.3f}s, 2 ranks {t2:.3f}s"
