"""Trajectory PCA and projection: the plane of a known path, sklearn/numpy agreement, least squares, refusals."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch
from scipy.linalg import subspace_angles
from sklearn.decomposition import PCA

from effrep_hpc.landscape.directions import direction_layout, random_direction
from effrep_hpc.landscape.trajectory import (
    LazySnapshots,
    covered_parameters,
    pca_directions,
    project_path,
    project_weights,
    scan_range,
)
from effrep_hpc.models import create_model
from effrep_hpc.store.directions import load_directions, read_pca_extras

# A small "model": two weights of 2+ dims and a bias (uncovered with bias="ignore").
SHAPES = {"conv.weight": (8, 4, 3, 3), "conv.bias": (8,), "fc.weight": (10, 72)}
METHODS = [("svd", 2**30), ("gram", 2**30), ("gram", 20_000)]  # the last: several parameter blocks


def reference_weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(s, generator=g) for k, s in SHAPES.items()}


def flat(weights, names):
    return np.concatenate([weights[n].detach().double().numpy().ravel() for n in names])


def unflat(vector, ref, names):
    out, at = {}, 0
    for n, t in ref.items():
        if n in names:
            out[n] = torch.from_numpy(vector[at : at + t.numel()].reshape(t.shape)).float()
            at += t.numel()
        else:
            out[n] = torch.zeros_like(t)
    return out


def planar_path(n=25, noise=0.0, seed=1):
    """Snapshots w_ref + a(t) e1 + b(t) e2 (+ noise) on a curve ending at w_ref; biases wander off the plane."""
    ref = reference_weights()
    names = covered_parameters(ref)
    p = sum(ref[n].numel() for n in names)
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.standard_normal((p, 2)))[0] * [3.0, 1.0]  # columns span the plane, not orthonormal
    t = np.linspace(0.0, 1.0, n)
    ab = np.stack([(1 - t) ** 2 * np.cos(3 * t), (1 - t) * np.sin(4 * t)], axis=1)
    snaps = []
    for i in range(n):
        move = basis @ ab[i] + (noise * rng.standard_normal(p) if i < n - 1 else 0.0)
        d = unflat(move, ref, names)
        d["conv.bias"] = torch.from_numpy(rng.standard_normal(8)).float() * (i < n - 1)
        snaps.append({k: ref[k] + d[k] if i < n - 1 else ref[k].clone() for k in ref})
    return ref, snaps, basis, names


def direction_matrix(result, names):
    return np.stack([flat(d, names) for d in result.directions], axis=1)


@pytest.mark.parametrize("method,max_bytes", METHODS)
@pytest.mark.parametrize("center", [True, False])
def test_plane_of_a_planar_path_is_recovered(method, max_bytes, center):
    ref, snaps, basis, names = planar_path()
    res = pca_directions(snaps, ref, bias="ignore", center=center, method=method, max_bytes=max_bytes)
    assert res.method == method and (res.passes > 1) == (max_bytes < 2**30)
    angles = subspace_angles(direction_matrix(res, names), basis)
    assert angles.max() < 1e-4
    assert res.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-9)
    for d in res.directions:  # unit norm, zeros on the uncovered bias
        assert list(d) == list(ref) and torch.count_nonzero(d["conv.bias"]) == 0
        assert float(sum((d[n].double() ** 2).sum() for n in names)) == pytest.approx(1.0, abs=1e-6)
    assert abs(float(sum((res.directions[0][n].double() * res.directions[1][n].double()).sum() for n in names))) < 1e-6


@pytest.mark.parametrize("method,max_bytes", METHODS)
def test_noisy_path_matches_sklearn_pca_on_the_same_matrix(method, max_bytes):
    ref, snaps, basis, names = planar_path(noise=3e-4)
    res = pca_directions(snaps, ref, k=3, method=method, max_bytes=max_bytes)
    assert res.explained_variance_ratio[:2].sum() > 0.999
    x = np.stack([flat(s, names) - flat(ref, names) for s in snaps])
    sk = PCA(n_components=3, svd_solver="full").fit(x)
    np.testing.assert_allclose(res.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-9)
    np.testing.assert_allclose(res.singular_values, sk.singular_values_, rtol=1e-9)
    np.testing.assert_allclose(res.explained_variance, sk.explained_variance_, rtol=1e-9)
    dirs = direction_matrix(res, names)
    np.testing.assert_allclose(np.abs(np.sum(dirs * sk.components_.T, axis=0)), 1.0, atol=1e-6)  # same up to sign
    np.testing.assert_allclose(res.coordinates, x @ dirs, rtol=1e-5, atol=1e-6 * np.abs(x @ dirs).max())
    assert np.all(res.coordinates[0] > 0)  # the path starts in the positive quadrant


def test_uncentred_pca_matches_numpy_svd_of_the_differences():
    ref, snaps, _, names = planar_path(noise=1e-3, seed=3)
    x = np.stack([flat(s, names) - flat(ref, names) for s in snaps])
    s = np.linalg.svd(x, compute_uv=False)
    for method, max_bytes in METHODS:
        res = pca_directions(snaps, ref, k=2, center=False, method=method, max_bytes=max_bytes)
        np.testing.assert_allclose(res.singular_values, s[:2], rtol=1e-9)
        np.testing.assert_allclose(res.explained_variance_ratio, s[:2] ** 2 / (x**2).sum(), rtol=1e-9)


def test_gram_path_equals_svd_path():
    ref, snaps, _, names = planar_path(noise=1e-2, seed=5)
    svd = pca_directions(snaps, ref, k=3, method="svd")
    for max_bytes in (2**30, 20_000):
        gram = pca_directions(snaps, ref, k=3, method="gram", max_bytes=max_bytes)
        p = sum(ref[n].numel() for n in names)
        assert gram.passes == (1 if max_bytes == 2**30 else -(-p // (max_bytes // (8 * len(snaps)))) + 1)
        np.testing.assert_allclose(gram.explained_variance_ratio, svd.explained_variance_ratio, rtol=1e-10)
        np.testing.assert_allclose(gram.singular_values, svd.singular_values, rtol=1e-10)
        np.testing.assert_allclose(gram.coordinates, svd.coordinates, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(direction_matrix(gram, names), direction_matrix(svd, names), atol=1e-6)
    assert pca_directions(snaps, ref, k=3).method == "svd"  # small: auto takes the SVD
    assert pca_directions(snaps, ref, k=3, max_bytes=100_000).method == "gram"


def test_final_snapshot_projects_to_the_origin():
    ref, snaps, _, _ = planar_path(noise=1e-2)
    res = pca_directions(snaps, ref)
    coords, residuals = project_path(snaps, ref, res.directions)
    assert np.all(coords[-1] == 0.0) and residuals[-1] == 0.0
    assert np.all(coords[:-1].any(axis=1))
    np.testing.assert_allclose(coords, res.coordinates, rtol=1e-5, atol=1e-6 * np.abs(coords).max())


@pytest.mark.parametrize("bias", ["ignore", "include"])
def test_projection_is_the_least_squares_solution(bias):
    ref = reference_weights()
    names = covered_parameters(ref, bias)
    # filter-normalized directions: neither orthogonal nor of unit norm
    dx, dy = random_direction(ref, seed=1, bias=bias), random_direction(ref, seed=2, bias=bias)
    dy = {k: v + 0.5 * dx[k] for k, v in dy.items()}
    w = {k: v + 0.3 * dx[k] - 0.7 * dy[k] + 0.05 * torch.randn_like(v) for k, v in ref.items()}
    coords, residual = project_weights(w, ref, [dx, dy], bias=bias)
    a = np.stack([flat(dx, names), flat(dy, names)], axis=1)
    b = flat(w, names) - flat(ref, names)
    expected = np.linalg.lstsq(a, b, rcond=None)[0]
    np.testing.assert_allclose(coords, expected, rtol=1e-10)
    assert residual == pytest.approx(np.linalg.norm(b - a @ expected), rel=1e-10)
    assert coords[0] == pytest.approx(0.3, abs=0.05) and coords[1] == pytest.approx(-0.7, abs=0.05)


def test_another_architecture_is_refused():
    ref, snaps, _, _ = planar_path()
    wider = dict(snaps[3], **{"fc.weight": torch.zeros(10, 80)})
    with pytest.raises(ValueError, match=r"snapshot 3 tensor 'fc.weight' has shape \(10, 80\), expected \(10, 72\).*another architecture"):
        pca_directions(snaps[:3] + [wider] + snaps[4:], ref)
    extra = dict(snaps[1], **{"fc2.weight": torch.zeros(3, 10)})
    with pytest.raises(ValueError, match="snapshot 1 has a tensor 'fc2.weight'"):
        pca_directions([snaps[0], extra, snaps[2]], ref)
    missing = {k: v for k, v in snaps[0].items() if k != "conv.bias"}  # uncovered, but still part of the model
    with pytest.raises(ValueError, match="snapshot 0 has no tensor for parameter 'conv.bias'"):
        project_path([missing], ref, pca_directions(snaps, ref).directions)
    resnet20, resnet32 = create_model("resnet20"), create_model("resnet32")
    with pytest.raises(ValueError, match="snapshot 1 has a tensor 'layer1.3.conv1.conv.weight'.*another architecture"):
        pca_directions([resnet20.state_dict(), resnet32.state_dict(), resnet20.state_dict()], resnet20)


def test_bad_requests_are_refused_with_a_clear_message():
    ref, snaps, _, _ = planar_path(n=4)
    with pytest.raises(ValueError, match="k .* must be an integer >= 1, got 0"):
        pca_directions(snaps, ref, k=0)
    with pytest.raises(ValueError, match="4 direction.* need at least 5 snapshots, got 4"):
        pca_directions(snaps, ref, k=4)
    with pytest.raises(ValueError, match="unknown PCA method 'sdv'.*did you mean 'svd'"):
        pca_directions(snaps, ref, method="sdv")
    with pytest.raises(ValueError, match="sequence of state dicts .*LazySnapshots.*got generator"):
        pca_directions((s for s in snaps), ref)
    with pytest.raises(ValueError, match="method='svd' holds the 4 x 1008 difference matrix"):
        pca_directions(snaps, ref, method="svd", max_bytes=1000)
    line = [{k: ref[k] + (i * v if k != "conv.bias" else 0) for k, v in reference_weights(9).items()} for i in range(4)]
    with pytest.raises(ValueError, match="span 1 dimension.* fewer than the 2 direction"):
        pca_directions(line, ref)
    with pytest.raises(ValueError, match="linearly dependent"):
        project_path(snaps, ref, [pca_directions(snaps, ref).directions[0]] * 2)


def test_lazy_snapshots_stream_and_give_the_same_result():
    ref, snaps, _, _ = planar_path(noise=1e-3)
    loads = []
    lazy = LazySnapshots(lambda i: (loads.append(i), snaps[i])[1], len(snaps))
    assert len(lazy) == len(snaps) and lazy[-1] is snaps[-1] and [s is t for s, t in zip(lazy[1:3], snaps[1:3])] == [True] * 2
    with pytest.raises(IndexError):
        lazy[len(snaps)]
    loads.clear()
    res = pca_directions(lazy, ref, method="gram", max_bytes=20_000)
    assert len(loads) == res.passes * len(snaps) and loads[: len(snaps)] == list(range(len(snaps)))
    expected = pca_directions(snaps, ref, method="gram", max_bytes=20_000)
    np.testing.assert_array_equal(res.coordinates, expected.coordinates)


def test_half_precision_snapshots_are_the_weights_given():
    ref, snaps, _, names = planar_path(noise=1e-2)
    half = [{k: v.half() for k, v in s.items()} for s in snaps]
    res = pca_directions(half, {k: v.half() for k, v in ref.items()})
    widened = pca_directions([{k: v.double() for k, v in s.items()} for s in half], {k: v.half().double() for k, v in ref.items()})
    assert all(d[n].dtype == torch.float32 for d in res.directions for n in d)  # at least float32
    np.testing.assert_allclose(res.explained_variance_ratio, widened.explained_variance_ratio, rtol=1e-12)


def short_training(model, steps=12, seed=0):
    """State dicts (buffers included) of a few SGD steps on random digits, the last being the model's own."""
    g = torch.Generator().manual_seed(seed)
    x, y = torch.randn(64, 1, 8, 8, generator=g), torch.randint(0, 10, (64,), generator=g)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    snaps = []
    model.train()
    for _ in range(steps):
        snaps.append({k: v.clone() for k, v in model.state_dict().items()})
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    snaps.append({k: v.clone() for k, v in model.state_dict().items()})
    return snaps


