"""`effrep quant ...`: quantized training runs, sweeps shared out by dist/ into one sweep file, and export.

- ``train``: one run (``cfg.quant`` + ``cfg.train``) into ``run.out``: ``quant_checkpoint.pt`` after every epoch
  (re-running resumes) and ``metrics.h5`` with the per-epoch curves.
- ``sweep``: ``quant.sweep`` expands into runs (algorithm x bits x lr x batch size x seed); dist/ hands them
  out (dynamically under MPI, a static block per SLURM array task); each finished run goes to the sweep file
  through store/ (rank 0 under MPI, every array task for its own runs, one writer at a time under the
  file's lock). Each run checkpoints itself every epoch in ``<sweep>_runs/``; re-running the command skips
  done runs and restarts unfinished ones from their checkpoints. A run that diverges (non-finite training
  loss) or raises is recorded as failed with its error, and the sweep goes on.
- ``export``: packs a trained quantized model at k bits per weight plus a per-layer scale and checks that
  the packed file reloads to bit-identical outputs.
"""

from __future__ import annotations

import copy
import math
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import yaml

from effrep_hpc.config import Config, QuantSweepConfig, to_dict, to_yaml
from effrep_hpc.data import augment
from effrep_hpc.data.base import child_seed
from effrep_hpc.dist import get_backend
from effrep_hpc.dist.env import local_rank
from effrep_hpc.models import create_model, model_spec
from effrep_hpc.quant.algorithms import ALGORITHMS, QuantizedOptimizer, get_algorithm
from effrep_hpc.quant.pack import pack_weight, packed_bytes, unpack_weight
from effrep_hpc.runners.common import progress, report, resolve_path, setup_runtime
from effrep_hpc.runners.train import dataset_from_config, model_from_config
from effrep_hpc.store.checkpoint import load_checkpoint, save_checkpoint
from effrep_hpc.store.curves import MetricsFile
from effrep_hpc.store.sweep import (
    CURVE_FIELDS,
    HIST_BINS,
    HIST_LIMIT,
    RunRecord,
    RunSpec,
    mark_running,
    prepare_sweep,
    run_checkpoint,
    run_names,
    write_run,
)
from effrep_hpc.train.loop import evaluate, train_epoch
from effrep_hpc.train.optim import build_scheduler

# quant keys that say how a sweep is run, not what a run computes
SWEEP_ONLY_KEYS = ("sweep", "sweep_file", "backend", "task_id", "num_tasks", "lock_timeout")
FLOAT_BITS = 32  # the bits recorded for FP runs


class DivergedError(ValueError):
    """Training produced a non-finite loss; carries the curves up to that epoch."""

    def __init__(self, message: str, curves: list[dict[str, float]], resumed_from: int) -> None:
        super().__init__(message)
        self.curves = curves
        self.resumed_from = resumed_from


@dataclass
class RunResult:
    """A finished run: its per-epoch curves, weight histograms and trained model."""

    curves: list[dict[str, float]]
    hist_float: Optional[np.ndarray]
    hist_quant: Optional[np.ndarray]
    resumed_from: int
    model: torch.nn.Module
    optimizer: QuantizedOptimizer


@dataclass
class QuantTrainOutputs:
    """Where `quant train` wrote its results, and the last epoch's numbers."""

    checkpoint: Path
    metrics: Path
    final: dict[str, float]


def run_yaml(cfg: Config) -> str:
    """The YAML of what determines a run's result (data, model, train, quant without the sweep settings)."""
    d = to_dict(cfg)
    quant = {k: v for k, v in d["quant"].items() if k not in SWEEP_ONLY_KEYS}
    return yaml.safe_dump({"data": d["data"], "model": d["model"], "train": d["train"], "quant": quant}, sort_keys=False)


def quant_optimizer(cfg: Config, model: torch.nn.Module) -> QuantizedOptimizer:
    """The optimizer of ``cfg.quant.algorithm`` with the step settings of ``cfg.train`` (quantizes ``model``)."""
    q, t = cfg.quant, cfg.train
    return QuantizedOptimizer(
        model,
        q.algorithm,
        lr=t.lr,
        bits=q.bits,
        momentum=t.momentum,
        nesterov=t.nesterov,
        weight_decay=t.weight_decay,
        delta_rule=q.delta_rule,
        delta=q.delta,
        delta_scale=q.delta_scale,
        quantize_first_last=q.quantize_first_last,
        clip=q.clip,
        seed=child_seed(t.seed, "quant-rounding") & 0x7FFF_FFFF_FFFF_FFFF,
    )


