"""`effrep status`: progress read from the HDF5 files themselves (no accounting database needed).

A surface or sensitivity file (and each of its array shards) has a ``done`` mask; a training run's
metrics.h5 marks each finished epoch; a quantization sweep file keeps a status per run. Files are opened read-only
without HDF5 locking (store.h5.open_readonly), so this works while jobs are still writing them. For masked
files the checksums are verified too: a file whose done entries or directions were changed on disk is
reported as damaged (never complete), and done entries holding NaN or inf are counted as non-finite.
A study's folder (or its ``study.json``) shows the graph's progress instead: nodes per kind (:func:`study_status`).

``--preview IMAGE`` draws what a surface scan has computed so far (its shards included), through the
analysis package: the finest complete level of the coarse-to-fine order by default (analysis/preview.py).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import numpy as np

from effrep_hpc.errors import UserError
from effrep_hpc.store.h5 import Integrity, check_integrity, index_ranges, open_readonly, read_attr
from effrep_hpc.store.shards import SHARD_RE, shards_of

if TYPE_CHECKING:
    from analysis.surface import Surface

RUN_STATES = ("done", "running", "pending", "failed")
MAX_FILES = 10000


@dataclass
class FileStatus:
    """Progress of one output: a surface (with its shards), a training run or a sweep."""

    path: str
    kind: str  # "surface", "sensitivity", "metrics", "quant_sweep", or another file's kind attribute
    unit: str  # "points", "cells", "epochs", "runs"
    total: int
    done: int
    pending: int
    failed: int = 0
    running: int = 0
    parts: list[dict[str, Any]] = field(default_factory=list)  # shards of a scan, unfinished runs of a sweep
    note: str = ""
    nonfinite: int = 0  # done points (cells) holding NaN or inf, as computed (e.g. a diverged model)
    damaged: int = 0  # done entries whose values fail their checksum, over the file and its shards
    damage: str = ""  # what is damaged and what to do; empty when intact

    @property
    def complete(self) -> bool:
        """True when every point, epoch or run is done and nothing is damaged."""
        return self.total > 0 and self.done == self.total and not self.damage

    def as_dict(self) -> dict[str, Any]:
        """Plain data for --json."""
        return {**asdict(self), "complete": self.complete}


def masked_kinds() -> dict[str, str]:
    """Kinds of the sharded outputs (a ``done`` mask, merged from array shards) and what one entry is called."""
    from effrep_hpc.experiments import EXPERIMENTS

    exps = [EXPERIMENTS.get(n) for n in EXPERIMENTS]
    return {e.kind: e.unit for e in exps if e.kind is not None and e.split == "shards"}


def _done_mask(path: Path) -> tuple[np.ndarray, dict[str, Any], Integrity]:
    with open_readonly(path) as f:
        kind = read_attr(f, "kind")
        if kind not in masked_kinds() or "done" not in f:
            raise ValueError(f"{path} is not a surface or sensitivity file (kind={kind!r})")
        attrs = {k: read_attr(f, k) for k in ("kind", "shard_task", "shard_count")}
        return f["done"][()].reshape(-1).astype(bool), attrs, check_integrity(f)


def _damage_text(path: Path, integrity: Integrity, unit: str) -> str:
    if integrity.directions is False:
        return f"{path}: stored directions damaged, the scan must start over (--overwrite)"
    if integrity.damaged.size:
        return f"{path}: {unit} {index_ranges(integrity.damaged)} fail their checksums; run `effrep repair {path}`"
    return ""


def surface_status(surface: Path) -> FileStatus:
    """Entries done and pending of a surface (or sensitivity) file united with those of its array shards."""
    shards = shards_of(surface)
    if not surface.exists() and not shards:
        raise FileNotFoundError(f"neither {surface} nor any of its shards ({surface.stem}.shard-*-of-*{surface.suffix}) exist")
    union: Optional[np.ndarray] = None
    nonfinite: Optional[np.ndarray] = None
    parts = []
    merged = None
    kind = None
    damaged = 0
    damage = []
    unchecked = []

    def account(path: Path, size: int, integrity: Any) -> None:
        """Add one file's (the merged file's or a shard's) non-finite, damaged and unchecked entries."""
        nonlocal nonfinite, damaged
        if nonfinite is None:
            nonfinite = np.zeros(size, bool)
        nonfinite[integrity.nonfinite] = True
        damaged += int(integrity.damaged.size)
        damage.append(_damage_text(path, integrity, masked_kinds().get(str(kind), "points")))
        if not integrity.checksums:
            unchecked.append(path)

    if surface.exists():
        union, attrs, integrity = _done_mask(surface)
        merged, kind = int(union.sum()), attrs["kind"]
        account(surface, union.size, integrity)
    counts = set()
    for shard in shards:
        mask, attrs, integrity = _done_mask(shard)
        kind = kind or attrs["kind"]
        if union is not None and mask.size != union.size:
            raise ValueError(f"{shard} has {mask.size} entries but {surface} has {union.size}; "
                             "shards of different scans are mixed here")
        union = mask.copy() if union is None else union | mask
        account(shard, mask.size, integrity)
        counts.add(attrs.get("shard_count"))
        parts.append({"path": str(shard), "task": attrs.get("shard_task"), "of": attrs.get("shard_count"),
                      "done": int(mask.sum()), "nonfinite": int(integrity.nonfinite.size),
                      "damaged": int(integrity.damaged.size)})
    assert union is not None and nonfinite is not None
    total, done = int(union.size), int(union.sum())
    merge = "effrep merge"
    notes = []
    if merged is not None and shards:
        more = "" if merged == done else f"; run `{merge}` again to add {done - merged} more"
        notes.append(f"merged file has {merged}/{total}{more}")
    elif shards:
        notes.append("not merged yet")
    if len(counts) > 1:
        notes.append(f"shards of different array sizes {sorted(c for c in counts if c is not None)} are mixed here")
    if unchecked:
        notes.append("no checksums (written by an older effrep), damage cannot be detected in "
                     + ", ".join(p.name for p in unchecked))
    unit = masked_kinds().get(str(kind), "points")
    return FileStatus(str(surface), str(kind), unit, total, done, total - done, parts=parts, note="; ".join(notes),
                      nonfinite=int(nonfinite.sum()), damaged=damaged, damage="; ".join(d for d in damage if d))


