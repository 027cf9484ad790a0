"""`trajectory:` the plane of a training run's path (PCA of its snapshots) and the path drawn on that plane's scan.

The reference weights (the scan's centre, the point (0, 0)) are ``landscape.checkpoint``, by default the
run's final checkpoint; which parameters the PCA covers is ``landscape.bias_bn`` (``ignore``: weights
only, as the paper); the grid's point counts are ``landscape.x`` and ``landscape.y``'s, their bounds
the path's extent plus ``trajectory.margin`` unless ``trajectory.range=given``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from effrep_hpc.config.base import result


@dataclass
class TrajectoryConfig:
    """Where the snapshots are, how the PCA plane is found, and where the scan with the path goes."""

    snapshots: Optional[str] = None  # folder of epoch_XXXX.pt (train.keep_every); default: <run.out>/weights
    every: int = result(1)  # use every k-th kept snapshot (the last one always)
    directions: Optional[str] = result(None)  # import x/y directions (ours, or the original code's PCA file) instead
    center: bool = result(True)  # PCA about the snapshots' mean (as the paper and sklearn); false: about the reference
    method: Literal["auto", "svd", "gram"] = result("auto")  # gram: N x N Gram matrix, for many large snapshots
    max_mb: int = 512  # memory for the difference matrix (MiB); above it the Gram method reads the snapshots in blocks
    range: Literal["auto", "given"] = result("auto")  # auto: bounds from the path; given: landscape.x/y as written
    margin: float = result(0.2)  # auto range: the path's extent widened by this fraction on each side
    surface: Optional[str] = None  # the scan with the path; default: <run.out>/trajectory.h5
    direction_file: Optional[str] = None  # the PCA directions (our format); default: <run.out>/trajectory_directions.h5
    export: Optional[str] = None  # also write them in the original code's format (xdirection, explained_variance_ratio_)

    def _check(self) -> list[str]:
        problems = []
        if self.every < 1:
            problems.append(f"trajectory.every: must be >= 1 (got {self.every})")
        if not self.margin >= 0:
            problems.append(f"trajectory.margin: must be >= 0 (got {self.margin})")
        if self.max_mb < 1:
            problems.append(f"trajectory.max_mb: must be >= 1 (got {self.max_mb})")
        return problems
