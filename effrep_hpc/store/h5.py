"""Crash-safe HDF5 plumbing shared by every file the store writes.

- A new file is written under a temporary name in the same directory and renamed into place, so a
  reader never sees a half-created file.
- Files that grow during a job (surfaces, sweeps) preallocate fixed-shape contiguous datasets at
  creation. Later writes then touch raw data only, never HDF5 metadata, so a process killed at any
  moment leaves a file that h5py still opens; points written but not yet marked done are recomputed.
- One writer at a time: a lock file ``<file>.lock`` created with O_EXCL (atomic on local disks, NFSv3+,
  Lustre and GPFS) names the host, pid, process start time and SLURM job of the writer. HDF5's own
  flock-based locking is also left on where the filesystem supports it; where it does not (some
  Lustre/GPFS mounts), set ``HDF5_USE_FILE_LOCKING=FALSE`` and the lock file still protects the file.
  A lock is stale (and taken over) when its process is gone from this host, when its pid now names a
  process that started at another time (pid reuse), when it is an earlier incarnation of this SLURM
  job, or when the lock file is empty or unreadable and older than ``LOCK_GRACE_S`` (a writer killed
  between creating and filling it, or a full disk).
- Damage on disk is detected on resume: every entry's values are covered by a checksum written with
  them (``integrity/checksum``, before the done flag), and stored directions by ``directions_sha256``.
  A damaged file is refused by name (:class:`DamagedFileError`); ``effrep repair`` clears the damaged
  entries so that the next resume recomputes exactly those.
- A merge builds its output under a temporary name and renames it into place only when complete.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Optional

import h5py
import numpy as np

from effrep_hpc import __version__
from effrep_hpc.config.identity import Scope, identity_differences
from effrep_hpc.dist.env import slurm_job_id
from effrep_hpc.errors import UserError
from effrep_hpc.store.atomic import atomic_write, clean_stale_tmp, pid_alive

# An empty or unreadable lock file younger than this may be one that its writer is filling right now.
LOCK_GRACE_S = 10.0
CHECKSUM = "integrity/checksum"  # per-entry checksum of the values, shaped like ``done``
MAX_RANGES = 12  # index ranges a message names before it says "and N more"


class FileBusyError(RuntimeError):
    """Another live process is writing the file."""


class DamagedFileError(UserError, ValueError):
    """A file whose stored values or directions no longer match the checksums written with them."""


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


def write_group(parent: h5py.Group, name: str, content: Mapping[str, Any]) -> None:
    """Create group ``name`` with one dataset per array of ``content`` and its ``"attrs"`` entry as attributes."""
    group = parent.create_group(name)
    for key, value in content.items():
        if key != "attrs":
            group.create_dataset(key, data=np.asarray(value))
    set_attrs(group, dict(content.get("attrs", {})))


def read_group(group: h5py.Group) -> dict[str, Any]:
    """A group written by :func:`write_group`: its datasets by name, and ``"attrs"``."""
    out: dict[str, Any] = {key: group[key][()] for key in group if isinstance(group[key], h5py.Dataset)}
    out["attrs"] = {key: read_attr(group, key) for key in group.attrs}
    return out


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


def arrays_digest(group: h5py.Group) -> str:
    """:func:`sha256_arrays` over every dataset under ``group``, by path in sorted order (so creation order does not matter)."""
    items: list[tuple[str, np.ndarray]] = []
    group.visititems(lambda name, obj: items.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
    return sha256_arrays(sorted(items, key=lambda item: item[0]))


def value_checksums(values: np.ndarray) -> np.ndarray:
    """Per-row checksums of ``values`` (entries, metrics): BLAKE2b-64 of the row's float64 LE bytes, read as uint64 LE."""
    rows = np.ascontiguousarray(np.asarray(values, dtype="<f8").reshape(len(values), -1))
    out = np.empty(len(rows), dtype=np.uint64)
    for k, row in enumerate(rows):
        out[k] = int.from_bytes(hashlib.blake2b(row.tobytes(), digest_size=8).digest(), "little")
    return out


def value_names(f: h5py.File) -> list[str]:
    """The value datasets of a file with a done mask, in the order of its ``metrics`` attribute (the checksum order)."""
    return [m for m in str(read_attr(f, "metrics", "")).split(",") if m and m in f]


def _done_values(f: h5py.File, flat: np.ndarray) -> np.ndarray:
    """(len(flat), metrics) float64 values of entries ``flat``."""
    names = value_names(f)
    if not names:
        return np.zeros((len(flat), 0))
    return np.stack([np.asarray(f[n][()], dtype=np.float64).reshape(-1)[flat] for n in names], axis=1)


