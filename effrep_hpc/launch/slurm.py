"""Asking SLURM about jobs without an accounting database: squeue while queued, scontrol after.

submitit asks ``sacct``, which needs slurmdbd; many small clusters (and the local one-node cluster)
have none, so job states here come from ``squeue`` (pending/running jobs) and ``scontrol show job``
(finished jobs, kept for MinJobAge seconds). Where neither knows a job, its submitit result file says
whether it succeeded.
"""

from __future__ import annotations

import subprocess
from typing import Optional

QUEUED_STATES = (
    "PENDING", "RUNNING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "CONFIGURING", "COMPLETING", "SUSPENDED", "RESIZING",
    "SIGNALING", "STAGE_OUT",
)


def base_id(job_id: str) -> str:
    """The id SLURM commands accept for a whole array: ``12`` for ``12_3``."""
    return str(job_id).split("_", 1)[0]


def queue_states(job_ids: list[str], *, timeout: float = 30) -> dict[str, str]:
    """State of each of ``job_ids`` (array tasks as ``A_i``) still in the queue; finished ones are absent."""
    if not job_ids:
        return {}
    bases = sorted({base_id(j) for j in job_ids})
    cmd = ["squeue", "-h", "-r", "-o", "%i|%T", "-j", ",".join(bases)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        if "Invalid job id" in proc.stderr:
            return {}  # all of them left the queue long enough ago to be forgotten
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.strip()}")
    states: dict[str, str] = {}
    for line in proc.stdout.splitlines():
        if "|" in line:
            jid, state = line.strip().split("|", 1)
            states[jid] = state
    wanted = set(job_ids)
    return {j: s for j, s in states.items() if j in wanted}


def job_info(job_id: str, *, timeout: float = 30) -> dict[str, str]:
    """``scontrol show job`` fields (JobState, Restarts, ExitCode, Reason, ...); empty once SLURM forgot it."""
    proc = subprocess.run(["scontrol", "show", "job", "-o", str(job_id)], capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0 or not proc.stdout.strip():
        return {}
    info: dict[str, str] = {}
    for token in proc.stdout.split():
        if "=" in token:
            key, value = token.split("=", 1)
            info.setdefault(key, value)
    return info


def job_state(job_id: str) -> Optional[str]:
    """JobState of ``job_id`` (e.g. COMPLETED, FAILED, CANCELLED), or None once SLURM forgot it."""
    return job_info(job_id).get("JobState")
