"""Fixed-point grids, deterministic (Q_d) and stochastic (Q_s) rounding onto them, and the per-layer Delta rule.

Two k-bit grids of resolution Delta (``quant.grid``), both ``(j + offset) * Delta`` for integers ``j`` in a
range (:func:`grid_levels`):

- ``paper`` (default): ``Delta * Z`` with zero included, as in Li et al. (2017),
  ``Q_d(w) = sign(w) * Delta * floor(|w| / Delta + 1/2)`` (a tie goes away from zero), clipped to the
  ``2**k - 1`` levels ``j = -(2**(k-1) - 1) .. 2**(k-1) - 1``. The range is symmetric, as the paper's
  ``Q_d`` is odd (``Q_d(-w) = -Q_d(w)``), so clipping and rounding treat both signs alike; the price is one of
  the ``2**k`` codes left unused (2 bits give the ternary grid -Delta, 0, Delta). Codes ``j + 2**(k-1) - 1``
  still fit in k bits.
- ``midrise``: the ``2**k`` levels ``(j + 1/2) * Delta`` for ``j = -2**(k-1) .. 2**(k-1) - 1``, no zero,
  every code used; a tie between two levels goes up.

For k = 1 both grids are the same: ``+-Delta/2``, i.e. ``sign(w)`` times a per-layer scale ``s = Delta/2``
(sign(0) = +1), the binary weights of BinaryConnect. The outermost level is the grid's *limit*: values beyond
it are clipped to it.

- ``Q_d(w)``: the nearest level. Idempotent.
- ``Q_s(w)``: one of the two levels around ``clip(w)``, the upper one with probability equal to the distance
  from the lower one in units of Delta, so ``E[Q_s(w)] = clip(w)``: unbiased inside the grid's range. The
  uniform draws come from a ``torch.Generator`` (seeded, its state saved in checkpoints).
  SR's update ``Q_s(w - d)`` (:func:`stochastic_step`) is computed *in units of Delta*: the level index of
  ``w`` (exact, as ``w`` is on the grid) plus ``-d / Delta``, whose fractional part keeps full float precision
  however far out the level is. Forming ``w - d`` in float32 first would round away any step below an ulp of
  ``w`` (at 16 bits a step of 2**-8 Delta near the outermost levels); in units of Delta the bias left is at
  most about 2**-24 Delta per step (float32 resolution of the fractional part and of the uniform draws), the
  same at every bit width.

Delta rule (:func:`choose_delta`), applied once per layer to the layer's *initial* weights and then kept fixed
for the whole of training, so that a weight on the grid stays on the same grid:

- ``gauss`` (default): ``Delta = c_k * std(w0)``, where ``c_k`` (:func:`gaussian_step`) minimises the mean
  squared rounding error ``E[(X - Q_d(X))**2]`` for ``X ~ N(0, 1)`` on this grid: the optimal uniform
  quantizer of a Gaussian (midrise: c_1 = 1.596, c_2 = 0.996, c_3 = 0.586, c_4 = 0.335, Max 1960's values
  for 2, 4, 8, 16 levels; paper: c_2 = 1.224 for the ternary grid, Lloyd-Max's 3-level quantizer). For one
  bit that gives the scale ``s = 0.798 std = E|w|`` of Gaussian weights, the scale XNOR-Net/BWN use for
  binary weights.
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
from typing import NamedTuple, Optional

import torch
from torch import Tensor

from effrep_hpc.quant.spec import GRIDS, MAX_BITS

DELTA_RULES = ("gauss", "max", "fixed")


class Levels(NamedTuple):
    """The levels ``(j + offset) * Delta`` of a grid, ``j = lo .. hi``; the code of a level is ``j - lo``."""

    lo: int
    hi: int
    offset: float

    @property
    def size(self) -> int:
        """How many levels there are."""
        return self.hi - self.lo + 1


def check_bits(bits: int) -> int:
    """Return ``bits`` if it is an int in 1..MAX_BITS, else raise ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, int) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"bits must be an integer in 1..{MAX_BITS} (1 = binary weights), got {bits!r}")
    return bits


def check_grid(grid: str) -> str:
    """Return ``grid`` if it names a grid (paper, midrise), else raise ValueError."""
    if grid not in GRIDS:
        raise ValueError(f"unknown grid {grid!r} (valid: {', '.join(GRIDS)})")
    return grid


