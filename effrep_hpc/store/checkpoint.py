"""Checkpoints: atomic torch.save, and loading with ``weights_only=True`` and a format check.

A checkpoint is a dict of tensors and plain Python values only (no modules, no pickled classes), so a
pruned or quantized model is rebuilt from its ``arch`` spec plus its state_dict, never unpickled.

Every payload starts as a *model payload* (:func:`model_payload`): ``kind``, ``arch_name``, ``arch``,
``model`` (the state_dict), ``config`` (YAML) plus fields of its own; weight snapshots, pruned and
retrained models, and packed models are such payloads. Every kind of training (plain, prune-retrain,
quantized) writes the one *training state* (:func:`training_payload`) on top of that: optimizer,
schedule, data-order generator, torch RNG, the finished epoch, the per-epoch curves and the final row,
and an ``extra`` dict for what one kind needs besides (the prune step and history, the quantized
layers' grids). :func:`load_training_state` is its one loader.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from effrep_hpc.store.atomic import atomic_write

FORMAT = "effrep-checkpoint"
FORMAT_VERSION = 1
TRAINING_KEYS = ("model", "optimizer", "scheduler", "generator", "torch_rng", "epoch", "config", "curves", "extra")


class CheckpointError(ValueError):
    """A file that is not a checkpoint of ours, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain values) atomically, tagged with our format marker."""
    path = Path(path)
    with atomic_write(path) as tmp:
        torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    return path


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (train a model first: effrep train CONFIG)")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, AttributeError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path} is not an effrep checkpoint, or it holds objects other than tensors and plain values "
            f"(refused: loading it would run arbitrary code). Details: {first}"
        ) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is a torch file but not an effrep checkpoint (no '{FORMAT}' marker)")
    if int(data.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {data['format_version']}, newer than this effrep "
            f"({FORMAT_VERSION}); upgrade effrep-hpc"
        )
    return data


def model_payload(kind: str, model: nn.Module, config_yaml: str, **fields: Any) -> dict[str, Any]:
    """A model's payload: ``kind``, its arch spec, a CPU copy of its state_dict and the config, plus ``fields``."""
    return {
        "kind": kind,
        "arch_name": getattr(model, "arch_name", None),
        "arch": getattr(model, "arch", None),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": config_yaml,
        **fields,
    }


def model_from_payload(state: Mapping[str, Any], what: Any = "the checkpoint") -> nn.Module:
    """Rebuild the model of a payload from its arch spec and state_dict (on the CPU)."""
    from effrep_hpc.models import create_model

    if not state.get("arch_name") or state.get("arch") is None:
        raise CheckpointError(f"{what} does not name its architecture (arch_name/arch); it cannot be rebuilt")
    model = create_model(state["arch_name"], **state["arch"])
    model.load_state_dict(state["model"])
    return model


def training_payload(
    kind: str,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    generator: torch.Generator,
    *,
    epoch: int,
    config_yaml: str,
    curves: Sequence[Mapping[str, float]],
    extra: Optional[Mapping[str, Any]] = None,
) -> dict[str, Any]:
    """The one training-state checkpoint: everything to continue bit for bit after ``epoch`` finished epochs."""
    rows = [dict(row) for row in curves]
    return model_payload(
        kind, model, config_yaml,
        optimizer=optimizer.state_dict(),
        scheduler=scheduler.state_dict(),
        generator=generator.get_state(),
        torch_rng=torch.get_rng_state(),
        epoch=int(epoch),
        curves=rows,
        final=rows[-1] if rows else {},
        extra=dict(extra or {}),
    )


def load_training_state(path: str | Path, kind: str) -> dict[str, Any]:
    """Load a training checkpoint of ``kind``, refusing another kind or an incomplete one with a clear message."""
    state = load_checkpoint(path)
    if state.get("kind") != kind:
        raise CheckpointError(
            f"{path} is a {state.get('kind')!r} checkpoint, not the {kind!r} training state this command resumes; "
            f"choose another output path or pass --overwrite to start over"
        )
    missing = [key for key in TRAINING_KEYS if key not in state]
    if missing:
        raise CheckpointError(
            f"{path} lacks {', '.join(missing)} (written by an older effrep?); pass --overwrite to start the run over"
        )
    return state


def packed_payload(state: Mapping[str, Any], packed: dict[str, Any], rest: dict[str, Any], *, algorithm: str, bits: int) -> dict[str, Any]:
    """A quantized model stored packed (quant/pack.py entries) plus its float tensors, with the arch of ``state``."""
    return {"kind": "quant-packed", "arch_name": state["arch_name"], "arch": state["arch"], "packed": packed,
            "float": rest, "algorithm": algorithm, "bits": int(bits)}


def read_packed(path: str | Path) -> dict[str, Any]:
    """Load a :func:`packed_payload` file with its weights unpacked into ``model`` (a state_dict)."""
    from effrep_hpc.quant.pack import unpack_state

    state = load_checkpoint(path)
    if state.get("kind") != "quant-packed":
        raise CheckpointError(f"{path} is not a packed model (kind={state.get('kind')!r}); write one with `effrep quant export`")
    return {**state, "model": unpack_state(state["packed"], state["float"])}
