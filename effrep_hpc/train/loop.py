"""One training epoch and one evaluation over in-memory tensors (no files, no printing).

Distributed data parallelism is one branch: with ``world > 1`` each process takes the strided shard
``rank::world`` of every global batch, and the local loss is scaled so that DDP's gradient average
equals the gradient of the mean loss over the whole global batch (shards may differ by one sample).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch
from torch import Tensor, nn

from effrep_hpc.train.losses import batch_loss, check_loss, per_sample_loss


def train_epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int,
    generator: torch.Generator,
    loss: str = "ce",
    augment: Optional[Callable[[Tensor], Tensor]] = None,
    rank: int = 0,
    world: int = 1,
    after_step: Optional[Callable[[], None]] = None,
) -> tuple[float, float, int]:
    """Train one epoch over a seeded permutation; return (loss sum, correct count, samples) of this process."""
    check_loss(loss)
    model.train()
    n = x.shape[0]
    # The permutation comes from a CPU generator shared by all ranks, so every rank sees the same
    # global batches and a resumed run draws exactly what an uninterrupted one would.
    perm = torch.randperm(n, generator=generator).to(x.device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    seen = 0
    for start in range(0, n, batch_size):
        idx = perm[start : start + batch_size]
        global_n = idx.numel()
        idx = idx[rank::world]
        if idx.numel() == 0:
            continue
        xb, yb = x[idx], y[idx]
        if augment is not None:
            xb = augment(xb)
        logits = model(xb)
        mean_loss = batch_loss(logits, yb, loss)
        scale = world * idx.numel() / global_n
        optimizer.zero_grad(set_to_none=True)
        (mean_loss * scale).backward()
        optimizer.step()
        if after_step is not None:
            after_step()
        loss_sum += mean_loss.detach().double() * idx.numel()
        correct += (logits.argmax(dim=1) == yb).sum()
        seen += idx.numel()
    return float(loss_sum), int(correct), seen


@torch.no_grad()
def evaluate(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    *,
    batch_size: int = 1024,
    loss: str = "ce",
    rank: int = 0,
    world: int = 1,
) -> tuple[float, int, int]:
    """Evaluate in eval mode on the shard ``rank::world``; return (loss sum, correct count, samples)."""
    check_loss(loss)
    model.eval()
    xs, ys = x[rank::world], y[rank::world]
    loss_sum = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for start in range(0, xs.shape[0], batch_size):
        xb, yb = xs[start : start + batch_size], ys[start : start + batch_size]
        logits = model(xb)
        loss_sum += per_sample_loss(logits, yb, loss).double().sum()
        correct += (logits.argmax(dim=1) == yb).sum()
    return float(loss_sum), int(correct), int(ys.shape[0])
