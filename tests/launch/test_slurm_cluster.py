"""Against a real one-node SLURM (slurm/local-cluster.sh): array scans, USR2 requeue, distributed training.

The array requeue test runs in `make test` and in CI (the conftest starts the cluster, or fails); the
ones marked ``slow`` repeat properties checked elsewhere and run in `make test-slow` (about four minutes
on two cores, most of it SLURM scheduling and Python start-up in each job).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from effrep_hpc.config import load_config
from effrep_hpc.launch.slurm import job_info
from effrep_hpc.launch.status import surface_status
from effrep_hpc.launch.submit import plan_submission, submit_plan, wait_for
from effrep_hpc.runners.landscape import run_landscape
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.surface import read_surface

pytestmark = [pytest.mark.slurm, pytest.mark.usefixtures("local_slurm")]

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/demo/digits.yaml")
# 30 points, one per tile and per pass, on single images: ~0.3 s a point, so a task of 10 points runs
# long enough to be signalled in the middle.
GRID = (
    "landscape.x=-1:1:5", "landscape.y=-1:1:6", "landscape.batch_size=1", "landscape.points_per_pass=1",
    "landscape.tile_size=1", "run.progress=false", "run.threads=1",
)
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
JOB_TIMEOUT = 240


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    run_train(load_config(CONFIG, [f"run.out={out}", "train.epochs=1", "train.milestones=[]", "run.progress=false"]))
    return out


@pytest.fixture(scope="module")
def reference(trained: Path) -> dict:
    surface = trained / "serial.h5"
    run_landscape(load_config(CONFIG, [f"run.out={trained}", f"landscape.surface={surface}", "dist.backend=serial", *GRID]))
    return read_surface(surface)


def assert_same_surface(path: Path, reference: dict) -> None:
    got = read_surface(path)
    assert got["done"].all()
    for name in METRICS:
        np.testing.assert_array_equal(got[name], reference[name], err_msg=name)


# slow (~65 s): test_usr2_requeues_... submits the same 3-task array and merge to SLURM, and
# tests/launch/test_launch_local.py checks `effrep submit --wait` array + merge in the default run.
@pytest.mark.slow
def test_three_task_array_and_merge_equal_the_serial_scan(trained: Path, reference: dict, tmp_path: Path) -> None:
    surface = tmp_path / "array.h5"
    cmd = [
        sys.executable, "-m", "effrep_hpc.cli", "submit", "landscape", CONFIG, f"run.out={trained}",
        f"landscape.surface={surface}", *GRID, "--cluster", "local", "--array", "3", "--wait", "--poll", "1",
        "--folder", str(tmp_path / "logs"),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=JOB_TIMEOUT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    array_id = re.search(r"array: array (\d+) of 3 task\(s\)", out).group(1)
    merge_id = re.search(r"merge: job (\d+) \(starts when all of step 'array' succeeded\)", out).group(1)
    assert f"writes {tmp_path}/array.shard-2-of-3.h5" in out and f"output: {surface}" in out
    assert "4/4 job(s) completed" in out
    # SLURM ran an array of three and a merge that waited for it
    assert [job_info(f"{array_id}_{i}")["JobState"] for i in range(3)] == ["COMPLETED"] * 3
    merge = job_info(merge_id)
    assert merge["JobState"] == "COMPLETED" and merge["Dependency"] == "(null)"  # satisfied and cleared
    assert_same_surface(surface, reference)
    shards = [p["done"] for p in surface_status(surface).parts]
    assert shards == [10, 10, 10]


def _done_points(path: Path) -> int:
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["done"][()].sum())
    except (OSError, KeyError):
        return 0


# slow (~60 s of a real SLURM requeue): resuming from a shard after a kill is in the default run
# (tests/runners/test_landscape.py::test_sigkill_then_resume_is_bitwise_equal, tests/launch/test_launch_local.py).
@pytest.mark.slow
def test_usr2_requeues_a_task_which_resumes_from_its_shard(trained: Path, reference: dict, tmp_path: Path) -> None:
    surface = tmp_path / "requeued.h5"
    plan = plan_submission(
        ["landscape"], CONFIG, [f"run.out={trained}", f"landscape.surface={surface}", *GRID],
        cluster="local", array=3, folder=str(tmp_path / "logs"),
    )
    sub = submit_plan(plan)
    target = sub.step_ids("array")[1]
    shard = tmp_path / "requeued.shard-1-of-3.h5"
    deadline = time.time() + JOB_TIMEOUT
    while _done_points(shard) < 1:
        assert time.time() < deadline, "task 1 never started computing"
        time.sleep(0.05)
    before = _done_points(shard)
    subprocess.run(["scancel", "--signal=USR2", target], check=True, timeout=30)
    assert before < 10, "task 1 finished before it could be signalled"
    final = wait_for(sub.jobs, kind="slurm", poll_s=1, timeout_s=JOB_TIMEOUT)
    assert set(final.values()) == {"COMPLETED"}, final
    assert job_info(target)["Restarts"] == "1"
    log = next((tmp_path / "logs" / target).glob("*_0_log.out")).read_text()
    err = next((tmp_path / "logs" / target).glob("*_0_log.err")).read_text()
    assert "Caught signal SIGUSR2" in log + err and "Requeued job" in log + err
    # the second run of the task computed only what the first had not finished
    computed = [int(n) for n in re.findall(r"computed (\d+) point\(s\)", log)]
    assert len(computed) == 1 and computed[0] <= 10 - before
    assert_same_surface(surface, reference)


# slow (~22 s): tests/runners/test_train.py::test_two_process_gloo_matches_one_process checks the same
# trajectory with torchrun, tests/dist/test_env.py the rank/world from SLURM variables.
@pytest.mark.slow
def test_training_job_runs_torch_distributed_across_its_tasks(tmp_path: Path) -> None:
    # Without BN, two data-parallel processes follow one process's trajectory (same global batches).
    extra = ["model.name=digits_mlp", "model.kwargs={norm: false}", "train.batch_size=64", "train.epochs=2",
             "train.milestones=[1]", "run.progress=false", "run.threads=1"]
    one = run_train(load_config(CONFIG, [f"run.out={tmp_path}/one", *extra]))
    plan = plan_submission(["train"], CONFIG, [f"run.out={tmp_path}/two", *extra, "launch.tasks_per_node=2"], cluster="local")
    sub = submit_plan(plan)
    final = wait_for(sub.jobs, kind="slurm", poll_s=1, timeout_s=JOB_TIMEOUT)
    assert set(final.values()) == {"COMPLETED"}, final
    job = sub.jobs[0].job_id
    logs = [p.read_text() for p in sorted((plan.folder / job).glob("*_log.out"))]
    assert [f"rank {r}/2]" in text for r, text in enumerate(logs)] == [True, True]
    a, b = load_checkpoint(one.checkpoint), load_checkpoint(tmp_path / "two" / "checkpoint.pt")
    assert b["epoch"] == 2
    assert a["final"]["train_loss"] == pytest.approx(b["final"]["train_loss"], rel=1e-4)
    for key in a["model"]:
        torch.testing.assert_close(a["model"][key], b["model"][key], rtol=1e-4, atol=1e-5)


# slow (~35 s): tests/runners/test_quant.py::test_array_tasks_share_one_sweep_file checks array tasks
# writing one sweep file equal to the serial sweep.
@pytest.mark.slow
def test_four_run_quantization_sweep_runs_as_an_array(tmp_path: Path) -> None:
    from effrep_hpc.runners.quant_sweep import run_quant_sweep
    from effrep_hpc.store.sweep import read_sweep

    sweep = ["quant.sweep.algorithms=[bc,sr]", "quant.sweep.bits=[1]", "quant.sweep.seeds=[0,1]", "train.epochs=2",
             "train.milestones=[1]", "run.progress=false", "run.threads=1"]
    config = str(ROOT / "configs/demo/quant_digits.yaml")
    plan = plan_submission(["quant", "sweep"], config, [f"run.out={tmp_path}/array", *sweep], cluster="local", array=4)
    sub = submit_plan(plan)
    final = wait_for(sub.jobs, kind="slurm", poll_s=1, timeout_s=JOB_TIMEOUT)
    assert len(final) == 4 and set(final.values()) == {"COMPLETED"}, final
    # each of the four array tasks trained one run, all into the one sweep file
    for job in sub.step_ids("array"):
        log = next((plan.folder / job).glob("*_0_log.out")).read_text()
        assert re.search(r"trained 1 run\(s\) .* on task \d of 4: 1 done", log), log[-2000:]
    run_quant_sweep(load_config(config, [f"run.out={tmp_path}/serial", *sweep, "dist.backend=serial"]))
    arr, ser = read_sweep(tmp_path / "array" / "sweep.h5"), read_sweep(tmp_path / "serial" / "sweep.h5")
    assert [r["status"] for r in arr["runs"]] == ["done"] * 4
    for a, s in zip(arr["runs"], ser["runs"]):
        assert (a["algorithm"], a["seed"]) == (s["algorithm"], s["seed"])
        for name in ("train_loss", "test_acc"):
            np.testing.assert_array_equal(a["curves"][name], s["curves"][name], err_msg=f"{a['name']} {name}")


# slow (~70 s): a second USR2-requeue-and-resume variant (the MPI template); test_usr2_requeues_... runs
# in the default set and tests/runners/test_landscape.py kills and resumes an MPI scan.
@pytest.mark.slow
def test_mpi_sbatch_template_requeues_on_usr2_and_resumes(trained: Path, reference: dict, tmp_path: Path) -> None:
    surface = tmp_path / "mpi.h5"
    env = dict(os.environ, EFFREP_PYTHON=sys.executable)
    cmd = ["sbatch", "--parsable", "--nodes=1", "--ntasks-per-node=2", "--time=10", f"--output={tmp_path}/mpi-%j.out",
           str(ROOT / "slurm/mpi.sbatch"), "landscape", CONFIG, f"run.out={trained}", f"landscape.surface={surface}", *GRID]
    job = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=30).stdout.strip()
    deadline = time.time() + JOB_TIMEOUT
    while _done_points(surface) < 2:
        assert time.time() < deadline, "the MPI scan never started"
        time.sleep(0.05)
    # --batch: to the batch shell, as SLURM's --signal=B:USR2@... does before the time limit
    subprocess.run(["scancel", "--batch", "--signal=USR2", job], check=True, timeout=30)
    while job_info(job).get("JobState") not in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY"):
        assert time.time() < deadline, f"job {job} still {job_info(job).get('JobState')}"
        time.sleep(1)
    info = job_info(job)
    log = (tmp_path / f"mpi-{job}.out").read_text()
    assert info["JobState"] == "COMPLETED" and info["Restarts"] == "1", log[-3000:]
    assert "requeueing job" in log and "(restart 1), 2 rank(s)" in log
    computed = [int(n) for n in re.findall(r"computed (\d+) point\(s\) .* on 2 mpi worker", log)]
    assert len(computed) == 1 and computed[0] < 30  # the rerun skipped what the first run had written
    assert_same_surface(surface, reference)


# slow (~2 min, most of it SLURM scheduling): a study as dependent arrays (tests/runners/test_study.py runs the
# same graph through submitit's local executor in `make test-slow`, and in-process in the default run).
@pytest.mark.slow
def test_a_study_runs_as_dependent_arrays_and_gives_the_in_process_table(tmp_path: Path) -> None:
    import json

    from tests.runners.test_study import in_process, results

    study = str(ROOT / "configs/studies/prune_vs_scratch.yaml")
    small = ["study.seeds=[0]", "train.epochs=2", "train.keep_every=1", "data.train_size=128", "prune.retrain_epochs=1",
             "landscape.train_size=32", "hessian.train_size=32", "hessian.max_iter=3", "hessian.trace_probes=2",
             "study.variants=[{name: r}, {name: p, trainer: prune, source: r, skip: [trajectory]}, {name: s, trainer: scratch}]",
             "study.measurements=[scan1d, hessian, trajectory]", "study.pairs=[{name: ps, a: p, b: s}]",
             "study.measure={scan1d: {landscape.x: '-1:1:3'}, trajectory: {landscape.x: '-1:1:3', landscape.y: '-1:1:3'}, "
             "interp: {landscape.x: '0:1:3', landscape.bn: recompute}}", "model.name=digits_resnet20",
             "prune.ratios={layer1.0.conv1: 0.5, layer2.1.conv1: 0.5}"]
    code, _, stderr = in_process(["study", study, f"study.out={tmp_path / 'here'}", *small])
    assert code == 0, stderr
    plan = plan_submission(["study"], study, [f"study.out={tmp_path / 'slurm'}", *small], cluster="local",
                           folder=str(tmp_path / "logs"))
    assert [s.role for s in plan.steps] == ["train", "prune", "scan1d", "hessian", "trajectory", "interp", "finish"]
    sub = submit_plan(plan)
    final = wait_for(sub.jobs, kind="slurm", poll_s=1, timeout_s=4 * JOB_TIMEOUT)
    assert set(final.values()) == {"COMPLETED"}, final
    # the retraining array started after the whole training array ended, the measurements after both (afterok)
    times = {role: [job_info(j) for j in sub.step_ids(role)] for role in ("train", "prune", "scan1d")}
    assert all(t for jobs in times.values() for t in jobs), "SLURM forgot the jobs before they were read"
    ends = {role: max(t["EndTime"] for t in jobs) for role, jobs in times.items()}
    starts = {role: min(t["StartTime"] for t in jobs) for role, jobs in times.items()}
    assert ends["train"] <= starts["prune"] and ends["prune"] <= starts["scan1d"], (starts, ends)
    here, there = tmp_path / "here", tmp_path / "slurm"
    assert json.loads((there / "table.json").read_text())["rows"] == json.loads((here / "table.json").read_text())["rows"]
    mine, expected = results(there), results(here)
    assert mine.keys() == expected.keys() and [k for k in mine if mine[k] != expected[k]] == []
