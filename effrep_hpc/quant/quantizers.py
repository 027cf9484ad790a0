"""Fixed-point grids, deterministic (Q_d) and stochastic (Q_s) rounding onto them, and the per-layer Delta rule.

The grid of ``k`` bits with resolution Delta has the ``2**k`` levels ``(j + 1/2) * Delta`` for
``j = -2**(k-1) .. 2**(k-1) - 1``: symmetric about 0 and using every code. For k = 1 the levels are
``+-Delta/2``, i.e. ``sign(w)`` times a per-layer scale ``s = Delta/2`` (sign(0) = +1), the binary weights
of BinaryConnect. The outermost levels ``+-(2**(k-1) - 1/2) * Delta`` are the grid's *limit*: values
beyond it are clipped to it.

- ``Q_d(w)``: the nearest level (a value half-way between two levels goes up). Idempotent.
- ``Q_s(w)``: one of the two levels around ``clip(w)``, the upper one with probability equal to the distance
  from the lower one in units of Delta, so ``E[Q_s(w)] = clip(w)``: unbiased inside the grid's range. The
  uniform draws come from a ``torch.Generator`` (seeded, its state saved in checkpoints).

Delta rule (:func:`choose_delta`), applied once per layer to the layer's *initial* weights and then kept fixed
for the whole of training, so that a weight on the grid stays on the same grid:

- ``gauss`` (default): ``Delta = c_k * std(w0)``, where ``c_k`` (:func:`gaussian_step`) minimises the mean
  squared rounding error ``E[(X - Q_d(X))**2]`` for ``X ~ N(0, 1)`` on this grid: the optimal uniform
  quantizer of a Gaussian (c_1 = 1.596, c_2 = 0.996, c_3 = 0.586, c_4 = 0.335). For one bit that gives the
  scale ``s = 0.798 std = E|w|`` of Gaussian weights, the scale XNOR-Net/BWN use for binary weights.
- ``max``: the outermost levels sit at ``+-max|w0|`` (no clipping of the initial weights).
- ``fixed``: ``Delta`` is given (the same for every layer), as in the paper's analysis.

``scale`` multiplies the rule's Delta. The Gaussian rule fits the *initial* weights; a larger grid helps where
the scale of a layer's weights matters, i.e. a layer without BN after it (the classifier): a binary
classifier with weights ``+-s`` can only produce logits of size ``~ s * fan_in``. Layers followed by BN are
invariant to the scale, except through the ratio of step to Delta.
"""

from __future__ import annotations

import functools
import math
from typing import Optional

import torch
from torch import Tensor

from effrep_hpc.quant.spec import MAX_BITS

DELTA_RULES = ("gauss", "max", "fixed")


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is an int in 1..MAX_BITS, else raise ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in 1..{MAX_BITS} (1 = binary weights), got {bits!r}")
    return bits


def num_levels(bits: int) -> int:
    """How many levels a ``bits``-bit grid has (2**bits)."""
    return 1 << check_bits(bits)


def grid_limit(delta: float | Tensor, bits: int) -> float | Tensor:
    """The outermost level ``(2**(bits-1) - 1/2) * delta``: Q_d and Q_s never go beyond it."""
    return (num_levels(bits) / 2 - 0.5) * delta


def snap_tolerance(bits: int) -> float:
    """How far (in units of Delta) ``w/Delta - 1/2`` may sit from an integer and still count as on the grid."""
    # A level computed as (j + 1/2) * Delta in float32 divides back to j only up to a few ulps of 2**(bits-1).
    return 2.0 ** (check_bits(bits) - 1) * 2.0**-20


def quantize_det(w: Tensor, delta: float | Tensor, bits: int) -> Tensor:
    """Q_d: round ``w`` to the nearest level of the ``bits``-bit grid of resolution ``delta`` (clipped)."""
    half = num_levels(bits) // 2
    j = torch.floor(w / delta).clamp_(-half, half - 1)
    return (j + 0.5) * delta


def quantize_stoch(w: Tensor, delta: float | Tensor, bits: int, generator: Optional[torch.Generator] = None) -> Tensor:
    """Q_s: round ``clip(w)`` to one of its two neighbouring levels at random, unbiased: E[Q_s(w)] = clip(w)."""
    # A value already on the grid (within snap_tolerance) stays exactly where it is: float noise in w/Delta must
    # not make a weight of a fully quantized net hop with probability 1e-7.
    half = num_levels(bits) // 2
    tol = snap_tolerance(bits)
    y = (w / delta - 0.5).clamp_(-half, half - 1)  # levels sit at the integers of y
    lower = torch.floor(y + tol)
    frac = y - lower
    frac.masked_fill_(frac <= tol, 0.0)
    u = torch.rand(w.shape, generator=generator, device=w.device, dtype=w.dtype)
    return (lower + (u < frac).to(w.dtype) + 0.5) * delta