def test_real_model_state_dicts_digits_cnn():
    torch.manual_seed(0)
    model = create_model("digits_cnn")
    snaps = short_training(model)
    res = pca_directions(snaps, model)  # the model is the reference: its buffers are skipped
    names = covered_parameters(model)
    params = dict(model.named_parameters())
    assert list(res.directions[0]) == list(params) and len(names) < len(params)
    x = np.stack([flat(s, names) - flat(params, names) for s in snaps])
    sk = PCA(n_components=2, svd_solver="full").fit(x)
    np.testing.assert_allclose(res.explained_variance_ratio, sk.explained_variance_ratio_, rtol=1e-8)
    coords, residuals = project_path(snaps, model, res.directions)
    assert np.all(coords[-1] == 0.0) and residuals[-1] == 0.0
    np.testing.assert_allclose(coords, res.coordinates, rtol=1e-4, atol=1e-6 * np.abs(coords).max())
    # residual^2 + |coords|^2 = |w - w_ref|^2 (orthonormal directions)
    np.testing.assert_allclose(residuals**2 + (coords**2).sum(1), (x**2).sum(1), rtol=1e-5)
    with pytest.raises(ValueError, match="has a tensor '.*running_mean'.*give the model itself as the reference"):
        pca_directions(snaps, {k: p.detach() for k, p in model.named_parameters()})


