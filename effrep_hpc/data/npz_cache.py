"""Crash-safe ``.npz`` files for generated datasets: written under a temporary name and renamed."""

from __future__ import annotations

import os
import uuid
import zipfile
from pathlib import Path
from typing import Optional

import numpy as np


def write_npz_atomic(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """Write ``arrays`` to ``path`` so readers see either no file or a complete one, never a torn one.

    Several MPI ranks or array tasks may generate the same cache at once; each writes its own
    temporary file in the target directory and ``os.replace`` makes the last complete one win.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A unique name opened with "x" (not mkstemp, whose 0600 mode would hide a shared cache from
    # the rest of the group): the file gets the user's umask like any other output.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "xb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]  # numpy's stub types **kwds like allow_pickle
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_npz(path: str | Path, keys: tuple[str, ...]) -> Optional[dict[str, np.ndarray]]:
    """Read ``keys`` from ``path`` without allowing pickles; None when missing, unreadable or incomplete."""
    try:
        # Open the file ourselves: np.load(path) leaks its handle when the zip is damaged.
        with open(path, "rb") as fh:
            npz = np.load(fh, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):  # a lone .npy array, not our archive
                return None
            with npz:
                if not set(keys) <= set(npz.files):
                    return None
                return {k: npz[k] for k in keys}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
