"""The launch handshake: every rank's setup status in one allgather; a failure anywhere ends every rank alike.

Ranks are simulated by threads that meet in a real allgather (a barrier), so the test shows what each
rank raises, which one reports, and with which exit code, without starting MPI.
"""

from __future__ import annotations

import errno
import threading
from typing import Callable, Optional

import pytest

from effrep_hpc.dist import ArrayBackend, SerialBackend
from effrep_hpc.dist.base import guarded
from effrep_hpc.errors import JobError, UserError, describe


class Diverged(UserError):
    exit_code = 3


def run_ranks(setups: list[Callable[[], None]]) -> list[Optional[BaseException]]:
    """Run ``setups[r]`` as rank r inside ``guarded``; what each rank raised (None: it went on)."""
    size = len(setups)
    slots: list[object] = [None] * size
    barrier = threading.Barrier(size)
    raised: list[Optional[BaseException]] = [None] * size

    def rank_main(rank: int) -> None:
        def allgather(obj: object) -> list[object]:
            slots[rank] = obj
            barrier.wait(timeout=10)
            gathered = list(slots)
            barrier.wait(timeout=10)
            return gathered

        try:
            with guarded(allgather, rank):
                setups[rank]()
        except BaseException as exc:  # noqa: BLE001 - recorded for the assertions
            raised[rank] = exc

    threads = [threading.Thread(target=rank_main, args=(r,)) for r in range(size)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert not any(t.is_alive() for t in threads), "a rank was left waiting"
    return raised


def fine() -> None:
    pass


def missing() -> None:
    raise FileNotFoundError("checkpoint /x/missing.pt does not exist")


def test_all_ranks_fine_go_on() -> None:
    assert run_ranks([fine, fine, fine]) == [None, None, None]


def test_one_failing_rank_ends_every_rank_with_its_message_reported_once() -> None:
    raised = run_ranks([fine, missing, fine])
    assert all(isinstance(e, JobError) for e in raised)
    errors = [e for e in raised if isinstance(e, JobError)]
    assert {(e.rank, e.exit_code) for e in errors} == {(1, 2)}
    assert [e.print_here for e in errors] == [False, True, False]
    assert str(errors[1]) == "checkpoint /x/missing.pt does not exist (on rank 1 of 3)"
    assert isinstance(errors[1].__cause__, FileNotFoundError)


def test_lowest_failing_rank_wins_and_its_exit_code_is_kept() -> None:
    def diverged() -> None:
        raise Diverged("loss is nan")

    raised = run_ranks([fine, diverged, missing])
    assert {(e.rank, e.exit_code, str(e)) for e in raised if isinstance(e, JobError)} == {
        (1, 3, "loss is nan (on ranks 1, 2 of 3)")
    }
    assert [e.print_here for e in raised if isinstance(e, JobError)] == [False, True, False]


def test_a_bug_on_one_rank_ends_every_rank_with_exit_1_and_keeps_its_traceback_as_cause() -> None:
    def bug() -> None:
        raise TypeError("unsupported operand")

    raised = run_ranks([bug, fine])
    assert all(isinstance(e, JobError) and e.exit_code == 1 for e in raised)
    assert isinstance(raised[0].__cause__, TypeError) and raised[1].__cause__ is None  # type: ignore[union-attr]


def test_a_process_alone_gets_its_own_exception_back() -> None:
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        with guarded(SerialBackend().allgather, 0):
            missing()
    with pytest.raises(KeyboardInterrupt):
        with guarded(lambda obj: [obj, None], 0):
            raise KeyboardInterrupt


def test_serial_and_array_allgather_is_their_own_object() -> None:
    assert SerialBackend().allgather({"a": 1}) == [{"a": 1}]
    assert ArrayBackend(task_id=1, num_tasks=3).allgather(5) == [5]


@pytest.mark.parametrize(
    "exc,code,words",
    [
        (OSError(errno.ENOSPC, "No space left on device", "/scratch/s.h5"), 2, ["no space left", "/scratch/s.h5"]),
        (PermissionError(errno.EACCES, "Permission denied", "/ro/out"), 2, ["permission denied", "/ro/out"]),
        (KeyError("unknown model 'vgg'"), 2, ["unknown model 'vgg'"]),
        (Diverged("loss is nan at epoch 2"), 3, ["loss is nan"]),
        (ValueError("bad shape"), 2, ["bad shape"]),
    ],
)
def test_describe_gives_one_line_and_exit_code_for_what_the_user_can_fix(exc: BaseException, code: int, words: list[str]) -> None:
    described = describe(exc)
    assert described is not None and described[0] == code and "\n" not in described[1]
    assert all(w in described[1] for w in words), described


def test_describe_leaves_bugs_alone() -> None:
    assert describe(TypeError("x")) is None and describe(RuntimeError("x")) is None
    assert describe(RuntimeError("busy"), also=(RuntimeError,)) == (2, "busy")
