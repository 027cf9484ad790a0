"""Progressive (coarse-to-fine) scans: same values as a raster scan, a coarse picture early, resume and shards."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Iterator

import h5py
import numpy as np
import pytest

import effrep_hpc.runners.landscape as landscape_runner
from effrep_hpc.config import Config, load_config
from effrep_hpc.dist.array import ArrayBackend
from effrep_hpc.dist.serial import SerialBackend
from effrep_hpc.landscape.grid import grid_points, level_points, make_axis, progressive_order, progressive_rank
from effrep_hpc.runners.landscape import run_landscape, scan_tiles
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.h5 import check_integrity, open_readonly
from effrep_hpc.store.shards import shard_path
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter, merge_shards, read_surface
from tests.runners.runner_helpers import effrep, effrep_cmd, kill_when_done

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/demo/digits.yaml"
BASE = ["run.progress=false", "run.threads=1"]
CHEAP = ["landscape.train_size=32", "landscape.batch_size=32", "landscape.test=false"]
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    run_train(load_config(CONFIG, [f"run.out={out}", "train.epochs=1", "train.milestones=[1]", "dist.backend=serial", *BASE]))
    return out


def config(trained: Path, surface: Path, *extra: str) -> Config:
    return load_config(CONFIG, [f"run.out={trained}", f"landscape.surface={surface}", "dist.backend=serial", *BASE, *extra])


def args(trained: Path, surface: Path, *extra: str) -> list[str]:
    return ["landscape", str(CONFIG), f"run.out={trained}", f"landscape.surface={surface}", *BASE, *CHEAP, *extra]


@contextlib.contextmanager
def stopped_after(points: int) -> Iterator[list[dict[str, Any]]]:
    """Let tiles through until ``points`` points are computed, then interrupt (a kill between tiles); yields the calls."""
    real, calls = landscape_runner.evaluate_points, []

    def dying(*a: Any, **kw: Any) -> Any:
        if sum(len(c["point_ids"]) for c in calls) >= points:
            raise KeyboardInterrupt("stopped")
        calls.append({"coords": a[4], "point_ids": np.asarray(kw["point_ids"])})
        return real(*a, **kw)

    landscape_runner.evaluate_points = dying
    try:
        with contextlib.suppress(KeyboardInterrupt):
            yield calls
    finally:
        landscape_runner.evaluate_points = real


def assert_same_values(ref: Path, other: Path, metrics: tuple[str, ...] = ("train_loss", "train_acc")) -> None:
    a, b = read_surface(ref), read_surface(other)
    assert a["done"].all() and b["done"].all()
    for name in metrics:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("grid", [("landscape.x=-1:1:7", "landscape.y=-1:1:5"), ("landscape.x=-1:1:9", "landscape.y=null")])
def test_progressive_scan_equals_raster_scan_bitwise(trained: Path, tmp_path: Path, grid: tuple[str, str]) -> None:
    # 4 points per forward pass: a point's pass slot must not depend on the order or on its tile-mates
    common = (*grid, "landscape.train_size=32", "data.test_size=32", "landscape.batch_size=32", "landscape.points_per_pass=4")
    run_landscape(config(trained, tmp_path / "raster.h5", *common, "landscape.order=raster", "landscape.tile_size=5"))
    run_landscape(config(trained, tmp_path / "prog.h5", *common, "landscape.order=progressive"))
    assert_same_values(tmp_path / "raster.h5", tmp_path / "prog.h5", METRICS)


def test_scan_killed_after_2_percent_holds_every_8th_point(trained: Path, tmp_path: Path) -> None:
    surface = tmp_path / "s.h5"
    # 2% of 65 x 65 = 85 points; serial, so the file holds a prefix of the order when it is killed
    kill_when_done(effrep_cmd(*args(trained, surface, "landscape.x=-1:1:65", "landscape.y=-1:1:65", "dist.backend=serial")),
                   surface, 85)
    with h5py.File(surface, "r", locking=False) as f:
        done, loss = f["done"][()], f["train_loss"][()]
    assert done.sum() < done.size / 4
    assert done[::8, ::8].all(), "the 1/8-resolution picture is incomplete"
    assert np.isfinite(loss[::8, ::8]).all()


def test_resume_in_either_order_after_interruptions_is_bitwise_equal(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:9", "landscape.y=-1:1:9", *CHEAP)
    run_landscape(config(trained, tmp_path / "ref.h5", *grid, "landscape.order=raster"))
    surface = tmp_path / "s.h5"
    rng = np.random.default_rng()
    steps = [("progressive", ""), ("raster", "landscape.tile_size=4"), ("progressive", "landscape.tile_size=3")]
    for order, extra in steps:
        stop = int(rng.integers(1, 20))
        with stopped_after(stop):
            run_landscape(config(trained, surface, *grid, f"landscape.order={order}", *([extra] if extra else [])))
        with open_readonly(surface) as f:
            assert not f["done"][()].all(), f"finished before the interruption after {stop} points ({order})"
    run_landscape(config(trained, surface, *grid))
    assert_same_values(tmp_path / "ref.h5", surface)


@pytest.mark.slow  # ~1 min: four MPI launches
@pytest.mark.mpi
def test_resume_with_1_2_3_ranks_after_kills_at_random_moments_is_bitwise_equal(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:17", "landscape.y=-1:1:17")
    run_landscape(config(trained, tmp_path / "ref.h5", *grid, *CHEAP, "landscape.order=raster"))
    surface, rng, done = tmp_path / "s.h5", np.random.default_rng(), 0
    for ranks in (3, 1, 2):
        done += int(rng.integers(5, 60))
        kill_when_done(effrep_cmd(*args(trained, surface, *grid), mpi=ranks), surface, done)
        with h5py.File(surface, "r", locking=False) as f:
            done = int(f["done"][()].sum())
    effrep(*args(trained, surface, *grid), mpi=3)
    assert_same_values(tmp_path / "ref.h5", surface)


def test_array_shards_share_every_level_and_merge_to_the_raster_file(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:17", "landscape.y=-1:1:17", *CHEAP)
    run_landscape(config(trained, tmp_path / "ref.h5", *grid, "landscape.order=raster"))
    final, tasks = tmp_path / "arr.h5", 3
    shards = [shard_path(final, t, tasks) for t in range(tasks)]

    def task(t: int) -> Config:
        return load_config(CONFIG, [f"run.out={trained}", f"landscape.surface={final}", *BASE, *grid,
                                    "dist.backend=array", f"dist.task_id={t}", f"dist.num_tasks={tasks}"])

    coarse = level_points((17, 17), 3)  # every 8th point: 9
    # every task stopped after a third of the coarse points' worth of work ...
    for t in range(tasks):
        with stopped_after(-(-coarse.size // tasks)):
            run_landscape(task(t))
    partial = [read_surface(s)["done"].reshape(-1) for s in shards]
    merge_shards(shards, tmp_path / "early.h5")
    # ... and together they hold the whole 1/8-resolution picture
    assert read_surface(tmp_path / "early.h5")["done"].reshape(-1)[coarse].all()
    # requeued, every task finishes the set it started: the shards are disjoint, cover the grid, merge to the raster file
    for t in range(tasks):
        run_landscape(task(t))
    owned = [read_surface(s)["done"].reshape(-1) for s in shards]
    for before, after in zip(partial, owned):
        assert after[before].all()
    np.testing.assert_array_equal(np.sum(owned, axis=0), np.ones(17 * 17))
    merge_shards(shards, final)
    assert_same_values(tmp_path / "ref.h5", final)


def test_a_file_keeps_the_pass_slots_it_was_started_with(trained: Path, tmp_path: Path) -> None:
    grid = ("landscape.x=-1:1:5", "landscape.y=-1:1:5", *CHEAP, "landscape.points_per_pass=4")
    coords = grid_points(make_axis(-1, 1, 5), make_axis(-1, 1, 5))[1]
    order = progressive_order((5, 5))
    for old in (False, True):
        surface = tmp_path / f"s{old}.h5"
        with stopped_after(0):
            run_landscape(config(trained, surface, *grid))
        if old:  # a file of an older version: no point_slots attribute, points placed by flat index
            with h5py.File(surface, "r+") as f:
                del f.attrs["point_slots"]
        with stopped_after(25) as calls:
            run_landscape(config(trained, surface, *grid))
        assert sum(len(c["point_ids"]) for c in calls) == 25
        for c in calls:
            flat = c["point_ids"] if old else order[c["point_ids"]]
            np.testing.assert_array_equal(coords[flat], c["coords"])


def test_batched_passes_of_progressive_tiles_are_full() -> None:
    # 129 x 129 with 32 points per pass (a GPU): a point sits in slot (progressive rank) % 32. By flat index,
    # the every-8th points would share 4 of the 32 slots and the whole scan would fill 45% of its slots.
    shape, k = (129, 129), 32
    cfg = load_config(CONFIG, []).landscape
    rank = progressive_rank(shape)
    for backend in (SerialBackend(), ArrayBackend(task_id=1, num_tasks=3)):
        tiles = scan_tiles(cfg, backend, shape, k)
        passes = sum(int(np.bincount(rank[t] % k, minlength=k).max()) for t in tiles)
        assert sum(t.size for t in tiles) / (passes * k) > 0.95


@pytest.mark.parametrize("order", ["progressive", "raster"])
@pytest.mark.parametrize("shape, tasks", [((17, 17), 3), ((31, 7), 4), ((100,), 7)])
def test_array_tasks_partition_the_grid(order: str, shape: tuple[int, ...], tasks: int) -> None:
    cfg = load_config(CONFIG, [f"landscape.order={order}"]).landscape
    owned = []
    for t in range(tasks):
        backend = ArrayBackend(task_id=t, num_tasks=tasks)
        items = scan_tiles(cfg, backend, shape)
        owned.extend(items[i] for i in backend.owned(len(items)))
    np.testing.assert_array_equal(np.sort(np.concatenate(owned)), np.arange(int(np.prod(shape))))


@pytest.mark.parametrize("tasks", [1, 3, 8])
def test_array_tasks_own_fixed_shares_of_every_level(tasks: int) -> None:
    shape = (65, 65)
    cfg = load_config(CONFIG, []).landscape
    owned = []
    for t in range(tasks):
        backend = ArrayBackend(task_id=t, num_tasks=tasks)
        items = scan_tiles(cfg, backend, shape)
        owned.append(np.concatenate([items[i] for i in backend.owned(len(items))]))
    np.testing.assert_array_equal(np.sort(np.concatenate(owned)), np.arange(65 * 65))
    for level in range(6):
        points = level_points(shape, level)
        for mine in owned:
            assert np.isin(mine, points).any(), f"a task owns no point of level {level}"
    for mine in owned:  # each task's own order is coarse to fine
        ranks = progressive_rank(shape)[mine]
        assert (np.diff(ranks) > 0).all()


def test_scattered_tile_writes_exactly_its_points(tmp_path: Path) -> None:
    spec = SurfaceSpec(x=make_axis(-1, 1, 33), y=make_axis(-1, 1, 17), metrics=["train_loss", "train_acc"])
    flat = np.random.default_rng(0).choice(33 * 17, 64, replace=False)
    values = {"train_loss": np.arange(64.0), "train_acc": -np.arange(64.0)}
    with SurfaceWriter(tmp_path / "s.h5", spec) as w:
        w.write(flat, values)
    with open_readonly(tmp_path / "s.h5") as f:
        done, loss, acc = f["done"][()].reshape(-1), f["train_loss"][()].reshape(-1), f["train_acc"][()].reshape(-1)
        assert check_integrity(f).ok
    np.testing.assert_array_equal(np.flatnonzero(done), np.sort(flat))
    np.testing.assert_array_equal(loss[flat], values["train_loss"])
    np.testing.assert_array_equal(acc[flat], values["train_acc"])
    assert np.isnan(loss[~done]).all()
