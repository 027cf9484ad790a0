"""Curvature at a point, checked against the full Hessian formed by ``torch.autograd.functional.hessian``.

Models are tiny and float64 so that the dense Hessian and ``eigvalsh`` are an exact, independent reference.
"""

from __future__ import annotations

import copy
from functools import cache

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from effrep_hpc.landscape.curvature import (
    HVP_MODES,
    HessianOperator,
    curvature_parameters,
    dense_hessian,
    exact_trace,
    hessian_eigenvalues,
    hutchinson_trace,
    spectral_density,
)
from effrep_hpc.landscape.directions import parameter_weights, random_direction, set_weights
from effrep_hpc.landscape.evaluate import EvalData, at_point, evaluate_points

from landscape_helpers import image_data, make_cnn, make_mlp, vector_data


def _model_and_data(kind: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    if kind == "mlp":
        x, y, _, _ = vector_data(n_train=30)
        return make_mlp().double(), x.double(), y
    x, y, _, _ = image_data(n_train=24)
    return make_cnn().double(), x.double(), y


def _reference_loss(out: torch.Tensor, y: torch.Tensor, loss: str) -> torch.Tensor:
    if loss == "ce":
        return F.cross_entropy(out, y)
    return F.mse_loss(out, F.one_hot(y, out.shape[1]).to(out.dtype))


def _reference_hessian(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, names: list[str], *, loss: str = "ce", batch_bn: int | None = None
) -> torch.Tensor:
    """The dense Hessian of the mean loss over the covered parameters, with plain torch on a copy of the model.

    ``batch_bn``: BN in train mode with batch statistics of batches of that size (the loss then is the
    size-weighted mean of the batch losses); otherwise one eval-mode pass over all the data.
    """
    m = copy.deepcopy(model)
    base = {n: p.detach() for n, p in m.named_parameters()}
    shapes = [base[n].shape for n in names]
    sizes = [base[n].numel() for n in names]
    m.eval()
    if batch_bn is not None:
        for mod in m.modules():
            if isinstance(mod, nn.modules.batchnorm._BatchNorm):
                mod.train()
                mod.track_running_stats = False
    bs = len(x) if batch_bn is None else batch_bn

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = {n: t.reshape(s) for n, t, s in zip(names, torch.split(flat, sizes), shapes)}
        total = flat.new_zeros(())
        for s in range(0, len(x), bs):
            out = functional_call(m, {**base, **parts}, (x[s : s + bs],))
            total = total + _reference_loss(out, y[s : s + bs], loss) * len(out)
        return total / len(x)

    w = torch.cat([base[n].reshape(-1) for n in names])
    return torch.autograd.functional.hessian(f, w, vectorize=True)


@cache
def _case(kind: str, bias_bn: str = "ignore") -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Model, data and the reference Hessian (computed once per module)."""
    model, x, y = _model_and_data(kind)
    return model, x, y, _reference_hessian(model, x, y, curvature_parameters(model, bias_bn))


def _rel(a: torch.Tensor | float, b: torch.Tensor | float) -> float:
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).norm() / b.norm())


# ---------------------------------------------------------------- the product


@pytest.mark.parametrize("hvp", HVP_MODES)
@pytest.mark.parametrize("kind,bias_bn", [("mlp", "ignore"), ("cnn", "ignore"), ("cnn", "include")])
def test_hvp_equals_dense_hessian_times_vector(kind: str, bias_bn: str, hvp: str) -> None:
    model, x, y, h = _case(kind, bias_bn)
    op = HessianOperator(model, x, y, bias_bn=bias_bn, batch_size=len(x), hvp=hvp)
    assert op.dim == h.shape[0]
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    assert _rel(op(v), h @ v) < 1e-6
    assert op.hvps == 1


def test_covered_parameters_are_those_the_directions_move() -> None:
    model = make_cnn()
    for bias in ("ignore", "include"):
        direction = random_direction(model, seed=5, normalization="none", bias=bias)
        moved = [n for n, t in direction.items() if bool((t != 0).any())]
        assert curvature_parameters(model, bias) == moved


def test_hvp_is_of_the_mean_loss_whatever_the_batching() -> None:
    """One batch or several uneven ones give the same product (the mean over samples, never the batch sum)."""
    model, x, y, h = _case("cnn")
    v = torch.randn(h.shape[0], generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    one = HessianOperator(model, x, y, batch_size=len(x))(v)
    for hvp in HVP_MODES:
        several = HessianOperator(model, x, y, batch_size=7, hvp=hvp)(v)  # 7 + 7 + 7 + 3 samples
        assert _rel(several, one) < 1e-12
    top_one = hessian_eigenvalues(HessianOperator(model, x, y, batch_size=len(x)), tol=1e-8).top[0]
    top_several = hessian_eigenvalues(HessianOperator(model, x, y, batch_size=5), tol=1e-8).top[0]
    assert abs(top_several - top_one) <= 1e-8 * abs(top_one)


def test_train_bn_policy_uses_batch_statistics_and_changes_nothing() -> None:
    model, x, y = _model_and_data("cnn")
    model.train()  # the caller's mode must survive too
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = curvature_parameters(model)
    h = _reference_hessian(model, x, y, names, batch_bn=8)
    op = HessianOperator(model, x, y, bn="train", batch_size=8)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(6), dtype=torch.float64)
    for hvp in HVP_MODES:
        op.hvp_mode = hvp
        assert _rel(op(v), h @ v) < 1e-6
    op.gradient()
    assert all(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_eval_policy_leaves_the_model_as_it_was() -> None:
    model, x, y = _model_and_data("cnn")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    op = HessianOperator(model, x, y, batch_size=10)
    op(torch.ones(op.dim, dtype=torch.float64))
    assert not any(m.training for m in model.modules())
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert all(p.grad is None for p in model.parameters())


def test_cached_graphs_follow_the_weights_and_the_statistics() -> None:
    """After the model moves (parameters in place, or re-estimated BN statistics) the product is of the new point."""
    model, x, y = _model_and_data("cnn")
    op = HessianOperator(model, x, y, batch_size=10)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(7), dtype=torch.float64)
    first = op(v)
    assert op.cached_bytes > 0
    assert _rel(op(v), first) < 1e-14  # from the cached graphs
    assert _rel(op(v), HessianOperator(model, x, y, batch_size=10, cache_bytes=0)(v)) < 1e-12
    w0 = parameter_weights(model)
    set_weights(model, w0, [random_direction(model, seed=1)], [0.5])
    fresh = HessianOperator(model, x, y, batch_size=10, cache_bytes=0)(v)
    assert _rel(fresh, first) > 1e-3  # the point really moved
    assert _rel(op(v), fresh) < 1e-12
    with at_point(model, parameter_weights(model), [], [], bn="recompute", data=EvalData(x * 2 + 1, y), batch_size=8):
        assert _rel(op(v), HessianOperator(model, x, y, batch_size=10, cache_bytes=0)(v)) < 1e-12


def test_recomputed_statistics_are_those_of_the_landscape_scan() -> None:
    """``at_point(bn="recompute")`` + eval gives the loss that ``evaluate_points(bn="recompute")`` gives."""
    model = make_cnn()
    x, y, _, _ = image_data(n_train=40)
    data = EvalData(x, y)
    w0 = parameter_weights(model)
    d = random_direction(model, seed=3)
    scan = evaluate_points(model, w0, d, None, np.array([0.0]), data, bn="recompute", bn_batches=2, batch_size=16)
    with at_point(model, w0, [d], [0.0], bn="recompute", data=data, batch_size=16, bn_batches=2):
        direct = evaluate_points(model, w0, d, None, np.array([0.0]), data, bn="eval", batch_size=16)
        assert direct["train_loss"][0] == pytest.approx(scan["train_loss"][0], rel=1e-6)
        assert HessianOperator(model, x, y, bn="recompute").loss_value() == pytest.approx(scan["train_loss"][0], rel=1e-5)


# ---------------------------------------------------------------- eigenvalues


@pytest.mark.parametrize("kind", ["mlp", "cnn"])
def test_lanczos_eigenvalues_equal_eigvalsh(kind: str) -> None:
    model, x, y, h = _case(kind)
    exact = torch.linalg.eigvalsh(h)
    op = HessianOperator(model, x, y, batch_size=16)
    res = hessian_eigenvalues(op, 3, tol=1e-8, max_iter=op.dim)
    assert res.converged
    for got, want in zip(res.top, exact.flip(0)[:3]):
        assert got == pytest.approx(float(want), rel=1e-5)
    assert res.min == pytest.approx(float(exact[0]), rel=1e-5)
    assert res.hvps == op.hvps == len(res.history)
    assert res.hvps < op.dim  # it stopped on the tolerance, not by exhausting the space


def test_default_tolerance_gives_relative_1e3() -> None:
    model, x, y, h = _case("cnn")
    exact = torch.linalg.eigvalsh(h).numpy()
    res = hessian_eigenvalues(HessianOperator(model, x, y), 2, seed=4)
    assert res.converged
    np.testing.assert_allclose(res.top, exact[::-1][:2], rtol=1e-3)
    assert res.min == pytest.approx(exact[0], rel=1e-3)
    assert all(e <= 1e-3 * abs(t) for e, t in zip(res.top_error, res.top))


def test_power_iteration_finds_the_same_extremes() -> None:
    model, x, y, h = _case("mlp")
    exact = torch.linalg.eigvalsh(h).numpy()
    res = hessian_eigenvalues(HessianOperator(model, x, y), 2, method="power", tol=1e-10, max_iter=3000)
    np.testing.assert_allclose(res.top, exact[::-1][:2], rtol=1e-5)
    assert res.min == pytest.approx(exact[0], rel=1e-5, abs=1e-6 * exact[-1])


class _DeepLinear(nn.Module):
    """x -> W2 W1 x: its squared loss is non-convex in (W1, W2) (a saddle at the origin)."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(8)
        self.w1 = nn.Parameter(scale * torch.randn(3, 4, generator=g, dtype=torch.float64))
        self.w2 = nn.Parameter(scale * torch.randn(3, 3, generator=g, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w1.T @ self.w2.T


class _Linear(nn.Module):
    """x -> W x: its squared loss is a convex quadratic, positive definite for full-rank data."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(9), dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.w.T


@pytest.mark.parametrize("model,sign", [(_DeepLinear(0.05), -1), (_Linear(), 1)], ids=["non-convex", "convex"])
def test_minimum_eigenvalue_has_the_sign_of_the_curvature(model: nn.Module, sign: int) -> None:
    g = torch.Generator().manual_seed(10)
    x = torch.randn(40, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=g)
    exact = torch.linalg.eigvalsh(_reference_hessian(model, x, y, curvature_parameters(model), loss="mse"))
    res = hessian_eigenvalues(HessianOperator(model, x, y, loss="mse", batch_size=16), 1, tol=1e-8, max_iter=100)
    assert np.sign(res.min) == sign == np.sign(float(exact[0]))
    assert abs(float(exact[0])) > 1e-3 * float(exact[-1])  # clearly signed, not rounding
    assert res.min == pytest.approx(float(exact[0]), rel=1e-5)
    assert res.top[0] == pytest.approx(float(exact[-1]), rel=1e-5)


def test_results_are_reproducible_from_the_seed() -> None:
    model, x, y, _ = _case("cnn")
    a = hessian_eigenvalues(HessianOperator(model, x, y), 2, tol=1e-2, seed=11)
    b = hessian_eigenvalues(HessianOperator(model, x, y), 2, tol=1e-2, seed=11)
    c = hessian_eigenvalues(HessianOperator(model, x, y), 2, tol=1e-2, seed=12)
    assert a == b
    assert a.history != c.history
    op = HessianOperator(model, x, y)
    assert hutchinson_trace(op, max_probes=5, seed=2) == hutchinson_trace(op, max_probes=5, seed=2)


# ---------------------------------------------------------------- trace and density


def test_hutchinson_trace_is_within_its_standard_error() -> None:
    model, x, y, h = _case("cnn")
    exact = float(h.trace())
    op = HessianOperator(model, x, y)
    res = hutchinson_trace(op, rel_tol=1e-9, max_probes=40, seed=1)
    assert res.probes == res.hvps == 40 and not res.converged
    assert 0 < res.stderr and abs(res.trace - exact) <= 4 * res.stderr
    loose = hutchinson_trace(op, rel_tol=0.5, min_probes=4, max_probes=40, seed=1)
    assert loose.converged and 4 <= loose.probes < 40 and loose.stderr <= 0.5 * abs(loose.trace)


def test_dense_hessian_and_exact_trace_are_the_reference() -> None:
    model, x, y, h = _case("mlp")
    op = HessianOperator(model, x, y, batch_size=8)
    assert _rel(dense_hessian(op), h) < 1e-10
    assert exact_trace(op) == pytest.approx(float(h.trace()), rel=1e-10)


def test_spectral_density_integrates_to_one_with_mean_trace_over_dim() -> None:
    model, x, y, h = _case("cnn")
    op = HessianOperator(model, x, y)
    dens = spectral_density(op, probes=6, steps=30, seed=2)
    assert dens.hvps == 6 * 30 and dens.nodes.shape == dens.weights.shape == (6, 30)
    assert np.all(np.diff(dens.grid) > 0) and np.all(dens.density >= 0)
    assert np.trapezoid(dens.density, dens.grid) == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose(dens.weights.sum(axis=1), 1.0, rtol=1e-10)
    # Each probe's quadrature mean is its v^T H v / |v|^2: a Hutchinson sample of trace/dim.
    per_probe = np.nansum(dens.nodes * dens.weights, axis=1)
    stderr = per_probe.std(ddof=1) / np.sqrt(len(per_probe))
    mean = np.trapezoid(dens.grid * dens.density, dens.grid)
    assert mean == pytest.approx(per_probe.mean(), rel=1e-6)
    assert abs(mean - float(h.trace()) / op.dim) <= 4 * stderr
    # The quadrature nodes reach the extreme eigenvalues.
    exact = torch.linalg.eigvalsh(h).numpy()
    assert np.nanmax(dens.nodes) == pytest.approx(exact[-1], rel=1e-3)


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "kwargs,fragment",
    [
        ({"method": "arnoldi"}, "unknown eigenvalue method 'arnoldi'"),
        ({"k": 0}, "k (number of top eigenvalues) must be an integer >= 1"),
        ({"k": 10_000}, "choose k <= 104"),
        ({"tol": 0.0}, "tolerance must be a finite number > 0"),
        ({"tol": -1e-3}, "tolerance must be a finite number > 0"),
        ({"max_iter": 0}, "max_iter must be an integer >= 1"),
    ],
)
def test_bad_eigenvalue_requests_raise_one_line(kwargs: dict, fragment: str) -> None:
    model, x, y = _model_and_data("mlp")
    op = HessianOperator(model, x, y)
    with pytest.raises(ValueError) as err:
        hessian_eigenvalues(op, **kwargs)
    assert fragment in str(err.value) and "\n" not in str(err.value)
    assert op.hvps == 0


def test_bad_operator_arguments_raise() -> None:
    model, x, y = _model_and_data("mlp")
    with pytest.raises(ValueError, match="unknown HVP implementation"):
        HessianOperator(model, x, y, hvp="finite_differences")
    with pytest.raises(ValueError, match="unknown BN policy"):
        HessianOperator(model, x, y, bn="frozen")
    with pytest.raises(ValueError, match="unknown bias/BN mode"):
        HessianOperator(model, x, y, bias_bn="all")
    with pytest.raises(ValueError, match="bias_bn='include'"):
        HessianOperator(nn.Sequential(nn.BatchNorm1d(10)), x, y)
    op = HessianOperator(model, x, y)
    with pytest.raises(ValueError, match="rel_tol"):
        hutchinson_trace(op, rel_tol=0)
    with pytest.raises(ValueError, match="expected a vector of 104 elements"):
        op(torch.zeros(3, dtype=torch.float64))


def test_an_undefined_loss_gives_nan_not_an_error() -> None:
    """A point whose loss is NaN (e.g. a negative BN variance far out on a map) yields NaN values."""
    model, x, y = _model_and_data("mlp")
    with torch.no_grad():
        model.fc1.weight[0, 0] = float("nan")
    op = HessianOperator(model, x, y)
    eig = hessian_eigenvalues(op, 2)
    assert np.isnan(eig.min) and np.isnan(eig.top).all() and not eig.converged
    assert eig.hvps == 1
    assert np.isnan(hessian_eigenvalues(op, 1, method="power").top[0])
    trace = hutchinson_trace(op)
    assert np.isnan(trace.trace) and trace.probes == 1 and not trace.converged
    assert np.isnan(spectral_density(op, probes=3, steps=5).density).all()
