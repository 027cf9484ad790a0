"""The sweep file: layout and read-back, refusal of a different sweep, waiting for the lock, concurrent writers."""

from __future__ import annotations

import math
import subprocess
import sys
import threading
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from effrep_hpc.store.h5 import FileBusyError, WriterLock
from effrep_hpc.store.sweep import (
    CURVE_FIELDS,
    HIST_BINS,
    RunRecord,
    RunSpec,
    locked,
    mark_running,
    prepare_sweep,
    read_statuses,
    read_sweep,
    run_names,
    write_run,
)

ROOT = Path(__file__).resolve().parents[2]


def specs(n: int, lr: float = 0.1) -> list[RunSpec]:
    return [
        RunSpec(name, {"algorithm": "bc", "bits": 1, "lr": lr, "batch_size": 64, "seed": i}, f"train:\n  lr: {lr}\n  seed: {i}\n")
        for i, name in enumerate(run_names(n))
    ]


def curves(epochs: int, offset: float) -> list[dict[str, float]]:
    return [{k: offset + e + 0.01 * j for j, k in enumerate(CURVE_FIELDS)} for e in range(epochs)]


def test_runs_read_back_with_status_curves_histograms_and_config(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    statuses = prepare_sweep(path, specs(3), config_yaml="whole: sweep\n", epochs=4)
    assert statuses == ["pending"] * 3
    mark_running(path, 1, started=123.0)
    hist = np.arange(HIST_BINS, dtype=float)
    write_run(path, 0, RunRecord("done", curves=curves(4, 1.0), hist_float=hist, hist_quant=2 * hist, started=1.0, finished=2.0))
    write_run(path, 2, RunRecord("failed", error="diverged: nan", curves=curves(2, 5.0), started=3.0, finished=4.0))
    assert read_statuses(path) == ["done", "running", "failed"]
    data = read_sweep(path)
    assert data["attrs"]["config"] == "whole: sweep\n" and data["attrs"]["num_runs"] == 3
    r0, r1, r2 = data["runs"]
    assert r0["config"] == "train:\n  lr: 0.1\n  seed: 0\n" and r0["seed"] == 0 and r0["algorithm"] == "bc"
    np.testing.assert_array_equal(r0["curves"]["train_loss"], [1.01, 2.01, 3.01, 4.01])
    np.testing.assert_array_equal(r0["hist_quant"], 2 * hist)
    assert r1["started"] == 123.0 and math.isnan(r1["finished"])
    assert r2["error"] == "diverged: nan" and len(r2["curves"]["epoch"]) == 2, "a failed run keeps the epochs it did"
    assert np.isnan(r2["hist_float"]).all()
    assert data["hist_edges"].shape == (HIST_BINS + 1,)


def test_long_errors_keep_their_end(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    prepare_sweep(path, specs(1), config_yaml="", epochs=1)
    write_run(path, 0, RunRecord("failed", error="x" * 10_000 + "THE CAUSE"))
    error = read_sweep(path)["runs"][0]["error"]
    assert error.startswith("...") and error.endswith("THE CAUSE") and len(error) <= 4000


def test_reopening_with_another_sweep_names_the_difference(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    prepare_sweep(path, specs(2), config_yaml="", epochs=3)
    assert prepare_sweep(path, specs(2), config_yaml="", epochs=3) == ["pending", "pending"]
    with pytest.raises(ValueError, match=r"run_0000 was made with a different config \(train.lr: 0.1 -> 0.2\).*--overwrite"):
        prepare_sweep(path, specs(2, lr=0.2), config_yaml="", epochs=3)
    with pytest.raises(ValueError, match="holds 2 runs, the config expands to 3"):
        prepare_sweep(path, specs(3), config_yaml="", epochs=3)
    with pytest.raises(ValueError, match="holds 3-epoch runs, the config asks for 5"):
        prepare_sweep(path, specs(2), config_yaml="", epochs=5)
    write_run(path, 0, RunRecord("done", curves=curves(3, 0.0)))
    assert prepare_sweep(path, specs(2, lr=0.2), config_yaml="", epochs=3, overwrite=True) == ["pending", "pending"]


def test_writers_wait_for_the_lock_and_give_up_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    prepare_sweep(path, specs(1), config_yaml="", epochs=1)
    holder = WriterLock(path)
    holder.acquire()
    with pytest.raises(FileBusyError, match="gave up after waiting 0.3s"):
        with locked(path, timeout=0.3):
            pass
    release = threading.Timer(0.4, holder.release)
    release.start()
    began = time.monotonic()
    write_run(path, 0, RunRecord("done", curves=curves(1, 0.0)), timeout=10)
    assert time.monotonic() - began >= 0.35, "the write must have waited for the holder"
    assert read_statuses(path) == ["done"]


WRITER = """
import sys
from effrep_hpc.store.sweep import CURVE_FIELDS, RunRecord, write_run
path, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for i in range(first, first + count):
    rows = [{k: float(i * 100 + e) for k in CURVE_FIELDS} for e in range(3)]
    write_run(path, i, RunRecord("done", curves=rows, started=float(i), finished=float(i)), timeout=60)
"""


def test_concurrent_processes_write_one_file_without_losing_a_run(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    prepare_sweep(path, specs(24), config_yaml="", epochs=3)
    env = {"PYTHONPATH": str(ROOT), "PATH": ""}
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(first), "8"], env=env, stderr=subprocess.PIPE, text=True)
        for first in (0, 8, 16)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    data = read_sweep(path)
    assert [r["status"] for r in data["runs"]] == ["done"] * 24
    for i, run in enumerate(data["runs"]):
        np.testing.assert_array_equal(run["curves"]["train_loss"], [i * 100, i * 100 + 1, i * 100 + 2])
    with h5py.File(path, "r") as f:  # still a healthy file
        assert f.attrs["kind"] == "quant_sweep"
    assert not Path(str(path) + ".lock").exists()
