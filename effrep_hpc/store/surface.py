"""Surface files (docs/surface-format.md): create, resume, write tiles, and merge array-task shards.

Points are addressed by their flat index ``k = j * nx + i`` into the ``(ny, nx)`` layout (1D: ``k = i``).
Datasets are preallocated with NaN at creation, so a tile write touches raw data only and a process
killed at any moment leaves a readable file; values and their checksums are written before the ``done``
flags, each followed by a flush, so a point is either done with its values or recomputed on resume, and
a done point whose values were changed on disk afterwards is found by its checksum.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np

from effrep_hpc.store.h5 import (
    CHECKSUM,
    ResumableWriter,
    arrays_digest,
    atomic_create,
    open_readonly,
    preallocate,
    provenance,
    read_attr,
    read_group,
    set_attrs,
    write_group,
)

SCHEMA_VERSION = 1
KIND = "surface"


@dataclass
class SurfaceSpec:
    """Everything that defines a scan: the grid, the metrics, and what the model and directions were."""

    x: np.ndarray
    y: Optional[np.ndarray]
    metrics: list[str]
    config_yaml: str = ""
    model_hash: str = ""
    directions_hash: str = ""
    directions: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # "x"/"y" -> name -> array
    attrs: dict[str, Any] = field(default_factory=dict)
    # the `trajectory/` group (docs/surface-format.md): dataset name -> array, plus "attrs" -> dict
    trajectory: Optional[dict[str, Any]] = None

    @property
    def shape(self) -> tuple[int, ...]:
        """The layout of every value dataset: (ny, nx), or (nx,) for 1D."""
        return (len(self.x),) if self.y is None else (len(self.y), len(self.x))

    @property
    def num_points(self) -> int:
        """Number of grid points."""
        return int(np.prod(self.shape))


def _differences(f: h5py.File, spec: SurfaceSpec) -> list[str]:
    diffs = []
    if read_attr(f, "kind") != KIND:
        return [f"it is not a surface file (kind={read_attr(f, 'kind')!r})"]
    ndim = 1 if spec.y is None else 2
    if int(read_attr(f, "ndim", 0)) != ndim:
        return [f"dimension: file is {read_attr(f, 'ndim')}D, requested {ndim}D"]
    old_x = f["xcoordinates"][()]
    if old_x.shape != spec.x.shape or not np.array_equal(old_x, spec.x):
        diffs.append(f"x grid: file {_axis_text(old_x)}, requested {_axis_text(spec.x)}")
    if spec.y is not None:
        old_y = f["ycoordinates"][()]
        if old_y.shape != spec.y.shape or not np.array_equal(old_y, spec.y):
            diffs.append(f"y grid: file {_axis_text(old_y)}, requested {_axis_text(spec.y)}")
    if read_attr(f, "model_hash") != spec.model_hash:
        diffs.append("model: the checkpoint's weights differ from the ones the file was computed for")
    if read_attr(f, "directions_hash") != spec.directions_hash:
        diffs.append("directions: they differ from the ones stored in the file (seed, normalization or source)")
    want, have = spec.attrs.get("bn_statistics"), read_attr(f, "bn_statistics")
    # files of older versions do not say, but never interpolated: their target/plane scans used the centre's
    if want is not None and have != want and (have is not None or want == "interpolated"):
        diffs.append(f"BN statistics: file {have or 'centre model (older version)'}, requested {want}")
    old_metrics = sorted(m for m in str(read_attr(f, "metrics", "")).split(",") if m)
    if old_metrics != sorted(spec.metrics):
        diffs.append(f"metrics: file has {old_metrics}, requested {sorted(spec.metrics)}")
    return diffs


def _axis_text(a: np.ndarray) -> str:
    return f"{a[0]:g}:{a[-1]:g}:{len(a)}" if len(a) else "empty"


def _create(path: Path, spec: SurfaceSpec, extra_attrs: dict[str, Any]) -> None:
    with atomic_create(path) as f:
        attrs = provenance(
            spec.config_yaml,
            kind=KIND,
            schema_version=SCHEMA_VERSION,
            ndim=1 if spec.y is None else 2,
            axes="x" if spec.y is None else "y,x",
            model_hash=spec.model_hash,
            directions_hash=spec.directions_hash,
            metrics=",".join(spec.metrics),
        )
        attrs.update(spec.attrs)
        attrs.update(extra_attrs)
        set_attrs(f, attrs)
        f.create_dataset("xcoordinates", data=np.asarray(spec.x, dtype=np.float64))
        if spec.y is not None:
            f.create_dataset("ycoordinates", data=np.asarray(spec.y, dtype=np.float64))
        axes = np.array(["x"] if spec.y is None else ["y", "x"], dtype=h5py.string_dtype())
        for name in spec.metrics:
            preallocate(f, name, spec.shape, np.float64, np.nan).attrs["axes"] = axes
        preallocate(f, "done", spec.shape, bool, False).attrs["axes"] = axes
        preallocate(f, CHECKSUM, spec.shape, np.uint64, 0).attrs["axes"] = axes
        if spec.directions:
            g = f.create_group("directions")
            for axis, tensors in spec.directions.items():
                ga = g.create_group(axis)
                for name, arr in tensors.items():
                    ga.create_dataset(name, data=np.asarray(arr))
            # of the arrays as stored (read back), so a resume can tell when they were changed on disk
            f.attrs["directions_sha256"] = arrays_digest(g)
        if spec.trajectory is not None:
            write_group(f, "trajectory", spec.trajectory)


def _write_points(ds: h5py.Dataset, points: np.ndarray, values: np.ndarray) -> None:
    """Write ``values[p]`` at the element ``points[p]`` (index rows) of ``ds`` in one HDF5 call.

    A point selection: a tile of the progressive order is scattered over many rows (a 64-point tile
    can be 64 one-element runs), and one call for the whole tile costs about what one run did.
    """
    file_space = ds.id.get_space()
    file_space.select_elements(points)
    ds.id.write(h5py.h5s.create_simple((len(values),)), file_space, np.ascontiguousarray(values, dtype=ds.dtype))


class SurfaceWriter(ResumableWriter):
    """The single writer of a surface (or shard) file: holds the lock and the open file."""

    what = "scan"
    unit = "points"
    setting = "landscape.surface"
    kind = KIND

    @classmethod
    def spec_from_file(cls, f: h5py.File) -> SurfaceSpec:
        """The spec of an open surface file."""
        return spec_from_file(f)

    def _copy_done(self, f: h5py.File, flat: np.ndarray) -> None:
        self.write(flat, {m: f[m][()].reshape(-1)[flat] for m in self.spec.metrics})

    def _differences(self, f: h5py.File, spec: SurfaceSpec) -> list[str]:
        return _differences(f, spec)

    def _create(self, path: Path, spec: SurfaceSpec, extra_attrs: dict[str, Any]) -> None:
        _create(path, spec, extra_attrs)

    def write(self, flat: np.ndarray, values: dict[str, np.ndarray]) -> None:
        """Write the metrics of points ``flat`` (then mark them done), flushing after each step."""
        flat = np.asarray(flat, dtype=np.int64)
        order = np.argsort(flat, kind="stable")
        flat = flat[order]
        missing = sorted(set(self.spec.metrics) - set(values))
        if missing:
            raise KeyError(f"tile results lack metrics {missing}")
        f = self._open_file()
        if flat.size and (flat[0] < 0 or flat[-1] >= self.spec.num_points):
            raise IndexError(f"point index outside the grid of {self.spec.num_points} points")
        if not flat.size:
            return
        # element coordinates in the file's layout: (j, i) rows in 2D, (i,) in 1D
        points = np.stack(np.unravel_index(flat, self.spec.shape), axis=1).astype(np.uint64)
        columns = {name: np.asarray(values[name], dtype=np.float64).reshape(-1)[order] for name in self.spec.metrics}
        if self.checksums:
            columns[CHECKSUM] = self._checksums_of(columns)
        for name, vals in columns.items():
            _write_points(f[name], points, vals)
        f.flush()
        _write_points(f["done"], points, np.ones(flat.size, dtype=bool))
        f.flush()

    def point_slots(self) -> str:
        """The file's ``point_slots`` attribute: how its points sit in batched passes ("flat" in older files)."""
        return str(read_attr(self._open_file(), "point_slots", "flat"))


