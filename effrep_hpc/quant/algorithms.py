"""Quantized training algorithms as one torch optimizer: FP, BC, SR and R, each with an SGD or an Adam step.

Every algorithm computes the same base step ``d`` from the gradient (SGD with optional momentum, or Adam,
with L2 weight decay), then applies it in its own way to the quantized weights (see
:func:`quantized_layers` for which those are):

- ``fp``/``fp-adam``: ``w <- w - d``; nothing is quantized (the full-precision baseline).
- ``bc``/``bc-adam`` (BinaryConnect): a float copy ``w_r`` lives in the optimizer; the model holds
  ``Q_d(w_r)``, so forward and backward run on the quantized weights and the gradient is taken there;
  ``w_r <- clip(w_r - d)`` and the model gets ``Q_d(w_r)`` again. Small steps accumulate in ``w_r`` until
  they flip a weight: the greedy search phase the paper credits BC's accuracy to.
- ``sr``/``sr-adam`` (stochastic rounding): the weights live on the grid, ``w <- Q_s(w - d)``, rounded in
  units of Delta so that no step is too small to count (:func:`~effrep_hpc.quant.quantizers.stochastic_step`).
  No float copy is kept anywhere: the only per-weight float state is the gradient statistics of the step
  itself (momentum buffer, or Adam's two moments), exactly what the float baseline keeps.
- ``r``/``r-adam`` (deterministic rounding): ``w <- Q_d(w - d)``; also no float copy.

Activations and gradients stay float. Biases, BN parameters and layers left float (``quantize_first_last``)
get ``w <- w - d``. The grid of each quantized layer (``grid``: the paper's ``Delta*Z`` or ``midrise``) is
fixed at construction by the Delta rule (:mod:`effrep_hpc.quant.quantizers`); the FP algorithms also get
one-bit grids, used only to express weights in grid units for statistics.

Implementation: the optimizer moves all trainable parameters into one flat buffer (quantized weights first)
and makes the parameters views of it, so each step is a handful of whole-buffer kernels instead of a loop
over layers. Build the optimizer after moving the model to its device. The constructor quantizes the
model's weights in place (``Q_d`` of the initial float weights).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, cast

import torch
from torch import Tensor, nn

from effrep_hpc.quant.quantizers import (
    check_bits,
    check_grid,
    choose_delta,
    grid_levels,
    grid_limit,
    quantize_det,
    stochastic_step,
)
from effrep_hpc.quant.spec import ALGORITHMS, AlgorithmSpec, get_algorithm  # noqa: F401  (re-exported)

WEIGHT_LAYERS = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)


def quantized_layers(model: nn.Module, quantize_first_last: bool = True) -> list[str]:
    """Names of the weights to quantize: every conv and linear weight in module order, or all but the first and last."""
    names = [
        f"{mod_name}.weight" if mod_name else "weight"
        for mod_name, m in model.named_modules()
        if isinstance(m, WEIGHT_LAYERS)
    ]
    if not names:
        raise ValueError(f"{type(model).__name__} has no conv or linear layer to quantize")
    if not quantize_first_last:
        if len(names) <= 2:
            raise ValueError(
                f"{type(model).__name__} has only {len(names)} conv/linear layer(s): keeping the first and last "
                "in float leaves nothing to quantize; set quantize_first_last to true"
            )
        names = names[1:-1]
    return names


class QuantizedOptimizer(torch.optim.Optimizer):
    """FP/BC/SR/R training of ``model`` with an SGD or Adam step; a drop-in torch optimizer (schedulers work).

    ``bits``, ``grid`` (paper or midrise) and the Delta rule (``delta_rule``, ``delta``, ``delta_scale``) define
    each quantized layer's grid; ``clip`` keeps BC's float copy inside the grid's range (as BinaryConnect does), so a weight never
    drifts so far out that it cannot flip back. ``seed`` (or ``generator``, on the parameters' device) drives stochastic
    rounding; its state is part of :meth:`state_dict`.
    """

    def __init__(
        self,
        model: nn.Module,
        algorithm: str,
        *,
        lr: float,
        bits: int = 1,
        grid: str = "paper",
        momentum: float = 0.0,
        nesterov: bool = False,
        weight_decay: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        delta_rule: str = "gauss",
        delta: Optional[float] = None,
        delta_scale: float = 1.0,
        quantize_first_last: bool = True,
        clip: bool = True,
        seed: int = 0,
        generator: Optional[torch.Generator] = None,
    ) -> None:
        spec = get_algorithm(algorithm)
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum}")
        if nesterov and momentum == 0:
            raise ValueError("nesterov needs momentum > 0")
        if weight_decay < 0:
            raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
        # The FP algorithms quantize nothing; their one-bit grids only put weights in grid units for statistics.
        grid_bits = 1 if spec.rule == "fp" else check_bits(bits)
        check_grid(grid)
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        qnames = quantized_layers(model, quantize_first_last)
        by_name = dict(named)
        missing = [n for n in qnames if n not in by_name]
        if missing:
            raise ValueError(f"weights {missing} do not require grad; unfreeze them or keep them out of quantization")
        qset = set(qnames)
        ordered = [(n, by_name[n]) for n in qnames] + [(n, p) for n, p in named if n not in qset]
        params = [p for _, p in ordered]
        devices = {p.device for p in params}
        dtypes = {p.dtype for p in params}
        if len(devices) != 1 or len(dtypes) != 1 or not next(iter(dtypes)).is_floating_point:
            raise ValueError(f"all trainable parameters must share one device and float dtype, got {devices} {dtypes}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, betas=tuple(betas), eps=eps)
        super().__init__([{"params": params}], defaults)

        self.spec = spec
        self.bits = grid_bits
        self.grid_kind = grid
        self.names = [n for n, _ in ordered]
        self.quantized_names = list(qnames)
        self.clip = clip
        device = params[0].device
        if generator is None:
            generator = torch.Generator(device=device).manual_seed(int(seed))
        elif generator.device != device:
            raise ValueError(f"the rounding generator is on {generator.device} but the parameters are on {device}")
        self.generator = generator

        self._sizes = [p.numel() for p in params]
        self._nq = sum(self._sizes[: len(qnames)])
        with torch.no_grad():
            flat = torch.cat([p.detach().reshape(-1) for p in params])
            for p, view in zip(params, flat.split(self._sizes)):
                p.data = view.view_as(p)
        self._flat = flat
        self.deltas = [choose_delta(by_name[n].detach(), grid_bits, delta_rule, delta, delta_scale, grid) for n in qnames]
        self._set_grid()
        self._master: Optional[Tensor] = None
        with torch.no_grad():
            wq = self._flat[: self._nq]
            if spec.rule == "bc":
                self._master = flat.clone()
                if clip:
                    self._clip(self._master[: self._nq])
                wq.copy_(quantize_det(self._master[: self._nq], self._delta, grid_bits, grid))
            elif spec.rule in ("sr", "r"):
                wq.copy_(quantize_det(wq, self._delta, grid_bits, grid))
        self._buffers: dict[str, Tensor] = {}
        if spec.optimizer == "adam":
            self._buffers = {"exp_avg": torch.zeros_like(flat), "exp_avg_sq": torch.zeros_like(flat)}
        elif momentum > 0:
            self._buffers = {"momentum": torch.zeros_like(flat)}
        self._step = 0

    # --- grid bookkeeping ------------------------------------------------------------------------

    def _set_grid(self) -> None:
        """Per-element Delta and clip limit of the quantized part (one kernel per step instead of one per layer)."""
        qsizes = self._sizes[: len(self.deltas)]
        ref = self._flat
        parts = [torch.full((n,), d, dtype=ref.dtype, device=ref.device) for n, d in zip(qsizes, self.deltas)]
        self._delta = torch.cat(parts) if parts else ref[:0].clone()
        self._limit = cast(Tensor, grid_limit(self._delta, self.bits, self.grid_kind))  # a tensor Delta: a tensor limit

    def _clip(self, w: Tensor) -> None:
        torch.clamp(w, -self._limit, self._limit, out=w)

    # --- the step --------------------------------------------------------------------------------

    def _gradient(self) -> Tensor:
        params = self.param_groups[0]["params"]
        return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])

    def _direction(self, g: Tensor, group: dict[str, Any]) -> Tensor:
        """The base optimizer's step (learning rate included), computed exactly as torch's SGD/Adam do."""
        lr = group["lr"]
        if self.spec.optimizer == "adam":
            beta1, beta2 = group["betas"]
            m, v = self._buffers["exp_avg"], self._buffers["exp_avg_sq"]
            m.lerp_(g, 1 - beta1)
            v.mul_(beta2).addcmul_(g, g, value=1 - beta2)
            bias1 = 1 - beta1**self._step
            bias2 = 1 - beta2**self._step
            denom = (v.sqrt() / math.sqrt(bias2)).add_(group["eps"])
            return (m / denom).mul_(lr / bias1)
        momentum = group["momentum"]
        if momentum > 0:
            buf = self._buffers["momentum"]
            if self._step == 1:
                buf.copy_(g)
            else:
                buf.mul_(momentum).add_(g)
            g = g.add(buf, alpha=momentum) if group["nesterov"] else buf
        return g * lr

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None) -> Optional[float]:  # type: ignore[override]
        """One update of every parameter from its ``.grad``; quantized weights end on their grids (BC: Q_d(w_r))."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        group = self.param_groups[0]
        self._step += 1
        g = self._gradient()
        # weight decay acts on the weights the algorithm updates: BC's float copy, the weights themselves otherwise
        target = self._master if self._master is not None else self._flat
        if group["weight_decay"]:
            g = g.add(target, alpha=group["weight_decay"])
        d = self._direction(g, group)
        nq, rule = self._nq, self.spec.rule
        if rule == "fp":
            self._flat.sub_(d)
        elif rule == "bc":
            master = self._master
            assert master is not None
            master.sub_(d)
            if self.clip:
                self._clip(master[:nq])
            self._flat[:nq].copy_(quantize_det(master[:nq], self._delta, self.bits, self.grid_kind))
            self._flat[nq:].copy_(master[nq:])
        elif rule == "sr":
            wq = self._flat[:nq]  # on the grid: the step is rounded in units of Delta, never added in float first
            wq.copy_(stochastic_step(wq, d[:nq], self._delta, self.bits, self.generator, self.grid_kind))
            self._flat[nq:].sub_(d[nq:])
        else:
            self._flat.sub_(d)
            wq = self._flat[:nq]
            wq.copy_(quantize_det(wq, self._delta, self.bits, self.grid_kind))
        return loss

    # --- what the runner and the tests look at ---------------------------------------------------

    def quantized_weights(self) -> Tensor:
        """The quantized layers' weights the model uses, as one flat tensor (a view; FP: its float weights)."""
        return self._flat[: self._nq]

    def float_copy(self) -> Optional[Tensor]:
        """The float weights behind the quantized layers (BC's w_r, FP's weights); None for SR and R."""
        if self.spec.rule == "bc":
            assert self._master is not None
            return self._master[: self._nq]
        if self.spec.rule == "fp":
            return self._flat[: self._nq]
        return None

    def grid(self) -> tuple[Tensor, int]:
        """Per-element Delta of the quantized part and the grid's bits (the kind of grid: ``grid_kind``)."""
        return self._delta, self.bits

    def in_grid_units(self, w: Tensor) -> Tensor:
        """``w`` divided by its layer's outermost level: quantized weights lie in [-1, 1], BC's w_r too."""
        return w / self._limit

    def snapshot(self) -> Tensor:
        """A copy of the deployed quantized weights, to count later how many changed."""
        return self.quantized_weights().detach().clone()

    def changed_fraction(self, before: Tensor) -> float:
        """Fraction of quantized-layer weights that differ from ``before`` (for FP: that moved at all)."""
        now = self.quantized_weights()
        return float((now != before).double().mean()) if now.numel() else 0.0

    def histograms(self, bins: int, limit: float) -> dict[str, Optional[Tensor]]:
        """Counts of the float copy and the quantized weights in grid units over [-limit, limit] (None: no such weights)."""
        # values beyond the range go to the edge bins, so the counts always add up to the number of weights

        def hist(w: Optional[Tensor]) -> Optional[Tensor]:
            if w is None:
                return None
            u = self.in_grid_units(w.detach()).double().clamp_(-limit, limit)
            return torch.histc(u, bins=bins, min=-limit, max=limit).cpu()

        return {
            "float": hist(self.float_copy()),
            "quantized": hist(self.quantized_weights() if self.spec.quantized else None),
        }

    def layer_grids(self) -> dict[str, float]:
        """Delta of each quantized layer, by weight name."""
        return dict(zip(self.quantized_names, self.deltas))

    def summary(self) -> dict[str, Any]:
        """What a checkpoint records to unpack the weights: algorithm, bits, grid kind and each layer's Delta."""
        return {"algorithm": self.spec.name, "bits": self.bits, "grid": self.grid_kind, "layers": self.layer_grids()}

    # --- checkpoints -----------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue bit for bit: buffers, grids, step count, rounding generator state."""
        buffers = {k: v.detach().clone() for k, v in self._buffers.items()}
        if self._master is not None:
            buffers["float_copy"] = self._master.detach().clone()
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        group["betas"] = list(group["betas"])
        return {
            "algorithm": self.spec.name,
            "bits": self.bits,
            "grid": self.grid_kind,
            "names": list(self.names),
            "deltas": list(self.deltas),
            "step": self._step,
            "buffers": buffers,
            "generator": self.generator.get_state(),
            "group": group,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output of an optimizer built for the same model and algorithm."""
        for key, mine in (("algorithm", self.spec.name), ("bits", self.bits), ("names", self.names)):
            if state.get(key) != mine:
                raise ValueError(f"optimizer state is for {key}={state.get(key)!r}, this optimizer has {mine!r}")
        saved = state.get("grid", "midrise")  # states written before there was a choice of grid are midrise
        if grid_levels(self.bits, saved) != grid_levels(self.bits, self.grid_kind):  # one bit: the grids agree
            raise ValueError(f"optimizer state is for the {saved} grid, this optimizer has the {self.grid_kind} grid "
                             f"(set quant.grid={saved} to continue it)")
        self.deltas = [float(d) for d in state["deltas"]]
        self._set_grid()
        buffers = dict(state["buffers"])
        if self._master is not None:
            self._master.copy_(buffers.pop("float_copy"))
        if set(buffers) != set(self._buffers):
            raise ValueError(f"optimizer state holds buffers {sorted(buffers)}, expected {sorted(self._buffers)}")
        for k, v in buffers.items():
            self._buffers[k].copy_(v)
        self._step = int(state["step"])
        self.generator.set_state(state["generator"])
        group = dict(state["group"])
        group["betas"] = tuple(group["betas"])
        self.param_groups[0].update(group)
