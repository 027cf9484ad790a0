"""Curvature of the loss at a point: Hessian-vector products, extreme eigenvalues, trace, spectral density.

Everything is built on one operator, ``HessianOperator``: ``v -> H v`` for the Hessian of the *mean*
loss over a fixed data set, with respect to the parameters a landscape's directions move. Pure
functions on tensors: no files, no communication, no printing.

The operator:

- *Mean, not sum.* The data are evaluated in batches of ``batch_size``; each batch's mean loss is
  weighted by ``len(batch) / N``, so H does not depend on how the set is split (the original research
  code summed per-batch products, which scales its eigenvalues by the number of batches). With
  ``bn="train"`` the batch statistics do depend on the split, as the loss itself does.
- *Parameters.* ``bias_bn="ignore"`` (default) covers the tensors of two or more dimensions (conv
  and linear weights), exactly those a filter-normalized direction moves; ``"include"`` covers every
  parameter (biases, BN scale and shift too), matching ``landscape.bias_bn``.
- *BN policy* (``_BatchNorm`` modules only; everything else, dropout included, is in eval mode):
  ``eval`` uses the running statistics the model holds; ``train`` uses each batch's own statistics and
  differentiates through them, without updating the running ones; ``recompute`` is ``eval`` once the
  caller has re-estimated the statistics at the point (``evaluate.at_point(..., bn="recompute")``). The model's
  parameters, buffers and modes are never changed by an HVP.
- *Two implementations* of one product: ``double_backward`` (reverse over reverse: the gradient with
  ``create_graph=True``, then its vector-Jacobian product with ``v``) and ``forward_over_reverse``
  (``torch.func.jvp`` of ``torch.func.grad``). They agree to float rounding. Double backward can keep
  each batch's gradient graph between products at the same point (up to ``cache_bytes`` of saved
  tensors), so that a Lanczos run pays the forward and first backward pass once instead of per
  product; ``benchmarks/hessian_throughput.py`` measured it the fastest (about 2x a gradient on the
  digits CNN and ResNet-20, against about 3x uncached and 3-3.8x forward-over-reverse on a CPU), so it
  is ``DEFAULT_HVP``.
- The operator works at the model's *current* parameters: to move to ``w0 + a*dx + b*dy`` the caller
  sets them (``directions.set_weights``) and keeps the operator.

The algorithms (each returns the number of HVPs it used; random vectors come from a CPU
``torch.Generator`` seeded per call, in float64, then cast, so a seed gives the same run on any device):

- ``hessian_eigenvalues``: the top-k and the smallest eigenvalue from *one* Lanczos run with full
  reorthogonalization (both ends of the spectrum converge together, so no shift is guessed), stopped
  when every wanted Ritz value's error estimate (``min(r, r^2/gap)``, r its residual norm) is below
  ``tol`` relative to it, or after ``max_iter`` steps; an eigenvalue below ``tol`` times the spectral
  radius rho in magnitude is resolved to ``tol**2 * rho`` instead (relative accuracy of a value near 0
  is not needed for ``|min/max|`` and would cost many steps). A model whose loss is NaN at the point
  gives NaN values, not an error. ``method="power"`` is plain power iteration with deflation (what single-device libraries
  do; the minimum by power iteration on ``H - lambda_max I``), kept for comparison.
- ``hutchinson_trace``: Rademacher probes ``E[v^T H v]``, with the standard error of the mean; stops
  when that is below ``rel_tol`` of the estimate (after ``min_probes``), or at ``max_probes``.
- ``spectral_density``: stochastic Lanczos quadrature, several Rademacher probes, each Ritz value
  broadened by a Gaussian; the density on a grid integrates to 1 and its mean is ``trace / dim``.
- ``dense_hessian`` / ``exact_trace``: ``dim`` HVPs with unit vectors, for tiny models and checks.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, jvp
from torch.nn.modules.batchnorm import _BatchNorm

from effrep_hpc.landscape.directions import check_bias_mode
from effrep_hpc.registry import unknown_name_message
from effrep_hpc.train.losses import LOSSES, batch_loss

HVP_MODES: tuple[str, ...] = ("double_backward", "forward_over_reverse")
DEFAULT_HVP = "double_backward"  # faster in benchmarks/hessian_throughput.py (CPU; see the README)
EIGEN_METHODS: tuple[str, ...] = ("lanczos", "power")
CURVATURE_BN: tuple[str, ...] = ("eval", "recompute", "train")
DEFAULT_TOL = 1e-3  # eigenvalues to relative 1e-3
DEFAULT_MAX_ITER = 100  # Lanczos steps (= HVPs), or power iterations per eigenvalue
DEFAULT_CACHE_BYTES = 4 * 2**30  # gradient graphs an operator may keep between products (double_backward)
MAX_DENSE_DIM = 20_000  # dense_hessian refuses larger operators (dim HVPs and dim^2 memory)


def _check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(unknown_name_message(kind, str(value), list(choices)))


def _check_int(name: str, value: object, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or int(value) < low:
        raise ValueError(f"{name} must be an integer >= {low} (got {value!r})")
    return int(value)


def _check_positive(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
        raise ValueError(f"{name} must be a number > 0 (got {value!r})")
    if not math.isfinite(float(value)) or float(value) <= 0:
        raise ValueError(f"{name} must be a finite number > 0 (got {value!r})")
    return float(value)


def curvature_parameters(model: nn.Module, bias_bn: str = "ignore") -> list[str]:
    """Names of the parameters the Hessian covers: those of >= 2 dims with ``"ignore"``, all with ``"include"``."""
    check_bias_mode(bias_bn)
    names = [n for n, p in model.named_parameters() if bias_bn == "include" or p.dim() > 1]
    if not names:
        raise ValueError(
            "the model has no weight tensor of two or more dimensions; use bias_bn='include' to cover all parameters"
        )
    return names


def check_eigen_args(method: str, k: int, tol: float, max_iter: int, dim: int | None = None) -> None:
    """Raise ValueError (one line, saying what to change) for a bad eigenvalue request; ``dim``: parameter count."""
    _check_choice("eigenvalue method", method, EIGEN_METHODS)
    _check_int("k (number of top eigenvalues)", k, 1)
    _check_positive("the eigenvalue tolerance", tol)
    _check_int("max_iter", max_iter, 1)
    if dim is not None and int(k) > dim:
        raise ValueError(f"k={k} exceeds the {dim} parameters the Hessian covers; choose k <= {dim}")


class HessianOperator:
    """``v -> H v`` for the Hessian of the mean loss over ``(x, y)`` w.r.t. the covered parameters (flat vectors).

    ``x``/``y`` are moved to the model's device once; ``hvps`` counts the products computed so far.
    With ``double_backward`` the per-batch gradient graphs are kept between calls while their saved
    tensors fit in ``cache_bytes`` (0: never): every later product at the same parameters then costs
    only the second backward pass. The cache is rebuilt when a parameter or buffer of the model changes
    (in place or replaced), and freed by ``clear_cache``.
    """

    def __init__(
        self,
        model: nn.Module,
        x: Tensor,
        y: Tensor,
        *,
        loss: str = "ce",
        bn: str = "eval",
        bias_bn: str = "ignore",
        batch_size: int = 256,
        hvp: str = DEFAULT_HVP,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        _check_choice("loss", loss, LOSSES)
        _check_choice("BN policy", bn, CURVATURE_BN)
        _check_choice("HVP implementation", hvp, HVP_MODES)
        _check_int("batch_size", batch_size, 1)
        _check_int("cache_bytes", cache_bytes, 0)
        if len(x) != len(y):
            raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
        if len(x) == 0:
            raise ValueError("the data set for the Hessian is empty")
        self.model, self.loss, self.bn, self.hvp_mode = model, loss, bn, hvp
        self.cache_bytes = int(cache_bytes)
        self.names = curvature_parameters(model, bias_bn)
        params = dict(model.named_parameters())
        self.shapes = [tuple(params[n].shape) for n in self.names]
        self.numels = [params[n].numel() for n in self.names]
        self.dim = int(sum(self.numels))
        self.dtype = params[self.names[0]].dtype
        self.device = params[self.names[0]].device
        self.n_samples = len(x)
        x, y = x.to(self.device), y.to(self.device)
        bs = int(batch_size)
        self.batches = [(x[s : s + bs], y[s : s + bs]) for s in range(0, len(x), bs)]
        self.hvps = 0
        self._grad_fn = grad(self._batch_loss)
        self._cache: _GraphCache | None = None

    # ---- flat vectors <-> per-parameter tensors
    def _split(self, v: Tensor) -> list[Tensor]:
        if v.dim() != 1 or v.numel() != self.dim:
            raise ValueError(f"expected a vector of {self.dim} elements, got shape {tuple(v.shape)}")
        return [t.view(s) for t, s in zip(torch.split(v, self.numels), self.shapes)]

    def _flat(self, parts: list[Tensor]) -> Tensor:
        return torch.cat([t.reshape(-1).to(self.dtype) for t in parts])

    def _params(self) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """(covered, fixed) parameters at the model's current values, detached (the model's own never get grads)."""
        covered = set(self.names)
        named = dict(self.model.named_parameters())
        fixed = {n: p.detach() for n, p in named.items() if n not in covered}
        return {n: named[n].detach() for n in self.names}, fixed

    def _state_key(self) -> tuple:
        """Identity, memory and version of every parameter and buffer: a cached graph is valid while they are unchanged.

        The cache keeps the old memory alive, so a replaced tensor cannot come back at the same address.
        """
        tensors = list(self.model.parameters()) + list(self.model.buffers())
        return tuple((id(t), t.data_ptr(), t._version) for t in tensors)

    @contextmanager
    def _policy(self) -> Iterator[None]:
        """The model in the BN policy's modes for one call; modes and flags restored afterwards."""
        modes = [(m, m.training) for m in self.model.modules()]
        bns = [m for m in self.model.modules() if isinstance(m, _BatchNorm)]
        tracking = [(m, m.track_running_stats) for m in bns]
        try:
            self.model.eval()
            if self.bn == "train":
                for m in bns:
                    # batch statistics, and no update of the running ones (nothing to restore, nothing mutated)
                    m.train()
                    m.track_running_stats = False
            yield
        finally:
            for mod, mode in modes:
                mod.training = mode
            for m, flag in tracking:
                m.track_running_stats = flag

    def _batch_loss(self, covered: dict[str, Tensor], fixed: dict[str, Tensor], xb: Tensor, yb: Tensor) -> Tensor:
        out = functional_call(self.model, {**fixed, **covered}, (xb,))
        return batch_loss(out, yb, self.loss) * (len(yb) / self.n_samples)

    def _gradient_graph(self, leaves: list[Tensor], fixed: dict[str, Tensor], xb: Tensor, yb: Tensor) -> tuple[list[Tensor], int]:
        """One batch's gradient with its graph (``create_graph``), and the bytes of the tensors that graph saves.

        Memory that exists anyway (parameters, buffers, the data the batches are views of) is not counted.
        """
        resident = [*self.model.parameters(), *self.model.buffers(), *self.batches[0]]
        seen = {t.untyped_storage().data_ptr() for t in resident}
        size = [0]

        def pack(t: Tensor) -> Tensor:
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                size[0] += storage.nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            loss = self._batch_loss(dict(zip(self.names, leaves)), fixed, xb, yb)
            g = list(torch.autograd.grad(loss, leaves, create_graph=True))
        return g, size[0]

    def _double_backward(self, vs: list[Tensor]) -> list[Tensor]:
        key = self._state_key()
        if self._cache is None or self._cache.key != key:
            self._cache = None  # free the old graphs before building new ones
            covered, fixed = self._params()
            self._cache = _GraphCache(key, [t.requires_grad_() for t in covered.values()], fixed)
        cache = self._cache
        acc: list[Tensor] = []
        for i, (xb, yb) in enumerate(self.batches):
            if i < len(cache.graphs):
                g, keep = cache.graphs[i], True
            else:
                g, size = self._gradient_graph(cache.leaves, cache.fixed, xb, yb)
                keep = cache.open and cache.bytes + size <= self.cache_bytes
                if keep:
                    cache.graphs.append(g)
                    cache.bytes += size
                else:
                    cache.open = False  # keep a prefix of batches: the rest is recomputed every call
            live = [j for j, gi in enumerate(g) if gi.requires_grad]  # a gradient constant in the weights has none
            parts: tuple[Tensor | None, ...] = (None,) * len(g)
            if live:
                parts = torch.autograd.grad(
                    [g[j] for j in live], cache.leaves, grad_outputs=[vs[j] for j in live],
                    retain_graph=keep, allow_unused=True,
                )
            hv = [torch.zeros_like(t) if h is None else h for h, t in zip(parts, cache.leaves)]
            if acc:
                torch._foreach_add_(acc, hv)
            else:
                acc = hv
        return acc

    def _forward_over_reverse(self, vs: list[Tensor]) -> list[Tensor]:
        covered, fixed = self._params()
        tangents = dict(zip(self.names, vs))
        acc: list[Tensor] = []
        for xb, yb in self.batches:
            out = jvp(lambda p, xb=xb, yb=yb: self._grad_fn(p, fixed, xb, yb), (covered,), (tangents,))[1]
            hv = [out[n].detach() for n in self.names]
            if acc:
                torch._foreach_add_(acc, hv)
            else:
                acc = hv
        return acc

    # ---- public
    def __call__(self, v: Tensor) -> Tensor:
        """``H v`` for a flat vector ``v`` of ``dim`` elements (one HVP over the whole data set)."""
        vs = self._split(v.to(self.device, self.dtype))
        with self._policy():
            if self.hvp_mode == "double_backward":
                if self.cache_bytes == 0:
                    self._cache = None
                acc = self._double_backward(vs)
            else:
                acc = self._forward_over_reverse(vs)
        self.hvps += 1
        return self._flat(acc)

    def clear_cache(self) -> None:
        """Free the cached gradient graphs (they are rebuilt on the next product)."""
        self._cache = None

    @property
    def cached_bytes(self) -> int:
        """Bytes of saved tensors held by the cached gradient graphs."""
        return 0 if self._cache is None else self._cache.bytes

    @property
    def cached_batches(self) -> int:
        """How many of the batches have their gradient graph cached."""
        return 0 if self._cache is None else len(self._cache.graphs)

    def gradient(self) -> Tensor:
        """The flat gradient of the mean loss w.r.t. the covered parameters (a backward pass per batch)."""
        covered, fixed = self._params()
        leaves = {n: t.requires_grad_() for n, t in covered.items()}
        acc: list[Tensor] = []
        with self._policy():
            for xb, yb in self.batches:
                g = list(torch.autograd.grad(self._batch_loss(leaves, fixed, xb, yb), list(leaves.values())))
                if acc:
                    torch._foreach_add_(acc, g)
                else:
                    acc = g
        return self._flat(acc)

    @torch.no_grad()
    def loss_value(self) -> float:
        """The mean loss over the data set at the model's current parameters, in the BN policy."""
        covered, fixed = self._params()
        with self._policy():
            return float(sum(float(self._batch_loss(covered, fixed, xb, yb)) for xb, yb in self.batches))