def metrics_status(path: Path) -> FileStatus:
    """Epochs done of a training run, from the done rows of its metrics.h5."""
    with open_readonly(path) as f:
        done = f["done"][()].astype(bool)
        last = None
        if done.any() and "test_acc" in f:
            last = float(f["test_acc"][()][np.flatnonzero(done)[-1]])
    note = f"last test_acc {last:.2f}%" if last is not None and np.isfinite(last) else ""
    return FileStatus(str(path), "metrics", "epochs", int(done.size), int(done.sum()), int((~done).sum()), note=note)


STUDY_MANIFEST = "study.json"


def study_status(path: Path) -> list[FileStatus]:
    """A study's progress (`effrep study`) from its manifest: per node kind, nodes done, pending and failed.

    ``path`` is the study's directory (``study.out``) or its ``study.json``. Failed nodes are listed with
    their error; a pending node whose input failed says which.
    """
    import json

    manifest = path / STUDY_MANIFEST if path.is_dir() else path
    if not manifest.exists():
        raise FileNotFoundError(f"{manifest} does not exist yet: no node of the study has started (still queued?)")
    try:
        data = json.loads(manifest.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{manifest} is not a readable study manifest ({exc})") from None
    if not isinstance(data, dict) or data.get("kind") != "study":
        raise ValueError(f"{manifest} is not a study manifest (written by `effrep study`)")
    kinds: dict[str, list[tuple[str, dict[str, Any]]]] = {"train": []}
    for run in data.get("runs", []):
        for kind, entry in (run.get("nodes") or {}).items():
            kinds.setdefault(kind, []).append((f"{run.get('variant')} seed {run.get('seed')}", entry))
    for pair in data.get("pairs", []):
        kinds.setdefault("interp", []).append((f"{pair.get('name')} seed {pair.get('seed')}", pair))
    results = []
    for kind, entries in kinds.items():
        statuses = [str(e.get("status", "pending")) for _, e in entries]
        parts = [{"run": f"{kind} {name}", "status": f"failed: {e.get('error', '')}"}
                 for name, e in entries if e.get("status") == "failed"]
        parts += [{"run": f"{kind} {name}", "status": f"pending: waits for {', '.join(e['waits_for'])}, which failed"}
                  for name, e in entries if e.get("status") == "pending" and e.get("waits_for")]
        results.append(FileStatus(str(manifest), f"study {data.get('name')} {kind}", "nodes", len(entries),
                                  statuses.count("done"), statuses.count("pending"), statuses.count("failed"), parts=parts))
    return results


def sweep_status(path: Path) -> FileStatus:
    """Runs done, running, pending and failed of a quantization sweep file (store/sweep.py)."""
    from effrep_hpc.store.sweep import read_statuses, run_names

    statuses = read_statuses(path)
    counts = {s: statuses.count(s) for s in RUN_STATES}
    names = run_names(len(statuses))
    parts = [{"run": name, "status": st} for name, st in zip(names, statuses) if st in ("failed", "running")]
    return FileStatus(
        str(path), "quant_sweep", "runs", len(statuses), counts["done"], counts["pending"], counts["failed"], counts["running"],
        parts,
    )


def file_status(path: Path) -> FileStatus:
    """The status of one HDF5 output, by its ``kind`` attribute (a surface also counts its shards)."""
    if not path.exists():
        if SHARD_RE.match(path.name) is None and shards_of(path):
            return surface_status(path)
        raise FileNotFoundError(f"{path} does not exist")
    with open_readonly(path) as f:
        kind = read_attr(f, "kind")
        has_done = "done" in f
    if kind in masked_kinds():
        return surface_status(path)
    if kind == "metrics":
        return metrics_status(path)
    if kind == "quant_sweep":
        return sweep_status(path)
    if has_done:
        with open_readonly(path) as f:
            done = f["done"][()].reshape(-1).astype(bool)
        return FileStatus(str(path), str(kind or "unknown"), "items", int(done.size), int(done.sum()), int((~done).sum()))
    return FileStatus(str(path), str(kind or "unknown"), "items", 0, 0, 0, note="no progress information in this file")


def collect(output: str | Path) -> list[FileStatus]:
    """Status of ``output``: one file (or a surface whose shards exist), or every effrep HDF5 file under a directory."""
    output = Path(output)
    if (output / STUDY_MANIFEST).is_file() if output.is_dir() else output.name == STUDY_MANIFEST:
        return study_status(output)  # a study: its graph's progress (the files of one run: point at its folder)
    if output.is_dir():
        files = sorted(p for p in output.rglob("*.h5") if not p.name.startswith("."))[:MAX_FILES]
        surfaces: dict[Path, None] = {}
        others = []
        for p in files:
            m = SHARD_RE.match(p.name)
            if m:
                surfaces[p.with_name(m["stem"] + m["suffix"])] = None
            else:
                others.append(p)
        results = []
        for p in others:
            try:
                st = file_status(p)
            except (OSError, ValueError, KeyError) as exc:
                results.append(FileStatus(str(p), "unreadable", "items", 0, 0, 0, note=str(exc)))
                continue
            if st.kind == "unknown" and st.total == 0:
                continue  # not one of ours (directions files and the like)
            if st.kind in masked_kinds():
                surfaces.pop(p, None)
            results.append(st)
        results += [surface_status(s) for s in surfaces]
        if not results:
            raise FileNotFoundError(f"no surface, sensitivity, metrics or sweep files under {output}")
        return sorted(results, key=lambda s: s.path)
    return [file_status(output)]


def status_lines(results: list[FileStatus]) -> list[str]:
    """Human-readable lines: one per output, then its shards or failed runs."""
    lines = []
    for st in results:
        if st.total == 0:
            lines.append(f"{st.path}: {st.kind}" + (f" ({st.note})" if st.note else ""))
            continue
        pct = 100.0 * st.done / st.total
        text = f"{st.path}: {st.kind}, {st.done}/{st.total} {st.unit} done ({pct:.1f}%), {st.pending} pending"
        if st.running:
            text += f", {st.running} running"
        if st.unit == "runs" or st.failed:
            text += f", {st.failed} failed"
        if st.nonfinite:
            text += f", {st.nonfinite} non-finite (NaN or inf as computed)"
        if st.damage:
            text += f" - DAMAGED ({st.damage})"
        elif st.complete:
            text += " - complete"
        if st.note:
            text += f" [{st.note}]"
        lines.append(text)
        for part in st.parts:
            if "task" in part:
                extra = "".join(f", {part[k]} {k}" for k in ("nonfinite", "damaged") if part.get(k))
                lines.append(f"  shard {part['task']} of {part['of']}: {part['done']} {st.unit} done{extra}  ({part['path']})")
            elif "status" in part:
                lines.append(f"  {part['run']}: {part['status']}")
    return lines


PREVIEW_FORMATS = (".png", ".pdf", ".svg")


def check_preview_path(image: Path) -> Path:
    """``image`` when its suffix names a figure format; else a UserError saying which suffixes work."""
    if image.suffix.lower() not in PREVIEW_FORMATS:
        raise UserError(f"--preview {image}: give an image file ending in {', '.join(PREVIEW_FORMATS)}")
    return image


def preview_surface(surface: Path) -> Surface:
    """``surface`` united with its array shards: each point's values come from a file where it is done.

    Read the way `load_surface` reads a file a scan is writing: without HDF5 locking, ``done`` before
    the values, so a point seen done has its values.
    """
    from analysis.surface import Surface, load_surface

    files = ([surface] if surface.exists() else []) + shards_of(surface)
    if not files:
        raise FileNotFoundError(f"neither {surface} nor any of its shards ({surface.stem}.shard-*-of-*{surface.suffix}) exist")
    first = load_surface(files[0])
    done = first.done_mask.copy()
    metrics = {name: values.copy() for name, values in first.metrics.items()}
    for path in files[1:]:
        part = load_surface(path)
        if part.shape != first.shape:
            raise ValueError(
                f"{path} has shape {part.shape} but {files[0]} has {first.shape}; shards of different scans are mixed here"
            )
        new = part.done_mask & ~done
        for name, values in metrics.items():
            if name in part.metrics:
                values[new] = part.metrics[name][new]
        done |= part.done_mask
    return Surface(first.x, first.y, metrics, done, first.attrs, surface)


def write_preview(surface: Path, image: Path, *, metric: str = "train_loss", partial: str = "auto") -> str:
    """Draw what a (running) scan has computed so far into ``image``; return the line to print.

    By default the finest complete level of the coarse-to-fine order (analysis.preview); the image is
    written under a temporary name and renamed, so a viewer watching it never sees half a file.
    """
    from analysis.preview import partial_view, preview_figure, summary_line

    check_preview_path(image)
    full = preview_surface(surface)
    view = partial_view(full, partial)
    view.require(metric)
    if not view.valid(metric).any():
        done = full.done_mask
        what = f"{int(done.sum())} of {done.size} points computed, no finite {metric}"
        return f"preview: nothing to draw yet ({what}); {image} not written"
    fig = preview_figure(view, metric)
    image.parent.mkdir(parents=True, exist_ok=True)
    tmp = image.with_name(f".{image.name}.tmp-{os.getpid()}")
    try:
        fig.savefig(tmp, dpi=150, format=image.suffix.lower().lstrip("."))
        os.replace(tmp, image)
    finally:
        tmp.unlink(missing_ok=True)
    return f"preview: {image} ({metric}; {summary_line(view)})"
