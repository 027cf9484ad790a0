"""`effrep quant` end to end: train/resume/export, sweeps that survive divergence and SIGKILL, MPI and array tasks."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effrep_hpc.cli import main as effrep_main
from effrep_hpc.config import ResumeMismatch, load_config
from effrep_hpc.runners.common import dataset_from_config
from effrep_hpc.runners.quant import load_packed, run_quant_train
from effrep_hpc.runners.quant_sweep import run_quant_sweep
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.sweep import read_statuses, read_sweep
from tests.runners.runner_helpers import effrep

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).with_name("mpiexec")
TINY = (
    "data.name=digits", "data.train_size=400", "model.name=digits_mlp", "model.kwargs={widths: [16, 16]}",
    "train.batch_size=64", "train.lr=0.1", "train.momentum=0.9", "train.weight_decay=0", "train.schedule=constant",
    "quant.delta_scale=5", "run.progress=false", "run.threads=1",
)
SWEEP = ("quant.sweep.algorithms=[fp, bc, sr]", "quant.sweep.seeds=[0, 1]")
COMPARED = ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "changed", "epoch")


def tiny(out: Path, *extra: str, epochs: int = 3) -> list[str]:
    return [*TINY, f"run.out={out}", f"train.epochs={epochs}", *extra]


def assert_same_results(a: Path, b: Path) -> None:
    """Two sweep files hold the same runs with bit-identical curves (all but wall time) and histograms."""
    ra, rb = read_sweep(a)["runs"], read_sweep(b)["runs"]
    assert [r["status"] for r in ra] == [r["status"] for r in rb]
    for x, y in zip(ra, rb):
        assert x["config"] == y["config"]
        for key in COMPARED:
            np.testing.assert_array_equal(x["curves"][key], y["curves"][key], err_msg=f"{x['name']} {key}")
        np.testing.assert_array_equal(x["hist_quant"], y["hist_quant"])
        np.testing.assert_array_equal(x["hist_float"], y["hist_float"])


def test_train_resumes_and_exports_a_packed_binary_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    cfg = load_config(None, tiny(out, "quant.algorithm=bc", "quant.bits=1"))
    first = run_quant_train(cfg)
    assert load_checkpoint(first.checkpoint)["epoch"] == 3 and first.final["epoch"] == 3
    assert first.final["test_acc"] > 50, "a binary MLP should learn digits in 3 epochs"
    again = run_quant_train(cfg)  # finished: nothing is retrained
    assert again.final == first.final
    with h5py.File(first.metrics, "r") as f:
        assert f["done"][()].all()
        np.testing.assert_array_equal(f["train_loss"][()], [row["train_loss"] for row in load_checkpoint(first.checkpoint)["curves"]])
        assert f["changed"][()].max() > 0, "some binary weights flip in every epoch of early training"

    packed = tmp_path / "model.packed.pt"
    assert effrep_main(["quant", "export", str(first.checkpoint), "-o", str(packed)]) == 0
    printed = capsys.readouterr().out
    assert "reload check: identical outputs" in printed and f"packed: {packed}" in printed
    ratio = float(printed.split("float32 (")[1].split("x smaller")[0])
    assert 28 < ratio <= 32, "one bit per weight plus a float32 scale per layer"
    # reload and compare with the trained model on real test data
    state = load_checkpoint(first.checkpoint)
    from effrep_hpc.models import create_model

    trained = create_model(state["arch_name"], **state["arch"])
    trained.load_state_dict(state["model"])
    data = dataset_from_config(cfg, torch.device("cpu"))
    with torch.no_grad():
        assert torch.equal(trained.eval()(data.x_test), load_packed(packed)(data.x_test))
    assert packed.stat().st_size < first.checkpoint.stat().st_size / 5


def test_export_refuses_a_float_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(None, tiny(tmp_path / "fp", "quant.algorithm=fp", epochs=1))
    out = run_quant_train(cfg)
    assert effrep_main(["quant", "export", str(out.checkpoint)]) == 2
    assert "only bc/sr/r runs have weights to pack" in capsys.readouterr().err


def test_train_resume_with_other_quant_settings_is_refused(tmp_path: Path) -> None:
    out = tmp_path / "run"
    first = run_quant_train(load_config(None, tiny(out, "quant.algorithm=bc", "quant.bits=1", epochs=1)))
    before = first.checkpoint.read_bytes()
    with pytest.raises(ResumeMismatch, match=r"quant\.bits: 1 -> 2\)"):
        run_quant_train(load_config(None, tiny(out, "quant.algorithm=bc", "quant.bits=2", epochs=1)))
    assert first.checkpoint.read_bytes() == before


def test_a_diverging_run_is_recorded_as_failed_and_the_sweep_goes_on(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(None, tiny(tmp_path, "quant.sweep.algorithms=[fp]", "quant.sweep.lr=[0.05, 1e30, 0.1]", "dist.backend=serial", epochs=2))
    path = run_quant_sweep(cfg)
    assert path is not None and read_statuses(path) == ["done", "failed", "done"]
    runs = read_sweep(path)["runs"]
    assert runs[1]["error"].startswith("diverged: training loss nan in epoch 1 (fp, float, lr 1e+30")
    assert np.isnan(runs[1]["curves"]["train_loss"][0]), "the failed epoch is kept"
    assert runs[2]["curves"]["test_acc"][-1] > 50
    assert "warning: run_0001 failed: diverged" in capsys.readouterr().err
    # resuming skips done and failed runs; --retry-failed tries the failed one again
    run_quant_sweep(cfg)
    assert "trained 0 run(s)" in capsys.readouterr().out
    run_quant_sweep(cfg, retry_failed=True)
    assert "trained 1 run(s)" in capsys.readouterr().out
    assert read_statuses(path) == ["done", "failed", "done"]


def test_resuming_with_another_config_is_refused(tmp_path: Path) -> None:
    run_quant_sweep(load_config(None, tiny(tmp_path, "dist.backend=serial", epochs=1)))
    with pytest.raises(ValueError, match=r"run_0000 was made with a different config \(train.lr: 0.1 -> 0.2\).*--overwrite"):
        run_quant_sweep(load_config(None, tiny(tmp_path, "dist.backend=serial", "train.lr=0.2", epochs=1)))


def test_killed_sweep_resumes_without_losing_finished_runs(tmp_path: Path) -> None:
    args = tiny(tmp_path / "killed", *SWEEP, "dist.backend=serial", epochs=15)
    ref = run_quant_sweep(load_config(None, tiny(tmp_path / "ref", *SWEEP, "dist.backend=serial", epochs=15)))
    sweep = tmp_path / "killed" / "sweep.h5"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "effrep_hpc.cli", "quant", "sweep", *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    statuses: list[str] = []
    while time.time() < deadline and proc.poll() is None:
        if sweep.exists():
            try:
                statuses = read_statuses(sweep)
            except (OSError, KeyError):
                statuses = []
            running = [i for i, s in enumerate(statuses) if s == "running"]
            # kill once two runs are done and the third has checkpointed at least one epoch
            if statuses.count("done") >= 2 and running:
                ckpt = tmp_path / "killed" / "sweep_runs" / f"run_{running[0]:04d}.pt"
                if ckpt.exists() and load_checkpoint(ckpt)["epoch"] >= 1:
                    break
        time.sleep(0.02)
    if proc.poll() is not None:
        pytest.fail("the sweep finished before it could be killed; make the runs longer")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = read_sweep(sweep)["runs"]
    finished = {r["name"]: r["finished"] for r in before if r["status"] == "done"}
    assert 2 <= len(finished) < 6
    checkpoints = {p.stem: load_checkpoint(p)["epoch"] for p in (tmp_path / "killed" / "sweep_runs").glob("run_*.pt")}
    interrupted = {r["name"] for r in before if r["status"] == "running"}
    # (the third run almost always is still running here; it may just have finished in the instant before the kill)
    assert all(checkpoints.get(name, 0) >= 1 for name in interrupted)

    out = effrep("quant", "sweep", *args).stdout
    assert f"trained {6 - len(finished)} run(s)" in out and f"{len(finished)} already done or failed" in out
    after = read_sweep(sweep)["runs"]
    assert [r["status"] for r in after] == ["done"] * 6
    for r in after:
        if r["name"] in finished:
            assert r["finished"] == finished[r["name"]], f"{r['name']} was finished and must not be retrained"
        elif r["name"] in interrupted:
            assert r["resumed_from"] == checkpoints[r["name"]], "an unfinished run restarts from its last checkpoint"
    assert_same_results(ref, sweep)


@pytest.mark.mpi
@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside the Python executable (pip install mpich)")
def test_two_mpi_ranks_write_the_same_results_as_one_process(tmp_path: Path) -> None:
    serial = run_quant_sweep(load_config(None, tiny(tmp_path / "serial", *SWEEP, "dist.backend=serial")))
    proc = effrep("quant", "sweep", *tiny(tmp_path / "mpi", *SWEEP), mpi=2)
    assert "on 2 mpi worker(s): 6 done, 0 failed" in proc.stdout
    assert_same_results(serial, tmp_path / "mpi" / "sweep.h5")


def test_array_tasks_share_one_sweep_file(tmp_path: Path) -> None:
    serial = run_quant_sweep(load_config(None, tiny(tmp_path / "serial", *SWEEP, "dist.backend=serial")))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "effrep_hpc.cli", "quant", "sweep",
             *tiny(tmp_path / "array", *SWEEP, "dist.backend=array", f"dist.task_id={task}", "dist.num_tasks=2")],
            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for task in (0, 1)
    ]
    for task, p in enumerate(procs):
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err
        assert f"on task {task + 1} of 2: 3 done" in out
    assert_same_results(serial, tmp_path / "array" / "sweep.h5")
