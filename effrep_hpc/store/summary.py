"""The prune summary (``summary.json``): one row of numbers per stage, merged across commands, and its table.

`prune apply`, `prune retrain` and `prune scratch` each add their stages (original, pruned, retrained,
scratch) to the same file, so the table compares all of them once each has run. The file is replaced
atomically (store/atomic.py): a kill leaves the previous summary, never a truncated one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

from effrep_hpc.prune.widths import widths_text
from effrep_hpc.store.atomic import atomic_write

STAGES = ("original", "pruned", "retrained", "scratch")


def read_summary(path: str | Path) -> dict[str, Any]:
    """The rows of a summary file; an empty dict when it is missing or unreadable (it is rewritten whole)."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def update_summary(path: str | Path, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Merge ``rows`` (stage -> numbers) into the summary at ``path``, written atomically; return the whole summary."""
    current = read_summary(path)
    current.update({stage: dict(row) for stage, row in rows.items()})
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(current, indent=1) + "\n")
    return current


def format_summary(rows: Mapping[str, Mapping[str, Any]]) -> str:
    """The before/after table: accuracy, FLOPs, params and measured speed-up per stage, then the pruned widths."""
    meta = rows.get("_meta", {})
    lines = [f"{'model':<11} {'test acc':>9} {'FLOPs':>13} {'params':>11} {'FLOPs x':>8} {'measured x':>11}"]
    base = rows.get("original")
    for stage in STAGES:
        r = rows.get(stage)
        if r is None:
            continue
        flop_ratio = f"{base['flops'] / r['flops']:.2f}" if base else "-"
        speed = f"{r['speedup']:.2f}" if r.get("speedup") is not None else "-"
        lines.append(f"{stage:<11} {r['test_acc']:>8.2f}% {r['flops']:>13,} {r['params']:>11,} {flop_ratio:>8} {speed:>11}")
    if meta:
        lines.append(f"(measured: median forward time, batch {meta.get('batch_size')}, {meta.get('threads')} thread(s), "
                     f"{meta.get('device')})")
    if meta.get("widths_after"):
        lines.append(f"widths after pruning: {widths_text(meta['widths_after'])}")
    return "\n".join(lines)
