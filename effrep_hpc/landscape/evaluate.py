"""Loss and accuracy at many points ``w0 + a*dx + b*dy`` of a landscape, fast.

One entry point, ``evaluate_points``. Data sit in memory on the model's device; every point is
evaluated on the full train (and test) set in fixed batches; loss and correct-count sums stay on the
device and are fetched once per call. Losses are those of training (``effrep_hpc.train.losses``, the
same ``ce``/``mse`` conventions), so the centre point shows the loss training reported.

Two paths:

- *batched* (``points_per_pass = K >= 2``): K points share each forward pass through
  ``torch.func.functional_call`` + ``torch.vmap`` over parameters stacked to shape ``(K, ...)``. The
  model's own parameters are never touched.
- *single* (K = 1): parameters are set in place, point by point, to ``w0 + a*dx + b*dy`` (always from
  w0), and restored afterwards.

``points_per_pass="auto"`` picks K from an activation-memory estimate (sizes of the leaf modules'
outputs on two samples, times the batch size) against ``memory_budget`` and a cap of 32, and uses
K = 1 when the model cannot be vmapped. On a CPU it batches points only while one point's activations
per pass stay under 1 MiB: beyond that a pass is compute-bound and vmap (grouped convolutions,
batch norm decomposed into elementwise ops) is slower than separate passes. An out-of-memory error
during a batched pass halves K for the rest of the call; any other error in a batched pass switches
to the single path, which re-raises it if it is real.

BN policies (they affect ``_BatchNorm`` modules only; every other module, dropout included, runs in
eval mode):

- ``eval`` (default): the running statistics *of the point*, used in eval mode. A direction moves the
  parameters and, where it has entries for them (``<bn>.running_mean``, ``<bn>.running_var``: the
  directions between models of ``target_direction``/``plane_directions(buffers=True)``), the running
  statistics too, ``b0 + a*bx + b*by`` from the model's own (the centre's) with the same coefficients
  and rounding as the parameters; ``num_batches_tracked`` is kept. So a point at another model's
  coordinates reproduces that model, statistics included ("interpolated"); along random directions,
  which have no such entries, the statistics stay the centre model's ("centre model"). Beyond the
  models (extrapolation) a running variance can become negative; such a point has no defined BN
  and every value of it is NaN.
- ``recompute``: at every point the running statistics are re-estimated from the first ``bn_batches``
  training batches as a cumulative average (what ``momentum=None`` does), then used in eval mode.
  Buffer entries of the directions are not used.
- ``train``: batch statistics of each evaluation batch (values then depend on ``batch_size``).
The model's buffers, modes and BN momenta are restored after the call. ``bn_statistics`` names what a
scan uses, for the surface file.

Determinism (CPU, fixed ``batch_size`` and data order): a point's values depend only on its
coordinates, the model, the data, ``batch_size``, K, and its *slot* ``point_ids[p] % K`` in the pass --
not on which other points share its pass or tile. Every pass has exactly K slots (empty slots are
filled with a copy of a real point and dropped), and a point always sits in slot ``point_id % K``,
because vectorized kernels can round differently at different offsets inside a stacked tensor. Pass
any fixed per-point id as ``point_ids`` (scans pass each point's rank in the progressive order, so
consecutive tiles of that order fill every pass; files of older versions used the flat grid index)
and any split of a grid into tiles (a resumed scan included) reproduces an uninterrupted scan
bitwise. "auto" resolves K from shapes and the device type only, so it is stable too. The batched and
single paths may differ in the last bits (different kernels); they agree to float rounding. On GPUs the
same holds as far as the kernels are deterministic, except that an out-of-memory retry changes K for
the rest of that call.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from effrep_hpc.landscape.directions import RUNNING_STATS, check_compatible, combine, widest_precision
from effrep_hpc.registry import unknown_name_message
from effrep_hpc.train.losses import LOSSES, per_sample_loss

BN_POLICIES: tuple[str, ...] = ("eval", "recompute", "train")
# What a scan's BN layers normalize with (the surface attribute ``bn_statistics``); "none": no BN layer.
BN_STATISTICS: tuple[str, ...] = ("interpolated", "centre model", "recomputed", "batch", "none")
DEFAULT_MEMORY_BUDGET = 2 * 2**30  # bytes of activations one batched pass may use
MAX_POINTS_PER_PASS = 32  # beyond this the gain is small and a padded last pass costs more
CPU_BATCHING_BYTES = 2**20  # CPU: batch points only while one point's activations per pass are below this
_ACTIVATION_OVERHEAD = 2  # temporaries of a pass relative to the summed leaf-module outputs


@dataclass
class EvalData:
    """In-memory evaluation data: a train split and an optional test split (labels int64, shape (N,))."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor | None = None
    y_test: Tensor | None = None

    def __post_init__(self) -> None:
        self._check("train", self.x_train, self.y_train)
        if (self.x_test is None) != (self.y_test is None):
            raise ValueError("give both x_test and y_test, or neither")
        if self.x_test is not None:
            self._check("test", self.x_test, self.y_test)

    @staticmethod
    def _check(split: str, x: Tensor, y: Tensor | None) -> None:
        if y is None or y.dim() != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
            raise ValueError(f"y_{split} must be a 1-D integer tensor of class labels")
        if len(x) != len(y):
            raise ValueError(f"x_{split} has {len(x)} samples but y_{split} has {len(y)}")
        if len(x) == 0:
            raise ValueError(f"the {split} split is empty")

    def to(self, device: torch.device | str) -> EvalData:
        """The same data on ``device`` (no copy where already there)."""
        def mv(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device)

        return EvalData(self.x_train.to(device), self.y_train.to(device), mv(self.x_test), mv(self.y_test))

    def splits(self) -> list[tuple[str, Tensor, Tensor]]:
        """``[("train", x, y), ("test", x, y)]``, the test split only when present."""
        out = [("train", self.x_train, self.y_train)]
        if self.x_test is not None and self.y_test is not None:
            out.append(("test", self.x_test, self.y_test))
        return out


