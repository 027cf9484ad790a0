"""Grids and rounding on both grids (paper Delta*Z, midrise): Q_d is the nearest level and idempotent, Q_s is
unbiased (also for tiny steps at 16 bits) and seeded, codes round-trip, the Delta rules."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from effrep_hpc.quant.quantizers import (
    choose_delta,
    from_codes,
    gaussian_step,
    grid_codes,
    grid_limit,
    on_grid,
    quantize_det,
    quantize_stoch,
    stochastic_step,
)

GRIDS = ["paper", "midrise"]


def levels(delta: float, bits: int, grid: str) -> torch.Tensor:
    """Every level of the grid, written out from the definitions (float64)."""
    half = 2 ** (bits - 1)
    if grid == "midrise" or bits == 1:  # (j + 1/2) Delta, j = -2^(k-1) .. 2^(k-1) - 1; one bit: +-Delta/2 on both
        return (torch.arange(-half, half, dtype=torch.float64) + 0.5) * delta
    return torch.arange(-(half - 1), half, dtype=torch.float64) * delta  # the paper's Delta*Z, symmetric


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_q_d_is_the_nearest_level_and_idempotent(bits: int, grid: str) -> None:
    delta = 0.37
    w = torch.randn(20_000, generator=torch.Generator().manual_seed(bits), dtype=torch.float64) * delta * 2 ** (bits - 1)
    q = quantize_det(w, delta, bits, grid)
    grid_values = levels(delta, bits, grid)
    nearest = grid_values[(w[:, None] - grid_values[None, :]).abs().argmin(dim=1)]
    torch.testing.assert_close(q, nearest, rtol=0, atol=1e-12)
    assert torch.equal(quantize_det(q, delta, bits, grid), q), "Q_d(Q_d(w)) must equal Q_d(w) bit for bit"
    assert set(q.unique().tolist()) <= set(grid_values.tolist())
    assert on_grid(q, delta, bits, grid)
    assert grid_limit(delta, bits, grid) == pytest.approx(float(grid_values.max()))


@pytest.mark.parametrize("bits", [2, 3, 8])
def test_paper_grid_is_the_papers_q_d(bits: int) -> None:
    """Q_d(w) = sign(w) Delta floor(|w|/Delta + 1/2), clipped: ties (odd multiples of Delta/2) go away from zero."""
    delta, m = 0.25, 2 ** (bits - 1) - 1
    ties = (torch.arange(-2 * m - 3, 2 * m + 4, 2, dtype=torch.float64)) * delta / 2
    w = torch.cat([ties, torch.randn(5000, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * m * delta])
    x = w.numpy()
    expected = np.clip(np.sign(x) * delta * np.floor(np.abs(x) / delta + 0.5), -m * delta, m * delta)
    np.testing.assert_array_equal(quantize_det(w, delta, bits, "paper").numpy(), expected)
    assert quantize_det(torch.tensor([0.0, -1e-9, 1e-9]), delta, bits, "paper").tolist() == [0.0, 0.0, 0.0]
    assert not torch.signbit(quantize_det(torch.tensor([-1e-9]), delta, bits, "paper")).any(), "no -0.0"


@pytest.mark.parametrize("grid", GRIDS)
def test_q_d_idempotent_in_float32_with_per_element_delta(grid: str) -> None:
    delta = torch.tensor([0.013, 0.2, 1.7, 0.05]).repeat(2500)
    w = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * delta * 3
    for bits in (1, 2, 5, 16):
        q = quantize_det(w, delta, bits, grid)
        assert torch.equal(quantize_det(q, delta, bits, grid), q)


@pytest.mark.parametrize("grid", GRIDS)
def test_one_bit_is_sign_times_scale(grid: str) -> None:
    w = torch.tensor([-3.0, -1e-9, 0.0, 2e-9, 0.4, 5.0])
    scale = 0.25
    expected = torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]) * scale  # sign(0) = +1
    assert torch.equal(quantize_det(w, 2 * scale, 1, grid), expected)
    assert grid_limit(2 * scale, 1, grid) == scale
    gen = torch.Generator().manual_seed(0)
    assert set(quantize_stoch(torch.randn(1000, generator=gen), 2 * scale, 1, gen, grid).tolist()) == {-scale, scale}


@pytest.mark.parametrize("grid", GRIDS)
@pytest.mark.parametrize("bits", [1, 3])
def test_q_s_is_unbiased_inside_the_range(bits: int, grid: str) -> None:
    delta = 0.5
    limit = grid_limit(delta, bits, grid)
    grid_values = levels(delta, bits, grid)
    # values spread over the range (both ends included), on levels and just next to them
    x = torch.cat([torch.linspace(-limit, limit, 13, dtype=torch.float64), grid_values + 1e-3, grid_values])
    x = x.clamp(-limit, limit)
    n = 40_000
    gen = torch.Generator().manual_seed(123)
    draws = quantize_stoch(x.repeat(n, 1), delta, bits, gen, grid)
    mean = draws.mean(dim=0)
    # Q_s(x) takes two values delta apart, so its std is at most delta/2: allow 6 standard errors
    bound = 6 * (delta / 2) / math.sqrt(n)
    assert (mean - x).abs().max() < bound, (mean - x)
    # and it only ever lands on the two levels around x
    assert on_grid(draws, delta, bits, grid)
    assert set(draws.unique().tolist()) <= set(grid_values.tolist())
    assert ((draws - x).abs() < delta + 1e-12).all()


@pytest.mark.parametrize("grid", GRIDS)
def test_q_s_clips_beyond_the_range_and_keeps_grid_values(grid: str) -> None:
    delta, bits = 0.2, 2
    limit = grid_limit(delta, bits, grid)
    gen = torch.Generator().manual_seed(0)
    far = torch.tensor([-10.0, 10.0]).repeat(1000)
    assert torch.equal(quantize_stoch(far, delta, bits, gen, grid), torch.tensor([-limit, limit]).repeat(1000).float())
    for bits in (2, 16):
        on = quantize_det(torch.randn(50_000, generator=gen) * 2.0 ** (bits - 1) * delta, delta, bits, grid)
        for _ in range(3):
            assert torch.equal(quantize_stoch(on, delta, bits, gen, grid), on), "a weight on the grid must stay put"
            assert torch.equal(stochastic_step(on, torch.zeros_like(on), delta, bits, gen, grid), on)


@pytest.mark.parametrize("grid", GRIDS)
def test_sr_step_of_a_thousandth_of_delta_is_unbiased_at_16_bits(grid: str) -> None:
    """E[Q_s(w - d)] = w - d for d = +-1e-3 Delta, from levels near zero and next to the outermost ones.

    Rounding ``w - d`` formed in float32 loses such a step entirely (at 16 bits every step under 3% of Delta);
    Delta = 2**-7 makes every level exact in float32, so the mean can be compared with the float value itself.
    """
    bits, delta, n = 16, 2.0**-7, 1_000_000
    lo_j = -(2**15 - 1) if grid == "paper" else -(2**15)
    hi_j = 2**15 - 1
    offset = 0.0 if grid == "paper" else 0.5
    j = torch.tensor([0, 1, 1000, hi_j - 1, lo_j + 1, -7], dtype=torch.float64)
    d = torch.tensor([1e-3, -1e-3, 1e-3, -1e-3, 1e-3, -1e-3], dtype=torch.float64) * delta
    w = ((j + offset) * delta).float()
    gen = torch.Generator().manual_seed(16)
    draws = stochastic_step(w.repeat(n, 1), d.float().repeat(n, 1), delta, bits, gen, grid).double()
    target = w.double() - d.float().double()  # the float value Q_s must be unbiased for
    # each draw is one of two levels Delta apart, up with probability p = 1e-3: std Delta sqrt(p (1 - p))
    bound = 6 * delta * math.sqrt(1e-3 * (1 - 1e-3)) / math.sqrt(n)
    error = (draws.mean(dim=0) - target).abs()
    assert (error < bound).all(), (error / delta, bound / delta)
    assert bound < 0.2 * 1e-3 * delta, "the bound must be able to tell the step from no step"
    assert on_grid(draws.float(), delta, bits, grid)
    # the same through Q_s of a value 1e-3 Delta off a level, at a Delta whose levels are not exact in float32
    delta = 0.0123
    x = ((j + offset) * delta).float().double() - d / 2.0**-7 * delta
    draws = quantize_stoch(x.repeat(n, 1), delta, bits, gen, grid)
    bound = 6 * delta * math.sqrt(1e-3) / math.sqrt(n)
    assert ((draws.mean(dim=0) - x).abs() < bound).all()


def test_q_s_is_reproducible_from_the_generator_state() -> None:
    w = torch.randn(1000)
    gen = torch.Generator().manual_seed(7)
    state = gen.get_state()
    a = quantize_stoch(w, 0.1, 1, gen)
    b = quantize_stoch(w, 0.1, 1, gen)
    gen.set_state(state)
    assert torch.equal(quantize_stoch(w, 0.1, 1, gen), a)
    assert not torch.equal(a, b), "successive draws must differ"
    assert torch.equal(quantize_stoch(w, 0.1, 1, torch.Generator().manual_seed(7)), a)


@pytest.mark.parametrize("grid", GRIDS)
def test_codes_round_trip_bit_for_bit_in_k_bits(grid: str) -> None:
    delta = torch.tensor(0.0123)
    for bits in (1, 2, 4, 8, 16):
        q = quantize_det(torch.randn(5000) * 0.1, delta, bits, grid)
        codes = grid_codes(q, delta, bits, grid)
        assert codes.min() >= 0 and codes.max() < 2**bits, "a code must fit in k bits"
        assert torch.equal(from_codes(codes, delta, bits, grid=grid), q)
        # codes are the levels in increasing order: code c is the c-th smallest level
        all_codes = torch.arange(len(levels(1.0, bits, grid)))
        np.testing.assert_allclose(from_codes(all_codes, delta, bits, torch.float64, grid).numpy(),
                                   levels(float(delta), bits, grid).numpy(), rtol=1e-6)
    assert int(grid_codes(torch.tensor([1e9]), delta, 16, grid)) == (2**16 - 2 if grid == "paper" else 2**16 - 1)


@pytest.mark.parametrize("grid", GRIDS)
def test_on_grid_rejects_values_between_levels(grid: str) -> None:
    q = quantize_det(torch.randn(100), 0.5, 2, grid)
    assert on_grid(q, 0.5, 2, grid)
    assert not on_grid(q + 0.1, 0.5, 2, grid)
    beyond = float(levels(0.5, 2, grid).max()) + 0.5
    assert not on_grid(torch.tensor([beyond]), 0.5, 2, grid), "beyond the outermost level is off the grid"
    other = "midrise" if grid == "paper" else "paper"
    assert not on_grid(quantize_det(torch.tensor([0.1, 0.7]), 0.5, 2, other), 0.5, 2, grid)


@pytest.mark.parametrize(
    "bits,grid,expected",
    [(1, "midrise", 1.596), (2, "midrise", 0.9957), (3, "midrise", 0.5860), (4, "midrise", 0.3352),
     (1, "paper", 1.596), (2, "paper", 1.2240), (3, "paper", 0.6508)],
)
def test_gaussian_step_matches_the_optimal_uniform_quantizer(bits: int, grid: str, expected: float) -> None:
    # Max (1960), optimum uniform quantizer step sizes for a unit Gaussian with 2, 4, 8, 16 levels (midrise)
    # and 3, 7 levels (the paper's grid at 2 and 3 bits; 3 levels: Lloyd-Max's ternary quantizer +-1.224)
    assert gaussian_step(bits, grid) == pytest.approx(expected, abs=1.5e-3)


@pytest.mark.parametrize("grid", GRIDS)
def test_gaussian_step_minimises_the_sampled_rounding_error(grid: str) -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(400_000))
    for bits in (1, 2, 3, 4):
        c = gaussian_step(bits, grid)
        mse = [float(((x - quantize_det(x, c * f, bits, grid)) ** 2).mean()) for f in (0.9, 1.0, 1.1)]
        assert mse[1] < mse[0] and mse[1] < mse[2], (bits, mse)


@pytest.mark.parametrize("grid", GRIDS)
def test_delta_rules(grid: str) -> None:
    w0 = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 0.05
    std = float(w0.double().std())
    assert choose_delta(w0, 1, grid=grid) == pytest.approx(gaussian_step(1, grid) * std)
    assert choose_delta(w0, 2, "gauss", scale=3.0, grid=grid) == pytest.approx(3 * gaussian_step(2, grid) * std)
    d = choose_delta(w0, 3, "max", grid=grid)
    assert grid_limit(d, 3, grid) == pytest.approx(float(w0.abs().max()))
    assert choose_delta(w0, 4, "fixed", 0.125, grid=grid) == 0.125


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: choose_delta(torch.ones(3), 0), "bits must be an integer in 1..16"),
        (lambda: choose_delta(torch.ones(3), 17), "bits must be an integer in 1..16"),
        (lambda: choose_delta(torch.randn(3), 1, "fixed"), "needs a positive delta"),
        (lambda: choose_delta(torch.randn(3), 1, "gaus"), "unknown delta rule 'gaus'"),
        (lambda: choose_delta(torch.ones(5), 1, "gauss"), "initial weights are all equal"),
        (lambda: choose_delta(torch.randn(3), 1, scale=0), "scale must be > 0"),
        (lambda: choose_delta(torch.randn(3), 2, grid="midrize"), "unknown grid 'midrize'"),
    ],
)
def test_bad_grid_settings_are_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
