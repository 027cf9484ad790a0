"""`effrep hessian` (curvature at one point) and `effrep curvature` (eigenvalue maps over a scan's grid).

Both start where a loss scan starts (`runners.landscape.setup_scan`: checkpoint, data, directions,
grid) and measure the Hessian of the mean loss over the training set (or ``hessian.train_size``
samples of it) with `landscape.curvature`, at points set like the scan's (`landscape.evaluate.at_point`:
weights, and BN statistics as ``landscape.bn`` says). A map is a surface file of the same grid with
``max_eig``, ``min_eig``, ``eig_ratio`` (= |min/max|) and ``hvps`` per point, shared out, resumed and
merged like any scan.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

from effrep_hpc import __version__
from effrep_hpc.config import Config, Scope, check_resume, from_yaml, to_yaml
from effrep_hpc.errors import UserError
from effrep_hpc.landscape import curvature as C
from effrep_hpc.landscape.evaluate import EvalData, at_point, subset
from effrep_hpc.runners.driver import backend_for, setup_guard
from effrep_hpc.runners.landscape import Scan, run_scan, setup_scan
from effrep_hpc.store.curvature import resume_point, write_point

SCOPE = Scope("curvature", ("data", "landscape", "hessian"))
MAP_METRICS = ["max_eig", "min_eig", "eig_ratio", "hvps"]
NO_MODEL = "an extrapolated BN running variance is negative there, so no model is defined; use landscape.bn=recompute"


def _operator(cfg: Config, scan: Scan) -> tuple[C.HessianOperator, EvalData]:
    """The Hessian of the mean loss over the configured training samples, in the scan's BN policy."""
    H, L = cfg.hessian, cfg.landscape
    x, y = scan.dataset.x_train, scan.dataset.y_train
    if H.train_size is not None:
        x, y = subset(x, y, H.train_size, cfg.data.seed)
    bn = "train" if L.bn == "train" else "eval"  # recompute: eval once at_point has re-estimated them
    op = C.HessianOperator(
        scan.model, x, y, loss=L.loss, bn=bn, bias_bn=L.bias_bn, batch_size=H.batch_size, hvp=H.hvp,
        cache_bytes=H.cache_mb * 2**20,
    )
    C.check_eigen_args(H.method, H.k, H.tol, H.max_iter, op.dim)
    return op, EvalData(x, y)


def _moved(cfg: Config, scan: Scan, data: EvalData, coords: Any) -> Any:
    """The context in which the model sits at ``coords`` on the scan's directions."""
    dirs = [d for d in (scan.dirs.x, scan.dirs.y) if d is not None][: len(coords)]
    L = cfg.landscape
    return at_point(scan.model, scan.w0, dirs, list(coords), bn=L.bn, data=data, batch_size=L.batch_size, bn_batches=L.bn_batches)


@dataclass
class PointResult:
    """What `effrep hessian` prints: the stored result, where it is, and whether to print JSON."""

    result: dict[str, Any]
    path: Path
    as_json: bool


