"""`effrep status FILE --preview IMAGE` on a scan that is still running: it draws the finest complete level, says
which, and the writer goes on undisturbed to a correct file."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import matplotlib.image as mpimg
import numpy as np
import pytest

from analysis.preview import partial_view
from effrep_hpc.cli import main
from effrep_hpc.launch.status import preview_surface
from effrep_hpc.store.h5 import check_integrity, open_readonly
from effrep_hpc.store.shards import shard_path
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter
from tests.runners.runner_helpers import ROOT, effrep, effrep_cmd

CONFIG = ROOT / "configs/demo/digits.yaml"
LINE = re.compile(
    r"^preview: (?:(?P<nothing>nothing to draw yet)|(?P<image>\S+) \(train_loss; (?:level (?P<level>\d+): |(?P<none>no complete level)))"
)

# A stand-in for a scan's single writer: the real SurfaceWriter writes tiles coarse to fine (level by level,
# raster order within a level, as docs define the progressive order), values f(x, y); it stops after every
# point of level >= 2 until the file `go` appears, then writes the rest with short pauses.
WRITER = r"""
import sys, time
from pathlib import Path
import numpy as np
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter

path, go, n = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
x, y = np.linspace(-1, 1, n), np.linspace(-0.5, 1.5, n)
top = max(0, int(np.floor(np.log2((n - 1) / 2))))
axis = np.zeros(n, int)
for level in range(1, top + 1):
    axis[sorted(set(range(0, n, 2**level)) | {n - 1})] = level
levels = np.minimum.outer(axis, axis).ravel()
order = np.lexsort((np.arange(n * n), -levels))
spec = SurfaceSpec(x=x, y=y, metrics=["train_loss", "train_acc"], model_hash="m", directions_hash="d")
with SurfaceWriter(path, spec) as w:
    for start in range(0, n * n, 16):
        tile = order[start:start + 16]
        if levels[tile].max() < 2 and not go.exists():
            while not go.exists():
                time.sleep(0.01)
        j, i = np.divmod(tile, n)
        w.write(tile, {"train_loss": 1 + x[i] ** 2 + 2 * y[j] ** 2, "train_acc": 50 + 10 * x[i] * y[j]})
        time.sleep(0.02)
