"""Read a loss-landscape surface file (docs/surface-format.md) into a `Surface`, with masking helpers.

Every analysis command goes through `load_surface`, so one place decides what counts as a surface
file, which points are shown (computed, finite) and what an error message says.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

if TYPE_CHECKING:
    from analysis.preview import Preview

COORDINATE_NAMES = ("xcoordinates", "ycoordinates")
METRIC_NAMES = ("train_loss", "train_acc", "test_loss", "test_acc")
NOT_METRICS = frozenset((*COORDINATE_NAMES, "done"))


class SurfaceError(ValueError):
    """A surface file or surface array that analysis cannot use; the message says what to fix."""


@dataclass
class Surface:
    """A 1D or 2D loss surface: values indexed `[j, i]` = point `(x[i], y[j])` (2D) or `[i]` (1D)."""

    x: np.ndarray
    y: np.ndarray | None
    metrics: dict[str, np.ndarray]
    done: np.ndarray | None = None
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    # Set on what analysis.preview.partial_view returns for a partial file: what the drawing shows.
    preview: Preview | None = None

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.float64)
        if self.x.ndim != 1 or self.x.size == 0:
            raise SurfaceError(f"{self._where()}x coordinates must be a non-empty 1D array, got shape {self.x.shape}")
        if self.y is not None:
            self.y = np.asarray(self.y, dtype=np.float64)
            if self.y.ndim != 1 or self.y.size == 0:
                raise SurfaceError(f"{self._where()}y coordinates must be a non-empty 1D array, got shape {self.y.shape}")
        if not self.metrics:
            raise SurfaceError(f"{self._where()}a surface needs at least one metric array (e.g. train_loss)")
        self.metrics = {name: np.asarray(v, dtype=np.float64) for name, v in self.metrics.items()}
        for name, values in self.metrics.items():
            if values.shape != self.shape:
                raise SurfaceError(
                    f"{self._where()}metric {name!r} has shape {values.shape}, expected {self.shape} "
                    f"({'(len(y), len(x))' if self.y is not None else '(len(x),)'})"
                )
        if self.done is None:
            # Without a mask, a point counts as computed where any metric holds a value (NaN = pending).
            self.done = np.any([~np.isnan(v) for v in self.metrics.values()], axis=0)
        self.done = np.asarray(self.done, dtype=bool)
        if self.done.shape != self.shape:
            raise SurfaceError(f"{self._where()}done mask has shape {self.done.shape}, expected {self.shape}")
        self.attrs = dict(self.attrs)
        if self.path is not None:
            self.path = Path(self.path)

    @property
    def done_mask(self) -> np.ndarray:
        """`done` as the array it always is after construction (given, or derived from the metrics)."""
        if self.done is None:
            raise SurfaceError(f"{self._where()}the done mask is not set")
        return self.done

    def _where(self) -> str:
        return f"{self.path}: " if getattr(self, "path", None) is not None else ""

    @property
    def ndim(self) -> int:
        """1 for a line scan, 2 for a plane scan."""
        return 1 if self.y is None else 2

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of every value array: `(len(y), len(x))` or `(len(x),)`."""
        return (self.x.size,) if self.y is None else (self.y.size, self.x.size)

    @property
    def name(self) -> str:
        """A short label: the `title` attribute, else the file stem, else "surface"."""
        title = self.attrs.get("title")
        if title:
            return str(title)
        return self.path.stem if self.path is not None else "surface"

    @property
    def xlabel(self) -> str:
        """Axis label for x (the file's `xlabel` attribute, default "x")."""
        return str(self.attrs.get("xlabel") or "x")

    @property
    def ylabel(self) -> str:
        """Axis label for y (the file's `ylabel` attribute, default "y")."""
        return str(self.attrs.get("ylabel") or "y")

    def describe(self) -> str:
        """Name the surface for error messages: the file path if known."""
        return str(self.path) if self.path is not None else f"surface {self.name!r}"

    def require(self, metric: str) -> np.ndarray:
        """Return the raw array of `metric`, or raise naming the metrics that are present."""
        if metric not in self.metrics:
            raise SurfaceError(
                f"{self.describe()} has no dataset {metric!r}; value datasets present: {', '.join(sorted(self.metrics))}"
            )
        return self.metrics[metric]

    def require_2d(self, command: str) -> np.ndarray:
        """The y coordinates; raise a 1D-aware error when a plane-only command gets a line scan."""
        if self.y is None:
            raise SurfaceError(
                f"{self.describe()} is a 1D surface ({self.x.size} points along {self.xlabel}); "
                f"{command} needs a 2D surface: use `plot1d` for 1D files"
            )
        return self.y

    def valid(self, metric: str, *, log: bool = False) -> np.ndarray:
        """Bool mask of points to show: computed and finite (and > 0 when plotted on a log scale)."""
        values = self.require(metric)
        with np.errstate(invalid="ignore"):
            ok = self.done & np.isfinite(values)
            if log:
                ok &= values > 0
        return ok

    def values(self, metric: str, *, log: bool = False) -> np.ndarray:
        """Copy of `metric` with NaN wherever the point is not valid (pending, NaN, inf)."""
        out = np.array(self.require(metric), dtype=np.float64)
        out[~self.valid(metric, log=log)] = np.nan
        return out

    def masked(self, metric: str, *, log: bool = False) -> np.ma.MaskedArray:
        """`metric` as a masked array (masked = not valid), what matplotlib needs to leave holes."""
        values = self.values(metric, log=log)
        return np.ma.masked_invalid(values)

    def value_range(self, metric: str, *, log: bool = False) -> tuple[float, float]:
        """(min, max) over valid points only; raises when nothing valid is left."""
        values = self.require(metric)[self.valid(metric, log=log)]
        if values.size == 0:
            extra = " and positive (needed for --log)" if log else ""
            raise SurfaceError(
                f"{self.describe()}: metric {metric!r} has no computed, finite{extra} points "
                f"({int(self.done_mask.sum())} of {self.done_mask.size} points are marked done)"
            )
        return float(values.min()), float(values.max())

    def height(self, metric: str, *, log: bool = False, zmax: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(z, valid): the 3D height (clipped at `zmax` in data units, then log10 with `log`), NaN where invalid."""
        valid = self.valid(metric, log=log)
        if not valid.any():
            self.value_range(metric, log=log)  # raises the "nothing to show" error
        z = np.array(self.require(metric), dtype=np.float64)
        if zmax is not None:
            if log and zmax <= 0:
                raise SurfaceError(f"--zmax {zmax:g}: with --log the clip value must be > 0")
            z = np.minimum(z, zmax)
        z[~valid] = np.nan
        if log:
            z = np.log10(z)
        return z, valid

    def slice_at(self, *, y: float | None = None, x: float | None = None) -> Surface:
        """The 1D surface along x at the row nearest `y` (or along y at the column nearest `x`)."""
        ys = self.y
        if ys is None:
            raise SurfaceError(f"{self.describe()} is already 1D; drop --at-x/--at-y")
        if (x is None) == (y is None):
            raise SurfaceError("give exactly one of x or y to slice a 2D surface")
        attrs = {k: v for k, v in self.attrs.items() if k not in ("xlabel", "ylabel", "ndim", "axes")}
        if y is not None:
            j = int(np.argmin(np.abs(ys - y)))
            attrs["xlabel"] = self.xlabel
            attrs["slice"] = f"{self.ylabel} = {ys[j]:.4g}"
            return Surface(self.x, None, {k: v[j, :] for k, v in self.metrics.items()}, self.done_mask[j, :], attrs, self.path)
        i = int(np.argmin(np.abs(self.x - x)))
        attrs["xlabel"] = self.ylabel
        attrs["slice"] = f"{self.xlabel} = {self.x[i]:.4g}"
        return Surface(ys, None, {k: v[:, i] for k, v in self.metrics.items()}, self.done_mask[:, i], attrs, self.path)


def height_label(metric: str, *, log: bool = False) -> str:
    """Axis/array label for a plotted height."""
    return f"log10({metric})" if log else metric


def attr_value(value: Any) -> Any:
    """Turn h5py attribute values (bytes, numpy scalars) into plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_attrs(obj: h5py.HLObject) -> dict[str, Any]:
    """All attributes of an HDF5 object as plain Python values."""
    return {k: attr_value(v) for k, v in obj.attrs.items()}


def open_h5(path: str | Path, error: type[Exception] = None) -> h5py.File:  # type: ignore[assignment]
    """Open a file read-only without HDF5's flock, so a file that a running job writes can be read.

    Raises ``error`` (default SurfaceError) naming the file when it is missing or not HDF5.
    """
    error = error or SurfaceError
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: no such file")
    try:
        return h5py.File(path, "r", locking=False)
    except OSError as exc:
        raise error(f"{path}: not an HDF5 file ({exc})") from None


def load_surface(path: str | Path) -> Surface:
    """Read a surface file; raise `SurfaceError` naming the file and what is missing or wrong."""
    path = Path(path)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        datasets = sorted(k for k, v in f.items() if isinstance(v, h5py.Dataset))
        present = ", ".join(datasets) if datasets else "none"
        if attrs.get("kind") != "surface" or "xcoordinates" not in f:
            missing = []
            if attrs.get("kind") != "surface":
                missing.append(f"root attribute kind == 'surface' (found {attrs.get('kind')!r})")
            if "xcoordinates" not in f:
                missing.append("dataset 'xcoordinates'")
            raise SurfaceError(
                f"{path} is not a surface file: missing {' and '.join(missing)}; datasets present: {present}"
            )
        x = np.asarray(f["xcoordinates"][()], dtype=np.float64)
        ndim = int(attrs.get("ndim", 2 if "ycoordinates" in f else 1))
        if ndim not in (1, 2):
            raise SurfaceError(f"{path}: attribute ndim must be 1 or 2, found {ndim}")
        y = None
        if ndim == 2:
            if "ycoordinates" not in f:
                raise SurfaceError(f"{path}: ndim is 2 but dataset 'ycoordinates' is missing; datasets present: {present}")
            y = np.asarray(f["ycoordinates"][()], dtype=np.float64)
        shape = (x.size,) if y is None else (y.size, x.size)
        # The schema stores "y,x"; a file that says "x,y" is transposed so callers always see [j, i].
        transpose = ndim == 2 and str(attrs.get("axes", "y,x")).replace(" ", "") == "x,y"
        # `done` before the values: a running scan writes a tile's values, flushes, then sets its done
        # flags, so every point done at this read already has its values on disk when they are read next.
        done = None
        if "done" in f:
            done = np.asarray(f["done"][()], dtype=bool)
            if transpose and done.ndim == 2:
                done = done.T
        arrays: dict[str, np.ndarray] = {}
        for name in datasets:
            if name in NOT_METRICS:
                continue
            data = f[name]
            if data.dtype.kind not in "fiu":
                continue
            value = np.asarray(data[()])
            if transpose and value.ndim == 2:
                value = value.T
            if value.shape == shape:
                arrays[name] = value.astype(np.float64)
        if not arrays:
            raise SurfaceError(
                f"{path}: no value dataset of shape {shape} (expected e.g. {', '.join(METRIC_NAMES)}); "
                f"datasets present: {present}"
            )
    return Surface(x, y, arrays, done, attrs, path)
