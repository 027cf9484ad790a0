"""Bit-packing of quantized weights: k bits per weight plus one float scale (Delta) per layer.

A weight on a k-bit grid is ``(j + 1/2) Delta`` with ``j + 2**(k-1)`` in ``0 .. 2**k - 1``; packing stores
that code in k bits (most significant first, weights in row-major order, padded to a whole byte), so a
binary layer costs one bit per weight. Unpacking rebuilds ``(code - 2**(k-1) + 1/2) * Delta`` with the same
float32 arithmetic the optimizer used, so the weights come back bit for bit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

from effrep_hpc.quant.quantizers import check_bits, from_codes, grid_codes, on_grid


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


def pack_weight(w: Tensor, delta: float, bits: int) -> dict[str, Any]:
    """Pack one layer's weights, which must lie on its grid: ``{"data", "shape", "delta", "bits"}``."""
    dtype_delta = torch.tensor(delta, dtype=w.dtype)
    if not on_grid(w.detach().cpu(), dtype_delta, bits):
        raise ValueError("these weights are not on the layer's grid; only quantized layers can be packed")
    codes = grid_codes(w.detach().cpu(), dtype_delta, bits)
    return {"data": pack_codes(codes, bits), "shape": list(w.shape), "delta": float(delta), "bits": int(bits)}


def unpack_weight(entry: dict[str, Any], dtype: torch.dtype = torch.float32) -> Tensor:
    """Rebuild the weights of a :func:`pack_weight` entry (bit-identical to the ones packed)."""
    shape = [int(s) for s in entry["shape"]]
    count = math.prod(shape)
    codes = unpack_codes(entry["data"], count, int(entry["bits"]))
    return from_codes(codes, torch.tensor(float(entry["delta"]), dtype=dtype), int(entry["bits"]), dtype).reshape(shape)


def packed_bytes(entry: dict[str, Any]) -> int:
    """Storage of one packed layer: its bytes plus a float32 scale."""
    return int(entry["data"].numel()) + 4
