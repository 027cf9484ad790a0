"""Evaluation of grid points: values against a plain-torch reference, both paths, BN policies,
model left unchanged, bitwise reproducibility across tiles, automatic fallbacks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from effrep_hpc.landscape.directions import parameter_weights, point_weights, random_direction
from effrep_hpc.landscape.evaluate import EvalData, evaluate_points, plan_points_per_pass, subset
from effrep_hpc.landscape.grid import grid_points, make_axis, make_tiles

from landscape_helpers import image_data, make_cnn, make_mlp, reference_eval, vector_data

BATCH = 16


def setup(model: nn.Module, data: tuple, seed: int = 0):
    w0 = parameter_weights(model)
    dx = random_direction(model, seed=seed + 1)
    dy = random_direction(model, seed=seed + 2)
    return w0, dx, dy, EvalData(*data)


def snapshot(model: nn.Module) -> dict:
    return {
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "modes": [m.training for m in model.modules()],
        "momenta": [getattr(m, "momentum", None) for m in model.modules()],
    }


def assert_unchanged(model: nn.Module, before: dict) -> None:
    after = snapshot(model)
    for k, v in before["state"].items():
        assert torch.equal(after["state"][k], v), f"{k} changed"
    assert after["modes"] == before["modes"]
    assert after["momenta"] == before["momenta"]


@pytest.mark.parametrize("bn", ["eval", "recompute", "train"])
@pytest.mark.parametrize("points_per_pass", [1, 3])
def test_grid_value_equals_direct_evaluation_cnn(bn, points_per_pass):
    model = make_cnn()
    raw = image_data()
    w0, dx, dy, data = setup(model, raw)
    _, coords = grid_points(make_axis(-1, 1, 4), make_axis(-0.5, 0.5, 3))
    # the batched (vmap) path really runs for every BN policy
    assert plan_points_per_pass(model, data, bn=bn, points_per_pass=points_per_pass) == points_per_pass
    before = snapshot(model)
    out = evaluate_points(
        model, w0, dx, dy, coords, data, bn=bn, batch_size=BATCH, points_per_pass=points_per_pass, bn_batches=2
    )
    assert_unchanged(model, before)
    assert set(out) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    rng = np.random.default_rng(points_per_pass)
    for p in rng.choice(len(coords), size=2, replace=False):
        a, b = coords[p]
        w = {n: w0[n] + a * dx[n] + b * dy[n] for n in w0}
        for split, x, y in (("train", raw[0], raw[1]), ("test", raw[2], raw[3])):
            loss, acc = reference_eval(model, w, x, y, bn=bn, batch_size=BATCH, bn_x=raw[0], bn_batches=2)
            assert out[f"{split}_loss"][p] == pytest.approx(loss, rel=1e-5), (split, a, b)
            assert out[f"{split}_acc"][p] == pytest.approx(acc, abs=1e-9)


@pytest.mark.parametrize("loss", ["ce", "mse"])
@pytest.mark.parametrize("points_per_pass", [1, 4])
def test_grid_value_equals_direct_evaluation_mlp_1d(loss, points_per_pass):
    model = make_mlp()
    raw = vector_data()
    w0, dx, _, _ = setup(model, raw)
    data = EvalData(raw[0], raw[1])
    coords = make_axis(-2, 2, 7)[:, None]
    out = evaluate_points(
        model, w0, dx, None, coords, data, loss=loss, batch_size=BATCH, points_per_pass=points_per_pass
    )
    assert set(out) == {"train_loss", "train_acc"} and out["train_loss"].shape == (7,)
    for p in (0, 3, 5):
        a = coords[p, 0]
        ref_loss, ref_acc = reference_eval(model, {n: w0[n] + a * dx[n] for n in w0}, raw[0], raw[1], loss=loss)
        assert out["train_loss"][p] == pytest.approx(ref_loss, rel=1e-5)
        assert out["train_acc"][p] == pytest.approx(ref_acc, abs=1e-9)


def test_centre_point_is_the_model_itself(cnn):
    raw = image_data()
    w0, dx, dy, data = setup(cnn, raw)
    out = evaluate_points(cnn, w0, dx, dy, np.zeros((1, 2)), data, batch_size=BATCH, points_per_pass=1)
    with torch.no_grad():
        logits = cnn(raw[0])
    expected = torch.nn.functional.cross_entropy(logits, raw[1]).item()
    assert out["train_loss"][0] == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("bn", ["eval", "recompute", "train"])
def test_tiles_and_resume_reproduce_an_uninterrupted_scan_bitwise(bn):
    model = make_cnn()
    w0, dx, dy, data = setup(model, image_data(n_train=37, n_test=10))
    _, coords = grid_points(make_axis(-1, 1, 5), make_axis(-1, 1, 4))
    kw = dict(bn=bn, batch_size=BATCH, points_per_pass=3, bn_batches=2)
    full = evaluate_points(model, w0, dx, dy, coords, data, **kw)
    # A resumed scan: some points done, the rest pending, evaluated in tiles of another size.
    pending = np.flatnonzero(np.random.default_rng(0).random(len(coords)) < 0.6)
    for tile_size in (1, 2, 5):
        resumed = {k: np.full(len(coords), np.nan) for k in full}
        for tile in make_tiles(pending, tile_size):
            values = evaluate_points(model, w0, dx, dy, coords[tile], data, point_ids=tile, **kw)
            for k in values:
                resumed[k][tile] = values[k]
        for k in full:
            np.testing.assert_array_equal(resumed[k][pending], full[k][pending], err_msg=f"{k}, tile {tile_size}")


def test_a_point_does_not_depend_on_the_points_sharing_its_pass(cnn):
    w0, dx, dy, data = setup(cnn, image_data())
    point = np.array([[0.3, -0.2]])
    others = np.random.default_rng(1).uniform(-1, 1, size=(7, 2))
    alone = evaluate_points(cnn, w0, dx, dy, point, data, batch_size=BATCH, points_per_pass=4, point_ids=[10])
    mixed = evaluate_points(
        cnn, w0, dx, dy, np.concatenate([others[:3], point, others[3:]]), data,
        batch_size=BATCH, points_per_pass=4, point_ids=[20, 21, 23, 10, 8, 9, 11, 5],
    )
    for k in alone:
        assert mixed[k][3] == alone[k][0], k


def test_batched_and_single_paths_agree(mlp):
    w0, dx, dy, data = setup(mlp, vector_data())
    _, coords = grid_points(make_axis(-1, 1, 6), make_axis(-1, 1, 5))
    single = evaluate_points(mlp, w0, dx, dy, coords, data, batch_size=BATCH, points_per_pass=1)
    batched = evaluate_points(mlp, w0, dx, dy, coords, data, batch_size=BATCH, points_per_pass=8)
    for k in single:
        np.testing.assert_allclose(batched[k], single[k], rtol=1e-5)


class NotVmappable(nn.Module):
    """A model whose forward reads a value on the host, which vmap cannot batch."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = 1.0 if self.fc.weight.abs().max().item() < 1e6 else 0.5
        return self.fc(x) * scale


