"""What a submitted job runs: an `effrep` command in-process, checkpointable so preemption requeues it.

Progress is never kept in the task object: a landscape task's progress is its shard file (flushed
after every tile), a training task's is run.out/checkpoint.pt (written after every epoch), a sweep's
is its sweep file. So ``checkpoint()`` hands back the very same command, and the requeued job
resumes from what the files say is done. On USR2 (preemption, or ``signal_delay_s`` before the time
limit) submitit calls ``checkpoint()``, requeues the job and exits; the exit unwinds through the
runner's ``finally`` blocks, which close the HDF5 file and release its writer lock.
"""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from submitit.helpers import Checkpointable, DelayedSubmission


class TaskFailed(RuntimeError):
    """An `effrep` command inside a job exited with a non-zero code (its stderr has the reason)."""


@dataclass
class TaskResult:
    """What a finished task reports back to `effrep submit --wait`."""

    argv: list[str]
    job_id: Optional[str]
    outputs: list[str] = field(default_factory=list)


class CommandTask(Checkpointable):
    """Run ``effrep ARGV`` inside a submitit job, from the directory it was submitted from."""

    def __init__(
        self, argv: list[str], *, cwd: str | Path, outputs: Optional[list[str]] = None, env: Optional[dict[str, str]] = None
    ) -> None:
        self.argv = [str(a) for a in argv]
        self.cwd = str(cwd)
        self.outputs = [str(o) for o in outputs or []]
        self.env = dict(env or {})

    @property
    def command_line(self) -> str:
        """The shell command this task amounts to (for logs and --dry-run)."""
        return "effrep " + " ".join(shlex.quote(a) for a in self.argv)

    def _environment(self) -> dict[str, str]:
        """Variables to set in this process before running the command."""
        return dict(self.env)

    def __call__(self) -> TaskResult:
        """Run the command; raise TaskFailed on a non-zero exit so the job is marked failed."""
        from effrep_hpc.cli import main
        from effrep_hpc.launch.env import current_env

        os.chdir(self.cwd)
        os.environ.update(self._environment())
        job = current_env()
        print(f"[effrep job {job.job_id} rank {job.rank}/{job.world_size}] {self.command_line}", flush=True)
        code = main(list(self.argv))
        sys.stdout.flush()
        if code:
            raise TaskFailed(f"`{self.command_line}` exited with code {code}; see the job's stderr for why")
        return TaskResult(argv=list(self.argv), job_id=job.job_id, outputs=list(self.outputs))

    def checkpoint(self, *args: Any, **kwargs: Any) -> DelayedSubmission:
        """Requeue the same command: it resumes from the files, which hold all finished work."""
        return DelayedSubmission(self.__class__(self.argv, cwd=self.cwd, outputs=self.outputs, env=self.env), *args, **kwargs)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.command_line!r})"


class DistributedTask(CommandTask):
    """A command run by every task of a (multi-node) job, with torch.distributed's env:// variables set."""

    def _environment(self) -> dict[str, str]:
        from effrep_hpc.launch.env import current_env

        env = dict(self.env)
        env.update(current_env().torch_env())
        return env
