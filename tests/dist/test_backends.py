"""Serial and array backends, get_backend's choices and errors, and failures that must propagate."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from effrep_hpc.dist import ArrayBackend, SerialBackend, WorkerError, block, get_backend
from effrep_hpc.dist.env import LOCAL_RANK_VARS, MPI_RANK_VARS, MPI_SIZE_VARS

ROOT = Path(__file__).resolve().parents[2]


class Recorder:
    """Collects on_result and on_progress calls."""

    def __init__(self) -> None:
        self.results: list[tuple[object, object]] = []
        self.progress: list[tuple[int, int]] = []

    def on_result(self, item: object, result: object) -> None:
        self.results.append((item, result))

    def on_progress(self, done: int, total: int) -> None:
        self.progress.append((done, total))


@pytest.fixture
def plain_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """An environment without any launcher variables, whatever started pytest."""
    for name in (*MPI_SIZE_VARS, *MPI_RANK_VARS, *LOCAL_RANK_VARS, "WORLD_SIZE", "RANK", "SLURM_STEP_NUM_TASKS",
                 "SLURM_STEP_ID", "SLURM_STEPID"):
        monkeypatch.delenv(name, raising=False)
    for name in [k for k in os.environ if k.startswith("SLURM_ARRAY")]:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_serial_delivers_every_result_in_order_with_progress() -> None:
    backend = SerialBackend()
    rec = Recorder()
    items = [{"tile": i} for i in range(7)]
    backend.run(items, lambda it: it["tile"] ** 2, rec.on_result, on_progress=rec.on_progress)
    assert rec.results == [({"tile": i}, i * i) for i in range(7)]
    assert rec.progress == [(i, 7) for i in range(1, 8)]
    assert (backend.rank, backend.size, backend.is_writer) == (0, 1, True)
    assert backend.broadcast({"seed": 3}) == {"seed": 3}


def test_serial_accepts_a_generator_and_no_items() -> None:
    rec = Recorder()
    SerialBackend().run((i for i in range(3)), str, rec.on_result)
    assert rec.results == [(0, "0"), (1, "1"), (2, "2")]
    empty = Recorder()
    SerialBackend().run([], str, empty.on_result, on_progress=empty.on_progress)
    assert empty.results == [] and empty.progress == []


@pytest.mark.parametrize("backend", [SerialBackend(), ArrayBackend(task_id=0, num_tasks=1)], ids=repr)
def test_compute_exception_propagates_unchanged(backend: SerialBackend) -> None:
    rec = Recorder()

    def compute(item: int) -> int:
        if item == 2:
            raise ZeroDivisionError(f"bad cell {item}")
        return item

    with pytest.raises(ZeroDivisionError, match="bad cell 2"):
        backend.run(range(5), compute, rec.on_result)
    # results before the failure were delivered (a resumable run keeps them), none after it
    assert rec.results == [(0, 0), (1, 1)]


def test_array_tasks_together_compute_every_item_once() -> None:
    items = [f"run-{i}" for i in range(23)]
    seen: list[object] = []
    for task in range(4):
        backend = ArrayBackend(task_id=task, num_tasks=4)
        rec = Recorder()
        backend.run([items[i] for i in backend.owned(len(items))], str.upper, rec.on_result, on_progress=rec.on_progress)
        assert [item for item, _ in rec.results] == block(items, task, 4)
        assert all(result == item.upper() for item, result in rec.results)
        assert rec.progress[-1] == (len(block(items, task, 4)), len(block(items, task, 4)))
        assert (backend.rank, backend.size, backend.is_writer) == (task, 4, True)
        first, last = items.index(rec.results[0][0]), items.index(rec.results[-1][0])
        assert backend.bounds(len(items)) == (first, last + 1)
        seen.extend(item for item, _ in rec.results)
    assert seen == items


def test_array_task_from_slurm_environment() -> None:
    env = {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_MAX": "13"}
    backend = ArrayBackend(env=env)
    assert (backend.rank, backend.size) == (2, 4)
    rec = Recorder()
    backend.run(list(backend.owned(10)), lambda x: x, rec.on_result)
    assert [item for item, _ in rec.results] == [6, 7]
    # broadcast and barrier do not communicate: tasks may run hours apart
    assert backend.broadcast("mine") == "mine"
    backend.barrier()


def test_array_explicit_arguments_override_environment(plain_env: pytest.MonkeyPatch) -> None:
    plain_env.setenv("SLURM_ARRAY_TASK_ID", "1")
    plain_env.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    assert (get_backend("array").rank, get_backend("array").size) == (1, 2)
    backend = get_backend("array", task_id=0, num_tasks=5)
    assert (backend.rank, backend.size) == (0, 5)
    with pytest.raises(ValueError, match=r"0\.\.4"):
        get_backend("array", task_id=5, num_tasks=5)


def test_array_outside_slurm_says_how_to_fix(plain_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="SLURM_ARRAY_TASK_ID is unset"):
        get_backend("array")


def test_auto_is_serial_for_a_plain_process(plain_env: pytest.MonkeyPatch) -> None:
    assert isinstance(get_backend(), SerialBackend)
    plain_env.setenv("SLURM_ARRAY_TASK_ID", "0")
    plain_env.setenv("SLURM_ARRAY_TASK_COUNT", "3")
    assert isinstance(get_backend("auto"), SerialBackend)


def test_auto_takes_options_of_any_backend_and_ignores_the_others(plain_env: pytest.MonkeyPatch) -> None:
    # one config ({prefetch, chunk}) must work under mpiexec, torchrun and plain python alike
    assert isinstance(get_backend("auto", prefetch=3, chunk=2), SerialBackend)


def test_unknown_kind_names_the_valid_ones() -> None:
    valid = "valid: array, auto, mpi, serial, torch"
    with pytest.raises(ValueError, match=rf"'mpl'; did you mean 'mpi'\?.*{valid}"):
        get_backend("mpl")


def test_unknown_option_names_the_closest_one() -> None:
    with pytest.raises(ValueError, match=r"'prefech' \(did you mean 'prefetch'\?\)"):
        get_backend("auto", prefech=2)
    with pytest.raises(ValueError, match=r"'serial' backend: 'prefetch'.*valid: none"):
        get_backend("serial", prefetch=2)


def test_backend_options_are_checked_before_mpi_or_torch_load() -> None:
    with pytest.raises(ValueError, match="prefetch must be an integer >= 1"):
        get_backend("mpi", prefetch=0)
    with pytest.raises(ValueError, match="chunk must be an integer >= 1"):
        get_backend("torch", chunk=0)
    with pytest.raises(ValueError, match="'gloo', 'nccl' or None"):
        get_backend("torch", backend="mpi")


def test_worker_error_names_rank_item_and_remote_traceback() -> None:
    err = WorkerError(3, 17, "Traceback ...\nValueError: nan in tile\n")
    assert "rank 3" in str(err) and "item #17" in str(err) and "ValueError: nan in tile" in str(err)
    assert (err.rank, err.index) == (3, 17)


def test_importing_dist_loads_neither_mpi4py_nor_torch() -> None:
    # a workstation without mpi4py must still import the package (and MPI must not start)
    code = "import sys, effrep_hpc.dist; print(sorted(m for m in ('mpi4py', 'torch') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "[]"
