"""Quantized training (Li et al., NeurIPS 2017): grids and rounding, BC/SR/R optimizers, packing, Markov chains.

- :mod:`~effrep_hpc.quant.quantizers`: the k-bit grid, Q_d and Q_s, the per-layer Delta rule.
- :mod:`~effrep_hpc.quant.algorithms`: :class:`QuantizedOptimizer` (FP, BC, SR, R with SGD or Adam steps) and
  :func:`quantized_layers` (which weights are quantized).
- :mod:`~effrep_hpc.quant.pack`: k bits per weight plus a per-layer scale, bit-exact round trip.
- :mod:`~effrep_hpc.quant.markov`: exact stationary excess loss of SR and BC on a noisy 1-D quadratic.

Pure math: tensors and modules in, tensors and numbers out; no files, no printing.
"""

from __future__ import annotations

from effrep_hpc.quant.algorithms import ALGORITHMS, AlgorithmSpec, QuantizedOptimizer, get_algorithm, quantized_layers
from effrep_hpc.quant.quantizers import (
    DELTA_RULES,
    MAX_BITS,
    choose_delta,
    from_codes,
    gaussian_step,
    grid_codes,
    grid_limit,
    on_grid,
    quantize_det,
    quantize_stoch,
)

__all__ = [
    "ALGORITHMS",
    "DELTA_RULES",
    "MAX_BITS",
    "AlgorithmSpec",
    "QuantizedOptimizer",
    "choose_delta",
    "from_codes",
    "gaussian_step",
    "get_algorithm",
    "grid_codes",
    "grid_limit",
    "on_grid",
    "quantize_det",
    "quantize_stoch",
    "quantized_layers",
]
