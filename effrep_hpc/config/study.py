"""`study:` one config for a whole study: variants x seeds, each trained and measured alike (`effrep study`).

A study file is an ordinary config file with one more section. Its other sections are the *base*, the
experiment every variant starts from (so `effrep study FILE train.epochs=3` changes the base of every
variant, and `study.seeds=[0]` the study itself). The ``study:`` section::

    study:
      name: tiny                     # names the output folder (default runs/studies/<name>) and the figures
      out: runs/studies/tiny         # optional
      seeds: [0, 1]                  # every variant is trained once per seed (as train.seed)
      variants:                      # what differs between runs: dotted keys, as on the command line
        - {name: bs32, set: {train.batch_size: 32}, group: {batch_size: 32}}
        - {name: bs256, set: {train.batch_size: 256}, group: {batch_size: 256}}
      measurements: [scan1d, scan2d, hessian, curvature, trajectory]
      pairs: [{name: small_vs_large, a: bs32, b: bs256}]  # 1D interpolation between the two minima, per seed
      measure:                       # overrides per measurement (landscape, hessian, trajectory, run, dist keys)
        scan2d: {landscape.x: "-1:1:25", landscape.y: "-1:1:25"}
        interp: {landscape.x: "-0.5:1.5:41"}

``group`` holds free labels for the figures' layout (depth, shortcut, ...); the study does not read them.
Each node of the study's graph runs one existing command on its own config, built in this order: the base,
the variant's ``set`` (values replace, like ``key=value``), the measurement's defaults (``scan1d``:
``landscape.y=null``; ``scan2d``: ``landscape.y`` = ``landscape.x`` when null; ``interp``: ``landscape.y=null``,
``landscape.x=-0.5:1.5:41``), ``measure.<name>``, the variant's own ``measure.<name>``, then the keys the
study fixes (:data:`FIXED`): ``train.seed``,
``run.out = <out>/runs/<variant>/seed<seed>`` and the output files (:func:`outputs`). A pair's interpolation
runs on variant ``a``'s config from ``a``'s checkpoint towards ``b``'s, so both must build the same model.

Every node config is built and checked when the file is loaded (:func:`study_problems`, called from the
root config's check), so a typo in a variant key, a duplicate name or a trajectory without kept snapshots is
one error naming the variant, before anything runs. Nothing here imports torch.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from effrep_hpc.config.base import set_dotted
from effrep_hpc.registry import did_you_mean

Measurement = Literal["scan1d", "scan2d", "hessian", "curvature", "trajectory"]
MEASUREMENTS: tuple[str, ...] = ("scan1d", "scan2d", "hessian", "curvature", "trajectory")
NODE_KINDS: tuple[str, ...] = ("train", *MEASUREMENTS, "interp")
MEASURED = (*MEASUREMENTS, "interp")  # what ``measure:`` may name
# Nodes run by one process each (under MPI: different runs on different ranks at once); the others share
# their grid over every rank.
SINGLE = ("train", "hessian")
# How a variant's run is trained (its ``train`` node runs that command; the measurements start from its result):
# ``train`` (`effrep train`), ``quant`` (`effrep quant train`: quant.algorithm, e.g. bc or sr), ``prune`` (`effrep
# prune retrain` of variant ``source``'s trained checkpoint, same seed: prune.* decides how much and how long) and
# ``scratch`` (`effrep prune scratch`: the pruned architecture of prune.* trained from random weights with train.*).
TRAINERS: tuple[str, ...] = ("train", "quant", "prune", "scratch")
# What a measurement may change: how it measures, not what was trained.
MEASURE_SECTIONS = ("landscape", "hessian", "trajectory", "run", "dist")
# Keys the study sets itself (per seed, and every output's file); a variant or a measurement may not.
FIXED = (
    "run.out", "train.seed", "landscape.checkpoint", "landscape.surface", "landscape.target", "landscape.plane",
    "hessian.out", "hessian.map", "trajectory.surface", "trajectory.direction_file", "trajectory.snapshots",
    "prune.checkpoint", "prune.out",
)
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
INTERP_X = "-0.5:1.5:41"


@dataclass
class VariantConfig:
    """One variant: a name, the dotted keys it changes in the base, and free labels for the figures."""

    name: str = ""
    set: dict[str, Any] = field(default_factory=dict)
    group: dict[str, Any] = field(default_factory=dict)
    # this variant's own overrides per measurement, after study.measure's (e.g. a narrower scan1d range for
    # unnormalized directions, whose scale is the weights' own, not the filters')
    measure: dict[str, Any] = field(default_factory=dict)
    trainer: str = "train"  # one of TRAINERS: how the run is trained
    source: str = ""  # trainer=prune: the variant whose trained checkpoint (same seed) is pruned and retrained
    skip: list[str] = field(default_factory=list)  # measurements of study.measurements not taken of this variant


@dataclass
class PairConfig:
    """Interpolate from variant ``a``'s minimum to variant ``b``'s (same seed), as a 1D ``landscape.target`` scan."""

    name: str = ""
    a: str = ""
    b: str = ""


@dataclass
class StudyConfig:
    """A study (see the module docstring); unused (no variants) by every other command."""

    name: str = ""
    out: Optional[str] = None  # default: runs/studies/<name>
    seeds: list[int] = field(default_factory=lambda: [0])
    variants: list[VariantConfig] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    pairs: list[PairConfig] = field(default_factory=list)
    measure: dict[str, Any] = field(default_factory=dict)  # measurement -> {dotted key: value}
    figures: bool = True  # draw the figures and the table at the end (analysis.study), when installed
    nodes: list[str] = field(default_factory=list)  # run only these node ids (e.g. train:bs32:seed0; `effrep submit study`)

    def _check(self) -> list[str]:
        # The checks that need the base sections (variant keys, snapshots) run in study_problems.
        return []


@dataclass(frozen=True)
class Node:
    """One node of a study's graph: a command (``kind``) on one config, its output files and what it waits for."""

    kind: str  # "train", a measurement, or "interp"
    variant: str  # the variant (interp: the pair)
    seed: int
    cfg: Any  # the node's Config
    outputs: dict[str, Path]  # label -> file (as the runner writes it)
    needs: tuple[str, ...] = ()  # ids of the nodes that must be done first
    trainer: str = "train"  # a train node: which command trains it (TRAINERS)

    @property
    def id(self) -> str:
        """``kind:variant:seedN``, unique in a study."""
        return f"{self.kind}:{self.variant}:seed{self.seed}"

    @property
    def single(self) -> bool:
        """True when one process runs it (training, a Hessian at one point); else all ranks share its grid."""
        return self.kind in SINGLE