def index_ranges(flat: np.ndarray, limit: int = MAX_RANGES) -> str:
    """Sorted indices as compact ranges, e.g. ``12-15, 40``, naming at most ``limit`` ranges."""
    idx = np.unique(np.asarray(flat, dtype=np.int64))
    if not idx.size:
        return "none"
    breaks = np.flatnonzero(np.diff(idx) != 1) + 1
    runs = [(int(r[0]), int(r[-1])) for r in np.split(idx, breaks)]
    text = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in runs[:limit])
    if len(runs) > limit:
        text += f" and {int(sum(b - a + 1 for a, b in runs[limit:]))} more"
    return text


@dataclass(frozen=True)
class Integrity:
    """What a file's checksums say: directions intact, done entries damaged or non-finite."""

    total: int  # entries in the done mask
    done: int
    checksums: bool  # the file has per-entry checksums (files of older versions do not)
    directions: Optional[bool]  # stored directions match directions_sha256 (None: nothing to check)
    damaged: np.ndarray  # flat indices of done entries whose values fail their checksum
    nonfinite: np.ndarray  # flat indices of done entries holding a NaN or inf (as computed)

    @property
    def ok(self) -> bool:
        """True when nothing checkable is damaged."""
        return self.directions is not False and not self.damaged.size

    def problem(self, path: Path, unit: str = "entries", what: str = "file") -> Optional[str]:
        """One line saying what is damaged and what to do (None when intact)."""
        if self.directions is False:
            return (
                f"{path} is damaged: its stored directions do not match the checksum written with them, so the "
                f"{what} cannot be resumed or repaired; start it over with --overwrite (its values will be lost)"
            )
        if self.damaged.size:
            return (
                f"{path} is damaged: {unit} {index_ranges(self.damaged)} (flat indices; {self.damaged.size} in all) "
                f"do not match the checksums written with them; run `effrep repair {path}` to clear them, then run "
                "again to recompute just those"
            )
        return None


def check_integrity(f: h5py.File) -> Integrity:
    """Verify the directions and every done entry of an open file with a done mask against their checksums."""
    done = np.asarray(f["done"][()], dtype=bool).reshape(-1)
    flat = np.flatnonzero(done)
    values = _done_values(f, flat)
    nonfinite = _nonfinite(flat, values)
    damaged = flat[:0]
    checksums = CHECKSUM in f
    if checksums and flat.size:
        stored = np.asarray(f[CHECKSUM][()], dtype=np.uint64).reshape(-1)
        damaged = flat[value_checksums(values) != stored[flat]]
    directions: Optional[bool] = None
    expected = read_attr(f, "directions_sha256")
    if expected is not None:
        directions = "directions" in f and arrays_digest(f["directions"]) == expected
    return Integrity(int(done.size), int(flat.size), checksums, directions, damaged, nonfinite)


def _nonfinite(flat: np.ndarray, values: np.ndarray) -> np.ndarray:
    """The entries of ``flat`` whose row of ``values`` holds a NaN or inf."""
    return flat[~np.isfinite(values).all(axis=1)] if values.size else flat[:0]


def nonfinite_entries(f: h5py.File) -> np.ndarray:
    """Flat indices of the done entries of an open file that hold a NaN or inf value."""
    flat = np.flatnonzero(np.asarray(f["done"][()], dtype=bool).reshape(-1))
    return _nonfinite(flat, _done_values(f, flat))


def clear_entries(f: h5py.File, flat: np.ndarray) -> None:
    """Mark entries ``flat`` of an open file not done, then set their values to NaN and checksums to 0 (flushing each step)."""
    flat = np.asarray(flat, dtype=np.int64)
    done = np.asarray(f["done"][()], dtype=bool)
    done.reshape(-1)[flat] = False
    f["done"][...] = done
    f.flush()  # not done first: a kill now leaves entries that are simply recomputed
    for name in value_names(f):
        values = f[name][()]
        values.reshape(-1)[flat] = np.nan
        f[name][...] = values
    if CHECKSUM in f:
        sums = f[CHECKSUM][()]
        sums.reshape(-1)[flat] = 0
        f[CHECKSUM][...] = sums
    f.flush()


