"""`launch:` how `effrep submit` sends work to SLURM (or runs it locally through submitit)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional


@dataclass
class LaunchConfig:
    """How `effrep submit` sends work to SLURM (or runs it locally through submitit).

    A preset from configs/clusters/ (``cluster``) fills these first; the config's own ``launch:``
    section and ``launch.key=value`` overrides win over the preset.
    """

    cluster: Optional[str] = None  # preset name in configs/clusters/ or a path to a preset YAML file
    executor: Literal["auto", "slurm", "local"] = "auto"  # auto: slurm when sbatch is on PATH
    folder: Optional[str] = None  # submitit logs, pickles and config snapshots; default <run.out>/submitit
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    time: int = 60  # minutes per job (array task); USR2 arrives signal_delay_s before the end
    nodes: int = 1  # training only; array tasks and merges use one node
    tasks_per_node: int = 1  # training: torch.distributed processes per node
    cpus_per_task: Optional[int] = None
    gpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None  # per node
    array: int = 4  # array tasks for landscape scans and sweeps (--array N overrides)
    array_parallelism: int = 0  # at most this many array tasks run at once; 0: no limit
    merge_time: int = 30  # minutes for the merge job that follows a landscape array
    signal_delay_s: int = 120  # seconds between USR2 and the time limit: time to stop and requeue
    max_requeues: int = 3  # times a task may be requeued after hitting its time limit
    setup: list[str] = field(default_factory=list)  # shell lines run before the job: module load, venv
    srun_args: list[str] = field(default_factory=list)  # extra srun arguments, e.g. --cpu-bind=none
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH option, e.g. {mail-type: END}
    python: Optional[str] = None  # the python that runs the jobs; default: the one running effrep

    def _check(self) -> list[str]:
        problems = []
        for key in ("time", "nodes", "tasks_per_node", "array", "merge_time"):
            if getattr(self, key) < 1:
                problems.append(f"launch.{key}: must be >= 1 (got {getattr(self, key)})")
        for key in ("cpus_per_task", "gpus_per_task"):
            value = getattr(self, key)
            if value is not None and value < (1 if key == "cpus_per_task" else 0):
                problems.append(f"launch.{key}: must be >= {1 if key == 'cpus_per_task' else 0} (got {value})")
        if self.mem_gb is not None and self.mem_gb <= 0:
            problems.append(f"launch.mem_gb: must be > 0 (got {self.mem_gb})")
        for key in ("array_parallelism", "max_requeues", "signal_delay_s"):
            if getattr(self, key) < 0:
                problems.append(f"launch.{key}: must be >= 0 (got {getattr(self, key)})")
        if self.signal_delay_s >= self.time * 60:
            problems.append(
                f"launch.signal_delay_s: {self.signal_delay_s} s is not shorter than launch.time={self.time} min; "
                "the job would be signalled to stop as soon as it starts"
            )
        for key in self.sbatch:
            if str(key).replace("_", "-") in ("array", "dependency", "output", "error", "signal", "job-name"):
                problems.append(f"launch.sbatch.{key}: set by effrep submit itself; remove it")
        return problems


