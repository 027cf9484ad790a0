"""Diverged training stops at the first non-finite loss with one line and exit 3 (issue 11, item 7).

What it leaves: the checkpoint of the last good epoch (none of the diverged one), the weight snapshots up
to it, and the diverged epoch's row in metrics.h5 (NaN as computed). A sweep records such a run as
failed and goes on (tests/runners/test_quant.py).
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import h5py
import pytest

from effrep_hpc.config import load_config
from effrep_hpc.errors import UserError
from effrep_hpc.runners.quant import run_quant_train
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint
from effrep_hpc.train.fit import DivergedError, check_finite

ROOT = Path(__file__).resolve().parents[2]
TINY = ("data.name=digits", "data.train_size=400", "model.name=digits_mlp", "model.kwargs={widths: [16, 16]}",
        "train.batch_size=64", "train.lr=0.1", "run.progress=false", "run.threads=1")
# lr 0.1 in epoch 1, then 1e7: the loss is finite in epoch 1 and NaN in epoch 2
BLOW_UP = ("train.epochs=3", "train.schedule=multistep", "train.milestones=[1]", "train.gamma=1e8")


def test_diverged_error_is_a_user_error_with_exit_code_3() -> None:
    row = {"epoch": 4, "train_loss": math.inf, "lr": 1e6}
    with pytest.raises(DivergedError) as info:
        check_finite(row, [row], resumed_from=2, batch_size=128, tag="bc, 1 bit", lr_key="prune.retrain_lr")
    assert isinstance(info.value, UserError) and info.value.exit_code == 3
    assert str(info.value) == "diverged: training loss inf in epoch 4 (bc, 1 bit, lr 1e+06, batch 128); lower prune.retrain_lr"
    assert info.value.curves == [row] and info.value.resumed_from == 2
    check_finite({"epoch": 1, "train_loss": 0.5, "lr": 0.1}, [], resumed_from=0, batch_size=1)  # finite: no error


def test_train_exits_3_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run([sys.executable, "-m", "effrep_hpc.cli", "train", "configs/demo/digits.yaml", *TINY, *BLOW_UP,
                           f"run.out={out}"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: diverged: training loss nan in epoch 2 (lr 1e+07, batch 64); lower train.lr"
    ], proc.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert state["epoch"] == 1 and math.isfinite(state["final"]["train_loss"]), "the last good epoch's checkpoint stays"
    assert sorted(p.name for p in (out / "weights").iterdir()) == ["epoch_0000.pt", "epoch_0001.pt"]
    with h5py.File(out / "metrics.h5", "r") as f:
        assert f["done"][()].tolist() == [True, True, False] and math.isnan(f["train_loss"][1])


def test_quant_train_raises_diverged_after_its_last_good_checkpoint(tmp_path: Path) -> None:
    cfg = load_config(None, [*TINY, *BLOW_UP, f"run.out={tmp_path}", "quant.algorithm=bc", "quant.bits=1"])
    with pytest.raises(DivergedError, match=r"^diverged: training loss nan in epoch \d \(bc, 1 bit, lr 1e\+07, batch 64\); "
                                            r"lower train\.lr$") as info:
        run_quant_train(cfg)
    assert info.value.exit_code == 3
    diverged = int(str(info.value).split(" in epoch ")[1].split()[0])  # BC's clipped weights may last an epoch longer
    assert diverged >= 2 and load_checkpoint(tmp_path / "quant_checkpoint.pt")["epoch"] == diverged - 1


def test_prune_retrain_names_the_retrain_learning_rate(tmp_path: Path) -> None:
    from effrep_hpc.runners.prune import run_prune

    base = ["data.name=digits", "model.name=digits_vgg", "run.progress=false", "run.threads=1", f"run.out={tmp_path}"]
    run_train(load_config(None, [*base, "train.epochs=1", "train.keep_every=0"]))
    cfg = load_config(None, [*base, "prune.ratios={features.0: 0.5}", "prune.retrain_epochs=2", "prune.retrain_lr=1e9"])
    with pytest.raises(DivergedError, match=r"in epoch 1 \(lr 1e\+09, batch \d+\); lower prune\.retrain_lr$") as info:
        run_prune(cfg, retrain=True)
    assert info.value.exit_code == 3
    assert not (tmp_path / "pruned" / "checkpoint.pt").exists(), "no checkpoint of a diverged epoch"