@dataclass
class _GraphCache:
    """Gradient graphs of the first batches at one state of the model (``key``), built on ``leaves``."""

    key: tuple
    leaves: list[Tensor]
    fixed: dict[str, Tensor]
    graphs: list[list[Tensor]] = field(default_factory=list)
    bytes: int = 0
    open: bool = True  # False once a batch did not fit: later batches are never cached


@torch.no_grad()


# ---------------------------------------------------------------- random vectors


def _generator(seed: int) -> torch.Generator:
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    return gen


def _gaussian(op: HessianOperator, gen: torch.Generator) -> Tensor:
    return torch.randn(op.dim, generator=gen, dtype=torch.float64).to(op.device, op.dtype)


def _rademacher(op: HessianOperator, gen: torch.Generator) -> Tensor:
    signs = torch.randint(0, 2, (op.dim,), generator=gen, dtype=torch.int8).to(torch.float64) * 2 - 1
    return signs.to(op.device, op.dtype)


# ---------------------------------------------------------------- Lanczos


@dataclass
class _Tridiagonal:
    """The Lanczos recurrence so far: diagonal ``alpha`` (m), couplings ``beta`` (m-1), next coupling ``last``."""

    alpha: list[float]
    beta: list[float]
    last: float

    @property
    def finite(self) -> bool:
        return math.isfinite(self.last) and all(math.isfinite(a) for a in self.alpha)

    def ritz(self) -> tuple[np.ndarray, np.ndarray]:
        """Ritz values (ascending) and the eigenvectors of T (columns); all NaN if T is not finite."""
        a = np.asarray(self.alpha, dtype=np.float64)
        if not self.finite:
            return np.full(len(a), np.nan), np.full((len(a), len(a)), np.nan)
        if len(a) == 1:
            return a.copy(), np.ones((1, 1))
        return scipy.linalg.eigh_tridiagonal(a, np.asarray(self.beta, dtype=np.float64))


