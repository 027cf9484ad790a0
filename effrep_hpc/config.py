"""Typed configs: YAML files and dotted ``key=value`` overrides become nested dataclasses.

Every problem in a config (unknown key, wrong type, impossible value) is collected and reported in
one :class:`ConfigError` that names the key, the closest valid key and the valid choices, before any
file is created. The resolved config is stored with every output as YAML text (:func:`to_yaml`).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union, get_args, get_origin

import yaml

from effrep_hpc.registry import close_names


class _Loader(yaml.SafeLoader):
    """YAML with 1.2-style numbers: ``-1:1:51`` stays a string (1.1 reads base 60), ``1e-3`` is a float."""


_NUMBER_TAGS = ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in _NUMBER_TAGS]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:int", re.compile(r"^[-+]?(0|[1-9][0-9_]*|0x[0-9a-fA-F_]+|0o[0-7_]+)$"), list("-+0123456789")
)
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^([-+]?(\.[0-9]+|[0-9][0-9_]*(\.[0-9_]*)?)([eE][-+]?[0-9]+)?|[-+]?\.(inf|Inf|INF)|\.(nan|NaN|NAN))$"),
    list("-+0123456789."),
)


def yaml_load(text: str) -> Any:
    """Parse YAML text with the config loader (numbers as in YAML 1.2)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