def _checkpoint_payload(
    model: torch.nn.Module,
    opt: QuantizedOptimizer,
    sched: Any,
    gen: torch.Generator,
    epoch: int,
    config_yaml: str,
    curves: list[dict[str, float]],
) -> dict[str, Any]:
    return {
        "kind": "quant",
        "arch_name": getattr(model, "arch_name", None),
        "arch": getattr(model, "arch", None),
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "generator": gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "epoch": epoch,
        "config": config_yaml,
        "curves": [dict(row) for row in curves],
        "quant": {"algorithm": opt.spec.name, "bits": opt.bits, "layers": opt.layer_grids()},
    }


def train_run(
    cfg: Config,
    dataset: Any,
    device: torch.device,
    *,
    checkpoint: Optional[Path] = None,
    on_epoch: Optional[Callable[[dict[str, float]], None]] = None,
) -> RunResult:
    """Train one quantized run, resuming from ``checkpoint`` when it exists and saving it after every epoch."""
    t = cfg.train
    config_yaml = run_yaml(cfg)
    torch.manual_seed(t.seed)  # model initialisation is part of the seeded experiment
    model = model_from_config(cfg, dataset.num_classes).to(device)
    opt = quant_optimizer(cfg, model)
    sched = build_scheduler(opt, t.schedule, epochs=t.epochs, milestones=t.milestones, gamma=t.gamma)
    gen = torch.Generator().manual_seed(t.seed)
    curves: list[dict[str, float]] = []
    start = 0
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        if state.get("kind") != "quant" or state.get("config") != config_yaml:
            raise ValueError(
                f"{checkpoint} belongs to a different run (its config differs); delete it to start this run over"
            )
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        curves = [dict(row) for row in state["curves"]]
        start = int(state["epoch"])
    aug_gen = gen if device.type == "cpu" else torch.Generator(device=device).manual_seed(t.seed + 1)
    aug = (lambda xb: augment(xb, generator=aug_gen)) if cfg.data.augment else None
    for epoch in range(start, t.epochs):
        began = time.perf_counter()
        lr = float(opt.param_groups[0]["lr"])
        before = opt.snapshot()
        tl, tc, tn = train_epoch(
            model, opt, dataset.x_train, dataset.y_train, batch_size=t.batch_size, generator=gen, loss=t.loss, augment=aug
        )
        sched.step()
        el, ec, en = evaluate(model, dataset.x_test, dataset.y_test, loss=t.loss)
        row = {
            "epoch": float(epoch + 1),
            "train_loss": tl / tn,
            "train_acc": 100.0 * tc / tn,
            "test_loss": el / en,
            "test_acc": 100.0 * ec / en,
            "lr": lr,
            "changed": opt.changed_fraction(before),
            "seconds": time.perf_counter() - began,
        }
        curves.append(row)
        if on_epoch is not None:
            on_epoch(row)
        if not math.isfinite(row["train_loss"]):
            width = "float" if opt.spec.rule == "fp" else f"{opt.bits} bit"
            raise DivergedError(
                f"diverged: training loss {row['train_loss']} in epoch {epoch + 1} "
                f"({cfg.quant.algorithm}, {width}, lr {t.lr:g}, batch {t.batch_size}); lower the learning rate",
                curves,
                start,
            )
        if checkpoint is not None:
            save_checkpoint(checkpoint, _checkpoint_payload(model, opt, sched, gen, epoch + 1, config_yaml, curves))
    hists = opt.histograms(HIST_BINS, HIST_LIMIT)
    as_np = {k: (None if v is None else v.numpy()) for k, v in hists.items()}
    return RunResult(curves, as_np["float"], as_np["quantized"], start, model, opt)


def execute_run(cfg: Config, dataset: Any, device: torch.device, checkpoint: Optional[Path]) -> RunRecord:
    """Train one sweep run; a divergence or any other error becomes a failed record instead of an exception."""
    started = time.time()
    try:
        result = train_run(cfg, dataset, device, checkpoint=checkpoint)
    except DivergedError as exc:
        return RunRecord("failed", str(exc), exc.curves, started=started, finished=time.time(), resumed_from=exc.resumed_from)
    except Exception as exc:  # noqa: BLE001 - one broken run must not end a thousand-run sweep
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return RunRecord("failed", text, started=started, finished=time.time())
    return RunRecord(
        "done",
        curves=result.curves,
        hist_float=result.hist_float,
        hist_quant=result.hist_quant,
        started=started,
        finished=time.time(),
        resumed_from=result.resumed_from,
    )


