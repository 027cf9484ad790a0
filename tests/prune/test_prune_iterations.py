"""Iterative pruning saves kept indices into the original model, composed across steps (issue 12, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import effrep_hpc.train.fit as fit
from effrep_hpc.config import load_config
from effrep_hpc.models import create_model
from effrep_hpc.prune import compose_keep, prune_model, select_filters
from effrep_hpc.runners.common import load_model
from effrep_hpc.runners.prune import describe, run_prune
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.checkpoint import load_checkpoint

VGG_CONVS = ["features.0", "features.1", "features.3", "features.4", "features.6", "features.7"]


def sliced_vgg(state: dict[str, torch.Tensor], keep: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The digits_vgg state_dict cut by hand: conv rows and BN entries of kept filters, columns of kept inputs."""
    out = dict(state)
    prev = None
    for unit in VGG_CONVS:
        rows = keep.get(unit)
        w = state[f"{unit}.conv.weight"]
        w = w[rows] if rows is not None else w
        out[f"{unit}.conv.weight"] = w[:, prev] if prev is not None else w
        if rows is not None:
            for k in ("weight", "bias", "running_mean", "running_var"):
                out[f"{unit}.bn.{k}"] = state[f"{unit}.bn.{k}"][rows]
        prev = rows
    if prev is not None:
        out["fc.linear.weight"] = state["fc.linear.weight"][:, prev]
    return out


def test_composed_indices_cut_the_original_into_the_model_of_the_last_step() -> None:
    torch.manual_seed(0)
    original = create_model("resnet18", num_classes=10)
    step1 = select_filters(original, {"layer1": 48, "layer2": 96, "layer2.0.conv1": 100})
    middle = prune_model(original, step1)
    step2 = select_filters(middle, {"layer1": 32, "layer2": 64, "layer3.1.conv1": 128})  # layer3.1.conv1: step 2 only
    final = prune_model(middle, step2)
    keep = compose_keep([step1, step2])
    assert keep["layer1"].tolist() != step2["layer1"].tolist()  # the last step's indices alone point elsewhere
    assert all(torch.equal(idx, idx.sort().values) for idx in keep.values())
    w = original.state_dict()
    got = final.state_dict()
    # stage widths: the stem, every conv2 of the stage and the shortcut into the next stage are cut by keep["layer..."]
    assert torch.equal(got["stem.conv.weight"], w["stem.conv.weight"][keep["layer1"]])
    assert torch.equal(got["layer1.1.conv2.conv.weight"], w["layer1.1.conv2.conv.weight"][keep["layer1"]])
    assert torch.equal(got["layer2.0.shortcut.conv.weight"], w["layer2.0.shortcut.conv.weight"][keep["layer2"]][:, keep["layer1"]])
    assert torch.equal(got["layer2.0.conv1.conv.weight"], w["layer2.0.conv1.conv.weight"][keep["layer2.0.conv1"]][:, keep["layer1"]])
    assert torch.equal(got["layer2.0.conv2.bn.running_var"], w["layer2.0.conv2.bn.running_var"][keep["layer2"]])
    assert torch.equal(got["layer3.1.conv1.conv.weight"], w["layer3.1.conv1.conv.weight"][keep["layer3.1.conv1"]])
    direct = prune_model(original, keep).state_dict()
    assert all(torch.equal(direct[k], got[k]) for k in got)


def test_a_step_without_saved_indices_is_refused() -> None:
    with pytest.raises(ValueError, match="pruning step 2 are missing.*--overwrite"):
        compose_keep([{"features.0": [0, 1]}, None])


BASE = ["model.name=digits_vgg", "data.name=digits", "run.progress=false", "run.threads=1", "train.batch_size=64"]


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_iterative_pruning_saves_indices_into_the_original_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No weight changes between the steps (training is a no-op), so the saved model must be the original cut by
    # the saved indices exactly; with real retraining the weights move but the indices mean the same.
    monkeypatch.setattr(fit, "train_epoch", lambda *a, **k: (0.0, 0.0, 1.0))
    run_train(load_config(None, [*BASE, f"run.out={tmp_path}", "train.epochs=1", "train.keep_every=0"]))
    ratios = "prune.ratios={features.0: 0.5, features.3: 0.5, features.7: 0.375}"
    cfg = load_config(None, [*BASE, f"run.out={tmp_path}", ratios, "prune.iterations=3", "prune.retrain_epochs=1",
                             "prune.speed_repeats=1", f"prune.out={tmp_path / 'pruned'}"])
    out = run_prune(cfg, retrain=True)
    saved = load_checkpoint(out.pruned)
    original = load_model(tmp_path / "checkpoint.pt", cfg, torch.device("cpu")).state_dict()
    keep = saved["keep"]
    assert {k: len(v) for k, v in keep.items()} == {"features.0": 8, "features.3": 16, "features.7": 40}
    assert [h["widths"]["features.0"] for h in saved["history"]] == [13, 10, 8]
    expected = sliced_vgg(original, keep)
    assert set(saved["model"]) == set(expected)
    for key, value in saved["model"].items():
        assert torch.equal(value, expected[key]), key
    assert saved["arch"]["widths"] == [8, 16, 16, 32, 64, 40]
    assert "widths after pruning: widths 8, 16 x2, 32, 64, 40; hidden 64" in describe(out, cfg).splitlines()