class ConfigError(ValueError):
    """A config that cannot be used; the message lists every problem found."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid config ({len(self.problems)} problem(s)):\n{lines}")


# ----------------------------------------------------------------------------------------------
# Sections. Defaults work on a laptop; every value can be overridden as section.key=value.


@dataclass
class DataConfig:
    """Which in-memory dataset to load, and how."""

    name: Literal["digits", "mnist1d", "cifar10", "imagenet", "synthetic"] = "digits"
    # cifar10: directory with data_batch_1..5 and test_batch; imagenet: directory with train/ and val/
    root: Optional[str] = None
    cache_dir: Optional[str] = None  # mnist1d, imagenet: where generated/decoded data is cached
    seed: int = 0
    augment: bool = False  # random crop (pad 4) + horizontal flip on the device
    train_size: Optional[int] = None  # take a seeded subset of the training set
    test_size: Optional[int] = None
    input_shape: Optional[list[int]] = None  # synthetic only
    num_classes: Optional[int] = None  # synthetic: number of classes; imagenet: keep the first K classes
    image_size: Optional[int] = None  # imagenet only: side of the centre crop (default 224)

    def _check(self) -> list[str]:
        problems = []
        if self.name == "cifar10" and not self.root:
            problems.append("data.root: required for data.name=cifar10 (directory of the python-pickle batches)")
        if self.name == "imagenet" and not self.root:
            problems.append("data.root: required for data.name=imagenet (directory holding train/<class>/ and val/<class>/)")
        if self.image_size is not None and self.name != "imagenet":
            problems.append(f"data.image_size: only used with data.name=imagenet (data.name is {self.name!r})")
        for key in ("train_size", "test_size", "num_classes", "image_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                problems.append(f"data.{key}: must be >= 1 (got {value})")
        return problems


@dataclass
class ModelConfig:
    """Which registered model to build; ``kwargs`` go to its constructor (e.g. widths)."""

    name: str = "digits_cnn"
    kwargs: dict[str, Any] = field(default_factory=dict)

    def _check(self) -> list[str]:
        from effrep_hpc.models import list_models

        names = list_models()
        if self.name not in names:
            close = close_names(self.name, names)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            return [f"model.name: unknown model {self.name!r}{hint} (valid: {', '.join(names)})"]
        return []


@dataclass
class TrainConfig:
    """Optimizer, schedule and length of training."""

    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.1
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 5e-4
    schedule: Literal["constant", "multistep", "cosine"] = "multistep"
    milestones: list[int] = field(default_factory=lambda: [5, 8])
    gamma: float = 0.1
    epochs: int = 10
    batch_size: int = 128
    seed: int = 0
    loss: Literal["ce", "mse"] = "ce"
    keep_every: int = 1  # keep the weights of every k-th epoch for trajectories (0: keep none)

    def _check(self) -> list[str]:
        problems = []
        if self.lr <= 0:
            problems.append(f"train.lr: must be > 0 (got {self.lr})")
        if self.epochs < 1:
            problems.append(f"train.epochs: must be >= 1 (got {self.epochs})")
        if self.batch_size < 1:
            problems.append(f"train.batch_size: must be >= 1 (got {self.batch_size})")
        if not 0 <= self.momentum < 1:
            problems.append(f"train.momentum: must be in [0, 1) (got {self.momentum})")
        if self.nesterov and (self.optimizer != "sgd" or self.momentum == 0):
            problems.append("train.nesterov: needs train.optimizer=sgd and train.momentum > 0")
        if self.weight_decay < 0:
            problems.append(f"train.weight_decay: must be >= 0 (got {self.weight_decay})")
        if self.keep_every < 0:
            problems.append(f"train.keep_every: must be >= 0 (got {self.keep_every})")
        if sorted(self.milestones) != list(self.milestones) or any(m < 1 for m in self.milestones):
            problems.append(f"train.milestones: must be increasing epochs >= 1 (got {self.milestones})")
        return problems


@dataclass
class RunConfig:
    """Where outputs go and what to run on."""

    out: str = "runs/default"  # output directory
    device: str = "auto"  # auto: CUDA (by local rank) when present, else CPU; or cpu, cuda, cuda:1
    threads: int = 0  # torch intra-op threads; 0 keeps torch's default
    deterministic: bool = False  # bitwise-reproducible kernels (slower on GPU)
    progress: bool = True

    def _check(self) -> list[str]:
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            return [f"run.device: must be auto, cpu, cuda or cuda:N (got {self.device!r})"]
        if self.threads < 0:
            return [f"run.threads: must be >= 0 (got {self.threads})"]
        return []


@dataclass
class LandscapeConfig:
    """A 1D or 2D loss-landscape scan around a trained checkpoint."""

    checkpoint: Optional[str] = None  # default: <run.out>/checkpoint.pt
    surface: Optional[str] = None  # default: <run.out>/surface.h5
    x: str = "-1:1:25"  # lo:hi:num
    y: Optional[str] = "-1:1:25"  # null for a 1D scan
    norm: Literal["filter", "layer", "weight", "dfilter", "dlayer", "none"] = "filter"
    bias_bn: Literal["ignore", "include"] = "ignore"
    xseed: int = 1
    yseed: int = 2
    same_dir: bool = False
    target: Optional[str] = None  # second checkpoint: 1D interpolation along model2 - model1
    plane: Optional[list[str]] = None  # two more checkpoints: the plane through three models
    directions: Optional[str] = None  # reuse directions from this file (ours or the original format)
    bn: Literal["eval", "recompute", "train"] = "eval"
    bn_batches: int = 10
    loss: Literal["ce", "mse"] = "ce"
    train_size: Optional[int] = None  # evaluate on a seeded subset of the training set
    test: bool = True  # also evaluate on the test split
    batch_size: int = 256  # per forward pass; 256 is fastest on CPU, raise it on a GPU
    points_per_pass: int = 0  # grid points per forward pass; 0 = auto
    tile_size: int = 0  # grid points per work item; 0 = auto
    backend: Literal["auto", "serial", "mpi", "torch", "array"] = "auto"
    task_id: Optional[int] = None  # array backend: this task's index (default: from SLURM)
    num_tasks: Optional[int] = None  # array backend: number of tasks (default: from SLURM)

    def _check(self) -> list[str]:
        from effrep_hpc.landscape.grid import parse_axis

        problems = []
        if self.target and self.plane:
            problems.append("landscape.target and landscape.plane: choose one")
        if self.target and self.y is not None:
            problems.append("landscape.target: interpolation is 1D; set landscape.y=null")
        if self.plane is not None and len(self.plane) != 2:
            problems.append("landscape.plane: give the two other checkpoints (the centre is landscape.checkpoint)")
        if self.bn_batches < 1:
            problems.append(f"landscape.bn_batches: must be >= 1 (got {self.bn_batches})")
        if self.batch_size < 1:
            problems.append(f"landscape.batch_size: must be >= 1 (got {self.batch_size})")
        for key in ("points_per_pass", "tile_size"):
            if getattr(self, key) < 0:
                problems.append(f"landscape.{key}: must be >= 0 (0 = auto)")
        for key in ("x", "y"):
            spec = getattr(self, key)
            if spec is not None:
                try:
                    parse_axis(spec)
                except ValueError as exc:
                    problems.append(f"landscape.{key}: {exc}")
        return problems


# --- BEGIN PruneConfig (owned by the pruning work; edit only inside this block) ---
@dataclass
class PruneConfig:
    """Filter pruning: criterion, strategy, preset or per-layer ratios, sensitivity and retraining."""

    criterion: str = "l1"  # l1, l2, random, largest, mean_mean, mean_std, mean_l1, mean_l2, var_l2
    strategy: Literal["independent", "greedy"] = "independent"
    preset: Optional[str] = None  # vgg16-a, resnet56-a/b, resnet110-a/b, resnet34-a/b (paper ratios)
    ratios: dict[str, Any] = field(default_factory=dict)  # layer name or paper id -> fraction removed
    checkpoint: Optional[str] = None  # the trained model; default: <run.out>/checkpoint.pt
    out: Optional[str] = None  # apply/retrain/scratch outputs; default: <run.out>/pruned
    round_to: int = 1  # > 1: round each pruned layer's kept filters to a multiple (8 suits CPU/GPU kernels)
    seed: int = 0  # random criterion and the sample of images for activation criteria
    activation_images: int = 256  # N training images for the activation criteria
    # prune-and-retrain (the paper: constant lr 1e-3, 40 epochs on CIFAR-10); optimizer, momentum,
    # weight decay and batch size come from the train section, which `prune scratch` uses whole
    iterations: int = 1  # > 1: prune in that many equal steps, retraining after each
    retrain_epochs: int = 40  # per step
    retrain_lr: float = 0.001
    retrain_schedule: Literal["constant", "multistep", "cosine"] = "constant"
    retrain_milestones: list[int] = field(default_factory=list)
    # sensitivity scan: every layer x ratio x criterion, one layer pruned at a time
    sensitivity: Optional[str] = None  # the HDF5 file; default: <run.out>/sensitivity.h5
    layers: Optional[list[str]] = None  # default: every prunable layer
    sensitivity_ratios: list[float] = field(default_factory=lambda: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9])
    sensitivity_criteria: list[str] = field(default_factory=lambda: ["l1"])
    sensitivity_retrain_epochs: int = 0  # > 0: retrain each pruned model this long before evaluating
    eval_split: Literal["test", "train"] = "test"
    eval_size: Optional[int] = None  # evaluate on a seeded subset of this many samples
    eval_batch_size: int = 1024
    backend: Literal["auto", "serial", "mpi", "torch", "array"] = "auto"
    task_id: Optional[int] = None  # array backend: this task's index (default: from SLURM)
    num_tasks: Optional[int] = None  # array backend: number of tasks (default: from SLURM)
    # measured speed-up printed with the results (CPU timings use run.threads)
    speed_batch_size: int = 32
    speed_repeats: int = 20

    def _check(self) -> list[str]:
        from effrep_hpc.prune.criteria import criterion_name
        from effrep_hpc.prune.presets import get_preset

        problems = []
        for key, names in (("criterion", [self.criterion]), ("sensitivity_criteria", self.sensitivity_criteria)):
            for name in names:
                try:
                    criterion_name(name)
                except ValueError as exc:
                    problems.append(f"prune.{key}: {exc}")
        if not self.sensitivity_criteria:
            problems.append("prune.sensitivity_criteria: give at least one criterion, e.g. [l1, random, largest]")
        if self.preset is not None:
            try:
                get_preset(self.preset)
            except ValueError as exc:
                problems.append(f"prune.preset: {exc}")
        for layer, ratio in self.ratios.items():
            if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 <= ratio < 1:
                problems.append(
                    f"prune.ratios[{layer}]: must be a number in [0, 1), the fraction of filters removed (got {ratio!r})"
                )
        if not self.sensitivity_ratios:
            problems.append("prune.sensitivity_ratios: give at least one ratio, e.g. [0.1, 0.5, 0.9]")
        for i, ratio in enumerate(self.sensitivity_ratios):
            if not 0 <= ratio < 1:
                problems.append(f"prune.sensitivity_ratios[{i}]: must lie in [0, 1) (got {ratio})")
        if len(set(self.sensitivity_ratios)) != len(self.sensitivity_ratios):
            problems.append(f"prune.sensitivity_ratios: values repeat ({self.sensitivity_ratios})")
        positive = ("round_to", "activation_images", "iterations", "retrain_epochs", "eval_batch_size", "speed_batch_size", "speed_repeats")
        for key in positive:
            if getattr(self, key) < 1:
                problems.append(f"prune.{key}: must be >= 1 (got {getattr(self, key)})")
        if self.sensitivity_retrain_epochs < 0:
            problems.append(f"prune.sensitivity_retrain_epochs: must be >= 0 (got {self.sensitivity_retrain_epochs})")
        if self.retrain_lr <= 0:
            problems.append(f"prune.retrain_lr: must be > 0 (got {self.retrain_lr})")
        if self.eval_size is not None and self.eval_size < 1:
            problems.append(f"prune.eval_size: must be >= 1 (got {self.eval_size})")
        if sorted(self.retrain_milestones) != list(self.retrain_milestones) or any(m < 1 for m in self.retrain_milestones):
            problems.append(f"prune.retrain_milestones: must be increasing epochs >= 1 (got {self.retrain_milestones})")
        if self.layers is not None and not self.layers:
            problems.append("prune.layers: give at least one layer, or null for all")
        return problems


# --- END PruneConfig ---


# --- BEGIN QuantConfig (owned by the quantization work; edit only inside this block) ---
@dataclass
class QuantSweepConfig:
    """The grid of `effrep quant sweep`: every combination is one run (FP algorithms run once, at 32 bits).

    An empty list keeps the single value of the base config (quant.algorithm, quant.bits, train.lr,
    train.batch_size, train.seed).
    """

    algorithms: list[str] = field(default_factory=list)
    bits: list[int] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    batch_size: list[int] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    def _check(self) -> list[str]:
        from effrep_hpc.quant.algorithms import ALGORITHMS
        from effrep_hpc.quant.quantizers import MAX_BITS

        problems = []
        for i, name in enumerate(self.algorithms):
            if name not in ALGORITHMS:
                problems.append(f"quant.sweep.algorithms[{i}]: {_quant_unknown(name)}")
        checks = (
            ("bits", lambda v: 1 <= v <= MAX_BITS, f"an integer in 1..{MAX_BITS}"),
            ("lr", lambda v: v > 0, "> 0"),
            ("batch_size", lambda v: v >= 1, ">= 1"),
            ("seeds", lambda v: v >= 0, ">= 0"),
        )
        for key, ok, what in checks:
            values = getattr(self, key)
            bad = [v for v in values if not ok(v)]
            if bad:
                problems.append(f"quant.sweep.{key}: every entry must be {what} (got {bad})")
        for key in ("algorithms", "bits", "lr", "batch_size", "seeds"):
            values = getattr(self, key)
            if len(set(values)) != len(values):
                problems.append(f"quant.sweep.{key}: has repeated entries {values}; list each value once")
        return problems


def _quant_unknown(name: str) -> str:
    from effrep_hpc.quant.algorithms import ALGORITHMS

    close = close_names(str(name), list(ALGORITHMS))
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown algorithm {name!r}{hint} (valid: {', '.join(ALGORITHMS)})"


@dataclass
class QuantConfig:
    """Quantized training (Li et al. 2017): algorithm, grid, which layers, and sweeps over them.

    Algorithms: fp, bc, sr, r (SGD step with train.momentum) and fp-adam, bc-adam, sr-adam, r-adam (Adam step);
    the algorithm decides SGD vs Adam, train.optimizer is not used. bits: 1 (binary: sign x per-layer scale)
    to 16; FP runs ignore it. delta_rule: how each layer's grid resolution is picked from its initial weights,
    ``gauss`` (MSE-optimal for Gaussian weights), ``max`` (outermost level at max|w|) or ``fixed`` (quant.delta);
    delta_scale multiplies it (see effrep_hpc/quant/quantizers.py for when a coarser grid helps).
    """

    algorithm: str = "bc"
    bits: int = 1
    delta_rule: Literal["gauss", "max", "fixed"] = "gauss"
    delta: Optional[float] = None  # the grid resolution for delta_rule=fixed
    delta_scale: float = 1.0  # multiplies the rule's Delta (a coarser grid than the initial weights suggest)
    quantize_first_last: bool = True  # false keeps the first and last conv/linear layer in float
    clip: bool = True  # BC: keep the float copy inside the grid's range
    sweep: QuantSweepConfig = field(default_factory=QuantSweepConfig)
    sweep_file: Optional[str] = None  # default: <run.out>/sweep.h5
    backend: Literal["auto", "serial", "mpi", "array"] = "auto"
    task_id: Optional[int] = None  # array backend: this task's index (default: from SLURM)
    num_tasks: Optional[int] = None  # array backend: number of tasks (default: from SLURM)
    lock_timeout: float = 600.0  # seconds a writer waits for the sweep file's lock before giving up

    def _check(self) -> list[str]:
        from effrep_hpc.quant.algorithms import ALGORITHMS
        from effrep_hpc.quant.quantizers import MAX_BITS

        problems = []
        spec = ALGORITHMS.get(self.algorithm)
        if spec is None:
            problems.append(f"quant.algorithm: {_quant_unknown(self.algorithm)}")
        fp = spec is not None and spec.rule == "fp"
        if not (1 <= self.bits <= MAX_BITS or (fp and self.bits == 32)):
            problems.append(f"quant.bits: must be in 1..{MAX_BITS} (1 = binary weights; got {self.bits})")
        if self.delta_rule == "fixed" and (self.delta is None or not self.delta > 0):
            problems.append("quant.delta: delta_rule=fixed needs a positive quant.delta (the grid resolution)")
        if self.delta is not None and self.delta_rule != "fixed":
            problems.append(f"quant.delta: only used with quant.delta_rule=fixed (delta_rule is {self.delta_rule!r})")
        if not self.delta_scale > 0:
            problems.append(f"quant.delta_scale: must be > 0 (got {self.delta_scale})")
        if not self.lock_timeout > 0:
            problems.append(f"quant.lock_timeout: must be > 0 seconds (got {self.lock_timeout})")
        if self.backend != "array" and (self.task_id is not None or self.num_tasks is not None):
            problems.append("quant.task_id/num_tasks: only used with quant.backend=array")
        if self.num_tasks is not None and self.num_tasks < 1:
            problems.append(f"quant.num_tasks: must be >= 1 (got {self.num_tasks})")
        if self.task_id is not None and self.num_tasks is not None and not 0 <= self.task_id < self.num_tasks:
            problems.append(f"quant.task_id: must be in 0..{self.num_tasks - 1} (got {self.task_id})")
        return problems


# --- END QuantConfig ---


# --- BEGIN LaunchConfig (owned by the cluster-launch work; edit only inside this block) ---
@dataclass
class LaunchConfig:
    """How `effrep submit` sends work to SLURM (or runs it locally through submitit).

    A preset from configs/clusters/ (``cluster``) fills these first; the config's own ``launch:``
    section and ``launch.key=value`` overrides win over the preset.
    """

    cluster: Optional[str] = None  # preset name in configs/clusters/ or a path to a preset YAML file
    executor: Literal["auto", "slurm", "local"] = "auto"  # auto: slurm when sbatch is on PATH
    folder: Optional[str] = None  # submitit logs, pickles and config snapshots; default <run.out>/submitit
    partition: Optional[str] = None
    account: Optional[str] = None
    qos: Optional[str] = None
    constraint: Optional[str] = None
    time: int = 60  # minutes per job (array task); USR2 arrives signal_delay_s before the end
    nodes: int = 1  # training only; array tasks and merges use one node
    tasks_per_node: int = 1  # training: torch.distributed processes per node
    cpus_per_task: Optional[int] = None
    gpus_per_task: Optional[int] = None
    mem_gb: Optional[float] = None  # per node
    array: int = 4  # array tasks for landscape scans and sweeps (--array N overrides)
    array_parallelism: int = 0  # at most this many array tasks run at once; 0: no limit
    merge_time: int = 30  # minutes for the merge job that follows a landscape array
    signal_delay_s: int = 120  # seconds between USR2 and the time limit: time to stop and requeue
    max_requeues: int = 3  # times a task may be requeued after hitting its time limit
    setup: list[str] = field(default_factory=list)  # shell lines run before the job: module load, venv
    srun_args: list[str] = field(default_factory=list)  # extra srun arguments, e.g. --cpu-bind=none
    sbatch: dict[str, Any] = field(default_factory=dict)  # any other #SBATCH option, e.g. {mail-type: END}
    python: Optional[str] = None  # the python that runs the jobs; default: the one running effrep

    def _check(self) -> list[str]:
        problems = []
        for key in ("time", "nodes", "tasks_per_node", "array", "merge_time"):
            if getattr(self, key) < 1:
                problems.append(f"launch.{key}: must be >= 1 (got {getattr(self, key)})")
        for key in ("cpus_per_task", "gpus_per_task"):
            value = getattr(self, key)
            if value is not None and value < (1 if key == "cpus_per_task" else 0):
                problems.append(f"launch.{key}: must be >= {1 if key == 'cpus_per_task' else 0} (got {value})")
        if self.mem_gb is not None and self.mem_gb <= 0:
            problems.append(f"launch.mem_gb: must be > 0 (got {self.mem_gb})")
        for key in ("array_parallelism", "max_requeues", "signal_delay_s"):
            if getattr(self, key) < 0:
                problems.append(f"launch.{key}: must be >= 0 (got {getattr(self, key)})")
        if self.signal_delay_s >= self.time * 60:
            problems.append(
                f"launch.signal_delay_s: {self.signal_delay_s} s is not shorter than launch.time={self.time} min; "
                "the job would be signalled to stop as soon as it starts"
            )
        for key in self.sbatch:
            if str(key).replace("_", "-") in ("array", "dependency", "output", "error", "signal", "job-name"):
                problems.append(f"launch.sbatch.{key}: set by effrep submit itself; remove it")
        return problems


# --- END LaunchConfig ---


@dataclass
class Config:
    """The root config: one section per concern; each command reads the sections it needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)


