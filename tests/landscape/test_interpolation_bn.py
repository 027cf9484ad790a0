"""Interpolation between models moves the BN running statistics too: the point at a model's coordinates
is that model (its own eval-mode loss and accuracy), on both evaluation paths, in the surface file."""

from __future__ import annotations

import copy
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from effrep_hpc.landscape import evaluate as E
from effrep_hpc.landscape.directions import (
    parameter_weights,
    plane_directions,
    random_direction,
    running_stats,
    target_direction,
)
from effrep_hpc.landscape.evaluate import EvalData, bn_statistics, evaluate_points, subset
from effrep_hpc.store.directions import load_directions, save_directions
from effrep_hpc.store.surface import SurfaceSpec, SurfaceWriter

from landscape_helpers import image_data, make_cnn

BATCH = 16
ROOT = Path(__file__).resolve().parents[2]


def trained_elsewhere(seed: int, scale: float) -> nn.Module:
    """A TinyCNN whose running statistics come from inputs of another scale (so they differ clearly)."""
    model = make_cnn(seed).train()
    with torch.no_grad():
        for _ in range(5):
            model(torch.randn(16, 1, 8, 8) * scale)
    return model.eval()


def own_values(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """A model's mean cross-entropy and accuracy (%): one plain eval-mode forward, nothing of ours."""
    with torch.no_grad():
        logits = copy.deepcopy(model).eval()(x)
    loss = torch.nn.functional.cross_entropy(logits.double(), y).item()
    return loss, 100.0 * (logits.argmax(1) == y).double().mean().item()


def model_at(m1: nn.Module, dirs: list[dict[str, torch.Tensor]], coeffs: list[float]) -> nn.Module:
    """A copy of m1 whose whole state (parameters and running statistics) is moved in float64, then cast."""
    m = copy.deepcopy(m1)
    state = m.state_dict()
    with torch.no_grad():
        for name, t in state.items():
            if any(name in d for d in dirs):
                moved = t.double() + sum(c * d[name].double() for d, c in zip(dirs, coeffs) if name in d)
                t.copy_(moved.to(t.dtype))
    return m


def forbid_single_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the single path fail, so a batched evaluation cannot silently fall back to it."""
    def boom(*_a: object, **_k: object) -> None:
        raise AssertionError("the single path ran")

    monkeypatch.setattr(E, "_run_single", boom)


def evaluate(model: nn.Module, dx, dy, coords, data: EvalData, k: int, **kw) -> dict[str, np.ndarray]:
    return evaluate_points(
        model, parameter_weights(model), dx, dy, coords, data, batch_size=BATCH, points_per_pass=k, **kw
    )


@pytest.mark.parametrize("k", [1, 3])
def test_target_interpolation_ends_at_both_models(k, monkeypatch):
    if k > 1:
        forbid_single_path(monkeypatch)
    m1, m2 = make_cnn(0), trained_elsewhere(1, 4.0)
    raw = image_data()
    d = target_direction(m1, m2, buffers=True)
    assert {"bn1.running_mean", "bn2.running_var"} <= set(d) and not any("num_batches" in n for n in d)
    out = evaluate(m1, d, None, np.array([0.0, 1.0, 0.5]), EvalData(*raw), k)
    for i, model in ((0, m1), (1, m2), (2, model_at(m1, [d], [0.5]))):
        for split, x, y in (("train", raw[0], raw[1]), ("test", raw[2], raw[3])):
            loss, acc = own_values(model, x, y)
            assert out[f"{split}_loss"][i] == pytest.approx(loss, rel=1e-6), (i, split)
            assert out[f"{split}_acc"][i] == pytest.approx(acc, abs=1e-9), (i, split)
    # the weights and statistics at x = 1 are exactly the target's: bitwise its own value at its centre
    zero = {n: torch.zeros_like(p) for n, p in m2.named_parameters()}
    centre = evaluate(m2, zero, None, np.array([0.0]), EvalData(*raw), k, point_ids=[1])  # x = 1's slot
    assert all(centre[key][0] == out[key][1] for key in out)
    # without the statistics (the behaviour before), x = 1 is not the target model
    params_only = evaluate(m1, target_direction(m1, m2), None, np.array([1.0]), EvalData(*raw), k)
    assert params_only["train_loss"][0] != pytest.approx(own_values(m2, raw[0], raw[1])[0], rel=1e-3)


@pytest.mark.parametrize("orthogonalize", [False, True])
@pytest.mark.parametrize("k", [1, 4])
def test_plane_holds_each_model_at_its_coordinates(orthogonalize, k, monkeypatch):
    if k > 1:
        forbid_single_path(monkeypatch)
    models = [make_cnn(0), trained_elsewhere(1, 4.0), trained_elsewhere(2, 0.5)]
    raw = image_data()
    x, y, coords = plane_directions(*models, orthogonalize=orthogonalize, buffers=True)
    out = evaluate(models[0], x, y, coords, EvalData(*raw), k)
    for i, model in enumerate(models):
        loss, acc = own_values(model, raw[0], raw[1])
        assert out["train_loss"][i] == pytest.approx(loss, rel=1e-6), (i, coords[i])
        assert out["train_acc"][i] == pytest.approx(acc, abs=1e-9), i
    # the statistics of the third model sit where its weights do (float64 check of the direction itself)
    b1, b3 = running_stats(models[0]), running_stats(models[2])
    a, b = coords[2]
    for name in b1:
        moved = b1[name].double() + a * x[name].double() + b * y[name].double()
        torch.testing.assert_close(moved, b3[name].double(), rtol=1e-5, atol=1e-6)


def test_batched_and_single_paths_agree_and_extrapolation_without_a_variance_is_nan(monkeypatch):
    m1, m2 = make_cnn(0), make_cnn(3)
    raw = image_data()
    x, y, _ = plane_directions(m1, m2, make_cnn(4), buffers=True)
    grid = np.stack(np.meshgrid(np.linspace(-3, 3, 7), np.linspace(-3, 3, 5)), -1).reshape(-1, 2)
    single = evaluate(m1, x, y, grid, EvalData(*raw), 1)
    with monkeypatch.context() as mp:
        forbid_single_path(mp)
        batched = evaluate(m1, x, y, grid, EvalData(*raw), 4)
    # undefined where some interpolated running variance is negative (decided here in float64)
    b1 = running_stats(m1)
    negative = np.array([
        any(bool((b1[n].double() + a * x[n].double() + b * y[n].double() < 0).any()) for n in b1 if "var" in n)
        for a, b in grid
    ])
    assert 0 < negative.sum() < len(grid)
    for key in single:
        np.testing.assert_allclose(batched[key], single[key], rtol=1e-6, err_msg=key)
        np.testing.assert_array_equal(np.isnan(single[key]), negative, err_msg=key)
    ok = np.flatnonzero(~negative)
    for p in ok[:: max(1, len(ok) // 4)]:
        loss, acc = own_values(model_at(m1, [x, y], list(grid[p])), raw[0], raw[1])
        assert single["train_loss"][p] == pytest.approx(loss, rel=1e-5), grid[p]
        assert single["train_acc"][p] == pytest.approx(acc, abs=1e-9), grid[p]


@pytest.mark.parametrize("bn", ["recompute", "train"])
@pytest.mark.parametrize("k", [1, 3])
def test_recompute_and_train_do_not_use_moved_statistics(bn, k):
    m1, m2 = make_cnn(0), make_cnn(1)
    data = EvalData(*image_data())
    coords = np.array([0.0, 0.4, 1.0, 1.7])
    with_stats = evaluate(m1, target_direction(m1, m2, buffers=True), None, coords, data, k, bn=bn, bn_batches=2)
    params_only = evaluate(m1, target_direction(m1, m2), None, coords, data, k, bn=bn, bn_batches=2)
    for key in with_stats:
        np.testing.assert_array_equal(with_stats[key], params_only[key], err_msg=key)
    assert np.isfinite(with_stats["train_loss"]).all()


def test_the_model_is_left_as_it_was(cnn):
    before = {n: t.clone() for n, t in cnn.state_dict().items()}
    d = target_direction(cnn, make_cnn(1), buffers=True)
    for k in (1, 3):
        evaluate(cnn, d, None, np.array([0.5, 2.0]), EvalData(*image_data()), k)
    for n, t in cnn.state_dict().items():
        assert torch.equal(t, before[n]), n


def test_bn_statistics_names_what_a_scan_uses(cnn, mlp):
    moved = target_direction(cnn, make_cnn(1), buffers=True)
    rand = random_direction(cnn, seed=1)
    assert bn_statistics(cnn, "eval", [moved, None]) == "interpolated"
    assert bn_statistics(cnn, "eval", [rand, rand]) == "centre model"
    assert bn_statistics(cnn, "recompute", [moved, None]) == "recomputed"
    assert bn_statistics(cnn, "train", [moved, None]) == "batch"
    assert bn_statistics(mlp, "eval", [random_direction(mlp, seed=1), None]) == "none"


def test_a_direction_with_statistics_of_another_shape_is_refused(cnn):
    d = target_direction(cnn, make_cnn(1), buffers=True)
    d["bn1.running_var"] = torch.ones(5)
    with pytest.raises(ValueError, match=r"bn1.running_var.*\(5,\)"):
        evaluate(cnn, d, None, np.array([0.5]), EvalData(*image_data()), 1)


def test_direction_files_keep_the_statistics(tmp_path, cnn):
    d = target_direction(cnn, make_cnn(1), buffers=True)
    save_directions(tmp_path / "d.h5", d)
    state = cnn.state_dict(keep_vars=True)
    lx, ly = load_directions(tmp_path / "d.h5", state, [n for n, _ in cnn.named_parameters()])
    assert ly is None and list(lx) == list(d) and all(torch.equal(lx[n], d[n]) for n in d)


def surface_spec(stats: str) -> SurfaceSpec:
    return SurfaceSpec(x=np.linspace(0, 1, 3), y=None, metrics=["train_loss"], model_hash="m", directions_hash="d",
                       attrs={"bn_statistics": stats})


def test_a_surface_with_other_bn_statistics_is_not_resumed(tmp_path):
    path = tmp_path / "s.h5"
    with SurfaceWriter(path, surface_spec("centre model")):
        pass
    with pytest.raises(ValueError, match="BN statistics: file centre model, requested interpolated"):
        SurfaceWriter(path, surface_spec("interpolated"))
    # a file of an older version does not say; it never interpolated
    with h5py.File(path, "r+") as f:
        del f.attrs["bn_statistics"]
    with pytest.raises(ValueError, match="BN statistics"):
        SurfaceWriter(path, surface_spec("interpolated"))
    with SurfaceWriter(path, surface_spec("centre model")) as w:
        assert w.resumed


def digits_checkpoints(tmp_path: Path, cfg, x: torch.Tensor) -> list[Path]:
    """Three digits-CNN checkpoints whose weights and BN statistics differ (no training needed)."""
    from effrep_hpc.config import to_yaml
    from effrep_hpc.models import create_model
    from effrep_hpc.store.checkpoint import model_payload, save_checkpoint

    paths = []
    for seed, scale in ((0, 1.0), (1, 3.0), (2, 0.3)):
        torch.manual_seed(seed)
        model = create_model("digits_cnn", num_classes=10).train()
        with torch.no_grad():
            for _ in range(3):
                model(x[:64] * scale)
        paths.append(save_checkpoint(tmp_path / f"m{seed}.pt", model_payload("model", model.eval(), to_yaml(cfg))))
    return paths


@pytest.mark.parametrize("kind", ["target", "plane"])
def test_runner_scan_puts_the_checkpoints_at_their_coordinates(tmp_path, kind):
    from effrep_hpc.config import load_config
    from effrep_hpc.data import load_dataset
    from effrep_hpc.runners.common import load_model
    from effrep_hpc.runners.landscape import run_landscape
    from effrep_hpc.store.surface import read_surface

    config = ROOT / "configs/demo/digits.yaml"
    common = [f"run.out={tmp_path}", "run.progress=false", "run.threads=1", "landscape.train_size=128",
              "landscape.test=false", "landscape.batch_size=64", f"landscape.surface={tmp_path}/s.h5"]
    cfg = load_config(config, common)
    ds = load_dataset("digits")
    x, y = subset(ds.x_train, ds.y_train, 128, cfg.data.seed)
    paths = digits_checkpoints(tmp_path, cfg, x)
    if kind == "target":
        grid = ["landscape.x=0:1:2", "landscape.y=null", f"landscape.target={paths[1]}"]
        where = {paths[0]: (0,), paths[1]: (1,)}
    else:
        grid = ["landscape.x=0:1:2", "landscape.y=0:1:2", f"landscape.plane=[{paths[1]},{paths[2]}]"]
        where = {paths[0]: (0, 0), paths[1]: (0, 1), paths[2]: (1, 0)}  # [j, i]: (x, y) = (0,0), (1,0), (0,1)
    surface = run_landscape(load_config(config, [*common, *grid, f"landscape.checkpoint={paths[0]}"]))
    data = read_surface(surface)
    assert data["attrs"]["bn_statistics"] == "interpolated"
    with h5py.File(surface) as f:
        assert "features.0.bn.running_mean" in f["directions/x"]
    for path, index in where.items():
        loss, acc = own_values(load_model(path, cfg, torch.device("cpu")), x, y)
        assert data["train_loss"][index] == pytest.approx(loss, rel=1e-6), path.name
        assert data["train_acc"][index] == pytest.approx(acc, abs=1e-9), path.name


@pytest.mark.slow
def test_cli_interpolation_reproduces_both_checkpoints(tmp_path):
    """Train the digits CNN one epoch, interpolate from its initial weights to it, reuse the file's directions."""
    from effrep_hpc.config import load_config
    from effrep_hpc.data import load_dataset
    from effrep_hpc.runners.common import load_model
    from effrep_hpc.runners.landscape import run_landscape
    from effrep_hpc.runners.train import run_train
    from effrep_hpc.store.surface import read_surface

    config = ROOT / "configs/demo/digits.yaml"
    common = [f"run.out={tmp_path}", "run.progress=false", "run.threads=1"]
    run_train(load_config(config, [*common, "train.epochs=1", "train.milestones=[1]"]))
    start, end = tmp_path / "weights/epoch_0000.pt", tmp_path / "checkpoint.pt"
    scan = [*common, f"landscape.checkpoint={start}", "landscape.y=null", "landscape.x=-0.5:1.5:5", "landscape.test=false",
            "landscape.train_size=300"]
    surface = run_landscape(load_config(config, [*scan, f"landscape.target={end}", f"landscape.surface={tmp_path}/t.h5"]))
    data = read_surface(surface)
    assert data["attrs"]["bn_statistics"] == "interpolated"
    with h5py.File(surface) as f:
        assert "features.0.bn.running_var" in f["directions/x"]
    cfg = load_config(config, common)
    ds = load_dataset("digits")
    x, y = subset(ds.x_train, ds.y_train, 300, cfg.data.seed)
    for i, ckpt in ((1, start), (3, end)):
        loss, acc = own_values(load_model(ckpt, cfg, torch.device("cpu")), x, y)
        assert data["train_loss"][i] == pytest.approx(loss, rel=1e-6), ckpt
        assert data["train_acc"][i] == pytest.approx(acc, abs=1e-9), ckpt
    # the surface's own directions reproduce the scan
    again = run_landscape(load_config(config, [*scan, f"landscape.directions={surface}", f"landscape.surface={tmp_path}/r.h5"]))
    np.testing.assert_array_equal(read_surface(again)["train_loss"], data["train_loss"])