def process_start_time(pid: int) -> Optional[int]:
    """When process ``pid`` started, in clock ticks after boot (Linux ``/proc/<pid>/stat`` field 22); None if unknown."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (OSError, ValueError):
        return None
    # The command name (field 2) is in parentheses and may hold spaces or ")": count from the last ")".
    fields = text[text.rfind(")") + 1 :].split()
    try:
        return int(fields[19])  # fields[0] is field 3 (state)
    except (IndexError, ValueError):
        return None


def _read_lock(path: Path) -> tuple[Optional[dict[str, Any]], Optional[os.stat_result]]:
    """The owner recorded in a lock file (None when empty or garbled) and the file's stat (None when gone)."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            raw = fh.read(65536)
    except FileNotFoundError:
        return None, None
    except OSError:
        try:
            return None, path.stat()
        except OSError:
            return None, None
    try:
        owner = json.loads(raw.decode())
        if isinstance(owner, dict) and isinstance(owner.get("host"), str) and int(owner["pid"]) > 0:
            return owner, st
    except (ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    return None, st


class WriterLock:
    """An exclusive writer lock on ``<path>.lock``; a stale lock (see the module docstring) is taken over."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(str(path) + ".lock")
        self.held = False

    def _stale(self, owner: Optional[dict[str, Any]], st: os.stat_result, me: dict[str, Any]) -> bool:
        if owner is None:
            return time.time() - st.st_mtime > LOCK_GRACE_S
        pid = int(owner["pid"])
        if owner["host"] == me["host"]:
            if not pid_alive(pid):
                return True
            # pid reuse (this process's own pid too): the pid is alive but is not the process that took
            # the lock; old locks lack "started" and keep the old rule
            started = owner.get("started")
            if started is not None:
                now = me["started"] if pid == me["pid"] else process_start_time(pid)
                if now is not None and str(now) != str(started):
                    return True
        # an earlier incarnation of this very SLURM job (a requeued task may restart on another node)
        return me["slurm_job"] is not None and owner.get("slurm_job") == me["slurm_job"] and pid != me["pid"]

    def _busy(self, owner: Optional[dict[str, Any]], st: os.stat_result) -> FileBusyError:
        target = str(self.path)[: -len(".lock")]
        if owner is None:
            age = max(0.0, time.time() - st.st_mtime)
            return FileBusyError(
                f"{target} is being written by another job (its lock file {self.path} is empty or unreadable and only "
                f"{age:.0f}s old: a writer may be filling it); run again in {max(1.0, LOCK_GRACE_S - age):.0f}s, when it "
                "counts as stale if still unreadable."
            )
        return FileBusyError(
            f"{target} is being written by another job (host {owner.get('host')}, pid "
            f"{owner.get('pid')}, SLURM job {owner.get('slurm_job')}); wait for it to finish. If that "
            f"job is dead (e.g. on another node), delete {self.path} and run again."
        )

    def acquire(self) -> None:
        """Take the lock or raise FileBusyError naming the live owner."""
        me = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": process_start_time(os.getpid()),
            "slurm_job": slurm_job_id(),
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                owner, st = _read_lock(self.path)
                if st is None:
                    continue  # released meanwhile
                if not self._stale(owner, st, me):
                    raise self._busy(owner, st) from None
                # Remove it only if it is still the lock judged stale, not one another process has just taken.
                with contextlib.suppress(OSError):
                    now = self.path.stat()
                    if (now.st_ino, now.st_dev, now.st_mtime_ns) == (st.st_ino, st.st_dev, st.st_mtime_ns):
                        self.path.unlink()
                continue
            try:
                with os.fdopen(fd, "w") as fh:
                    json.dump({k: v for k, v in me.items() if v is not None or k == "slurm_job"}, fh)
            except BaseException:
                self.path.unlink(missing_ok=True)  # e.g. a full disk: leave no empty lock behind
                raise
            self.held = True
            return
        raise FileBusyError(f"could not take the writer lock {self.path}; another process keeps taking it, run again")

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


def open_for_writing(path: str | Path) -> h5py.File:
    """Open an existing file read-write with HDF5's sieve buffer off.

    With the default 64 KiB sieve buffer every small write (a tile of scattered points) reads and rewrites
    up to 64 KiB per dataset; without it a point costs the bytes of its values (25 bytes for two metrics,
    its checksum and its done flag), at the same speed.
    """
    fapl = h5py.h5p.create(h5py.h5p.FILE_ACCESS)
    fapl.set_fclose_degree(h5py.h5f.CLOSE_STRONG)  # as h5py.File does: closing the file closes it on disk
    fapl.set_sieve_buf_size(0)
    return h5py.File(h5py.h5f.open(os.fsencode(str(path)), h5py.h5f.ACC_RDWR, fapl=fapl))


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

    Subclasses set ``what`` (e.g. "scan"), ``unit`` (what one entry is) and ``setting`` (the config key
    naming the file) for messages, and implement ``_differences(f, spec)`` (why an existing file is not
    this job's: grids, hashes) and ``_create(path, spec, extra_attrs)``. With a ``scope``, every
    result-marked config key of that scope must also equal the stored config's (``spec.config_yaml``
    against the file's ``config`` attribute). A resumed file must also pass its checksums
    (:func:`check_integrity`), else :class:`DamagedFileError` names the damaged entries. A refused resume
    leaves the file's bytes as they were: it is only ever opened read-only first. Opening also removes
    stale temporary files of this output (:func:`~effrep_hpc.store.atomic.clean_stale_tmp`).
    """

    what = "file"
    unit = "entries"
    setting = "another output path"
    kind = ""  # the file's "kind" attribute

    @classmethod
    def merge(cls, shards: list[Path], output: Path, *, overwrite: bool = False) -> tuple[Path, int, int]:
        """Copy the done entries of every array-task shard into ``output`` (created, or completed if it fits).

        The result is built under a temporary name beside ``output`` (from the existing output, unless
        ``overwrite``, and the shards) and renamed into place only when complete: a refused or failed
        merge leaves ``output`` as it was, or absent. Returns (path, entries done, entries in all).
        Shards of another run, and damaged shards, are refused by name.
        """
        check_shards(shards, cls.kind)
        with open_readonly(shards[0]) as f:
            spec = cls.spec_from_file(f)
        output = Path(output)
        with WriterLock(output):
            clean_stale_tmp(output.parent, output.name)
            keep = output.exists() and not overwrite
            with atomic_write(output) as tmp:
                with cls(tmp, spec, overwrite=True, lock=False) as out:
                    for source in ([output] if keep else []) + [Path(s) for s in shards]:
                        with open_readonly(source) as f:
                            diffs = out._differences(f, spec)
                            if diffs and keep and source == output:
                                raise ValueError(
                                    f"{output} holds a different {cls.what}, so these shards cannot be merged into it: "
                                    + "; ".join(diffs) + ". Use --overwrite to replace it or choose another output."
                                )
                            if diffs:
                                raise ValueError(f"{source} does not belong with {shards[0]}: " + "; ".join(diffs))
                            problem = check_integrity(f).problem(source, cls.unit, cls.what)
                            if problem:
                                raise DamagedFileError(problem)
                            flat = np.flatnonzero(f["done"][()].reshape(-1))
                            if flat.size:
                                out._copy_done(f, flat)
                    mask = out.done_mask()
        return output, int(mask.sum()), int(mask.size)

    @classmethod
    def repair(cls, path: str | Path) -> tuple[np.ndarray, int]:
        """Clear the done flags and values of the damaged entries of ``path``, so the next resume recomputes exactly those.

        Returns (flat indices cleared, entries in all). Refuses (DamagedFileError) when the stored
        directions are damaged, since no resume can restore them, and (UserError) a file without checksums.
        """
        path = Path(path)
        with WriterLock(path):
            with open_readonly(path) as f:
                if read_attr(f, "kind") != cls.kind or "done" not in f:
                    raise ValueError(f"{path} is not a {cls.kind} file (kind={read_attr(f, 'kind')!r})")
                integrity = check_integrity(f)
            if integrity.directions is False:
                raise DamagedFileError(integrity.problem(path, cls.unit, cls.what) or str(path))
            if not integrity.checksums:
                raise UserError(
                    f"{path} has no checksums (written by an older effrep), so damaged {cls.unit} cannot be found; "
                    "nothing was changed"
                )
            if integrity.damaged.size:
                with h5py.File(path, "r+") as f:
                    clear_entries(f, integrity.damaged)
        return integrity.damaged, integrity.total

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
        lock: bool = True,
    ) -> None:
        self.path = Path(path)
        self.spec = spec
        self.file: h5py.File | None = None
        self.lock = WriterLock(self.path)
        if lock:  # without: the caller holds the lock of the file this one will replace (merge)
            self.lock.acquire()
        try:
            clean_stale_tmp(self.path.parent, self.path.name)
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
                    problem = check_integrity(f).problem(self.path, self.unit, self.what)
                    if problem:
                        raise DamagedFileError(problem)
                self.resumed = True
            else:
                self._create(self.path, spec, extra_attrs or {})
            self.file = open_for_writing(self.path)
            # checksums are written in the file's metric order; files of older versions have none
            self.value_names = value_names(self.file)
            self.checksums = CHECKSUM in self.file
        except BaseException:
            self.close()
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

    def nonfinite_count(self) -> int:
        """How many done entries hold a NaN or inf value (as computed); works after :meth:`close` too."""
        if self.file is not None:
            return int(nonfinite_entries(self.file).size)
        with open_readonly(self.path) as f:
            return int(nonfinite_entries(f).size)

    def _checksums_of(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """Checksums of entries whose float64 values per metric are ``values`` (the order the file declares)."""
        return value_checksums(np.stack([np.asarray(values[n], dtype=np.float64) for n in self.value_names], axis=1))

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
