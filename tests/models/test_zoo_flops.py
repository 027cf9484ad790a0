"""FLOPs (MACs) and parameter counts: the counting rule, and the totals published in the papers."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effrep_hpc.models import count_flops_params, create_model, layer_flops, model_spec

# (model, kwargs, published MACs, published params): Li et al., "Pruning Filters for Efficient
# ConvNets" (ICLR 2017), Tables 1-2. VGG-16-pruned-A halves conv_1 and conv_8..conv_13.
PUBLISHED = [
    ("vgg16", {}, 3.13e8, 1.5e7),
    ("vgg16", {"widths": [32, 64, 128, 128, 256, 256, 256, 256, 256, 256, 256, 256, 256]}, 2.06e8, 5.4e6),
    ("resnet56", {}, 1.25e8, 8.5e5),
    ("resnet110", {}, 2.53e8, 1.72e6),
    ("resnet34", {}, 3.64e9, 2.16e7),  # at 224x224, one image
]


@pytest.mark.parametrize("name,kw,flops,params", PUBLISHED)
def test_published_totals_within_one_percent(name: str, kw: dict, flops: float, params: float) -> None:
    model = create_model(name, **kw)
    got_flops, got_params = count_flops_params(model, model_spec(name).input_shape)
    assert got_flops == pytest.approx(flops, rel=0.01)
    assert got_params == pytest.approx(params, rel=0.01)


def test_resnet34_published_convention_leaves_out_projection_shortcuts() -> None:
    with torch.device("meta"):
        model = create_model("resnet34")
    flops, params = count_flops_params(model, (3, 224, 224), include_shortcuts=False)
    assert flops == pytest.approx(3.64e9, rel=0.002)
    assert params == pytest.approx(2.16e7, rel=0.002)


def test_counting_rule_on_a_hand_built_net() -> None:
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),  # 5x5 out: 25 * 8 * 27 MACs
        nn.BatchNorm2d(8),
        nn.Conv2d(8, 8, 3, stride=2, groups=4),  # 2x2 out: 4 * 8 * (2 * 9) MACs
        nn.Flatten(),
        nn.Linear(32, 6),  # 32 * 6 MACs
    )
    flops, params = count_flops_params(net, (3, 5, 5))
    assert flops == 25 * 8 * 27 + 4 * 8 * 18 + 32 * 6
    assert params == (8 * 27 + 8) + 2 * 8 + (8 * 18 + 8) + (32 * 6 + 6)
    assert layer_flops(net, (3, 5, 5)) == {"0": 25 * 8 * 27, "2": 4 * 8 * 18, "4": 32 * 6}


def test_conv1d_counted() -> None:
    net = nn.Sequential(nn.Conv1d(2, 4, 5, padding=2), nn.Flatten(), nn.Linear(40, 3))
    assert count_flops_params(net, (2, 10))[0] == 10 * 4 * 10 + 40 * 3


def test_meta_and_cpu_counts_agree() -> None:
    cpu = create_model("vgg9")
    with torch.device("meta"):
        meta = create_model("vgg9")
    assert count_flops_params(meta, (3, 32, 32)) == count_flops_params(cpu, (3, 32, 32))


def test_pruning_a_conv_lowers_flops_by_its_share() -> None:
    base = create_model("digits_vgg")
    widths = base.arch["widths"]
    smaller = create_model("digits_vgg", widths=[widths[0] // 2] + widths[1:])
    (f0, _), (f1, _) = count_flops_params(base, (1, 8, 8)), count_flops_params(smaller, (1, 8, 8))
    # Conv 0 (1 -> w0 at 8x8) and conv 1 (w0 -> w1 at 8x8) both lose half their MACs.
    half = widths[0] // 2
    assert f0 - f1 == 64 * half * 9 + 64 * widths[1] * half * 9


def test_counting_keeps_training_mode_and_works_with_bn1d() -> None:
    model = create_model("digits_mlp").train()
    flops, _ = count_flops_params(model, (1, 8, 8))
    assert model.training
    assert flops == 64 * 128 + 128 * 128 + 128 * 10


@pytest.mark.parametrize("shape", [(), (3, 0, 32), (3, "32", 32), (3.0, 32, 32)])
def test_bad_input_shape_is_rejected(shape: tuple) -> None:
    with pytest.raises(ValueError, match="input_shape"):
        count_flops_params(create_model("digits_cnn"), shape)
