"""Quantized training (Li et al., NeurIPS 2017): grids and rounding, BC/SR/R optimizers, packing, Markov chains.

- :mod:`~effrep_hpc.quant.quantizers`: the k-bit grids (the paper's Delta*Z, or midrise), Q_d and Q_s, SR's step
  in units of Delta, the per-layer Delta rule.
- :mod:`~effrep_hpc.quant.algorithms`: :class:`QuantizedOptimizer` (FP, BC, SR, R with SGD or Adam steps) and
  :func:`quantized_layers` (which weights are quantized).
- :mod:`~effrep_hpc.quant.pack`: k bits per weight plus a per-layer scale, bit-exact round trip.
- :mod:`~effrep_hpc.quant.markov`: exact stationary excess loss of SR and BC on a noisy 1-D quadratic.

Pure math: tensors and modules in, tensors and numbers out; no files, no printing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from effrep_hpc.registry import lazy_exports

if TYPE_CHECKING:  # type checkers see the real names; at run time they load on first use
    from effrep_hpc.quant.algorithms import (  # noqa: F401
        QuantizedOptimizer,
        quantized_layers,
    )
    from effrep_hpc.quant.quantizers import (  # noqa: F401
        DELTA_RULES,
        choose_delta,
        from_codes,
        gaussian_step,
        grid_codes,
        grid_levels,
        grid_limit,
        on_grid,
        quantize_det,
        quantize_stoch,
        stochastic_step,
    )
    from effrep_hpc.quant.spec import (  # noqa: F401
        ALGORITHMS,
        GRIDS,
        MAX_BITS,
        AlgorithmSpec,
        get_algorithm,
    )


# name -> module; loaded on first use, so the torch-free `effrep_hpc.quant.spec` (names, MAX_BITS) needs no torch
_LAZY = {
    'ALGORITHMS': 'effrep_hpc.quant.spec',
    'AlgorithmSpec': 'effrep_hpc.quant.spec',
    'DELTA_RULES': 'effrep_hpc.quant.quantizers',
    'GRIDS': 'effrep_hpc.quant.spec',
    'MAX_BITS': 'effrep_hpc.quant.spec',
    'QuantizedOptimizer': 'effrep_hpc.quant.algorithms',
    'choose_delta': 'effrep_hpc.quant.quantizers',
    'from_codes': 'effrep_hpc.quant.quantizers',
    'gaussian_step': 'effrep_hpc.quant.quantizers',
    'get_algorithm': 'effrep_hpc.quant.spec',
    'grid_codes': 'effrep_hpc.quant.quantizers',
    'grid_levels': 'effrep_hpc.quant.quantizers',
    'grid_limit': 'effrep_hpc.quant.quantizers',
    'on_grid': 'effrep_hpc.quant.quantizers',
    'quantize_det': 'effrep_hpc.quant.quantizers',
    'quantize_stoch': 'effrep_hpc.quant.quantizers',
    'stochastic_step': 'effrep_hpc.quant.quantizers',
    'quantized_layers': 'effrep_hpc.quant.algorithms',
}

__all__ = sorted(_LAZY)

__getattr__ = lazy_exports(__name__, _LAZY)