def _lanczos(
    op: HessianOperator,
    v0: Tensor,
    steps: int,
    *,
    restart_gen: torch.Generator | None,
    stop: Callable[[_Tridiagonal], bool] | None = None,
) -> _Tridiagonal:
    """Lanczos with full reorthogonalization (twice, against every earlier vector) for at most ``steps`` HVPs.

    On an invariant subspace (a coupling at rounding level) it continues from a fresh random vector
    orthogonal to the basis when ``restart_gen`` is given (so multiplicities and missed parts of the
    spectrum are found), else it stops: the Krylov space of ``v0`` is then exhausted, and its
    quadrature exact.
    """
    steps = min(int(steps), op.dim)
    basis = torch.empty((steps, op.dim), dtype=op.dtype, device=op.device)
    basis[0] = v0 / v0.norm()
    eps = torch.finfo(op.dtype).eps
    tri = _Tridiagonal([], [], 0.0)
    scale = 0.0
    for j in range(steps):
        w = op(basis[j])
        a = float(torch.dot(w, basis[j]))
        w = w - a * basis[j]
        if j > 0:
            w = w - tri.beta[-1] * basis[j - 1]
        q = basis[: j + 1]
        for _ in range(2):  # "twice is enough" (Kahan-Parlett): orthogonal to working precision
            w = w - q.T @ (q @ w)
        b = float(w.norm())
        tri.alpha.append(a)
        tri.last = b
        if not (math.isfinite(a) and math.isfinite(b)):
            break  # the loss is not defined here (e.g. a negative BN variance): the results are NaN
        scale = max(scale, abs(a), b)
        if (stop is not None and stop(tri)) or j + 1 == steps:
            break
        if b <= 10 * eps * scale:
            if restart_gen is None:
                break
            w = torch.randn(op.dim, generator=restart_gen, dtype=torch.float64).to(op.device, op.dtype)
            for _ in range(2):
                w = w - q.T @ (q @ w)
            if float(w.norm()) == 0.0:
                break
            b = 0.0  # a new, decoupled block of T
            w = w / w.norm()
        else:
            w = w / b
        tri.beta.append(b)
        basis[j + 1] = w
    return tri


