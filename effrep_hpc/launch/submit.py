"""`effrep submit`: a command and its config become submitit jobs; say which jobs and which files.

The experiment registry says how each command splits (``Experiment.split``):

- ``job`` (train): one job of ``launch.nodes x launch.tasks_per_node`` processes; each gets torch.distributed's
  env:// variables from submitit's job environment (:class:`~effrep_hpc.launch.tasks.DistributedTask`).
- ``shards`` (landscape, prune sensitivity): an array of N tasks run with ``dist.backend=array dist.task_id=i
  dist.num_tasks=N``, task i computing its static block into its own shard, then a merge job that starts only
  if every task succeeded (``afterok``) and runs `effrep merge`.
- ``shared`` (quant sweep): an array of N tasks writing into the one output through store/, which lets one
  writer at a time in.
- ``graph`` (study): the experiment's ``stages`` (e.g. a training array, then an array per measurement that
  starts only if every training task succeeded, then a last job after all of them); ``--array`` does not apply.

Every job runs the same config: a snapshot of the resolved config is written next to the logs, so
editing the YAML file while jobs wait in the queue changes nothing. Without SLURM (``--local``, or
no sbatch on PATH) the same jobs run through submitit's local executor, step after step.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from effrep_hpc.config import Config, to_yaml
from effrep_hpc.experiments import EXPERIMENTS, by_words
from effrep_hpc.launch.executor import (
    JobShape,
    describe_parameters,
    load_submit_config,
    local_parameters,
    make_executor,
    resolve_executor,
    slurm_parameters,
)
from effrep_hpc.launch.tasks import CommandTask, DistributedTask
from effrep_hpc.registry import unknown_name_message
from effrep_hpc.store.shards import shard_path

Echo = Callable[[str], None]


def submittable() -> list[str]:
    """The commands `effrep submit` takes: every registered experiment with a ``split``."""
    return [" ".join(EXPERIMENTS.get(n).words) for n in EXPERIMENTS if EXPERIMENTS.get(n).split is not None]


def parse_command(words: list[str]) -> tuple[tuple[str, ...], list[str]]:
    """Split ``quant sweep cfg.yaml k=v`` (or ``quant.sweep``/``quant-sweep``) into the command and the rest."""
    commands = submittable()
    if not words:
        raise ValueError(f"name the command to submit (valid: {', '.join(commands)})")
    first = words[0].replace("-", " ").replace(".", " ").split()
    if len(first) == 1 and len(words) > 1 and f"{first[0]} {words[1]}" in commands:
        return (first[0], words[1]), list(words[2:])
    name = " ".join(first)
    if name not in commands:
        raise ValueError(unknown_name_message("command to submit", words[0], commands))
    return tuple(first), list(words[1:])


@dataclass
class Step:
    """One submission: a single job, or an array of jobs of one shape."""

    role: str  # "train", "array", "merge"
    tasks: list[CommandTask]
    shape: JobShape
    outputs: list[Path]
    after: Optional[int] = None  # index of the step whose success this one waits for
    more_after: tuple[int, ...] = ()  # further steps it waits for (a graph's last job)


@dataclass
class Plan:
    """Everything `effrep submit` will submit, before anything is."""

    command: str
    cfg: Config
    config_yaml: str
    snapshot: Path  # the resolved config every job runs
    folder: Path  # submitit logs and pickles
    steps: list[Step]
    outputs: list[Path]  # what the user is waiting for
    after: Optional[str] = None  # a job id the first steps wait for (--after)


def plan_submission(
    words: list[str] | tuple[str, ...],
    config: Optional[str],
    overrides: list[str],
    *,
    cluster: Optional[str] = None,
    array: Optional[int] = None,
    folder: Optional[str] = None,
    after: Optional[str] = None,
) -> Plan:
    """Load the config (with its cluster preset) and lay out the jobs of ``effrep <words> CONFIG overrides``."""
    words = tuple(words)
    name = " ".join(words)
    if name not in submittable():
        raise ValueError(unknown_name_message("command to submit", name, submittable()))
    exp = by_words(words)
    cfg = load_submit_config(config, overrides, cluster)
    launch = cfg.launch
    cwd = Path.cwd()
    home = exp.output(cfg).parent if exp.split == "graph" and exp.output is not None else Path(cfg.run.out)
    logs = Path(folder or launch.folder or home / "submitit")
    logs = logs if logs.is_absolute() else cwd / logs
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
    snapshot = logs / "configs" / f"{name.replace(' ', '-')}-{stamp}.yaml"
    base = [*words, str(snapshot)]
    dependency = f"afterok:{after}" if after else None
    steps: list[Step] = []
    if exp.split == "job":
        out = Path(cfg.run.out)
        outputs = [out / "checkpoint.pt", out / "metrics.h5"]
        shape = JobShape(name="effrep-train", nodes=launch.nodes, tasks_per_node=launch.tasks_per_node, dependency=dependency)
        steps.append(Step("train", [DistributedTask(base, cwd=cwd, outputs=[str(o) for o in outputs])], shape, outputs))
        return Plan(name, cfg, to_yaml(cfg), snapshot, logs, steps, outputs, after)

    assert exp.output is not None, f"experiment {exp.name} has split={exp.split} but no output"
    if exp.split == "graph":
        if array is not None:
            raise ValueError(f"--array: `effrep submit {name}` makes one array task per node of its graph; leave --array out")
        index: dict[str, int] = {}
        for role, tasks, roles in exp.load("stages")(cfg, str(snapshot)):
            waits = [index[r] for r in roles]
            shape = JobShape(name=f"effrep-{name}-{role}", dependency=None if waits else dependency)
            commands = [CommandTask(argv, cwd=cwd, outputs=outs) for argv, outs in tasks]
            files = [Path(o) for _, outs in tasks for o in outs]
            steps.append(Step(role, commands, shape, files, after=waits[0] if waits else None, more_after=tuple(waits[1:])))
            index[role] = len(steps) - 1
        return Plan(name, cfg, to_yaml(cfg), snapshot, logs, steps, [exp.output(cfg)], after)
    n = launch.array if array is None else array
    if n < 1:
        raise ValueError(f"--array must be >= 1 (got {n})")
    job_name = "effrep-" + "-".join(words)
    final = exp.output(cfg)
    if exp.size is not None:
        items = exp.size(cfg)
        if n > items:
            raise ValueError(f"--array {n} asks for more tasks than there are work items ({items}); use --array {items} or fewer")
    if n == 1:
        # One task needs no shard and no merge: it writes the final file itself.
        task = CommandTask([*base, "dist.backend=serial"], cwd=cwd, outputs=[str(final)])
        steps.append(Step("run", [task], JobShape(name=job_name, dependency=dependency), [final]))
        return Plan(name, cfg, to_yaml(cfg), snapshot, logs, steps, [final], after)
    shards = [shard_path(final, i, n) for i in range(n)] if exp.split == "shards" else []
    tasks = []
    for i in range(n):
        argv = [*base, "dist.backend=array", f"dist.task_id={i}", f"dist.num_tasks={n}"]
        tasks.append(CommandTask(argv, cwd=cwd, outputs=[str(shards[i] if shards else final)]))
    steps.append(Step("array", tasks, JobShape(name=job_name, dependency=dependency), shards or [final]))
    if shards:
        merge_task = CommandTask(["merge", *map(str, shards), "-o", str(final)], cwd=cwd, outputs=[str(final)])
        steps.append(Step("merge", [merge_task], JobShape(name="effrep-merge", time=launch.merge_time), [final], after=0))
    return Plan(name, cfg, to_yaml(cfg), snapshot, logs, steps, [final], after)


# ----------------------------------------------------------------------------------------------
# Submitting and waiting


@dataclass
class SubmittedJob:
    """One submitted job (an array counts one per task) and what it writes."""

    job_id: str
    role: str
    command_line: str
    outputs: list[str]
    job: Any = field(repr=False, compare=False)


@dataclass
class Submission:
    """The jobs of a plan as the scheduler numbered them."""

    plan: Plan
    executor: str  # "slurm" or "local"
    jobs: list[SubmittedJob] = field(default_factory=list)

    def step_ids(self, role: str) -> list[str]:
        """Job ids of the step ``role`` ("train", "array", "merge", "scan", "run")."""
        return [j.job_id for j in self.jobs if j.role == role]


def _dependency_of(jobs: list[SubmittedJob]) -> str:
    from effrep_hpc.launch.slurm import base_id

    return "afterok:" + ":".join(sorted({base_id(j.job_id) for j in jobs}))


def _submit_step(step: Step, plan: Plan, kind: str, shape: JobShape) -> list[SubmittedJob]:
    executor = make_executor(plan.cfg.launch, plan.folder, shape, kind=kind)
    if len(step.tasks) == 1:
        jobs = [executor.submit(step.tasks[0])]
    else:
        jobs = executor.submit_array(step.tasks)
    return [SubmittedJob(str(j.job_id), step.role, t.command_line, list(t.outputs), j) for j, t in zip(jobs, step.tasks)]


def write_snapshot(plan: Plan) -> None:
    """Write the resolved config the jobs will run (atomically: a queued job never reads half a file)."""
    plan.snapshot.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan.snapshot.with_name(f".{plan.snapshot.name}.tmp")
    tmp.write_text(plan.config_yaml)
    os.replace(tmp, plan.snapshot)


def submit_plan(plan: Plan, *, local: bool = False, echo: Optional[Echo] = None, poll_s: float = 2.0) -> Submission:
    """Submit every step; under SLURM later steps wait via afterok, locally they run one after another."""
    kind = resolve_executor(plan.cfg.launch, local)
    write_snapshot(plan)
    sub = Submission(plan, kind)
    for index, step in enumerate(plan.steps):
        dependency = step.shape.dependency
        if step.after is not None:
            roles = {plan.steps[i].role for i in (step.after, *step.more_after)}
            earlier = [j for j in sub.jobs if j.role in roles]
            dependency = _dependency_of(earlier)
        if kind == "slurm":
            try:
                sub.jobs += _submit_step(step, plan, kind, dataclasses.replace(step.shape, dependency=dependency))
            except Exception as exc:  # sbatch refused: say what is already queued, so nothing is orphaned silently
                done = ", ".join(j.job_id for j in sub.jobs)
                raise RuntimeError(
                    f"submitting step {index + 1} ({step.role}) failed: {str(exc).strip().splitlines()[-1]}"
                    + (f". Already submitted: {done} (scancel them, or finish by hand)" if done else "")
                ) from exc
            continue
        # The local executor has no scheduler to hold a job back: run the steps in order, an array in
        # waves of launch.array_parallelism (default: the CPU count) tasks.
        wave = plan.cfg.launch.array_parallelism or os.cpu_count() or 1
        for start in range(0, len(step.tasks), wave):
            part = Step(step.role, step.tasks[start : start + wave], step.shape, step.outputs, step.after)
            jobs = _submit_step(part, plan, kind, dataclasses.replace(step.shape, dependency=None))
            sub.jobs += jobs
            if echo is not None:
                for j in jobs:
                    echo(f"started local job {j.job_id} ({j.role}): {j.command_line}")
            states = wait_for(jobs, kind="local", poll_s=poll_s)
            failed = {k: v for k, v in states.items() if v != "COMPLETED"}
            if failed:
                later = ", ".join(s.role for s in plan.steps[index + 1 :])
                raise RuntimeError(
                    "local job(s) failed: " + "; ".join(f"{k}: {v}" for k, v in failed.items())
                    + (f"; not running the later step(s): {later}" if later else "")
                    + f". Logs: {plan.folder}"
                )
    return sub


def _outcome(job: Any) -> Optional[str]:
    """COMPLETED or 'FAILED: reason' from the submitit result file of task 0, None when there is none."""
    task0 = job.task(0)
    if not task0.paths.result_pickle.exists():
        return None
    from submitit.core.utils import pickle_load

    outcome, payload = pickle_load(task0.paths.result_pickle)
    if outcome == "success":
        return "COMPLETED"
    lines = [line for line in str(payload).strip().splitlines() if line.strip()]
    return "FAILED: " + (lines[-1] if lines else "unknown error")


def wait_for(
    jobs: list[SubmittedJob],
    *,
    kind: str,
    poll_s: float = 5.0,
    timeout_s: Optional[float] = None,
    echo: Optional[Echo] = None,
) -> dict[str, str]:
    """Wait until every job left the queue (or its local process ended); return job id -> final state."""
    began = time.time()
    last: dict[str, str] = {}
    while True:
        if kind == "slurm":
            from effrep_hpc.launch.slurm import queue_states

            states = queue_states([j.job_id for j in jobs])
        else:
            states = {j.job_id: "RUNNING" for j in jobs if not j.job.done()}
        if echo is not None:
            for jid, state in sorted(states.items()):
                if last.get(jid) != state:
                    echo(f"job {jid}: {state}")
        last = states
        if not states:
            break
        if timeout_s is not None and time.time() - began > timeout_s:
            raise TimeoutError(f"jobs still queued after {timeout_s:.0f}s: {', '.join(sorted(states))}")
        time.sleep(poll_s)
    final: dict[str, str] = {}
    for j in jobs:
        outcome = _outcome(j.job)
        if outcome is None and kind == "slurm":
            from effrep_hpc.launch.slurm import job_info

            info = job_info(j.job_id)
            outcome = str(info.get("JobState", "UNKNOWN"))
            if info.get("Reason") not in (None, "None"):
                outcome += f" ({info['Reason']})"
        final[j.job_id] = outcome or "FAILED: the job left no result (killed?)"
    return final


def plan_lines(plan: Plan, kind: str) -> list[str]:
    """What --dry-run prints: each step's jobs, commands, sbatch options and outputs."""
    lines = [
        f"effrep submit {plan.command}: {len(plan.steps)} step(s), executor {kind}, logs in {plan.folder}",
        f"config snapshot (written at submission): {plan.snapshot}",
    ]
    for index, step in enumerate(plan.steps):
        shape = step.shape
        if step.after is not None:
            waits = ", ".join(str(i + 1) for i in (step.after, *step.more_after))
            shape = dataclasses.replace(shape, dependency=f"afterok:<job ids of step{'s' if step.more_after else ''} {waits}>")
        params = slurm_parameters(plan.cfg.launch, shape) if kind == "slurm" else local_parameters(plan.cfg.launch, shape)
        what = f"array of {len(step.tasks)} tasks" if len(step.tasks) > 1 else "one job"
        lines.append(f"step {index + 1} ({step.role}, {what}):")
        lines += [f"  {opt}" for opt in describe_parameters(params, len(step.tasks))]
        for task in step.tasks:
            lines.append(f"  run: {task.command_line}")
        for out in step.outputs:
            lines.append(f"  writes: {out}")
    return lines


