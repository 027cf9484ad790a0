"""`effrep study CONFIG`: every node of a study's graph (config/study.py) run in order, resumable at every node.

The graph: ``train`` per (variant, seed), then each measurement of ``study.measurements`` per run (in the
listed order), then ``interp`` per pair and seed. A node runs the existing runner (run_train, run_landscape,
run_hessian, run_curvature, run_trajectory) in this process on its own config, so it writes exactly the
files that command writes, and resumes its own output like that command.

Resuming the study. ``<study.out>/study.json`` (the manifest: docs/studies.md) is rewritten atomically
after every node. A node counts as done, and is skipped, when the manifest says its runner returned for
the same config (a hash of the node's config without the run/dist/launch sections) and its output is
complete now (a surface's done mask all true, the hessian JSON readable, the checkpoint and metrics
present). Anything else runs, and its runner resumes what is there: a killed study re-run finishes the
partial node and skips the done ones; a changed config re-runs the nodes it changes, whose runners refuse
an output of other settings with their usual error (the node is then failed, the rest goes on). A node
whose input failed is not run (it stays pending). One study process per ``study.out``: rank 0 holds a
writer lock on the manifest.

Under MPI (``mpiexec -n P python -m mpi4py -m effrep_hpc.cli study ...``) the scan-like nodes (scan1d,
scan2d, curvature, trajectory, interp) run on every rank together, which share their grid as the commands
do. Training and a Hessian at one point are single-process jobs: ``run_train`` launched by mpiexec sees no
torch.distributed world (WORLD_SIZE is unset), so on every rank it would believe it is alone and all ranks
would write the same checkpoint. Instead each such node runs on exactly one rank, serially, and the ranks
take different nodes at once (rank r takes the r-th of each round of P pending nodes); a run's weights
depend on its config and seed only (and, bitwise, on the threads per process), not on the rank. Between
rounds the ranks wait in a polled barrier, so a waiting rank does not spin on a core the others need.

At the end rank 0 calls the torch-free ``analysis.study`` (when installed and ``study.figures``) to draw
the figure grids and the table from the manifest.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

from effrep_hpc.config import Config, to_yaml
from effrep_hpc.config.base import to_dict
from effrep_hpc.config.study import FIXED, Node, StudyPlan, plan_study
from effrep_hpc.dist.mpi import PollingWorld as World
from effrep_hpc.errors import JobError, describe

SCHEMA_VERSION = 1
MANIFEST = "study.json"


# ----------------------------------------------------------------------------------------------
# The processes of the launch


# ----------------------------------------------------------------------------------------------
# Nodes: run one, and tell whether one is done


def config_hash(node: Node) -> str:
    """What a node's result depends on: its config without the run, dist and launch sections and without the
    file paths the study sets (so a study folder that moved, or is named relatively now, is still done)."""
    data = {k: v for k, v in to_dict(node.cfg).items() if k not in ("run", "dist", "launch", "study")}
    for key in FIXED:
        section, _, name = key.partition(".")
        if section in data and name != "seed":
            data[section][name] = None
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def complete(node: Node) -> bool:
    """True when the node's output is all there: the surface's done mask all true, the JSON readable, the run's files."""
    if node.kind == "train":
        return all(p.is_file() for p in node.outputs.values())
    if node.kind == "hessian":
        from effrep_hpc.store.curvature import read_point

        try:
            return read_point(node.outputs["hessian"]) is not None
        except ValueError:
            return False
    from effrep_hpc.store.surface import all_done

    path = node.outputs["surface"]
    try:
        return path.is_file() and all_done(path)
    except (OSError, ValueError, KeyError):
        return False


# The command (registry words) each node runs: a train node's is its variant's trainer's, a measurement's its own.
COMMANDS: dict[str, tuple[str, ...]] = {
    "train": ("train",), "quant": ("quant", "train"), "prune": ("prune", "retrain"), "scratch": ("prune", "scratch"),
    "scan1d": ("landscape",), "scan2d": ("landscape",), "interp": ("landscape",), "hessian": ("hessian",),
    "curvature": ("curvature",), "trajectory": ("trajectory",),
}


def _runner(node: Node) -> Callable[..., Any]:
    """The registered runner of the command a node runs (imported now: runners need torch), with its fixed keywords."""
    from functools import partial

    from effrep_hpc.experiments import by_words

    exp = by_words(COMMANDS[node.trainer if node.kind == "train" else node.kind])
    return partial(exp.load(), **dict(exp.fixed))


@dataclass
class Outcome:
    """How one node went on this rank: ``done`` or ``failed`` (with a one-line error), and how long it took."""

    status: str
    error: str = ""
    seconds: float = 0.0


