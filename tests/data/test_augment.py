"""Random crop with zero padding and horizontal flip, per sample, vectorised."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.data import augment, crop_flip


def _reference(x: torch.Tensor, dy, dx, flip, pad: int) -> torch.Tensor:
    """Per-sample loop written the obvious way, to check the vectorised gather against."""
    h, w = x.shape[-2:]
    out = []
    for i in range(len(x)):
        p = F.pad(x[i], (pad, pad, pad, pad))
        crop = p[:, int(dy[i]) : int(dy[i]) + h, int(dx[i]) : int(dx[i]) + w]
        out.append(torch.flip(crop, dims=[-1]) if flip[i] else crop)
    return torch.stack(out)


def _candidates(sample: torch.Tensor, pad: int) -> torch.Tensor:
    """Every crop/flip augment may produce from one (C, H, W) sample."""
    k = 2 * pad + 1
    dy, dx, fl = torch.meshgrid(torch.arange(k), torch.arange(k), torch.tensor([0, 1]), indexing="ij")
    dy, dx, fl = dy.flatten(), dx.flatten(), fl.flatten().bool()
    return crop_flip(sample.expand(len(dy), *sample.shape), dy, dx, fl, pad=pad)


def test_no_pad_no_flip_is_identity():
    x = torch.randn(7, 3, 5, 6)
    assert torch.equal(augment(x, pad=0, flip=False), x)
    sig = torch.randn(7, 1, 40)
    assert torch.equal(augment(sig, pad=0, flip=False), sig)


def test_centred_crop_with_flip_is_torch_flip():
    x = torch.randn(4, 3, 6, 5)
    n = len(x)
    centre = torch.full((n,), 2)
    assert torch.equal(crop_flip(x, centre, centre, torch.ones(n, dtype=torch.bool), pad=2), torch.flip(x, dims=[-1]))
    assert torch.equal(crop_flip(x, centre, centre, torch.zeros(n, dtype=torch.bool), pad=2), x)


def test_crop_flip_matches_per_sample_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 2, 7, 9, generator=g)
    dy = torch.randint(0, 7, (32,), generator=g)
    dx = torch.randint(0, 7, (32,), generator=g)
    fl = torch.randint(0, 2, (32,), generator=g).bool()
    assert torch.equal(crop_flip(x, dy, dx, fl, pad=3), _reference(x, dy, dx, fl, pad=3))


def test_shift_moves_content_and_fills_zeros():
    x = torch.arange(1, 17, dtype=torch.float32).view(1, 1, 4, 4)
    # dx = pad + 1: the window starts one column right of the original, so column 0 shows column 1.
    out = crop_flip(x, torch.tensor([1]), torch.tensor([2]), torch.tensor([False]), pad=1)
    assert torch.equal(out[0, 0, :, :3], x[0, 0, :, 1:])
    assert torch.equal(out[0, 0, :, 3], torch.zeros(4))


def test_every_output_is_a_crop_flip_of_its_own_input_and_all_occur():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(400, 2, 4, 5, generator=g)
    out = augment(x, pad=1, flip=True, generator=torch.Generator().manual_seed(2))
    assert out.shape == x.shape and out.dtype == x.dtype
    which = []
    for i in range(len(x)):
        hits = (_candidates(x[i], 1) == out[i]).flatten(1).all(1).nonzero().flatten()
        assert len(hits) == 1, f"sample {i} is not a crop/flip of its input"
        which.append(int(hits))
    assert set(which) == set(range(18)), "some offset/flip combination never drawn"


def test_flip_probability_is_one_half():
    x = torch.arange(2.0).view(1, 1, 1, 2).expand(4000, 1, 1, 2)
    out = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(3))
    flipped = (out[:, 0, 0, 0] == 1).float().mean().item()
    assert 0.46 < flipped < 0.54


def test_generator_makes_it_reproducible():
    x = torch.randn(16, 3, 8, 8)
    a = augment(x, generator=torch.Generator().manual_seed(5))
    b = augment(x, generator=torch.Generator().manual_seed(5))
    c = augment(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_signals_are_cropped_along_length_only():
    g = torch.Generator().manual_seed(7)
    x = torch.randn(300, 2, 10, generator=g)
    out = augment(x, pad=2, flip=False, generator=g)
    assert out.shape == x.shape
    shifts = []
    for i in range(len(x)):
        padded = F.pad(x[i], (2, 2))
        found = [d for d in range(5) if torch.equal(padded[:, d : d + 10], out[i])]
        assert found, f"signal {i} is not a shifted copy of its input"
        shifts.append(found[0])
    assert set(shifts) == set(range(5))
    flipped = augment(x, pad=0, flip=True, generator=torch.Generator().manual_seed(8))
    reversed_ = (flipped == torch.flip(x, dims=[-1])).flatten(1).all(1)
    kept = (flipped == x).flatten(1).all(1)
    assert (reversed_ | kept).all() and reversed_.any() and kept.any()


def test_integer_images_keep_dtype():
    x = torch.randint(0, 256, (5, 3, 6, 6), dtype=torch.uint8)
    out = augment(x, pad=2, generator=torch.Generator().manual_seed(0))
    assert out.dtype == torch.uint8 and out.shape == x.shape


@pytest.mark.parametrize("shape", [(4, 8), (2, 1, 3, 4, 5)])
def test_wrong_rank_is_an_error(shape):
    with pytest.raises(ValueError, match="augment expects"):
        augment(torch.zeros(shape))


def test_bad_pad_and_offsets_are_errors():
    x = torch.zeros(2, 1, 4, 4)
    with pytest.raises(ValueError, match="pad"):
        augment(x, pad=-1)
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        crop_flip(x, torch.tensor([0, 3]), torch.tensor([0, 0]), torch.tensor([False, False]), pad=1)
    with pytest.raises(ValueError, match="dy must be None"):
        crop_flip(torch.zeros(2, 1, 4), torch.tensor([0, 0]), torch.tensor([0, 0]), torch.tensor([False, False]), pad=1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_tensor_device_and_matches_cpu():
    x = torch.randn(64, 3, 32, 32)
    g_cpu = torch.Generator().manual_seed(0)
    dy, dx = torch.randint(0, 9, (64,), generator=g_cpu), torch.randint(0, 9, (64,), generator=g_cpu)
    fl = torch.randint(0, 2, (64,), generator=g_cpu).bool()
    on_gpu = crop_flip(x.cuda(), dy.cuda(), dx.cuda(), fl.cuda(), pad=4)
    assert on_gpu.is_cuda and torch.equal(on_gpu.cpu(), crop_flip(x, dy, dx, fl, pad=4))
    out = augment(x.cuda(), generator=torch.Generator(device="cuda").manual_seed(0))
    assert out.is_cuda and out.shape == x.shape
    out = augment(x.cuda(), generator=torch.Generator().manual_seed(0))  # CPU generator also works
    assert out.is_cuda
