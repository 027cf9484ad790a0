"""Issue 11 items 4, 5 and 7 (status part): damage on disk is found on resume, `effrep repair` clears exactly
the damaged points, a failed merge leaves no file, and non-finite points are counted.

The landscape checks run the real runner through the CLI (`effrep train`, `effrep landscape`, `effrep
repair`, `effrep status`) on a tiny digits model: an uninterrupted scan is the reference, a copy of it is
damaged on disk, and after the repair the resume must recompute exactly the damaged points and end
bitwise equal (values, done mask, checksums) to the reference.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from effrep_hpc.cli import main
from effrep_hpc.errors import UserError
from effrep_hpc.launch.status import surface_status
from effrep_hpc.store.h5 import CHECKSUM, DamagedFileError, index_ranges, open_readonly
from effrep_hpc.store.sensitivity import SensitivitySpec, SensitivityWriter, repair_sensitivity
from effrep_hpc.store.shards import shard_path
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter, merge_shards, repair_surface

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/demo/digits.yaml")
SCAN = ["landscape.x=-1:1:6", "landscape.y=-1:1:5", "landscape.train_size=64", "run.progress=false", "dist.backend=serial"]
DATASETS = ("train_loss", "train_acc", "done", CHECKSUM)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A trained tiny model in W and the uninterrupted reference scan W/ref.h5."""
    work = tmp_path_factory.mktemp("w")
    assert main(["train", CONFIG, f"run.out={work}", "train.epochs=1", "train.milestones=[1]", "run.progress=false"]) == 0
    assert main(["landscape", CONFIG, f"run.out={work}", f"landscape.surface={work / 'ref.h5'}", *SCAN]) == 0
    return work


def landscape(work: Path, surface: Path) -> list[str]:
    return ["landscape", CONFIG, f"run.out={work}", f"landscape.surface={surface}", *SCAN]


def overwrite(path: Path, name: str, flat: list[int], value: float) -> None:
    with h5py.File(path, "r+") as f:
        data = f[name][()]
        data.reshape(-1)[flat] = value
        f[name][...] = data


def test_index_ranges_are_compact() -> None:
    assert index_ranges(np.array([40, 12, 13, 14, 15])) == "12-15, 40"
    assert index_ranges(np.arange(0, 40, 2), limit=3) == "0, 2, 4 and 17 more"