def run_node(node: Node, *, overwrite: bool, check: bool = True) -> Outcome:
    """Run ``node``'s runner; a failure the user can act on is the node's (failed), a bug propagates.

    ``check``: also confirm the output is complete (the writer's view; other ranks pass False).
    """
    from effrep_hpc.store.h5 import FileBusyError

    began = time.perf_counter()
    try:
        _runner(node)(node.cfg, overwrite=overwrite)
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        known = describe(exc, (FileBusyError,))
        if known is None:
            raise  # a bug: its traceback (under MPI, the end of the whole job)
        return Outcome("failed", known[1].replace("\n", " ") or type(exc).__name__, time.perf_counter() - began)
    seconds = time.perf_counter() - began
    if check and not complete(node):
        missing = ", ".join(str(p) for p in node.outputs.values())
        return Outcome("failed", f"the {node.kind} runner returned but its output is not complete ({missing})", seconds)
    return Outcome("done", "", seconds)


# ----------------------------------------------------------------------------------------------
# The manifest


@dataclass
class State:
    """Every node's status (``pending``, ``done``, ``failed``), error and config hash, as the manifest holds them."""

    status: dict[str, str] = field(default_factory=dict)
    error: dict[str, str] = field(default_factory=dict)
    hashes: dict[str, str] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def entry(self, node: Node, out: Path) -> dict[str, Any]:
        """The node's manifest entry (paths relative to ``out``)."""
        status = self.status[node.id]
        entry: dict[str, Any] = {"status": status, "outputs": {k: _relative(p, out) for k, p in node.outputs.items()}}
        if status == "failed":
            entry["error"] = self.error.get(node.id, "")
        if status == "pending":
            waits = [d for d in node.needs if self.status.get(d) == "failed"]
            if waits:
                entry["waits_for"] = waits  # inputs that failed: not run until they are done
        if status == "done":
            entry["config_sha256"] = self.hashes[node.id]
            if node.id in self.seconds:
                entry["seconds"] = round(self.seconds[node.id], 3)
        return entry


def _relative(path: Path, out: Path) -> str:
    try:
        return str(path.relative_to(out))
    except ValueError:
        return str(path)


def manifest(plan: StudyPlan, state: State, extra: Optional[dict[str, Any]] = None) -> dict[str, Any]:
    """The manifest (docs/studies.md): the study, its variants and seeds, every run's and pair's nodes."""
    s = plan.cfg.study
    by_id = {n.id: n for n in plan.nodes}
    runs = []
    for v in s.variants:
        for seed in s.seeds:
            nodes = {kind: state.entry(by_id[f"{kind}:{v.name}:seed{seed}"], plan.out)
                     for kind in ("train", *s.measurements) if f"{kind}:{v.name}:seed{seed}" in by_id}
            runs.append({"variant": v.name, "seed": seed, "dir": _relative(plan.run_dir(v.name, seed), plan.out),
                         "nodes": nodes})
    pairs = []
    for p in s.pairs:
        for seed in s.seeds:
            node = by_id.get(f"interp:{p.name}:seed{seed}")
            if node is not None:
                pairs.append({"name": p.name, "a": p.a, "b": p.b, "seed": seed, **state.entry(node, plan.out)})
    return {
        "kind": "study", "schema_version": SCHEMA_VERSION, "name": s.name, "config": to_yaml(plan.cfg),
        "variants": [{"name": v.name, "overrides": v.set, "group": v.group} for v in s.variants],
        "seeds": list(s.seeds), "measurements": list(s.measurements), "runs": runs, "pairs": pairs,
        "figures": {}, "table": {}, **(extra or {}),
    }


def read_manifest(path: Path) -> Optional[dict[str, Any]]:
    """The study manifest at ``path``; None when there is none or it is not one (it is rewritten from the files)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("kind") == "study" else None


def _stored_entries(data: Optional[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Node id -> manifest entry of a stored manifest."""
    if data is None:
        return {}
    out: dict[str, dict[str, Any]] = {}
    for run in data.get("runs", []):
        for kind, entry in (run.get("nodes") or {}).items():
            out[f"{kind}:{run.get('variant')}:seed{run.get('seed')}"] = entry
    for pair in data.get("pairs", []):
        out[f"interp:{pair.get('name')}:seed{pair.get('seed')}"] = pair
    return out


def _drawn(data: Optional[dict[str, Any]], out: Path) -> dict[str, Any]:
    """A stored manifest's ``figures`` and ``table`` when all their files still exist (else empty: draw again)."""
    if data is None or not data.get("figures") or not data.get("table"):
        return {}
    drawn = {key: dict(data[key]) for key in ("figures", "table") if isinstance(data.get(key), dict)}
    files = [out / str(p) for entries in drawn.values() for p in entries.values()]
    return drawn if len(drawn) == 2 and all(f.is_file() for f in files) else {}


