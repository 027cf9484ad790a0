"""`hessian:` curvature of the loss (Hessian eigenvalues, trace, spectral density) at a point or over a grid.

The point, the directions, the grid, the BN policy, the loss and the covered parameters are the
`landscape:` section's (``landscape.bias_bn`` decides whether biases and BN parameters are covered);
this section says how the curvature is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from effrep_hpc.config.base import result


@dataclass
class HessianConfig:
    """How `effrep hessian` (one point) and `effrep curvature` (a map over the scan's grid) measure curvature."""

    out: Optional[str] = None  # `effrep hessian`'s JSON file; default: <run.out>/hessian.json
    map: Optional[str] = None  # `effrep curvature`'s surface file; default: <run.out>/curvature.h5
    point: Optional[list[float]] = result(None)  # [a] or [a, b] on the scan's directions; null: the checkpoint
    k: int = result(3)  # top eigenvalues at a point (a map stores the largest and the smallest)
    method: Literal["lanczos", "power"] = result("lanczos")  # power: the single-device libraries' method
    tol: float = result(1e-3)  # relative accuracy of each eigenvalue
    max_iter: int = result(100)  # Lanczos steps (= Hessian-vector products) per point
    trace_tol: float = result(0.02)  # Hutchinson: stop when the standard error is below this, relative
    trace_probes: int = result(100)  # at most this many Rademacher probes (0: no trace)
    density_probes: int = result(4)  # stochastic Lanczos quadrature probes (0: no density)
    density_steps: int = result(40)  # Lanczos steps per density probe
    train_size: Optional[int] = result(None)  # a seeded subset of the training set; null: all of it
    batch_size: int = result(256)  # samples per forward/backward pass (the mean over all is what counts)
    hvp: Literal["double_backward", "forward_over_reverse"] = result("double_backward")
    cache_mb: int = 4096  # gradient graphs kept between products at one point, per process (0: none)
    seed: int = result(0)  # start vectors and probes

    def _check(self) -> list[str]:
        problems = []
        for key in ("k", "max_iter", "density_steps", "batch_size"):
            if getattr(self, key) < 1:
                problems.append(f"hessian.{key}: must be >= 1 (got {getattr(self, key)})")
        for key in ("tol", "trace_tol"):
            if not getattr(self, key) > 0:
                problems.append(f"hessian.{key}: must be > 0 (got {getattr(self, key)})")
        for key in ("trace_probes", "density_probes", "cache_mb"):
            if getattr(self, key) < 0:
                problems.append(f"hessian.{key}: must be >= 0 (got {getattr(self, key)}; 0 = none)")
        if self.trace_probes == 1:
            problems.append("hessian.trace_probes: a standard error needs >= 2 probes (0 = no trace)")
        if self.train_size is not None and self.train_size < 1:
            problems.append(f"hessian.train_size: must be >= 1 or null for the whole training set (got {self.train_size})")
        if self.point is not None and len(self.point) not in (1, 2):
            problems.append(f"hessian.point: give [a] or [a, b] (got {self.point})")
        if self.k > self.max_iter:
            problems.append(f"hessian.k={self.k} needs hessian.max_iter >= k (got {self.max_iter})")
        return problems