def _error_estimates(theta: np.ndarray, vectors: np.ndarray, last: float) -> np.ndarray:
    """Estimated absolute error of each Ritz value: ``min(r, r^2 / gap)``, r its residual norm."""
    r = np.abs(last * vectors[-1, :])
    if len(theta) == 1:
        return r
    gaps = np.empty_like(theta)
    diffs = np.diff(theta)
    gaps[0], gaps[-1] = diffs[0], diffs[-1]
    gaps[1:-1] = np.minimum(diffs[:-1], diffs[1:])
    # The quadratic bound needs an isolated Ritz value; otherwise the residual itself bounds the error.
    quad = np.where(gaps > r, r**2 / np.maximum(gaps, np.finfo(np.float64).tiny), r)
    return np.minimum(r, quad)


@dataclass(frozen=True)
class EigenResult:
    """Extreme eigenvalues of a Hessian: the top k (descending) and the smallest, with error estimates."""

    top: tuple[float, ...]
    min: float
    top_error: tuple[float, ...]
    min_error: float
    hvps: int
    converged: bool
    history: tuple[float, ...]  # estimate of the largest eigenvalue after each HVP (the first run's)


def _wanted(theta: np.ndarray, err: np.ndarray, k: int, tol: float) -> tuple[np.ndarray, bool]:
    """Indices of the top k and of the smallest Ritz value, and whether all are within ``tol``."""
    idx = np.unique(np.concatenate([np.arange(len(theta) - min(k, len(theta)), len(theta)), [0]]))
    rho = float(np.max(np.abs(theta)))
    # An eigenvalue far below the spectral radius is resolved to tol^2 * rho (its ratio to the largest to tol^2).
    ok = all(err[i] <= tol * max(abs(theta[i]), tol * rho) for i in idx)
    return idx, ok and len(theta) >= k


