"""The Backend interface every way of sharing out work implements, and the serial loop they share."""

from __future__ import annotations

import abc
from typing import Callable, ClassVar, Iterable, Sequence, TypeVar

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

    def close(self) -> None:
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
