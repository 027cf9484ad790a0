"""The small nets are what the CPU demos train: they must learn 8x8 digits in a few fast epochs."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.models import create_model

datasets = pytest.importorskip("sklearn.datasets")


# (model, epochs, lr, least held-out accuracy); chance is 0.1. digits_resnet20 is the studies' base (its 2
# epochs give about 0.9).
@pytest.mark.parametrize(("name", "epochs", "lr", "least"), [
    ("digits_cnn", 4, 0.05, 0.95), ("digits_mlp", 4, 0.05, 0.95), ("digits_resnet20", 2, 0.1, 0.8),
])
def test_learns_digits_in_a_few_epochs(name: str, epochs: int, lr: float, least: float) -> None:
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
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=5e-4)
    for _ in range(epochs):
        model.train()
        for batch in train[torch.randperm(len(train), generator=g)].split(64):
            loss = F.cross_entropy(model(x[batch]), y[batch])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc >= least
