r"""Exact stationary distributions of SR and BC on a 1-D quadratic with two-point gradient noise.

This is the paper's greedy-search-phase argument computed exactly (a linear solve, no simulation).

Problem
-------
``f(w) = mu/2 (w - w*)^2``; the stochastic gradient at ``w`` is ``mu (w - w*) + s sigma`` with ``s = +1`` or
``-1`` with probability 1/2 each; learning rate ``a``. The grid is ``D Z``: resolution ``D``, zero included,
the paper's grid (``quant.grid=paper``) without its k-bit clipping, which only acts far from ``w*`` and is
irrelevant once the range covers ``w* +- sigma/mu + D``. (The ``midrise`` grid ``D (Z + 1/2)`` gives the same
chain shifted by ``D/2``: use ``w* - D/2``.) The excess loss reported is ``E[f(w_used)] - f(w*)`` under the
stationary law, where ``w_used`` is the weight the model computes with: SR's iterate, BC's ``Q_d(w_r)``.

SR: ``w <- Q_s(w - a g(w))``
----------------------------
The state is a grid point ``jD``. From it, ``v = jD - a(mu(jD - w*) + s sigma)``, and ``Q_s`` goes to
``floor(v/D)`` or the next grid point up with probabilities ``1 - p`` and ``p``, ``p = v/D - floor(v/D)``. So
row ``j`` of the transition matrix has at most four entries, each an explicit function of the parameters.

*No truncation.* For ``a mu <= 1`` the grid points in ``[floor_D(w* - sigma/mu), ceil_D(w* + sigma/mu)]``
form a closed set: if ``|w - w*| <= sigma/mu`` then ``v - w* = (1 - a mu)(w - w*) - a s sigma`` lies in
``[-sigma/mu, sigma/mu]``, so ``Q_s(v)`` stays inside; if ``w - w* > sigma/mu`` both noise signs give a
positive gradient, so ``v < w`` and ``Q_s(v) <= w`` (and ``v - w* >= -a sigma >= -sigma/mu``); symmetrically
below. For ``1 < a mu < 2``, ``|v - w*| <= |1 - a mu||w - w*| + a sigma`` and rounding moves less than ``D``,
so the grid points within ``R = (a sigma + D) / (1 - |1 - a mu|)`` of ``w*`` are closed. The chain is solved
on that finite set: it never leaves it, so nothing is cut off. (``a mu >= 2`` diverges and is refused.)

*Why SR stalls.* Once ``a |g| < D`` for every state, each move goes to a neighbour: from ``jD`` down with
probability ``(a / 2D) sum_s max(g_s, 0)`` and up with ``(a / 2D) sum_s max(-g_s, 0)``, where
``g_s = mu (jD - w*) + s sigma``. Both are proportional to ``a``, so the chain is a birth-death chain whose
up/down ratios, hence its stationary law and excess loss, do not depend on ``a`` at all: lowering the
learning rate only slows SR down.

BC: ``w_r <- w_r - a g(Q_d(w_r))``
----------------------------------
The float iterate ``w_r`` is a continuous-state chain, but it is piecewise a translation: in the cell
``C_k = [(k - 1/2)D, (k + 1/2)D)`` (where ``Q_d(w_r) = kD``) it jumps by
``J(k, s) = -a mu D k + a mu w* - s a sigma``, the same for every point of the cell. Write the three
parameter ratios ``a mu``, ``a (mu w* - sigma)/D`` and ``a (mu w* + sigma)/D`` as fractions (exactly, for the
decimal inputs one types; inputs that have no fraction with denominator <= ``max_denominator`` are refused)
and let ``h`` be the greatest common divisor of them and of 1. Then ``D`` and every jump are integer
multiples of ``hD``, and the cell boundaries fall on the lattice ``-D/2 + hD Z``.

Cut the line into the intervals ``I_i = [-D/2 + i hD, -D/2 + (i+1) hD)``. Every point of ``I_i`` lies in the
same cell ``k = floor(i / n)`` (``n = 1/h`` intervals per cell) and jumps by the same multiple of ``hD``,
so the whole interval moves to one interval ``I_{i'}``: the interval index is an *exact* finite-state
Markov chain for every starting point, with two transitions per state. A density that is uniform within
each interval with weights ``pi_i`` is therefore stationary for ``w_r`` exactly when ``pi`` is stationary
for the interval chain, and BC's stationary excess is ``sum_k P(w_r in C_k) mu/2 (kD - w*)^2`` with
``P(w_r in C_k)`` the ``pi``-mass of the cell's intervals. The state set is closed by the same argument as
for SR: ``|w_r' - w*| <= |1 - a mu||w_r - w*| + a mu D/2 + a sigma``, so the intervals meeting the ball of
radius ``R = (a mu D/2 + a sigma)/(1 - |1 - a mu|)`` (``= D/2 + sigma/mu`` for ``a mu <= 1``; at least ``D``
so the start cell is inside) around ``w*`` form a closed set; nothing is truncated.

*Uniqueness.* If the jumps only generate a coarser lattice than ``hD Z`` the interval chain splits into
several closed classes (points of different residue classes never meet) and the stationary law depends on
where ``w_r`` started. We report the law reached from ``w_r`` uniformly distributed over the cell of ``w*``:
each class weighted by the probability of being absorbed into it from there (a further linear solve).

*Why BC keeps improving.* With ``w*`` on the grid, the gradient inside the cell of ``w*`` is pure noise and
``w_r`` random-walks there; to leave the cell it must climb against a drift of ``a mu D`` per step with
steps of size ``a sigma``, which happens with a probability that vanishes as ``a -> 0`` (mass outside the
cell ``~ a sigma^2 / (mu D^2)`` in the diffusion limit; exactly ``a`` for ``mu = sigma = D = 1``). BC's excess
loss keeps shrinking with the learning rate, to 0. With ``w*`` strictly between grid points ``q0 < w* < q1``,
``w_r`` settles at the cell boundary where the quantized gradient changes sign and ``Q_d(w_r)`` dithers
between ``q0`` and ``q1`` with mean ``w*``; the excess then shrinks to ``mu/2 (w* - q0)(q1 - w*)``
(``bc_limit`` in the report), still below SR's plateau.

Solving
-------
For a closed class with transition matrix ``P`` the stationary ``pi`` solves ``pi P = pi``, ``sum pi = 1``. The
balance equation of the last state is replaced by the normalisation and the system is solved by sparse LU
(:func:`_solve_closed`). Normalising inside the solve matters: the laws here span hundreds of orders of
magnitude (BC with ``w*`` off the grid at lr 1e-3 puts ``e^-600`` on the far side of its cell), so fixing
one state's probability to 1 instead overflows every other state when that state is an unlikely one.
``||pi P - pi||_1`` is reported as ``residual``; a result whose residual is above ``RESIDUAL_TOL`` (1e-12;
the solves land at 1e-17 to 1e-14) or whose excess is not finite is refused with a ValueError rather than
returned. Checked against GTH elimination on chains built from exact fractions (tests/quant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Optional

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components, reverse_cuthill_mckee
from scipy.sparse.linalg import splu, spsolve

MAX_STATES = 2_000_000
MAX_DENOMINATOR = 1_000_000
RESIDUAL_TOL = 1e-12  # ||pi P - pi||_1 above this is not machine precision: the result is refused


@dataclass(frozen=True)
class Stationary:
    """The stationary law of one algorithm at one learning rate, and its expected excess loss."""

    algorithm: str
    lr: float
    excess: float  # E[f(w_used)] - f(w*) under the stationary law
    values: np.ndarray  # the values w_used takes (grid points)
    probs: np.ndarray  # their stationary probabilities
    states: int  # size of the finite chain that was solved
    residual: float  # ||pi P - pi||_1
    lattice: Optional[float] = None  # BC: width hD of the intervals of the exact interval chain
    classes: int = 1  # closed classes of the chain (more than one: see "Uniqueness" in the module doc)
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        """A JSON-ready dict (lists, floats)."""
        out = {
            "algorithm": self.algorithm,
            "lr": self.lr,
            "excess": self.excess,
            "states": self.states,
            "residual": self.residual,
            "classes": self.classes,
            "distribution": {"w": [float(v) for v in self.values], "p": [float(p) for p in self.probs]},
        }
        if self.lattice is not None:
            out["lattice"] = self.lattice
        out.update(self.extra)
        return out


def _check(mu: float, sigma: float, delta: float, lr: float) -> None:
    problems = []
    if not mu > 0:
        problems.append(f"mu must be > 0 (the curvature of f), got {mu}")
    if not sigma >= 0:
        problems.append(f"sigma must be >= 0 (the gradient noise), got {sigma}")
    if not delta > 0:
        problems.append(f"delta must be > 0 (the grid resolution), got {delta}")
    if not lr > 0:
        problems.append(f"lr must be > 0, got {lr}")
    elif mu > 0 and lr * mu >= 2:
        problems.append(f"lr * mu = {lr * mu:g} >= 2: gradient descent on this quadratic diverges; use lr < {2 / mu:g}")
    if problems:
        raise ValueError("; ".join(problems))


def _solve_closed(P: sp.csr_matrix) -> np.ndarray:
    """Stationary law of an irreducible stochastic matrix: the balance equations with one replaced by sum(pi) = 1.

    The normalisation row keeps every unknown in [0, 1], so tails of 1e-300 underflow harmlessly instead of
    overflowing the likely states (as pinning an unlikely state to 1 would). The states are put in reverse
    Cuthill-McKee order (a narrow band: fill-in stays small) and the normalisation replaces the balance
    equation of the state eliminated last, so the dense row never causes fill. ``I - P^T`` is column-diagonally
    dominant in any symmetric order, so its LU needs no pivoting. If a factorisation fails or misses the
    residual, a minimum-degree ordering and then partial pivoting are tried. One step of iterative
    refinement follows each solve; the caller checks the residual.
    """
    m = P.shape[0]
    if m == 1:
        return np.ones(1)
    order = reverse_cuthill_mckee((P + P.T).tocsr(), symmetric_mode=True)
    Pp = P[order][:, order].tocsr()
    balance = (sp.identity(m, format="csr") - Pp.T.tocsr())[: m - 1]
    A = sp.vstack([balance, sp.csr_matrix(np.ones((1, m)))]).tocsc()
    b = np.zeros(m)
    b[-1] = 1.0
    best, best_res = np.full(m, np.nan), np.inf
    for permc, pivot in (("NATURAL", 0.0), ("MMD_AT_PLUS_A", 0.0), ("COLAMD", 1.0)):
        try:
            lu = splu(A, permc_spec=permc, diag_pivot_thresh=pivot)
        except RuntimeError:  # an exactly singular pivot: try the next ordering
            continue
        x = lu.solve(b)
        x += lu.solve(b - A @ x)
        x = np.clip(x, 0.0, None)
        total = x.sum()
        if not (np.isfinite(total) and total > 0):
            continue
        x /= total
        res = _residual(Pp, x)
        if res < best_res:
            best, best_res = x, res
        if res <= RESIDUAL_TOL:
            break
    pi = np.empty(m)
    pi[order] = best
    return pi


def stationary_distribution(P: sp.spmatrix, start: np.ndarray) -> tuple[np.ndarray, int]:
    """Stationary law of the finite chain ``P`` reached from ``start``, and its number of closed classes."""
    # With several closed classes each one gets the probability of being absorbed into it from ``start``.
    P = sp.csr_matrix(P)
    n = P.shape[0]
    ncomp, labels = connected_components(P, directed=True, connection="strong")
    coo = P.tocoo()
    leaves = (labels[coo.row] != labels[coo.col]) & (coo.data > 0)
    is_open = np.zeros(ncomp, dtype=bool)
    is_open[labels[coo.row[leaves]]] = True
    closed = np.flatnonzero(~is_open)
    weights: dict[int, float] = {}
    start = np.asarray(start, dtype=np.float64)
    if len(closed) == 1:
        weights[int(closed[0])] = 1.0
    else:
        in_closed = np.isin(labels, closed)
        transient = np.flatnonzero(~in_closed)
        if transient.size:
            Ptt = P[transient][:, transient]
            # column c of the right-hand side: one-step probability from a transient state into class c
            into = np.zeros((n, len(closed)))
            into[np.flatnonzero(in_closed), np.searchsorted(closed, labels[in_closed])] = 1.0
            rhs = P[transient] @ into
            absorb = spsolve((sp.identity(transient.size, format="csc") - Ptt.tocsc()), rhs)
            absorb = np.asarray(absorb).reshape(transient.size, len(closed))
            via_transient = start[transient] @ absorb
        else:
            via_transient = np.zeros(len(closed))
        for c_i, c in enumerate(closed):
            weights[int(c)] = float(start[labels == c].sum() + via_transient[c_i])
    pi = np.zeros(n)
    for label, weight in weights.items():
        if weight <= 0:
            continue
        idx = np.flatnonzero(labels == label)
        pi[idx] = weight * _solve_closed(P[idx][:, idx])
    return pi / pi.sum(), len(closed)


def _residual(P: sp.spmatrix, pi: np.ndarray) -> float:
    return float(np.abs(P.T @ pi - pi).sum())


def _checked_residual(algorithm: str, lr: float, P: sp.spmatrix, pi: np.ndarray, excess: float, tol: float) -> float:
    """``||pi P - pi||_1``, or ValueError when it (or the excess) is not trustworthy: no wrong number is returned."""
    residual = _residual(P, pi)
    if not (residual <= tol and math.isfinite(excess)):
        raise ValueError(
            f"{algorithm.upper()}'s stationary solve at lr={lr:g} only reached ||pi P - pi||_1 = {residual:.2g} "
            f"(> {tol:g}, not machine precision) on {P.shape[0]} states, so its excess is not reliable; use a larger "
            "lr, or mu, sigma, delta and wstar with shorter decimal ratios (a smaller chain)"
        )
    return residual


def sr_stationary(
    mu: float,
    sigma: float,
    delta: float,
    lr: float,
    wstar: float = 0.0,
    *,
    max_states: int = MAX_STATES,
    tol: float = RESIDUAL_TOL,
) -> Stationary:
    """Exact stationary law and excess loss of SR, ``w <- Q_s(w - lr g(w))``, on the grid ``delta Z``."""
    _check(mu, sigma, delta, lr)
    if lr * mu <= 1:
        lo = math.floor((wstar - sigma / mu) / delta)
        hi = math.ceil((wstar + sigma / mu) / delta)
    else:
        radius = (lr * sigma + delta) / (1 - abs(1 - lr * mu))
        lo = math.ceil((wstar - radius) / delta)
        hi = math.floor((wstar + radius) / delta)
    # the nearest grid point to w* must be a state (it is the start)
    start_j = math.floor(wstar / delta + 0.5)
    lo, hi = min(lo, start_j), max(hi, start_j)
    n = hi - lo + 1
    if n > max_states:
        raise ValueError(f"SR chain needs {n} states (> {max_states}); use a larger delta or smaller sigma/mu")
    j = np.arange(lo, hi + 1, dtype=np.float64)
    w = j * delta
    rows, cols, vals = [], [], []
    for s in (1.0, -1.0):
        v = w - lr * (mu * (w - wstar) + s * sigma)
        y = v / delta
        lower = np.floor(y)
        p = y - lower
        # float noise must not create a move of probability 1e-16 off a grid point
        up = p > 1 - 1e-12
        lower[up] += 1
        p[up] = 0.0
        p[p < 1e-12] = 0.0
        for target, prob in ((lower, 0.5 * (1 - p)), (lower + 1, 0.5 * p)):
            keep = prob > 0
            rows.append(np.flatnonzero(keep))
            cols.append(np.clip(target[keep] - lo, 0, n - 1).astype(np.int64))
            vals.append(prob[keep])
    P = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    start = np.zeros(n)
    start[start_j - lo] = 1.0
    pi, classes = stationary_distribution(P, start)
    excess = float(pi @ (0.5 * mu * (w - wstar) ** 2))
    residual = _checked_residual("sr", lr, P, pi, excess, tol)
    keep = pi > 0
    return Stationary("sr", lr, excess, w[keep], pi[keep], n, residual, classes=classes)


def _fraction(x: float, what: str, max_denominator: int) -> Fraction:
    fr = Fraction(x).limit_denominator(max_denominator)
    if abs(float(fr) - x) > 1e-12 * max(1.0, abs(x)):
        raise ValueError(
            f"{what} = {x!r} is not a fraction with denominator <= {max_denominator}, so BC's interval chain "
            "would need too fine a lattice; pick lr, mu, sigma, delta and wstar with short decimal ratios "
            "(e.g. lr=0.003 rather than 0.0031415)"
        )
    return fr


def _gcd(values: list[Fraction]) -> Fraction:
    out = Fraction(0)
    for v in values:
        v = abs(v)
        if v == 0:
            continue
        if out == 0:
            out = v
            continue
        den = out.denominator * v.denominator // math.gcd(out.denominator, v.denominator)
        out = Fraction(math.gcd(int(out * den), int(v * den)), den)
    return out


def bc_stationary(
    mu: float,
    sigma: float,
    delta: float,
    lr: float,
    wstar: float = 0.0,
    *,
    max_states: int = MAX_STATES,
    max_denominator: int = MAX_DENOMINATOR,
    tol: float = RESIDUAL_TOL,
) -> Stationary:
    """Exact stationary excess loss of BC, ``w_r <- w_r - lr g(Q_d(w_r))``, through the interval chain (module doc)."""
    _check(mu, sigma, delta, lr)
    step = _fraction(lr * mu, "lr*mu", max_denominator)  # jump per cell, in units of D
    b_plus = _fraction(lr * (mu * wstar - sigma) / delta, "lr*(mu*wstar - sigma)/delta", max_denominator)
    b_minus = _fraction(lr * (mu * wstar + sigma) / delta, "lr*(mu*wstar + sigma)/delta", max_denominator)
    h = _gcd([Fraction(1), step, b_plus, b_minus])
    per_cell = int(1 / h)
    A, Bp, Bm = int(step / h), int(b_plus / h), int(b_minus / h)
    if lr * mu <= 1:
        radius = delta / 2 + sigma / mu
    else:
        radius = (lr * mu * delta / 2 + lr * sigma) / (1 - abs(1 - lr * mu))
    radius = max(radius, delta) + float(h) * delta
    width = float(h) * delta
    i_lo = math.floor((wstar - radius + delta / 2) / width)
    i_hi = math.floor((wstar + radius + delta / 2) / width)
    n = i_hi - i_lo + 1
    if n > max_states:
        raise ValueError(
            f"BC's interval chain needs {n} states (> {max_states}) at lattice width {width:g}; use a larger lr "
            "or ratios with smaller denominators"
        )
    i = np.arange(i_lo, i_hi + 1, dtype=np.int64)
    cell = np.floor_divide(i, per_cell)
    rows, cols = [], []
    for b in (Bp, Bm):
        target = i - A * cell + b
        if target.min() < i_lo or target.max() > i_hi:
            raise AssertionError("BC interval chain left its closed set; the radius bound is wrong")
        rows.append(np.arange(n))
        cols.append(target - i_lo)
    P = sp.csr_matrix((np.full(2 * n, 0.5), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    k_star = math.floor(wstar / delta + 0.5)
    start = (cell == k_star).astype(np.float64)
    start /= start.sum()
    pi, classes = stationary_distribution(P, start)
    cells = np.arange(cell.min(), cell.max() + 1)
    occupancy = np.bincount(cell - cell.min(), weights=pi, minlength=len(cells))
    values = cells * delta
    excess = float(occupancy @ (0.5 * mu * (values - wstar) ** 2))
    residual = _checked_residual("bc", lr, P, pi, excess, tol)
    keep = occupancy > 0
    return Stationary("bc", lr, excess, values[keep], occupancy[keep], n, residual, lattice=width, classes=classes)


def markov_report(mu: float, sigma: float, delta: float, lrs: list[float], wstar: float = 0.0) -> dict:
    """The JSON the `quant markov` command prints: stationary excess loss of SR and BC for each learning rate."""
    if not lrs:
        raise ValueError("give at least one learning rate")
    results = []
    for lr in lrs:
        for fn in (sr_stationary, bc_stationary):
            results.append(fn(mu, sigma, delta, lr, wstar).to_json())
    q0 = math.floor(wstar / delta) * delta
    bc_limit = 0.5 * mu * (wstar - q0) * (q0 + delta - wstar)
    return {
        "problem": {
            "mu": mu,
            "sigma": sigma,
            "delta": delta,
            "wstar": wstar,
            "f": "mu/2 (w - wstar)^2",
            "gradient": "mu (w - wstar) + s sigma, s = +1 or -1 with probability 1/2",
            "grid": "delta * Z (the paper's grid, quant.grid=paper, without clipping)",
            "excess": "E[f(w_used)] - f(wstar) under the exact stationary law; w_used = SR's iterate, BC's Q_d(w_r)",
            "bc_limit": bc_limit,
        },
        "excess": {alg: {repr(float(r["lr"])): r["excess"] for r in results if r["algorithm"] == alg} for alg in ("sr", "bc")},
        "results": results,
    }
