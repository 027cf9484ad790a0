"""Reading the launcher's environment: local rank, SLURM array task, and what 'auto' picks."""

from __future__ import annotations

import pytest

from effrep_hpc.dist import detect_kind, local_rank
from effrep_hpc.dist.env import (
    array_task,
    check_step,
    launch_rank_and_size,
    local_size,
    mpi_world_size,
    thread_choice,
    threads_per_rank,
    torch_rank_and_size,
)
from effrep_hpc.errors import JobError


def test_local_rank_prefers_torchrun_then_mpi_then_slurm() -> None:
    assert local_rank({}) == 0
    assert local_rank({"SLURM_LOCALID": "3"}) == 3
    assert local_rank({"SLURM_LOCALID": "3", "MPI_LOCALRANKID": "1"}) == 1
    assert local_rank({"SLURM_LOCALID": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "2"}) == 2
    assert local_rank({"SLURM_LOCALID": "3", "OMPI_COMM_WORLD_LOCAL_RANK": "2", "LOCAL_RANK": "5"}) == 5


def test_malformed_variable_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="LOCAL_RANK='zero'"):
        local_rank({"LOCAL_RANK": "zero"})


@pytest.mark.parametrize(
    "env,expected",
    [
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "4"}, (2, 4)),
        ({"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_MAX": "9"}, (0, 10)),
        # --array=5-9: ids 5..9 are tasks 0..4
        ({"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_MIN": "5", "SLURM_ARRAY_TASK_MAX": "9"}, (2, 5)),
        (
            {
                "SLURM_ARRAY_TASK_ID": "7",
                "SLURM_ARRAY_TASK_MIN": "5",
                "SLURM_ARRAY_TASK_MAX": "9",
                "SLURM_ARRAY_TASK_COUNT": "5",
            },
            (2, 5),
        ),
        # --array=0-8:4: ids 0, 4, 8
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_MAX": "8",
                "SLURM_ARRAY_TASK_STEP": "4",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            (1, 3),
        ),
    ],
)
def test_array_task_index_and_count(env: dict[str, str], expected: tuple[int, int]) -> None:
    assert array_task(env) == expected


