"""`effrep quant train|export` and one run of a quant sweep: the one resumable training (runners/train.py) with a
``QuantizedOptimizer`` as its step rule, plus the fraction of changed weights per epoch. ``quant_checkpoint.pt`` is
written after every epoch (re-running resumes); a sweep run that diverges or raises becomes a failed record; export
packs a trained model at k bits per weight plus a per-layer scale and checks that it reloads to identical outputs.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import torch

from effrep_hpc.config import Config, Scope
from effrep_hpc.models import model_spec, rebuild_model
from effrep_hpc.quant.algorithms import QuantizedOptimizer
from effrep_hpc.quant.pack import PackedSize, pack_state, packed_size, unpack_state
from effrep_hpc.quant.spec import ALGORITHMS
from effrep_hpc.runners.common import dataset_from_config, setup_runtime
from effrep_hpc.runners.train import TrainingRun, TrainOutputs, describe, seeded_model, step_rule  # noqa: F401 (describe: the CLI's)
from effrep_hpc.store.checkpoint import CheckpointError, load_packed_state, load_training_state, save_packed
from effrep_hpc.store.sweep import HIST_BINS, HIST_LIMIT, RunRecord
from effrep_hpc.train.fit import DivergedError, change_probe  # noqa: F401 (DivergedError re-exported)

SCOPE = Scope("quant-train", ("data", "model", "train", "quant"))  # quant.sweep counts for quant-sweep only


def train_run(cfg: Config, dataset: Any, checkpoint: Optional[Path], **outputs: Any) -> tuple[TrainingRun, QuantizedOptimizer]:
    """Train one quantized run, resuming from ``checkpoint`` if it exists; ``outputs`` go to :class:`TrainingRun`."""
    epochs = cfg.train.epochs
    with TrainingRun(cfg, SCOPE, checkpoint, kind="quant", epochs=epochs, fields=("changed",), **outputs) as run:
        model = seeded_model(cfg, dataset)
        opt, sched = step_rule(cfg, model, "quant")
        tag = f"{cfg.quant.algorithm}, " + ("float" if opt.spec.rule == "fp" else f"{opt.bits} bit")
        grids = lambda: {"quant": opt.summary()}  # noqa: E731 (algorithm, bits, grid, Delta per layer: what export needs)
        run.fit(model, opt, sched, dataset, epochs=epochs, probe=change_probe(opt), extra=grids, tag=tag)
    return run, opt


def execute_run(cfg: Config, dataset: Any, device: torch.device, checkpoint: Optional[Path]) -> RunRecord:
    """Train one sweep run; a divergence or any other error becomes a failed record instead of an exception."""
    started = time.time()
    try:
        run, opt = train_run(cfg, dataset, checkpoint, lock=False)  # the sweep file's writer entry covers its runs
    except DivergedError as exc:
        return RunRecord("failed", str(exc), exc.curves, started=started, finished=time.time(), resumed_from=exc.resumed_from)
    except Exception as exc:  # noqa: BLE001 - one broken run must not end a thousand-run sweep
        text = f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}"
        return RunRecord("failed", text, started=started, finished=time.time())
    hists = {k: (None if v is None else v.numpy()) for k, v in opt.histograms(HIST_BINS, HIST_LIMIT).items()}
    return RunRecord("done", curves=run.curves, hist_float=hists["float"], hist_quant=hists["quantized"], started=started,
                     finished=time.time(), resumed_from=run.resumed_from)


def run_quant_train(cfg: Config, *, overwrite: bool = False) -> TrainOutputs:
    """Train (or resume) the single run that ``cfg`` describes into ``run.out``."""
    device = setup_runtime(cfg.run)
    ckpt, metrics, weights = (Path(cfg.run.out) / name for name in ("quant_checkpoint.pt", "metrics.h5", "weights"))
    run, _ = train_run(cfg, dataset_from_config(cfg, device), ckpt, metrics=metrics, weights=weights, overwrite=overwrite,
                       desc=f"quant {cfg.quant.algorithm} {cfg.model.name}")
    final = run.curves[-1] if run.curves else {}
    return TrainOutputs(checkpoint=ckpt, metrics=metrics, final=final, label=f"{cfg.quant.algorithm} {cfg.quant.bits} bit, ",
                        weights_dir=weights)


@dataclass
class ExportReport(PackedSize):
    """What `quant export` wrote and measured: sizes, the packed file, and whether the reload is exact."""

    path: Path
    identical: bool
    max_abs_diff: float


def load_packed(path: str | Path) -> torch.nn.Module:
    """The model of a packed file of `quant export`, its weights unpacked bit for bit (eval mode, on the CPU)."""
    state = load_packed_state(path)
    return rebuild_model({**state, "model": unpack_state(state["packed"], state["float"])}, path).eval()


def export_packed(checkpoint: str | Path, out: Optional[str | Path] = None, *, check_batch: int = 64) -> ExportReport:
    """Pack the quantized layers of a `quant train`/`quant sweep` checkpoint; verify the reload is exact."""
    checkpoint = Path(checkpoint)
    state = load_training_state(checkpoint, "quant")
    info, model = state["extra"]["quant"], rebuild_model(state, checkpoint).eval()
    if not ALGORITHMS[info["algorithm"]].quantized:
        raise CheckpointError(f"{checkpoint} is an {info['algorithm']} (float) run: only bc/sr/r runs have weights to pack")
    packed, rest = pack_state(model.state_dict(), info["layers"], int(info["bits"]), info.get("grid", "midrise"))
    path = save_packed(out or checkpoint.with_name(f"{checkpoint.stem}.packed.pt"), state, packed, rest,
                       algorithm=info["algorithm"], bits=int(info["bits"]))
    x = torch.randn(check_batch, *model_spec(str(model.arch_name)).input_shape, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        a, b = model(x), load_packed(path)(x)
    same, diff = bool(torch.equal(a, b)), float((a - b).abs().max())
    return ExportReport(**vars(packed_size(packed, rest)), path=path, identical=same, max_abs_diff=diff)