def write_manifest(path: Path, data: dict[str, Any]) -> None:
    """Write the manifest atomically (a reader or a kill never sees half a file)."""
    from effrep_hpc.store.atomic import atomic_write

    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")


# ----------------------------------------------------------------------------------------------
# The study


@dataclass
class StudyResult:
    """What `effrep study` prints: counts, where the manifest is, the figures."""

    manifest: Path
    total: int
    done: int
    ran: int
    failed: list[str]
    waiting: int
    figures: dict[str, Any] = field(default_factory=dict)  # the manifest's "figures" and "table"
    lines: list[str] = field(default_factory=list)  # notes and the Markdown table


def _say(world: World, text: str) -> None:
    if world.rank == 0:
        print(f"study: {text}", flush=True)


def _label(node: Node) -> str:
    return f"{node.kind} {node.variant} seed {node.seed}"


def draw(plan: StudyPlan) -> tuple[dict[str, Any], list[str]]:
    """Draw the study's figure grids and write its table (torch-free ``analysis.study``, first seed); return the
    manifest's ``figures`` and ``table`` (paths relative to ``study.out``) and the lines to print."""
    try:
        from analysis.study import write_study_outputs
    except ModuleNotFoundError as exc:
        if exc.name not in ("analysis", "analysis.study"):
            raise
        return {}, ["figures: the analysis package is not installed; the manifest and the results are complete"]
    try:
        report = write_study_outputs(plan.out)
    except (ValueError, OSError) as exc:  # the results stay; the figures can be redrawn by hand
        return {}, [f"figures: not drawn ({exc}); redraw with: python -m analysis study {plan.out}"]
    figures = {p.name: _relative(p, plan.out) for p in report.paths if p.parent.name == "figures"}
    table = {p.suffix.lstrip("."): _relative(p, plan.out) for p in report.paths if p.name.startswith("table.")}
    lines = [f"note: {note}" for note in report.notes] + [report.markdown.rstrip("\n")]
    return {"figures": figures, "table": table}, lines


def run_study(cfg: Config, *, overwrite: bool = False) -> StudyResult:
    """Run every node of ``cfg``'s study that is not done, in dependency order; see the module docstring."""
    from effrep_hpc.dist.base import guarded
    from effrep_hpc.store.h5 import FileBusyError, WriterLock

    world = World()
    lock: Optional[WriterLock] = None
    try:
        with guarded(world.gather, world.rank, (FileBusyError,)):
            plan = plan_study(cfg)  # every problem before anything is written
            if world.rank == 0 and not cfg.study.nodes:
                lock = WriterLock(plan.out / "study")  # one whole study at a time (array tasks run single nodes)
                lock.acquire()
        return _run(plan, world, overwrite)
    finally:
        if lock is not None:
            lock.release()
        world.close()


def _sync(plan: StudyPlan, state: State, owned: set[str], extra: Optional[dict[str, Any]] = None) -> None:
    """Write the manifest with this process's nodes (``owned``) as ``state`` has them and every other node as the
    stored manifest has it (array tasks of one study update it concurrently: read, merge and write under its lock)."""
    from effrep_hpc.store.sweep import locked

    path = plan.out / MANIFEST
    with locked(path):
        stored = read_manifest(path)
        entries = _stored_entries(stored)
        for n in plan.nodes:
            if n.id in owned:
                continue
            entry = entries.get(n.id, {})
            status = str(entry.get("status", "pending"))
            state.status[n.id] = "pending" if status == "done" and entry.get("config_sha256") != state.hashes[n.id] else status
            state.error[n.id] = str(entry.get("error", ""))
            if isinstance(entry.get("seconds"), (int, float)):
                state.seconds[n.id] = float(entry["seconds"])
        if extra is None:
            extra = {k: stored[k] for k in ("figures", "table") if stored is not None and isinstance(stored.get(k), dict)}
        write_manifest(path, manifest(plan, state, extra))


