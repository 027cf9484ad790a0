"""The serial backend: one process, rank 0 of 1, computes and writes everything in item order."""

from __future__ import annotations

from typing import Iterable

from effrep_hpc.dist.base import Backend, Compute, OnProgress, OnResult, run_serial


class SerialBackend(Backend):
    """Rank 0 of 1: ``run`` computes items in order and delivers each result at once."""

    kind = "serial"

    def __init__(self) -> None:
        self.rank = 0
        self.size = 1
        self.is_writer = True

    def broadcast(self, obj: object) -> object:
        """Return ``obj`` (this process is rank 0)."""
        return obj

    def allgather(self, obj: object) -> list[object]:
        """``[obj]`` (the only rank)."""
        return [obj]

    def barrier(self) -> None:
        """Nothing to wait for."""

    def run(
        self,
        items: Iterable[object],
        compute: Compute,
        on_result: OnResult,
        *,
        on_progress: OnProgress | None = None,
    ) -> None:
        """Compute every item in order, calling ``on_result`` and ``on_progress`` after each."""
        run_serial(list(items), compute, on_result, on_progress)
