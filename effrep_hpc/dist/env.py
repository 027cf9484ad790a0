"""What the launcher told this process through environment variables: MPI, torchrun, SLURM.

All scheduler and launcher specifics live here so the backends only ask "which rank am I, of how
many". Every function takes the environment as a mapping (default ``os.environ``) so tests can
pass a dict instead of patching the process.
"""

from __future__ import annotations

import importlib.util
import os
import re
from typing import Mapping

from effrep_hpc.errors import JobError

# Launchers name the world size differently: Open MPI, MPICH/Intel MPI hydra and Slurm's PMI/PMI2
# (PMI_SIZE), MVAPICH. PMIx (srun --mpi=pmix, prterun) sets no standard size variable.
MPI_SIZE_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")
MPI_RANK_VARS = ("OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_RANK")
# Hydra (MPICH, Intel MPI) launches are seen through PMI_RANK/PMI_SIZE: HYDRA_* variables are
# settings users export for mpiexec itself (HYDRA_HOST_FILE, ...), not signs of being launched.
# First match wins: torchrun's LOCAL_RANK is the most specific, SLURM_LOCALID the most general.
LOCAL_RANK_VARS = (
    "LOCAL_RANK",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MPI_LOCALRANKID",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "PALS_LOCAL_RANKID",
    "SLURM_LOCALID",
)
# How many ranks of this launch share this node: torchrun, Open MPI, MPICH hydra, MVAPICH, Cray PALS.
LOCAL_SIZE_VARS = (
    "LOCAL_WORLD_SIZE",
    "OMPI_COMM_WORLD_LOCAL_SIZE",
    "MPI_LOCALNRANKS",
    "MV2_COMM_WORLD_LOCAL_SIZE",
    "PALS_LOCAL_SIZE",
)


def _environ(env: Mapping[str, str] | None) -> Mapping[str, str]:
    return os.environ if env is None else env


def env_int(env: Mapping[str, str], name: str) -> int | None:
    """Parse ``env[name]`` as an int (None when unset or empty); raise ValueError naming the variable."""
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def local_rank(env: Mapping[str, str] | None = None) -> int:
    """This process's index among the ranks on its node (0 if no launcher says); picks the CUDA device."""
    env = _environ(env)
    for name in LOCAL_RANK_VARS:
        value = env_int(env, name)
        if value is not None:
            return value
    return 0


def local_size(env: Mapping[str, str] | None = None) -> int:
    """How many ranks of this launch run on this node (1 if no launcher says); srun's per-node task list last."""
    env = _environ(env)
    for name in LOCAL_SIZE_VARS:
        value = env_int(env, name)
        if value is not None:
            return max(1, value)
    # srun: SLURM_STEP_TASKS_PER_NODE="2(x3),1" lists the tasks of every node of the step (not set in a batch script)
    per_node: list[int] = []
    for part in env.get("SLURM_STEP_TASKS_PER_NODE", "").split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\(x(\d+)\))?\s*", part)
        if match:
            per_node += [int(match.group(1))] * int(match.group(2) or 1)
    node = env_int(env, "SLURM_NODEID") or 0
    return max(1, per_node[node]) if 0 <= node < len(per_node) else 1


