"""The Backend interface every way of sharing out work implements, the serial loop they share, and the handshake.

The handshake (:func:`guarded`): before any rank waits on another for work, every rank says whether its
own setup (config, checkpoint, data, ...) worked, in one allgather. If any failed, every rank raises
the same :class:`~effrep_hpc.errors.JobError` and the job ends cleanly everywhere, with the message
printed once, instead of the healthy ranks waiting forever for the failed one (or an MPI_Abort).
"""

from __future__ import annotations

import abc
import contextlib
import os
import signal
from typing import Any, Callable, ClassVar, Iterable, Iterator, Sequence, TypeVar

from effrep_hpc.errors import Status, settle, status_of

# A test hook: EFFREP_TEST_DIE="RANK:N:SIGNAL" makes that rank kill itself with SIGNAL as it starts its N-th
# item (tests/faults/test_launch_faults.py: a rank that dies outright must end the job, not hang it).
DIE_VAR = "EFFREP_TEST_DIE"

Item = TypeVar("Item")
Result = TypeVar("Result")

Compute = Callable[[Item], Result]
OnResult = Callable[[Item, Result], None]
OnProgress = Callable[[int, int], None]


class WorkerError(RuntimeError):
    """Raised on the writer when another rank's ``compute`` failed; carries that rank's traceback."""

    def __init__(self, rank: int, index: int | None, remote_traceback: str) -> None:
        where = f"item #{index}" if index is not None else "an item"
        super().__init__(
            f"rank {rank} raised while computing {where}; its traceback:\n{remote_traceback.rstrip()}"
        )
        self.rank = rank
        self.index = index
        self.remote_traceback = remote_traceback


class Backend(abc.ABC):
    """One way of sharing ``items`` among processes and collecting results on the writer.

    Every rank calls :meth:`run` with the same ``items``; ``compute(item)`` runs on some rank
    (rank 0 computes too); ``on_result(item, result)`` runs only where ``is_writer``, in the order
    results arrive (not necessarily item order); ``on_progress(done, total)`` follows each
    ``on_result``. ``run`` returns once every item is done. ``compute`` and ``on_result`` must not
    communicate through the backend: other ranks are busy with other items meanwhile.
    """

    kind: ClassVar[str]
    rank: int
    size: int
    is_writer: bool

    @abc.abstractmethod
    def broadcast(self, obj: object) -> object:
        """Return rank 0's ``obj`` on every rank."""

    @abc.abstractmethod
    def allgather(self, obj: object) -> list[object]:
        """Every rank's ``obj``, in rank order, on every rank."""

    @abc.abstractmethod
    def barrier(self) -> None:
        """Wait until every rank has reached this call."""

    @abc.abstractmethod
    def run(
        self,
        items: Iterable[Item],
        compute: Compute,
        on_result: OnResult,
        *,
        on_progress: OnProgress | None = None,
    ) -> None:
        """Compute every item somewhere and hand each result to ``on_result`` on the writer."""

    def owned(self, total: int) -> range:
        """Indices (out of ``total``) of the work this job step answers for: all of it, except in an array task.

        Pools (serial, MPI, torch.distributed) share every item among their ranks; an array task owns a fixed
        block, so a requeued task keeps its block and the tasks' outputs merge into the whole.
        """
        return range(total)

    def close(self) -> None:  # noqa: B027 - a no-op by default, on purpose
        """Release what this backend set up (e.g. a process group it created); default: nothing."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(rank={self.rank}, size={self.size}, is_writer={self.is_writer})"


def run_serial(
    items: Sequence[Item],
    compute: Compute,
    on_result: OnResult,
    on_progress: OnProgress | None = None,
) -> None:
    """Compute ``items`` in order in this process, delivering each result as soon as it exists."""
    total = len(items)
    for done, item in enumerate(items, start=1):
        on_result(item, compute(item))
        if on_progress is not None:
            on_progress(done, total)


@contextlib.contextmanager
def guarded(
    allgather: Callable[[Status], Sequence[Any]], rank: int, also: Sequence[type[BaseException]] = ()
) -> Iterator[None]:
    """Run this rank's setup in the block, then agree with every rank (one ``allgather``) on whether all worked.

    An exception in the block is this rank's contribution (see :func:`effrep_hpc.errors.status_of`;
    ``also``: more exception types that are the user's to fix); if any rank failed, every rank raises
    the same JobError from the lowest failing rank (a process alone gets its own exception back).
    KeyboardInterrupt passes through: the launcher interrupts every rank.
    """
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as exc:
        settle(allgather(status_of(exc, also)), rank, exc)
        raise
    settle(allgather(None), rank)


def die_hook(compute: Callable[[Any], Any], rank: int) -> Callable[[Any], Any]:
    """``compute``, or, when EFFREP_TEST_DIE names this ``rank``, one that kills this process at its N-th item."""
    target, _, rest = os.environ.get(DIE_VAR, "").partition(":")
    if not rest or int(target) != rank:
        return compute
    after, _, name = rest.partition(":")
    started = [0]

    def dying(item: Any) -> Any:
        started[0] += 1
        if started[0] >= int(after):
            os.kill(os.getpid(), getattr(signal, name or "SIGKILL"))
        return compute(item)

    return dying