def read_surface(path: str | Path) -> dict[str, Any]:
    """Read a whole surface file into memory: datasets by name plus ``attrs``."""
    with open_readonly(path) as f:
        if read_attr(f, "kind") != KIND:
            raise ValueError(f"{path} is not a surface file (kind={read_attr(f, 'kind')!r})")
        out: dict[str, Any] = {name: f[name][()] for name in f if isinstance(f[name], h5py.Dataset)}
        out["attrs"] = {k: read_attr(f, k) for k in f.attrs}
    return out


def all_done(path: str | Path) -> bool:
    """True when every point of the surface file ``path`` is done (reads the done mask only)."""
    with open_readonly(path) as f:
        if read_attr(f, "kind") != KIND:
            raise ValueError(f"{path} is not a surface file (kind={read_attr(f, 'kind')!r})")
        return bool(f["done"][()].all())


def spec_from_file(f: h5py.File) -> SurfaceSpec:
    """The spec (grid, metrics, hashes, directions, attributes) of an open surface file."""
    directions: dict[str, dict[str, np.ndarray]] = {}
    if "directions" in f:
        for axis in f["directions"]:
            directions[axis] = {n: f["directions"][axis][n][()] for n in f["directions"][axis]}
    trajectory = read_group(f["trajectory"]) if "trajectory" in f else None
    skip = {"kind", "schema_version", "ndim", "axes", "model_hash", "directions_hash", "metrics", "config", "created",
            "effrep_version", "shard_task", "shard_count", "directions_sha256"}
    return SurfaceSpec(
        x=f["xcoordinates"][()],
        y=f["ycoordinates"][()] if "ycoordinates" in f else None,
        metrics=[m for m in str(read_attr(f, "metrics", "")).split(",") if m],
        config_yaml=str(read_attr(f, "config", "")),
        model_hash=str(read_attr(f, "model_hash", "")),
        directions_hash=str(read_attr(f, "directions_hash", "")),
        directions=directions,
        attrs={k: read_attr(f, k) for k in f.attrs if k not in skip},
        trajectory=trajectory,
    )


merge_shards = SurfaceWriter.merge
repair_surface = SurfaceWriter.repair
