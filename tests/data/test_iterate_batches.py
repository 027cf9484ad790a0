"""Mini-batches over in-memory tensors: every sample once per epoch, seeded shuffling."""

from __future__ import annotations

import pytest
import torch

from effrep_hpc.data import iterate_batches, num_batches


def _data(n: int = 23):
    y = torch.arange(n)
    x = (y.float() * 10).view(n, 1, 1).expand(n, 2, 3).contiguous()
    return x, y


@pytest.mark.parametrize("shuffle", [False, True])
def test_every_sample_once_and_rows_stay_paired(shuffle):
    x, y = _data()
    batches = list(iterate_batches(x, y, 5, shuffle=shuffle, generator=torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5, 3]
    ys = torch.cat([b[1] for b in batches])
    xs = torch.cat([b[0] for b in batches])
    assert sorted(ys.tolist()) == list(range(23))
    assert torch.equal(xs[:, 0, 0], ys.float() * 10)
    assert torch.equal(ys, y) != shuffle  # shuffled order differs from the original


def test_unshuffled_batches_are_views():
    x, y = _data()
    xb, _ = next(iterate_batches(x, y, 4, shuffle=False))
    assert xb.data_ptr() == x.data_ptr()


def test_drop_last_keeps_only_full_batches():
    x, y = _data()
    batches = list(iterate_batches(x, y, 5, shuffle=True, drop_last=True, generator=torch.Generator().manual_seed(0)))
    assert [len(b[1]) for b in batches] == [5, 5, 5, 5]
    assert len(set(torch.cat([b[1] for b in batches]).tolist())) == 20
    assert num_batches(23, 5, drop_last=True) == 4 and num_batches(23, 5) == 5 and num_batches(20, 5) == 4


def test_generator_controls_the_order():
    x, y = _data()

    def order(g):
        return torch.cat([yb for _, yb in iterate_batches(x, y, 7, shuffle=True, generator=g)])

    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    first = order(g1)
    assert torch.equal(first, order(g2))
    assert not torch.equal(first, order(g1)), "a second epoch should draw a new permutation"


def test_arguments_are_checked_before_iterating():
    x, y = _data()
    with pytest.raises(ValueError, match="same length"):
        iterate_batches(x, y[:-1], 4, shuffle=False)
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(x, y, 0, shuffle=False)


def test_batch_larger_than_data_and_empty_data():
    x, y = _data(3)
    assert [len(b[1]) for b in iterate_batches(x, y, 10, shuffle=True)] == [3]
    assert list(iterate_batches(x, y, 10, shuffle=True, drop_last=True)) == []
    assert list(iterate_batches(x[:0], y[:0], 4, shuffle=True)) == []
