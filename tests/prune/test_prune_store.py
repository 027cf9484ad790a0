"""Sensitivity files: preallocated cells, done mask, resume checks, read-back, shard merge."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from effrep_hpc.store.sensitivity import (
    SensitivitySpec,
    SensitivityWriter,
    merge_sensitivity_shards,
    read_sensitivity,
)


def make_spec(**changes: object) -> SensitivitySpec:
    """Three layers x four ratios x two criteria."""
    spec = dict(
        layers=["features.0", "features.1", "features.3"],
        ratios=np.array([0.1, 0.3, 0.5, 0.9]),
        criteria=["l1", "random"],
        layer_ids=[1, 2, 3],
        widths=[8, 8, 16],
        kept=np.array([[7, 5, 4, 1], [7, 5, 4, 1], [14, 11, 8, 1]]),
        flops_fraction=np.full((3, 4), 0.9),
        filter_l1=np.array([[1.0] * 8 + [np.nan] * 8, [1.0] * 8 + [np.nan] * 8, [1.0] * 16]),
        model_hash="abc",
        arch_name="digits_vgg",
        arch={"widths": [8, 8, 16, 16, 32, 32], "hidden": 64, "num_classes": 10},
        eval={"split": "test", "size": None},
        baseline_acc=97.5,
        baseline_loss=0.1,
        config_yaml="prune: {}\n",
    )
    spec.update(changes)
    return SensitivitySpec(**spec)  # type: ignore[arg-type]


def test_new_file_has_the_schema_with_nan_until_written(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    spec = make_spec()
    with SensitivityWriter(path, spec) as w:
        assert w.pending().tolist() == list(range(24))
        flat = (2 * 4 + 1) * 2 + 1  # layer 2, ratio 0.3, criterion random
        w.write(flat, 88.5, 0.7)
    data = read_sensitivity(path)
    assert data["acc"].shape == (3, 4, 2) and data["attrs"]["axes"] == "layer,ratio,criterion"
    assert data["acc"][2, 1, 1] == 88.5 and data["loss"][2, 1, 1] == 0.7 and data["done"][2, 1, 1]
    assert np.isnan(data["acc"]).sum() == 23 and data["done"].sum() == 1
    assert data["layers"] == spec.layers and data["criteria"] == ["l1", "random"]
    assert data["attrs"]["baseline_acc"] == 97.5 and data["attrs"]["kind"] == "sensitivity"
    assert data["attrs"]["config"] == "prune: {}\n" and "effrep_version" in data["attrs"]
    assert data["kept"][2].tolist() == [14, 11, 8, 1]


def test_resume_keeps_done_cells_and_refuses_a_different_scan(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    with SensitivityWriter(path, make_spec()) as w:
        for flat in (0, 5, 23):
            w.write(flat, 50.0 + flat, 1.0)
    with SensitivityWriter(path, make_spec()) as w:
        assert w.resumed
        assert 0 not in w.pending() and 5 not in w.pending() and len(w.pending()) == 21
    for change, words in (
        ({"ratios": np.array([0.1, 0.3, 0.5, 0.8])}, "ratios"),
        ({"criteria": ["l1", "largest"]}, "criteria"),
        ({"model_hash": "other"}, "model"),
        ({"eval": {"split": "train", "size": None}}, "split"),
    ):
        with pytest.raises(ValueError, match=f"cannot be resumed.*{words}.*--overwrite"):
            SensitivityWriter(path, make_spec(**change))
    with SensitivityWriter(path, make_spec(model_hash="other"), overwrite=True) as w:
        assert len(w.pending()) == 24


def test_a_second_writer_is_refused_while_the_first_holds_the_file(tmp_path: Path) -> None:
    from effrep_hpc.store.h5 import FileBusyError

    path = tmp_path / "s.h5"
    with SensitivityWriter(path, make_spec()):
        with pytest.raises(FileBusyError, match="being written"):
            SensitivityWriter(path, make_spec())


def test_array_task_shards_merge_into_one_file(tmp_path: Path) -> None:
    spec = make_spec()
    shards = [tmp_path / f"s.shard-{i}-of-2.h5" for i in range(2)]
    for i, shard in enumerate(shards):
        with SensitivityWriter(shard, spec) as w:
            for flat in range(i * 12, (i + 1) * 12):
                w.write(flat, float(flat), float(flat) / 10)
    out, done, total = merge_sensitivity_shards(shards, tmp_path / "s.h5")
    assert (done, total) == (24, 24)
    data = read_sensitivity(out)
    assert data["acc"].reshape(-1).tolist() == [float(k) for k in range(24)]
    with h5py.File(shards[0], "r+") as f:
        f.attrs["model_hash"] = "x"
    with pytest.raises(ValueError, match="does not belong"):
        merge_sensitivity_shards([shards[1], shards[0]], tmp_path / "t.h5")
