"""Prune runners end to end: sensitivity values and resume, 2 MPI ranks = serial, prune + retrain, scratch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import effrep_hpc.runners.sensitivity as runner
import effrep_hpc.train.fit as fit
from effrep_hpc.config import ResumeMismatch, load_config
from effrep_hpc.data import load_dataset
from effrep_hpc.models import count_flops_params, create_model
from effrep_hpc.prune import prune_by_ratios, select_filters
from effrep_hpc.runners.common import load_model
from effrep_hpc.runners.prune import run_prune, run_scratch
from effrep_hpc.runners.sensitivity import run_sensitivity
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.store.curves import read_curves
from effrep_hpc.store.h5 import open_readonly
from effrep_hpc.store.sensitivity import read_sensitivity

ROOT = Path(__file__).resolve().parents[2]
MPIEXEC = Path(sys.executable).with_name("mpiexec")
BASE = [
    "model.name=digits_vgg", "data.name=digits", "run.progress=false", "run.threads=1", "train.batch_size=64",
]
SCAN = [
    "prune.layers=[features.0, features.7]", "prune.sensitivity_ratios=[0.25, 0.5, 0.75]",
    "prune.sensitivity_criteria=[l1, largest, random]",
]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    cfg = load_config(None, [*BASE, f"run.out={out}", "train.epochs=3", "train.lr=0.05", "train.milestones=[2]", "train.keep_every=0"])
    run_train(cfg)
    return out


def config(trained: Path, *extra: str):  # noqa: ANN201 - a Config
    return load_config(None, [*BASE, f"run.out={trained}", *extra])


def accuracy_of(model: torch.nn.Module) -> float:
    ds = load_dataset("digits")
    with torch.no_grad():
        return 100.0 * (model.eval()(ds.x_test).argmax(1) == ds.y_test).double().mean().item()


def test_sensitivity_cells_hold_the_accuracy_of_the_model_with_that_layer_pruned(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    assert run_sensitivity(config(trained, *SCAN, f"prune.sensitivity={path}")) == path
    data = read_sensitivity(path)
    assert data["done"].all() and data["acc"].shape == (2, 3, 3)
    assert data["layers"] == ["features.0", "features.7"] and data["layer_ids"].tolist() == [1, 6]
    model = load_model(trained / "checkpoint.pt", config(trained), torch.device("cpu"))
    assert data["attrs"]["baseline_acc"] == pytest.approx(accuracy_of(model))
    for layer, ratio, crit in [(0, 1, 0), (1, 2, 1), (1, 0, 2)]:
        pruned, keep = prune_by_ratios(
            model, {data["layers"][layer]: data["ratios"][ratio]}, criterion=data["criteria"][crit], seed=0
        )
        assert len(next(iter(keep.values()))) == data["kept"][layer, ratio]
        assert data["acc"][layer, ratio, crit] == pytest.approx(accuracy_of(pruned)), (layer, ratio, crit)
    # removing the largest filters hurts at least as much as removing the smallest, on average
    assert data["acc"][:, :, 0].mean() >= data["acc"][:, :, 1].mean()


def test_interrupted_scan_resumes_without_recomputing_done_cells(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.h5"
    cfg = config(trained, *SCAN, f"prune.sensitivity={path}")
    real = runner.evaluate_cell
    calls: list[tuple[int, int, int]] = []

    def failing(ctx, layer, ratio, crit):  # noqa: ANN001, ANN202
        if len(calls) == 7:
            raise RuntimeError("interrupted")
        calls.append((layer, ratio, crit))
        return real(ctx, layer, ratio, crit)

    monkeypatch.setattr(runner, "evaluate_cell", failing)
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sensitivity(cfg)
    with open_readonly(path) as f:
        assert int(f["done"][()].sum()) == 7
    first = set(calls)
    calls.clear()
    monkeypatch.setattr(runner, "evaluate_cell", lambda *a: (calls.append(a[1:]), real(*a))[1])
    run_sensitivity(cfg)
    assert len(calls) == 18 - 7 and not first & set(calls)
    monkeypatch.setattr(runner, "evaluate_cell", real)
    fresh = tmp_path / "fresh.h5"
    run_sensitivity(config(trained, *SCAN, f"prune.sensitivity={fresh}"))
    np.testing.assert_array_equal(read_sensitivity(path)["acc"], read_sensitivity(fresh)["acc"])


@pytest.mark.mpi
@pytest.mark.skipif(not MPIEXEC.exists(), reason="no mpiexec beside the Python executable")
def test_two_mpi_ranks_write_the_same_file_as_one_process(trained: Path, tmp_path: Path) -> None:
    serial, parallel = tmp_path / "serial.h5", tmp_path / "mpi.h5"
    run_sensitivity(config(trained, *SCAN, f"prune.sensitivity={serial}"))
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        str(MPIEXEC), "-n", "2", sys.executable, "-m", "mpi4py", "-m", "effrep_hpc.cli", "prune", "sensitivity",
        *BASE, f"run.out={trained}", *SCAN, f"prune.sensitivity={parallel}",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == f"sensitivity: {parallel}"
    assert "on 2 mpi worker(s)" in proc.stdout
    a, b = read_sensitivity(serial), read_sensitivity(parallel)
    assert b["done"].all()
    np.testing.assert_array_equal(a["acc"], b["acc"])
    np.testing.assert_allclose(a["loss"], b["loss"], rtol=1e-6)


RETRAIN = ["prune.ratios={features.0: 0.5, features.4: 0.5, 6: 0.25}", "prune.retrain_lr=0.01", "prune.speed_repeats=3"]


def test_prune_and_retrain_writes_a_smaller_model_metrics_and_a_summary(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = config(trained, *RETRAIN, "prune.retrain_epochs=2", f"prune.out={tmp_path}")
    out = run_prune(cfg, retrain=True)
    rows = out.rows
    assert rows["pruned"]["flops"] < rows["original"]["flops"] and rows["pruned"]["params"] < rows["original"]["params"]
    assert rows["retrained"]["flops"] == rows["pruned"]["flops"] and rows["retrained"]["epochs"] == 2
    assert rows["pruned"]["speedup"] > 0 and rows["_meta"]["batch_size"] == 32
    pruned_state = load_checkpoint(out.pruned)  # weights_only: arch + tensors, no pickled modules
    assert pruned_state["arch"]["widths"] == [8, 16, 32, 16, 64, 48]
    source = load_model(trained / "checkpoint.pt", cfg, torch.device("cpu"))
    expected = select_filters(source, {"features.0": 8, "features.4": 16, "features.7": 48})
    assert {k: v.tolist() for k, v in pruned_state["keep"].items()} == {k: v.tolist() for k, v in expected.items()}
    model = create_model(pruned_state["arch_name"], **pruned_state["arch"])
    model.load_state_dict(pruned_state["model"])
    assert count_flops_params(model, (1, 8, 8))[0] == rows["pruned"]["flops"]
    with open_readonly(out.metrics) as f:
        curves = read_curves(f)
    assert curves["epoch"].tolist() == [1.0, 2.0] and curves["test_acc"][-1] == pytest.approx(rows["retrained"]["test_acc"])
    retrained = load_checkpoint(out.out / "retrained.pt")
    assert retrained["arch"] == pruned_state["arch"]
    # Running again finds the finished checkpoint and trains nothing more.
    monkeypatch.setattr(fit, "train_epoch", lambda *a, **k: pytest.fail("a finished run must not train again"))
    again = run_prune(cfg, retrain=True)
    assert again.rows["retrained"]["test_acc"] == pytest.approx(rows["retrained"]["test_acc"])


def test_retrain_resume_with_a_changed_recipe_is_refused_by_name_and_changes_no_file(trained: Path, tmp_path: Path) -> None:
    base = (*RETRAIN, "prune.retrain_epochs=1", f"prune.out={tmp_path}")
    run_prune(config(trained, *base), retrain=True)
    files = sorted(p for p in tmp_path.iterdir() if p.is_file())
    before = {p: p.read_bytes() for p in files}
    with pytest.raises(ResumeMismatch, match=r"prune\.retrain_lr: 0\.01 -> 0\.02\).*--overwrite"):
        run_prune(config(trained, *base, "prune.retrain_lr=0.02"), retrain=True)
    assert sorted(p for p in tmp_path.iterdir() if p.is_file()) == files
    assert {p: p.read_bytes() for p in files} == before
    # train.epochs and train.milestones are the `train` command's length, not the retraining's: no refusal
    again = run_prune(config(trained, *base, "train.epochs=7", "train.milestones=[3]"), retrain=True)
    assert load_checkpoint(again.checkpoint)["epoch"] == 1


def test_iterative_pruning_reaches_the_one_shot_widths_in_steps(trained: Path, tmp_path: Path) -> None:
    cfg = config(trained, *RETRAIN, "prune.retrain_epochs=1", "prune.iterations=2", f"prune.out={tmp_path}")
    out = run_prune(cfg, retrain=True)
    history = load_checkpoint(out.out / "retrained.pt")["history"]
    assert [h["widths"] for h in history] == [
        {"features.0": 12, "features.4": 24, "features.7": 56},  # halfway: 25%, 25%, 12.5% removed
        {"features.0": 8, "features.4": 16, "features.7": 48},
    ]
    assert out.rows["retrained"]["iterations"] == 2 and out.rows["retrained"]["epochs"] == 2


def test_scratch_trains_the_pruned_architecture_from_random_weights(trained: Path, tmp_path: Path) -> None:
    cfg = config(trained, *RETRAIN, "train.epochs=1", f"prune.out={tmp_path}")
    out = run_scratch(cfg)
    state = load_checkpoint(out.checkpoint)
    assert state["arch"]["widths"] == [8, 16, 32, 16, 64, 48] and state["epoch"] == 1
    assert 0 <= out.rows["scratch"]["test_acc"] <= 100
    assert out.rows["scratch"]["flops"] < count_flops_params(create_model("digits_vgg"), (1, 8, 8))[0]


def test_nothing_to_prune_or_a_preset_of_another_model_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to prune: set prune.preset"):
        run_prune(config(trained, f"prune.out={tmp_path}"), retrain=False)
    with pytest.raises(ValueError, match="'vgg16-a' is defined for model 'vgg16', not 'digits_vgg'"):
        run_prune(config(trained, "prune.preset=vgg16-a", f"prune.out={tmp_path}"), retrain=False)


def test_array_tasks_write_shards_that_merge_into_the_serial_result(trained: Path, tmp_path: Path) -> None:
    from effrep_hpc.store.sensitivity import merge_sensitivity_shards

    serial = tmp_path / "serial.h5"
    run_sensitivity(config(trained, *SCAN, f"prune.sensitivity={serial}"))
    target = tmp_path / "s.h5"
    shards = [
        run_sensitivity(config(trained, *SCAN, f"prune.sensitivity={target}", "dist.backend=array",
                               f"dist.task_id={i}", "dist.num_tasks=2"))
        for i in range(2)
    ]
    assert [s.name for s in shards] == ["s.shard-0-of-2.h5", "s.shard-1-of-2.h5"]
    assert [int(read_sensitivity(s)["done"].sum()) for s in shards] == [9, 9]
    _, done, total = merge_sensitivity_shards(shards, target)
    assert done == total == 18
    np.testing.assert_array_equal(read_sensitivity(target)["acc"], read_sensitivity(serial)["acc"])


def test_short_retraining_per_cell_is_seeded_so_reruns_agree(trained: Path, tmp_path: Path) -> None:
    one = ["prune.layers=[features.4]", "prune.sensitivity_ratios=[0.75]", "prune.sensitivity_criteria=[l1]"]
    plain, a, b = tmp_path / "plain.h5", tmp_path / "a.h5", tmp_path / "b.h5"
    run_sensitivity(config(trained, *one, f"prune.sensitivity={plain}"))
    for path in (a, b):
        run_sensitivity(config(trained, *one, "prune.sensitivity_retrain_epochs=1", "prune.retrain_lr=0.01",
                               f"prune.sensitivity={path}"))
    assert read_sensitivity(a)["loss"][0, 0, 0] == read_sensitivity(b)["loss"][0, 0, 0]
    assert read_sensitivity(a)["loss"][0, 0, 0] != read_sensitivity(plain)["loss"][0, 0, 0]
    assert read_sensitivity(a)["attrs"]["eval"] != read_sensitivity(plain)["attrs"]["eval"]