# ----------------------------------------------------------------------------------------------
# Building dataclasses from plain data, with every problem collected.


def _type_name(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        return " or ".join(_type_name(a) for a in args) + " or null"
    if origin is list:
        return f"list of {_type_name(get_args(tp)[0])}"
    if origin is dict:
        return "mapping"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str, problems: list[str]) -> Any:
    """Check ``value`` against the annotation ``tp``; return it converted (int -> float etc.)."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping of {tp.__name__} keys (got {value!r})")
            return tp()
        return _build(tp, value, key + ".", problems)
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return _convert(value, inner[0], key, problems)
    if origin is Literal:
        choices = get_args(tp)
        if value not in choices:
            close = close_names(str(value), [str(c) for c in choices])
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(f"{key}: invalid value {value!r}{hint} (valid: {', '.join(map(str, choices))})")
            return choices[0]
        return value
    if origin is list:
        if not isinstance(value, (list, tuple)):
            problems.append(f"{key}: expected {_type_name(tp)} (got {value!r})")
            return []
        (item_tp,) = get_args(tp)
        return [_convert(v, item_tp, f"{key}[{i}]", problems) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            problems.append(f"{key}: expected a mapping (got {value!r})")
            return {}
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"{key}: expected true or false (got {value!r})")
            return False
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"{key}: expected an integer (got {value!r})")
            return 0
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"{key}: expected a number (got {value!r})")
            return 0.0
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            # YAML turns `x: 1:2:3`-like text into strings anyway; numbers given for a str key are
            # almost always a mistake, but a bare number as a path or name is harmless.
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return str(value)
            problems.append(f"{key}: expected a string (got {value!r})")
            return ""
        return value
    raise TypeError(f"unsupported config annotation {tp!r} for {key}")


def _build(cls: type, data: dict[str, Any], prefix: str, problems: list[str]) -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key not in names:
            close = close_names(str(key), names)
            hint = f"; did you mean {prefix}{close[0]}?" if close else ""
            problems.append(f"{prefix}{key}: unknown key{hint} (valid keys: {', '.join(names)})")
            continue
        kwargs[key] = _convert(value, hints[key], prefix + key, problems)
    obj = cls(**kwargs)
    return obj


def _check_all(obj: Any, problems: list[str]) -> None:
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            _check_all(value, problems)
    check = getattr(obj, "_check", None)
    if check is not None:
        problems.extend(check())


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``a.b=value`` into (["a", "b"], value), the value parsed as YAML (so 0.05 is a float)."""
    if "=" not in text:
        raise ConfigError([f"override {text!r}: expected section.key=value, e.g. train.lr=0.05"])
    key, raw = text.split("=", 1)
    if not key or any(not part for part in key.split(".")):
        raise ConfigError([f"override {text!r}: expected section.key=value, e.g. train.lr=0.05"])
    try:
        value = yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError:
        value = raw
    return key.split("."), value


