"""Directions in weight space for loss-landscape plots (Li et al., NeurIPS 2018).

A direction is an ordered dict ``parameter name -> tensor`` with exactly the names and shapes of
``model.named_parameters()``, in that order. A direction between models (``target_direction``,
``plane_directions`` with ``buffers=True``) also carries the differences of the models' BatchNorm
running statistics (``<bn>.running_mean``, ``<bn>.running_var``; the original code's "states"
directions), after the parameters, so that the point at a model's coordinates *is* that model, its
statistics included; ``num_batches_tracked`` never moves (it does not change an eval-mode forward).
Random directions move parameters only: the buffers stay at the centre model's values. The BN policy
of the evaluation (``landscape.evaluate``) says how the statistics are used. Directions between models
are float64 differences (exact for float32 models); points are combined in the widest dtype of the
weights and directions and rounded once (``widest_precision``), so a model's coordinates give back
exactly its weights and statistics.

Random directions are drawn on the CPU from a ``torch.Generator`` seeded per direction, one tensor per
parameter in order, so a seed gives the same direction on any device and any number of ranks; they are
normalized in float64 on the CPU and only then cast and moved to the parameter's dtype and device.

Normalizations (``d`` the direction, ``w`` the centre weights; a *filter* is a slice along dim 0 of a
tensor of two or more dims, i.e. one output channel of a conv or one row of a linear weight):

- ``filter`` (default): every filter of ``d`` rescaled to the Frobenius norm of the matching filter of ``w``.
- ``layer``: the whole tensor rescaled to the norm of ``w``.
- ``weight``: ``d * w`` elementwise.
- ``dfilter`` / ``dlayer``: every filter / every tensor of ``d`` rescaled to unit norm.
- ``none``: ``d`` unchanged.

Parameters of at most one dimension (biases, BN scale and shift) are zeroed with ``bias="ignore"``
(default, as in the paper). With ``bias="include"`` such a tensor is treated as *one* filter: ``filter``
and ``layer`` both rescale it to ``||w||``, ``dfilter`` and ``dlayer`` to unit norm, ``weight``
multiplies elementwise. This keeps the one rule of the paper (a direction's piece has the scale of the
weights it moves) rather than copying the weight values into the direction as the original scripts
do, which would make every bias move along ``+w`` no matter the seed.
"""

from __future__ import annotations

import hashlib
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm

from effrep_hpc.registry import unknown_name_message

NORMALIZATIONS: tuple[str, ...] = ("filter", "layer", "weight", "dfilter", "dlayer", "none")
BIAS_MODES: tuple[str, ...] = ("ignore", "include")


def check_normalization(normalization: str) -> str:
    """Return ``normalization`` if it is known, else raise ValueError naming the valid ones."""
    if normalization not in NORMALIZATIONS:
        raise ValueError(unknown_name_message("normalization", str(normalization), list(NORMALIZATIONS)))
    return normalization


def check_bias_mode(bias: str) -> str:
    """Return ``bias`` if it is ``ignore`` or ``include``, else raise ValueError."""
    if bias not in BIAS_MODES:
        raise ValueError(unknown_name_message("bias/BN mode", str(bias), list(BIAS_MODES)))
    return bias


def parameter_weights(
    model: nn.Module, state_dict: Mapping[str, Tensor] | None = None
) -> dict[str, Tensor]:
    """Detached copies of the model's parameters (or of their entries in ``state_dict``), in parameter order."""
    out: dict[str, Tensor] = {}
    for name, param in model.named_parameters():
        if state_dict is None:
            out[name] = param.detach().clone()
            continue
        if name not in state_dict:
            raise ValueError(
                f"the checkpoint has no entry for parameter {name!r} of the model "
                f"(is it a checkpoint of a different architecture?)"
            )
        value = state_dict[name]
        if tuple(value.shape) != tuple(param.shape):
            raise ValueError(
                f"checkpoint entry {name!r} has shape {tuple(value.shape)}, the model's parameter has "
                f"{tuple(param.shape)}"
            )
        out[name] = value.detach().to(device=param.device, dtype=param.dtype).clone()
    return out


