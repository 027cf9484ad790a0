"""Read a run's training metrics file (``metrics.h5`` of `effrep train`) without torch.

The layout (written by effrep_hpc.store.curves): root attributes ``kind = "metrics"``, ``schema_version``
and ``fields`` (the comma-separated column names, e.g. ``epoch,train_loss,train_acc,test_loss,test_acc,lr,seconds``);
one float64 dataset per field with a row per planned epoch (NaN until written) and a bool ``done`` per row,
set after the row's values. Only rows marked done are read, so a file of a run still training (or killed)
gives the epochs it finished.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from analysis.surface import SurfaceError, open_h5, read_attrs

KIND = "metrics"


def load_metrics(path: str | Path) -> dict[str, np.ndarray]:
    """The rows marked done of a metrics file, one float64 array per field; a SurfaceError names what is wrong."""
    path = Path(path)
    with open_h5(path) as f:
        attrs = read_attrs(f)
        if attrs.get("kind") != KIND or "done" not in f:
            raise SurfaceError(
                f"{path} is not a training metrics file (root attribute kind {attrs.get('kind')!r}, expected "
                f"{KIND!r}, and a 'done' dataset): give the metrics.h5 that `effrep train` writes"
            )
        fields = [name for name in str(attrs.get("fields", "")).split(",") if name]
        missing = [name for name in fields if name not in f]
        if missing:
            raise SurfaceError(f"{path}: the fields {', '.join(missing)} named by its 'fields' attribute are missing")
        done = np.asarray(f["done"][()], dtype=bool)
        return {name: np.asarray(f[name][()], dtype=np.float64)[done] for name in fields}


def last_value(path: str | Path, field: str) -> float | None:
    """The value of `field` in the last row marked done (None when no row is done or the value is not finite)."""
    rows = load_metrics(path)
    if field not in rows:
        raise SurfaceError(f"{path} has no field {field!r}; fields present: {', '.join(rows) or 'none'}")
    values = rows[field]
    if values.size == 0 or not np.isfinite(values[-1]):
        return None
    return float(values[-1])
