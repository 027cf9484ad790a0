"""The losses of training and of loss-landscape evaluation, in one place (tensors in, tensors out).

Conventions, shared by ``train/loop.py`` and ``landscape/evaluate.py`` so that a landscape's centre
point (a, b) = (0, 0) shows the loss training reported:

- ``ce``: cross-entropy of the logits against integer labels, averaged over samples
  (``F.cross_entropy``).
- ``mse``: squared error of the logits against one-hot targets, averaged over *all* N*C elements,
  i.e. ``nn.MSELoss()(logits, one_hot(y))`` as in the original loss-landscape code (Li et al. 2018).
  Per sample that is the mean over the C classes, so the batch loss is the mean of the per-sample
  losses, as for ``ce``.

``per_sample_loss`` gives the (N,) vector that sums and masks are built from (evaluation keeps float64
sums of it); ``batch_loss`` gives the mean that training differentiates. The two agree to float
rounding: ``batch_loss`` uses torch's fused reference kernels, ``per_sample_loss`` for ``ce`` takes
``logsumexp - gather``, which is the same value as ``F.cross_entropy(reduction="none")`` and about 3x
faster on a CPU for few classes (and runs under ``torch.vmap``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from effrep_hpc.registry import unknown_name_message

LOSSES: tuple[str, ...] = ("ce", "mse")


def check_loss(kind: str) -> None:
    """Raise ValueError naming the valid losses when ``kind`` is not one of ``LOSSES``."""
    if kind not in LOSSES:
        raise _unknown(kind)


def _unknown(kind: str) -> ValueError:
    return ValueError(unknown_name_message("loss", str(kind), list(LOSSES)))


def _one_hot(logits: Tensor, y: Tensor) -> Tensor:
    return F.one_hot(y, logits.shape[-1]).to(logits.dtype)


def per_sample_loss(logits: Tensor, y: Tensor, kind: str = "ce") -> Tensor:
    """Loss of each sample, shape (N,), for logits (N, C) and integer labels (N,)."""
    if kind == "ce":
        # F.cross_entropy's log_softmax vectorizes over the (short) class dimension; this is ~3x faster on a CPU.
        return torch.logsumexp(logits, dim=-1) - logits.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    if kind == "mse":
        return ((logits - _one_hot(logits, y)) ** 2).mean(dim=-1)
    raise _unknown(kind)


def batch_loss(logits: Tensor, y: Tensor, kind: str = "ce") -> Tensor:
    """Mean loss over the batch (a scalar to differentiate); equals ``per_sample_loss(...).mean()``."""
    if kind == "ce":
        return F.cross_entropy(logits, y)
    if kind == "mse":
        return F.mse_loss(logits, _one_hot(logits, y))
    raise _unknown(kind)
