"""Physical surgery: a pruned copy computes what the masked model computes, and saves without pickle."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from effrep_hpc.models import count_flops_params, create_model
from effrep_hpc.models.layers import ZooModel
from effrep_hpc.prune import (
    get_preset,
    keep_counts,
    mask_model,
    num_keep,
    prune_by_ratios,
    prune_groups,
    prune_model,
    select_filters,
)
from effrep_hpc.store.checkpoint import load_checkpoint, save_checkpoint

from prune_helpers import calibrated

# ResNet-34 runs on 64x64 inputs: the surgery does not depend on the resolution, the test time does.
CASES = [
    ("vgg16", (3, 32, 32), get_preset("vgg16-a").ratios),
    ("resnet56", (3, 32, 32), get_preset("resnet56-b").ratios),
    # the paper's first-conv preset plus every stage group (conv2s + shortcut, ranked by the shortcut)
    ("resnet34", (3, 64, 64), {**get_preset("resnet34-b").ratios, "layer1": 0.25, "layer2": 0.5, "layer3": 0.3, "layer4": 0.1}),
]


@pytest.mark.parametrize("strategy", ["independent", "greedy"])
@pytest.mark.parametrize("name,shape,ratios", CASES, ids=[c[0] for c in CASES])
def test_masked_and_physically_pruned_models_give_the_same_logits(name, shape, ratios, strategy) -> None:
    model = calibrated(name, shape)
    keep = select_filters(model, keep_counts(model, ratios), strategy=strategy)
    pruned = prune_model(model, keep)
    masked = mask_model(model, keep)
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        full, want, got = model(x), masked(x), pruned(x)
    assert torch.allclose(got, want, atol=1e-5), (got - want).abs().max()
    assert not torch.allclose(full, want, atol=1e-3), "pruning changed nothing: the test would prove nothing"
    f0, p0 = count_flops_params(model, shape)
    f1, p1 = count_flops_params(pruned, shape)
    assert f1 < f0 and p1 < p0


def test_pruned_model_is_a_plain_zoo_model_with_the_new_widths() -> None:
    model = create_model("resnet56")
    pruned, keep = prune_by_ratios(model, {"layer1.0.conv1": 0.5, 20: 0.25})
    assert type(pruned) is type(model) and isinstance(pruned, ZooModel)
    assert pruned.arch["inner_widths"][0] == 8 and pruned.arch["inner_widths"][9] == 24
    assert pruned.arch["inner_widths"][1] == 16 and pruned.arch["stage_widths"] == [16, 32, 64]
    assert pruned.get_submodule("layer1.0.conv1").conv.weight.shape == (8, 16, 3, 3)
    assert pruned.get_submodule("layer1.0.conv2").conv.weight.shape == (16, 8, 3, 3)
    assert pruned.get_submodule("layer1.0.conv1").bn.running_mean.shape == (8,)
    # the kept filters are the originals, in their original order
    w = model.get_submodule("layer1.0.conv1").conv.weight
    assert torch.equal(pruned.get_submodule("layer1.0.conv1").conv.weight, w[keep["layer1.0.conv1"]])
    assert keep["layer1.0.conv1"].tolist() == sorted(keep["layer1.0.conv1"].tolist())


def test_cutting_the_last_vgg_conv_removes_its_columns_of_the_flattened_fc() -> None:
    torch.manual_seed(0)
    model = create_model("mnist1d_net").eval()  # the FC reads a flattened 64 x 10 map
    keep = {"features.4": torch.tensor([0, 5, 63])}  # the last conv
    pruned = prune_model(model, keep)
    fc_old = model.fc.linear.weight
    fc_new = pruned.fc.linear.weight
    assert fc_new.shape == (64, 30)
    assert torch.equal(fc_new, torch.cat([fc_old[:, c * 10 : (c + 1) * 10] for c in (0, 5, 63)], dim=1))
    x = torch.randn(3, 1, 40)
    with torch.no_grad():
        assert torch.allclose(pruned(x), mask_model(model, keep)(x), atol=1e-5)


def test_pruned_model_saves_as_arch_and_state_dict_and_loads_without_pickle(tmp_path: Path) -> None:
    model = calibrated("digits_vgg", (1, 8, 8))
    pruned, _ = prune_by_ratios(model, {1: 0.5, 6: 0.75})
    path = save_checkpoint(
        tmp_path / "pruned.pt", {"arch_name": pruned.arch_name, "arch": pruned.arch, "model": pruned.state_dict()}
    )
    raw = torch.load(path, weights_only=True)  # refuses pickled modules or classes
    assert set(raw["model"]) == set(pruned.state_dict())
    state = load_checkpoint(path)
    rebuilt = create_model(state["arch_name"], **state["arch"]).eval()
    rebuilt.load_state_dict(state["model"])
    x = torch.randn(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(rebuilt(x), pruned(x))
    assert rebuilt.arch["widths"] == [8, 16, 32, 32, 64, 16]
    # a smaller model is a smaller file
    full = save_checkpoint(tmp_path / "full.pt", {"arch_name": model.arch_name, "arch": model.arch, "model": model.state_dict()})
    assert path.stat().st_size < full.stat().st_size


def test_kept_count_rounds_as_the_paper_and_never_reaches_zero() -> None:
    assert num_keep(16, 0.1) == 14  # 10% of 16 filters removes 2
    assert num_keep(16, 0.6) == 6
    assert num_keep(64, 0.3) == 44
    assert num_keep(10, 0.9) == 1  # 10 * (1 - 0.9) is 0.99999... in floating point
    assert num_keep(3, 0.9) == 1
    assert num_keep(7, 0.0) == 7
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        num_keep(8, 1.0)


def test_rounding_to_a_multiple_of_channels_rounds_pruned_layers_down() -> None:
    assert num_keep(32, 0.4, 8) == 16  # 19 kept -> 16
    assert num_keep(64, 0.3, 8) == 40  # 44 kept -> 40: at least the requested 30% goes
    assert num_keep(16, 0.1, 8) == 8  # 14 kept -> 8 (nearest would be 16: nothing pruned)
    assert num_keep(12, 0.9, 8) == 8  # never below one block
    assert num_keep(22, 0.05, 8) == 16  # 20 kept -> 16
    assert num_keep(8, 0.5, 8) == 4  # a layer of one block keeps the unrounded count
    assert num_keep(10, 0.0, 8) == 10  # a layer that is not pruned keeps its width


def test_surgery_rejects_bad_indices_with_a_message() -> None:
    model = create_model("digits_cnn")
    with pytest.raises(ValueError, match="out of range"):
        prune_model(model, {"features.0": torch.tensor([0, 32])})
    with pytest.raises(ValueError, match="repeat"):
        prune_model(model, {"features.0": torch.tensor([1, 1])})
    with pytest.raises(ValueError, match="not a prune group.*features.0"):
        prune_model(model, {"features.9": torch.tensor([0])})


def test_groups_follow_the_channel_graph_and_the_papers_layer_ids() -> None:
    vgg = prune_groups(create_model("vgg16"))
    assert [g.layer_ids for g in vgg] == [(i,) for i in range(1, 14)]
    assert vgg[-1].readers == (("fc", 1),)  # the 512 x 1 x 1 map flattened into the FC
    r56 = prune_groups(create_model("resnet56"))
    assert len(r56) == 27 and all(g.slot[0] == "inner_widths" for g in r56)  # option A ties the stages
    assert r56[-1].name == "layer3.8.conv1" and r56[-1].layer_ids == (54,)
    r34 = {g.name: g for g in prune_groups(create_model("resnet34"))}
    assert len(r34) == 16 + 4
    assert r34["layer2"].scorer == "layer2.0.shortcut" and r34["layer1"].scorer == "stem"
    assert set(r34["layer2"].writers) == {
        "layer2.0.conv2", "layer2.0.shortcut", "layer2.1.conv2", "layer2.2.conv2", "layer2.3.conv2"
    }
    assert ("layer3.0.shortcut", 1) in r34["layer2"].readers
    assert r34["layer4.2.conv1"].layer_ids == (32,)


def test_unknown_or_tied_layers_are_rejected_with_the_valid_names() -> None:
    model = create_model("resnet56")
    with pytest.raises(ValueError, match=r"unknown layer 'layer1.0.conv'.*did you mean 'layer1.0.conv1'"):
        keep_counts(model, {"layer1.0.conv": 0.5})
    option_a = r"option-A \(zero-padding identity\) shortcuts tie the stage widths.*cannot be pruned independently"
    with pytest.raises(ValueError, match=rf"layer 3 \(layer1.0.conv2\) of resnet56 cannot be pruned: .*'layer1'.*{option_a}"):
        keep_counts(model, {3: 0.5})
    with pytest.raises(ValueError, match=rf"^stage 'layer2' of resnet56 cannot be pruned: {option_a}.*first convs.*2,4,...,54"):
        keep_counts(model, {"layer2": 0.5})
    with pytest.raises(ValueError, match=rf"layer 'stem' of resnet56 cannot be pruned: .*'layer1'.*{option_a}"):
        keep_counts(model, {"stem": 0.5})
    assert keep_counts(create_model("resnet56_noshort"), {"layer2": 0.5}) == {"layer2": 16}  # no shortcut, no tie
    with pytest.raises(ValueError, match=r"no layer 56"):
        keep_counts(model, {56: 0.5})
    for bad in (1.0, -0.1, 1.5, "half"):
        with pytest.raises(ValueError, match=r"must (be a number in|lie in) \[0, 1\)"):
            keep_counts(model, {2: bad})