@dataclass
class StudyPlan:
    """Every node of a study in the order they run (stage by stage), and where everything goes."""

    name: str
    out: Path
    cfg: Any  # the study's Config (base sections + study section)
    stages: list[tuple[str, list[Node]]]  # (node kind, its nodes), in running order

    @property
    def nodes(self) -> list[Node]:
        """All nodes, in running order."""
        return [n for _, nodes in self.stages for n in nodes]

    def run_dir(self, variant: str, seed: int) -> Path:
        """Where a (variant, seed) run writes: ``<out>/runs/<variant>/seed<seed>``."""
        return self.out / "runs" / variant / f"seed{seed}"


def study_out(cfg: Any) -> Path:
    """``study.out``, or ``runs/studies/<study.name>``."""
    s = cfg.study
    return Path(s.out) if s.out else Path("runs/studies") / (s.name or "unnamed")


def outputs(kind: str, run_dir: Path, pair_file: Optional[Path] = None, trainer: str = "train") -> dict[str, Path]:
    """The files a node of ``kind`` writes (the manifest's ``outputs``; a train node's ``checkpoint`` is the model
    its measurements start from, ``metrics`` its training curves)."""
    if kind == "train":
        folder = {"train": run_dir, "quant": run_dir, "prune": run_dir / "pruned", "scratch": run_dir / "pruned" / "scratch"}
        name = {"quant": "quant_checkpoint.pt", "prune": "retrained.pt"}.get(trainer, "checkpoint.pt")
        files = {"checkpoint": folder[trainer] / name, "metrics": folder[trainer] / "metrics.h5"}
        return {**files, "summary": run_dir / "pruned" / "summary.json"} if trainer in ("prune", "scratch") else files
    if kind == "hessian":
        return {"hessian": run_dir / "hessian.json"}
    if kind == "interp":
        assert pair_file is not None
        return {"surface": pair_file}
    return {"surface": run_dir / f"{kind}.h5"}


def _set(data: dict[str, Any], key: str, value: Any) -> None:
    """Set dotted ``key`` in nested ``data`` to (a copy of) ``value``, creating mappings on the way."""
    set_dotted(data, key.split("."), copy.deepcopy(value))


