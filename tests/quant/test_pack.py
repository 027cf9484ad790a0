"""Bit-packing: k bits per weight, exact round trip of trained quantized layers, refusal of float weights."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.models import create_model
from effrep_hpc.quant.algorithms import QuantizedOptimizer
from effrep_hpc.quant.pack import pack_codes, pack_weight, packed_bytes, unpack_codes, unpack_weight


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


@pytest.mark.parametrize("algorithm,bits", [("bc", 1), ("sr", 1), ("sr-adam", 2), ("r", 4)])
def test_trained_quantized_layers_unpack_bit_for_bit(algorithm: str, bits: int) -> None:
    torch.manual_seed(0)
    model = create_model("digits_mlp", widths=[16, 12])
    opt = QuantizedOptimizer(model, algorithm, lr=0.05, momentum=0.9, bits=bits)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        x, y = torch.randn(32, 1, 8, 8, generator=gen), torch.randint(0, 10, (32,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    params = dict(model.named_parameters())
    for name, delta in opt.layer_grids().items():
        entry = pack_weight(params[name].detach(), delta, bits)
        assert torch.equal(unpack_weight(entry), params[name].detach()), name
        assert packed_bytes(entry) == math.ceil(params[name].numel() * bits / 8) + 4


def test_float_weights_cannot_be_packed() -> None:
    with pytest.raises(ValueError, match="not on the layer's grid"):
        pack_weight(torch.randn(10, 10), 0.1, 1)
