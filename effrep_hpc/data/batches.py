"""Mini-batches and data augmentation on in-memory tensors, on whatever device the tensors live."""

from __future__ import annotations

from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import Tensor

from effrep_hpc.data.base import check_count


def num_batches(n: int, batch_size: int, drop_last: bool = False) -> int:
    """How many batches :func:`iterate_batches` yields for ``n`` samples."""
    batch_size = check_count(batch_size, "batch_size")
    return n // batch_size if drop_last else -(-n // batch_size)


def iterate_batches(
    x: Tensor,
    y: Tensor,
    batch_size: int,
    *,
    shuffle: bool,
    generator: Optional[torch.Generator] = None,
    drop_last: bool = False,
) -> Iterator[tuple[Tensor, Tensor]]:
    """Yield ``(xb, yb)`` batches covering each sample once (a seeded permutation when ``shuffle``).

    Without shuffling the batches are views (no copy); with shuffling each batch is gathered by
    index, so the full dataset is never copied. Arguments are checked here, not at the first ``next``.
    """
    batch_size = check_count(batch_size, "batch_size")
    if len(x) != len(y):
        raise ValueError(f"x and y must have the same length (got {len(x)} and {len(y)})")
    n = len(y)
    order: Optional[Tensor] = None
    if shuffle:
        gen_device = generator.device if generator is not None else torch.device("cpu")
        order = torch.randperm(n, generator=generator, device=gen_device).to(x.device)
    stop = n - n % batch_size if drop_last else n
    return _batches(x, y, batch_size, stop, order)


def _batches(
    x: Tensor, y: Tensor, batch_size: int, stop: int, order: Optional[Tensor]
) -> Iterator[tuple[Tensor, Tensor]]:
    """The generator behind :func:`iterate_batches` (split out so argument errors raise eagerly)."""
    for start in range(0, stop, batch_size):
        end = min(start + batch_size, stop)
        if order is None:
            yield x[start:end], y[start:end]
        else:
            idx = order[start:end]
            yield x[idx], y[idx.to(y.device)]


def crop_flip(x: Tensor, dy: Optional[Tensor], dx: Tensor, flip: Tensor, *, pad: int) -> Tensor:
    """Zero-pad by ``pad``, crop each sample at offsets (dy, dx) in [0, 2*pad], mirror where ``flip``.

    The deterministic core of :func:`augment`: for (N, C, H, W) input sample i becomes
    ``pad(x)[i, :, dy[i]:dy[i]+H, dx[i]:dx[i]+W]``, flipped along W when ``flip[i]``; offsets equal
    to ``pad`` give the centred (unshifted) crop. For (N, C, L) input ``dy`` must be None and only L
    is padded, cropped and (optionally) reversed. One gather for the whole batch, no per-sample loop.
    """
    if x.dim() not in (3, 4):
        raise ValueError(f"crop_flip expects (N, C, L) or (N, C, H, W) input, got shape {tuple(x.shape)}")
    pad = check_count(pad, "pad", minimum=0)
    one_d = x.dim() == 3
    if one_d and dy is not None:
        raise ValueError("dy must be None for (N, C, L) signals: only the length axis is cropped")
    if not one_d and dy is None:
        raise ValueError("dy is required for (N, C, H, W) images")
    n = x.shape[0]
    pad_h = 0 if one_d else pad
    dev = x.device
    dx = dx.to(dev, torch.long)
    dy = None if dy is None else dy.to(dev, torch.long)
    flip = flip.to(dev, torch.bool)
    if dx.shape != (n,) or flip.shape != (n,) or (dy is not None and dy.shape != (n,)):
        raise ValueError(f"dy, dx and flip must each hold one value per sample ({n})")
    dy_bad = dy is not None and bool(((dy < 0) | (dy > 2 * pad_h)).any())
    if dy_bad or bool(((dx < 0) | (dx > 2 * pad)).any()):
        raise ValueError(f"crop offsets must lie in [0, {2 * pad}] for pad={pad}")

    return _gather_crops(x, dy, dx, flip, pad)


def _gather_crops(x: Tensor, dy: Optional[Tensor], dx: Tensor, flip: Tensor, pad: int) -> Tensor:
    """:func:`crop_flip` without the checks (no host sync on the GPU hot path of :func:`augment`)."""
    one_d = x.dim() == 3
    x4 = x.unsqueeze(2) if one_d else x
    n, c, h, w = x4.shape
    pad_h = 0 if one_d else pad
    hp, wp = h + 2 * pad_h, w + 2 * pad
    dev = x.device
    # Flat index into each padded (hp*wp) plane; the same index serves every channel (expanded,
    # not copied), so one gather does crop and flip for the whole batch.
    cols = torch.arange(w, device=dev)
    cols = torch.where(flip.to(dev)[:, None], w - 1 - cols, cols) + dx.to(dev)[:, None]  # (n, w)
    rows = torch.arange(h, device=dev)[None, :]
    if dy is not None:
        rows = rows + dy.to(dev)[:, None]  # (n, h)
    index = (rows[..., None] * wp + cols[:, None, :]).expand(n, h, w).reshape(n, 1, h * w).expand(n, c, h * w)
    padded = F.pad(x4, (pad, pad, pad_h, pad_h)).reshape(n, c, hp * wp)
    out = padded.gather(2, index).view(n, c, h, w)
    return out.squeeze(2) if one_d else out


def augment(
    x: Tensor, *, pad: int = 4, flip: bool = True, generator: Optional[torch.Generator] = None
) -> Tensor:
    """Random crop after zero padding plus random horizontal flip, drawn per sample, on x's device.

    Images (N, C, H, W): shifts of up to ``pad`` pixels in each direction and a mirror along W with
    probability 1/2 (the standard CIFAR-10 augmentation). Signals (N, C, L): the same along L only; a
    "flip" reverses time there, so pass ``flip=False`` where direction carries meaning (MNIST-1D).
    Random draws come from ``generator`` (on its own device) or torch's default generator.
    """
    if x.dim() not in (3, 4):
        raise ValueError(
            f"augment expects (N, C, L) signals or (N, C, H, W) images, got shape {tuple(x.shape)}"
        )
    pad = check_count(pad, "pad", minimum=0)
    n = x.shape[0]
    gen_device = generator.device if generator is not None else x.device
    dy = None if x.dim() == 3 else torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=gen_device)
    if flip:
        flips = torch.randint(0, 2, (n,), generator=generator, device=gen_device).bool()
    else:
        flips = torch.zeros(n, dtype=torch.bool, device=gen_device)
    return _gather_crops(x, dy, dx, flips, pad)