def test_model_that_cannot_be_vmapped_falls_back_to_single_points():
    torch.manual_seed(0)
    model = NotVmappable()
    raw = vector_data()
    w0, dx, dy, data = setup(model, raw)
    assert plan_points_per_pass(model, data, points_per_pass=8) == 1
    coords = np.array([[0.5, -0.25], [0.0, 1.0]])
    out = evaluate_points(model, w0, dx, dy, coords, data, batch_size=BATCH, points_per_pass=8)
    for p, (a, b) in enumerate(coords):
        ref, _ = reference_eval(model, {n: w0[n] + a * dx[n] + b * dy[n] for n in w0}, raw[0], raw[1])
        assert out["train_loss"][p] == pytest.approx(ref, rel=1e-5)


class OomOnce(nn.Module):
    """Raises an out-of-memory error on its first full-size batch, like a GPU running out mid-scan."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(10, 3)
        self.failures_left = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] > 2 and self.failures_left:
            self.failures_left -= 1
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return self.fc(x)


def test_out_of_memory_halves_points_per_pass_and_still_gives_every_point():
    torch.manual_seed(0)
    model = OomOnce()
    raw = vector_data()
    w0, dx, dy, data = setup(model, raw)
    _, coords = grid_points(make_axis(-1, 1, 3), make_axis(-1, 1, 3))
    out = evaluate_points(model, w0, dx, dy, coords, data, batch_size=BATCH, points_per_pass=4)
    assert model.failures_left == 0  # the error did happen
    for p in (0, 4, 8):
        a, b = coords[p]
        ref, _ = reference_eval(model, {n: w0[n] + a * dx[n] + b * dy[n] for n in w0}, raw[0], raw[1])
        assert out["train_loss"][p] == pytest.approx(ref, rel=1e-5)


def test_a_real_error_is_raised_not_hidden(mlp):
    w0, dx, dy, _ = setup(mlp, vector_data())
    wrong = EvalData(torch.randn(8, 7), torch.zeros(8, dtype=torch.int64))
    with pytest.raises(RuntimeError):
        evaluate_points(mlp, w0, dx, dy, np.zeros((2, 2)), wrong, points_per_pass=4)


def test_auto_batches_points_for_a_tiny_model_and_not_for_a_large_batch(mlp, cnn):
    assert plan_points_per_pass(mlp, EvalData(*vector_data()[:2]), batch_size=32) >= 2
    big = EvalData(torch.randn(4096, 1, 8, 8), torch.zeros(4096, dtype=torch.int64))
    assert plan_points_per_pass(cnn, big, batch_size=4096, memory_budget=2**20) == 1


def test_bn_recompute_differs_from_eval_and_uses_bn_batches(cnn):
    w0, dx, dy, data = setup(cnn, image_data())
    coords = np.array([[0.8, 0.4]])
    kw = dict(batch_size=BATCH, points_per_pass=1)
    ev = evaluate_points(cnn, w0, dx, dy, coords, data, bn="eval", **kw)["train_loss"][0]
    one = evaluate_points(cnn, w0, dx, dy, coords, data, bn="recompute", bn_batches=1, **kw)["train_loss"][0]
    two = evaluate_points(cnn, w0, dx, dy, coords, data, bn="recompute", bn_batches=2, **kw)["train_loss"][0]
    assert len({ev, one, two}) == 3


def test_bad_arguments_are_reported(mlp):
    w0, dx, dy, data = setup(mlp, vector_data())
    with pytest.raises(ValueError, match="recompute"):
        evaluate_points(mlp, w0, dx, dy, np.zeros((1, 2)), data, bn="recomp")
    with pytest.raises(ValueError, match="mse"):
        evaluate_points(mlp, w0, dx, dy, np.zeros((1, 2)), data, loss="l2")
    with pytest.raises(ValueError, match="y direction"):
        evaluate_points(mlp, w0, dx, None, np.zeros((1, 2)), data)
    with pytest.raises(ValueError, match="fc2.bias"):
        evaluate_points(mlp, w0, {k: v for k, v in dx.items() if k != "fc2.bias"}, dy, np.zeros((1, 2)), data)
    with pytest.raises(ValueError, match="points_per_pass"):
        evaluate_points(mlp, w0, dx, dy, np.zeros((1, 2)), data, points_per_pass=0)


def test_diverged_points_are_reported_as_computed(mlp):
    w0, dx, dy, data = setup(mlp, vector_data())
    out = evaluate_points(mlp, w0, dx, dy, np.array([[1e30, 0.0]]), data, points_per_pass=1)
    assert not np.isfinite(out["train_loss"][0])


def test_eval_data_and_subset_validation():
    x, y, _, _ = vector_data()
    with pytest.raises(ValueError, match="samples"):
        EvalData(x, y[:-1])
    with pytest.raises(ValueError, match="integer"):
        EvalData(x, y.float())
    with pytest.raises(ValueError, match="both"):
        EvalData(x, y, x_test=x)
    xs, ys = subset(x, y, 10, seed=3)
    xs2, _ = subset(x, y, 10, seed=3)
    xs3, _ = subset(x, y, 10, seed=4)
    assert xs.shape == (10, 10) and ys.shape == (10,)
    assert torch.equal(xs, xs2) and not torch.equal(xs, xs3)
    # every chosen row is a row of x with its own label
    for row, label in zip(xs, ys):
        match = (x == row).all(dim=1).nonzero()
        assert len(match) == 1 and y[match[0, 0]] == label
    with pytest.raises(ValueError, match="subset size"):
        subset(x, y, 31, seed=0)
    assert subset(x, y, None, seed=0)[0] is x


def test_point_weights_used_by_the_evaluation_are_from_w0(cnn):
    """Evaluating twice in a row gives identical values (nothing accumulates in the model)."""
    w0, dx, dy, data = setup(cnn, image_data())
    coords = np.array([[0.5, 0.5], [-0.5, 0.25]])
    first = evaluate_points(cnn, w0, dx, dy, coords, data, batch_size=BATCH, points_per_pass=1)
    second = evaluate_points(cnn, w0, dx, dy, coords, data, batch_size=BATCH, points_per_pass=1)
    for k in first:
        np.testing.assert_array_equal(first[k], second[k])
    w = point_weights(w0, [dx, dy], list(coords[1]))
    ref, _ = reference_eval(cnn, w, data.x_train, data.y_train, batch_size=BATCH)
    assert first["train_loss"][1] == pytest.approx(ref, rel=1e-5)


def test_batched_weights_are_bitwise_those_of_set_weights():
    """Internal invariant: the stacked (K, ...) parameters equal what set_weights builds for each point."""
    from effrep_hpc.landscape.directions import combine
    from effrep_hpc.landscape.evaluate import _stack

    g = torch.Generator().manual_seed(0)
    shapes = [(7,), (13, 5), (33, 17, 3, 3)]
    w0, dx, dy = ([torch.randn(s, generator=g) for s in shapes] for _ in range(3))
    coords = np.random.default_rng(0).uniform(-1, 1, (5, 2))
    stacked = _stack(w0, [dx, dy], torch.as_tensor(coords).float())
    for k in range(5):
        single = combine(w0, [dx, dy], [float(c) for c in coords[k]])
        assert all(torch.equal(s[k], t) for s, t in zip(stacked, single))
