"""Reading the launcher's environment: local rank, SLURM array task, and what 'auto' picks."""

from __future__ import annotations

import pytest

from effrep_hpc.dist import detect_kind, local_rank
from effrep_hpc.dist.env import array_task, mpi_world_size, torch_rank_and_size


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
    # serial on 4 ranks would have every rank compute and write everything
    with pytest.raises(RuntimeError, match="4 ranks but mpi4py is not installed"):
        detect_kind(MPICH_4, have_mpi4py=False)


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
