"""One way to replace a file so that a kill leaves the old file or the new one, never a half-written one.

The new content goes to a temporary file beside the target (same directory, so the same filesystem)
named ``.{name}.tmp-{pid}``; only when the writer finished without an exception is it renamed over the
target (``os.replace`` is atomic on POSIX). On an exception the temporary file is removed and the
target is untouched. A kill in between leaves at most a stray ``.tmp-`` file; the next writer of that
output removes it (:func:`clean_stale_tmp`) once its process is gone. ``fsync`` additionally survives a
power loss, at the price of a disk flush.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import time
from pathlib import Path
from typing import Iterator

# A temporary file younger than this may belong to a live writer on another node of a shared
# filesystem (its pid means nothing here), so it is left alone; writers refresh its mtime as they go.
TMP_GRACE_S = 60.0
_TMP_RE = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)$")


def pid_alive(pid: int) -> bool:
    """True when process ``pid`` exists on this host (also when it belongs to another user)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OverflowError:
        return False
    return True


def clean_stale_tmp(directory: str | Path, name_prefix: str = "", *, grace: float = TMP_GRACE_S) -> list[Path]:
    """Remove the ``.{name}.tmp-{pid}`` files under ``directory`` (``name`` starting with ``name_prefix``) of dead writers.

    A file counts as stale when its process is not alive on this host and it was last modified more
    than ``grace`` seconds ago (a younger one may be a live writer's on another node). Returns the
    removed paths; files that vanish or cannot be removed meanwhile are skipped.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or not m["name"].startswith(name_prefix):
            continue
        pid = int(m["pid"])
        try:
            if not entry.is_file(follow_symlinks=False) or now - entry.stat().st_mtime <= grace:
                continue
            if pid == os.getpid() or pid_alive(pid):
                continue
            os.unlink(entry.path)
        except OSError:
            continue
        removed.append(Path(entry.path))
    return removed


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