def _lanczos_eigen(op: HessianOperator, k: int, tol: float, max_iter: int, seed: int) -> EigenResult:
    gen = _generator(seed)
    start = op.hvps
    history: list[float] = []

    def stop(tri: _Tridiagonal) -> bool:
        theta, vectors = tri.ritz()
        history.append(float(theta[-1]))
        if len(theta) < min(k + 1, op.dim):
            return False
        return _wanted(theta, _error_estimates(theta, vectors, tri.last), k, tol)[1]

    tri = _lanczos(op, _gaussian(op, gen), min(max_iter, op.dim), restart_gen=gen, stop=stop)
    if not tri.finite:
        nan = float("nan")
        return EigenResult((nan,) * k, nan, (math.inf,) * k, math.inf, op.hvps - start, False, (*history, nan))
    theta, vectors = tri.ritz()
    err = _error_estimates(theta, vectors, tri.last)
    _, ok = _wanted(theta, err, k, tol)
    exhausted = len(theta) == op.dim  # the whole space: exact up to rounding
    kk = min(k, len(theta))
    top = theta[::-1][:kk]
    top_err = err[::-1][:kk]
    if kk < k:  # fewer steps than k (max_iter < k): the rest is unknown
        top = np.concatenate([top, np.full(k - kk, np.nan)])
        top_err = np.concatenate([top_err, np.full(k - kk, np.inf)])
    return EigenResult(
        top=tuple(float(t) for t in top),
        min=float(theta[0]),
        top_error=tuple(float(e) for e in top_err),
        min_error=float(err[0]),
        hvps=op.hvps - start,
        converged=bool(ok or exhausted),
        history=tuple(history),
    )