def submission_lines(sub: Submission) -> list[str]:
    """What `effrep submit` prints: job ids with their commands, then the files the jobs will write."""
    lines = []
    for step in sub.plan.steps:
        jobs = [j for j in sub.jobs if j.role == step.role]
        if not jobs:
            continue
        if len(jobs) > 1:
            from effrep_hpc.launch.slurm import base_id

            label = f"array {base_id(jobs[0].job_id)}" if sub.executor == "slurm" else "local jobs"
            lines.append(f"{step.role}: {label} of {len(jobs)} task(s): " + " ".join(j.job_id for j in jobs))
        else:
            lines.append(f"{step.role}: job {jobs[0].job_id}")
        if step.after is not None and sub.executor == "slurm":
            roles = "', '".join(sub.plan.steps[i].role for i in (step.after, *step.more_after))
            lines[-1] += f" (starts when all of step{'s' if step.more_after else ''} '{roles}' succeeded)"
        for j in jobs:
            lines.append(f"  job {j.job_id}: {j.command_line}")
            for out in j.outputs:
                lines.append(f"    writes {out}")
    for path in sub.plan.outputs:
        lines.append(f"output: {path}")
    lines.append(f"config: {sub.plan.snapshot}")
    lines.append(f"logs: {sub.plan.folder}")
    return lines
