"""`landscape:` a 1D or 2D loss-landscape scan around a trained checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from effrep_hpc.config.base import result


@dataclass
class LandscapeConfig:
    """A 1D or 2D loss-landscape scan around a trained checkpoint."""

    checkpoint: Optional[str] = None  # default: <run.out>/checkpoint.pt
    surface: Optional[str] = None  # default: <run.out>/surface.h5
    x: str = result("-1:1:25")  # lo:hi:num
    y: Optional[str] = result("-1:1:25")  # null for a 1D scan
    norm: Literal["filter", "layer", "weight", "dfilter", "dlayer", "none"] = result("filter")
    bias_bn: Literal["ignore", "include"] = result("ignore")
    xseed: int = result(1)
    yseed: int = result(2)
    same_dir: bool = result(False)
    target: Optional[str] = result(None)  # second checkpoint: 1D interpolation along model2 - model1
    plane: Optional[list[str]] = result(None)  # two more checkpoints: the plane through three models
    directions: Optional[str] = result(None)  # reuse directions from this file (ours or the original format)
    # BN statistics: eval = the running statistics of each point, in eval mode: with target/plane they are
    # interpolated between the models like the weights (so x=1 is the target model, statistics included),
    # along random directions they stay the centre model's; recompute = re-estimated at each point from
    # bn_batches training batches; train = batch statistics. The surface's `bn_statistics` attribute says
    # which ("interpolated", "centre model", "recomputed", "batch"; "none" without BN layers).
    bn: Literal["eval", "recompute", "train"] = result("eval")
    bn_batches: int = result(10)
    loss: Literal["ce", "mse"] = result("ce")
    train_size: Optional[int] = result(None)  # evaluate on a seeded subset of the training set
    test: bool = result(True)  # also evaluate on the test split
    batch_size: int = result(256)  # per forward pass; 256 is fastest on CPU, raise it on a GPU
    points_per_pass: int = 0  # grid points per forward pass; 0 = auto
    tile_size: int = 0  # grid points per work item; 0 = auto
    # Which points first (values do not depend on it, so a scan may be resumed in the other order):
    # progressive = coarse to fine (every 2**L-th point in x and y first, then the points halving the
    # spacing), so a partial file holds a complete coarse picture; raster = row by row.
    order: Literal["progressive", "raster"] = "progressive"

    def _check(self) -> list[str]:
        from effrep_hpc.landscape.grid import parse_axis

        problems = []
        if self.target and self.plane:
            problems.append("landscape.target and landscape.plane: choose one")
        if self.target and self.y is not None:
            problems.append("landscape.target: interpolation is 1D; set landscape.y=null")
        if self.plane is not None and len(self.plane) != 2:
            problems.append("landscape.plane: give the two other checkpoints (the centre is landscape.checkpoint)")
        if self.bn_batches < 1:
            problems.append(f"landscape.bn_batches: must be >= 1 (got {self.bn_batches})")
        if self.batch_size < 1:
            problems.append(f"landscape.batch_size: must be >= 1 (got {self.batch_size})")
        for key in ("points_per_pass", "tile_size"):
            if getattr(self, key) < 0:
                problems.append(f"landscape.{key}: must be >= 0 (0 = auto)")
        for key in ("x", "y"):
            spec = getattr(self, key)
            if spec is not None:
                try:
                    parse_axis(spec)
                except ValueError as exc:
                    problems.append(f"landscape.{key}: {exc}")
        return problems


