"""Where this process sits in a submitted job: "my rank, my task id, my job id", and torch.distributed setup.

Inside a submitit job (SLURM or local) the facts come from submitit's JobEnvironment; in a plain
sbatch/srun job from SLURM's variables; otherwise this is one process on its own. Everything that
knows scheduler variable names stays here and in effrep_hpc/dist/env.py.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from typing import Mapping, Optional

from effrep_hpc.dist.env import env_int, slurm_job_id

# Ports above the usual ephemeral ranges' start and below 32768, spread by job id so two jobs that
# share a node (e.g. two array tasks) do not pick the same rendezvous port.
PORT_BASE = 20000
PORT_SPAN = 10000


@dataclass(frozen=True)
class JobEnv:
    """The job this process belongs to and its place in it."""

    scheduler: str  # "slurm", "local" (submitit's local executor) or "none"
    job_id: Optional[str]  # e.g. "1234", or "1234_5" for task 5 of array job 1234
    array_job_id: Optional[str]
    array_task_id: Optional[int]
    rank: int  # global rank among the job's tasks (processes)
    local_rank: int  # rank on this node
    world_size: int
    node: int
    num_nodes: int
    hostnames: tuple[str, ...]

    @property
    def is_main(self) -> bool:
        """True on the task that checkpoints, requeues and prints (global rank 0)."""
        return self.rank == 0

    @property
    def master_addr(self) -> str:
        """The host of rank 0, where torch.distributed meets (loopback on a single node)."""
        if self.num_nodes <= 1 or not self.hostnames:
            return "127.0.0.1"
        return self.hostnames[0]

    def master_port(self) -> int:
        """A rendezvous port derived from the job id, so jobs sharing a node do not collide."""
        digits = "".join(ch for ch in str(self.job_id or os.getpid()) if ch.isdigit())
        return PORT_BASE + int(digits or 0) % PORT_SPAN

    def torch_env(self, port: Optional[int] = None) -> dict[str, str]:
        """The variables torch.distributed's env:// initialisation reads, for this task."""
        return {
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(port if port is not None else self.master_port()),
            "RANK": str(self.rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_RANK": str(self.local_rank),
            "LOCAL_WORLD_SIZE": str(max(1, self.world_size // max(1, self.num_nodes))),
        }


def _from_submitit() -> JobEnv:
    import submitit

    env = submitit.JobEnvironment()
    array_task = env.array_task_id
    return JobEnv(
        scheduler=env.cluster,
        job_id=str(env.job_id),
        array_job_id=env.array_job_id,
        array_task_id=None if array_task in (None, "") else int(array_task),
        rank=env.global_rank,
        local_rank=env.local_rank,
        world_size=env.num_tasks,
        node=env.node,
        num_nodes=env.num_nodes,
        hostnames=tuple(env.hostnames),
    )


def _from_slurm(env: Mapping[str, str]) -> JobEnv:
    nodelist = env.get("SLURM_JOB_NODELIST", "")
    hosts: tuple[str, ...] = (socket.gethostname(),)
    if nodelist:
        from submitit.slurm.slurm import _parse_node_list  # the one node-list parser we trust

        hosts = tuple(_parse_node_list(nodelist))
    return JobEnv(
        scheduler="slurm",
        job_id=slurm_job_id(env),
        array_job_id=env.get("SLURM_ARRAY_JOB_ID"),
        array_task_id=env_int(env, "SLURM_ARRAY_TASK_ID"),
        rank=env_int(env, "SLURM_PROCID") or 0,
        local_rank=env_int(env, "SLURM_LOCALID") or 0,
        world_size=env_int(env, "SLURM_NTASKS") or 1,
        node=env_int(env, "SLURM_NODEID") or 0,
        num_nodes=env_int(env, "SLURM_JOB_NUM_NODES") or 1,
        hostnames=hosts,
    )


def current_env(env: Mapping[str, str] | None = None) -> JobEnv:
    """This process's job environment: submitit's view inside a submitit job, else SLURM's, else a lone process."""
    environ = os.environ if env is None else env
    if env is None and environ.get("SUBMITIT_EXECUTOR"):
        return _from_submitit()
    if environ.get("SLURM_JOB_ID"):
        return _from_slurm(environ)
    return JobEnv(
        scheduler="none", job_id=None, array_job_id=None, array_task_id=None, rank=0, local_rank=0,
        world_size=1, node=0, num_nodes=1, hostnames=(socket.gethostname(),),
    )
