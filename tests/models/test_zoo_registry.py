"""Every registered model: builds by name, gives logits, rebuilds from its arch dict; registry errors."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from effrep_hpc.models import ModelSpec, create_model, list_models, model_spec, register_model
from effrep_hpc.models.resnet import BasicBlock, PadShortcut

ALL = list_models()
NOSHORT = [n for n in ALL if n.endswith("_noshort")]


def forward_shape(spec: ModelSpec) -> tuple[int, ...]:
    """The registered input shape, except 224x224 ImageNet nets run at 64x64 to keep the suite fast."""
    return (3, 64, 64) if spec.input_shape == (3, 224, 224) else spec.input_shape


def meta_model(name: str, **kw) -> nn.Module:
    """Build without allocating weights: enough for structure checks of the large nets."""
    with torch.device("meta"):
        return create_model(name, **kw)


def test_registry_lists_the_required_families() -> None:
    required = {
        "vgg9", "vgg16", "digits_cnn", "digits_vgg", "mnist1d_net", "digits_mlp", "resnet18", "resnet34",
        "wrn56_2", "wrn56_4", "wrn56_8",
    }
    required |= {f"resnet{d}{s}" for d in (20, 32, 44, 56, 110) for s in ("", "_noshort")}
    assert required <= set(ALL)
    assert ALL == sorted(ALL)


@pytest.mark.parametrize("name", ALL)
def test_forward_gives_logits_per_sample(name: str) -> None:
    spec = model_spec(name)
    torch.manual_seed(0)
    model = create_model(name).eval()
    x = torch.randn(3, *forward_shape(spec))
    with torch.no_grad():
        out = model(x)
        # Different inputs must give different logits (a constant output would mean a broken graph). In
        # train mode: at initialisation a deep net without shortcuts (digits_resnet110_noshort) loses its
        # input signal through the unnormalised eval-mode stack, which is the paper's point, not a bug.
        trained_mode = model.train()(x)
    assert out.shape == (3, spec.num_classes)
    assert torch.isfinite(out).all()
    assert not torch.allclose(trained_mode[0], trained_mode[1])


@pytest.mark.parametrize("name", ALL)
def test_arch_rebuilds_identical_state_dict_layout(name: str) -> None:
    model = meta_model(name)
    assert model.arch_name == name
    assert model.arch["num_classes"] == model_spec(name).num_classes
    arch = json.loads(json.dumps(model.arch))  # what a checkpoint file would hold
    rebuilt = meta_model(model.arch_name, **arch)
    a, b = model.state_dict(), rebuilt.state_dict()
    assert list(a) == list(b)
    assert all(a[k].shape == b[k].shape for k in a)
    assert rebuilt.arch == model.arch


def test_arch_plus_state_dict_reproduces_outputs() -> None:
    torch.manual_seed(0)
    model = create_model("resnet20", inner_widths=[5, 16, 9, 32, 7, 32, 64, 3, 64], num_classes=4).eval()
    rebuilt = create_model(model.arch_name, **json.loads(json.dumps(model.arch))).eval()
    rebuilt.load_state_dict(model.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert torch.equal(model(x), rebuilt(x))


def test_arch_is_a_copy() -> None:
    model = meta_model("vgg9")
    arch = model.arch
    arch["widths"][0] = 1
    assert model.arch["widths"][0] == 64


@pytest.mark.parametrize("name", ["digits_cnn", "resnet20", "digits_mlp"])
def test_num_classes_override(name: str) -> None:
    model = create_model(name, num_classes=3).eval()
    with torch.no_grad():
        out = model(torch.randn(2, *model_spec(name).input_shape))
    assert out.shape == (2, 3)
    assert model.arch["num_classes"] == 3


def test_unknown_name_names_a_close_one() -> None:
    with pytest.raises(KeyError, match="resnet56"):
        create_model("resnet57")
    with pytest.raises(KeyError, match="vgg16"):
        model_spec("vgg_16")


def test_unknown_kwarg_names_the_valid_one() -> None:
    with pytest.raises(ValueError, match="'widths'"):
        create_model("vgg9", widhts=[64] * 7)


def test_duplicate_registration_is_refused() -> None:
    with pytest.raises(ValueError, match="registered twice"):
        register_model("vgg9", input_shape=(3, 32, 32), num_classes=10)(lambda **kw: nn.Identity())
    assert model_spec("vgg9").input_shape == (3, 32, 32)


def test_spec_fields() -> None:
    spec = model_spec("resnet34")
    assert (spec.name, spec.input_shape, spec.num_classes) == ("resnet34", (3, 224, 224), 1000)
    assert model_spec("mnist1d_net").input_shape == (1, 40)


@pytest.mark.parametrize("name", NOSHORT)
def test_noshort_blocks_have_no_skip(name: str) -> None:
    plain, base = meta_model(name), meta_model(name.removesuffix("_noshort"))
    assert all(block.shortcut is None for _, block in plain.blocks())
    assert all(block.shortcut is not None for _, block in base.blocks())
    assert plain.arch == base.arch


@pytest.mark.parametrize("name", ["resnet20_noshort", "resnet56_noshort", "wrn56_2_noshort"])
def test_noshort_output_differs_with_same_weights(name: str) -> None:
    torch.manual_seed(0)
    base = create_model(name.removesuffix("_noshort")).eval()
    plain = create_model(name).eval()
    # Option-A shortcuts carry no weights, so the two nets share one state_dict.
    plain.load_state_dict(base.state_dict())
    assert any(isinstance(block.shortcut, (nn.Identity, PadShortcut)) for _, block in base.blocks())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert not torch.allclose(base(x), plain(x), atol=1e-4)
        # Silence the last block's residual branch: without a skip nothing of x reaches the head.
        for model in (base, plain):
            model.blocks()[-1][1].conv2.bn.weight.zero_()
            model.blocks()[-1][1].conv2.bn.bias.zero_()
        y_plain, y_base = plain(x), base(x)
    assert torch.allclose(y_plain[0], y_plain[1])
    assert not torch.allclose(y_base[0], y_base[1])


def test_residual_block_adds_its_input() -> None:
    torch.manual_seed(0)
    block = BasicBlock(8, 4, 8, 1, "A").eval()
    x = torch.randn(2, 8, 6, 6)
    with torch.no_grad():
        assert torch.allclose(block(x), torch.relu(block.conv2(block.conv1(x)) + x))


def test_option_a_pads_channels_and_subsamples() -> None:
    block = BasicBlock(4, 8, 8, 2, "A")
    assert isinstance(block.shortcut, PadShortcut)
    x = torch.randn(1, 4, 6, 6)
    out = block.shortcut(x)
    assert out.shape == (1, 8, 3, 3)
    assert torch.equal(out[:, :4], x[:, :, ::2, ::2])
    assert not out[:, 4:].any()
    # Option A cannot drop channels: a narrowing stage falls back to a projection.
    assert isinstance(BasicBlock(8, 4, 4, 2, "A").shortcut.conv, nn.Conv2d)
    assert sum(p.numel() for p in BasicBlock(16, 16, 32, 2, "A").shortcut.parameters()) == 0


def test_imagenet_resnet_projects_where_shape_changes() -> None:
    model = meta_model("resnet34")
    projected = [n for n, b in model.blocks() if not isinstance(b.shortcut, nn.Identity)]
    assert projected == ["layer2.0", "layer3.0", "layer4.0"]


def test_weight_init() -> None:
    torch.manual_seed(0)
    model = create_model("vgg16")
    for _, conv, bn in model.conv_bn_pairs():
        assert torch.equal(bn.weight, torch.ones_like(bn.weight))
        assert torch.equal(bn.bias, torch.zeros_like(bn.bias))
        assert conv.bias is None
    conv = model.conv_bn_pairs()[-1][1]  # 512x512x3x3: 2.4M samples
    fan_out = conv.out_channels * conv.kernel_size[0] * conv.kernel_size[1]
    assert conv.weight.std().item() == pytest.approx((2.0 / fan_out) ** 0.5, rel=0.02)
    assert abs(conv.weight.mean().item()) < 1e-3
