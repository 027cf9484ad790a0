"""The torch.distributed backend: static strided items, results gathered to rank 0 in rounds.

For launches by torchrun or srun where MPI is not available. Uses the process group that is
already initialised, else initialises one from ``env://`` (gloo on CPU, nccl when CUDA is
available; with nccl the CUDA device is set from the local rank first, since object collectives
run on ``torch.cuda.current_device()``).

Scheme: rank r computes items r, r + size, r + 2*size, ... . Items are taken in rounds of
``size * chunk`` consecutive indices; in each round every rank computes its (up to ``chunk``)
items, then the ranks make two collectives: an ``all_reduce`` of a failure flag, and a
``gather_object`` of the round's results to rank 0, which calls ``on_result`` for them in index
order. So there are two collectives per round of ``size * chunk`` items, none per item, and a
barrier at the end so that ``run`` returns everywhere only after the last delivery. Static
assignment means a round lasts as long as its slowest rank; use the MPI backend when item costs
vary a lot. A larger ``chunk`` means fewer collectives but more results lost if a rank dies.

Failures: if ``compute`` raises on any rank, the flag tells every rank at the end of that round;
the failing rank re-raises its exception, rank 0 raises :class:`WorkerError` with the failing
rank's traceback, and the other ranks raise WorkerError too, so no rank is left in a collective.
An exception in ``on_result`` on rank 0 leaves the other ranks in the next collective until the
launcher (torchrun, ``srun --kill-on-bad-exit``) or the process group timeout ends them.
"""

from __future__ import annotations

import os
import traceback
from datetime import timedelta
from typing import Any, Iterable

from effrep_hpc.dist import env as envmod
from effrep_hpc.dist.base import Backend, Compute, OnProgress, OnResult, WorkerError, run_serial


class TorchBackend(Backend):
    """Ranks of a torch.distributed group sharing items statically; rank 0 writes.

    ``backend``: 'gloo' or 'nccl' when this class creates the process group (None: nccl if CUDA is
    available, else gloo). ``chunk``: items per rank per round (>= 1). ``timeout_s``: collective
    timeout when this class creates the group (None: torch's default).
    """

    kind = "torch"

    def __init__(self, *, backend: str | None = None, chunk: int = 1, timeout_s: float | None = None) -> None:
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
            raise ValueError(f"chunk must be an integer >= 1, got {chunk!r}")
        if backend not in (None, "gloo", "nccl"):
            raise ValueError(f"backend must be 'gloo', 'nccl' or None, got {backend!r}")
        import torch
        import torch.distributed as dist

        if not dist.is_available():
            raise RuntimeError("this torch build has no torch.distributed; use the 'mpi' or 'serial' backend")
        self._torch = torch
        self._dist = dist
        self._chunk = chunk
        self._owns_group = False
        if not dist.is_initialized():
            rank, size = envmod.torch_rank_and_size()
            missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(name)]
            if missing:
                raise ValueError(
                    f"torch.distributed needs {' and '.join(missing)} in the environment: torchrun "
                    "sets them; under srun export MASTER_ADDR=$(scontrol show hostnames "
                    "$SLURM_JOB_NODELIST | head -n1) and MASTER_PORT=29500"
                )
            if backend is None:
                backend = "nccl" if torch.cuda.is_available() else "gloo"
            if backend == "nccl":
                # modulo: with one visible GPU per task (--gpus-per-task=1) every task uses device 0
                torch.cuda.set_device(envmod.local_rank() % torch.cuda.device_count())
            kwargs: dict[str, Any] = {
                "backend": backend, "init_method": "env://", "rank": rank, "world_size": size
            }
            if timeout_s is not None:
                kwargs["timeout"] = timedelta(seconds=timeout_s)
            dist.init_process_group(**kwargs)
            self._owns_group = True
        elif backend is not None and backend not in str(dist.get_backend()):
            raise ValueError(
                f"the process group is already initialised with {dist.get_backend()!r}, not {backend!r}"
            )
        on_gpu = "nccl" in str(dist.get_backend())  # may read "cpu:gloo,cuda:nccl"
        self._device = torch.device("cuda", torch.cuda.current_device()) if on_gpu else torch.device("cpu")
        self.rank = dist.get_rank()
        self.size = dist.get_world_size()
        self.is_writer = self.rank == 0

    def broadcast(self, obj: object) -> object:
        """Return rank 0's ``obj`` on every rank."""
        box = [obj if self.rank == 0 else None]
        self._dist.broadcast_object_list(box, src=0, device=self._device)
        return box[0]

    def allgather(self, obj: object) -> list[object]:
        """Every rank's ``obj``, in rank order."""
        box: list[object] = [None] * self.size
        self._dist.all_gather_object(box, obj)
        return box

    def barrier(self) -> None:
        """Wait until every rank has reached this call."""
        self._dist.barrier()

    def close(self) -> None:
        """Destroy the process group if this backend created it."""
        if self._owns_group and self._dist.is_initialized():
            self._dist.destroy_process_group()
            self._owns_group = False

    def run(
        self,
        items: Iterable[object],
        compute: Compute,
        on_result: OnResult,
        *,
        on_progress: OnProgress | None = None,
    ) -> None:
        """Compute items strided over ranks; gather each round's results to rank 0 and deliver them."""
        items = list(items)
        total = len(items)
        counts: list[Any] = [None] * self.size
        self._dist.all_gather_object(counts, total)
        if len(set(counts)) != 1:
            raise ValueError(
                f"ranks called run with different numbers of items {counts}; "
                "every rank must pass the same items"
            )
        if self.size == 1:
            run_serial(items, compute, on_result, on_progress)
            return
        per_round = self.size * self._chunk
        done = 0
        for start in range(0, total, per_round):
            stop = min(total, start + per_round)
            mine: list[tuple[int, object]] = []
            failure: tuple[int, str] | None = None
            exc: Exception | None = None
            for index in range(start + self.rank, stop, self.size):
                try:
                    mine.append((index, compute(items[index])))
                except Exception as err:  # noqa: BLE001 - _check_round re-raises it on every rank
                    failure, exc = (index, traceback.format_exc()), err
                    break
            self._check_round(failure, exc)
            gathered: list[Any] | None = [None] * self.size if self.rank == 0 else None
            self._dist.gather_object(mine, gathered, dst=0)
            if gathered is None:
                continue
            for index, result in sorted((pair for part in gathered for pair in part), key=lambda p: p[0]):
                on_result(items[index], result)
                done += 1
                if on_progress is not None:
                    on_progress(done, total)
        # as with MPI: run returns on every rank only once rank 0 has delivered everything
        self._dist.barrier()

    def _check_round(self, failure: tuple[int, str] | None, exc: Exception | None) -> None:
        """Make every rank raise if any rank's compute failed in this round."""
        # MAX over (rank + 1) of the failing ranks tells every rank who failed
        flag = self._torch.tensor([0 if failure is None else self.rank + 1], device=self._device)
        self._dist.all_reduce(flag, op=self._dist.ReduceOp.MAX)
        failed_rank = int(flag.item()) - 1
        if failed_rank < 0:
            return
        reports: list[Any] | None = [None] * self.size if self.rank == 0 else None
        self._dist.gather_object(failure, reports, dst=0)
        if exc is not None:
            raise exc
        if reports is not None:
            index, text = reports[failed_rank]
            raise WorkerError(failed_rank, index, text)
        raise WorkerError(failed_rank, None, "(sent to rank 0, whose log shows it)")
