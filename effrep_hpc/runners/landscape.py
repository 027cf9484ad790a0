"""`effrep landscape`: checkpoint + directions -> tiles of grid points shared by dist/ -> surface file.

The writer (rank 0, or each array task for its own shard) opens or resumes the surface file and says
which points are pending; every rank evaluates tiles of them (rank 0 too); finished tiles go to the
writer, which writes and flushes each one. A killed job loses at most its tiles in flight, and running
the same command again, with any number of ranks, computes only what is missing.

Tiles go out coarse to fine (``landscape.order=progressive``, docs/surface-format.md "Point order"): after
about 1/64 of the points the file holds every 8th point in x and y, a complete 1/8-resolution picture.
A point's values do not depend on the order or on which points share its tile (its pass slot is fixed by
its rank in progressive order, ``point_slots``), so a scan may be resumed in either order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from effrep_hpc.config import Config, Scope, to_yaml
from effrep_hpc.config.landscape import LandscapeConfig
from effrep_hpc.dist.env import local_rank
from effrep_hpc.landscape import directions as D
from effrep_hpc.landscape.evaluate import EvalData, bn_statistics, evaluate_points, plan_points_per_pass, prepare_layout, subset
from effrep_hpc.landscape.grid import grid_points, make_tiles, parse_axis, progressive_rank, progressive_tiles
from effrep_hpc.runners.common import dataset_from_config, load_model, resolve_path, setup_runtime
from effrep_hpc.runners.driver import Job, backend_for, open_output, run_job, setup_guard
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter

MAX_AUTO_TILE = 64


@dataclass
class Directions:
    """The x (and y) directions of a scan, and what to record about where they came from."""

    x: dict[str, torch.Tensor]
    y: Optional[dict[str, torch.Tensor]]
    attrs: dict[str, Any] = field(default_factory=dict)


def build_directions(cfg: Config, model: torch.nn.Module, device: torch.device) -> Directions:
    """The directions the config asks for: a direction file, a target model, a plane, or random."""
    L = cfg.landscape
    if L.directions:
        from effrep_hpc.store.directions import load_directions

        x, y = load_directions(L.directions, *D.direction_layout(model))
        if L.y is None:
            y = None
        elif y is None:
            raise ValueError(f"{L.directions} holds only an x direction; set landscape.y=null for a 1D scan")
        return Directions(x, y, {"directions_source": str(L.directions)})
    if L.target:
        other = load_model(Path(L.target), cfg, device, "landscape.target")
        return Directions(D.target_direction(model, other, buffers=True), None, {"directions_source": f"target {L.target}"})
    if L.plane:
        m2 = load_model(Path(L.plane[0]), cfg, device, "landscape.plane")
        m3 = load_model(Path(L.plane[1]), cfg, device, "landscape.plane")
        x, y, coords = D.plane_directions(model, m2, m3, buffers=True)
        return Directions(x, y, {"directions_source": f"plane {L.plane}", "plane_coords": coords})
    x = D.random_direction(model, L.xseed, L.norm, L.bias_bn)
    if L.y is None:
        return Directions(x, None, {"directions_source": "random", "norm": L.norm, "bias_bn": L.bias_bn})
    y = D.same_direction(x) if L.same_dir else D.random_direction(model, L.yseed, L.norm, L.bias_bn)
    return Directions(x, y, {"directions_source": "random", "norm": L.norm, "bias_bn": L.bias_bn})


def eval_data(cfg: Config, dataset: Any) -> EvalData:
    """The in-memory data each grid point is evaluated on (a seeded train subset if asked)."""
    L = cfg.landscape
    x_train, y_train = dataset.x_train, dataset.y_train
    if L.train_size is not None:
        x_train, y_train = subset(x_train, y_train, L.train_size, cfg.data.seed)
    return EvalData(x_train, y_train, *((dataset.x_test, dataset.y_test) if L.test else ()))


def auto_tile(pending: int, ranks: int, k: int) -> int:
    """Tiles big enough that a message is negligible, small enough for 8 tiles per rank (load balance)."""
    tile = max(1, min(MAX_AUTO_TILE, -(-pending // (8 * ranks))))
    # A multiple of the points per pass fills every batched pass.
    return max(k, -(-tile // k) * k) if k > 1 else tile


def scan_tiles(L: LandscapeConfig, backend: Any, shape: tuple[int, ...], k: int = 1) -> list[np.ndarray]:
    """Every tile of the grid (flat indices) in the order the job lists them, for ``landscape.order``.

    Tiles are cut over the whole grid, not over what is pending, so an array task owns the same points
    after a requeue. ``progressive``: coarse levels first, in tiles small enough to be shared by every
    worker (see grid.progressive_tiles); an array task owns block ``r`` of the item list (dist.array), so
    the tiles are dealt round-robin first: task ``r`` owns tiles ``r, r + N, r + 2N, ...`` of the
    progressive order, a share of every level, so each task's shard adds to the early coarse picture.
    """
    num_points = int(np.prod(shape))
    array = backend.kind == "array"
    # Every array task must cut the same tiles, so the size comes from the largest share, not the task's own
    # (blocks of points differ by one, and different cuts would leave points that no task owns).
    tile = L.tile_size or (auto_tile(-(-num_points // backend.size), 1, k) if array else auto_tile(num_points, backend.size, k))
    if L.order == "raster":
        return make_tiles(np.arange(num_points), tile)
    tiles = progressive_tiles(shape, tile, backend.size, k)
    if not array:
        return tiles
    # tiles[r::N] has as many tiles as dist.array's block r of len(tiles) items (the first len % N one more)
    return [t for r in range(backend.size) for t in tiles[r :: backend.size]]


# What `point_slots` in a surface file says: a point sits in slot (rank in progressive order) % K of a batched
# pass, whatever order it is computed in. Consecutive points of the progressive order then fill every slot
# (flat indices would not: on a 129 x 129 grid the every-8th points occupy 4 of 32 slots). Files without the
# attribute (older versions) place points by flat index, and are resumed that way.
POINT_SLOTS = "progressive"


# Every result-marked key of these sections decides what a surface holds (checkpoint and directions: by hash).
SCOPE = Scope("landscape", ("data", "landscape"))


@dataclass
class Scan:
    """A scan's model at its centre, its directions and grid: what a loss scan and a curvature map share."""

    model: torch.nn.Module
    w0: dict[str, torch.Tensor]
    dirs: Directions
    dataset: Any
    spec: SurfaceSpec
    coords: np.ndarray  # (points, 1 or 2) coordinates in the grid's flat order
    # evaluate_points' point_ids by flat index (a point's pass slot is its id % K); run_scan sets them from the file
    point_ids: Optional[np.ndarray] = None

    def slot_ids(self, idx: np.ndarray) -> np.ndarray:
        """The ``point_ids`` to pass to evaluate_points for the points ``idx`` (flat indices until run_scan has set them)."""
        return idx if self.point_ids is None else self.point_ids[idx]