@functools.cache
def grid_levels(bits: int, grid: str = "paper") -> Levels:
    """The level indices and offset of the ``bits``-bit grid (module doc): paper ``Delta*Z``, or midrise."""
    half = 1 << (check_bits(bits) - 1)
    if check_grid(grid) == "midrise" or bits == 1:
        return Levels(-half, half - 1, 0.5)
    return Levels(-(half - 1), half - 1, 0.0)


def num_levels(bits: int, grid: str = "paper") -> int:
    """How many levels a ``bits``-bit grid has (midrise: 2**bits; paper: 2**bits - 1, or 2 for one bit)."""
    return grid_levels(bits, grid).size


def grid_limit(delta: float | Tensor, bits: int, grid: str = "paper") -> float | Tensor:
    """The outermost level (midrise ``(2**(bits-1) - 1/2) * delta``, paper ``(2**(bits-1) - 1) * delta``)."""
    lv = grid_levels(bits, grid)
    return (lv.hi + lv.offset) * delta


def snap_tolerance(bits: int) -> float:
    """How far (in units of Delta) ``w/Delta - offset`` may sit from an integer and still count as on the grid."""
    # A level computed as (j + offset) * Delta in float32 divides back to j only up to a few ulps of 2**(bits-1).
    return 2.0 ** (check_bits(bits) - 1) * 2.0**-20


def _levels(j: Tensor, delta: float | Tensor, offset: float) -> Tensor:
    # Every level value is made here, in one way, so Q_d, Q_s, SR's step and unpacking agree bit for bit.
    # Adding the offset also when it is 0 turns a -0.0 index into +0.0.
    return (j + offset) * delta


def quantize_det(w: Tensor, delta: float | Tensor, bits: int, grid: str = "paper") -> Tensor:
    """Q_d: round ``w`` to the nearest level of the ``bits``-bit grid of resolution ``delta`` (clipped)."""
    lv = grid_levels(bits, grid)
    if lv.offset:  # midrise (and one bit): the cell [j, j + 1) * Delta rounds to its middle
        j = torch.floor(w / delta)
    else:  # the paper's sign(w) * floor(|w| / Delta + 1/2)
        j = torch.floor(w.abs() / delta + 0.5).mul_(torch.sign(w))
    return _levels(j.clamp_(lv.lo, lv.hi), delta, lv.offset)


def _round_index(j: Tensor, t: Tensor, lv: Levels, generator: Optional[torch.Generator], dtype: torch.dtype) -> Tensor:
    """The level index ``j + t`` rounded stochastically (up with probability ``frac(t)``), clipped to the grid."""
    lower = torch.floor(t)
    frac = t - lower  # in [0, 1), rounded at most once (error <= 2**-24 in float32), whatever the level j
    u = torch.rand(t.shape, generator=generator, device=t.device, dtype=dtype)
    return lower.add_(j).add_((u < frac).to(lower.dtype)).clamp_(lv.lo, lv.hi)


def quantize_stoch(
    w: Tensor, delta: float | Tensor, bits: int, generator: Optional[torch.Generator] = None, grid: str = "paper"
) -> Tensor:
    """Q_s: round ``clip(w)`` to one of its two neighbouring levels at random, unbiased: E[Q_s(w)] = clip(w)."""
    # Measured from the nearest level in float64: a weight exactly on a level stays exactly there (t = 0), and the
    # distance from it keeps its precision at every bit width.
    lv = grid_levels(bits, grid)
    j = torch.round(w.double() / delta - lv.offset).clamp_(lv.lo, lv.hi)
    level = _levels(j.to(w.dtype), delta, lv.offset)
    t = (w.double() - level.double()) / (delta.double() if isinstance(delta, Tensor) else delta)
    return _levels(_round_index(j, t, lv, generator, w.dtype).to(w.dtype), delta, lv.offset)


def stochastic_step(
    w: Tensor,
    step: Tensor,
    delta: float | Tensor,
    bits: int,
    generator: Optional[torch.Generator] = None,
    grid: str = "paper",
) -> Tensor:
    """SR's update ``Q_s(w - step)`` for weights ``w`` on the grid, computed in units of Delta (module doc)."""
    lv = grid_levels(bits, grid)
    j = torch.round(w / delta - lv.offset)  # exact: w is a level
    return _levels(_round_index(j, -step / delta, lv, generator, w.dtype), delta, lv.offset)


