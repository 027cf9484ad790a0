"""How work is shared out: one Backend interface over serial, MPI, torch.distributed and SLURM array tasks.

dist/ knows nothing about neural nets: it hands out picklable work items (grid tiles, sweep runs,
sensitivity cells) and delivers results to the writer. Backends that need mpi4py or torch import
them only when created.
"""

from __future__ import annotations

from effrep_hpc.dist.array import ArrayBackend, block, block_bounds
from effrep_hpc.dist.base import Backend, WorkerError, run_serial
from effrep_hpc.dist.env import detect_kind, local_rank
from effrep_hpc.dist.factory import KINDS, get_backend
from effrep_hpc.dist.mpi import abort_on_error
from effrep_hpc.dist.serial import SerialBackend

__all__ = [
    "KINDS",
    "ArrayBackend",
    "Backend",
    "SerialBackend",
    "WorkerError",
    "abort_on_error",
    "block",
    "block_bounds",
    "detect_kind",
    "get_backend",
    "local_rank",
    "run_serial",
]