@pytest.mark.parametrize(
    "env,match",
    [
        ({}, "task_id= and num_tasks="),
        ({"SLURM_ARRAY_TASK_ID": "1"}, "how many array tasks"),
        ({"SLURM_ARRAY_TASK_ID": "4", "SLURM_ARRAY_TASK_COUNT": "4"}, "not one of the 4 ids"),
        # --array=1,4,9 gives MIN=1 MAX=9 COUNT=3: ids are not one evenly spaced range
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_MIN": "1",
                "SLURM_ARRAY_TASK_MAX": "9",
                "SLURM_ARRAY_TASK_COUNT": "3",
            },
            "do not form one range",
        ),
    ],
)
def test_array_task_errors_say_what_to_do(env: dict[str, str], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        array_task(env)


MPICH_4 = {"PMI_RANK": "1", "PMI_SIZE": "4", "PMI_FD": "9"}
OPENMPI_2 = {"OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"}
TORCHRUN_2 = {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "x", "MASTER_PORT": "1"}


@pytest.mark.parametrize(
    "env,have_mpi4py,expected",
    [
        ({}, True, "serial"),
        (MPICH_4, True, "mpi"),
        (OPENMPI_2, True, "mpi"),
        ({"PMI_RANK": "0", "PMI_SIZE": "1"}, True, "serial"),  # mpiexec -n 1: no MPI_Init needed
        ({"PMIX_RANK": "0"}, True, "mpi"),  # PMIx does not say the size; MPI copes with 1 rank
        # a user's mpiexec settings in the shell do not mean this process was launched by it
        ({"HYDRA_HOST_FILE": "/home/u/hosts", "HYDRA_LAUNCHER": "ssh"}, True, "serial"),
        (TORCHRUN_2, True, "torch"),
        (TORCHRUN_2, False, "torch"),
        ({"WORLD_SIZE": "1"}, True, "serial"),
        ({**MPICH_4, **TORCHRUN_2}, True, "mpi"),
        ({**MPICH_4, **TORCHRUN_2}, False, "torch"),
        # an array task looks like a plain process; the launcher must ask for 'array' itself
        ({"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "8"}, True, "serial"),
    ],
)
def test_auto_selection_from_environment(env: dict[str, str], have_mpi4py: bool, expected: str) -> None:
    assert detect_kind(env, have_mpi4py=have_mpi4py) == expected


def test_several_mpi_ranks_without_mpi4py_is_an_error_not_a_serial_run() -> None:
    # serial on 4 ranks would have every rank compute and write everything; every rank raises it, rank 0 reports
    with pytest.raises(JobError, match="4 ranks but mpi4py is not installed") as info:
        detect_kind(MPICH_4, have_mpi4py=False)
    assert (info.value.exit_code, info.value.print_here) == (2, False)  # MPICH_4 is rank 1


# `srun -n 4 effrep ...` without --mpi: SLURM's step variables only (a batch script has no SLURM_STEP_*)
SRUN_4 = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_STEP_NUM_TASKS": "4", "SLURM_PROCID": "2",
          "SLURM_LOCALID": "0", "SLURM_NODEID": "1", "SLURM_STEP_TASKS_PER_NODE": "1(x2),2"}
BATCH_SCRIPT = {"SLURM_JOB_ID": "7", "SLURM_NTASKS": "4", "SLURM_PROCID": "0", "SLURM_TASKS_PER_NODE": "4"}


def test_srun_tasks_without_mpi_or_torch_variables_are_refused_with_how_to_launch() -> None:
    with pytest.raises(JobError, match=r"srun started 4 tasks .*srun --mpi=pmi2.*dist.backend=torch") as info:
        detect_kind(SRUN_4, have_mpi4py=True)
    assert (info.value.exit_code, info.value.print_here) == (2, False)  # task 2 stays quiet; task 0 reports
    with pytest.raises(JobError) as info:
        detect_kind({**SRUN_4, "SLURM_PROCID": "0"}, have_mpi4py=True)
    assert info.value.print_here
    # the same step with MPI (srun --mpi=pmi2) or torch variables is fine
    assert detect_kind({**SRUN_4, "PMI_RANK": "2", "PMI_SIZE": "4"}, have_mpi4py=True) == "mpi"
    assert detect_kind({**SRUN_4, "RANK": "2", "WORLD_SIZE": "4"}, have_mpi4py=True) == "torch"
    # one task, or the batch script itself (SLURM_NTASKS=4 but no step), runs serially
    assert detect_kind({**SRUN_4, "SLURM_STEP_NUM_TASKS": "1"}, have_mpi4py=True) == "serial"
    assert detect_kind(BATCH_SCRIPT, have_mpi4py=True) == "serial"
    # older SLURM: a step id and SLURM_NTASKS
    with pytest.raises(JobError, match="srun started 3 tasks"):
        check_step({"SLURM_STEP_ID": "0", "SLURM_NTASKS": "3", "SLURM_PROCID": "1"})


def test_local_size_from_launchers_and_srun_task_list() -> None:
    assert local_size({}) == 1
    assert local_size({"MPI_LOCALNRANKS": "2", "PMI_SIZE": "4"}) == 2
    assert local_size({"LOCAL_WORLD_SIZE": "8", "OMPI_COMM_WORLD_LOCAL_SIZE": "4"}) == 8
    assert local_size(SRUN_4) == 1  # node 1 of "1(x2),2"
    assert local_size({**SRUN_4, "SLURM_NODEID": "2"}) == 2
    assert local_size(BATCH_SCRIPT) == 1  # the batch script is one process, whatever the allocation holds


@pytest.mark.parametrize(
    "env,cores,expected",
    [
        ({}, 16, 16),  # one process alone: all its cores
        ({"MPI_LOCALNRANKS": "4", "PMI_SIZE": "8"}, 16, 4),  # 4 ranks on this node share 16 cores
        ({"LOCAL_WORLD_SIZE": "3"}, 16, 5),
        ({"MPI_LOCALNRANKS": "4"}, 2, 1),  # never 0
        ({"SLURM_CPUS_PER_TASK": "6", "MPI_LOCALNRANKS": "4"}, 16, 6),
        ({"OMP_NUM_THREADS": "2", "SLURM_CPUS_PER_TASK": "6"}, 16, 2),  # the user's own setting first
    ],
)
def test_threads_per_rank_shares_the_cores_among_local_ranks(env: dict[str, str], cores: int, expected: int) -> None:
    assert threads_per_rank(env, cores=cores)[0] == expected


def test_thread_choice_keeps_run_threads_and_reports_once_per_launch() -> None:
    mpi_rank = {"PMI_RANK": "0", "PMI_SIZE": "2", "MPI_LOCALNRANKS": "2", "OMP_NUM_THREADS": "3"}
    assert thread_choice(5, mpi_rank) == (5, None)  # run.threads=N > 0 wins, nothing to report
    threads, note = thread_choice(0, mpi_rank)
    assert threads == 3 and note is not None and note.startswith("threads: 3 per rank (OMP_NUM_THREADS=3)")
    assert thread_choice(0, {**mpi_rank, "PMI_RANK": "1"})[1] is None  # other ranks stay quiet
    assert thread_choice(0, {"OMP_NUM_THREADS": "3"}) == (3, None)  # a process alone says nothing
    assert launch_rank_and_size(SRUN_4) == (2, 4)
    assert launch_rank_and_size(BATCH_SCRIPT) == (0, 1)


def test_pmix_rank_above_zero_implies_several_ranks() -> None:
    assert mpi_world_size({"PMIX_RANK": "3"}) == 4
    assert mpi_world_size({"PMIX_RANK": "0"}) is None


def test_torch_rank_from_torchrun_or_srun() -> None:
    assert torch_rank_and_size({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "7"}) == (1, 2)
    assert torch_rank_and_size({"SLURM_PROCID": "3", "SLURM_NTASKS": "4"}) == (3, 4)
    with pytest.raises(ValueError, match="torchrun"):
        torch_rank_and_size({})
    with pytest.raises(ValueError, match="outside a world of size 2"):
        torch_rank_and_size({"RANK": "2", "WORLD_SIZE": "2"})
