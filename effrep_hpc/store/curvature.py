"""`effrep hessian`'s result file (``hessian.json``): the curvature at one point, and what it was computed for.

One JSON object: ``top_eigenvalues``, ``min_eigenvalue``, ``trace``, ``trace_stderr``, ``hvps`` (the keys
``--json`` prints), error estimates, the spectral density (``density.grid``, ``density.values``), and
provenance: the resolved config (``config``), the package version, the model and directions hashes.
It is written atomically (a kill leaves the previous file or none) and is read back instead of
recomputed when the same command runs again; a file computed with other settings is never replaced
without ``--overwrite``. ``python -m analysis spectrum hessian.json`` plots the density.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Optional

from effrep_hpc.store.atomic import atomic_write

KIND = "hessian_point"


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN/inf: they become null (lists element-wise)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    return value


def read_point(path: str | Path) -> Optional[dict[str, Any]]:
    """The stored result at ``path``; None when there is none. A file that is not ours raises ValueError."""
    path = Path(path)
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable JSON file ({exc}); choose another hessian.out or pass --overwrite") from exc
    if not isinstance(data, dict) or data.get("kind") != KIND:
        raise ValueError(f"{path} is not a curvature result of `effrep hessian`; choose another hessian.out or pass --overwrite")
    return data


def resume_point(
    path: str | Path, check: Callable[[dict[str, Any]], None], *, overwrite: bool
) -> Optional[dict[str, Any]]:
    """The stored result when it was computed with the same settings (``check`` raises otherwise); None: compute it."""
    if overwrite:
        return None
    stored = read_point(path)
    if stored is not None:
        check(stored)
    return stored


def write_point(path: str | Path, result: dict[str, Any]) -> Path:
    """Write ``result`` (plus ``kind``) atomically as JSON; return the path."""
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(_finite_or_none({"kind": KIND, **result}), indent=1) + "\n")
    return Path(path)
