"""`dist:` how the work of one job is shared out (one section for every sharded experiment, validated once)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass
class DistConfig:
    """The backend of dist/: ``auto`` follows the launcher (mpiexec, torchrun, srun); ``array`` is a SLURM array task."""

    backend: Literal["auto", "serial", "mpi", "torch", "array"] = "auto"
    task_id: Optional[int] = None  # array backend: this task's index (default: from SLURM)
    num_tasks: Optional[int] = None  # array backend: number of tasks (default: from SLURM)

    def _check(self) -> list[str]:
        problems = []
        if self.backend != "array" and (self.task_id is not None or self.num_tasks is not None):
            problems.append("dist.task_id/num_tasks: only used with dist.backend=array")
        if self.num_tasks is not None and self.num_tasks < 1:
            problems.append(f"dist.num_tasks: must be >= 1 (got {self.num_tasks})")
        if self.task_id is not None and self.num_tasks is not None and not 0 <= self.task_id < self.num_tasks:
            problems.append(f"dist.task_id: must be in 0..{self.num_tasks - 1} (got {self.task_id})")
        return problems

    def options(self) -> dict[str, int]:
        """Keyword options for ``dist.get_backend`` (only the array backend takes any)."""
        if self.backend != "array":
            return {}
        return {k: v for k, v in (("task_id", self.task_id), ("num_tasks", self.num_tasks)) if v is not None}