def _defaults(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """The measurement's own defaults on top of ``data`` (before ``measure.<kind>``)."""
    L = data.setdefault("landscape", {})
    if kind in ("scan1d", "interp"):
        L["y"] = None
    if kind == "scan2d" and L.get("y") is None:
        L["y"] = L.get("x")
    if kind == "interp":
        L["x"] = INTERP_X
    return data


def weights_dir(trained: dict[str, Path], trainer: str) -> Optional[Path]:
    """Where a train node of ``trainer`` keeps its ``train.keep_every`` snapshots (None: retraining keeps none)."""
    return None if trainer == "prune" else trained["checkpoint"].parent / "weights"


def _fixed(kind: str, node_dir: Path, seed: int, files: dict[str, Path], trained: dict[str, Path],
           trainer: str) -> dict[str, Any]:
    """The keys the study sets on a node of ``kind`` (see FIXED); ``trained``: the outputs of the run's train node."""
    keys: dict[str, Any] = {
        "run.out": str(node_dir), "train.seed": seed, "landscape.checkpoint": None, "landscape.target": None,
        "landscape.plane": None, "landscape.surface": None, "hessian.out": None, "hessian.map": None,
        "trajectory.surface": None, "trajectory.direction_file": None, "trajectory.snapshots": None,
        "prune.checkpoint": None, "prune.out": None,
    }
    if kind == "train" and trainer in ("prune", "scratch"):
        keys["prune.out"] = str(node_dir / "pruned")
    if kind != "train" and kind != "interp":
        keys["landscape.checkpoint"] = str(trained["checkpoint"])  # the trained model, whichever command made it
        snapshots = weights_dir(trained, trainer)
        keys["trajectory.snapshots"] = None if snapshots is None else str(snapshots)
    if kind in SINGLE:
        keys["dist.backend"] = "serial"  # one process: never a pool, whatever launched the study
    if kind in ("scan1d", "scan2d", "interp"):
        keys["landscape.surface"] = str(files["surface"])
    elif kind == "hessian":
        keys["hessian.out"] = str(files["hessian"])
    elif kind == "curvature":
        keys["hessian.map"] = str(files["surface"])
    elif kind == "trajectory":
        keys["trajectory.surface"] = str(files["surface"])
        keys["trajectory.direction_file"] = str(node_dir / "trajectory_directions.h5")
    return keys


def _snapshots(epochs: int, keep_every: int, every: int) -> int:
    """How many snapshots a trajectory of a run with these settings reads (see TrainingFiles.snapshot, find_snapshots)."""
    if keep_every < 1:
        return 0
    kept = sorted({0, epochs, *range(keep_every, epochs + 1, keep_every)})
    chosen = kept[::every]
    return len(chosen) + (chosen[-1] != kept[-1])


def _builder(problems: list[str]) -> Any:
    """``build(data, where)``: the Config of ``data``, or None with its problems added, each prefixed by ``where``."""
    from effrep_hpc.config import Config
    from effrep_hpc.config.base import ConfigError, build

    def make(data: dict[str, Any], where: str) -> Any:
        try:
            return build(data, Config)
        except ConfigError as exc:
            problems.extend(f"{where}: {p}" for p in exc.problems)
            return None

    return make


def _check_keys(where: str, keys: dict[str, Any], sections: Optional[tuple[str, ...]], problems: list[str]) -> None:
    """Refuse keys the study sets itself, ``study.*`` keys, and (``sections``) keys outside the allowed sections."""
    if not isinstance(keys, dict):
        problems.append(f"{where}: expected a mapping of dotted keys to values (got {keys!r})")
        return
    for key in keys:
        key = str(key)
        section = key.split(".", 1)[0]
        if key in FIXED or any(key.startswith(f + ".") for f in FIXED):
            problems.append(f"{where}: {key} is set by the study itself (outputs go under study.out, seeds come "
                            f"from study.seeds)")
        elif section == "study":
            problems.append(f"{where}: {key}: a study's own keys cannot be set here")
        elif sections is not None and section not in sections:
            problems.append(f"{where}: {key}: a measurement may set only {', '.join(s + '.*' for s in sections)} keys "
                            f"(what is trained belongs to the variant's set)")


def _names(where: str, names: list[str], problems: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if not NAME.match(name):
            problems.append(f"{where}: name {name!r} must be letters, digits and _.+- (it names folders and files)")
        elif name in seen:
            problems.append(f"{where}: two are named {name!r}; names must be unique")
        seen.add(name)


def _check_trainers(variants: list[VariantConfig], measurements: list[str], problems: list[str]) -> None:
    """Each variant's ``trainer``, ``source`` and ``skip``: known values, a source that trains, snapshots for trajectories."""
    names = {v.name: v for v in variants}
    for v in variants:
        where = f"study.variants[{v.name}]"
        if v.trainer not in TRAINERS:
            problems.append(f"{where}.trainer: unknown trainer {v.trainer!r}{did_you_mean(v.trainer, list(TRAINERS), n=1)} "
                            f"(valid: {', '.join(TRAINERS)})")
        if v.trainer == "prune":
            source = names.get(v.source)
            if source is None:
                valid = [n for n, w in names.items() if w.trainer != "prune"]
                problems.append(f"{where}.source: trainer=prune needs the variant whose trained run it prunes; "
                                f"{v.source or 'none'!r} is not one{did_you_mean(v.source, valid, n=1)} "
                                f"(valid: {', '.join(valid)})")
            elif source.trainer == "prune":
                problems.append(f"{where}.source: {v.source} is itself pruned; prune a variant trained by train, quant "
                                f"or scratch (use prune.iterations for repeated pruning)")
            if "trajectory" in measurements and "trajectory" not in v.skip:
                problems.append(f"{where}: the trajectory measurement needs snapshots, but retraining a pruned net keeps "
                                f"none; add skip: [trajectory] to this variant")
        elif v.source:
            problems.append(f"{where}.source: only a trainer=prune variant has a source (this one's trainer is {v.trainer})")
        for kind in v.skip:
            if kind not in MEASUREMENTS:
                problems.append(f"{where}.skip: unknown measurement {kind!r}{did_you_mean(str(kind), list(MEASUREMENTS), n=1)} "
                                f"(valid: {', '.join(MEASUREMENTS)})")


def _plan(cfg: Any, problems: list[str]) -> StudyPlan:
    """The study's graph; every problem found goes to ``problems`` (the plan is then incomplete)."""
    from effrep_hpc.config.base import to_dict

    s = cfg.study
    out = study_out(cfg)
    plan = StudyPlan(s.name, out, cfg, [])
    if not s.name:
        problems.append("study.name: give the study a name (it names the output folder and the figures)")
    elif not NAME.match(s.name):
        problems.append(f"study.name: {s.name!r} must be letters, digits and _.+- (it names a folder)")
    if not s.variants:
        problems.append("study.variants: a study needs at least one variant (e.g. {name: base, set: {}})")
    if not s.seeds:
        problems.append("study.seeds: give at least one seed (e.g. [0, 1, 2])")
    if len(set(s.seeds)) != len(s.seeds) or any(seed < 0 for seed in s.seeds):
        problems.append(f"study.seeds: must be distinct integers >= 0 (got {s.seeds})")
    _names("study.variants", [v.name for v in s.variants], problems)
    _names("study.pairs", [p.name for p in s.pairs], problems)
    if len(set(s.measurements)) != len(s.measurements):
        problems.append(f"study.measurements: each measurement once (got {s.measurements})")
    measure = s.measure if isinstance(s.measure, dict) else {}
    for key, keys in measure.items():
        if key not in MEASURED:
            problems.append(f"study.measure.{key}: unknown measurement{did_you_mean(str(key), list(MEASURED), n=1)} "
                            f"(valid: {', '.join(MEASURED)})")
        else:
            _check_keys(f"study.measure.{key}", keys, MEASURE_SECTIONS, problems)
    for v in s.variants:
        _check_keys(f"study.variants[{v.name}].set", v.set, None, problems)
        for key, keys in (v.measure if isinstance(v.measure, dict) else {}).items():
            if key not in MEASUREMENTS:
                problems.append(f"study.variants[{v.name}].measure.{key}: unknown measurement"
                                f"{did_you_mean(str(key), list(MEASUREMENTS), n=1)} (valid: {', '.join(MEASUREMENTS)})")
            else:
                _check_keys(f"study.variants[{v.name}].measure.{key}", keys, MEASURE_SECTIONS, problems)
    names = [v.name for v in s.variants]
    for p in s.pairs:
        for side in ("a", "b"):
            value = getattr(p, side)
            if value not in names:
                problems.append(f"study.pairs[{p.name}].{side}: unknown variant {value!r}{did_you_mean(value, names, n=1)} "
                                f"(valid: {', '.join(names)})")
        if p.a == p.b:
            problems.append(f"study.pairs[{p.name}]: a and b are the same variant ({p.a!r})")
    if len(set(names)) != len(names):
        return plan

    base = to_dict(cfg)
    base.pop("study")
    make = _builder(problems)
    variants: dict[str, dict[str, Any]] = {}
    for v in s.variants:
        data = copy.deepcopy(base)
        for key, value in v.set.items():
            _set(data, str(key), value)
        if make(data, f"study.variants[{v.name}].set") is not None:
            variants[v.name] = data
    if len(variants) < len(s.variants):
        return plan

    def node(kind: str, name: str, data: dict[str, Any], seed: int, node_dir: Path, files: dict[str, Path],
             needs: tuple[str, ...], where: str, extra: Optional[dict[str, Any]] = None,
             own: Optional[dict[str, Any]] = None, trained: Optional[dict[str, Path]] = None,
             trainer: str = "train") -> Optional[Node]:
        data = copy.deepcopy(data)
        if kind != "train":
            _defaults(kind, data)
            for key, value in {**(measure.get(kind) or {}), **((own or {}).get(kind) or {})}.items():
                _set(data, str(key), value)
        fixed = _fixed(kind, node_dir, seed, files, trained or files, trainer)
        for key, value in {**fixed, **(extra or {})}.items():
            _set(data, key, value)
        built = make(data, where)
        return None if built is None else Node(kind, name, seed, built, files, needs, trainer if kind == "train" else "train")

    before = len(problems)
    _check_trainers(s.variants, list(s.measurements), problems)
    if len(problems) > before:
        return plan
    stages: dict[str, list[Node]] = {kind: [] for kind in (*NODE_KINDS, "prune")}
    trains: dict[tuple[str, int], Node] = {}
    # variants pruned from another variant's run train after all the others (their own stage: SLURM arrays wait)
    for v in sorted(s.variants, key=lambda v: v.trainer == "prune"):
        for seed in s.seeds:
            run_dir = plan.run_dir(v.name, seed)
            files = outputs("train", run_dir, trainer=v.trainer)
            needs: tuple[str, ...] = ()
            extra: dict[str, Any] = {}
            if v.trainer == "prune":
                source = trains.get((v.source, seed))
                if source is None:
                    continue
                needs, extra = (source.id,), {"prune.checkpoint": str(source.outputs["checkpoint"])}
            train = node("train", v.name, variants[v.name], seed, run_dir, files, needs, f"study.variants[{v.name}]",
                         extra, trainer=v.trainer)
            if train is None:
                continue
            trains[v.name, seed] = train
            stages["prune" if v.trainer == "prune" else "train"].append(train)
            for kind in s.measurements:
                if kind in v.skip:
                    continue
                where = f"study.variants[{v.name}] with study.measure.{kind}"
                m = node(kind, v.name, variants[v.name], seed, run_dir, outputs(kind, run_dir), (train.id,), where,
                         own=v.measure if isinstance(v.measure, dict) else {}, trained=files, trainer=v.trainer)
                if m is not None:
                    stages[kind].append(m)
    for p in s.pairs:
        for seed in s.seeds:
            a, b = trains.get((p.a, seed)), trains.get((p.b, seed))
            if a is None or b is None:
                continue
            if (a.cfg.model.name, a.cfg.model.kwargs) != (b.cfg.model.name, b.cfg.model.kwargs):
                problems.append(f"study.pairs[{p.name}]: interpolation needs one model for a and b, but {p.a} builds "
                                f"{a.cfg.model.name} {a.cfg.model.kwargs} and {p.b} {b.cfg.model.name} {b.cfg.model.kwargs}")
                break
            cuts = [(n.cfg.prune.preset, n.cfg.prune.ratios, n.cfg.prune.round_to) if n.trainer in ("prune", "scratch")
                    else None for n in (a, b)]  # what decides a pruned net's widths (None: unpruned)
            if cuts[0] != cuts[1]:
                problems.append(f"study.pairs[{p.name}]: interpolation needs one architecture for a and b, but "
                                f"{p.a} ({a.trainer}) and {p.b} ({b.trainer}) have different layer widths (pruned by "
                                f"other prune.* settings, or pruned against unpruned)")
                break
            files = outputs("interp", out / "pairs", out / "pairs" / f"{p.name}_seed{seed}.h5")
            ends = {"landscape.checkpoint": str(a.outputs["checkpoint"]), "landscape.target": str(b.outputs["checkpoint"])}
            m = node("interp", p.name, variants[p.a], seed, out / "pairs", files, (a.id, b.id),
                     f"study.pairs[{p.name}] with study.measure.interp", ends)
            if m is not None:
                stages["interp"].append(m)
    reported: set[str] = set()
    for m in stages["trajectory"]:
        t = m.cfg.train
        count = _snapshots(t.epochs, t.keep_every, m.cfg.trajectory.every)
        if m.variant in reported or count >= 3:
            continue
        reported.add(m.variant)
        if t.keep_every == 0:
            problems.append(f"study.variants[{m.variant}]: the trajectory measurement needs snapshots: set "
                            f"train.keep_every (e.g. train.keep_every=1; it is 0)")
        else:
            problems.append(f"study.variants[{m.variant}]: the trajectory measurement needs >= 3 snapshots but "
                            f"train.epochs={t.epochs} with train.keep_every={t.keep_every} and "
                            f"trajectory.every={m.cfg.trajectory.every} keeps {count}")
    if any(n.cfg.dist.backend == "array" for kind in MEASURED for n in stages[kind]):
        problems.append("dist.backend=array: a study shares out its work itself (under MPI, or as arrays made by "
                        "`effrep submit study`); use dist.backend=auto")
    for v, seed in ((v, seed) for v in s.variants if v.trainer == "prune" for seed in s.seeds[:1]):
        a, b = trains.get((v.source, seed)), trains.get((v.name, seed))
        if a is not None and b is not None and a.cfg.model.name != b.cfg.model.name:
            problems.append(f"study.variants[{v.name}]: prunes {v.source}'s {a.cfg.model.name} but builds "
                            f"{b.cfg.model.name}; a pruned variant keeps its source's model.name")
    order = ["train", "prune", *s.measurements, "interp"]
    plan.stages = [(kind, stages[kind]) for kind in order if stages[kind]]
    ids = [n.id for n in plan.nodes]
    for wanted in s.nodes:
        if wanted not in ids:
            problems.append(f"study.nodes: no node {wanted!r} in this study{did_you_mean(wanted, ids, n=1)} "
                            f"(ids are kind:variant:seedN, e.g. {ids[0] if ids else 'train:base:seed0'})")
    return plan


def study_problems(cfg: Any) -> list[str]:
    """Every problem of ``cfg``'s study section together with its base (empty when fine, or when there is no study)."""
    from effrep_hpc.config.base import ConfigError, build, to_dict

    if not cfg.study.variants and not cfg.study.name:
        return []  # not a study file: the section is unused
    base = to_dict(cfg)
    base.pop("study")
    try:
        build(base, type(cfg))
    except ConfigError:
        return []  # the base's own problems are reported by its sections (not once more per variant)
    problems: list[str] = []
    _plan(cfg, problems)
    return problems


def plan_study(cfg: Any) -> StudyPlan:
    """The graph of ``cfg``'s study; ConfigError listing every problem first."""
    from effrep_hpc.config.base import ConfigError

    problems: list[str] = []
    plan = _plan(cfg, problems)
    if problems:
        raise ConfigError(problems)
    return plan


def submission_stages(cfg: Any, config_path: str) -> list[tuple[str, list[tuple[list[str], list[str]]], tuple[str, ...]]]:
    """`effrep submit study`: an array per stage, one task per node (``effrep study CONFIG study.nodes=[id]``), each
    measurement's array and the pairs' waiting for the training array, and a last job (``effrep study CONFIG``)
    waiting for all of them, which finds every node done, completes the manifest and draws the figures."""
    plan = plan_study(cfg)
    stages: list[tuple[str, list[tuple[list[str], list[str]]], tuple[str, ...]]] = []
    for kind, nodes in plan.stages:
        tasks = [(["study", config_path, f"study.nodes=[{n.id}]"], [str(p) for p in n.outputs.values()]) for n in nodes]
        trained = tuple(k for k, _ in plan.stages if k in ("train", "prune"))  # a pruned run waits for its source's
        stages.append((kind, tasks, () if kind == "train" else tuple(k for k in trained if k != kind)))
    final = (["study", config_path], [str(plan.out / "study.json")])
    stages.append(("finish", [final], tuple(kind for kind, _ in plan.stages)))
    return stages
