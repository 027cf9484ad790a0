"""The experiment registry: every experiment is one unit that the CLI, `effrep submit`, `merge` and `status` find here.

An :class:`Experiment` names its CLI words, the config sections its ``--help`` lists, its runner and how the
command prints the runner's result (``"module:function"`` strings, imported only when the command runs, so
`effrep --help` and job planning stay torch-free), its output file and the HDF5 ``kind`` stored in it, how
it splits into SLURM array tasks (``split``), how many work items it has, and how shards merge.

Adding an experiment is: its math module, a short runner, one entry in ``EXPERIMENTS`` below, tests and
docs. No shared dispatch code changes: the CLI builds one subcommand per entry, `effrep submit` plans
arrays from ``split``/``size``/``output``, and `effrep merge`/`repair`/`status` dispatch on ``kind``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Optional

from effrep_hpc.registry import Registry

# one (multi-node) job; array tasks into shards + merge; into one file; a graph of arrays (``stages``)
Split = Literal["job", "shards", "shared", "graph"]


@dataclass(frozen=True)
class Flag:
    """An extra command-line flag of an experiment, passed to its runner as a keyword argument."""

    name: str  # e.g. "--retry-failed"
    help: str

    @property
    def dest(self) -> str:
        """The runner's keyword for this flag."""
        return self.name.lstrip("-").replace("-", "_")


@dataclass(frozen=True)
class Experiment:
    """One registered experiment; see the module docstring."""

    name: str
    words: tuple[str, ...]  # CLI words, e.g. ("prune", "sensitivity")
    summary: str  # one line for `effrep --help`
    description: str  # the subcommand's --help text
    runner: str  # "module:function" taking (cfg, *, overwrite, **flags, **fixed)
    sections: tuple[str, ...]  # config sections whose keys --help lists
    show: Optional[str] = None  # "module:function" turning the runner's result into text for the terminal
    flags: tuple[Flag, ...] = ()
    fixed: tuple[tuple[str, Any], ...] = ()  # keyword arguments the runner always gets, e.g. (("retrain", True),)
    overwrite_help: str = "start over instead of resuming (the existing output is lost)"
    output: Optional[Callable[[Any], Path]] = None  # cfg -> the file a user waits for
    kind: Optional[str] = None  # the output's HDF5 "kind" attribute (merge and status dispatch on it)
    unit: str = "items"  # what one entry of the output's done mask is (status)
    split: Optional[Split] = None  # how `effrep submit` shares it out; None: not submittable
    size: Optional[Callable[[Any], int]] = None  # cfg -> number of work items (no more array tasks than that)
    merge: Optional[str] = None  # "module:function(shards, output, *, overwrite) -> (path, done, total)"
    repair: Optional[str] = None  # "module:function(path) -> (flat indices cleared, total)": `effrep repair`
    # split="graph": "module:function(cfg, config_path) -> [(role, [(argv, outputs)], roles it waits for)]", an
    # array per stage for `effrep submit` (torch-free, like everything job planning imports)
    stages: Optional[str] = None

    def load(self, what: str = "runner") -> Callable[..., Any]:
        """Import this experiment's ``runner``, ``show``, ``merge``, ``repair`` or ``stages`` function."""
        module, _, name = str(getattr(self, what)).partition(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), name)
        return function


EXPERIMENTS: Registry[Experiment] = Registry("experiment")


def register(exp: Experiment) -> Experiment:
    """Add ``exp`` under its name."""
    return EXPERIMENTS.register(exp.name)(exp)


def by_words(words: tuple[str, ...]) -> Experiment:
    """The experiment whose CLI words are ``words``; KeyError naming the valid commands otherwise."""
    for name in EXPERIMENTS:
        if EXPERIMENTS.get(name).words == words:
            return EXPERIMENTS.get(name)
    raise KeyError(" ".join(words))


def by_kind(kind: Optional[str]) -> Optional[Experiment]:
    """The experiment whose output files carry ``kind`` (None if none does)."""
    for name in EXPERIMENTS:
        if kind is not None and EXPERIMENTS.get(name).kind == kind:
            return EXPERIMENTS.get(name)
    return None


def _path(value: Optional[str], out: str, default: str) -> Path:
    return Path(value) if value else Path(out) / default


def _grid_points(cfg: Any) -> int:
    from effrep_hpc.landscape.grid import parse_axis

    ny = len(parse_axis(cfg.landscape.y)) if cfg.landscape.y is not None else 1
    return len(parse_axis(cfg.landscape.x)) * ny


