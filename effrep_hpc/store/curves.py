"""Per-epoch curves (training metrics, sweep runs): preallocated rows, one written per epoch.

Rows are preallocated with NaN for the planned number of epochs so that writing an epoch touches raw
data only (see store/h5.py); ``done[e]`` is set after the row's values, so a killed writer leaves at
worst a row that is recomputed on resume.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import h5py
import numpy as np

from effrep_hpc.store.h5 import WriterLock, atomic_create, preallocate, provenance, read_attr, set_attrs

SCHEMA_VERSION = 1


def create_curves(group: h5py.Group, fields: list[str], length: int) -> None:
    """Preallocate one float64 dataset per field and a ``done`` mask, ``length`` rows each."""
    for name in fields:
        preallocate(group, name, (length,), np.float64, np.nan)
    preallocate(group, "done", (length,), bool, False)
    group.attrs["fields"] = ",".join(fields)


def write_row(group: h5py.Group, row: int, values: dict[str, float]) -> None:
    """Write the values of one row, then mark it done (in that order, for crash safety)."""
    fields = str(read_attr(group, "fields", "")).split(",")
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise KeyError(f"unknown curve field(s) {unknown}; this file has {fields}")
    if not 0 <= row < group["done"].shape[0]:
        raise IndexError(f"row {row} outside the {group['done'].shape[0]} preallocated rows")
    for name, value in values.items():
        group[name][row] = value
    group.file.flush()
    group["done"][row] = True
    group.file.flush()


def read_curves(group: h5py.Group) -> dict[str, np.ndarray]:
    """All fields of the rows marked done, as arrays."""
    done = group["done"][()]
    fields = str(read_attr(group, "fields", "")).split(",")
    return {name: group[name][()][done] for name in fields if name}


class MetricsFile:
    """The per-epoch training metrics of one run (``metrics.h5``), kept open for the run's duration."""

    def __init__(self, path: str | Path, *, config_yaml: str, fields: list[str], epochs: int, resume: bool) -> None:
        self.path = Path(path)
        self.lock = WriterLock(self.path)
        self.lock.acquire()
        try:
            if not (resume and self.path.exists() and self._fits(fields, epochs)):
                with atomic_create(self.path) as f:
                    set_attrs(f, provenance(config_yaml, kind="metrics", schema_version=SCHEMA_VERSION))
                    create_curves(f, fields, epochs)
            self.file = h5py.File(self.path, "r+")
        except BaseException:
            self.lock.release()
            raise

    def _fits(self, fields: list[str], epochs: int) -> bool:
        try:
            with h5py.File(self.path, "r") as f:
                return read_attr(f, "fields") == ",".join(fields) and f["done"].shape[0] == epochs
        except OSError:
            return False

    def write_epoch(self, epoch: int, values: Mapping[str, Any]) -> None:
        """Record the metrics of ``epoch`` (0-based) and flush."""
        write_row(self.file, epoch, {k: float(v) for k, v in values.items()})

    def close(self) -> None:
        """Close the file and release the writer lock."""
        if getattr(self, "file", None) is not None:
            self.file.close()
            self.file = None
        self.lock.release()

    def __enter__(self) -> MetricsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
