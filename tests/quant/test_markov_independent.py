"""The Markov tool against chains built here from scratch (exact fractions) and solved by other methods.

The transition matrices are built with ``fractions.Fraction`` from the decimal inputs (so every rounding
probability and every jump is exact), over the states reachable from the start, and solved by GTH elimination
(Grassmann-Taksar-Heyman: no subtractions, so tiny tail probabilities keep their relative accuracy) and, for
small chains, also by the null space of ``I - P^T`` (an SVD). The tool builds its chains in floats and solves
them by a sparse LU, so an agreement to 10 digits checks both the construction and the solve.
"""

from __future__ import annotations

import json
import math
from fractions import Fraction as F

import numpy as np
import pytest
import scipy.linalg
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from effrep_hpc.cli import main as effrep
from effrep_hpc.quant import markov
from effrep_hpc.quant.markov import bc_stationary, sr_stationary


def floor(x: F) -> int:
    return math.floor(x)


def sr_chain(mu: F, sigma: F, delta: F, lr: F, wstar: F) -> tuple[list[int], dict[tuple[int, int], F]]:
    """SR on grid indices j (w = j delta): v = w - lr g, Q_s to floor(v/delta) or one up; all reachable states."""
    start = floor(wstar / delta + F(1, 2))
    states, todo, P = {start}, [start], {}
    while todo:
        j = todo.pop()
        for s in (1, -1):
            y = (j * delta - lr * (mu * (j * delta - wstar) + s * sigma)) / delta
            lo = floor(y)
            for target, prob in ((lo, F(1, 2) * (1 - (y - lo))), (lo + 1, F(1, 2) * (y - lo))):
                if prob:
                    P[j, target] = P.get((j, target), F(0)) + prob
                    if target not in states:
                        states.add(target)
                        todo.append(target)
    return sorted(states), P


def bc_chain(mu: F, sigma: F, delta: F, lr: F, wstar: F) -> tuple[list[int], dict[tuple[int, int], F], int]:
    """BC's float iterate on intervals of width delta/L: interval i lies in cell floor(i / L) and jumps whole."""
    a = lr * mu
    b = {s: lr * (mu * wstar - s * sigma) / delta for s in (1, -1)}
    L = math.lcm(a.denominator, b[1].denominator, b[-1].denominator)  # intervals per cell
    k_star = floor(wstar / delta + F(1, 2))
    start = range(k_star * L, (k_star + 1) * L)
    states, todo, P = set(start), list(start), {}
    while todo:
        i = todo.pop()
        k = floor(F(i, L))
        for s in (1, -1):
            jump = (-a * k + b[s]) * L
            assert jump.denominator == 1, "jumps must be whole intervals"
            target = i + int(jump)
            P[i, target] = P.get((i, target), F(0)) + F(1, 2)
            if target not in states:
                states.add(target)
                todo.append(target)
    return sorted(states), P, L


def limit_law(states: list[int], P: dict[tuple[int, int], F], start: list[int]) -> np.ndarray:
    """The long-run law from ``start`` (uniform over those states): each closed class solved by GTH and weighted
    by the probability of ending in it (a dense absorption solve), transient states 0."""
    n = len(states)
    index = {s: k for k, s in enumerate(states)}
    rows, cols = zip(*((index[i], index[j]) for i, j in P))
    M = sp.csr_matrix(([float(p) for p in P.values()], (rows, cols)), shape=(n, n))
    np.testing.assert_allclose(np.asarray(M.sum(axis=1)).ravel(), 1.0, rtol=0, atol=1e-15)
    x0 = np.zeros(n)
    x0[[index[s] for s in start]] = 1.0 / len(start)
    ncomp, labels = connected_components(M, directed=True, connection="strong")
    coo = M.tocoo()
    leaving = set(labels[coo.row[labels[coo.row] != labels[coo.col]]].tolist())
    closed = [c for c in range(ncomp) if c not in leaving]
    transient = np.flatnonzero(np.isin(labels, list(leaving)))
    pi = np.zeros(n)
    for c in closed:
        members = np.flatnonzero(labels == c)
        weight = x0[members].sum()
        if transient.size:
            Q = M[transient][:, transient].toarray()
            into = np.asarray(M[transient][:, members].sum(axis=1)).ravel()
            weight += x0[transient] @ np.linalg.solve(np.eye(transient.size) - Q, into)
        pi[members] = weight * gth(M[members][:, members].tocsr())
    return pi


def gth(M: sp.csr_matrix) -> np.ndarray:
    """Stationary vector by GTH elimination on the band of ``M`` (states eliminated from the last down)."""
    n = M.shape[0]
    coo = M.tocoo()
    rows, cols = coo.row, coo.col
    bw = int(np.abs(rows - cols).max(initial=0))
    B = np.zeros((n, 2 * bw + 1))  # B[i, j - i + bw] = M[i, j]
    B[rows, cols - rows + bw] = coo.data
    out = np.zeros(n)
    for k in range(n - 1, 0, -1):
        lo = max(0, k - bw)
        ii = np.arange(lo, k)
        to_lower = B[k, lo - k + bw : bw]
        out[k] = to_lower.sum()  # the GTH pivot: a sum, never a difference
        into_k = B[ii, k - ii + bw]
        ii, into_k = ii[into_k != 0], into_k[into_k != 0]
        B[ii[:, None], np.arange(lo, k)[None, :] - ii[:, None] + bw] += np.outer(into_k, to_lower / out[k])
    pi = np.zeros(n)
    pi[0] = 1.0
    for k in range(1, n):
        lo = max(0, k - bw)
        ii = np.arange(lo, k)
        pi[k] = pi[lo:k] @ B[ii, k - ii + bw] / out[k]
        if pi[k] > 1e200:  # an unlikely state 0: rescale instead of overflowing
            pi[: k + 1] /= pi[k]
    return pi / pi.sum()