def check_compatible(reference: Mapping[str, Tensor], other: Mapping[str, Tensor], what: str = "direction") -> None:
    """Raise ValueError naming the first parameter where ``other`` differs from ``reference`` in name or shape."""
    for name, ref in reference.items():
        if name not in other:
            raise ValueError(f"{what} has no tensor for parameter {name!r}")
        if tuple(other[name].shape) != tuple(ref.shape):
            raise ValueError(
                f"{what} tensor {name!r} has shape {tuple(other[name].shape)}, expected {tuple(ref.shape)}"
            )
    for name in other:
        if name not in reference:
            raise ValueError(f"{what} has a tensor {name!r} that is not a parameter of the model")


def _as_weights(source: nn.Module | Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    return parameter_weights(source) if isinstance(source, nn.Module) else source


def _filter_scale(d: Tensor, target_norm: Tensor, per_filter: bool) -> Tensor:
    """Rescale ``d`` (float64) so every filter (or the whole tensor) has norm ``target_norm``."""
    if per_filter:
        norms = d.reshape(d.shape[0], -1).norm(dim=1)
        shape = (-1,) + (1,) * (d.dim() - 1)
        target_norm, norms = target_norm.reshape(shape), norms.reshape(shape)
    else:
        norms = d.norm()
    # A zero piece of direction stays zero instead of becoming NaN.
    return d * torch.where(norms > 0, target_norm / torch.where(norms > 0, norms, 1.0), 0.0)


def normalize_direction(
    direction: Mapping[str, Tensor],
    weights: nn.Module | Mapping[str, Tensor],
    normalization: str = "filter",
    bias: str = "ignore",
) -> dict[str, Tensor]:
    """Return a normalized copy of ``direction`` (see the module docstring for the rules)."""
    check_normalization(normalization)
    check_bias_mode(bias)
    weights = _as_weights(weights)
    check_compatible(weights, direction)
    out: dict[str, Tensor] = {}
    for name, w in weights.items():
        d = direction[name].detach().to("cpu", torch.float64)
        wc = w.detach().to("cpu", torch.float64)
        one_filter = d.dim() <= 1
        if one_filter and bias == "ignore":
            d = torch.zeros_like(d)
        elif normalization == "weight":
            d = d * wc
        elif normalization in ("filter", "layer"):
            per_filter = normalization == "filter" and not one_filter
            target = wc.reshape(wc.shape[0], -1).norm(dim=1) if per_filter else wc.norm()
            d = _filter_scale(d, target, per_filter)
        elif normalization in ("dfilter", "dlayer"):
            per_filter = normalization == "dfilter" and not one_filter
            d = _filter_scale(d, torch.ones((), dtype=torch.float64), per_filter)
        out[name] = d.to(device=w.device, dtype=w.dtype)
    return out


def random_direction(
    weights: nn.Module | Mapping[str, Tensor],
    seed: int,
    normalization: str = "filter",
    bias: str = "ignore",
) -> dict[str, Tensor]:
    """A seeded Gaussian direction, normalized; identical for a seed on every device and rank count."""
    check_normalization(normalization)
    check_bias_mode(bias)
    weights = _as_weights(weights)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    raw: dict[str, Tensor] = {}
    for name, w in weights.items():
        # Draw for every parameter, biases included, so bias="include" does not shift the other tensors.
        raw[name] = torch.randn(tuple(w.shape), generator=gen, dtype=torch.float32)
    return normalize_direction(raw, weights, normalization, bias)


def direction_layout(model: nn.Module) -> tuple[dict[str, Tensor], list[str]]:
    """The model's state_dict in module order and its parameter names: what a direction file is matched against."""
    return model.state_dict(keep_vars=True), [name for name, _ in model.named_parameters()]


def same_direction(x: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The ``same_dir`` option: y equal to x (a copy), so the plane degenerates to the x line."""
    return {k: v.clone() for k, v in x.items()}


RUNNING_STATS: tuple[str, ...] = ("running_mean", "running_var")


def is_running_stat(name: str) -> bool:
    """Whether a state_dict entry name is a BatchNorm running mean or variance (what a direction may move)."""
    return name.rsplit(".", 1)[-1] in RUNNING_STATS


def running_stats(source: nn.Module | Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Detached copies of the BN running means and variances of a model (or a state dict), in state_dict order."""
    if isinstance(source, nn.Module):
        out: dict[str, Tensor] = {}
        for mod_name, m in source.named_modules():
            if isinstance(m, _BatchNorm) and m.track_running_stats:
                for b_name in RUNNING_STATS:
                    b = getattr(m, b_name, None)
                    if b is not None:
                        out[f"{mod_name}.{b_name}" if mod_name else b_name] = b.detach().clone()
        return out
    return {k: v.detach().clone() for k, v in source.items() if is_running_stat(k) and v.is_floating_point()}


def _buffer_difference(b1: Mapping[str, Tensor], b2: Mapping[str, Tensor], what: str) -> dict[str, Tensor]:
    only = sorted(set(b1) ^ set(b2))
    if only:
        raise ValueError(f"{what} does not have the BN running statistics of the first (e.g. {only[0]!r} differs)")
    for k, v in b1.items():
        if tuple(b2[k].shape) != tuple(v.shape):
            raise ValueError(f"{what} entry {k!r} has shape {tuple(b2[k].shape)}, expected {tuple(v.shape)}")
    return {k: _difference(v, b2[k]) for k, v in b1.items()}


def _difference(a: Tensor, b: Tensor) -> Tensor:
    """``b - a`` in float64 (at least): exact for float32 and narrower tensors, so ``a + 1*(b - a)`` is b again."""
    wide = torch.promote_types(a.dtype, torch.float64)
    return (b.detach().to(a.device, wide) - a.detach().to(wide)).detach()


def target_direction(
    w1: nn.Module | Mapping[str, Tensor], w2: nn.Module | Mapping[str, Tensor], *, buffers: bool = False
) -> dict[str, Tensor]:
    """``w2 - w1``: the 1D interpolation direction from model 1 (at 0) to model 2 (at 1).

    The differences are float64 (exact for float32 models), and the evaluation combines points in the
    widest dtype of weights and directions before rounding once, so x = 1 is exactly w2. With
    ``buffers=True`` the differences of the BN running statistics follow the parameters' (both models
    given as modules or full state dicts), so the statistics are interpolated too.
    """
    p1, p2 = _as_weights(w1), _as_weights(w2)
    check_compatible(p1, p2, what="second model")
    out = {k: _difference(v, p2[k]) for k, v in p1.items()}
    if buffers:
        out.update(_buffer_difference(running_stats(w1), running_stats(w2), "second model"))
    return out


def _dot(a: Mapping[str, Tensor], b: Mapping[str, Tensor]) -> float:
    return float(sum((a[k].double() * b[k].to(a[k].device).double()).sum() for k in a))


def plane_directions(
    w1: nn.Module | Mapping[str, Tensor],
    w2: nn.Module | Mapping[str, Tensor],
    w3: nn.Module | Mapping[str, Tensor],
    *,
    orthogonalize: bool = False,
    buffers: bool = False,
) -> tuple[dict[str, Tensor], dict[str, Tensor], np.ndarray]:
    """The plane through three models, centred at ``w1``: returns ``(x, y, coords)``.

    ``x = w2 - w1`` and ``y = w3 - w1``; ``coords`` is a (3, 2) array with the (a, b) coordinates of
    w1, w2, w3, i.e. ``[[0, 0], [1, 0], [0, 1]]``. With ``orthogonalize=True`` y is made orthogonal to x
    (Gram-Schmidt) and rescaled to ``||x||``, so plot distances are proportional to weight-space
    distances; w3 then sits at ``(<w3-w1, x>/||x||^2, ||y_perp||/||x||)``. With ``buffers=True`` x and y
    also carry the BN running statistics' differences, transformed like the parameters' (the same
    Gram-Schmidt coefficients, not orthogonalized on their own), so every model's statistics sit at
    its coordinates too.
    """
    x = target_direction(w1, w2)
    v = target_direction(w1, w3)
    xb: dict[str, Tensor] = {}
    vb: dict[str, Tensor] = {}
    if buffers:
        b1 = running_stats(w1)
        xb = _buffer_difference(b1, running_stats(w2), "second model")
        vb = _buffer_difference(b1, running_stats(w3), "third model")
    coords = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    if not orthogonalize:
        return {**x, **xb}, {**v, **vb}, coords
    xx = _dot(x, x)
    if xx == 0.0:
        raise ValueError("the first two models are identical: no x direction to span a plane")
    c = _dot(v, x) / xx
    y_perp = {k: v[k].double() - c * x[k].double() for k in x}
    yy = _dot(y_perp, y_perp)
    if yy <= 1e-10 * xx:  # ||y_perp|| below 1e-5 ||x||: float rounding, not a plane
        raise ValueError("the three models are (nearly) collinear: they do not span a plane")
    scale = (xx / yy) ** 0.5
    y = {k: (y_perp[k] * scale).to(x[k].dtype) for k in x}
    # The statistics are the same affine function of (a, b) as the parameters: w3's sit at w3's coordinates.
    y.update({k: ((vb[k].double() - c * xb[k].double()) * scale).to(t.dtype) for k, t in xb.items()})
    coords[2] = [c, 1.0 / scale]
    return {**x, **xb}, y, coords


def _coefficient(cache: dict, c: float | Tensor, like: Tensor) -> Tensor:
    if isinstance(c, Tensor) and c.dtype == like.dtype and c.device == like.device:
        return c  # already a 0-dim tensor where it is needed: no host-to-device copy per point
    key = (like.dtype, like.device)
    if key not in cache:
        cache[key] = torch.tensor(float(c), dtype=like.dtype, device=like.device)
    return cache[key]


def combine(
    w0: Sequence[Tensor], dirs: Sequence[Sequence[Tensor]], coeffs: Sequence[float | Tensor]
) -> list[Tensor]:
    """``w0 + c0*d0 + c1*d1`` over lists of tensors, one rounding per op (never a fused multiply-add).

    Every entry is computed as ``((w0 + d0*c0) + d1*c1)`` with the coefficient cast to the tensor's
    dtype first, the same arithmetic the batched (vmap) evaluation uses, so both give bitwise the same
    weights for a point. A coefficient may be a 0-dim tensor of the tensors' dtype and device.
    """
    if len(dirs) != len(coeffs):
        raise ValueError(f"got {len(dirs)} directions but {len(coeffs)} coefficients")
    acc = list(w0)
    for direction, c in zip(dirs, coeffs):
        d = list(direction)
        cache: dict = {}
        scaled: Sequence[Tensor]
        if d and all(t.dtype == d[0].dtype and t.device == d[0].device for t in d):
            # One multi-tensor kernel instead of one launch per parameter (matters on GPUs).
            scaled = torch._foreach_mul(d, _coefficient(cache, c, d[0]))
        else:
            scaled = [t * _coefficient(cache, c, t) for t in d]
        acc = list(torch._foreach_add(acc, list(scaled)))
    return acc


def widest_precision(
    w0: Sequence[Tensor], dirs: Sequence[Sequence[Tensor]]
) -> tuple[list[Tensor], list[list[Tensor]]]:
    """w0 and the directions on w0's devices in the widest dtype among them, tensor by tensor (no copy where they agree).

    Points are combined in that dtype and rounded once to the parameters': directions between models
    are float64 differences, so the point at another model's coordinates is exactly that model.
    """
    work = [w.dtype for w in w0]
    for d in dirs:
        work = [torch.promote_types(a, t.dtype) if t.is_floating_point() else a for a, t in zip(work, d)]
    return (
        [w.detach().to(dt) for w, dt in zip(w0, work)],
        [[t.to(w.device, dt) for t, w, dt in zip(d, w0, work)] for d in dirs],
    )


def point_weights(
    w0: Mapping[str, Tensor], dirs: Sequence[Mapping[str, Tensor]], coeffs: Sequence[float]
) -> dict[str, Tensor]:
    """The weights ``w0 + sum_k coeffs[k] * dirs[k]`` as a new dict (same rounding as ``set_weights``).

    Computed in the widest dtype of w0 and the directions, then rounded once to w0's dtype.
    """
    names = list(w0)
    for d in dirs:
        check_compatible(w0, d)
    if not dirs:
        return {n: w0[n].detach().clone() for n in names}
    base, lists = widest_precision([w0[n] for n in names], [[d[n] for n in names] for d in dirs])
    return {n: v.to(w0[n].dtype) for n, v in zip(names, combine(base, lists, coeffs))}


@torch.no_grad()
def set_weights(
    model: nn.Module, w0: Mapping[str, Tensor], dirs: Sequence[Mapping[str, Tensor]], coeffs: Sequence[float]
) -> None:
    """Set the model's parameters in place to ``w0 + sum_k coeffs[k] * dirs[k]`` (always from w0).

    Computed in the widest dtype of the parameters and the directions, then rounded once.
    """
    named = list(model.named_parameters())
    params: list[Tensor] = [p for _, p in named]
    reference = dict(named)
    check_compatible(reference, w0, what="w0")
    for d in dirs:
        check_compatible(reference, d)
    base, lists = widest_precision([w0[n].to(p.device) for n, p in named], [[d[n] for n, _ in named] for d in dirs])
    torch._foreach_copy_(params, combine(base, lists, coeffs))


def flatten_directions(direction: Mapping[str, Tensor]) -> Tensor:
    """Concatenate a direction into one 1-D tensor, in its key order."""
    return torch.cat([t.reshape(-1) for t in direction.values()]) if direction else torch.zeros(0)


def unflatten_directions(vector: Tensor, like: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Split a 1-D tensor back into tensors with the names and shapes of ``like``."""
    total = sum(t.numel() for t in like.values())
    if vector.dim() != 1 or vector.numel() != total:
        raise ValueError(f"expected a 1-D tensor of {total} elements, got shape {tuple(vector.shape)}")
    out: dict[str, Tensor] = {}
    start = 0
    for name, t in like.items():
        out[name] = vector[start : start + t.numel()].reshape(t.shape)
        start += t.numel()
    return out


def _update_hash(h: Any, tensors: Mapping[str, Tensor]) -> None:
    for name, t in tensors.items():
        h.update(name.encode())
        h.update(repr(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        t = t.detach().to("cpu").contiguous().reshape(-1)
        # Raw bytes via a uint8 view, which also works for dtypes numpy lacks (bfloat16).
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")


def direction_hash(directions: Mapping[str, Tensor] | Sequence[Mapping[str, Tensor] | None]) -> str:
    """sha256 over names, shapes, dtypes and bytes of one direction or of several (e.g. ``(x, y)``)."""
    groups: Iterable[Mapping[str, Tensor] | None] = (
        [directions] if isinstance(directions, Mapping) else list(directions)
    )
    h = hashlib.sha256()
    for i, group in enumerate(groups):
        if group is None:
            continue
        h.update(f"[direction {i}]".encode())
        _update_hash(h, group)
    return h.hexdigest()


def weights_hash(weights: nn.Module | Mapping[str, Tensor]) -> str:
    """sha256 of a state dict; for a module its full state_dict (buffers too: BN statistics change the surface)."""
    tensors = weights.state_dict() if isinstance(weights, nn.Module) else weights
    h = hashlib.sha256()
    _update_hash(h, tensors)
    return h.hexdigest()
