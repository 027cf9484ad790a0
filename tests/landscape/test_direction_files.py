"""Direction files: our format round trip, the original scripts' format, stale files."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from effrep_hpc.landscape.directions import direction_hash, direction_layout, random_direction
from effrep_hpc.store.directions import direction_file_attrs, load_directions, save_directions

from landscape_helpers import TinyCNN, make_cnn, make_mlp


def test_roundtrip_with_attributes(tmp_path, cnn):
    x, y = random_direction(cnn, seed=1), random_direction(cnn, seed=2, normalization="layer")
    path = tmp_path / "dirs.h5"
    save_directions(path, x, y, attrs={"normalization": "filter", "xseed": 1, "yseed": 2, "source": None})
    lx, ly = load_directions(path, *direction_layout(cnn))
    assert list(lx) == list(x) and list(ly) == list(y)
    assert all(torch.equal(lx[n], x[n]) and torch.equal(ly[n], y[n]) for n in x)
    attrs = direction_file_attrs(path)
    assert attrs["normalization"] == "filter" and attrs["xseed"] == 1 and attrs["yseed"] == 2
    assert attrs["directions_hash"] == direction_hash([x, y]) == direction_hash([lx, ly])
    assert attrs["kind"] == "directions" and "source" not in attrs
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dirs.h5"]  # no temporary file left behind


def test_roundtrip_x_only_and_overwrite(tmp_path, mlp):
    path = tmp_path / "d.h5"
    save_directions(path, random_direction(mlp, seed=1), random_direction(mlp, seed=2))
    x = random_direction(mlp, seed=3)
    save_directions(path, x)
    lx, ly = load_directions(path, *direction_layout(mlp))
    assert ly is None and all(torch.equal(lx[n], x[n]) for n in x)


def test_save_rejects_mismatched_y_and_reserved_attrs(tmp_path, cnn, mlp):
    with pytest.raises(ValueError, match="same parameters"):
        save_directions(tmp_path / "a.h5", random_direction(cnn, seed=1), random_direction(mlp, seed=1))
    with pytest.raises(ValueError, match="directions_hash"):
        save_directions(tmp_path / "a.h5", random_direction(cnn, seed=1), attrs={"directions_hash": "x"})
    assert not any(tmp_path.iterdir())


def write_original(path, x_list, y_list=None):
    """The original scripts' layout: groups xdirection/ydirection with datasets '0'..'K-1'."""
    with h5py.File(path, "w") as f:
        for group_name, tensors in (("xdirection", x_list), ("ydirection", y_list)):
            if tensors is None:
                continue
            g = f.create_group(group_name)
            for i, t in enumerate(tensors):
                g.create_dataset(str(i), data=t.numpy())


def test_original_per_parameter_format_is_imported(tmp_path, cnn):
    x, y = random_direction(cnn, seed=4), random_direction(cnn, seed=5)
    path = tmp_path / "orig.h5"
    write_original(path, list(x.values()), list(y.values()))
    lx, ly = load_directions(path, *direction_layout(cnn))
    assert list(lx) == [n for n, _ in cnn.named_parameters()]
    assert all(torch.equal(lx[n], x[n]) and torch.equal(ly[n], y[n]) for n in x)


def test_original_states_format_with_zero_buffers_is_imported(tmp_path, cnn):
    x = random_direction(cnn, seed=4)
    entries = [x[k] if k in x else torch.zeros_like(v) for k, v in cnn.state_dict().items()]
    path = tmp_path / "states.h5"
    write_original(path, entries)
    lx, ly = load_directions(path, *direction_layout(cnn))
    assert ly is None and list(lx) == list(x) and all(torch.equal(lx[n], x[n]) for n in x)
    # a direction that moves BN running statistics cannot be reproduced here
    moving = [v + 1 if "running_mean" in k else v for k, v in zip(cnn.state_dict(), entries)]
    write_original(path, moving)
    with pytest.raises(ValueError, match="bn1.running_mean"):
        load_directions(path, *direction_layout(cnn))


def test_original_format_with_wrong_count_says_what_differs(tmp_path, cnn):
    tensors = list(random_direction(cnn, seed=4).values())[:-1]
    path = tmp_path / "orig.h5"
    write_original(path, tensors)
    with pytest.raises(ValueError, match=r"holds 9 tensors.*10 parameters"):
        load_directions(path, *direction_layout(cnn))


def test_original_format_with_wrong_shape_names_the_parameter(tmp_path, cnn):
    tensors = list(random_direction(cnn, seed=4).values())
    tensors[4] = torch.zeros(5, 4, 3, 3)  # conv2.weight
    path = tmp_path / "orig.h5"
    write_original(path, tensors)
    with pytest.raises(ValueError, match=r"conv2.weight.*\(6, 4, 3, 3\)"):
        load_directions(path, *direction_layout(cnn))


class WiderCNN(TinyCNN):
    """The same parameter names as TinyCNN, but conv2 has 7 filters."""

    def __init__(self) -> None:
        super().__init__()
        self.conv2 = torch.nn.Conv2d(4, 7, 3, stride=2)
        self.bn2 = torch.nn.BatchNorm2d(7)
        self.fc = torch.nn.Linear(7 * 3 * 3, 3)


def test_stale_file_names_the_first_mismatching_parameter(tmp_path, cnn):
    path = tmp_path / "stale.h5"
    save_directions(path, random_direction(WiderCNN(), seed=1))
    with pytest.raises(ValueError, match=r"'conv2.weight'.*\(7, 4, 3, 3\).*\(6, 4, 3, 3\)"):
        load_directions(path, *direction_layout(cnn))
    save_directions(path, random_direction(make_mlp(), seed=1))
    with pytest.raises(ValueError, match="conv1.weight"):
        load_directions(path, *direction_layout(cnn))


def test_a_file_of_another_kind_is_rejected(tmp_path, cnn):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("train_loss", data=np.zeros(3))
    with pytest.raises(ValueError, match="not a direction file"):
        load_directions(path, *direction_layout(cnn))


def test_loaded_directions_take_the_model_dtype(tmp_path):
    model = make_cnn().double()
    path = tmp_path / "d.h5"
    save_directions(path, random_direction(make_cnn(), seed=1))
    lx, _ = load_directions(path, *direction_layout(model))
    assert all(t.dtype == torch.float64 for t in lx.values())