def setup_scan(cfg: Config, metrics: list[str]) -> Scan:
    """Load the checkpoint and data, build the directions and the surface spec with ``metrics`` (inside setup_guard)."""
    L = cfg.landscape
    device = setup_runtime(cfg.run, local_rank())
    x_axis, y_axis = parse_axis(L.x), parse_axis(L.y) if L.y is not None else None
    dataset = dataset_from_config(cfg, device)
    checkpoint = resolve_path(L.checkpoint, cfg.run.out, "checkpoint.pt")
    model = load_model(checkpoint, cfg, device, "landscape.checkpoint", dataset.num_classes)
    dirs = build_directions(cfg, model, device)
    spec = SurfaceSpec(
        x=x_axis, y=y_axis, metrics=metrics, config_yaml=to_yaml(cfg),
        model_hash=D.weights_hash(model),  # BN running statistics shape the surface too
        directions_hash=D.direction_hash([dirs.x, dirs.y]),  # BN statistics moved along them included
        attrs={**dirs.attrs, "bn_statistics": bn_statistics(model, L.bn, [dirs.x, dirs.y])},
        directions={a: {k: v.detach().cpu().numpy() for k, v in d.items()} for a, d in (("x", dirs.x), ("y", dirs.y)) if d},
    )
    w0 = {n: p.detach().clone() for n, p in model.named_parameters()}
    return Scan(model, w0, dirs, dataset, spec, grid_points(x_axis, y_axis)[1])