"""


def finest_level(path: Path) -> float:
    """The finest complete level of the file now (inf when none), by the definition, independently of analysis."""
    with h5py.File(path, "r", locking=False) as f:
        done = f["done"][()]
    n = done.shape[0]
    top = max(0, int(np.floor(np.log2((n - 1) / 2))))
    for level in range(top + 1):
        idx = sorted(set(range(0, n, 2**level)) | {n - 1})
        if done[np.ix_(idx, idx)].all():
            return level
    return float("inf")


def preview(path: Path, image: Path, capsys: pytest.CaptureFixture[str]) -> tuple[float, float, float, str]:
    """(finest level before, level printed, finest level after, the printed line) of one `effrep status --preview`."""
    before = finest_level(path)
    assert main(["status", str(path), "--preview", str(image)]) == 0
    after = finest_level(path)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("preview:")]
    assert len(lines) == 1, lines
    m = LINE.match(lines[0])
    assert m is not None, lines[0]
    assert m["nothing"] or Path(m["image"]) == image
    printed = int(m["level"]) if m["level"] else float("inf")
    return before, printed, after, lines[0]


def assert_image(image: Path) -> None:
    rgb = mpimg.imread(str(image))
    assert rgb.ndim == 3 and rgb.shape[0] > 100 and rgb.shape[1] > 100
    assert float(np.ptp(rgb[..., :3])) > 0.5  # drawn, not blank


def test_preview_of_a_file_being_written(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    n = 33  # 1089 points; level 2 = every 4th point, 9 x 9 = 81 (levels 3 and 4 among them)
    path, go, image = tmp_path / "live.h5", tmp_path / "go", tmp_path / "preview.png"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(go), str(n)], cwd=ROOT, env=env,
                              stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (path.exists() and finest_level(path) == 2):
            assert writer.poll() is None, writer.stderr.read() if writer.stderr else ""
            time.sleep(0.02)
        # The writer holds the file open and waits: level 2 (1/4 resolution) is complete, nothing finer.
        before, printed, after, line = preview(path, image, capsys)
        assert (before, printed, after) == (2, 2, 2)
        with h5py.File(path, "r", locking=False) as f:
            done = int(f["done"][()].sum())
        assert done >= 81 and done < n * n
        assert line.endswith(f"level 2: 1/4 resolution (9 x 9); {100 * done / n**2:.1f}% of {n * n} points computed)")
        assert_image(image)
        # Now while it writes: whatever level is printed was complete when drawn, and no finer one was complete before.
        go.touch()
        seen = []
        while writer.poll() is None:
            image.unlink(missing_ok=True)
            before, printed, after, _ = preview(path, image, capsys)
            assert after <= printed <= before
            assert_image(image)
            seen.append(printed)
    finally:
        if writer.poll() is None:
            writer.kill()
        writer.wait()
    assert writer.returncode == 0, writer.stderr.read() if writer.stderr else ""
    assert seen, "the writer finished before a preview could run alongside it"
    # The writer was not disturbed: every point done with the values it wrote, checksums intact.
    with open_readonly(path) as f:
        assert f["done"][()].all()
        x, y = f["xcoordinates"][()], f["ycoordinates"][()]
        X, Y = np.meshgrid(x, y)
        np.testing.assert_array_equal(f["train_loss"][()], 1 + X**2 + 2 * Y**2)
        np.testing.assert_array_equal(f["train_acc"][()], 50 + 10 * X * Y)
        assert check_integrity(f).ok
    before, printed, after, line = preview(path, image, capsys)
    assert printed == 0 and line.endswith(f"level 0: full resolution ({n} x {n}); complete)")


def test_preview_unites_the_shards_of_an_array_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # Two array tasks share level 2 (every 4th point of 17): task 1 has the corner (0, 0), task 0 the rest.
    # No merged file yet.
    n = 17
    x, y = np.linspace(-1, 1, n), np.linspace(-1, 1, n)
    spec = SurfaceSpec(x=x, y=y, metrics=["train_loss"], model_hash="m", directions_hash="d")
    idx = range(0, n, 4)
    level2 = np.array([j * n + i for j in idx for i in idx])
    final = tmp_path / "arr.h5"
    for task in range(2):
        with SurfaceWriter(shard_path(final, task, 2), spec, extra_attrs={"shard_task": task, "shard_count": 2}) as w:
            mine = level2[:1] if task else level2[1:]
            w.write(mine, {"train_loss": 1.0 + mine / 100.0})
    image = tmp_path / "arr.png"
    assert main(["status", str(final), "--preview", str(image)]) == 0
    out = capsys.readouterr().out
    assert f"preview: {image} (train_loss; level 2: 1/4 resolution (5 x 5); {100 * 25 / n**2:.1f}% of {n * n} points" in out
    assert_image(image)
    view = partial_view(preview_surface(final), "level")
    np.testing.assert_array_equal(view.metrics["train_loss"], (1.0 + level2 / 100.0).reshape(5, 5))
    # Task 0 alone misses the corner, which every level holds: its own shard draws the computed points only.
    assert main(["status", str(shard_path(final, 0, 2)), "--preview", str(image)]) == 0
    assert "no complete level" in capsys.readouterr().out


def test_analysis_levels_are_the_schedulers_levels() -> None:
    # analysis keeps its own copy of the level rule (it never imports effrep_hpc): it must not drift.
    from analysis import preview
    from effrep_hpc.landscape import grid

    rng = np.random.default_rng(0)
    shapes = [(65, 65), (25, 65), (51,), (2, 7), (3, 3), (1, 9), (129, 17), (33,)]
    shapes += [tuple(int(v) for v in rng.integers(1, 40, size=int(rng.integers(1, 3)))) for _ in range(30)]
    for shape in shapes:
        np.testing.assert_array_equal(preview.point_levels(shape).reshape(-1), grid.point_levels(shape), err_msg=str(shape))
        done = rng.random(shape) < rng.random()
        done |= preview.point_levels(shape) >= int(rng.integers(0, preview.grid_coarsest_level(shape) + 1))
        assert preview.finest_complete_level(done) == grid.finest_complete_level(done), shape


def test_preview_needs_one_surface_and_an_image_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path), "--preview", str(tmp_path / "p.png")]) == 2
    assert "give exactly one surface file" in capsys.readouterr().err
    assert main(["status", str(tmp_path / "s.h5"), "--preview", str(tmp_path / "p.txt")]) == 2
    assert "ending in .png, .pdf, .svg" in capsys.readouterr().err
    # A scan that has not written a tile yet: said so, exit 0 (nothing is wrong), no image.
    spec = SurfaceSpec(x=np.linspace(-1, 1, 9), y=np.linspace(-1, 1, 9), metrics=["train_loss"])
    with SurfaceWriter(tmp_path / "new.h5", spec):
        pass  # (a writer in this same process would clash with the reader's HDF5 open flags; it is a file now)
    assert main(["status", str(tmp_path / "new.h5"), "--preview", str(tmp_path / "p.png")]) == 0
    assert f"preview: nothing to draw yet (0 of 81 points computed, no finite train_loss); {tmp_path / 'p.png'} not written" \
        in capsys.readouterr().out
    assert not (tmp_path / "p.png").exists()
    # --partial level asks for a level: none is complete, so one line and exit 2
    assert main(["status", str(tmp_path / "new.h5"), "--preview", str(tmp_path / "p.png"), "--partial", "level"]) == 2
    assert "no level of the grid is complete yet (0 of 81 points computed" in capsys.readouterr().err


def _progressive_order_available() -> bool:
    from effrep_hpc.config import load_config

    try:
        load_config(CONFIG, ["landscape.order=progressive"])
    except Exception:  # noqa: BLE001 - an unknown key: the scan has only the raster order
        return False
    return True


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    effrep("train", str(CONFIG), f"run.out={out}", "train.epochs=1", "train.milestones=[1]", "run.progress=false")
    return out


# slow (~40 s on 2 cores: training, a 2-rank scan and its serial reference); the test above covers the reading
# of a live file in the default run.
@pytest.mark.slow
@pytest.mark.mpi
def test_status_preview_on_a_running_two_rank_scan(trained: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    progressive = _progressive_order_available()
    grid = ["landscape.x=-1:1:17", "landscape.y=-1:1:17", "landscape.tile_size=2", "landscape.train_size=256",
            "landscape.batch_size=256", "landscape.test=false", "run.progress=false", "run.threads=1"]
    grid += ["landscape.order=progressive"] if progressive else []
    surface, image = tmp_path / "running.h5", tmp_path / "running.png"
    args = ["landscape", str(CONFIG), f"run.out={trained}", *grid]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    scan = subprocess.Popen(effrep_cmd(*args, f"landscape.surface={surface}", mpi=2), cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    results = []
    try:
        deadline = time.time() + 300
        while scan.poll() is None and time.time() < deadline:
            if not surface.exists():
                time.sleep(0.05)
                continue
            with h5py.File(surface, "r", locking=False) as f:
                partial = not f["done"][()].all()
            image.unlink(missing_ok=True)
            before, printed, after, line = preview(surface, image, capsys)
            # the level drawn was complete then, and none finer was complete before the call
            assert after <= printed <= before, line
            if "nothing to draw yet" not in line:
                assert_image(image)
            results.append((partial, printed))
    finally:
        if scan.poll() is None:
            scan.kill()
        scan.wait()
    assert scan.returncode == 0, scan.stderr.read() if scan.stderr else ""
    assert any(partial for partial, _ in results), "no preview ran while the scan was partial"
    if progressive:
        # coarse to fine: a partial file soon holds a complete level, and the preview draws it
        assert any(partial and level < float("inf") for partial, level in results), results
    # The scan was not disturbed: complete, checksums intact, bitwise equal to a serial scan of the same grid.
    with open_readonly(surface) as f:
        assert f["done"][()].all() and check_integrity(f).ok
        ours = f["train_loss"][()]
    reference = tmp_path / "serial.h5"
    effrep(*args, f"landscape.surface={reference}", "dist.backend=serial")
    with open_readonly(reference) as f:
        np.testing.assert_array_equal(ours, f["train_loss"][()])