def _run(plan: StudyPlan, world: World, overwrite: bool) -> StudyResult:
    path = plan.out / MANIFEST
    nodes = plan.nodes
    selected = set(plan.cfg.study.nodes)
    owned = {n.id for n in nodes if not selected or n.id in selected}
    state = State(hashes={n.id: config_hash(n) for n in nodes})
    drawn: dict[str, Any] = {}
    if world.rank == 0:
        previous = read_manifest(path)
        stored = _stored_entries(previous)
        for n in nodes:
            entry = stored.get(n.id, {})
            same = entry.get("status") == "done" and entry.get("config_sha256") == state.hashes[n.id]
            fresh = overwrite and n.id in owned
            state.status[n.id] = "done" if same and not fresh and complete(n) else "pending"
            if state.status[n.id] == "done" and isinstance(entry.get("seconds"), (int, float)):
                state.seconds[n.id] = float(entry["seconds"])
        if not selected and not overwrite:
            drawn = _drawn(previous, plan.out)
        _sync(plan, state, {n.id for n in nodes if n.id in owned or state.status[n.id] == "done"},
              drawn if not selected else None)
    state.status = world.bcast(state.status)
    todo = [n for n in nodes if n.id in owned and state.status[n.id] != "done"]
    mode = f"{world.size} MPI ranks" if world.size > 1 else "1 process"
    which = f"{len(owned)} of {len(nodes)} node(s) (study.nodes)" if selected else f"{len(nodes)} node(s)"
    _say(world, f"{plan.name}: {which}, {len(owned) - len(todo)} done, {len(todo)} to run ({mode}); manifest {path}")
    ran = 0
    for _, stage in plan.stages:
        ready = [n for n in stage if n.id in owned and state.status[n.id] != "done"
                 and all(state.status[d] == "done" for d in n.needs)]
        if not ready:
            continue
        if stage[0].single:
            rounds = [ready[i : i + world.size] for i in range(0, len(ready), world.size)]
        else:
            rounds = [[n] for n in ready]
        for batch in rounds:
            if stage[0].single:
                mine = batch[world.rank] if world.rank < len(batch) else None
                if mine is not None:
                    print(f"study: {_label(mine)}: running" + (f" on rank {world.rank}" if world.size > 1 else ""),
                          flush=True)
                outcome = run_node(mine, overwrite=overwrite) if mine is not None else None
                outcomes = world.gather(outcome)[: len(batch)]
            else:
                _say(world, f"{_label(batch[0])}: running")
                outcome = run_node(batch[0], overwrite=overwrite, check=world.rank == 0)
                outcomes = [world.bcast(outcome)]
            for node, result in zip(batch, outcomes):
                state.status[node.id] = result.status
                state.error[node.id] = result.error
                state.seconds[node.id] = result.seconds
                ran += 1
                _say(world, f"{_label(node)}: {result.status} in {result.seconds:.1f}s"
                            + (f": {result.error}" if result.error else ""))
            if world.rank == 0:
                _sync(plan, state, owned)
    mine_ids = [n.id for n in nodes if n.id in owned]
    failed = [i for i in mine_ids if state.status[i] == "failed"]
    waiting = sum(state.status[i] == "pending" for i in mine_ids)
    done = sum(state.status[i] == "done" for i in mine_ids)
    result = StudyResult(path, len(mine_ids), done, ran, failed, waiting)
    if world.rank == 0 and not selected and ran == 0 and drawn:
        result.figures = drawn  # nothing changed since they were drawn
    elif world.rank == 0 and not selected and plan.cfg.study.figures:
        # also when nodes failed: their panels and cells read n/a (failed / pending), the rest is the study's result
        result.figures, result.lines = draw(plan)
        if result.figures:
            _sync(plan, state, owned, result.figures)
    if failed or waiting:
        if world.rank == 0 and result.figures:
            print("\n".join([*result.lines, f"figures and table drawn without the nodes that are not done: {plan.out}"]),
                  flush=True)
        first = state.error.get(failed[0], "") if failed else ""
        needs = {n.id: n.needs for n in nodes}
        blocked = [d for i in mine_ids if state.status[i] == "pending" for d in needs[i] if state.status[d] != "done"]
        parts = [f"{len(failed)} of {len(mine_ids)} node(s) failed (first: {failed[0]}: {first})"] if failed else []
        if waiting:
            parts.append(f"{waiting} not run because an input is not done ({', '.join(sorted(set(blocked))[:3])})")
        message = (f"study {plan.name}: {', '.join(parts)}; {done} done are kept. Fix it and run the same command "
                   f"again; the nodes: {path}")
        raise JobError(message, exit_code=3, print_here=world.rank == 0)
    return result


def describe_result(result: StudyResult, cfg: Config) -> str:
    """The summary rank 0 prints: what ran, what is done, the manifest and the figures."""
    from effrep_hpc.dist.mpi import world_rank

    if world_rank() != 0:
        return ""
    lines = [*result.lines, f"study {cfg.study.name}: {result.done}/{result.total} node(s) done ({result.ran} run now)"]
    figures = result.figures.get("figures") or {}
    if figures:
        folder = result.manifest.parent / Path(next(iter(figures.values()))).parent
        lines.append(f"figures: {len(figures)} in {folder} (other seeds: python -m analysis study "
                     f"{result.manifest.parent} --seed N)")
    for label, p in (result.figures.get("table") or {}).items():
        lines.append(f"table ({label}): {result.manifest.parent / p}")
    lines.append(f"manifest: {result.manifest}")
    return "\n".join(lines)
