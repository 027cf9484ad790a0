"""Directions: normalizations, seeds, target and plane directions, hashes, setting weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from effrep_hpc.landscape.directions import (
    NORMALIZATIONS,
    direction_hash,
    flatten_directions,
    normalize_direction,
    parameter_weights,
    plane_directions,
    point_weights,
    random_direction,
    same_direction,
    set_weights,
    target_direction,
    unflatten_directions,
    weights_hash,
)

from landscape_helpers import make_cnn, make_mlp


def filter_norms(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).double().norm(dim=1)


def test_direction_has_one_tensor_per_parameter_in_order_and_no_buffers(cnn):
    d = random_direction(cnn, seed=0)
    assert list(d) == [n for n, _ in cnn.named_parameters()]
    assert all(d[n].shape == p.shape and d[n].dtype == p.dtype for n, p in cnn.named_parameters())
    assert not any("running" in n or "num_batches" in n for n in d)


def test_filter_normalization_matches_every_weight_filter(cnn):
    d = random_direction(cnn, seed=3, normalization="filter")
    w = parameter_weights(cnn)
    checked = 0
    for name, t in d.items():
        if t.dim() >= 2:
            assert torch.allclose(filter_norms(t), filter_norms(w[name]), rtol=1e-5), name
            checked += 1
        else:
            assert torch.count_nonzero(t) == 0, f"{name} should be zero when biases are ignored"
    assert checked == 3  # two convs and one linear


def test_filter_normalization_keeps_the_direction_of_each_filter(cnn):
    raw = random_direction(cnn, seed=3, normalization="none", bias="include")
    d = random_direction(cnn, seed=3, normalization="filter")
    t, r = d["conv2.weight"].reshape(6, -1).double(), raw["conv2.weight"].reshape(6, -1).double()
    cos = (t * r).sum(1) / (t.norm(dim=1) * r.norm(dim=1))
    assert torch.allclose(cos, torch.ones(6, dtype=torch.float64), atol=1e-6)


def test_layer_normalization_matches_every_weight_tensor(cnn):
    d = random_direction(cnn, seed=4, normalization="layer")
    w = parameter_weights(cnn)
    for name, t in d.items():
        if t.dim() >= 2:
            assert t.double().norm().item() == pytest.approx(w[name].double().norm().item(), rel=1e-5)
            assert not torch.allclose(filter_norms(t), filter_norms(w[name]), rtol=1e-3)
        else:
            assert torch.count_nonzero(t) == 0


def test_weight_normalization_scales_elementwise(cnn):
    raw = random_direction(cnn, seed=5, normalization="none", bias="include")
    d = random_direction(cnn, seed=5, normalization="weight", bias="include")
    for name, p in cnn.named_parameters():
        assert torch.allclose(d[name], raw[name] * p.detach(), rtol=1e-6, atol=1e-7), name


@pytest.mark.parametrize("normalization,per_filter", [("dfilter", True), ("dlayer", False)])
def test_unit_normalizations(cnn, normalization, per_filter):
    d = random_direction(cnn, seed=6, normalization=normalization)
    for name, t in d.items():
        if t.dim() < 2:
            continue
        norms = filter_norms(t) if per_filter else t.double().norm().reshape(1)
        assert torch.allclose(norms, torch.ones_like(norms), rtol=1e-5), name


def test_included_biases_are_scaled_like_one_filter(cnn):
    w = parameter_weights(cnn)
    d = random_direction(cnn, seed=7, normalization="filter", bias="include")
    for name, t in d.items():
        if t.dim() == 1:
            assert t.double().norm().item() == pytest.approx(w[name].double().norm().item(), rel=1e-5), name
    unit = random_direction(cnn, seed=7, normalization="dfilter", bias="include")
    assert unit["bn1.weight"].double().norm().item() == pytest.approx(1.0, rel=1e-5)


def test_bias_mode_does_not_change_the_weight_tensors(cnn):
    ignore = random_direction(cnn, seed=8, bias="ignore")
    include = random_direction(cnn, seed=8, bias="include")
    assert torch.equal(ignore["conv2.weight"], include["conv2.weight"])
    assert torch.count_nonzero(include["conv1.bias"]) > 0


def test_zero_weight_filter_gives_zero_direction_filter_not_nan(cnn):
    with torch.no_grad():
        cnn.conv1.weight[2].zero_()
    d = random_direction(cnn, seed=1)
    assert torch.isfinite(d["conv1.weight"]).all()
    assert torch.count_nonzero(d["conv1.weight"][2]) == 0


def test_same_seed_same_direction_different_seed_differs():
    a = random_direction(make_cnn(), seed=11)
    b = random_direction(make_cnn(), seed=11)
    c = random_direction(make_cnn(), seed=12)
    assert direction_hash(a) == direction_hash(b)
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert not torch.allclose(a["conv2.weight"], c["conv2.weight"])


def test_random_direction_leaves_the_global_generator_alone(cnn):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_direction(cnn, seed=1)
    assert torch.equal(torch.rand(3), expected)


def test_unknown_normalization_names_the_valid_ones(cnn):
    with pytest.raises(ValueError) as err:
        random_direction(cnn, seed=0, normalization="filtre")
    msg = str(err.value)
    assert "filtre" in msg and all(n in msg for n in NORMALIZATIONS)
    assert "'filter'" in msg.split("valid")[0]  # suggested as the close name
    with pytest.raises(ValueError, match="ignore"):
        random_direction(cnn, seed=0, bias="biasbn")


def test_same_direction_is_an_independent_copy(cnn):
    x = random_direction(cnn, seed=1)
    y = same_direction(x)
    assert all(torch.equal(x[n], y[n]) for n in x)
    y["fc.weight"].add_(1.0)
    assert not torch.equal(x["fc.weight"], y["fc.weight"])


def test_target_direction_moves_model1_onto_model2():
    m1, m2 = make_cnn(0), make_cnn(1)
    d = target_direction(m1, m2)
    w = point_weights(parameter_weights(m1), [d], [1.0])
    for name, p in m2.named_parameters():
        assert torch.allclose(w[name], p.detach(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("orthogonalize", [False, True])
def test_plane_through_three_models_puts_them_at_the_returned_coordinates(orthogonalize):
    models = [make_mlp(s) for s in (0, 1, 2)]
    x, y, coords = plane_directions(*models, orthogonalize=orthogonalize)
    assert coords.shape == (3, 2)
    w1 = parameter_weights(models[0])
    for model, (a, b) in zip(models, coords):
        w = point_weights(w1, [x, y], [a, b])
        for name, p in model.named_parameters():
            assert torch.allclose(w[name], p.detach(), rtol=1e-5, atol=1e-6), (name, a, b)
    if orthogonalize:
        fx, fy = flatten_directions(x).double(), flatten_directions(y).double()
        assert abs(float(fx @ fy)) < 1e-6 * float(fx @ fx)
        assert fy.norm().item() == pytest.approx(fx.norm().item(), rel=1e-5)
    else:
        np.testing.assert_array_equal(coords, [[0, 0], [1, 0], [0, 1]])


def test_plane_through_collinear_models_is_an_error():
    m1, m2 = make_mlp(0), make_mlp(1)
    w1 = parameter_weights(m1)
    half = point_weights(w1, [target_direction(m1, m2)], [0.5])
    with pytest.raises(ValueError, match="collinear"):
        plane_directions(m1, m2, half, orthogonalize=True)


def test_set_weights_always_starts_from_w0(cnn):
    w0 = parameter_weights(cnn)
    dx, dy = random_direction(cnn, seed=1), random_direction(cnn, seed=2)
    set_weights(cnn, w0, [dx, dy], [0.3, -0.7])
    once = parameter_weights(cnn)
    set_weights(cnn, w0, [dx, dy], [0.3, -0.7])
    twice = parameter_weights(cnn)
    expected = point_weights(w0, [dx, dy], [0.3, -0.7])
    for name in w0:
        assert torch.equal(once[name], twice[name])
        assert torch.equal(once[name], expected[name])
        assert torch.allclose(once[name], w0[name] + 0.3 * dx[name] - 0.7 * dy[name], rtol=1e-6, atol=1e-7)
    set_weights(cnn, w0, [dx, dy], [0.0, 0.0])
    assert all(torch.equal(p, w0[n]) for n, p in cnn.named_parameters())


def test_normalize_rejects_a_direction_of_another_model(cnn, mlp):
    with pytest.raises(ValueError, match="conv1.weight"):
        normalize_direction(random_direction(mlp, seed=0), cnn)


def test_parameter_weights_from_a_checkpoint_checks_names(cnn):
    state = {k: v.clone() for k, v in cnn.state_dict().items()}
    w = parameter_weights(cnn, state)
    assert list(w) == [n for n, _ in cnn.named_parameters()]
    del state["bn2.bias"]
    with pytest.raises(ValueError, match="bn2.bias"):
        parameter_weights(cnn, state)


def test_flatten_unflatten_roundtrip(cnn):
    d = random_direction(cnn, seed=2, bias="include")
    flat = flatten_directions(d)
    assert flat.numel() == sum(p.numel() for p in cnn.parameters())
    back = unflatten_directions(flat, d)
    assert list(back) == list(d) and all(torch.equal(back[n], d[n]) for n in d)
    with pytest.raises(ValueError, match="elements"):
        unflatten_directions(flat[:-1], d)


def test_direction_hash_sees_names_values_and_which_direction(cnn):
    x, y = random_direction(cnn, seed=1), random_direction(cnn, seed=2)
    h = direction_hash([x, y])
    assert len(h) == 64 and h == direction_hash([same_direction(x), same_direction(y)])
    assert h != direction_hash([y, x])
    assert direction_hash([x, None]) == direction_hash(x)
    changed = same_direction(x)
    changed["fc.weight"][0, 0] += 1e-6
    assert direction_hash(changed) != direction_hash(x)
    renamed = {("head." + k if k == "fc.bias" else k): v for k, v in x.items()}
    assert direction_hash(renamed) != direction_hash(x)


def test_weights_hash_of_a_module_covers_bn_statistics(cnn):
    before = weights_hash(cnn)
    assert before == weights_hash(cnn.state_dict())
    params_only = weights_hash(parameter_weights(cnn))
    with torch.no_grad():
        cnn.bn1.running_mean.add_(0.1)
    assert weights_hash(cnn) != before
    assert weights_hash(parameter_weights(cnn)) == params_only


def test_direction_hash_sees_shapes():
    a = {"w": torch.arange(6.0).reshape(2, 3)}
    b = {"w": torch.arange(6.0).reshape(3, 2)}
    assert direction_hash(a) != direction_hash(b)
