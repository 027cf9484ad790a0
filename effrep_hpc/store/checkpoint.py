"""Checkpoints: atomic torch.save, and loading with ``weights_only=True`` and a format check.

A checkpoint is a dict of tensors and plain Python values only (no modules, no pickled classes), so a
pruned or quantized model is rebuilt from its ``arch`` spec plus its state_dict, never unpickled.

Every payload starts as a *model payload* (:func:`model_payload`): ``kind``, ``arch_name``, ``arch``,
``model`` (the state_dict), ``config`` (YAML) plus fields of its own; weight snapshots, pruned and
retrained models, and packed models (`effrep quant export`) are such payloads; the models layer rebuilds a
model from one (``models.rebuild_model``). Every kind of training (plain, prune-retrain,
quantized) writes the one *training state* (:func:`training_payload`) on top of that: optimizer,
schedule, data-order generator, torch RNG, the finished epoch, the per-epoch curves and the final row,
and an ``extra`` dict for what one kind needs besides (the prune step and history, the quantized
layers' grids). :func:`load_training_state` is its one loader, and :class:`TrainingFiles` keeps the files
of one resumable training run (checkpoint, metrics rows, weight snapshots).
"""

from __future__ import annotations

import errno
import re
import warnings
from pathlib import Path
from typing import Any, Mapping, Optional, Sequence, TypeVar, Union

import torch
from torch import nn

from effrep_hpc.config.base import to_yaml
from effrep_hpc.config.identity import Scope, check_resume
from effrep_hpc.errors import UserError
from effrep_hpc.store.atomic import atomic_write, clean_stale_tmp, remove_outputs
from effrep_hpc.store.curves import MetricsFile
from effrep_hpc.store.h5 import WriterLock

FORMAT = "effrep-checkpoint"
FORMAT_VERSION = 1
PACKED = "quant-packed"  # the kind of a packed model
_Files = TypeVar("_Files", bound="TrainingFiles")
TRAINING_KEYS = ("model", "optimizer", "scheduler", "generator", "torch_rng", "epoch", "config", "curves", "extra")


class CheckpointError(UserError, ValueError):
    """A file that is not a checkpoint of ours, is damaged, or does not fit the model it is loaded into."""


# What torch.save raises when the disk fills up mid-write: its zip writer notices a short write only later.
_DISK_FULL_TEXT = ("unexpected pos", "PytorchStreamWriter failed")


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain values) atomically, tagged with our format marker.

    A full disk (or quota) leaves the old file as it was, removes the partial one and is reported as one line.
    """
    path = Path(path)
    try:
        with atomic_write(path) as tmp:
            torch.save({"format": FORMAT, "format_version": FORMAT_VERSION, **payload}, tmp)
    except (OSError, RuntimeError) as exc:
        code = exc.errno if isinstance(exc, OSError) else errno.ENOSPC if any(t in str(exc) for t in _DISK_FULL_TEXT) else None
        if code not in (errno.ENOSPC, errno.EDQUOT):
            raise
        what = "no space left on device" if code == errno.ENOSPC else "disk quota exceeded"
        raise UserError(f"{what} while writing {path}; free some space (or choose another output path) and run again") from None
    return path


def _unreadable(path: Path, exc: Exception) -> CheckpointError:
    """The error for a file torch cannot load: forbidden objects (a foreign pickle) or a damaged file."""
    text = str(exc).strip()
    if isinstance(exc, PermissionError):
        return CheckpointError(f"cannot read checkpoint {path}: permission denied")
    foreign = re.search(r"GLOBAL ([\w.]+)", text)  # a well-formed pickle naming a class or function to call
    if foreign:
        return CheckpointError(
            f"{path} is not an effrep checkpoint, or it holds objects other than tensors and plain values "
            f"(refused: loading it would run arbitrary code). Details: Unsupported global: GLOBAL {foreign.group(1)}"
        )
    # torch's own wording is several sentences; keep the first, or what its unpickler found (e.g. a bad opcode)
    found = re.search(r"WeightsUnpickler error:\s*(\S[^\n]*)", text)
    first = (found.group(1) if found else text.splitlines()[0] if text and not isinstance(exc, (KeyError, EOFError))
             else "not a complete torch file").split(". ")[0][:120]
    return CheckpointError(
        f"checkpoint {path} is truncated or corrupt ({first.rstrip('.')}); delete it, or pass --overwrite to start the run over"
    )


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint written by :func:`save_checkpoint`, refusing anything else with a clear message."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist (train a model first: effrep train CONFIG)")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" for a foreign file: the error below says it
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes torch raise (zip, pickle, OS, key errors)
        raise _unreadable(path, exc) from None
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


def save_packed(path: str | Path, source: Mapping[str, Any], packed: Any, rest: Any, **fields: Any) -> Path:
    """Write a packed model (`effrep quant export`): ``source``'s arch spec, the packed weights and the float rest."""
    payload = {"kind": PACKED, "arch_name": source["arch_name"], "arch": source["arch"], "packed": packed, "float": rest}
    return save_checkpoint(path, {**payload, **fields})


