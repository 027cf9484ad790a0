"""`effrep status`: points and epochs done/pending read from surface shards, merged surfaces and metrics files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from effrep_hpc.cli import main
from effrep_hpc.launch.status import collect, surface_status
from effrep_hpc.store.curves import MetricsFile
from effrep_hpc.store.shards import shard_path
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter, merge_shards


def spec() -> SurfaceSpec:
    return SurfaceSpec(x=np.linspace(-1, 1, 5), y=np.linspace(-1, 1, 4), metrics=["train_loss"], model_hash="m", directions_hash="d")


def write_shard(surface: Path, task: int, count: int, points: list[int]) -> Path:
    path = shard_path(surface, task, count)
    with SurfaceWriter(path, spec(), extra_attrs={"shard_task": task, "shard_count": count}) as w:
        if points:
            w.write(np.array(points), {"train_loss": np.full(len(points), 0.5)})
    return path


def test_shards_before_the_merge_count_together(tmp_path: Path) -> None:
    surface = tmp_path / "surface.h5"
    write_shard(surface, 0, 3, [0, 1, 2, 3, 4, 5, 6])
    write_shard(surface, 1, 3, [7, 8])
    write_shard(surface, 2, 3, [])
    st = surface_status(surface)
    assert (st.total, st.done, st.pending, st.complete) == (20, 9, 11, False)
    assert [(p["task"], p["done"]) for p in st.parts] == [(0, 7), (1, 2), (2, 0)]
    assert "not merged yet" in st.note


def test_a_merged_surface_that_lags_its_shards_says_so(tmp_path: Path) -> None:
    surface = tmp_path / "surface.h5"
    shards = [write_shard(surface, i, 2, list(range(10 * i, 10 * i + 10))) for i in range(2)]
    merge_shards(shards[:1], surface)
    st = surface_status(surface)
    assert (st.done, st.pending, st.complete) == (20, 0, True)
    assert "merged file has 10/20; run `effrep merge` again to add 10 more" in st.note


def test_directory_lists_surface_and_training_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_shard(tmp_path / "surface.h5", 0, 2, [0, 1, 2])
    with MetricsFile(tmp_path / "metrics.h5", config_yaml="", fields=["epoch", "test_acc"], epochs=4, resume=False) as m:
        m.write_epoch(0, {"epoch": 1, "test_acc": 50.0})
        m.write_epoch(1, {"epoch": 2, "test_acc": 62.5})
    results = {Path(r.path).name: r for r in collect(tmp_path)}
    assert set(results) == {"surface.h5", "metrics.h5"}
    assert (results["metrics.h5"].done, results["metrics.h5"].pending, results["metrics.h5"].unit) == (2, 2, "epochs")
    assert results["surface.h5"].done == 3
    assert main(["status", str(tmp_path), "--json"]) == 0
    data = {Path(r["path"]).name: r for r in json.loads(capsys.readouterr().out)}
    assert data["metrics.h5"]["done"] == 2 and data["surface.h5"]["pending"] == 17
    assert main(["status", str(tmp_path / "metrics.h5")]) == 0
    assert "2/4 epochs done (50.0%), 2 pending [last test_acc 62.50%]" in capsys.readouterr().out


def test_missing_output_is_an_error_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", str(tmp_path / "nothing.h5")]) == 2
    assert "nothing.h5" in capsys.readouterr().err


def test_sweep_runs_done_running_pending_failed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from effrep_hpc.store.sweep import RunRecord, RunSpec, mark_running, prepare_sweep, run_names, write_run

    path = tmp_path / "sweep.h5"
    runs = [RunSpec(name, {"algorithm": "bc", "bits": 1, "lr": 0.1, "batch_size": 8, "seed": i}, f"seed: {i}\n") for i, name in enumerate(run_names(5))]
    prepare_sweep(path, runs, config_yaml="", epochs=2)
    write_run(path, 0, RunRecord("done", curves=[{"epoch": 1}, {"epoch": 2}]))
    write_run(path, 3, RunRecord("failed", error="diverged"))
    mark_running(path, 4, started=1.0)
    st = collect(path)[0]
    assert (st.kind, st.unit, st.total, st.done, st.running, st.pending, st.failed) == ("quant_sweep", "runs", 5, 1, 1, 2, 1)
    assert main(["status", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "1/5 runs done (20.0%), 2 pending, 1 running, 1 failed" in out
    assert "run_0003: failed" in out and "run_0004: running" in out
