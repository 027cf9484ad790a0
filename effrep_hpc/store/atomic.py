"""One way to replace a file so that a kill leaves the old file or the new one, never a half-written one.

The new content goes to a temporary file beside the target (same directory, so the same filesystem)
named ``.{name}.tmp-{pid}``; only when the writer finished without an exception is it renamed over the
target (``os.replace`` is atomic on POSIX). On an exception the temporary file is removed and the
target is untouched. A kill in between leaves at most a stray ``.tmp-`` file that the next write of the
same process id overwrites. ``fsync`` additionally survives a power loss, at the price of a disk flush.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import Iterator


def _fsync_path(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextlib.contextmanager
def atomic_write(path: str | Path, *, fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path to write; on success it atomically replaces ``path``, on failure it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"nothing was written to {tmp}, so {path} was left as it was")
        if fsync:
            _fsync_path(tmp)
        os.replace(tmp, path)
        if fsync:
            _fsync_path(path.parent)  # the rename itself is durable only once the directory is
    finally:
        tmp.unlink(missing_ok=True)


def remove_outputs(*paths: str | Path | None) -> None:
    """Delete the files and directories given (skipping None and missing ones): what --overwrite starts from."""
    for path in paths:
        if path is not None and Path(path).is_dir():
            shutil.rmtree(path)
        elif path is not None:
            Path(path).unlink(missing_ok=True)