def subset(x: Tensor, y: Tensor, n: int | None, seed: int) -> tuple[Tensor, Tensor]:
    """A seeded random subset of ``n`` samples (kept in their original order); ``n=None`` keeps all."""
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} samples but y has {len(y)}")
    if n is None:
        return x, y
    if isinstance(n, bool) or int(n) != n or not 1 <= n <= len(x):
        raise ValueError(f"subset size must be an integer in [1, {len(x)}] (got {n!r})")
    gen = torch.Generator(device="cpu")
    gen.manual_seed(int(seed))
    idx = torch.randperm(len(x), generator=gen)[: int(n)].sort().values.to(x.device)
    return x[idx], y[idx.to(y.device)]


def _loss_and_correct(out: Tensor, y: Tensor, loss: str) -> tuple[Tensor, Tensor]:
    """Summed loss (float64) and number of correct predictions of one batch, both left on the device."""
    # max(...).indices is argmax (first maximum on ties) at half the cost on a CPU.
    correct = (out.max(dim=-1).indices == y).sum()
    return per_sample_loss(out, y, loss).double().sum(), correct


def _check_choice(kind: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(unknown_name_message(kind, str(value), list(choices)))


def _bn_modules(model: nn.Module) -> list[_BatchNorm]:
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def _live_running_stats(model: nn.Module) -> dict[str, Tensor]:
    """The model's own running means and variances by state_dict name (what a direction may move)."""
    out: dict[str, Tensor] = {}
    for mod_name, m in model.named_modules():
        if isinstance(m, _BatchNorm) and m.track_running_stats:
            for b_name in RUNNING_STATS:
                b = getattr(m, b_name, None)
                if isinstance(b, Tensor):
                    out[f"{mod_name}.{b_name}" if mod_name else b_name] = b
    return out


def bn_statistics(model: nn.Module, bn: str, directions: Sequence[Mapping[str, Tensor] | None]) -> str:
    """What the BN layers of a scan normalize with: one of ``BN_STATISTICS`` (for the surface file)."""
    _check_choice("BN policy", bn, BN_POLICIES)
    bns = _bn_modules(model)
    if not bns:
        return "none"
    if bn == "train" or not any(m.track_running_stats for m in bns):
        return "batch"
    if bn == "recompute":
        return "recomputed"
    stats = _live_running_stats(model)
    moved = any(name in stats for d in directions if d is not None for name in d)
    return "interpolated" if moved else "centre model"


class _Buffers:
    """The running statistics a scan moves along its directions (bn="eval"): centre values and directions.

    Points get ``b0 + a*bx (+ b*by)`` with the parameters' coefficients and rounding (``combine`` for
    one point, ``_stack`` for K), so the single and batched paths set bitwise the same statistics.
    """

    def __init__(self, live: dict[str, Tensor], dirs: list[dict[str, Tensor]]) -> None:
        self.names = [n for n in live if any(n in d for d in dirs)]
        self.live = [live[n] for n in self.names]
        b0 = [t.detach().clone() for t in self.live]
        bdirs = [[d[n] if n in d else torch.zeros_like(live[n]) for n in self.names] for d in dirs]
        self.b0, self.dirs = widest_precision(b0, bdirs)  # like the parameters: exact at each model
        self.var = [i for i, n in enumerate(self.names) if n.endswith("running_var")]

    def __bool__(self) -> bool:
        return bool(self.names)

    def set_point(self, coeffs: Sequence[Tensor]) -> Tensor:
        """Set the model's statistics to one point's; returns whether a variance is negative (0-dim bool)."""
        values = combine(self.b0, self.dirs, list(coeffs))
        torch._foreach_copy_(self.live, values)
        return self._negative([values[i].reshape(1, -1) for i in self.var], ())

    def stacked(self, coeffs: Tensor) -> tuple[dict[str, Tensor], Tensor]:
        """(K, ...) statistics of K points (``coeffs`` (K, ndirs)) and which of them have a negative variance."""
        values = _stack(self.b0, self.dirs, coeffs)
        k = coeffs.shape[0]
        negative = self._negative([values[i].reshape(k, -1) for i in self.var], (k,))
        return {n: v.to(b.dtype) for n, v, b in zip(self.names, values, self.live)}, negative

    def _negative(self, flat: list[Tensor], shape: tuple[int, ...]) -> Tensor:
        if not flat:
            return torch.zeros(shape, dtype=torch.bool, device=self.b0[0].device)
        return (torch.cat(flat, dim=1) < 0).any(dim=1).reshape(shape)


def _split_direction(
    named: Sequence[tuple[str, Tensor]], stats: Mapping[str, Tensor], d: Mapping[str, Tensor], what: str
) -> tuple[list[Tensor], dict[str, Tensor]]:
    """A direction's parameter tensors (in parameter order) and its running-statistics entries, checked."""
    moved: dict[str, Tensor] = {}
    for name, t in d.items():
        if name in stats:
            if tuple(t.shape) != tuple(stats[name].shape):
                raise ValueError(
                    f"{what} tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(stats[name].shape)}"
                )
            moved[name] = t.detach().to(stats[name].device, _wider(stats[name].dtype, t.dtype))
    params = d if not moved else {k: v for k, v in d.items() if k not in moved}
    return _as_list(named, params, what), moved


def _set_modes(model: nn.Module, bn_training: bool) -> None:
    model.eval()
    for m in _bn_modules(model):
        m.train(bn_training)


def _batches(x: Tensor, y: Tensor, batch_size: int) -> list[tuple[Tensor, Tensor]]:
    return [(x[s : s + batch_size], y[s : s + batch_size]) for s in range(0, len(x), batch_size)]


def _bn_batches(data: EvalData, batch_size: int, bn_batches: int | None) -> list[tuple[Tensor, Tensor]]:
    batches = _batches(data.x_train, data.y_train, batch_size)
    if len(batches) > 1 and len(batches[-1][0]) == 1:
        batches = batches[:-1]  # batch statistics of one sample are undefined
    return batches if bn_batches is None else batches[:bn_batches]


def _is_oom(exc: BaseException) -> bool:
    msg = str(exc)
    return isinstance(exc, torch.OutOfMemoryError) or "out of memory" in msg or "can't allocate memory" in msg


def _use_channels_last(model: nn.Module, data: EvalData) -> bool:
    """On CPU, image convnets run about 3x faster in channels-last layout (oneDNN's native one)."""
    device = next(model.parameters()).device
    has_conv2d = any(isinstance(m, nn.Conv2d) for m in model.modules())
    return device.type == "cpu" and data.x_train.dim() == 4 and has_conv2d


def _to_channels_last(x: Tensor) -> Tensor:
    return x.contiguous(memory_format=torch.channels_last)  # no copy when already channels-last


def _conv_weights_channels_last(model: nn.Module) -> bool:
    return all(
        m.weight.is_contiguous(memory_format=torch.channels_last) for m in model.modules() if isinstance(m, nn.Conv2d)
    )


def _model_to_format(model: nn.Module, memory_format: torch.memory_format) -> None:
    model.to(memory_format=memory_format)  # type: ignore[call-overload]  # torch's overloads of Module.to omit it


def prepare_layout(model: nn.Module, data: EvalData) -> EvalData:
    """Put the model and the data in the layout evaluation is fastest in, once per scan.

    ``evaluate_points`` converts them itself when they are not, and converts the model back afterwards;
    a runner that evaluates many tiles calls this first so that no tile pays for the conversion.
    """
    if not _use_channels_last(model, data):
        return data
    _model_to_format(model, torch.channels_last)
    x_test = None if data.x_test is None else _to_channels_last(data.x_test)
    return EvalData(_to_channels_last(data.x_train), data.y_train, x_test, data.y_test)


class _ModelState:
    """What an evaluation may change on the model (modes, BN momenta, parameters, buffers), to put back."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model
        self.modes = [(m, m.training) for m in model.modules()]
        self.momenta = [(m, m.momentum) for m in _bn_modules(model)]
        self.tensors: list[tuple[Tensor, Tensor]] | None = None

    def snapshot_tensors(self) -> None:
        """Copy parameters and buffers before the single path changes them in place (once)."""
        if self.tensors is None:
            live = [p for p in self.model.parameters()] + [b for b in self.model.buffers()]
            self.tensors = [(t, t.detach().clone()) for t in live]

    @torch.no_grad()
    def restore(self) -> None:
        for m, mode in self.modes:
            m.training = mode
        for m, momentum in self.momenta:
            m.momentum = momentum
        if self.tensors is not None:
            for live, saved in self.tensors:
                live.copy_(saved)


def _point_fn(model: nn.Module, loss: str) -> Callable:
    def fn(params: dict, buffers: dict, xb: Tensor, yb: Tensor) -> tuple[Tensor, Tensor]:
        out = functional_call(model, (params, buffers), (xb,))
        return _loss_and_correct(out, yb, loss)

    return fn


def _forward_fn(model: nn.Module) -> Callable:
    def fn(params: dict, buffers: dict, xb: Tensor) -> Tensor:
        return functional_call(model, (params, buffers), (xb,))

    return fn


def _stack(w0: list[Tensor], dirs: list[list[Tensor]], coeffs: Tensor) -> list[Tensor]:
    """Parameters of K points stacked to (K, ...), with the rounding of ``directions.combine``.

    ``coeffs`` is (K, ndirs) in the parameters' dtype on their device.
    """
    acc = [w.unsqueeze(0) for w in w0]
    for j, d in enumerate(dirs):
        cache: dict[tuple, Tensor] = {}
        out = []
        for a, t in zip(acc, d):
            key = (t.dtype, t.device)
            if key not in cache:
                cache[key] = coeffs[:, j].to(t.device, t.dtype)
            cv = cache[key].reshape((-1,) + (1,) * t.dim())
            out.append(a + t.unsqueeze(0) * cv)
        acc = out
    return acc


def _bn_buffers(model: nn.Module, k: int, fresh: bool) -> dict[str, Tensor]:
    """K private copies of every BN buffer: the model's values, or reset ones (mean 0, var 1, count 0)."""
    out: dict[str, Tensor] = {}
    for mod_name, m in model.named_modules():
        if not isinstance(m, _BatchNorm) or not m.track_running_stats:
            continue
        prefix = f"{mod_name}." if mod_name else ""
        for b_name, b in m.named_buffers(recurse=False):
            if b is None:
                continue
            if fresh:
                b = torch.ones_like(b) if b_name == "running_var" else torch.zeros_like(b)
            out[prefix + b_name] = b.detach().unsqueeze(0).repeat((k,) + (1,) * b.dim())
    return out


def _set_bn_momentum(model: nn.Module, t: int) -> None:
    # momentum 1/t at the t-th batch is exactly the cumulative average of momentum=None, but needs no
    # Python read of num_batches_tracked, which vmap cannot do.
    for m in _bn_modules(model):
        m.momentum = 1.0 / t


def _activation_bytes_per_sample(model: nn.Module, x: Tensor) -> int:
    """Summed output bytes of the leaf modules per sample (an upper-bound style memory estimate)."""
    total = [0]

    def hook(_m: nn.Module, _inp: object, out: object) -> None:
        for t in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(t, Tensor):
                total[0] += t.numel() * t.element_size()

    leaves = [m for m in model.modules() if not list(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        _set_modes(model, bn_training=False)
        model(x)
    finally:
        for h in handles:
            h.remove()
    if total[0] == 0:  # a model with no leaf modules: count the output at least
        total[0] = model(x).numel() * x.element_size()
    return max(1, total[0] // len(x))


def _vmap_works(model: nn.Module, bn: str, loss: str, x: Tensor, y: Tensor, moving: Sequence[str] = ()) -> bool:
    """Whether a batched pass of two points runs on this model (one tiny forward); ``moving``: statistics moved in eval."""
    try:
        k = 2
        stacked = {n: p.detach().unsqueeze(0).repeat((k,) + (1,) * p.dim()) for n, p in model.named_parameters()}
        bufs = _bn_buffers(model, k, fresh=bn == "recompute") if bn != "eval" else {}
        if bn == "eval" and moving:
            live = _live_running_stats(model)
            bufs = {n: live[n].detach().unsqueeze(0).repeat((k,) + (1,) * live[n].dim()) for n in moving}
        if bn != "eval":
            _set_bn_momentum(model, 1)
        _set_modes(model, bn_training=bn != "eval")
        in_dims = (0, 0 if bufs else None, None, None)
        vmap(_point_fn(model, loss), in_dims=in_dims)(stacked, bufs, x, y)
        return True
    except (RuntimeError, NotImplementedError, ValueError, TypeError):
        return False


def _resolve_k(
    model: nn.Module,
    data: EvalData,
    *,
    bn: str,
    loss: str,
    batch_size: int,
    points_per_pass: int | str,
    memory_budget: int | None,
    moving: Sequence[str] = (),
) -> int:
    if points_per_pass != "auto":
        valid = isinstance(points_per_pass, (int, np.integer)) and not isinstance(points_per_pass, bool)
        if not valid or int(points_per_pass) < 1:
            raise ValueError(f"points_per_pass must be an integer >= 1 or 'auto' (got {points_per_pass!r})")
        k = int(points_per_pass)
    else:
        budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else int(memory_budget)
        per_sample = _activation_bytes_per_sample(model, data.x_train[:2])
        longest = max(len(x) for _, x, _ in data.splits())
        per_point = per_sample * min(batch_size, longest)
        k = budget // (per_point * _ACTIVATION_OVERHEAD)
        if data.x_train.device.type == "cpu":
            # On a CPU a pass of more than ~1 MiB of activations is compute-bound already, and vmap's
            # grouped convolutions and decomposed batch norms are slower than K separate passes.
            k = min(k, CPU_BATCHING_BYTES // per_point)
        k = int(max(1, min(MAX_POINTS_PER_PASS, k)))
    if k >= 2:
        if not _vmap_works(model, bn, loss, data.x_train[:2], data.y_train[:2], moving):
            k = 1
    return k


@torch.no_grad()
def plan_points_per_pass(
    model: nn.Module,
    data: EvalData,
    *,
    bn: str = "eval",
    loss: str = "ce",
    batch_size: int = 512,
    points_per_pass: int | str = "auto",
    memory_budget: int | None = None,
) -> int:
    """The K that ``evaluate_points`` will use (1 = single path); lets a runner pick tiles as multiples of K."""
    _check_choice("BN policy", bn, BN_POLICIES)
    _check_choice("loss", loss, LOSSES)
    state = _ModelState(model)
    try:
        device = next(model.parameters()).device
        return _resolve_k(
            model, data.to(device), bn=bn, loss=loss, batch_size=batch_size,
            points_per_pass=points_per_pass, memory_budget=memory_budget,
        )
    finally:
        state.restore()


def _slot_chunks(point_ids: np.ndarray, k: int) -> np.ndarray:
    """Rows of K positions into the point list, point p in column ``point_ids[p] % k``; -1 = empty slot."""
    slots = point_ids % k
    queues = [np.flatnonzero(slots == s) for s in range(k)]
    chunks = np.full((max(len(q) for q in queues), k), -1, dtype=np.int64)
    for s, q in enumerate(queues):
        chunks[: len(q), s] = q
    return chunks


class _Sums:
    """Per-point loss and correct-count sums kept as device tensors, fetched at the end with one sync."""

    def __init__(self, splits: list[str]) -> None:
        self.splits = splits
        self.positions: list[np.ndarray] = []
        self.parts: dict[str, list[tuple[Tensor, Tensor]]] = {s: [] for s in splits}
        self.undefined: list[tuple[np.ndarray, Tensor]] = []

    def add(
        self, positions: np.ndarray, sums: dict[str, tuple[Tensor, Tensor]], undefined: Tensor | None = None
    ) -> None:
        """Record sums for ``positions`` (index into the points; -1 marks a padding slot to drop).

        ``undefined`` (bool, one per position) marks points without a defined model: all their values are NaN.
        """
        self.positions.append(positions)
        for s in self.splits:
            self.parts[s].append(sums[s])
        if undefined is not None:
            self.undefined.append((positions, undefined))

    def collect(self, n_points: int, sizes: dict[str, int]) -> dict[str, np.ndarray]:
        out: dict[str, np.ndarray] = {}
        pos = np.concatenate(self.positions) if self.positions else np.zeros(0, dtype=np.int64)
        keep = pos >= 0
        for s in self.splits:
            loss = np.full(n_points, np.nan)
            acc = np.full(n_points, np.nan)
            if self.parts[s]:
                losses = torch.cat([part.reshape(-1) for part, _ in self.parts[s]]).cpu().numpy()
                correct = torch.cat([c.reshape(-1) for _, c in self.parts[s]]).cpu().numpy()
                loss[pos[keep]] = losses[keep] / sizes[s]
                acc[pos[keep]] = 100.0 * correct[keep].astype(np.float64) / sizes[s]
            out[f"{s}_loss"], out[f"{s}_acc"] = loss, acc
        if self.undefined:
            where = np.concatenate([p.reshape(-1) for p, _ in self.undefined])
            flags = torch.cat([u.reshape(-1) for _, u in self.undefined]).cpu().numpy()
            bad = where[flags & (where >= 0)]
            for values in out.values():
                values[bad] = np.nan
        return out


def _run_batched(
    model: nn.Module,
    names: list[str],
    w0: list[Tensor],
    dirs: list[list[Tensor]],
    coef: Tensor,
    point_ids: np.ndarray,
    todo: np.ndarray,
    k: int,
    splits: list[tuple[str, list[tuple[Tensor, Tensor]]]],
    bn_batches: list[tuple[Tensor, Tensor]],
    bn: str,
    loss: str,
    sums: _Sums,
    done: np.ndarray,
    buffers: _Buffers,
) -> None:
    point_fn, forward_fn = _point_fn(model, loss), _forward_fn(model)
    dtypes = [p.dtype for p in model.parameters()]
    device = w0[0].device
    chunks = _slot_chunks(point_ids[todo], k)
    real = chunks >= 0
    # Empty slots repeat the first real point of their pass; their results are dropped.
    fill = np.where(real, chunks, chunks[np.arange(len(chunks)), real.argmax(axis=1)][:, None])
    # One host-to-device copy for every pass of the call, so no pass waits on the host.
    chunk_coef = coef[torch.as_tensor(todo[fill], device=coef.device)]
    for c, row in enumerate(chunks):
        # w0 and dirs may be wider than the parameters (widest_precision): rounded once here
        stacked = {n: t.to(dt) for n, t, dt in zip(names, _stack(w0, dirs, chunk_coef[c]), dtypes)}
        bufs: dict[str, Tensor] = {}
        undefined = None
        if buffers:  # bn == "eval": the points' own running statistics
            bufs, undefined = buffers.stacked(chunk_coef[c])
        elif bn == "recompute":
            bufs = _bn_buffers(model, k, fresh=True)
            _set_modes(model, bn_training=True)
            for t, (xb, _) in enumerate(bn_batches, start=1):
                _set_bn_momentum(model, t)
                vmap(forward_fn, in_dims=(0, 0 if bufs else None, None))(stacked, bufs, xb)
        elif bn == "train":
            bufs = _bn_buffers(model, k, fresh=False)
            _set_bn_momentum(model, 1)  # the private copies absorb the updates; any float avoids a host read
        _set_modes(model, bn_training=bn == "train")
        run = vmap(point_fn, in_dims=(0, 0 if bufs else None, None, None))
        chunk_sums: dict[str, tuple[Tensor, Tensor]] = {}
        for split, batches in splits:
            loss_sum = torch.zeros(k, dtype=torch.float64, device=device)
            correct = torch.zeros(k, dtype=torch.int64, device=device)
            for xb, yb in batches:
                batch_loss, n_ok = run(stacked, bufs, xb, yb)
                loss_sum += batch_loss
                correct += n_ok
            chunk_sums[split] = (loss_sum, correct)
        sums.add(np.where(real[c], todo[np.maximum(row, 0)], -1), chunk_sums, undefined)
        done[todo[row[real[c]]]] = True


def _run_single(
    model: nn.Module,
    params: list[Tensor],
    w0: list[Tensor],
    dirs: list[list[Tensor]],
    coef: Tensor,
    todo: np.ndarray,
    splits: list[tuple[str, list[tuple[Tensor, Tensor]]]],
    bn_batches: list[tuple[Tensor, Tensor]],
    bn: str,
    loss: str,
    sums: _Sums,
    done: np.ndarray,
    buffers: _Buffers,
) -> None:
    bns = _bn_modules(model)
    device = w0[0].device
    _set_modes(model, bn_training=bn == "train")
    if bn == "train":
        _set_bn_momentum(model, 1)  # running statistics are restored afterwards; avoid a host read
    for p in todo:
        torch._foreach_copy_(params, combine(w0, dirs, list(coef[p])))
        undefined = buffers.set_point(list(coef[p])) if buffers else None  # bn == "eval"
        if bn == "recompute":
            _recompute_statistics(model, bns, bn_batches)
        point_sums: dict[str, tuple[Tensor, Tensor]] = {}
        for split, batches in splits:
            loss_sum = torch.zeros((), dtype=torch.float64, device=device)
            correct = torch.zeros((), dtype=torch.int64, device=device)
            for xb, yb in batches:
                batch_loss, batch_correct = _loss_and_correct(model(xb), yb, loss)
                loss_sum += batch_loss
                correct += batch_correct
            point_sums[split] = (loss_sum, correct)
        sums.add(np.array([p]), point_sums, undefined)
        done[p] = True


def _moving_parts(
    model: nn.Module, w0: Mapping[str, Tensor], directions: Sequence[tuple[Mapping[str, Tensor], str]], bn: str
) -> tuple[list[Tensor], list[Tensor], list[list[Tensor]], _Buffers]:
    """The model's parameters, w0 and the directions' parameter parts (widest precision), and the statistics they move."""
    named = list(model.named_parameters())
    stats = _live_running_stats(model)
    dirs, moved = [], []
    for d, what in directions:
        params_d, stats_d = _split_direction(named, stats, d, what)
        dirs.append(params_d)
        moved.append(stats_d)
    base, dirs = widest_precision(_as_list(named, w0, "w0"), dirs)
    # Only in eval mode do the running statistics matter; recompute and train set their own.
    return [p for _, p in named], base, dirs, _Buffers(stats, moved if bn == "eval" else [])


def _recompute_statistics(model: nn.Module, bns: list[_BatchNorm], batches: Sequence[tuple[Tensor, Tensor]]) -> None:
    """Re-estimate the BN running statistics in place as the cumulative average over ``batches``; BN left in eval."""
    for m in bns:
        m.reset_running_stats()
        m.train()
    for t, (xb, _) in enumerate(batches, start=1):
        for m in bns:
            m.momentum = 1.0 / t  # see _set_bn_momentum
        model(xb)
    for m in bns:
        m.eval()


@contextmanager
def at_point(
    model: nn.Module,
    w0: Mapping[str, Tensor],
    directions: Sequence[Mapping[str, Tensor]],
    coords: Sequence[float],
    *,
    bn: str = "eval",
    data: EvalData | None = None,
    batch_size: int = 256,
    bn_batches: int | None = None,
) -> Iterator[bool]:
    """The model moved to ``w0 + sum c_k d_k`` with that point's BN statistics, as ``evaluate_points`` sets them.

    ``eval``: statistics moved along the directions' entries (if any); ``recompute``: re-estimated from
    ``data``'s train batches; ``train``: left alone (batch statistics are the caller's). Yields False when
    a moved running variance is negative (no model is defined there). Parameters, buffers, modes and BN
    momenta are restored on exit.
    """
    _check_choice("BN policy", bn, BN_POLICIES)
    if len(directions) != len(coords):
        raise ValueError(f"got {len(directions)} directions but {len(coords)} coordinates")
    if bn == "recompute" and data is None:
        raise ValueError("bn='recompute' needs the data to re-estimate the statistics from")
    state = _ModelState(model)
    state.snapshot_tensors()
    params, base, dirs, buffers = _moving_parts(model, w0, [(d, "direction") for d in directions], bn)
    coef = list(torch.as_tensor(np.asarray(coords, dtype=np.float64)).to(params[0].dtype).to(params[0].device))
    try:
        with torch.no_grad():
            torch._foreach_copy_(params, [v.to(p.dtype) for v, p in zip(combine(base, dirs, coef), params)])
            undefined = bool(buffers.set_point(coef)) if buffers else False
            if bn == "recompute" and data is not None:
                bns = _bn_modules(model)
                _recompute_statistics(model, bns, _bn_batches(data.to(params[0].device), int(batch_size), bn_batches))
        yield not undefined
    finally:
        state.restore()


def _wider(dtype: torch.dtype, other: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, other) if other.is_floating_point else dtype


def _as_list(model_named: Sequence[tuple[str, Tensor]], d: Mapping[str, Tensor], what: str) -> list[Tensor]:
    """``d``'s tensors in parameter order on the parameters' device, in their dtype or a wider one of ``d``."""
    check_compatible({n: p for n, p in model_named}, d, what=what)
    return [d[n].detach().to(p.device, _wider(p.dtype, d[n].dtype)) for n, p in model_named]


@torch.no_grad()
def evaluate_points(
    model: nn.Module,
    w0: Mapping[str, Tensor],
    dx: Mapping[str, Tensor],
    dy: Mapping[str, Tensor] | None,
    coords: np.ndarray,
    data: EvalData,
    *,
    loss: str = "ce",
    bn: str = "eval",
    batch_size: int = 512,
    points_per_pass: int | str = "auto",
    memory_budget: int | None = None,
    bn_batches: int | None = None,
    point_ids: np.ndarray | Sequence[int] | None = None,
) -> dict[str, np.ndarray]:
    """Mean loss and accuracy (%) at ``w0 + a*dx (+ b*dy)`` for every row (a[, b]) of ``coords``.

    ``dx``/``dy`` may also hold BN running-statistics entries, moved from the model's own values with
    ``bn="eval"`` (see the module docstring). Returns float64 arrays of shape (P,): ``train_loss``,
    ``train_acc`` and, when ``data`` has a test split, ``test_loss``, ``test_acc``. ``point_ids``
    (default ``arange(P)``) are the points' flat grid indices; they fix each point's slot in a batched
    pass (see the module docstring on determinism). The model is left as it was.
    """
    _check_choice("loss", loss, LOSSES)
    _check_choice("BN policy", bn, BN_POLICIES)
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1 (got {batch_size!r})")
    if bn_batches is not None and (int(bn_batches) != bn_batches or bn_batches < 1):
        raise ValueError(f"bn_batches must be an integer >= 1 or None for all (got {bn_batches!r})")
    coords = np.asarray(coords, dtype=np.float64)
    if coords.ndim == 1:
        coords = coords[:, None]
    if coords.ndim != 2 or coords.shape[1] not in (1, 2):
        raise ValueError(f"coords must have shape (P,), (P, 1) or (P, 2); got {coords.shape}")
    if coords.shape[1] == 2 and dy is None:
        raise ValueError("coords has two columns (a, b) but no y direction was given")
    if coords.shape[1] == 1 and dy is not None:
        raise ValueError("a y direction was given but coords has one column; pass (P, 2) coordinates")
    n_points = len(coords)
    ids = np.arange(n_points, dtype=np.int64) if point_ids is None else np.asarray(point_ids, dtype=np.int64)
    if ids.shape != (n_points,):
        raise ValueError(f"point_ids must have shape ({n_points},), got {ids.shape}")
    if (ids < 0).any():
        raise ValueError("point_ids must be non-negative flat grid indices")

    if not list(model.parameters()):
        raise ValueError("the model has no parameters to move")
    names = [n for n, _ in model.named_parameters()]
    directions = [(d, what) for d, what in ((dx, "x direction"), (dy, "y direction")) if d is not None]
    params, w0_list, dirs, buffers = _moving_parts(model, w0, directions, bn)
    device = params[0].device
    data = data.to(device)
    # Coefficients cast once to the parameters' dtype (the rounding set_weights uses) and moved once.
    coef = torch.as_tensor(coords).to(params[0].dtype).to(device)
    split_names = [s for s, _, _ in data.splits()]
    sizes = {s: len(x) for s, x, _ in data.splits()}
    sums = _Sums(split_names)
    if n_points == 0:
        return sums.collect(0, sizes)

    splits = [(s, _batches(x, y, int(batch_size))) for s, x, y in data.splits()]
    recompute_batches = _bn_batches(data, int(batch_size), bn_batches) if bn == "recompute" else []
    channels_last = _use_channels_last(model, data)
    convert_model = channels_last and not _conv_weights_channels_last(model)
    if channels_last:
        splits = [(s, [(_to_channels_last(xb), yb) for xb, yb in b]) for s, b in splits]
        recompute_batches = [(_to_channels_last(xb), yb) for xb, yb in recompute_batches]
    if convert_model:
        _model_to_format(model, torch.channels_last)
    state = _ModelState(model)
    done = np.zeros(n_points, dtype=bool)
    try:
        k = _resolve_k(
            model, data, bn=bn, loss=loss, batch_size=int(batch_size),
            points_per_pass=points_per_pass, memory_budget=memory_budget, moving=buffers.names,
        )
        while not done.all():
            todo = np.flatnonzero(~done)
            if k >= 2:
                try:
                    _run_batched(
                        model, names, w0_list, dirs, coef, ids, todo, k, splits, recompute_batches, bn, loss, sums, done,
                        buffers,
                    )
                except (RuntimeError, NotImplementedError) as exc:
                    k = k // 2 if _is_oom(exc) else 1
                    if device.type == "cuda":
                        torch.cuda.empty_cache()
                continue
            state.snapshot_tensors()
            _run_single(
                model, params, w0_list, dirs, coef, todo, splits, recompute_batches, bn, loss, sums, done, buffers
            )
    finally:
        state.restore()
        if convert_model:
            _model_to_format(model, torch.contiguous_format)
    return sums.collect(n_points, sizes)