# ---------------------------------------------------------------- power iteration (for comparison)


def _power(
    matvec: Callable[[Tensor], Tensor],
    v: Tensor,
    found: list[Tensor],
    tol: float,
    max_iter: int,
    history: list[float] | None,
) -> tuple[float, float, Tensor]:
    """Power iteration as single-device libraries do it: stop when the Rayleigh quotient changes by < tol relative."""
    value, change = float("nan"), float("inf")
    v = v / v.norm()
    for i in range(max_iter):
        for u in found:
            v = v - torch.dot(v, u) * u
        v = v / v.norm()
        hv = matvec(v)
        new = float(torch.dot(hv, v))
        if history is not None:
            history.append(new)
        if not math.isfinite(new):
            return new, math.inf, v
        if i > 0:
            change = abs(new - value)
        converged = i > 0 and change / (abs(value) + 1e-6) < tol
        value = new
        norm = hv.norm()
        if converged or float(norm) == 0.0:
            break
        v = hv / norm
    return value, change, v


def _power_eigen(op: HessianOperator, k: int, tol: float, max_iter: int, seed: int) -> EigenResult:
    gen = _generator(seed)
    start = op.hvps
    history: list[float] = []
    found: list[Tensor] = []
    top, top_err = [], []
    converged = True
    for i in range(k):
        value, change, vec = _power(op, _gaussian(op, gen), found, tol, max_iter, history if i == 0 else None)
        top.append(value)
        top_err.append(change)
        converged &= change <= tol * (abs(value) + 1e-6)
        found.append(vec / vec.norm())
    lam = top[0]
    # The smallest eigenvalue is the dominant one of H - lambda_max I (all its eigenvalues are <= 0).
    shifted, change, _ = _power(lambda v: op(v) - lam * v, _gaussian(op, gen), [], tol, max_iter, None)
    converged &= change <= tol * (abs(shifted) + 1e-6)
    return EigenResult(
        top=tuple(top),
        min=shifted + lam,
        top_error=tuple(top_err),
        min_error=change,
        hvps=op.hvps - start,
        converged=bool(converged),
        history=tuple(history),
    )


