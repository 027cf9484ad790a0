"""Tiny models, data and an independent reference evaluation for the landscape tests."""

from __future__ import annotations

import torch
from torch import nn


class TinyCNN(nn.Module):
    """Two conv+BN+ReLU blocks and a linear head on 1x8x8 inputs, three classes."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(4)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.bn2 = nn.BatchNorm2d(6)
        self.fc = nn.Linear(6 * 3 * 3, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn1(self.conv1(x)))
        x = torch.relu(self.bn2(self.conv2(x)))
        return self.fc(x.flatten(1))


class TinyMLP(nn.Module):
    """10 -> 8 -> 3 with a ReLU."""

    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(10, 8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x)))


def make_cnn(seed: int = 0) -> TinyCNN:
    """A TinyCNN whose BN running statistics are not the defaults (a few train-mode passes)."""
    torch.manual_seed(seed)
    model = TinyCNN()
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8) * 2 + 0.5)
    return model.eval()


def make_mlp(seed: int = 0) -> TinyMLP:
    torch.manual_seed(seed)
    return TinyMLP().eval()


def image_data(n_train: int = 40, n_test: int = 20, seed: int = 1) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n_train, 1, 8, 8, generator=g),
        torch.randint(0, 3, (n_train,), generator=g),
        torch.randn(n_test, 1, 8, 8, generator=g),
        torch.randint(0, 3, (n_test,), generator=g),
    )


def vector_data(n_train: int = 30, n_test: int = 12, seed: int = 2) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    return (
        torch.randn(n_train, 10, generator=g),
        torch.randint(0, 3, (n_train,), generator=g),
        torch.randn(n_test, 10, generator=g),
        torch.randint(0, 3, (n_test,), generator=g),
    )


def reference_eval(
    model: nn.Module,
    weights: dict[str, torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    loss: str = "ce",
    bn: str = "eval",
    batch_size: int = 16,
    bn_x: torch.Tensor | None = None,
    bn_batches: int | None = None,
) -> tuple[float, float]:
    """Mean loss and accuracy (%) of a copy of ``model`` carrying ``weights``, written with plain torch only."""
    import copy

    import torch.nn.functional as F

    m = copy.deepcopy(model)
    with torch.no_grad():
        for name, p in m.named_parameters():
            p.copy_(weights[name])
        m.eval()
        bns = [mod for mod in m.modules() if isinstance(mod, nn.modules.batchnorm._BatchNorm)]
        if bn == "recompute":
            for mod in bns:
                mod.reset_running_stats()
                mod.momentum = None
                mod.train()
            starts = list(range(0, len(bn_x), batch_size))
            if bn_batches is not None:
                starts = starts[:bn_batches]
            for s in starts:
                m(bn_x[s : s + batch_size])
            for mod in bns:
                mod.eval()
        if bn == "train":
            for mod in bns:
                mod.train()
        total, correct = 0.0, 0
        for s in range(0, len(x), batch_size):
            out = m(x[s : s + batch_size])
            yb = y[s : s + batch_size]
            if loss == "ce":
                total += F.cross_entropy(out, yb, reduction="sum").item()
            else:
                total += F.mse_loss(out, F.one_hot(yb, out.shape[1]).float(), reduction="sum").item() / out.shape[1]
            correct += int((out.argmax(1) == yb).sum())
    return total / len(x), 100.0 * correct / len(x)
