"""Bit-packing: k bits per weight, exact round trip of trained quantized layers, refusal of float weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.models import create_model
from effrep_hpc.quant.algorithms import QuantizedOptimizer
from effrep_hpc.quant.pack import pack_codes, pack_state, pack_weight, packed_bytes, unpack_codes, unpack_state, unpack_weight
from effrep_hpc.quant.quantizers import quantize_det


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("count", [1, 7, 8, 1001])
def test_codes_round_trip_in_ceil_n_bits_over_8_bytes(bits: int, count: int) -> None:
    codes = torch.randint(0, 2**bits, (count,), generator=torch.Generator().manual_seed(count))
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8 and packed.numel() == math.ceil(count * bits / 8)
    assert torch.equal(unpack_codes(packed, count, bits), codes)


def test_pack_codes_refuses_codes_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="codes must lie in 0..3"):
        pack_codes(torch.tensor([0, 4]), 2)


@pytest.mark.parametrize("grid", ["paper", "midrise"])
@pytest.mark.parametrize("algorithm,bits", [("bc", 1), ("sr", 1), ("sr-adam", 2), ("r", 4), ("sr", 16)])
def test_trained_quantized_layers_unpack_bit_for_bit(algorithm: str, bits: int, grid: str) -> None:
    torch.manual_seed(0)
    model = create_model("digits_mlp", widths=[16, 12])
    opt = QuantizedOptimizer(model, algorithm, lr=0.05, momentum=0.9, bits=bits, grid=grid)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    params = dict(model.named_parameters())
    for name, delta in opt.layer_grids().items():
        entry = pack_weight(params[name].detach(), delta, bits, grid)
        assert entry["grid"] == grid
        unpacked = unpack_weight(entry)
        assert torch.equal(unpacked, params[name].detach()) and not torch.signbit(unpacked[unpacked == 0]).any(), name
        assert packed_bytes(entry) == math.ceil(params[name].numel() * bits / 8) + 4
    packed, rest = pack_state(model.state_dict(), opt.layer_grids(), bits, grid)
    for name, value in unpack_state(packed, rest).items():
        assert torch.equal(value, model.state_dict()[name]), name


def test_entries_without_a_grid_are_midrise_and_a_wrong_grid_is_refused() -> None:
    delta, bits = 0.25, 3
    w = quantize_det(torch.randn(40, 7), delta, bits, "midrise")
    entry = pack_weight(w, delta, bits, "midrise")
    del entry["grid"]  # as written before there was a choice of grid
    assert torch.equal(unpack_weight(entry), w)
    with pytest.raises(ValueError, match="not on the layer's paper grid"):
        pack_weight(w, delta, bits, "paper")


def test_float_weights_cannot_be_packed() -> None:
    with pytest.raises(ValueError, match="not on the layer's paper grid"):
        pack_weight(torch.randn(10, 10), 0.1, 1)
