"""Checkpoints: atomic torch.save, and loading with ``weights_only=True`` and a format check.

A checkpoint is a dict of tensors and plain Python values only (no modules, no pickled classes), so a
pruned or quantized model is rebuilt from its ``arch`` spec plus its state_dict, never unpickled.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import torch

FORMAT = "effrep-checkpoint"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A file that is not a checkpoint of ours, or does not fit the model it is loaded into."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain values) atomically, tagged with our format marker."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "format_version": FORMAT_VERSION, **payload}
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(data, tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
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
