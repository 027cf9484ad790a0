"""Every shipped claim study, shrunk by command-line overrides only (one seed, two epochs, a few samples, tiny grids),
runs its whole graph to the figures and the table: the studies of the README's claims section stay runnable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.runners.runner_helpers import ROOT
from tests.runners.test_study import in_process, manifest

SMALL = [
    "study.seeds=[0]", "train.epochs=2", "train.keep_every=1", "data.train_size=64", "landscape.train_size=32",
    "hessian.train_size=32", "hessian.max_iter=3", "hessian.trace_probes=2", "prune.retrain_epochs=1",
    "study.measure={scan1d: {landscape.x: '-1:1:3'}, scan2d: {landscape.x: '-1:1:3', landscape.y: '-1:1:3'}, "
    "curvature: {landscape.x: '-1:1:2', landscape.y: '-1:1:2', hessian.max_iter: 3}, "
    "trajectory: {landscape.x: '-1:1:3', landscape.y: '-1:1:3'}, interp: {landscape.x: '0:1:3', landscape.bn: recompute}}",
]


# slow (~1-3 min each on 2 cores): tests/runners/test_study.py and test_study_trainers.py run the same kinds of
# graphs (the tiny study, and the prune and quantization studies shrunk like this) in the default run.
@pytest.mark.slow
@pytest.mark.parametrize("name", ["skip_connections", "width", "batch_size", "prune_vs_scratch", "bc_vs_sr"])
def test_a_shipped_study_runs_to_its_figures_and_table(name: str, tmp_path: Path) -> None:
    out = tmp_path / name
    code, stdout, stderr = in_process(["study", str(ROOT / f"configs/studies/{name}.yaml"), f"study.out={out}", *SMALL])
    assert code == 0, stderr[-3000:]
    data = manifest(out)
    assert all(n["status"] == "done" for r in data["runs"] for n in r["nodes"].values())
    assert all(p["status"] == "done" for p in data["pairs"])
    rows = json.loads((out / "table.json").read_text())["rows"]
    assert [r["variant"] for r in rows] == [v["name"] for v in data["variants"]]
    assert all(r["test_error"]["n"] == 1 and r["top_eigenvalue"]["n"] == 1 for r in rows)
    assert all(r["path_in_plane"]["n"] == 1 for r in rows if "trajectory" in data["runs"][0]["nodes"]
               and not r["variant"].endswith("_pruned"))
    figures = set(data["figures"])
    assert {"scan1d_train_loss_seed0.png", "trajectory_train_loss_seed0.png"} <= figures
