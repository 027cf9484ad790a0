"""Crash-safe HDF5 plumbing shared by every file the store writes.

- A new file is written under a temporary name in the same directory and renamed into place, so a
  reader never sees a half-created file.
- Files that grow during a job (surfaces, sweeps) preallocate fixed-shape contiguous datasets at
  creation. Later writes then touch raw data only, never HDF5 metadata, so a process killed at any
  moment leaves a file that h5py still opens; points written but not yet marked done are recomputed.
- One writer at a time: a lock file ``<file>.lock`` created with O_EXCL (atomic on local disks, NFSv3+,
  Lustre and GPFS) names the host, pid and SLURM job of the writer. HDF5's own flock-based locking is
  also left on where the filesystem supports it; where it does not (some Lustre/GPFS mounts), set
  ``HDF5_USE_FILE_LOCKING=FALSE`` and the lock file still protects the file.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np

from effrep_hpc import __version__
from effrep_hpc.config.identity import Scope, identity_differences
from effrep_hpc.dist.env import slurm_job_id
from effrep_hpc.store.atomic import atomic_write


class FileBusyError(RuntimeError):
    """Another live process is writing the file."""


def provenance(config_yaml: str, **extra: Any) -> dict[str, Any]:
    """The attributes every file carries: config, package version, creation time, plus ``extra``."""
    attrs: dict[str, Any] = {
        "config": config_yaml,
        "effrep_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    attrs.update(extra)
    return attrs


def set_attrs(obj: h5py.HLObject, attrs: dict[str, Any]) -> None:
    """Write attributes, storing dicts and lists of strings as JSON text."""
    for key, value in attrs.items():
        if value is None:
            continue
        if isinstance(value, dict) or (isinstance(value, (list, tuple)) and value and isinstance(value[0], str)):
            value = json.dumps(value)
        obj.attrs[key] = value


def read_attr(obj: h5py.HLObject, key: str, default: Any = None) -> Any:
    """Read an attribute as a Python value (bytes decoded, numpy scalars unwrapped)."""
    if key not in obj.attrs:
        return default
    value = obj.attrs[key]
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    return value


@contextlib.contextmanager
def atomic_create(path: str | Path) -> Iterator[h5py.File]:
    """Create an HDF5 file under a temporary name and rename it to ``path`` only when complete."""
    with atomic_write(path) as tmp, h5py.File(tmp, "w") as f:
        yield f


def preallocate(group: h5py.Group, name: str, shape: tuple[int, ...], dtype: Any, fill: Any) -> h5py.Dataset:
    """Create a fixed-shape contiguous dataset filled with ``fill`` (allocated now, so later writes are raw)."""
    data = np.full(shape, fill, dtype=dtype)
    return group.create_dataset(name, data=data, dtype=dtype)


def sha256_arrays(arrays: list[tuple[str, np.ndarray]]) -> str:
    """A hash over named arrays (names, shapes, dtypes and bytes), for provenance checks."""
    h = hashlib.sha256()
    for name, arr in arrays:
        arr = np.ascontiguousarray(arr)
        h.update(name.encode())
        h.update(str(arr.shape).encode())
        h.update(str(arr.dtype).encode())
        h.update(arr.tobytes())
    return h.hexdigest()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class WriterLock:
    """An exclusive writer lock on ``<path>.lock``; a stale lock of a dead local process is taken over."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(str(path) + ".lock")
        self.held = False

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except (OSError, ValueError):
            return {}

    def acquire(self) -> None:
        """Take the lock or raise FileBusyError naming the live owner."""
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "slurm_job": slurm_job_id(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner = self._owner()
                # Stale: a dead process on this host, or an earlier incarnation of this very SLURM
                # job (a requeued task may restart on another node, so host and pid cannot tell).
                stale = (owner.get("host") == me["host"] and not _pid_alive(int(owner.get("pid", -1)))) or (
                    me["slurm_job"] is not None and owner.get("slurm_job") == me["slurm_job"] and owner.get("pid") != me["pid"]
                )
                if stale:
                    self.path.unlink(missing_ok=True)
                    continue
                target = str(self.path)[: -len(".lock")]
                raise FileBusyError(
                    f"{target} is being written by another job (host {owner.get('host')}, pid "
                    f"{owner.get('pid')}, SLURM job {owner.get('slurm_job')}); wait for it to finish. If that "
                    f"job is dead (e.g. on another node), delete {self.path} and run again."
                ) from None
            with os.fdopen(fd, "w") as fh:
                json.dump(me, fh)
            self.held = True
            return
        raise FileBusyError(f"could not take the writer lock {self.path}")

    def release(self) -> None:
        """Drop the lock if held."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> WriterLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def open_readonly(path: str | Path) -> h5py.File:
    """Open a file for reading even while a writer holds it (HDF5 flock off for readers)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise OSError(f"{path} is not a readable HDF5 file: {exc}") from None


def check_shards(shards: list[Path], kind: str) -> None:
    """Refuse an empty shard list, missing files, or a first shard that is not a ``kind`` file."""
    if not shards:
        raise ValueError("no shard files given")
    missing = [str(s) for s in shards if not Path(s).is_file()]
    if missing:
        raise FileNotFoundError(f"shard file(s) not found: {', '.join(missing)}")
    with open_readonly(shards[0]) as f:
        if read_attr(f, "kind") != kind:
            raise ValueError(f"{shards[0]} is not a {kind} shard (kind={read_attr(f, 'kind')!r})")


class ResumableWriter:
    """The single writer of a preallocated file with a ``done`` mask: lock, create or resume, refuse others.

    Subclasses set ``what`` (e.g. "scan") and ``setting`` (the config key naming the file) for messages,
    and implement ``_differences(f, spec)`` (why an existing file is not this job's: grids, hashes) and
    ``_create(path, spec, extra_attrs)``. With a ``scope``, every result-marked config key of that scope
    must also equal the stored config's (``spec.config_yaml`` against the file's ``config`` attribute).
    A refused resume leaves the file's bytes as they were: it is only ever opened read-only first.
    """

    what = "file"
    setting = "another output path"
    kind = ""  # the file's "kind" attribute

    @classmethod
    def merge(cls, shards: list[Path], output: Path, *, overwrite: bool = False) -> tuple[Path, int, int]:
        """Copy the done entries of every array-task shard into ``output`` (created, or completed if it fits).

        Returns (path, entries done, entries in all). Shards of another run are refused by name.
        """
        check_shards(shards, cls.kind)
        with open_readonly(shards[0]) as f:
            spec = cls.spec_from_file(f)
        with cls(output, spec, overwrite=overwrite) as out:
            for shard in shards:
                with open_readonly(shard) as f:
                    diffs = out._differences(f, spec)
                    if diffs:
                        raise ValueError(f"{shard} does not belong with {shards[0]}: " + "; ".join(diffs))
                    flat = np.flatnonzero(f["done"][()].reshape(-1))
                    if flat.size:
                        out._copy_done(f, flat)
            mask = out.done_mask()
        return output, int(mask.sum()), int(mask.size)

    @classmethod
    def spec_from_file(cls, f: h5py.File) -> Any:
        """The spec of an open file of this kind."""
        raise NotImplementedError

    def _copy_done(self, f: h5py.File, flat: np.ndarray) -> None:
        """Write the entries ``flat`` (done in the open shard ``f``) into this file."""
        raise NotImplementedError

    def __init__(
        self,
        path: str | Path,
        spec: Any,
        *,
        overwrite: bool = False,
        extra_attrs: dict[str, Any] | None = None,
        scope: Scope | None = None,
    ) -> None:
        self.path = Path(path)
        self.spec = spec
        self.file: h5py.File | None = None
        self.lock = WriterLock(self.path)
        self.lock.acquire()
        try:
            self.resumed = False
            if self.path.exists() and not overwrite:
                with open_readonly(self.path) as f:
                    diffs = self._differences(f, spec)
                    if scope is not None:
                        diffs += identity_differences(str(read_attr(f, "config", "")), spec.config_yaml, scope)
                if diffs:
                    raise ValueError(
                        f"{self.path} holds a different {self.what}, so it cannot be resumed: " + "; ".join(diffs)
                        + f". Use --overwrite to start over (its values will be lost) or choose another {self.setting}."
                    )
                self.resumed = True
            else:
                self._create(self.path, spec, extra_attrs or {})
            self.file = h5py.File(self.path, "r+")
        except BaseException:
            self.lock.release()
            raise

    def _differences(self, f: h5py.File, spec: Any) -> list[str]:
        raise NotImplementedError

    def _create(self, path: Path, spec: Any, extra_attrs: dict[str, Any]) -> None:
        raise NotImplementedError

    def _open_file(self) -> h5py.File:
        if self.file is None:
            raise ValueError(f"{self.path} is closed")
        return self.file

    def done_mask(self) -> np.ndarray:
        """The done mask, flattened in C order."""
        return self._open_file()["done"][()].reshape(-1)

    def pending(self) -> np.ndarray:
        """Flat indices of the entries not yet done, ascending."""
        return np.flatnonzero(~self.done_mask())

    def close(self) -> None:
        """Close the file and release the lock."""
        if self.file is not None:
            self.file.close()
            self.file = None
        self.lock.release()

    def __enter__(self) -> ResumableWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
