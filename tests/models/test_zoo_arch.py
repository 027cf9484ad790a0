"""Architecture as data: width kwargs, the ConvBN listing and the layer_io graph a pruning tool relies on."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from effrep_hpc.models import ConvBN, LinearBN, count_params, create_model, list_models, model_spec

ALL = list_models()


def meta_model(name: str, **kw) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def weight_layer(unit: nn.Module) -> nn.Module:
    """The conv/linear inside a ConvBN/LinearBN unit, or the plain classifier itself."""
    if isinstance(unit, ConvBN):
        return unit.conv
    if isinstance(unit, LinearBN):
        return unit.linear
    return unit


def widths_of(layer: nn.Module) -> tuple[int, int]:
    if isinstance(layer, nn.Linear):
        return layer.in_features, layer.out_features
    return layer.in_channels, layer.out_channels


@pytest.mark.parametrize("name", ALL)
def test_conv_bn_pairs_in_forward_order(name: str) -> None:
    model = meta_model(name).eval()
    pairs = model.conv_bn_pairs()
    assert all(bn.num_features == conv.out_channels for _, conv, bn in pairs)
    called: list[nn.Module] = []
    hooks = [conv.register_forward_hook(lambda m, i, o: called.append(m)) for _, conv, _ in pairs]
    model(torch.zeros(1, *model_spec(name).input_shape, device="meta"))
    for h in hooks:
        h.remove()
    assert [id(m) for m in called] == [id(conv) for _, conv, _ in pairs]


@pytest.mark.parametrize("name", ALL)
def test_layer_io_covers_every_weight_layer_with_true_widths(name: str) -> None:
    model = meta_model(name)
    spec = model_spec(name)
    io = model.layer_io()
    units = [weight_layer(model.get_submodule(e.name)) for e in io]
    every = [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    assert sorted(map(id, units)) == sorted(map(id, every))
    for entry, layer in zip(io, units):
        cin, cout = widths_of(layer)
        want_out = spec.num_classes if entry.out_slot is None else model.slot_width(entry.out_slot)
        assert cout == want_out, entry
        if entry.in_slot is None:
            assert cin in (spec.input_shape[0], math.prod(spec.input_shape)), entry
        else:
            assert cin == model.slot_width(entry.in_slot) * entry.in_repeat, entry


def test_resnet_first_convs_align_with_inner_widths() -> None:
    model = meta_model("resnet56")
    names = model.block_first_convs()
    assert len(names) == len(model.arch["inner_widths"]) == 27
    assert names[0] == "layer1.0.conv1" and names[-1] == "layer3.8.conv1"
    slots = {e.name: e.out_slot for e in model.layer_io()}
    assert [slots[n] for n in names] == [("inner_widths", i) for i in range(27)]


def _prune(model: nn.Module, slot: tuple, keep: list[int]) -> nn.Module:
    """Generic filter surgery driven only by layer_io: slice every writer and reader of ``slot``."""
    state = model.state_dict()
    for entry in model.layer_io():
        unit = model.get_submodule(entry.name)
        inner = ".conv" if isinstance(unit, ConvBN) else ".linear" if isinstance(unit, LinearBN) else ""
        prefix = entry.name + inner
        if entry.out_slot == slot:
            state[prefix + ".weight"] = state[prefix + ".weight"][keep]
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"{entry.name}.bn.{key}"] = state[f"{entry.name}.bn.{key}"][keep]
        if entry.in_slot == slot:
            r = entry.in_repeat
            cols = [c * r + j for c in keep for j in range(r)]
            state[prefix + ".weight"] = state[prefix + ".weight"][:, cols]
    arch = model.arch
    key, index = slot
    if index is None:
        arch[key] = len(keep)
    else:
        arch[key][index] = len(keep)
    pruned = create_model(model.arch_name, **arch).eval()
    pruned.load_state_dict(state)
    return pruned


SURGERY = [
    ("digits_cnn", ("widths", 1), (1, 8, 8)),
    ("digits_cnn", ("widths", 2), (1, 8, 8)),  # global pool head
    ("digits_vgg", ("widths", 5), (1, 8, 8)),
    ("digits_vgg", ("hidden", None), (1, 8, 8)),
    ("mnist1d_net", ("widths", 3), (1, 40)),  # flattened 64 x 10 map feeds the FC
    ("vgg9", ("widths", 6), (3, 32, 32)),  # flattened 256 x 4 x 4 map
    ("digits_mlp", ("widths", 0), (1, 8, 8)),
    ("resnet20", ("inner_widths", 4), (3, 16, 16)),
    ("resnet18", ("inner_widths", 3), (3, 32, 32)),
    ("resnet18", ("stage_widths", 1), (3, 32, 32)),  # stage slot: conv2s, projection, next readers
]


@pytest.mark.parametrize("name,slot,shape", SURGERY)
def test_layer_io_is_enough_for_exact_filter_surgery(name: str, slot: tuple, shape: tuple) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    width = model.slot_width(slot)
    drop = list(range(1, width, 3))
    keep = [c for c in range(width) if c not in drop]
    # Silence the dropped channels (BN scale and shift 0): the net then computes exactly what the
    # smaller net computes, so any index slip in the surgery shows up as a mismatch.
    with torch.no_grad():
        for entry in model.layer_io():
            if entry.out_slot == slot:
                bn = model.get_submodule(entry.name).bn
                bn.weight[drop] = 0
                bn.bias[drop] = 0
    pruned = _prune(model, slot, keep)
    assert pruned.slot_width(slot) == len(keep)
    x = torch.randn(4, *shape)
    with torch.no_grad():
        assert torch.allclose(model(x), pruned(x), atol=1e-5)


def test_vgg_width_changes_params_by_the_layers_it_touches() -> None:
    widths = meta_model("vgg9").arch["widths"]
    small = list(widths)
    small[2] = 100  # conv 64->128 becomes 64->100; conv 128->128 reads 100
    delta = count_params(meta_model("vgg9")) - count_params(meta_model("vgg9", widths=small))
    cut = widths[2] - 100
    assert delta == cut * widths[1] * 9 + 2 * cut + widths[3] * cut * 9


def test_vgg_hidden_width_and_removal() -> None:
    base = count_params(meta_model("vgg9"))
    # FC 4096 -> 256 (no bias) + BN(256) + classifier 256 -> 10: halving hidden removes half of each.
    assert base - count_params(meta_model("vgg9", hidden=128)) == 128 * 4096 + 2 * 128 + 128 * 10
    no_fc = meta_model("digits_vgg", hidden=0)
    assert no_fc.fc is None and no_fc.classifier.in_features == 64


def test_resnet_inner_width_changes_only_its_block() -> None:
    inner = [16] * 9 + [32] * 9 + [64] * 9
    inner[10] = 20
    model = meta_model("resnet56", inner_widths=inner)
    block = model.get_submodule("layer2.1")
    assert block.conv1.conv.out_channels == 20 and block.conv2.conv.in_channels == 20
    delta = count_params(meta_model("resnet56")) - count_params(model)
    assert delta == 12 * 32 * 9 + 2 * 12 + 32 * 12 * 9


def test_inner_widths_default_to_custom_stage_widths() -> None:
    model = meta_model("resnet20", stage_widths=[8, 16, 24])
    assert model.arch["inner_widths"] == [8] * 3 + [16] * 3 + [24] * 3
    assert model.fc.in_features == 24


def test_imagenet_stage_widths_set_conv2_and_projection() -> None:
    model = meta_model("resnet34", stage_widths=[64, 128, 200, 512])
    for name, block in model.blocks():
        if name.startswith("layer3."):
            assert block.conv2.conv.out_channels == 200
            assert block.conv1.conv.out_channels == 200  # inner defaults to the stage width
    assert model.get_submodule("layer3.0.shortcut").conv.out_channels == 200
    assert model.get_submodule("layer4.0.shortcut").conv.in_channels == 200


def test_narrowing_cifar_stage_uses_a_projection() -> None:
    model = create_model("resnet20", stage_widths=[32, 16, 64]).eval()
    assert isinstance(model.get_submodule("layer2.0.shortcut"), ConvBN)
    assert model(torch.randn(2, 3, 16, 16)).shape == (2, 10)


def test_mlp_widths() -> None:
    model = meta_model("digits_mlp", widths=[32, 16])
    assert [lin.out_features for _, lin, _ in model.linear_bn_pairs()] == [32, 16]
    assert model.classifier.in_features == 16


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"widths": [64] * 6}, "7 entries"),
        ({"widths": [64, 64, 128, 128, 256, 256, 0]}, r"widths\[6\]"),
        ({"widths": [64, 64, 128, 128, 256, 256, 2.5]}, "positive int"),
        ({"widths": "64"}, "list of 7"),
        ({"hidden": -3}, "hidden"),
        ({"num_classes": 0}, "num_classes"),
    ],
)
def test_bad_widths_are_rejected_with_the_entry(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        create_model("vgg9", **kw)


def test_bad_resnet_widths_name_the_count() -> None:
    with pytest.raises(ValueError, match="27 entries"):
        create_model("resnet56", inner_widths=[16] * 26)
    with pytest.raises(ValueError, match="stage_widths"):
        create_model("resnet34", stage_widths=[64, 128, 256])