def load_packed_state(path: str | Path) -> dict[str, Any]:
    """The payload of a file written by :func:`save_packed`; CheckpointError for any other file."""
    state = load_checkpoint(path)
    if state.get("kind") != PACKED:
        raise CheckpointError(f"{path} is not a packed model (kind={state.get('kind')!r}); write one with `effrep quant export`")
    return state


class TrainingFiles:
    """The files of one resumable training run: its training-state checkpoint, ``metrics.h5`` rows, weight snapshots.

    The ``writer`` (rank 0) holds a :class:`~effrep_hpc.store.h5.WriterLock` on the checkpoint (``lock``: on
    that path instead; False: none, e.g. a sweep run, which its sweep's writer entry covers) from before it
    reads or deletes anything until :meth:`close`, so a second run on the same files, ``overwrite`` or not, is
    refused (FileBusyError) with every byte of the live run's outputs in place. Opening then refuses an
    existing checkpoint of another kind, or (through ``scope``) of another run, naming every differing result
    key, before anything is written; ``overwrite`` deletes all three outputs instead. Only the writer writes.
    An epoch's metrics row goes out before its checkpoint, so a kill in between leaves a row that the resumed
    run writes again; the restored rows are rewritten on opening, in case metrics.h5 was lost.
    """

    def __init__(
        self, checkpoint: Optional[Path], *, kind: str, config: Any, scope: Scope, epochs: int, metrics: Optional[Path] = None,
        fields: Sequence[str] = (), weights: Optional[Path] = None, keep_every: int = 0, overwrite: bool = False,
        writer: bool = True, lock: Union[Path, bool] = True,
    ) -> None:
        self.checkpoint, self.kind, self.weights, self.keep_every, self.writer = checkpoint, kind, weights, keep_every, writer
        self.config_yaml = config if isinstance(config, str) else to_yaml(config)
        self.state: Optional[dict[str, Any]] = None
        self.curves: list[dict[str, float]] = []
        self.metrics: Optional[MetricsFile] = None
        target = checkpoint if lock is True else lock if isinstance(lock, Path) else None
        self.lock = WriterLock(target) if writer and target is not None else None
        if self.lock is not None:
            self.lock.acquire()  # first: refuse a live writer before reading or deleting anything
        try:
            if self.lock is not None and checkpoint is not None:
                for folder in (checkpoint.parent, weights):  # checkpoints and snapshots of writers killed mid-save
                    if folder is not None:
                        clean_stale_tmp(folder)
            if checkpoint is not None and checkpoint.exists() and not overwrite:
                self.state = load_training_state(checkpoint, kind)
                check_resume(checkpoint, self.state["config"], self.config_yaml, scope)
            elif overwrite and writer:
                remove_outputs(checkpoint, metrics, weights)
            self.curves = [dict(row) for row in self.state["curves"]] if self.state else []
            if metrics is not None and writer:
                self.metrics = MetricsFile(metrics, config_yaml=self.config_yaml, fields=list(fields), epochs=epochs,
                                           resume=self.state is not None)
                for row in self.curves:
                    self.metrics.write_epoch(int(row["epoch"]) - 1, row)
        except BaseException:
            TrainingFiles.close(self)  # not a subclass's close: its own attributes do not exist yet
            raise

    def restore(self, model: nn.Module, optimizer: Any, scheduler: Any, generator: torch.Generator) -> int:
        """Load the opened checkpoint's state into these objects (and torch's RNG) once; return its finished epochs (0: none)."""
        state, self.state = self.state, None  # a later call (the next prune step) starts afresh
        if state is None:
            return 0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        return int(state["epoch"])

    def add_row(self, row: Mapping[str, float]) -> None:
        """Append an epoch's row to the curves and write it to metrics.h5 (as row ``epoch - 1``)."""
        self.curves.append(dict(row))
        if self.metrics is not None:
            self.metrics.write_epoch(int(row["epoch"]) - 1, row)

    def snapshot(self, model: nn.Module, epoch: int, *, last: bool = False) -> None:
        """Keep the weights after ``epoch`` epochs as ``weights/epoch_XXXX.pt`` when every ``keep_every``-th (or ``last``)."""
        if self.weights is not None and self.writer and self.keep_every > 0 and (epoch % self.keep_every == 0 or last):
            payload = model_payload("weights", model, self.config_yaml, epoch=epoch)
            save_checkpoint(self.weights / f"epoch_{epoch:04d}.pt", payload)

    def save(self, model: nn.Module, optimizer: Any, scheduler: Any, generator: torch.Generator, *, epoch: int,
             extra: Optional[Mapping[str, Any]] = None) -> None:
        """Write the training state after ``epoch`` finished epochs (atomically; the writer only)."""
        if self.writer and self.checkpoint is not None:
            save_checkpoint(self.checkpoint, training_payload(self.kind, model, optimizer, scheduler, generator, epoch=epoch,
                                                              config_yaml=self.config_yaml, curves=self.curves, extra=extra))

    def close(self) -> None:
        """Close metrics.h5 and release the writer locks."""
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None
        if self.lock is not None:
            self.lock.release()

    def __enter__(self: _Files) -> _Files:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