def merge_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply dotted overrides to a nested mapping (a copy is returned)."""
    import copy

    out = copy.deepcopy(data)
    for text in overrides:
        path, value = parse_override(text)
        node = out
        for part in path[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = {}
                node[part] = child
            node = child
        node[path[-1]] = value
    return out


def from_dict(data: dict[str, Any], cls: type = Config) -> Any:
    """Build and validate a config dataclass from a mapping; raise ConfigError listing all problems."""
    if not isinstance(data, dict):
        raise ConfigError([f"the config must be a mapping of sections (got {type(data).__name__})"])
    problems: list[str] = []
    obj = _build(cls, data, "", problems)
    if not problems:
        _check_all(obj, problems)
    if problems:
        raise ConfigError(problems)
    return obj


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), cls: type = Config) -> Any:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError([f"config file {str(p)!r} does not exist"])
        try:
            loaded = yaml_load(p.read_text())
        except yaml.YAMLError as exc:
            raise ConfigError([f"{p}: not valid YAML: {exc}"]) from None
        data = loaded or {}
        if not isinstance(data, dict):
            raise ConfigError([f"{p}: the top level must be a mapping of sections"])
    return from_dict(merge_overrides(data, list(overrides)), cls)


def to_dict(cfg: Any) -> dict[str, Any]:
    """The config as plain nested dicts."""
    return dataclasses.asdict(cfg)


def to_yaml(cfg: Any) -> str:
    """The resolved config as YAML text, stored with every output for provenance."""
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def from_yaml(text: str, cls: type = Config) -> Any:
    """Rebuild a config from :func:`to_yaml` text (e.g. from a checkpoint or HDF5 attribute)."""
    return from_dict(yaml_load(text) or {}, cls)
