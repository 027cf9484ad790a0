"""Bit-packing of quantized weights: k bits per weight plus one float scale (Delta) per layer.

A weight on a k-bit grid is ``(j + offset) Delta`` (:func:`~effrep_hpc.quant.quantizers.grid_levels`: the
paper grid ``j = -(2**(k-1) - 1) .. 2**(k-1) - 1``, offset 0; midrise ``j = -2**(k-1) .. 2**(k-1) - 1``,
offset 1/2); packing stores its code ``j - lo`` in k bits (most significant first, weights in row-major
order, padded to a whole byte), so a binary layer costs one bit per weight. Each packed entry records its
grid (entries without one are midrise, the only grid before there was a choice). Unpacking rebuilds
``(code + lo + offset) * Delta`` with the same float32 arithmetic the optimizer used, so the weights come back
bit for bit. :func:`pack_state` packs
the quantized layers of a whole state_dict (the other tensors stay float), :func:`unpack_state` inverts
it, and :func:`packed_size` counts what that saves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch
from torch import Tensor

from effrep_hpc.quant.quantizers import check_bits, check_grid, from_codes, grid_codes, on_grid


def pack_codes(codes: Tensor, bits: int) -> Tensor:
    """Pack integer codes (0 .. 2**bits - 1) into a uint8 tensor of ceil(n * bits / 8) bytes."""
    check_bits(bits)
    flat = codes.reshape(-1).cpu().numpy().astype(np.int64)
    if flat.size and (flat.min() < 0 or flat.max() >= 1 << bits):
        raise ValueError(f"codes must lie in 0..{(1 << bits) - 1} for {bits} bit(s)")
    shifts = np.arange(bits - 1, -1, -1, dtype=np.int64)
    planes = ((flat[:, None] >> shifts) & 1).astype(np.uint8)
    return torch.from_numpy(np.packbits(planes.reshape(-1)))


def unpack_codes(packed: Tensor, count: int, bits: int) -> Tensor:
    """Inverse of :func:`pack_codes`: the first ``count`` codes as int64."""
    check_bits(bits)
    planes = np.unpackbits(packed.cpu().numpy())[: count * bits].reshape(count, bits).astype(np.int64)
    weights = 1 << np.arange(bits - 1, -1, -1, dtype=np.int64)
    return torch.from_numpy(planes @ weights)


def pack_weight(w: Tensor, delta: float, bits: int, grid: str = "paper") -> dict[str, Any]:
    """Pack one layer's weights, which must lie on its grid: ``{"data", "shape", "delta", "bits", "grid"}``."""
    dtype_delta = torch.tensor(delta, dtype=w.dtype)
    if not on_grid(w.detach().cpu(), dtype_delta, bits, check_grid(grid)):
        raise ValueError(f"these weights are not on the layer's {grid} grid; only quantized layers can be packed")
    codes = grid_codes(w.detach().cpu(), dtype_delta, bits, grid)
    return {"data": pack_codes(codes, bits), "shape": list(w.shape), "delta": float(delta), "bits": int(bits),
            "grid": grid}


def unpack_weight(entry: dict[str, Any], dtype: torch.dtype = torch.float32) -> Tensor:
    """Rebuild the weights of a :func:`pack_weight` entry (bit-identical to the ones packed)."""
    shape = [int(s) for s in entry["shape"]]
    count = math.prod(shape)
    bits, grid = int(entry["bits"]), str(entry.get("grid", "midrise"))
    codes = unpack_codes(entry["data"], count, bits)
    return from_codes(codes, torch.tensor(float(entry["delta"]), dtype=dtype), bits, dtype, grid).reshape(shape)


def packed_bytes(entry: dict[str, Any]) -> int:
    """Storage of one packed layer: its bytes plus a float32 scale."""
    return int(entry["data"].numel()) + 4


def pack_state(
    state: Mapping[str, Tensor], grids: Mapping[str, float], bits: int, grid: str = "paper"
) -> tuple[dict[str, dict[str, Any]], dict[str, Tensor]]:
    """Pack the weights named in ``grids`` (name -> Delta) of a state_dict on ``grid``: (packed entries, the rest)."""
    missing = sorted(set(grids) - set(state))
    if missing:
        raise KeyError(f"the quantized layers {missing} are not in this state_dict; is it the model they were trained in?")
    packed = {name: pack_weight(state[name].detach().cpu(), float(delta), bits, grid) for name, delta in grids.items()}
    rest = {k: v.detach().cpu().clone() for k, v in state.items() if k not in packed}
    return packed, rest


def unpack_state(packed: Mapping[str, dict[str, Any]], rest: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The state_dict that :func:`pack_state` packed, its quantized weights bit-identical to the originals."""
    return {**rest, **{name: unpack_weight(entry) for name, entry in packed.items()}}


@dataclass
class PackedSize:
    """Bytes of a packed model against float32: the quantized weights alone, and the whole model."""

    layers: int
    weight_bytes_float32: int
    weight_bytes_packed: int
    model_bytes_float32: int
    model_bytes_packed: int

    @property
    def weight_ratio(self) -> float:
        """float32 size / packed size of the quantized weights (32 for one bit, less the scales)."""
        return self.weight_bytes_float32 / max(self.weight_bytes_packed, 1)

    @property
    def model_ratio(self) -> float:
        """float32 size / packed size of the whole model (float BN parameters and biases included)."""
        return self.model_bytes_float32 / max(self.model_bytes_packed, 1)


def packed_size(packed: Mapping[str, dict[str, Any]], rest: Mapping[str, Tensor]) -> PackedSize:
    """The sizes of a :func:`pack_state` result (the float tensors count at their own element size)."""
    q_float = sum(4 * math.prod(int(s) for s in entry["shape"]) for entry in packed.values())
    q_packed = sum(packed_bytes(entry) for entry in packed.values())
    rest_bytes = sum(v.numel() * v.element_size() for v in rest.values())
    return PackedSize(len(packed), q_float, q_packed, q_float + rest_bytes, q_packed + rest_bytes)