def threads_per_rank(env: Mapping[str, str] | None = None, cores: int | None = None) -> tuple[int, str]:
    """Torch threads for this rank when ``run.threads`` is 0, and why: OMP_NUM_THREADS if set, else
    SLURM_CPUS_PER_TASK, else the cores this process may use (``cores``: its CPU affinity) over the
    ranks of this launch on this node, so that P ranks on a node do not each start a thread per core."""
    env = _environ(env)
    for name in ("OMP_NUM_THREADS", "SLURM_CPUS_PER_TASK"):
        value = env_int(env, name)
        if value is not None and value > 0:
            return value, f"{name}={value}"
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    ranks = local_size(env)
    return max(1, cores // ranks), f"{cores} core(s) / {ranks} rank(s) on this node"


def launch_rank_and_size(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, number of processes) of this launch by MPI, torchrun or srun, from the environment; (0, 1) alone."""
    env = _environ(env)
    size = mpi_world_size(env) or torch_world_size(env)
    if size > 1:
        for name in (*MPI_RANK_VARS, "RANK"):
            value = env_int(env, name)
            if value is not None:
                return value, size
    tasks = slurm_step_tasks(env)
    return (env_int(env, "SLURM_PROCID") or 0, tasks) if tasks > 1 else (0, 1)


def slurm_step_tasks(env: Mapping[str, str] | None = None) -> int:
    """Tasks of the srun step this process belongs to (1 outside a step: a batch script is not one)."""
    env = _environ(env)
    tasks = env_int(env, "SLURM_STEP_NUM_TASKS")
    if tasks is None and (env.get("SLURM_STEP_ID") or env.get("SLURM_STEPID")):
        tasks = env_int(env, "SLURM_NTASKS")
    return tasks or 1


def mpi_launched(env: Mapping[str, str] | None = None) -> bool:
    """True if an MPI launcher (mpiexec, mpirun, srun with PMI/PMIx) started this process."""
    env = _environ(env)
    return any(name in env for name in MPI_SIZE_VARS + MPI_RANK_VARS)


def mpi_world_size(env: Mapping[str, str] | None = None) -> int | None:
    """The MPI world size the launcher announced, or None when it did not say (e.g. PMIx)."""
    env = _environ(env)
    for name in MPI_SIZE_VARS:
        value = env_int(env, name)
        if value is not None:
            return value
    # Under PMIx only the rank is known; any rank but 0 proves there are several.
    pmix_rank = env_int(env, "PMIX_RANK")
    if pmix_rank is not None and pmix_rank > 0:
        return pmix_rank + 1
    return None


def torch_world_size(env: Mapping[str, str] | None = None) -> int:
    """WORLD_SIZE as torchrun sets it (1 when unset)."""
    value = env_int(_environ(env), "WORLD_SIZE")
    return 1 if value is None else value


def torch_rank_and_size(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(rank, world size) for torch.distributed: torchrun's RANK/WORLD_SIZE, else SLURM_PROCID/NTASKS."""
    env = _environ(env)
    rank, size = env_int(env, "RANK"), env_int(env, "WORLD_SIZE")
    if rank is None and size is None:
        rank, size = env_int(env, "SLURM_PROCID"), env_int(env, "SLURM_NTASKS")
    if rank is None or size is None:
        raise ValueError(
            "torch.distributed needs this process's rank and the world size: launch with torchrun "
            "(sets RANK and WORLD_SIZE) or srun (sets SLURM_PROCID and SLURM_NTASKS), "
            "or initialise the process group yourself before asking for the 'torch' backend"
        )
    if not 0 <= rank < size:
        raise ValueError(f"rank {rank} is outside a world of size {size}; check RANK and WORLD_SIZE")
    return rank, size


def slurm_job_id(env: Mapping[str, str] | None = None) -> str | None:
    """This process's SLURM job, stable across requeues: ``<array job>_<task>`` for an array task, else SLURM_JOB_ID."""
    env = _environ(env)
    array_job, task = env.get("SLURM_ARRAY_JOB_ID"), env_int(env, "SLURM_ARRAY_TASK_ID")
    if array_job and task is not None:
        return f"{array_job}_{task}"
    return env.get("SLURM_JOB_ID") or None


def array_task(env: Mapping[str, str] | None = None) -> tuple[int, int]:
    """(task index 0..N-1, N) of this SLURM array task, from SLURM_ARRAY_TASK_* variables."""
    env = _environ(env)
    task_id = env_int(env, "SLURM_ARRAY_TASK_ID")
    if task_id is None:
        raise ValueError(
            "not a SLURM array task (SLURM_ARRAY_TASK_ID is unset); submit with sbatch --array=0-N "
            "or pass task_id= and num_tasks= to get_backend('array', ...)"
        )
    low = env_int(env, "SLURM_ARRAY_TASK_MIN")
    high = env_int(env, "SLURM_ARRAY_TASK_MAX")
    count = env_int(env, "SLURM_ARRAY_TASK_COUNT")
    step = env_int(env, "SLURM_ARRAY_TASK_STEP") or 1
    base = 0 if low is None else low
    if count is None:
        if high is None:
            raise ValueError(
                "cannot tell how many array tasks there are: neither SLURM_ARRAY_TASK_COUNT nor "
                "SLURM_ARRAY_TASK_MAX is set; pass num_tasks= to get_backend('array', ...)"
            )
        count = (high - base) // step + 1
    elif low is not None and high is not None and (high - low) // step + 1 != count:
        # e.g. --array=1,4,9: task ids are not one evenly spaced range, so id -> block is ambiguous
        raise ValueError(
            f"array task ids {low}..{high} (step {step}) do not form one range of "
            f"{count} tasks; submit with a range such as --array=0-{count - 1}, "
            "or pass task_id= and num_tasks= explicitly"
        )
    offset = task_id - base
    if offset % step != 0 or not 0 <= offset // step < count:
        raise ValueError(
            f"SLURM_ARRAY_TASK_ID={task_id} is not one of the {count} ids "
            f"{base}, {base + step}, ...; check the --array range"
        )
    return offset // step, count


def mpi4py_available() -> bool:
    """True if mpi4py can be imported (checked without importing it, so MPI is not initialised)."""
    return importlib.util.find_spec("mpi4py") is not None


def detect_kind(env: Mapping[str, str] | None = None, *, have_mpi4py: bool | None = None) -> str:
    """What 'auto' means here: 'mpi' under an MPI launcher with >1 rank, 'torch' if WORLD_SIZE>1, else 'serial'.

    Decided from the environment only: calling MPI_Init outside an MPI launcher can be slow or
    fail. When the launcher does not announce the size (PMIx), 'mpi' is chosen (harmless: with one
    rank the MPI backend runs serially). Several srun tasks with neither MPI nor torch.distributed
    variables are refused (JobError, reported by task 0): each would compute and write everything alone.
    """
    env = _environ(env)
    have_mpi4py = mpi4py_available() if have_mpi4py is None else have_mpi4py
    mpi_size = mpi_world_size(env)
    several_mpi_ranks = mpi_launched(env) and (mpi_size is None or mpi_size > 1)
    if several_mpi_ranks and have_mpi4py:
        return "mpi"
    if torch_world_size(env) > 1:
        return "torch"
    # Falling back to serial would make every rank compute and write everything.
    if several_mpi_ranks and mpi_size is not None:
        rank = next((v for v in (env_int(env, n) for n in MPI_RANK_VARS) if v is not None), 0)
        raise JobError(
            f"launched by an MPI launcher with {mpi_size} ranks but mpi4py is not installed; "
            "pip install 'effrep-hpc[mpi]' or start a single process", print_here=rank == 0,
        )
    check_step(env, "launch MPI ranks with `srun --mpi=pmi2 python -m mpi4py -m effrep_hpc.cli ...` (or `mpiexec "
               "-n N python -m mpi4py -m effrep_hpc.cli ...`), or set dist.backend=torch with MASTER_ADDR and "
               "MASTER_PORT exported (see slurm/README.md)")
    return "serial"


def check_step(env: Mapping[str, str] | None = None, advice: str = "") -> None:
    """Refuse (JobError, reported by task 0) an srun step of several tasks that no MPI or torch.distributed
    variables tie together: each task would believe it is alone and compute and write everything."""
    env = _environ(env)
    tasks = slurm_step_tasks(env)
    if tasks > 1 and not mpi_launched(env) and torch_world_size(env) <= 1:
        raise JobError(
            f"srun started {tasks} tasks but none has MPI or torch.distributed variables, so each would "
            f"work alone on the same files; {advice}", print_here=(env_int(env, "SLURM_PROCID") or 0) == 0,
        )


def thread_choice(threads: int, env: Mapping[str, str] | None = None) -> tuple[int, str | None]:
    """Torch threads for ``run.threads`` (0: :func:`threads_per_rank`), and the line rank 0 of a launch of several
    ranks prints about a choice made for it (None elsewhere)."""
    if threads > 0:
        return threads, None
    threads, why = threads_per_rank(env)
    rank, size = launch_rank_and_size(env)
    note = f"threads: {threads} per rank ({why}); set run.threads=N to choose" if size > 1 and rank == 0 else None
    return threads, note