def _trajectory_points(cfg: Any) -> int:
    from effrep_hpc.landscape.grid import parse_axis

    return len(parse_axis(cfg.landscape.x)) * len(parse_axis(cfg.landscape.y or cfg.landscape.x))


def _study_out(cfg: Any) -> Path:
    from effrep_hpc.config.study import study_out

    return study_out(cfg)


def _sweep_runs(cfg: Any) -> int:
    from effrep_hpc.config.quant import sweep_grid

    return len(sweep_grid(cfg))


PRUNE = "effrep_hpc.runners.prune"
register(Experiment(
    "train", ("train",), "Train a model; re-running the same command resumes after a kill.",
    "Train a model; re-running the same command resumes after a kill. Under torchrun or srun the batches\n"
    "are shared by torch.distributed processes (one DDP branch).",
    "effrep_hpc.runners.train:run_train", ("data", "model", "train", "run"), show="effrep_hpc.runners.train:describe",
    overwrite_help="delete the run's checkpoint, metrics and weights and start over",
    output=lambda cfg: Path(cfg.run.out) / "checkpoint.pt", kind="metrics", unit="epochs", split="job",
))
register(Experiment(
    "landscape", ("landscape",),
    "Scan a 1D/2D loss landscape around a checkpoint into an HDF5 surface file.",
    "Scan a 1D/2D loss landscape around a checkpoint into an HDF5 surface file. Re-running resumes; under\n"
    "`mpiexec -n P python -m mpi4py -m effrep_hpc.cli landscape ...` the grid is shared by P ranks, with\n"
    "dist.backend=array each SLURM array task writes a shard (then `effrep merge`).",
    "effrep_hpc.runners.landscape:run_landscape", ("landscape", "data", "dist", "run"),
    overwrite_help="start the surface file over instead of resuming it",
    output=lambda cfg: _path(cfg.landscape.surface, cfg.run.out, "surface.h5"), kind="surface", unit="points",
    split="shards", size=_grid_points, merge="effrep_hpc.store.surface:merge_shards",
    repair="effrep_hpc.store.surface:repair_surface",
))
CURVATURE = "effrep_hpc.runners.curvature"
register(Experiment(
    "hessian", ("hessian",), "Hessian eigenvalues, trace and spectral density at the checkpoint or a scan point.",
    "The top hessian.k eigenvalues and the smallest one (Lanczos with full reorthogonalization, no shift guessed),\n"
    "the trace (Hutchinson, Rademacher probes, with its standard error) and the spectral density (stochastic Lanczos\n"
    "quadrature) of the Hessian of the mean training loss, at landscape.checkpoint or at hessian.point=[a, b] on the\n"
    "scan's directions (the landscape section's, BN policy and bias_bn included). Prints them and stores them in\n"
    "hessian.out (default <run.out>/hessian.json); running it again reads that file back.\n\n"
    "  effrep hessian configs/demo/digits.yaml hessian.k=5 --json\n"
    "  python -m analysis spectrum runs/demo/train/hessian.json       # the spectral density, log scale",
    f"{CURVATURE}:run_hessian", ("hessian", "landscape", "data", "run"), show=f"{CURVATURE}:describe",
    flags=(Flag("--json", "print one JSON object (top_eigenvalues, min_eigenvalue, trace, trace_stderr, hvps, path)"),),
    overwrite_help="recompute even if hessian.out holds a result (it is replaced)",
))
register(Experiment(
    "curvature", ("curvature",), "Map the Hessian's largest and smallest eigenvalue over a scan's grid (HDF5).",
    "At every point of the landscape section's grid, the largest and the smallest eigenvalue of the Hessian of the\n"
    "mean training loss (Lanczos, hessian.tol, hessian.max_iter), into a surface file (hessian.map, default\n"
    "<run.out>/curvature.h5) with max_eig, min_eig, eig_ratio = |min/max| and hvps per point, stored as computed\n"
    "(no clamping). Shared out like a loss scan: MPI ranks, torch.distributed, or SLURM array shards + merge;\n"
    "re-running resumes.\n\n"
    "  mpiexec -n 2 python -m mpi4py -m effrep_hpc.cli curvature configs/demo/digits.yaml \\\n"
    "      landscape.x=-1:1:11 landscape.y=-1:1:11\n"
    "  python -m analysis convexity runs/demo/train/curvature.h5     # the paper's convexity map",
    f"{CURVATURE}:run_curvature", ("hessian", "landscape", "data", "dist", "run"),
    overwrite_help="start the map file over instead of resuming it",
    output=lambda cfg: _path(cfg.hessian.map, cfg.run.out, "curvature.h5"), kind="surface", unit="points",
    split="shards", size=_grid_points, merge="effrep_hpc.store.surface:merge_shards",
    repair="effrep_hpc.store.surface:repair_surface",
))
register(Experiment(
    "trajectory", ("trajectory",), "PCA plane of a training run's path, its loss contours and the path on them (HDF5).",
    "The paper's optimizer-path plot: the PCA of the snapshots a run kept (train.keep_every; <run.out>/weights)\n"
    "minus the final weights (landscape.checkpoint), weights only unless landscape.bias_bn=include; every snapshot\n"
    "projected on the first two directions by least squares (with its residual off the plane); then the loss scan\n"
    "of that plane over the path plus trajectory.margin (landscape.x/y give the point counts), into\n"
    "trajectory.surface (default <run.out>/trajectory.h5) with the path in its trajectory/ group. The directions go\n"
    "to trajectory.direction_file (ours) and, with trajectory.export, the original code's format; the original\n"
    "code's PCA files are read with trajectory.directions. Shared out and resumed like any scan.\n\n"
    "  effrep trajectory configs/demo/digits.yaml landscape.x=-1:1:31 landscape.y=-1:1:31\n"
    "  python -m analysis trajectory runs/demo/train/trajectory.h5   # contours, path, explained variance",
    "effrep_hpc.runners.trajectory:run_trajectory", ("trajectory", "landscape", "data", "dist", "run"),
    overwrite_help="start the surface file over (the direction file is reused while it fits the snapshots)",
    output=lambda cfg: _path(cfg.trajectory.surface, cfg.run.out, "trajectory.h5"), kind="surface", unit="points",
    split="shards", size=_trajectory_points,
    merge="effrep_hpc.store.surface:merge_shards", repair="effrep_hpc.store.surface:repair_surface",
))
register(Experiment(
    "sensitivity", ("prune", "sensitivity"), "Accuracy with each layer pruned alone, per ratio and criterion (HDF5).",
    "For every prunable layer (prune.layers), every ratio (prune.sensitivity_ratios) and every criterion\n"
    "(prune.sensitivity_criteria), prune that one layer of the trained model and evaluate it (prune.eval_split,\n"
    "optionally after prune.sensitivity_retrain_epochs of retraining). Cells are shared out by dist/ (serial,\n"
    "MPI ranks, or SLURM array tasks with dist.backend=array) into prune.sensitivity (default\n"
    "<run.out>/sensitivity.h5). Re-running resumes with any number of ranks.\n\n"
    "  mpiexec -n 4 python -m mpi4py -m effrep_hpc.cli prune sensitivity CONFIG \\\n"
    "      'prune.sensitivity_criteria=[l1,random,largest]'\n"
    "  python -m analysis sensitivity runs/x/sensitivity.h5      # the paper's Figures 2 and 8",
    "effrep_hpc.runners.sensitivity:run_sensitivity", ("prune", "data", "train", "dist", "run"),
    overwrite_help="start the file over instead of resuming it",
    output=lambda cfg: _path(cfg.prune.sensitivity, cfg.run.out, "sensitivity.h5"), kind="sensitivity", unit="cells",
    split="shards", merge="effrep_hpc.store.sensitivity:merge_sensitivity_shards",
    repair="effrep_hpc.store.sensitivity:repair_sensitivity",
))
register(Experiment(
    "prune-apply", ("prune", "apply"), "Prune a trained checkpoint by a preset or per-layer ratios (no retraining).",
    "Rank filters by prune.criterion (prune.strategy independent or greedy), cut the ones of prune.preset and/or\n"
    "prune.ratios, and save the smaller model as <prune.out>/pruned.pt (arch + state_dict). Prints test accuracy,\n"
    "FLOPs, params and the measured speed-up (median forward time at prune.speed_batch_size).",
    f"{PRUNE}:run_prune", ("prune", "data", "model", "run"), show=f"{PRUNE}:describe", fixed=(("retrain", False),),
    overwrite_help="delete earlier outputs in prune.out first",
))
register(Experiment(
    "prune-retrain", ("prune", "retrain"), "Prune a trained checkpoint and retrain it (once, or iteratively).",
    "As `apply`, then retrain with the paper's recipe: prune.retrain_lr (1e-3), prune.retrain_schedule (constant)\n"
    "for prune.retrain_epochs (40), with train.optimizer / momentum / weight_decay / batch_size.\n"
    "prune.iterations=K prunes in K equal steps, retraining after each. Every epoch is checkpointed, so\n"
    "re-running resumes; the result is <prune.out>/retrained.pt and the table in summary.json.",
    f"{PRUNE}:run_prune", ("prune", "train", "data", "model", "run"), show=f"{PRUNE}:describe", fixed=(("retrain", True),),
))
register(Experiment(
    "prune-scratch", ("prune", "scratch"), "Train the pruned architecture from scratch (the paper's baseline).",
    "Build the architecture that `apply` would produce and train it from random weights with the train section,\n"
    "under <prune.out>/scratch; resumable like `effrep train`. Its accuracy joins <prune.out>/summary.json.",
    f"{PRUNE}:run_scratch", ("prune", "train", "data", "model", "run"), show=f"{PRUNE}:describe",
))
register(Experiment(
    "quant-train", ("quant", "train"), "Train one quantized model (quant.* + train.*); re-running resumes.",
    "Train one run into run.out (quant_checkpoint.pt every epoch, metrics.h5, and the weights the net computes with\n"
    "every train.keep_every epochs in weights/ for `effrep trajectory`); re-running resumes.",
    "effrep_hpc.runners.quant:run_quant_train", ("quant", "train", "data", "model", "run"),
    show="effrep_hpc.runners.quant:describe", overwrite_help="delete the run's checkpoint and metrics and start over",
))
register(Experiment(
    "quant-sweep", ("quant", "sweep"), "Run a sweep of quantized runs into one HDF5 file (serial, MPI or array).",
    "Run every combination of quant.sweep (algorithms x bits x lr x batch_size x seeds) into one HDF5 sweep file\n"
    "(quant.sweep_file, default <run.out>/sweep.h5). Re-running resumes: done runs are skipped, unfinished ones\n"
    "restart from their per-run checkpoints in <sweep>_runs/; a run that diverges is recorded as failed and the\n"
    "sweep goes on. Runs are shared by MPI ranks (rank 0 writes) or, with dist.backend=array, by SLURM array\n"
    "tasks that write into the same file one at a time. Then: python -m analysis quant-table FILE.",
    "effrep_hpc.runners.quant_sweep:run_quant_sweep", ("quant", "train", "data", "model", "dist", "run"),
    flags=(Flag("--retry-failed", "also rerun runs recorded as failed"),),
    overwrite_help="delete the sweep file and its per-run checkpoints first",
    output=lambda cfg: _path(cfg.quant.sweep_file, cfg.run.out, "sweep.h5"), kind="quant_sweep", unit="runs",
    split="shared", size=_sweep_runs,
))
register(Experiment(
    "study", ("study",), "Train variants x seeds and measure each alike (scans, Hessian, trajectory); resumable graph.",
    "Run a study (configs/studies/, docs/studies.md): train every variant x seed of study.variants on the base (the\n"
    "file's other sections), then take study.measurements of each run (scan1d, scan2d, hessian, curvature,\n"
    "trajectory) and the interpolation of each pair, by the same runners as the single commands, into\n"
    "<study.out>/runs/<variant>/seed<seed>/ and <study.out>/pairs/; then the figures and the table\n"
    "(analysis.study). <study.out>/study.json records every node; re-running does only what is missing, and a killed\n"
    "study finishes its partial node. Under `mpiexec -n P python -m mpi4py -m effrep_hpc.cli study ...` the scans\n"
    "share their grid over the P ranks and the trainings run P at a time. Overrides: study.key=value changes the\n"
    "study, any other key=value the base of every variant.\n\n"
    "  effrep study configs/studies/tiny.yaml\n"
    "  effrep status runs/studies/tiny             # nodes done / pending / failed per kind",
    "effrep_hpc.runners.study:run_study", ("study",), show="effrep_hpc.runners.study:describe_result",
    overwrite_help="run every node again, each starting its output over (all the study's results are lost)",
    output=lambda cfg: _study_out(cfg) / "study.json", kind="study", unit="nodes",
    split="graph", stages="effrep_hpc.config.study:submission_stages",
))