def null_space_solve(states: list[int], P: dict[tuple[int, int], F]) -> np.ndarray:
    """The stationary law of a chain with one closed class: the null vector of I - P^T (dense SVD)."""
    index = {s: k for k, s in enumerate(states)}
    M = np.zeros((len(states), len(states)))
    for (i, j), p in P.items():
        M[index[i], index[j]] = float(p)
    v = scipy.linalg.null_space(np.eye(len(states)) - M.T)
    assert v.shape[1] == 1, "the chain must have a single closed class"
    v = v[:, 0]
    return v / v.sum()


CASES = [  # mu, sigma, delta, wstar, lr (decimal strings, exact as fractions)
    ("1", "1", "1", "0.3", "0.001"),  # the case the old solver got wrong (w* off the grid, 30003 states)
    ("1", "1", "1", "0", "0.1"),
    ("1", "1", "1", "0", "0.01"),
    ("1", "1", "1", "0.3", "0.01"),
    ("2", "0.5", "0.25", "0.1", "0.05"),
    ("0.5", "1.5", "0.5", "0.5", "0.2"),  # w* on the grid, away from 0
    ("1", "2", "0.5", "0.1", "0.1"),
    ("1.5", "1", "0.5", "-0.2", "0.8"),  # lr*mu > 1: iterates jump across w*; BC's chain has 2 closed classes
    ("4", "3", "2", "0.7", "0.03"),
]


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_excess_matches_an_independent_exact_chain(case: tuple[str, ...]) -> None:
    mu, sigma, delta, wstar, lr = (F(v) for v in case)
    args = [float(v) for v in (mu, sigma, delta, lr, wstar)]
    f = lambda w: 0.5 * float(mu) * (w - float(wstar)) ** 2  # noqa: E731

    states, P = sr_chain(mu, sigma, delta, lr, wstar)
    pi = limit_law(states, P, [floor(wstar / delta + F(1, 2))])
    grid = np.array(states) * float(delta)
    expected = float(pi @ f(grid))
    ours = sr_stationary(*args)
    assert ours.excess == pytest.approx(expected, rel=1e-10, abs=1e-300)
    assert ours.residual <= 1e-12
    mine = dict(zip(ours.values.tolist(), ours.probs.tolist()))
    np.testing.assert_allclose([mine.get(w, 0.0) for w in grid], pi, rtol=1e-9, atol=1e-13)
    if len(states) <= 600 and ours.classes == 1:
        assert float(null_space_solve(states, P) @ f(grid)) == pytest.approx(expected, rel=1e-10)

    states, P, L = bc_chain(mu, sigma, delta, lr, wstar)
    k_star = floor(wstar / delta + F(1, 2))
    pi = limit_law(states, P, list(range(k_star * L, (k_star + 1) * L)))
    cells = np.floor_divide(np.array(states), L)
    expected = float(pi @ f(cells * float(delta)))
    ours_bc = bc_stationary(*args)
    assert ours_bc.lattice == pytest.approx(float(delta) / L)
    assert ours_bc.excess == pytest.approx(expected, rel=1e-10, abs=1e-300)
    assert ours_bc.residual <= 1e-12
    occupancy = np.bincount(cells - cells.min(), weights=pi)
    mine = dict(zip(ours_bc.values.tolist(), ours_bc.probs.tolist()))
    values = (np.arange(len(occupancy)) + cells.min()) * float(delta)
    np.testing.assert_allclose([mine.get(w, 0.0) for w in values], occupancy, rtol=1e-9, atol=1e-13)
    if len(states) <= 600 and ours_bc.classes == 1:
        assert float(null_space_solve(states, P) @ f(cells * float(delta))) == pytest.approx(expected, rel=1e-10)


def test_the_formerly_failing_case_reaches_the_dithering_limit() -> None:
    # w* = 0.3 between the grid points 0 and 1: BC's excess tends to 1/2 * 0.3 * 0.7 as lr -> 0
    b = bc_stationary(1.0, 1.0, 1.0, 0.001, 0.3)
    assert b.excess == pytest.approx(0.105, rel=1e-6)
    assert float(b.values @ b.probs) == pytest.approx(0.3, abs=1e-6)


def test_a_residual_above_the_tolerance_is_refused() -> None:
    with pytest.raises(ValueError, match=r"only reached \|\|pi P - pi\|\|_1 = .* use a larger lr"):
        bc_stationary(1.0, 1.0, 1.0, 0.01, 0.3, tol=0.0)  # no float solve has residual exactly 0 here


def test_cli_refuses_with_exit_2_when_the_solve_is_not_at_machine_precision(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    solve = markov._solve_closed

    def sloppy(P):  # type: ignore[no-untyped-def]
        pi = solve(P)
        pi[: len(pi) // 2] *= 1 + 1e-6
        return pi / pi.sum()

    monkeypatch.setattr(markov, "_solve_closed", sloppy)
    code = effrep(["quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "1", "--wstar", "0.3", "--lr", "0.01"])
    captured = capsys.readouterr()
    assert code == 2
    assert captured.out == ""
    assert len(captured.err.strip().splitlines()) == 1
    assert "not machine precision" in captured.err and "use a larger lr" in captured.err


def test_json_with_plot_is_valid_json_and_names_the_plot(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "markov.png"
    argv = ["quant", "markov", "--mu", "1", "--sigma", "1", "--delta", "1", "--lr", "0.1", "0.01", "--json",
            "--plot", str(target)]
    assert effrep(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["plot"] == str(target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out["excess"]["sr"]["0.1"] == pytest.approx(0.25, abs=1e-12)
