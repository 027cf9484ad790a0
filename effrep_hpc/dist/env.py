"""What the launcher told this process through environment variables: MPI, torchrun, SLURM.

All scheduler and launcher specifics live here so the backends only ask "which rank am I, of how
many". Every function takes the environment as a mapping (default ``os.environ``) so tests can
pass a dict instead of patching the process.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Mapping

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
    rank the MPI backend runs serially).
    """
    env = _environ(env)
    have_mpi4py = mpi4py_available() if have_mpi4py is None else have_mpi4py
    mpi_size = mpi_world_size(env)
    several_mpi_ranks = mpi_launched(env) and (mpi_size is None or mpi_size > 1)
    if several_mpi_ranks and have_mpi4py:
        return "mpi"
    if torch_world_size(env) > 1:
        return "torch"
    if several_mpi_ranks and mpi_size is not None:
        # Falling back to serial would make every rank compute and write everything.
        raise RuntimeError(
            f"launched by an MPI launcher with {mpi_size} ranks but mpi4py is not installed; "
            "pip install 'effrep-hpc[mpi]' or start a single process"
        )
    return "serial"