def run_quant_train(cfg: Config, *, overwrite: bool = False) -> QuantTrainOutputs:
    """Train (or resume) the single run that ``cfg`` describes into ``run.out``."""
    device = setup_runtime(cfg.run)
    out = Path(cfg.run.out)
    ckpt, metrics_path = out / "quant_checkpoint.pt", out / "metrics.h5"
    if overwrite:
        ckpt.unlink(missing_ok=True)
        metrics_path.unlink(missing_ok=True)
    dataset = dataset_from_config(cfg, device)
    metrics = MetricsFile(
        metrics_path, config_yaml=to_yaml(cfg), fields=CURVE_FIELDS, epochs=cfg.train.epochs, resume=ckpt.exists()
    )
    bar = progress(cfg.train.epochs, f"quant {cfg.quant.algorithm} {cfg.model.name}", enabled=cfg.run.progress, unit="epoch")

    def on_epoch(row: dict[str, float]) -> None:
        metrics.write_epoch(int(row["epoch"]) - 1, row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", test_acc=f"{row['test_acc']:.1f}", refresh=False)
        bar.update(1)

    try:
        result = train_run(cfg, dataset, device, checkpoint=ckpt, on_epoch=on_epoch)
        # epochs restored from the checkpoint are rewritten too, in case metrics.h5 was lost or recreated
        for row in result.curves:
            metrics.write_epoch(int(row["epoch"]) - 1, row)
    finally:
        bar.close()
        metrics.close()
    return QuantTrainOutputs(checkpoint=ckpt, metrics=metrics_path, final=result.curves[-1] if result.curves else {})


# --- export -------------------------------------------------------------------------------------


@dataclass
class ExportReport:
    """What `quant export` wrote and measured."""

    path: Path
    layers: int
    weight_bytes_float32: int
    weight_bytes_packed: int
    model_bytes_float32: int
    model_bytes_packed: int
    identical: bool
    max_abs_diff: float

    @property
    def weight_ratio(self) -> float:
        """float32 size / packed size of the quantized weights (32 for one bit, less the scales)."""
        return self.weight_bytes_float32 / max(self.weight_bytes_packed, 1)

    @property
    def model_ratio(self) -> float:
        """float32 size / packed size of the whole model (float BN parameters and biases included)."""
        return self.model_bytes_float32 / max(self.model_bytes_packed, 1)


def _rebuild(state: dict[str, Any], what: Path) -> torch.nn.Module:
    if not state.get("arch_name") or state.get("arch") is None:
        raise ValueError(f"{what} does not name its architecture (arch_name/arch); it cannot be rebuilt")
    return create_model(state["arch_name"], **state["arch"])


def load_packed(path: str | Path) -> torch.nn.Module:
    """Rebuild the model of a packed file written by :func:`export_packed` (eval mode, on the CPU)."""
    path = Path(path)
    state = load_checkpoint(path)
    if state.get("kind") != "quant-packed":
        raise ValueError(f"{path} is not a packed model (kind={state.get('kind')!r}); write one with `effrep quant export`")
    model = _rebuild(state, path)
    weights = dict(state["float"])
    for name, entry in state["packed"].items():
        weights[name] = unpack_weight(entry)
    model.load_state_dict(weights)
    return model.eval()


def export_packed(checkpoint: str | Path, out: Optional[str | Path] = None, *, check_batch: int = 64) -> ExportReport:
    """Pack the quantized layers of a `quant train`/`quant sweep` checkpoint; verify the reload is exact."""
    checkpoint = Path(checkpoint)
    state = load_checkpoint(checkpoint)
    if state.get("kind") != "quant":
        raise ValueError(f"{checkpoint} is not a quantized-training checkpoint (write one with `effrep quant train`)")
    info = state["quant"]
    if not ALGORITHMS[info["algorithm"]].quantized:
        raise ValueError(f"{checkpoint} is an {info['algorithm']} (float) run: only bc/sr/r runs have weights to pack")
    model = _rebuild(state, checkpoint)
    model.load_state_dict(state["model"])
    model.eval()
    weights = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    bits = int(info["bits"])
    packed = {name: pack_weight(weights[name], float(delta), bits) for name, delta in info["layers"].items()}
    rest = {k: v.clone() for k, v in weights.items() if k not in packed}
    out_path = Path(out) if out else checkpoint.with_name(f"{checkpoint.stem}.packed.pt")
    save_checkpoint(
        out_path,
        {"kind": "quant-packed", "arch_name": state["arch_name"], "arch": state["arch"], "packed": packed, "float": rest,
         "algorithm": info["algorithm"], "bits": bits},
    )
    reloaded = load_packed(out_path)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(check_batch, *model_spec(state["arch_name"]).input_shape, generator=gen)
    with torch.no_grad():
        a, b = model(x), reloaded(x)
    q_float = sum(4 * weights[n].numel() for n in packed)
    q_packed = sum(packed_bytes(e) for e in packed.values())
    rest_bytes = sum(v.numel() * v.element_size() for v in rest.values())
    return ExportReport(
        path=out_path,
        layers=len(packed),
        weight_bytes_float32=q_float,
        weight_bytes_packed=q_packed,
        model_bytes_float32=q_float + rest_bytes,
        model_bytes_packed=q_packed + rest_bytes,
        identical=bool(torch.equal(a, b)),
        max_abs_diff=float((a - b).abs().max()),
    )