def test_pruned_model_snapshots():
    torch.manual_seed(1)
    pruned = create_model("digits_cnn", widths=[16, 40, 24])
    snaps = short_training(pruned, steps=6)
    res = pca_directions(snaps, pruned, k=3)
    assert res.directions[0]["features.0.conv.weight"].shape == (16, 1, 3, 3)
    assert np.all(project_path(snaps[-1:], pruned, res.directions)[0] == 0.0)
    full = create_model("digits_cnn").state_dict()
    with pytest.raises(ValueError, match="snapshot 2 tensor 'features.0.conv.weight' has shape \\(32, 1, 3, 3\\), expected \\(16, 1, 3, 3\\)"):
        pca_directions(snaps[:2] + [full] + snaps[2:], pruned)


def test_original_code_pca_file_is_imported(tmp_path):
    torch.manual_seed(2)
    model = create_model("digits_cnn")
    snaps = short_training(model, steps=8)
    res = pca_directions(snaps, model)
    path = tmp_path / "PCA_weights_ignore=biasbn_save_epoch=1" / "directions.h5"
    path.parent.mkdir()
    with h5py.File(path, "w") as f:  # what the original projection.setup_PCA_directions writes
        for group, d in (("xdirection", res.directions[0]), ("ydirection", res.directions[1])):
            g = f.create_group(group)
            for i, (name, _) in enumerate(model.named_parameters()):  # net.parameters() order
                g.create_dataset(str(i), data=d[name].numpy())
        f["explained_variance_ratio_"] = res.explained_variance_ratio
        f["singular_values_"] = res.singular_values
        f["explained_variance_"] = res.explained_variance
    x, y = load_directions(path, *direction_layout(model))
    assert y is not None and all(torch.equal(x[n], res.directions[0][n]) and torch.equal(y[n], res.directions[1][n]) for n in x)
    extras = read_pca_extras(path)
    np.testing.assert_array_equal(extras["explained_variance_ratio_"], res.explained_variance_ratio)
    np.testing.assert_array_equal(extras["singular_values_"], res.singular_values)
    np.testing.assert_array_equal(extras["explained_variance_"], res.explained_variance)
    np.testing.assert_array_equal(project_path(snaps, model, [x, y])[0], project_path(snaps, model, res.directions)[0])
    with h5py.File(tmp_path / "random.h5", "w") as f:
        f.create_group("xdirection").create_dataset("0", data=np.zeros(3))
    assert read_pca_extras(tmp_path / "random.h5") == {}


def test_scan_range_covers_the_path_and_the_origin():
    coords = np.array([[3.0, -1.0], [2.0, 0.5], [1.0, 2.0], [0.5, 1.0]])
    (xlo, xhi), (ylo, yhi) = scan_range(coords, margin=0.1)
    assert (xlo, xhi) == pytest.approx((0.0 - 0.3, 3.0 + 0.3)) and (ylo, yhi) == pytest.approx((-1.3, 2.3))
    assert scan_range(np.zeros((3, 2)), margin=0.5) == ((-0.5, 0.5), (-0.5, 0.5))
    with pytest.raises(ValueError, match="margin"):
        scan_range(coords, margin=-1)
