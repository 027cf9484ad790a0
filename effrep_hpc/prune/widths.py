"""A model's widths (the entries of its arch dict) as one line of text: plain data, importable without torch."""

from __future__ import annotations

from typing import Any, Mapping


def _runs(values: list[Any]) -> str:
    """``[16, 8, 8, 8, 16]`` -> ``16, 8 x3, 16``: runs of equal widths shortened (the blocks of a stage)."""
    parts: list[str] = []
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        parts.append(f"{values[i]} x{j - i + 1}" if j > i else f"{values[i]}")
        i = j + 1
    return ", ".join(parts)


def widths_text(arch: Mapping[str, Any]) -> str:
    """The widths of an arch dict (``num_classes`` left out), e.g. ``stage_widths 16, 32, 64; inner_widths 8 x9, ...``."""
    items = []
    for key, value in arch.items():
        if key == "num_classes":
            continue
        items.append(f"{key} {_runs(list(value)) if isinstance(value, (list, tuple)) else value}")
    return "; ".join(items)
