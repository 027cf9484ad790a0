"""The small nets are what the CPU demos train: they must learn 8x8 digits in a few fast epochs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.models import create_model

datasets = pytest.importorskip("sklearn.datasets")


@pytest.mark.parametrize("name", ["digits_cnn", "digits_mlp"])
def test_learns_digits_in_four_epochs(name: str) -> None:
    digits = datasets.load_digits()  # ships with scikit-learn: no download
    x = torch.tensor(digits.data, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
    y = torch.tensor(digits.target)
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(x), generator=g)
    train, test = order[:1437], order[1437:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    torch.manual_seed(0)
    model = create_model(name)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    for _ in range(4):
        model.train()
        for batch in train[torch.randperm(len(train), generator=g)].split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc >= 0.95
