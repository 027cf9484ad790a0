"""How array-task shard files are named and found: ``<stem>.shard-<task>-of-<count><suffix>`` next to the final file.

One helper for every sharded output (surfaces, sensitivity files, curvature maps, ...), so `effrep submit`,
the runners, `effrep merge` and `effrep status` agree on the names.
"""

from __future__ import annotations

import re
from pathlib import Path

SHARD_RE = re.compile(r"^(?P<stem>.+)\.shard-(?P<task>\d+)-of-(?P<count>\d+)(?P<suffix>\.[^.]+)$")


def shard_path(final: str | Path, task: int, num_tasks: int) -> Path:
    """The shard file of array task ``task`` of ``num_tasks`` for the output ``final``."""
    final = Path(final)
    return final.with_name(f"{final.stem}.shard-{task}-of-{num_tasks}{final.suffix}")


def shard_glob(final: str | Path, num_tasks: int | None = None) -> Path:
    """A shell pattern matching the shards of ``final`` (of ``num_tasks`` tasks, or of any count)."""
    final = Path(final)
    count = "*" if num_tasks is None else str(num_tasks)
    return final.with_name(f"{final.stem}.shard-*-of-{count}{final.suffix}")


def is_shard(path: str | Path) -> bool:
    """True when ``path`` is named like a shard file."""
    return SHARD_RE.match(Path(path).name) is not None


def shards_of(final: Path) -> list[Path]:
    """The array shard files next to ``final``, ordered by task count and index."""
    found = []
    if final.parent.is_dir():
        for p in final.parent.glob(f"{final.stem}.shard-*-of-*{final.suffix}"):
            m = SHARD_RE.match(p.name)
            if m and m["stem"] == final.stem and m["suffix"] == final.suffix:
                found.append((int(m["count"]), int(m["task"]), p))
    return [p for _, _, p in sorted(found)]
