"""The job environment ("my rank, task id, job id") and the torch.distributed variables derived from it."""

from __future__ import annotations

import os

import pytest

from effrep_hpc.launch.env import PORT_BASE, PORT_SPAN, current_env
from effrep_hpc.launch.tasks import DistributedTask

MULTINODE = {
    "SLURM_JOB_ID": "4711",
    "SLURM_NTASKS": "8",
    "SLURM_JOB_NUM_NODES": "2",
    "SLURM_NODEID": "1",
    "SLURM_PROCID": "6",
    "SLURM_LOCALID": "2",
    "SLURM_JOB_NODELIST": "gpu[07-08]",
}


def test_plain_slurm_variables_give_rank_and_rendezvous() -> None:
    job = current_env(MULTINODE)
    assert (job.scheduler, job.job_id, job.rank, job.local_rank, job.world_size) == ("slurm", "4711", 6, 2, 8)
    assert job.hostnames == ("gpu07", "gpu08") and job.master_addr == "gpu07"
    env = job.torch_env()
    assert env["MASTER_ADDR"] == "gpu07" and env["RANK"] == "6" and env["WORLD_SIZE"] == "8"
    assert env["LOCAL_RANK"] == "2" and env["LOCAL_WORLD_SIZE"] == "4"
    assert int(env["MASTER_PORT"]) == PORT_BASE + 4711 % PORT_SPAN


def test_array_task_ids_and_ports_of_two_tasks_differ() -> None:
    a = current_env({"SLURM_JOB_ID": "101", "SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "0"})
    b = current_env({"SLURM_JOB_ID": "102", "SLURM_ARRAY_JOB_ID": "100", "SLURM_ARRAY_TASK_ID": "1"})
    assert (a.job_id, a.array_job_id, a.array_task_id) == ("100_0", "100", 0)
    assert b.job_id == "100_1" and a.master_port() != b.master_port()
    assert a.master_addr == "127.0.0.1"  # one node: loopback


def test_outside_any_job_is_one_process() -> None:
    job = current_env({})
    assert (job.scheduler, job.job_id, job.rank, job.world_size, job.is_main) == ("none", None, 0, 1, True)


def test_inside_submitit_the_job_environment_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in {**MULTINODE, "SUBMITIT_EXECUTOR": "slurm"}.items():
        monkeypatch.setenv(key, value)
    task = DistributedTask(["train", "c.yaml"], cwd=".")
    env = task._environment()
    assert (env["RANK"], env["WORLD_SIZE"], env["LOCAL_RANK"], env["MASTER_ADDR"]) == ("6", "8", "2", "gpu07")


def test_local_executor_tasks_meet_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    local = {
        "SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "999", "SUBMITIT_LOCAL_NTASKS": "2",
        "SUBMITIT_LOCAL_GLOBALID": "1", "SUBMITIT_LOCAL_LOCALID": "1", "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
        "SUBMITIT_LOCAL_NODEID": "0",
    }
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    for key, value in local.items():
        monkeypatch.setenv(key, value)
    job = current_env()
    assert (job.scheduler, job.job_id, job.rank, job.world_size) == ("local", "999", 1, 2)
    assert job.torch_env()["MASTER_ADDR"] == "127.0.0.1"