def hessian_eigenvalues(
    op: HessianOperator,
    k: int = 1,
    *,
    method: str = "lanczos",
    tol: float = DEFAULT_TOL,
    max_iter: int = DEFAULT_MAX_ITER,
    seed: int = 0,
) -> EigenResult:
    """The top-``k`` and the smallest eigenvalue of ``op``, each to relative ``tol`` (estimated), seeded.

    ``lanczos`` (default): one run with full reorthogonalization for both ends, at most ``max_iter``
    HVPs (all ``dim`` steps give the exact spectrum). An eigenvalue much smaller in magnitude than the
    spectral radius rho is resolved to ``tol**2 * rho``. ``power``: power iteration with deflation,
    ``max_iter`` iterations per eigenvalue, stopping on a relative change below ``tol`` (it finds the
    eigenvalue largest in magnitude; the libraries' method, for comparison). Repeated eigenvalues can
    appear once in ``top`` until the Krylov space is exhausted. ``converged`` says whether ``tol`` was met.
    """
    check_eigen_args(method, k, tol, max_iter, op.dim)
    if method == "power":
        return _power_eigen(op, int(k), float(tol), int(max_iter), seed)
    return _lanczos_eigen(op, int(k), float(tol), int(max_iter), seed)


# ---------------------------------------------------------------- trace


@dataclass(frozen=True)
class TraceResult:
    """A Hutchinson trace estimate, its standard error, and what it cost."""

    trace: float
    stderr: float
    probes: int
    hvps: int
    converged: bool


def hutchinson_trace(
    op: HessianOperator,
    *,
    rel_tol: float = 1e-2,
    max_probes: int = 100,
    min_probes: int = 10,
    seed: int = 0,
) -> TraceResult:
    """Trace of ``op`` by Rademacher probes; stops once the standard error is below ``rel_tol * |trace|``.

    The standard error is that of the mean of the probes' ``v^T H v``; it needs ``min_probes`` (>= 2)
    probes before it is trusted as a stopping rule.
    """
    _check_positive("rel_tol (trace)", rel_tol)
    _check_int("max_probes", max_probes, 1)
    _check_int("min_probes", min_probes, 2)
    gen = _generator(seed)
    samples: list[float] = []
    start = op.hvps
    mean, stderr = float("nan"), float("inf")
    for _ in range(int(max_probes)):
        v = _rademacher(op, gen)
        samples.append(float(torch.dot(v, op(v))))
        if not math.isfinite(samples[-1]):
            return TraceResult(samples[-1], math.nan, len(samples), op.hvps - start, False)
        mean = float(np.mean(samples))
        if len(samples) >= 2:
            stderr = float(np.std(samples, ddof=1) / math.sqrt(len(samples)))
        if len(samples) >= min_probes and stderr <= rel_tol * abs(mean):
            break
    return TraceResult(
        trace=mean,
        stderr=stderr,
        probes=len(samples),
        hvps=op.hvps - start,
        converged=stderr <= rel_tol * abs(mean),
    )


