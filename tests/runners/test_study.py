"""`effrep study` end to end: the tiny study's graph, its manifest, a re-run that does nothing, kills and resumes
(bitwise), MPI ranks, failing nodes, `effrep status`, and bad input refused before anything is written."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import h5py
import numpy as np
import pytest

from effrep_hpc.cli import main
from effrep_hpc.config import from_yaml, load_config
from effrep_hpc.config.study import plan_study
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.surface import read_surface
from tests.runners.runner_helpers import ROOT, effrep, effrep_cmd

CONFIG = ROOT / "configs/studies/tiny.yaml"
VARIANTS = {"bs32": 32, "bs256": 256}  # the tiny study's variants and their train.batch_size
SEEDS = [0, 1]
MEASUREMENTS = ["scan1d", "scan2d", "hessian", "trajectory"]


def study_args(out: Path, *extra: str) -> list[str]:
    return ["study", str(CONFIG), f"study.out={out}", *extra]


def in_process(argv: list[str]) -> tuple[int, str, str]:
    """`effrep ARGV` in this process: exit code, stdout, stderr."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


def manifest(out: Path) -> dict:
    return json.loads((out / "study.json").read_text())


def results(out: Path) -> dict[str, bytes]:
    """Every result value of a study, as bytes per (file, dataset): the HDF5 datasets (bar wall-clock times), the
    checkpoints' weights and the Hessian results."""
    import torch

    found: dict[str, bytes] = {}
    for path in sorted(out.rglob("*.h5")):
        with h5py.File(path, "r") as f:
            def visit(name: str, obj: object, path: Path = path, f: h5py.File = f) -> None:
                if isinstance(obj, h5py.Dataset) and not (path.name == "metrics.h5" and name == "seconds"):
                    value = obj[()]
                    found[f"{path.relative_to(out)}:{name}"] = str(value.dtype).encode() + np.ascontiguousarray(value).tobytes()
            f.visititems(visit)
    for path in sorted(out.rglob("checkpoint.pt")):
        for name, tensor in torch.load(path, weights_only=True)["model"].items():
            found[f"{path.relative_to(out)}:{name}"] = tensor.numpy().tobytes()
    for path in sorted(out.rglob("hessian.json")):
        data = json.loads(path.read_text())
        found[str(path.relative_to(out))] = json.dumps([data[k] for k in ("top_eigenvalues", "min_eigenvalue", "trace")]).encode()
    return found


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The tiny study run once, uninterrupted, in this process: its folder and what it printed."""
    out = tmp_path_factory.mktemp("study") / "tiny"
    code, stdout, stderr = in_process(study_args(out))
    assert code == 0, stderr
    return out, stdout


def test_every_node_is_done_with_its_files(tiny: tuple[Path, str]) -> None:
    out, stdout = tiny
    data = manifest(out)
    assert (data["kind"], data["schema_version"], data["name"], data["seeds"]) == ("study", 1, "tiny", SEEDS)
    assert [v["name"] for v in data["variants"]] == list(VARIANTS)
    assert {(r["variant"], r["seed"]) for r in data["runs"]} == {(v, s) for v in VARIANTS for s in SEEDS}
    for run in data["runs"]:
        assert set(run["nodes"]) == {"train", *MEASUREMENTS}
        assert run["dir"] == f"runs/{run['variant']}/seed{run['seed']}"
        for node in run["nodes"].values():
            assert node["status"] == "done"
            assert all((out / p).is_file() and p.startswith(run["dir"] + "/") for p in node["outputs"].values())
        # the run was trained as its variant and seed say
        trained = from_yaml(load_checkpoint(out / run["nodes"]["train"]["outputs"]["checkpoint"])["config"])
        assert (trained.train.seed, trained.train.batch_size) == (run["seed"], VARIANTS[run["variant"]])
        for kind in ("scan1d", "scan2d", "trajectory"):
            surface = read_surface(out / run["nodes"][kind]["outputs"]["surface"])
            assert surface["done"].all() and np.isfinite(surface["train_loss"]).all()
    assert [(p["name"], p["seed"], p["status"]) for p in data["pairs"]] == [("small_vs_large", s, "done") for s in SEEDS]
    assert "study tiny: 22/22 node(s) done (22 run now)" in stdout


def test_each_measurement_is_taken_at_its_own_runs_minimum(tiny: tuple[Path, str]) -> None:
    out, _ = tiny
    runs = {(r["variant"], r["seed"]): r["nodes"] for r in manifest(out)["runs"]}

    def surface(nodes: dict, kind: str) -> dict:
        return read_surface(out / nodes[kind]["outputs"]["surface"])

    hashes = set()
    for nodes in runs.values():
        line, plane = surface(nodes, "scan1d"), surface(nodes, "scan2d")
        hessian = json.loads((out / nodes["hessian"]["outputs"]["hessian"]).read_text())
        # the 1D and 2D scans and the Hessian all start from this run's checkpoint...
        assert line["attrs"]["model_hash"] == plane["attrs"]["model_hash"] == hessian["model_hash"]
        hashes.add(hessian["model_hash"])
        # ...so the loss at the centre of the plane is the loss at the centre of the line
        centre_x, centre_y = int(np.argmin(np.abs(plane["xcoordinates"]))), int(np.argmin(np.abs(plane["ycoordinates"])))
        np.testing.assert_allclose(plane["train_loss"][centre_y, centre_x],
                                   line["train_loss"][int(np.argmin(np.abs(line["xcoordinates"])))], rtol=1e-5)
    assert len(hashes) == len(runs)  # four different models
    for pair in manifest(out)["pairs"]:
        interp = read_surface(out / pair["outputs"]["surface"])
        x = interp["xcoordinates"]
        # interpolation: x = 0 is a's minimum and x = 1 is b's (same seed), as their own 1D scans measured them
        for end, variant in ((0.0, pair["a"]), (1.0, pair["b"])):
            own = surface(runs[variant, pair["seed"]], "scan1d")
            at = own["train_loss"][int(np.argmin(np.abs(own["xcoordinates"])))]
            np.testing.assert_allclose(interp["train_loss"][int(np.argmin(np.abs(x - end)))], at, rtol=1e-4)


def test_the_table_holds_each_paths_share_in_its_plane(tiny: tuple[Path, str]) -> None:
    out, _ = tiny
    rows = {r["variant"]: r["path_in_plane"] for r in json.loads((out / "table.json").read_text())["rows"]}
    for run in manifest(out)["runs"]:
        with h5py.File(out / run["nodes"]["trajectory"]["outputs"]["surface"], "r") as f:
            ratio = f["trajectory"].attrs["explained_variance_ratio"]
        share = rows[run["variant"]]["values"][rows[run["variant"]]["seeds"].index(run["seed"])]
        assert share == pytest.approx(100 * (ratio[0] + ratio[1]), rel=1e-3) and 0 < share <= 100


def test_a_rerun_computes_nothing(tiny: tuple[Path, str]) -> None:
    out, _ = tiny
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "study.json"}
    code, stdout, stderr = in_process(study_args(out))
    assert code == 0, stderr
    assert "22 node(s), 22 done, 0 to run" in stdout
    assert "computed" not in stdout and "running" not in stdout
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file() and p.name != "study.json"}
    assert after == before  # no output, figure or table was written again
    assert all(n["status"] == "done" for r in manifest(out)["runs"] for n in r["nodes"].values())


def test_status_counts_the_graph(tiny: tuple[Path, str]) -> None:
    out, _ = tiny
    code, stdout, _ = in_process(["status", str(out), "--json"])
    assert code == 0
    counts = {r["kind"]: (r["done"], r["total"], r["pending"], r["failed"]) for r in json.loads(stdout)}
    plan = plan_study(load_config(CONFIG, [f"study.out={out}"]))
    expected = {f"study tiny {kind}": (len(nodes), len(nodes), 0, 0) for kind, nodes in plan.stages}
    assert counts == expected
    assert expected["study tiny train"][1] == len(VARIANTS) * len(SEEDS)


def test_a_failing_node_stops_only_what_needs_it(tmp_path: Path) -> None:
    out = tmp_path / "s"
    code, stdout, stderr = in_process(study_args(
        out, "study.variants=[{name: ok}, {name: wild, set: {train.lr: 1.0e+5}}]", "study.pairs=[{name: p, a: ok, b: wild}]",
        "study.seeds=[0]", "study.measurements=[scan1d]", "train.epochs=1"))
    assert code == 3
    assert stderr.count("\n") == 1 and "1 of 5 node(s) failed (first: train:wild:seed0: diverged" in stderr
    nodes = {r["variant"]: r["nodes"] for r in manifest(out)["runs"]}
    assert nodes["ok"]["train"]["status"] == nodes["ok"]["scan1d"]["status"] == "done"
    assert nodes["wild"]["train"]["status"] == "failed" and "lower train.lr" in nodes["wild"]["train"]["error"]
    assert nodes["wild"]["scan1d"] == {**nodes["wild"]["scan1d"], "status": "pending", "waits_for": ["train:wild:seed0"]}
    assert manifest(out)["pairs"][0]["status"] == "pending"
    assert not (out / "runs/wild/seed0/scan1d.h5").exists() and not (out / "pairs/p_seed0.h5").exists()
    # the figures and the table are drawn from what is done; the failed run's cells read n/a
    table = {r["variant"]: r for r in json.loads((out / "table.json").read_text())["rows"]}
    assert table["ok"]["test_error"]["n"] == 1 and table["wild"]["test_error"]["n"] == 0
    assert "| wild |" in stdout and "figures and table drawn without the nodes that are not done" in stdout
    _, status, _ = in_process(["status", str(out)])
    assert "study tiny train, 1/2 nodes done (50.0%), 0 pending, 1 failed" in status
    assert "scan1d wild seed 0: pending: waits for train:wild:seed0, which failed" in status


@pytest.mark.parametrize("overrides,message", [
    (["study.variants=[{name: a, set: {train.bach_size: 8}}]", "study.pairs=[]"],
     "study.variants[a].set: train.bach_size: unknown key; did you mean train.batch_size?"),
    (["study.variants=[{name: a}, {name: a}]", "study.pairs=[]"], "study.variants: two are named 'a'"),
    (["study.pairs=[{name: p, a: bs32, b: bs265}]"], "study.pairs[p].b: unknown variant 'bs265'; did you mean 'bs256'?"),
    (["study.measurements=[scan1d, scan3d]"], "study.measurements[1]: invalid value 'scan3d'; did you mean 'scan2d'?"),
    (["train.keep_every=0"], "study.variants[bs32]: the trajectory measurement needs snapshots: set train.keep_every"),
    (["train.epochs=1"], "the trajectory measurement needs >= 3 snapshots"),
    (["study.seeds=[]"], "study.seeds: give at least one seed"),
    (["study.measure={scan2d: {train.lr: 0.1}}"], "study.measure.scan2d: train.lr: a measurement may set only landscape.*"),
    (["study.variants=[{name: a, set: {run.out: x}}]", "study.pairs=[]"], "run.out is set by the study itself"),
    (["study.pairs=[{name: p, a: bs32, b: wide}]", "study.variants=[{name: bs32}, {name: wide, set: {model.kwargs: {widths: [8, 8, 16]}}}]"],
     "study.pairs[p]: interpolation needs one model for a and b"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path, overrides: list[str], message: str) -> None:
    out = tmp_path / "s"
    code, stdout, stderr = in_process(study_args(out, *overrides))
    assert code == 2
    assert stderr.count("\n") == 1 and stderr.startswith("error: invalid config: ") and message in stderr, stderr
    assert not out.exists() and stdout == ""


def test_the_base_keys_on_the_command_line_reach_every_variant(tmp_path: Path) -> None:
    plan = plan_study(load_config(CONFIG, [f"study.out={tmp_path}", "train.epochs=3", "study.seeds=[4]"]))
    trains = dict(plan.stages)["train"]
    assert [(n.variant, n.seed, n.cfg.train.epochs, n.cfg.train.batch_size) for n in trains] == [
        ("bs32", 4, 3, 32), ("bs256", 4, 3, 256)]
    scans = dict(plan.stages)["scan1d"]
    assert all(n.cfg.landscape.y is None and n.cfg.landscape.x == "-1:1:5" for n in scans)
    assert all(n.cfg.run.out == str(tmp_path / "runs" / n.variant / "seed4") for n in scans)


def test_submit_plans_an_array_per_stage(tmp_path: Path) -> None:
    from effrep_hpc.launch.submit import plan_submission

    plan = plan_submission(["study"], str(CONFIG), [f"study.out={tmp_path}"], folder=str(tmp_path / "logs"))
    roles = [step.role for step in plan.steps]
    assert roles == ["train", *MEASUREMENTS, "interp", "finish"]
    nodes = {kind: [n.id for n in ns] for kind, ns in plan_study(load_config(CONFIG, [f"study.out={tmp_path}"])).stages}
    for step in plan.steps[:-1]:
        # one task per node, each running the study's snapshot on that node alone
        assert [t.argv for t in step.tasks] == [["study", str(plan.snapshot), f"study.nodes=[{i}]"] for i in nodes[step.role]]
        assert step.after == (None if step.role == "train" else 0)  # every measurement waits for the whole training array
    last = plan.steps[-1]
    assert [t.argv for t in last.tasks] == [["study", str(plan.snapshot)]]
    assert {last.after, *last.more_after} == set(range(len(plan.steps) - 1))
    assert plan.outputs == [tmp_path / "study.json"]


# ----------------------------------------------------------------------------------------------
# Kills, ranks and jobs (slow)


@pytest.mark.slow
def test_submitted_study_gives_the_same_results(tiny: tuple[Path, str], tmp_path: Path) -> None:
    reference, _ = tiny
    out = tmp_path / "tiny"
    # a smaller study of the same base: its nodes are the reference's nodes with the same configs
    effrep("submit", *study_args(out, "study.seeds=[1]", "study.measurements=[scan1d, hessian]", "study.pairs=[]"),
           "--local", "--folder", str(tmp_path / "logs"))
    data = manifest(out)
    assert [(r["variant"], r["seed"]) for r in data["runs"]] == [(v, 1) for v in VARIANTS]
    assert all(n["status"] == "done" for r in data["runs"] for n in r["nodes"].values())
    assert data["table"] and (out / data["table"]["csv"]).is_file()  # the last job drew the table
    mine, expected = results(out), results(reference)
    assert mine.keys() <= expected.keys() and len(mine) > 0
    assert [k for k in mine if mine[k] != expected[k]] == []


def points_done(path: Path) -> int:
    """Points a scan has written so far (0 before its file exists)."""
    try:
        with h5py.File(path, "r", locking=False) as f:
            return int(f["done"][()].sum())
    except (OSError, KeyError):
        return 0


def run_until(cmd: list[str], ready: Callable[[], bool], lock: Path, timeout: float = 300) -> None:
    """Start ``cmd``, SIGKILL its whole session once ``ready()``, wait until the study's lock holder is gone."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None and not ready():
        time.sleep(0.01)
    if proc.poll() is not None:
        pytest.fail("the study ended before the moment to kill it")
    owner = json.loads(lock.read_text())["pid"] if lock.exists() else None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 30  # mpiexec's ranks run in sessions of their own and exit once their launcher is gone
    while owner is not None and time.time() < deadline and Path(f"/proc/{owner}").exists():
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.parametrize("ranks", [0, 2])
def test_a_killed_study_resumes_to_the_same_results(tiny: tuple[Path, str], tmp_path: Path, ranks: int) -> None:
    reference, _ = tiny
    out = tmp_path / "tiny"
    lock = out / "study.lock"
    cmd = effrep_cmd(*study_args(out), mpi=ranks)
    run_until(cmd, (out / "runs/bs32/seed0/checkpoint.pt").exists, lock)  # after epoch 1 of the first training's 2
    run_until(cmd, lambda: points_done(out / "runs/bs32/seed1/scan2d.h5") >= 4, lock)  # in the middle of a 2D scan
    proc = effrep(*study_args(out), mpi=ranks)
    assert "22 node(s), " in proc.stdout and "22/22 node(s) done" in proc.stdout
    assert "22 node(s), 0 done" not in proc.stdout  # the killed runs' finished nodes were kept
    assert all(n["status"] == "done" for r in manifest(out)["runs"] for n in r["nodes"].values())
    mine, expected = results(out), results(reference)
    assert mine.keys() == expected.keys()
    different = [k for k in expected if mine[k] != expected[k]]
    assert not different, f"differ from the uninterrupted serial study: {different[:5]}"


@pytest.mark.slow
def test_bad_input_under_mpi_is_one_line(tmp_path: Path) -> None:
    proc = effrep(*study_args(tmp_path / "s", "study.variants=[{name: a}, {name: a}]", "study.pairs=[]"), mpi=2, check=False)
    assert proc.returncode == 2
    assert proc.stderr.count("error: ") == 1 and "two are named 'a'" in proc.stderr
    assert not (tmp_path / "s").exists()
