"""One loss convention for training and landscape evaluation (effrep_hpc.train.losses)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from effrep_hpc.landscape.evaluate import EvalData, evaluate_points
from effrep_hpc.models import create_model
from effrep_hpc.train.loop import evaluate, train_epoch
from effrep_hpc.train.losses import LOSSES, batch_loss, per_sample_loss


def _trained_digits_cnn() -> torch.nn.Module:
    """digits_cnn (conv + BN) whose BN running statistics moved away from their defaults."""
    torch.manual_seed(0)
    model = create_model("digits_cnn")
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(32, 1, 8, 8) * 1.5 + 0.3)
    return model.eval()


def _data(n: int = 70, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 1, 8, 8, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("points_per_pass", [1, 2])
def test_landscape_centre_equals_training_loop_loss(loss, points_per_pass):
    model = _trained_digits_cnn()
    x, y = _data()
    loss_sum, correct, n = evaluate(model, x, y, batch_size=32, loss=loss)
    w0 = {k: v.detach().clone() for k, v in model.named_parameters()}
    zero = {k: torch.zeros_like(v) for k, v in w0.items()}
    out = evaluate_points(
        model, w0, zero, zero, np.zeros((1, 2)), EvalData(x, y),
        loss=loss, bn="eval", batch_size=32, points_per_pass=points_per_pass,
    )
    assert n == len(y)
    assert out["train_loss"][0] == pytest.approx(loss_sum / n, rel=1e-6)
    assert out["train_acc"][0] == pytest.approx(100.0 * correct / n, abs=1e-9)


def test_mse_is_the_mean_over_all_elements_against_one_hot():
    model = _trained_digits_cnn()
    x, y = _data()
    with torch.no_grad():
        logits = model(x)
    one_hot = F.one_hot(y, 10).float()
    expected = F.mse_loss(logits, one_hot).item()  # nn.MSELoss(): mean over N*C, the research code's scale
    loss_sum, _, n = evaluate(model, x, y, batch_size=32, loss="mse")
    assert loss_sum / n == pytest.approx(expected, rel=1e-6)
    assert batch_loss(logits, y, "mse").item() == pytest.approx(expected, rel=1e-6)
    hand = ((logits.double() - one_hot.double()) ** 2).sum().item() / logits.numel()
    assert per_sample_loss(logits, y, "mse").double().mean().item() == pytest.approx(hand, rel=1e-6)


def test_ce_per_sample_equals_torch_cross_entropy():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(50, 7, generator=g) * 4
    y = torch.randint(0, 7, (50,), generator=g)
    torch.testing.assert_close(per_sample_loss(logits, y, "ce"), F.cross_entropy(logits, y, reduction="none"))
    assert batch_loss(logits, y, "ce").item() == pytest.approx(per_sample_loss(logits, y, "ce").mean().item(), rel=1e-6)


def test_training_reports_the_loss_it_differentiates():
    """With lr=0 and no BN, an epoch's reported loss is the evaluation loss of the same weights."""
    torch.manual_seed(1)
    model = create_model("digits_mlp", norm=False)
    x, y = _data(n=40)
    for loss in LOSSES:
        opt = torch.optim.SGD(model.parameters(), lr=0.0)
        loss_sum, _, n = train_epoch(
            model, opt, x, y, batch_size=16, generator=torch.Generator().manual_seed(0), loss=loss,
        )
        eval_sum, _, _ = evaluate(model, x, y, batch_size=16, loss=loss)
        assert loss_sum / n == pytest.approx(eval_sum / n, rel=1e-5), loss


def test_unknown_loss_names_the_valid_ones():
    logits, y = torch.zeros(2, 3), torch.tensor([0, 1])
    for fn in (per_sample_loss, batch_loss):
        with pytest.raises(ValueError, match="did you mean 'mse'.*valid: ce, mse"):
            fn(logits, y, "mae")
    with pytest.raises(ValueError, match="valid: ce, mse"):
        evaluate(torch.nn.Flatten(), logits, y, loss="l1")