def dense_hessian(op: HessianOperator) -> Tensor:
    """The full ``dim x dim`` Hessian from ``dim`` HVPs with unit vectors (tiny models and checks only)."""
    if op.dim > MAX_DENSE_DIM:
        raise ValueError(f"the Hessian covers {op.dim} parameters, too many to form (limit {MAX_DENSE_DIM})")
    eye = torch.eye(op.dim, dtype=op.dtype, device=op.device)
    return torch.stack([op(eye[i]) for i in range(op.dim)], dim=1)


def exact_trace(op: HessianOperator) -> float:
    """The trace from ``dim`` HVPs with unit vectors: exact, for models small enough to afford it."""
    if op.dim > MAX_DENSE_DIM:
        raise ValueError(f"the Hessian covers {op.dim} parameters, too many for an exact trace (limit {MAX_DENSE_DIM})")
    total = 0.0
    eye = torch.zeros(op.dim, dtype=op.dtype, device=op.device)
    for i in range(op.dim):
        eye[i] = 1.0
        total += float(op(eye)[i])
        eye[i] = 0.0
    return total


# ---------------------------------------------------------------- spectral density


@dataclass(frozen=True)
class SpectralDensity:
    """A Hessian's eigenvalue density on a grid, and the quadrature it was broadened from."""

    grid: np.ndarray  # (grid_size,) eigenvalue axis
    density: np.ndarray  # (grid_size,) integrates to 1 over the grid
    nodes: np.ndarray  # (probes, steps) Ritz values of each probe (NaN-padded where a probe stopped early)
    weights: np.ndarray  # (probes, steps) quadrature weights (each row sums to 1; 0 where padded)
    sigma: float  # the Gaussian's standard deviation, in eigenvalue units
    hvps: int


def gaussian_density(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """The mean over probes of ``sum_j w_j N(grid; node_j, sigma^2)``: quadrature nodes broadened to a density."""
    nodes = np.atleast_2d(np.asarray(nodes, dtype=np.float64))
    weights = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    keep = weights > 0
    n, w = nodes[keep], weights[keep]
    z = (np.asarray(grid, dtype=np.float64)[:, None] - n[None, :]) / sigma
    return (np.exp(-0.5 * z**2) @ w) / (sigma * math.sqrt(2 * math.pi) * nodes.shape[0])


def spectral_density(
    op: HessianOperator,
    *,
    probes: int = 5,
    steps: int = 60,
    grid_size: int = 1000,
    sigma: float = 0.01,
    seed: int = 0,
) -> SpectralDensity:
    """Eigenvalue density by stochastic Lanczos quadrature: ``probes`` Rademacher starts, ``steps`` HVPs each.

    Each Ritz value is broadened by a Gaussian of standard deviation ``sigma`` times the spectral width
    (largest minus smallest Ritz value over all probes); the grid spans that width plus 6 sigma each side.
    """
    _check_int("probes", probes, 1)
    _check_int("steps", steps, 1)
    _check_int("grid_size", grid_size, 2)
    _check_positive("sigma (relative width of the Gaussian)", sigma)
    gen = _generator(seed)
    start = op.hvps
    m = min(int(steps), op.dim)
    nodes = np.full((int(probes), m), np.nan)
    weights = np.zeros((int(probes), m))
    for p in range(int(probes)):
        tri = _lanczos(op, _rademacher(op, gen), m, restart_gen=None)
        theta, vectors = tri.ritz()
        nodes[p, : len(theta)] = theta
        weights[p, : len(theta)] = vectors[0, :] ** 2
        if not tri.finite:
            nan = np.full(int(grid_size), np.nan)
            return SpectralDensity(nan, nan.copy(), np.full_like(nodes, np.nan), np.full_like(weights, np.nan), math.nan,
                                   op.hvps - start)
    lo, hi = float(np.nanmin(nodes)), float(np.nanmax(nodes))
    width = hi - lo if hi > lo else max(abs(hi), 1.0)
    s = float(sigma) * width
    grid = np.linspace(lo - 6 * s, hi + 6 * s, int(grid_size))
    return SpectralDensity(
        grid=grid,
        density=gaussian_density(nodes, weights, grid, s),
        nodes=nodes,
        weights=weights,
        sigma=s,
        hvps=op.hvps - start,
    )
