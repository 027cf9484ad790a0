"""Grids and rounding: Q_d is the nearest level and idempotent, Q_s is unbiased and seeded, the Delta rules."""

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
)


def levels(delta: float, bits: int) -> torch.Tensor:
    half = 2 ** (bits - 1)
    return (torch.arange(-half, half, dtype=torch.float64) + 0.5) * delta


@pytest.mark.parametrize("bits", [1, 2, 3, 4, 8])
def test_q_d_is_the_nearest_level_and_idempotent(bits: int) -> None:
    delta = 0.37
    w = torch.randn(20_000, generator=torch.Generator().manual_seed(bits), dtype=torch.float64) * delta * 2 ** (bits - 1)
    q = quantize_det(w, delta, bits)
    grid = levels(delta, bits)
    nearest = grid[(w[:, None] - grid[None, :]).abs().argmin(dim=1)]
    torch.testing.assert_close(q, nearest, rtol=0, atol=1e-12)
    assert torch.equal(quantize_det(q, delta, bits), q), "Q_d(Q_d(w)) must equal Q_d(w) bit for bit"
    assert set(q.unique().tolist()) <= set(grid.tolist())
    assert on_grid(q, delta, bits)


def test_q_d_idempotent_in_float32_with_per_element_delta() -> None:
    delta = torch.tensor([0.013, 0.2, 1.7, 0.05]).repeat(2500)
    w = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * delta * 3
    for bits in (1, 2, 5):
        q = quantize_det(w, delta, bits)
        assert torch.equal(quantize_det(q, delta, bits), q)


def test_one_bit_is_sign_times_scale() -> None:
    w = torch.tensor([-3.0, -1e-9, 0.0, 2e-9, 0.4, 5.0])
    scale = 0.25
    expected = torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]) * scale  # sign(0) = +1
    assert torch.equal(quantize_det(w, 2 * scale, 1), expected)
    assert grid_limit(2 * scale, 1) == scale


@pytest.mark.parametrize("bits", [1, 3])
def test_q_s_is_unbiased_inside_the_range(bits: int) -> None:
    delta = 0.5
    limit = grid_limit(delta, bits)
    # values spread over the range (both ends included), on levels and just next to them
    x = torch.cat([torch.linspace(-limit, limit, 13, dtype=torch.float64), levels(delta, bits) + 1e-3, levels(delta, bits)])
    x = x.clamp(-limit, limit)
    n = 40_000
    gen = torch.Generator().manual_seed(123)
    draws = quantize_stoch(x.repeat(n, 1), delta, bits, gen)
    mean = draws.mean(dim=0)
    # Q_s(x) takes two values delta apart, so its std is at most delta/2: allow 6 standard errors
    bound = 6 * (delta / 2) / math.sqrt(n)
    assert (mean - x).abs().max() < bound, (mean - x)
    # and it only ever lands on the two levels around x
    assert on_grid(draws, delta, bits)
    assert ((draws - x).abs() < delta + 1e-12).all()


def test_q_s_clips_beyond_the_range_and_keeps_grid_values() -> None:
    delta, bits = 0.2, 2
    limit = grid_limit(delta, bits)
    gen = torch.Generator().manual_seed(0)
    far = torch.tensor([-10.0, 10.0]).repeat(1000)
    assert torch.equal(quantize_stoch(far, delta, bits, gen), torch.tensor([-limit, limit]).repeat(1000).float())
    on = quantize_det(torch.randn(50_000, generator=gen), delta, bits)
    for _ in range(5):
        assert torch.equal(quantize_stoch(on, delta, bits, gen), on), "a weight on the grid must stay put"


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


def test_codes_round_trip_bit_for_bit() -> None:
    delta = torch.tensor(0.0123)
    for bits in (1, 2, 4, 8):
        q = quantize_det(torch.randn(5000) * 0.1, delta, bits)
        codes = grid_codes(q, delta, bits)
        assert codes.min() >= 0 and codes.max() < 2**bits
        assert torch.equal(from_codes(codes, delta, bits), q)


def test_on_grid_rejects_values_between_levels() -> None:
    q = quantize_det(torch.randn(100), 0.5, 2)
    assert on_grid(q, 0.5, 2)
    assert not on_grid(q + 0.1, 0.5, 2)
    assert not on_grid(torch.tensor([0.25 + 4 * 0.5]), 0.5, 2), "beyond the outermost level is off the grid"


@pytest.mark.parametrize("bits,expected", [(1, 1.596), (2, 0.9957), (3, 0.5860), (4, 0.3352)])
def test_gaussian_step_matches_the_optimal_uniform_quantizer(bits: int, expected: float) -> None:
    # Max (1960), optimum uniform quantizer step sizes for a unit Gaussian
    assert gaussian_step(bits) == pytest.approx(expected, abs=1.5e-3)


def test_gaussian_step_minimises_the_sampled_rounding_error() -> None:
    x = torch.from_numpy(np.random.default_rng(0).standard_normal(400_000))
    for bits in (1, 2, 3):
        c = gaussian_step(bits)
        mse = [float(((x - quantize_det(x, c * f, bits)) ** 2).mean()) for f in (0.9, 1.0, 1.1)]
        assert mse[1] < mse[0] and mse[1] < mse[2], (bits, mse)


def test_delta_rules() -> None:
    w0 = torch.randn(10_000, generator=torch.Generator().manual_seed(0)) * 0.05
    std = float(w0.double().std())
    assert choose_delta(w0, 1) == pytest.approx(gaussian_step(1) * std)
    assert choose_delta(w0, 2, "gauss", scale=3.0) == pytest.approx(3 * gaussian_step(2) * std)
    d = choose_delta(w0, 3, "max")
    assert grid_limit(d, 3) == pytest.approx(float(w0.abs().max()))
    assert choose_delta(w0, 4, "fixed", 0.125) == 0.125


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: choose_delta(torch.ones(3), 0), "bits must be an integer in 1..16"),
        (lambda: choose_delta(torch.ones(3), 17), "bits must be an integer in 1..16"),
        (lambda: choose_delta(torch.randn(3), 1, "fixed"), "needs a positive delta"),
        (lambda: choose_delta(torch.randn(3), 1, "gaus"), "unknown delta rule 'gaus'"),
        (lambda: choose_delta(torch.ones(5), 1, "gauss"), "initial weights are all equal"),
        (lambda: choose_delta(torch.randn(3), 1, scale=0), "scale must be > 0"),
    ],
)
def test_bad_grid_settings_are_refused(call, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()