def run_hessian(cfg: Config, *, overwrite: bool = False, json: bool = False) -> PointResult:
    """Top-k and smallest eigenvalue, trace and spectral density at ``hessian.point`` (or the checkpoint)."""
    H = cfg.hessian
    path = Path(H.out) if H.out else Path(cfg.run.out) / "hessian.json"
    with setup_guard(backend_for(cfg)):
        scan = setup_scan(cfg, [])
        op, data = _operator(cfg, scan)
        ndirs = 1 if scan.dirs.y is None else 2
        if H.point is not None and len(H.point) != ndirs:
            raise UserError(f"hessian.point has {len(H.point)} coordinate(s) but the scan has {ndirs} direction(s)")
        provenance = {"model_hash": scan.spec.model_hash, "directions_hash": scan.spec.directions_hash}

        def check(stored: dict[str, Any]) -> None:
            check_resume(path, from_yaml(stored.get("config", "")), cfg, SCOPE, fix="choose another hessian.out")
            if {k: stored.get(k) for k in provenance} != provenance:
                raise UserError(
                    f"{path} was computed for another checkpoint or directions; choose another hessian.out or pass --overwrite"
                )

        stored = resume_point(path, check, overwrite=overwrite)
    if stored is not None:
        return PointResult(stored, path, json)
    point = list(H.point or [0.0] * ndirs)
    with _moved(cfg, scan, data, point) as defined:
        if not defined:
            raise UserError(f"hessian.point {H.point}: {NO_MODEL}")
        eig = C.hessian_eigenvalues(op, H.k, method=H.method, tol=H.tol, max_iter=H.max_iter, seed=H.seed)
        trace = H.trace_probes and C.hutchinson_trace(op, rel_tol=H.trace_tol, max_probes=H.trace_probes, seed=H.seed)
        density = H.density_probes and C.spectral_density(op, probes=H.density_probes, steps=H.density_steps, seed=H.seed)
    result = {
        "top_eigenvalues": list(eig.top), "min_eigenvalue": eig.min, "top_errors": list(eig.top_error),
        "min_error": eig.min_error, "converged": eig.converged,
        "trace": trace and trace.trace, "trace_stderr": trace and trace.stderr,
        "trace_probes": trace and trace.probes, "hvps": op.hvps, "parameters": op.dim, "samples": op.n_samples,
        "point": point, "method": H.method,
        "density": density and {"grid": density.grid.tolist(), "values": density.density.tolist(), "sigma": density.sigma},
        "config": to_yaml(cfg), "effrep_version": __version__, **provenance,
    }
    return PointResult(result, write_point(path, result), json)


def _num(value: Any) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.6g}"


def describe(out: PointResult, cfg: Config) -> str:
    """One JSON object (``--json``) or a few lines: the eigenvalues, the trace and where the file is."""
    r = out.result
    if out.as_json:
        keys = ("top_eigenvalues", "min_eigenvalue", "trace", "trace_stderr", "hvps")
        return json.dumps({**{k: r.get(k) for k in keys}, "path": str(out.path)})
    top, low = r["top_eigenvalues"], r["min_eigenvalue"]
    ratio = abs(low / top[0]) if low is not None and top[0] else None
    trace = "not computed" if r.get("trace") is None else (
        f"{_num(r['trace'])} +- {_num(r.get('trace_stderr'))} ({r.get('trace_probes')} probes)"
    )
    unconverged = f" (not converged to hessian.tol={cfg.hessian.tol}: raise hessian.max_iter)"
    return "\n".join([
        f"top eigenvalues: {', '.join(_num(v) for v in top)}",
        f"min eigenvalue: {_num(low)}   |min/max|: {_num(ratio)}",
        f"trace: {trace}",
        f"{r['hvps']} Hessian-vector products over {r['parameters']} parameters and {r['samples']} samples"
        + ("" if r.get("converged") else unconverged),
        f"hessian: {out.path}",
    ])


def run_curvature(cfg: Config, *, overwrite: bool = False) -> Optional[Path]:
    """The largest and smallest eigenvalue at every point of the scan's grid, into a surface file."""
    H = cfg.hessian
    backend = backend_for(cfg)
    with setup_guard(backend):
        scan = setup_scan(cfg, MAP_METRICS)
        op, data = _operator(cfg, scan)

    def compute(idx: np.ndarray) -> dict[str, np.ndarray]:
        out = {m: np.full(len(idx), np.nan) for m in MAP_METRICS}
        for j, coords in enumerate(scan.coords[idx]):
            with _moved(cfg, scan, data, coords) as defined:
                if not defined:
                    continue
                eig = C.hessian_eigenvalues(op, 1, method=H.method, tol=H.tol, max_iter=H.max_iter, seed=H.seed)
            top, low = eig.top[0], eig.min
            ratio = abs(low / top) if top != 0 else math.inf
            for name, value in zip(MAP_METRICS, (top, low, ratio, eig.hvps)):
                out[name][j] = value
        return out

    path = Path(H.map) if H.map else Path(cfg.run.out) / "curvature.h5"
    return run_scan(cfg, backend, scan, path, SCOPE, compute, overwrite=overwrite)
