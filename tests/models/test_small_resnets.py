"""The CIFAR ResNet layout on the small datasets (digits 1x8x8, mnist1d 1x40) and the unchanged CIFAR nets."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from effrep_hpc.models import count_flops_params, count_params, create_model, list_models, model_spec
from effrep_hpc.models.resnet import PadShortcut

SMALL = [f"{d}_resnet{n}{s}" for d in ("digits", "mnist1d") for n in (20, 56, 110) for s in ("", "_noshort")]


def expected_state_shapes(depth: int, widths: tuple[int, int, int], cin: int, ndim: int) -> dict[str, tuple]:
    """Every state_dict entry of a CIFAR-layout ResNet (option A or no shortcut), written out by hand."""
    k = (3,) * ndim
    shapes: dict[str, tuple] = {}

    def convbn(name: str, i: int, o: int) -> None:
        shapes[f"{name}.conv.weight"] = (o, i, *k)
        for p in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{p}"] = (o,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()

    convbn("stem", cin, widths[0])
    prev = widths[0]
    for s, w in enumerate(widths):
        for b in range((depth - 2) // 6):
            convbn(f"layer{s + 1}.{b}.conv1", prev, w)
            convbn(f"layer{s + 1}.{b}.conv2", w, w)
            prev = w
    shapes["fc.weight"] = (10, widths[-1])
    shapes["fc.bias"] = (10,)
    return shapes


def state_shapes(model: nn.Module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def test_all_small_resnets_are_registered_with_their_input() -> None:
    assert set(SMALL) <= set(list_models())
    for name in SMALL:
        assert model_spec(name).input_shape == ((1, 8, 8) if name.startswith("digits") else (1, 40))
        assert model_spec(name).num_classes == 10


@pytest.mark.parametrize(
    "name,depth,widths,cin,ndim",
    [
        ("digits_resnet20", 20, (8, 16, 32), 1, 2),
        ("mnist1d_resnet56_noshort", 56, (8, 16, 32), 1, 1),
        # The CIFAR nets must keep every parameter name and shape they had before the small nets came.
        ("resnet20", 20, (16, 32, 64), 3, 2),
        ("resnet56", 56, (16, 32, 64), 3, 2),
    ],
)
def test_state_dict_layout_matches_the_hand_listing(name: str, depth: int, widths: tuple, cin: int, ndim: int) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert state_shapes(model) == expected_state_shapes(depth, widths, cin, ndim)
    assert list(model.state_dict()) == list(expected_state_shapes(depth, widths, cin, ndim))  # same order too


def test_digits_resnet20_params_and_flops_by_hand() -> None:
    # Params: each 3x3 conv c_in*c_out*9 plus BN 2*c_out; fc 32*10 + 10.
    def conv(i: int, o: int) -> int:
        return i * o * 9 + 2 * o

    params = conv(1, 8) + 6 * conv(8, 8)
    params += conv(8, 16) + 5 * conv(16, 16) + conv(16, 32) + 5 * conv(32, 32) + 32 * 10 + 10
    # MACs: out elements * c_in * 9 per conv, at 8x8, 4x4 and 2x2.
    macs = 64 * (1 * 8 * 9 + 6 * 8 * 8 * 9)
    macs += 16 * (8 * 16 * 9 + 5 * 16 * 16 * 9) + 4 * (16 * 32 * 9 + 5 * 32 * 32 * 9) + 320
    model = create_model("digits_resnet20")
    assert count_flops_params(model, (1, 8, 8)) == (macs, params)
    assert params == 67_906


def test_cifar_resnets_keep_their_published_counts() -> None:
    # The totals tests/models/test_zoo_flops.py ties to the pruning paper (what `effrep models` lists).
    with torch.device("meta"):
        assert count_flops_params(create_model("resnet56"), (3, 32, 32)) == (125_485_696, 853_018)
        assert count_flops_params(create_model("resnet110"), (3, 32, 32)) == (252_887_680, 1_727_962)
        assert count_params(create_model("resnet20")) == 269_722


def test_width_multiplier_scales_the_default_stages() -> None:
    with torch.device("meta"):
        wide = create_model("digits_resnet56", k=4)
    assert wide.arch["stage_widths"] == [32, 64, 128]
    assert wide.arch["inner_widths"] == [32] * 9 + [64] * 9 + [128] * 9
    assert "k" not in wide.arch  # the widths are the data: a checkpoint rebuilds from them alone
    with torch.device("meta"):
        rebuilt = create_model(wide.arch_name, **wide.arch)
    assert state_shapes(rebuilt) == state_shapes(wide)
    with pytest.raises(ValueError, match="k .* or stage_widths"):
        create_model("digits_resnet20", k=2, stage_widths=[8, 16, 32])
    with pytest.raises(ValueError, match="k must be a positive int"):
        create_model("digits_resnet20", k=0)


@pytest.mark.parametrize("name", ["digits_resnet20", "mnist1d_resnet20"])
def test_silenced_block_outputs_zero_only_without_shortcut(name: str) -> None:
    """With conv2's BN scale and shift at 0 a block's residual branch is 0: the block then outputs relu(x)
    through its identity, or exactly 0 when there is no skip connection."""
    torch.manual_seed(0)
    base = create_model(name).eval()
    plain = create_model(f"{name}_noshort").eval()
    plain.load_state_dict(base.state_dict())  # option A carries no weights: one state_dict fits both
    x = torch.randn(4, *model_spec(name).input_shape)
    outs: dict[str, torch.Tensor] = {}
    for label, model in (("base", base), ("plain", plain)):
        block = model.get_submodule("layer2.1")  # a non-downsampling block: identity shortcut in base
        with torch.no_grad():
            block.conv2.bn.weight.zero_()
            block.conv2.bn.bias.zero_()
        hook = block.register_forward_hook(lambda m, i, o, label=label: outs.__setitem__(label, (i[0], o)))
        with torch.no_grad():
            model(x)
        hook.remove()
    block_in, block_out = outs["base"]
    assert torch.equal(block_out, torch.relu(block_in)) and block_out.abs().sum() > 0
    assert not outs["plain"][1].any()


def test_option_a_shortcut_on_1d_signals() -> None:
    x = torch.randn(2, 8, 20)
    out = PadShortcut(2, 8)(x)
    assert out.shape == (2, 16, 10)
    assert torch.equal(out[:, :8], x[:, :, ::2])
    assert not out[:, 8:].any()
    model = create_model("mnist1d_resnet20")
    assert all(isinstance(m, nn.Conv1d) for _, m, _ in model.conv_bn_pairs())
    assert isinstance(model.get_submodule("layer2.0.shortcut"), PadShortcut)