def test_a_damaged_tile_is_refused_and_repair_recomputes_exactly_it(scanned: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ref, surface = scanned / "ref.h5", scanned / "damaged.h5"
    shutil.copyfile(ref, surface)
    overwrite(surface, "train_loss", [7, 8, 9], 0.125)  # a finished tile overwritten ...
    overwrite(surface, "train_acc", [20], np.nan)  # ... and one more point
    before = surface.read_bytes()
    capsys.readouterr()

    # the resume, as a user runs it: exit 2, one line naming the points and offering the repair, file untouched
    proc = subprocess.run([sys.executable, "-m", "effrep_hpc.cli", *landscape(scanned, surface)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert "points 7-9, 20" in err[0] and f"effrep repair {surface}" in err[0]
    assert surface.read_bytes() == before

    # status says damaged, not complete
    assert main(["status", str(surface), "--json"]) == 0
    (st,) = json.loads(capsys.readouterr().out)
    assert (st["done"], st["damaged"], st["complete"]) == (30, 4, False) and "repair" in st["damage"]
    assert main(["status", str(surface)]) == 0
    assert "DAMAGED" in capsys.readouterr().out

    assert main(["repair", str(surface)]) == 0
    out = capsys.readouterr().out
    assert "cleared 4 of 30 points" in out and "points 7-9, 20" in out
    assert main(["repair", str(surface)]) == 0
    assert "nothing to repair" in capsys.readouterr().out

    assert main(landscape(scanned, surface)) == 0
    assert "computed 4 point(s)" in capsys.readouterr().out
    with open_readonly(ref) as a, open_readonly(surface) as b:
        for name in DATASETS:
            assert a[name][()].tobytes() == b[name][()].tobytes(), name
    assert surface_status(surface).complete


def test_damaged_directions_are_refused_and_cannot_be_repaired(scanned: Path, capsys: pytest.CaptureFixture[str]) -> None:
    surface = scanned / "dirs.h5"
    shutil.copyfile(scanned / "ref.h5", surface)
    with h5py.File(surface, "r+") as f:
        ds = f["directions/x"][sorted(f["directions/x"])[0]]
        data = ds[()]
        data.reshape(-1)[:3] = 1e6  # garbage in the stored directions
        ds[...] = data
    before = surface.read_bytes()
    capsys.readouterr()
    assert main(landscape(scanned, surface)) == 2
    err = capsys.readouterr().err
    assert "stored directions" in err and "--overwrite" in err and err.count("\n") == 1
    assert main(["repair", str(surface)]) == 2
    assert "cannot be resumed or repaired" in capsys.readouterr().err
    assert surface.read_bytes() == before
    st = surface_status(surface)
    assert not st.complete and "directions damaged" in st.damage


def sspec(nx: int = 5, ny: int = 4, model_hash: str = "m") -> SurfaceSpec:
    return SurfaceSpec(x=np.linspace(-1, 1, nx), y=np.linspace(-1, 1, ny), metrics=["train_loss", "train_acc"],
                       model_hash=model_hash, directions_hash="d",
                       directions={"x": {"w": np.arange(6.0).reshape(2, 3)}, "y": {"w": np.ones((2, 3))}})


def write_all(path: Path, spec: SurfaceSpec, points: np.ndarray, **kw) -> None:
    with SurfaceWriter(path, spec, **kw) as w:
        w.write(points, {"train_loss": points * 0.5, "train_acc": points * 1.0})


def test_old_files_without_checksums_still_resume(tmp_path: Path) -> None:
    path = tmp_path / "old.h5"
    write_all(path, sspec(), np.arange(6))
    with h5py.File(path, "r+") as f:  # as an earlier effrep wrote it
        del f["integrity"]
        del f.attrs["directions_sha256"]
    with SurfaceWriter(path, sspec()) as w:
        assert w.resumed and not w.checksums
        w.write(np.array([6, 7]), {"train_loss": np.ones(2), "train_acc": np.ones(2)})
    assert "no checksums" in surface_status(path).note
    with pytest.raises(UserError, match="no checksums"):
        repair_surface(path)


def test_a_merge_that_fails_leaves_no_file_and_keeps_an_existing_output(tmp_path: Path) -> None:
    final = tmp_path / "s.h5"
    shards = [shard_path(final, t, 2) for t in range(2)]
    write_all(shards[0], sspec(), np.arange(0, 10), extra_attrs={"shard_task": 0, "shard_count": 2})
    write_all(shards[1], sspec(), np.arange(10, 20), extra_attrs={"shard_task": 1, "shard_count": 2})
    other = tmp_path / "other.shard-1-of-2.h5"
    write_all(other, sspec(model_hash="another model"), np.arange(10, 20))

    with pytest.raises(ValueError, match="does not belong"):
        merge_shards([shards[0], other], final)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["other.shard-1-of-2.h5", *(s.name for s in shards)])

    merge_shards(shards[:1], final)  # a first, partial merge
    before = final.read_bytes()
    with pytest.raises(ValueError, match="does not belong"):
        merge_shards([shards[1], other], final)
    assert final.read_bytes() == before
    overwrite(shards[1], "train_loss", [12], 3.0)  # damage in a shard is refused by name
    with pytest.raises(DamagedFileError, match=rf"{shards[1].name} is damaged: points 12 "):
        merge_shards(shards[1:], final)
    assert final.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or p.name.endswith(".lock")]

    repair_surface(shards[1])
    write_all(shards[1], sspec(), np.array([12]))
    _, done, total = merge_shards(shards[1:], final)  # completes the existing output
    assert (done, total) == (20, 20)
    with open_readonly(final) as f:
        np.testing.assert_array_equal(f["train_loss"][()].reshape(-1), np.arange(20) * 0.5)


def test_sensitivity_cells_are_checked_and_repaired(tmp_path: Path) -> None:
    spec = SensitivitySpec(
        layers=["a", "b"], ratios=np.array([0.25, 0.5]), criteria=["l1"], layer_ids=[1, 2], widths=[4, 4],
        kept=np.array([[3, 2], [3, 2]]), flops_fraction=np.full((2, 2), 0.9), filter_l1=np.ones((2, 4)),
    )
    path = tmp_path / "sens.h5"
    with SensitivityWriter(path, spec) as w:
        for k in range(4):
            w.write(k, 90.0 - k, 0.1 * k)
    overwrite(path, "acc", [2], 12.0)
    with pytest.raises(DamagedFileError, match="cells 2 "):
        SensitivityWriter(path, spec)
    cleared, total = repair_sensitivity(path)
    assert cleared.tolist() == [2] and total == 4
    with SensitivityWriter(path, spec) as w:
        assert w.pending().tolist() == [2]


def test_nonfinite_points_are_counted_by_the_writer_and_status(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "nan.h5"
    with SurfaceWriter(path, sspec()) as w:
        w.write(np.arange(4), {"train_loss": np.array([1.0, np.nan, np.inf, 2.0]), "train_acc": np.array([1.0, 1.0, 1.0, np.nan])})
        assert w.nonfinite_count() == 3
    assert w.nonfinite_count() == 3  # after close too (the runner's tail)
    with SurfaceWriter(path, sspec()) as w:  # NaN and inf as computed pass their checksums
        assert w.resumed
    assert surface_status(path).nonfinite == 3
    assert main(["status", str(path)]) == 0
    assert "3 non-finite" in capsys.readouterr().out
