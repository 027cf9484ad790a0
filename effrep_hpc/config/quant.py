"""`quant:` quantized training (Li et al. 2017): algorithm, grid, layers, and sweeps over them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from effrep_hpc.config.base import result
from effrep_hpc.quant.spec import ALGORITHMS, MAX_BITS
from effrep_hpc.registry import unknown_name_message


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
    return unknown_name_message("algorithm", str(name), list(ALGORITHMS))


@dataclass
class QuantConfig:
    """Quantized training (Li et al. 2017): algorithm, grid, which layers, and sweeps over them.

    Algorithms: fp, bc, sr, r (SGD step with train.momentum) and fp-adam, bc-adam, sr-adam, r-adam (Adam step);
    the algorithm decides SGD vs Adam, train.optimizer is not used. bits: 1 (binary: sign x per-layer scale)
    to 16; FP runs ignore it. grid: ``paper`` (Delta*Z with zero, the paper's Q_d, 2**bits - 1 levels
    symmetric about 0) or ``midrise`` (the 2**bits levels (j + 1/2)*Delta); one bit is sign x scale on both.
    delta_rule: how each layer's grid resolution is picked from its initial weights,
    ``gauss`` (MSE-optimal for Gaussian weights), ``max`` (outermost level at max|w|) or ``fixed`` (quant.delta);
    delta_scale multiplies it (see effrep_hpc/quant/quantizers.py for when a coarser grid helps).
    """

    algorithm: str = result("bc")
    bits: int = result(1)
    grid: Literal["paper", "midrise"] = result("paper")  # the k-bit levels (see effrep_hpc/quant/quantizers.py)
    delta_rule: Literal["gauss", "max", "fixed"] = result("gauss")
    delta: Optional[float] = result(None)  # the grid resolution for delta_rule=fixed
    delta_scale: float = result(1.0)  # multiplies the rule's Delta (a coarser grid than the initial weights suggest)
    quantize_first_last: bool = result(True)  # false keeps the first and last conv/linear layer in float
    clip: bool = result(True)  # BC: keep the float copy inside the grid's range
    sweep: QuantSweepConfig = result(factory=QuantSweepConfig, only=("quant-sweep",))
    sweep_file: Optional[str] = None  # default: <run.out>/sweep.h5
    lock_timeout: float = 600.0  # seconds a writer waits for the sweep file's lock before giving up

    def _check(self) -> list[str]:
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
        return problems




FLOAT_BITS = 32  # the bits recorded for FP runs


def sweep_grid(cfg: Any) -> list[dict[str, Any]]:
    """The runs of ``cfg.quant.sweep`` as grid keys, in a fixed order (algorithm, bits, lr, batch size, seed).

    FP algorithms run once, at ``FLOAT_BITS``; an empty list keeps the base config's single value.
    """
    q, t, s = cfg.quant, cfg.train, cfg.quant.sweep
    return [
        {"algorithm": alg, "bits": bits, "lr": float(lr), "batch_size": int(batch_size), "seed": int(seed)}
        for alg in s.algorithms or [q.algorithm]
        for bits in ([FLOAT_BITS] if ALGORITHMS[alg].rule == "fp" else (s.bits or [q.bits]))
        for lr in s.lr or [t.lr]
        for batch_size in s.batch_size or [t.batch_size]
        for seed in s.seeds or [t.seed]
    ]


SWEEP_ONLY_KEYS = ("sweep", "sweep_file", "lock_timeout")  # how a sweep is run, not what one of its runs computes


def run_yaml(cfg: Any) -> str:
    """The YAML of what determines one sweep run's result (data, model, train, quant without the sweep settings)."""
    import yaml

    from effrep_hpc.config.base import to_dict

    d = to_dict(cfg)
    quant = {k: v for k, v in d["quant"].items() if k not in SWEEP_ONLY_KEYS}
    return yaml.safe_dump({"data": d["data"], "model": d["model"], "train": d["train"], "quant": quant}, sort_keys=False)