def run_scan(
    cfg: Config, backend: Any, scan: Scan, path: Path, scope: Scope, compute: Any, k: int = 1, *, overwrite: bool
) -> Optional[Path]:
    """Hand tiles of the grid's pending points to ``compute(flat indices) -> {metric: values}`` and write them to ``path``."""
    output = open_output(
        backend, path,
        lambda p, attrs: SurfaceWriter(
            p, scan.spec, overwrite=overwrite, extra_attrs={**attrs, "point_slots": POINT_SLOTS}, scope=scope
        ),
    )
    slots = backend.broadcast(output.writer.point_slots() if output.writer is not None else None)
    scan.point_ids = progressive_rank(scan.spec.shape) if slots == POINT_SLOTS else np.arange(scan.spec.num_points)
    pending = np.zeros(scan.spec.num_points, bool)
    pending[output.pending] = True
    job = Job(
        "surface", "point", scan_tiles(cfg.landscape, backend, scan.spec.shape, k), compute,
        write=lambda idx, values: output.writer.write(idx, values),  # type: ignore[union-attr]
        todo=lambda idx: idx[pending[idx]] if pending[idx].any() else None, count=len,
        tail=lambda: f"; {n} non-finite point(s) (NaN/inf, as computed)" if (n := output.writer.nonfinite_count()) else "",  # type: ignore[union-attr]
    )
    return run_job(backend, job, output, show_progress=cfg.run.progress)


def run_landscape(cfg: Config, *, overwrite: bool = False) -> Optional[Path]:
    """Compute (or finish) the surface of ``cfg``; return its path on the writer, None elsewhere."""
    surface = resolve_path(cfg.landscape.surface, cfg.run.out, "surface.h5")
    return scan_losses(cfg, backend_for(cfg), surface, SCOPE, overwrite=overwrite)


def scan_losses(
    cfg: Config, backend: Any, path: Path, scope: Scope, *, overwrite: bool, adjust: Optional[Callable[[Scan], None]] = None
) -> Optional[Path]:
    """The loss (and accuracy) scan of ``cfg``'s landscape section into ``path``; ``adjust`` may add to the scan's spec."""
    L = cfg.landscape
    with setup_guard(backend):  # every rank's setup has worked before any rank waits for another
        scan = setup_scan(cfg, ["train_loss", "train_acc"] + (["test_loss", "test_acc"] if L.test else []))
        if adjust is not None:
            adjust(scan)
        data = prepare_layout(scan.model, eval_data(cfg, scan.dataset))  # once per scan, not per tile
        k = plan_points_per_pass(
            scan.model, data, bn=L.bn, loss=L.loss, batch_size=L.batch_size, points_per_pass=L.points_per_pass or "auto"
        )

    def compute(idx: np.ndarray) -> dict[str, np.ndarray]:
        return evaluate_points(
            scan.model, scan.w0, scan.dirs.x, scan.dirs.y, scan.coords[idx], data, loss=L.loss, bn=L.bn,
            batch_size=L.batch_size, points_per_pass=k, bn_batches=L.bn_batches, point_ids=scan.slot_ids(idx),
        )

    return run_scan(cfg, backend, scan, path, scope, compute, k, overwrite=overwrite)