def grid_codes(w: Tensor, delta: float | Tensor, bits: int, grid: str = "paper") -> Tensor:
    """The code ``j - lo`` (0 .. levels - 1, int64) of each weight's level, for packing."""
    lv = grid_levels(bits, grid)
    j = torch.round(w / delta - lv.offset).clamp_(lv.lo, lv.hi)
    return (j - lv.lo).to(torch.int64)


def from_codes(
    codes: Tensor, delta: float | Tensor, bits: int, dtype: torch.dtype = torch.float32, grid: str = "paper"
) -> Tensor:
    """The weights of level codes ``codes`` (inverse of :func:`grid_codes` on grid values, bit for bit)."""
    lv = grid_levels(bits, grid)
    return _levels(codes.to(dtype) + lv.lo, delta, lv.offset)


def on_grid(w: Tensor, delta: float | Tensor, bits: int, grid: str = "paper") -> bool:
    """True if every entry of ``w`` is a level of the grid (what a fully quantized weight must be)."""
    lv = grid_levels(bits, grid)
    y = w / delta - lv.offset
    j = torch.round(y)
    near = (y - j).abs() <= snap_tolerance(bits)
    return bool((near & (j >= lv.lo) & (j <= lv.hi)).all())


def _gaussian_mse(step: float, bits: int, grid: str = "paper") -> float:
    """E[(X - Q_d(X))^2] for X ~ N(0, 1) on the ``bits``-bit ``grid`` of resolution ``step``."""
    lv = grid_levels(bits, grid)
    # Cells beyond 12 standard deviations carry no probability in float64; cut them off so 16 bits stay cheap.
    reach = int(12.0 / step) + 2
    j = torch.arange(max(lv.lo, -reach), min(lv.hi, reach) + 1, dtype=torch.float64)
    centre = (j + lv.offset) * step
    lo, hi = centre - step / 2, centre + step / 2  # each level's cell (the points it is nearest to)
    if j[0] == lv.lo:  # outermost cells extend to infinity
        lo[0] = -math.inf
    if j[-1] == lv.hi:
        hi[-1] = math.inf
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
def gaussian_step(bits: int, grid: str = "paper") -> float:
    """The step c_k of the ``bits``-bit ``grid`` that minimises the mean squared rounding error of N(0, 1)."""
    check_bits(bits)
    check_grid(grid)
    # Golden-section search on log(step); the error is unimodal in the step (overload vs granular error).
    # The optimum times 2**bits lies between 3 and 12 for 1..16 bits; the bracket leaves room on both sides.
    lo, hi = math.log(2.0**-bits), math.log(2.0 ** (5 - bits))
    ratio = (math.sqrt(5) - 1) / 2
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = _gaussian_mse(math.exp(a), bits, grid), _gaussian_mse(math.exp(b), bits, grid)
    for _ in range(50):
        if fa < fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = _gaussian_mse(math.exp(a), bits, grid)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = _gaussian_mse(math.exp(b), bits, grid)
    return math.exp((lo + hi) / 2)


def choose_delta(
    w0: Tensor, bits: int, rule: str = "gauss", delta: Optional[float] = None, scale: float = 1.0, grid: str = "paper"
) -> float:
    """The resolution Delta of one layer's ``grid``, from its initial weights ``w0`` by ``rule``, times ``scale``."""
    lv = grid_levels(bits, grid)
    if not scale > 0:
        raise ValueError(f"the Delta scale must be > 0, got {scale!r}")
    if rule == "fixed":
        if delta is None or not delta > 0:
            raise ValueError(f"delta rule 'fixed' needs a positive delta, got {delta!r}")
        return float(delta) * scale
    if rule == "gauss":
        spread = float(w0.detach().double().std()) if w0.numel() > 1 else 0.0
        value = gaussian_step(bits, grid) * spread
    elif rule == "max":
        value = float(w0.detach().abs().max()) / (lv.hi + lv.offset)
    else:
        raise ValueError(f"unknown delta rule {rule!r} (valid: {', '.join(DELTA_RULES)})")
    if not value > 0 or not math.isfinite(value):
        raise ValueError(
            f"delta rule {rule!r} gives Delta={value} for a layer whose initial weights are all equal; "
            "use delta_rule 'fixed' with an explicit delta"
        )
    return value * scale