def grid_codes(w: Tensor, delta: float | Tensor, bits: int) -> Tensor:
    """The level index ``j + 2**(bits-1)`` (0 .. 2**bits - 1, int64) of each weight, for packing."""
    half = num_levels(bits) // 2
    j = torch.round(w / delta - 0.5).clamp_(-half, half - 1)
    return (j + half).to(torch.int64)


def from_codes(codes: Tensor, delta: float | Tensor, bits: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """The weights of level indices ``codes`` (inverse of :func:`grid_codes` on grid values, bit for bit)."""
    half = num_levels(bits) // 2
    return (codes.to(dtype) - half + 0.5) * delta


def on_grid(w: Tensor, delta: float | Tensor, bits: int) -> bool:
    """True if every entry of ``w`` is a level of the grid (what a fully quantized weight must be)."""
    half = num_levels(bits) // 2
    y = w / delta - 0.5
    near = (y - torch.round(y)).abs() <= snap_tolerance(bits)
    inside = (y >= -half - 0.5) & (y <= half - 0.5)
    return bool((near & inside).all())


def _gaussian_mse(step: float, bits: int) -> float:
    """E[(X - Q_d(X))^2] for X ~ N(0, 1) on the mid-rise grid of ``bits`` bits and resolution ``step``."""
    half = num_levels(bits) // 2
    # Cells beyond 12 standard deviations carry no probability in float64; cut them off so 16 bits stay cheap.
    reach = min(half, int(12.0 / step) + 2)
    edges = torch.arange(-reach, reach + 1, dtype=torch.float64) * step
    lo = edges[:-1].clone()
    hi = edges[1:].clone()
    if reach == half:  # outermost cells extend to infinity
        lo[0], hi[-1] = -math.inf, math.inf
    centre = (torch.arange(-reach, reach, dtype=torch.float64) + 0.5) * step
    normal = torch.distributions.Normal(torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    cdf = normal.cdf(hi) - normal.cdf(lo)

    def pdf_times(x: Tensor) -> Tensor:
        finite = torch.isfinite(x)
        out = torch.zeros_like(x)
        out[finite] = x[finite] * torch.exp(-0.5 * x[finite] ** 2) / math.sqrt(2 * math.pi)
        return out

    pdf_lo = torch.exp(-0.5 * lo**2) / math.sqrt(2 * math.pi)
    pdf_hi = torch.exp(-0.5 * hi**2) / math.sqrt(2 * math.pi)
    # int_a^b (x - c)^2 phi = [Phi]_a^b + a phi(a) - b phi(b) - 2c (phi(a) - phi(b)) + c^2 [Phi]_a^b
    second = cdf + pdf_times(lo) - pdf_times(hi)
    first = pdf_lo - pdf_hi
    return float((second - 2 * centre * first + centre**2 * cdf).sum())


@functools.cache
def gaussian_step(bits: int) -> float:
    """The step c_k of the ``bits``-bit grid that minimises the mean squared rounding error of N(0, 1)."""
    check_bits(bits)
    # Golden-section search on log(step); the error is unimodal in the step (overload vs granular error).
    # The optimum times 2**bits lies between 3 and 12 for 1..16 bits; the bracket leaves room on both sides.
    lo, hi = math.log(2.0**-bits), math.log(2.0 ** (5 - bits))
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _gaussian_mse(math.exp(a), bits), _gaussian_mse(math.exp(b), bits)
    for _ in range(50):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _gaussian_mse(math.exp(a), bits)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _gaussian_mse(math.exp(b), bits)
    return math.exp((lo + hi) / 2)


def choose_delta(
    w0: Tensor, bits: int, rule: str = "gauss", delta: Optional[float] = None, scale: float = 1.0
) -> float:
    """The resolution Delta of one layer's grid, from its initial weights ``w0`` by ``rule``, times ``scale``."""
    check_bits(bits)
    if not scale > 0:
        raise ValueError(f"the Delta scale must be > 0, got {scale!r}")
    if rule == "fixed":
        if delta is None or not delta > 0:
            raise ValueError(f"delta rule 'fixed' needs a positive delta, got {delta!r}")
        return float(delta) * scale
    if rule == "gauss":
        spread = float(w0.detach().double().std()) if w0.numel() > 1 else 0.0
        value = gaussian_step(bits) * spread
    elif rule == "max":
        value = float(w0.detach().abs().max()) / (num_levels(bits) / 2 - 0.5)
    else:
        raise ValueError(f"unknown delta rule {rule!r} (valid: {', '.join(DELTA_RULES)})")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(
            f"delta rule {rule!r} gives Delta={value} for a layer whose initial weights are all equal; "
            "use delta_rule 'fixed' with an explicit delta"
        )
    return value * scale
