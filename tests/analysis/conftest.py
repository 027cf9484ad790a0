"""Surface files for the analysis tests, written with h5py straight from docs/surface-format.md."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pytest

# A non-square grid whose minimum sits on a grid point off-centre in both axes:
# x[35] = 0.4 (of -1..1, 51 points), y[8] = -0.2 (of -0.5..1, 41 points).
X_COORDS = np.linspace(-1.0, 1.0, 51)
Y_COORDS = np.linspace(-0.5, 1.0, 41)
X_MIN, Y_MIN = 0.4, -0.2
I_MIN, J_MIN = 35, 8


def bowl(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """An asymmetric bowl (tilted, cubic in x) with its only minimum 0.1 at (0.4, -0.2) on the grid."""
    u, v = x - X_MIN, y - Y_MIN
    return u**2 + 3.0 * v**2 + 0.5 * u * v + 0.3 * u**3 + 0.1


def write_surface_file(
    path: Path,
    x: np.ndarray,
    y: np.ndarray | None,
    metrics: dict[str, np.ndarray],
    done: np.ndarray | None = None,
    attrs: dict | None = None,
) -> Path:
    """Write a schema-version-1 surface file: values (ny, nx) or (nx,), NaN where not done."""
    axes = "x" if y is None else "y,x"
    shape = (len(x),) if y is None else (len(y), len(x))
    done = np.ones(shape, dtype=bool) if done is None else done
    with h5py.File(path, "w") as f:
        f.attrs["kind"] = "surface"
        f.attrs["schema_version"] = 1
        f.attrs["ndim"] = 1 if y is None else 2
        f.attrs["axes"] = axes
        f.attrs["config"] = "model: tiny\n"
        f.attrs["created"] = "2026-01-01T00:00:00Z"
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        f["xcoordinates"] = np.asarray(x, dtype=np.float64)
        if y is not None:
            f["ycoordinates"] = np.asarray(y, dtype=np.float64)
        for name, values in metrics.items():
            f[name] = np.asarray(values, dtype=np.float64)
            f[name].attrs["axes"] = axes
        f["done"] = done
        f["done"].attrs["axes"] = axes
    return path


def demo_like_loss() -> tuple[np.ndarray, np.ndarray]:
    """Like the demo's scan: the 25-point axis on [-1, 1], train loss from 0.003 at the centre to 39 in the corners."""
    x = np.linspace(-1.0, 1.0, 25)
    X, Y = np.meshgrid(x, x)
    return x, 0.003 + 15.0 * (X**2 + Y**2) + 9.0 * X**2 * Y**2


def bowl_metrics(x: np.ndarray, y: np.ndarray | None) -> dict[str, np.ndarray]:
    """Train/test loss and accuracy (percent) derived from the bowl."""
    if y is None:
        loss = bowl(x, np.full_like(x, Y_MIN))
    else:
        X, Y = np.meshgrid(x, y)
        loss = bowl(X, Y)
    acc = 100.0 * np.exp(-loss)
    return {"train_loss": loss, "train_acc": acc, "test_loss": 1.2 * loss, "test_acc": 0.9 * acc}


@pytest.fixture
def make_surface_file(tmp_path: Path) -> Callable[..., Path]:
    """Factory: make_surface_file(name, x, y, metrics, done=None, attrs=None) -> path under tmp_path."""

    def make(name: str, x, y, metrics, done=None, attrs=None) -> Path:
        return write_surface_file(tmp_path / name, x, y, metrics, done, attrs)

    return make


@pytest.fixture
def bowl_file(tmp_path: Path) -> Path:
    """The asymmetric non-square 2D bowl, every point done."""
    return write_surface_file(tmp_path / "bowl.h5", X_COORDS, Y_COORDS, bowl_metrics(X_COORDS, Y_COORDS))


@pytest.fixture
def holey_file(tmp_path: Path) -> Path:
    """The 2D bowl with a pending block (NaN, not done), an inf point, and a huge value not marked done."""
    metrics = bowl_metrics(X_COORDS, Y_COORDS)
    done = np.ones((Y_COORDS.size, X_COORDS.size), dtype=bool)
    done[-4:, :6] = False  # pending corner: high y, low x
    for values in metrics.values():
        values[-4:, :6] = np.nan
    metrics["train_loss"][-4, 0] = 1e9  # garbage at a pending point must not stretch the scale
    metrics["train_loss"][0, -1] = np.inf  # a diverged point, done but not finite
    metrics["train_loss"][20, 20] = np.nan  # done yet NaN: still masked
    return write_surface_file(tmp_path / "holey.h5", X_COORDS, Y_COORDS, metrics, done)


@pytest.fixture
def line_file(tmp_path: Path) -> Path:
    """A 1D scan along x with two pending points at the end."""
    metrics = bowl_metrics(X_COORDS, None)
    done = np.ones(X_COORDS.size, dtype=bool)
    done[-2:] = False
    for values in metrics.values():
        values[-2:] = np.nan
    return write_surface_file(tmp_path / "line.h5", X_COORDS, None, metrics, done)


def colourful_fraction(path: Path) -> float:
    """Fraction of pixels with clearly saturated colour: a blank, white or grey-only image scores ~0."""
    import matplotlib.image as mpimg

    rgb = mpimg.imread(str(path))[..., :3].astype(np.float64)
    if rgb.max() > 1.0:
        rgb = rgb / 255.0
    hi, lo = rgb.max(axis=-1), rgb.min(axis=-1)
    saturation = np.where(hi > 0.05, (hi - lo) / np.maximum(hi, 1e-9), 0.0)
    return float((saturation > 0.3).mean())


def pixel_std(path: Path) -> float:
    """Standard deviation over all RGB pixels (0 for a uniform image)."""
    import matplotlib.image as mpimg

    return float(mpimg.imread(str(path))[..., :3].std())


@pytest.fixture
def image_checks():
    """(colourful_fraction, pixel_std) helpers for PNG assertions."""
    return colourful_fraction, pixel_std


@pytest.fixture
def bowl_spec() -> SimpleNamespace:
    """The bowl's grid, minimum and helpers, for tests that compute expected values."""
    return SimpleNamespace(
        x=X_COORDS, y=Y_COORDS, x_min=X_MIN, y_min=Y_MIN, i_min=I_MIN, j_min=J_MIN,
        bowl=bowl, metrics=bowl_metrics, write=write_surface_file,
    )
