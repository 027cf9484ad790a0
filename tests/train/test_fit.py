"""The one training loop: metric rows, exact continuation from saved states, probes, DDP reduction hook."""

from __future__ import annotations

import copy

import pytest
import torch

from effrep_hpc.data import load_dataset
from effrep_hpc.models import create_model
from effrep_hpc.quant.algorithms import QuantizedOptimizer
from effrep_hpc.train.fit import ROW_FIELDS, accuracy, augmenter, fit_epochs
from effrep_hpc.train.optim import build_optimizer, build_scheduler


@pytest.fixture(scope="module")
def data():  # noqa: ANN201 - a Dataset
    return load_dataset("digits", train_size=256, test_size=128)


def setup(seed: int = 0):  # noqa: ANN201 - (model, optimizer, scheduler)
    torch.manual_seed(seed)
    model = create_model("digits_mlp", widths=[16, 16])
    opt = build_optimizer(model.parameters(), "sgd", lr=0.1, momentum=0.9)
    return model, opt, build_scheduler(opt, "multistep", epochs=4, milestones=[2], gamma=0.1)


def test_rows_hold_every_metric_and_the_lr_of_their_epoch(data) -> None:  # noqa: ANN001
    model, opt, sched = setup()
    seen: list[tuple[int, dict]] = []
    last = fit_epochs(model, opt, sched, data, epochs=3, batch_size=32, generator=torch.Generator().manual_seed(0),
                      on_epoch=lambda e, row: seen.append((e, dict(row))))
    assert [e for e, _ in seen] == [0, 1, 2] and last == seen[-1][1]
    assert all(list(row) == list(ROW_FIELDS) for _, row in seen)
    assert [row["epoch"] for _, row in seen] == [1, 2, 3]
    assert [row["lr"] for _, row in seen] == pytest.approx([0.1, 0.1, 0.01]), "the lr an epoch trained with, before the step"
    acc, loss = accuracy(model, data.x_test, data.y_test)
    assert last["test_acc"] == pytest.approx(acc) and last["test_loss"] == pytest.approx(loss)
    assert last["train_acc"] > 50 and 0 <= last["test_acc"] <= 100


def test_continuing_from_saved_states_is_bitwise_the_uninterrupted_run(data) -> None:  # noqa: ANN001
    def run(model, opt, sched, gen, **kw):  # noqa: ANN001, ANN003, ANN202 - augmented, drawing from the data-order generator
        augment = augmenter(True, gen, data.device, 0)
        return fit_epochs(model, opt, sched, data, batch_size=32, generator=gen, augment=augment, **kw)

    model, opt, sched = setup()
    run(model, opt, sched, torch.Generator().manual_seed(1), epochs=4)

    model2, opt2, sched2 = setup()
    gen2 = torch.Generator().manual_seed(1)
    run(model2, opt2, sched2, gen2, epochs=2)
    saved = copy.deepcopy((model2.state_dict(), opt2.state_dict(), sched2.state_dict(), gen2.get_state(), torch.get_rng_state()))
    model3, opt3, sched3 = setup(seed=5)  # another initialisation, overwritten by the saved state
    gen3 = torch.Generator()
    model3.load_state_dict(saved[0])
    opt3.load_state_dict(saved[1])
    sched3.load_state_dict(saved[2])
    gen3.set_state(saved[3])
    torch.set_rng_state(saved[4])
    rows: list[int] = []
    run(model3, opt3, sched3, gen3, epochs=4, start_epoch=2, on_epoch=lambda e, r: rows.append(e))
    assert rows == [2, 3]
    for key, value in model.state_dict().items():
        assert torch.equal(value, model3.state_dict()[key]), key


def test_quantized_optimizer_plugs_in_and_a_probe_adds_its_numbers(data) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    model = create_model("digits_mlp", widths=[16, 16])
    opt = QuantizedOptimizer(model, "bc", lr=0.05, bits=1)
    sched = build_scheduler(opt, "constant", epochs=2)

    def changed():  # noqa: ANN202
        before = opt.snapshot()
        return lambda: {"changed": opt.changed_fraction(before)}

    row = fit_epochs(model, opt, sched, data, epochs=2, batch_size=32, generator=torch.Generator().manual_seed(0), probe=changed)
    assert row is not None and 0 < row["changed"] <= 1 and list(row)[-1] == "seconds"
    for name, delta in opt.layer_grids().items():
        w = dict(model.named_parameters())[name].detach()
        assert torch.all(torch.abs(torch.abs(w) - delta / 2) < 1e-6), "binary weights stay on +-Delta/2"


def test_reduce_sees_the_count_vector_and_its_result_makes_the_row(data) -> None:  # noqa: ANN001
    model, opt, sched = setup()
    calls: list[torch.Tensor] = []

    def doubled(sums: torch.Tensor) -> torch.Tensor:  # two identical processes, as an all-reduce would sum them
        calls.append(sums.clone())
        return sums * 2

    row = fit_epochs(model, opt, sched, data, epochs=1, batch_size=64, generator=torch.Generator().manual_seed(0), reduce=doubled)
    assert len(calls) == 1 and calls[0].dtype == torch.float64 and calls[0].shape == (6,)
    tl, tc, tn, el, ec, en = calls[0].tolist()
    assert tn == 256 and en == 128
    assert row is not None and row["train_loss"] == pytest.approx(tl / tn) and row["test_acc"] == pytest.approx(100 * ec / en)


def test_nothing_left_returns_none_and_a_start_past_the_end_is_an_error(data) -> None:  # noqa: ANN001
    model, opt, sched = setup()
    gen = torch.Generator()
    assert fit_epochs(model, opt, sched, data, epochs=2, start_epoch=2, batch_size=32, generator=gen) is None
    with pytest.raises(ValueError, match="start_epoch 3 is outside 0..2"):
        fit_epochs(model, opt, sched, data, epochs=2, start_epoch=3, batch_size=32, generator=gen)
