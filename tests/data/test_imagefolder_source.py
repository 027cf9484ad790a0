"""ImageNet-format folders: decoded, cropped, normalised, subset before decoding, cached, and clear errors."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from effrep_hpc.config import ConfigError, load_config
from effrep_hpc.data import imagefolder, load_dataset
from effrep_hpc.data.imagefolder import IMAGENET_MEAN, IMAGENET_STD

from imagefolder_helpers import CLASSES, NAMES, SHAPES, SORTED, TRAIN_PER_CLASS, VAL_PER_CLASS, colour, make_tree  # noqa: F401

ROOT = Path(__file__).resolve().parents[2]


def unnormalize(x: torch.Tensor) -> torch.Tensor:
    """Back to 0..255 pixel values."""
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    return (x * std + mean) * 255


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path / "imagenet")


def load(root: Path, cache: Path, **kw) -> object:
    return load_dataset("imagenet", root=root, cache_dir=cache, **kw)


def test_shapes_labels_follow_sorted_folder_names(tree, tmp_path, monkeypatch):
    real_scandir = os.scandir
    # Whatever order the file system lists entries in (here: reversed), labels follow sorted names.
    monkeypatch.setattr(os, "scandir", lambda path: list(real_scandir(path))[::-1])
    ds = load(tree, tmp_path / "cache", image_size=16)
    assert ds.x_train.shape == (12, 3, 16, 16) and ds.x_test.shape == (6, 3, 16, 16)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    assert ds.num_classes == 3 and ds.input_shape == (3, 16, 16)
    assert ds.meta["classes"] == SORTED
    for x, y, per_class in ((ds.x_train, ds.y_train, TRAIN_PER_CLASS), (ds.x_test, ds.y_test, VAL_PER_CLASS)):
        assert y.tolist() == [c for c in range(3) for _ in range(per_class)]
        # The red channel encodes the class the image was written into (JPEG is within a few levels).
        red = unnormalize(x)[:, 0].mean(dim=(1, 2))
        assert torch.equal(((red - 40) / 80).round().long(), y)


def test_solid_png_normalises_to_the_inverse_of_mean_and_std(tree, tmp_path):
    ds = load(tree, tmp_path / "cache", image_size=8)
    # train/apple/a.png is the first training image: label 0, index 0, lossless.
    want = torch.tensor([(c / 255 - m) / s for c, m, s in zip(colour(0, 0, "train"), IMAGENET_MEAN, IMAGENET_STD)])
    torch.testing.assert_close(ds.x_train[0], want.view(3, 1, 1).expand(3, 8, 8), rtol=0, atol=1e-6)
    assert IMAGENET_MEAN == pytest.approx((0.485, 0.456, 0.406)) and IMAGENET_STD == pytest.approx((0.229, 0.224, 0.225))


@pytest.mark.parametrize("size", [(60, 20), (20, 60)])
def test_short_side_is_scaled_and_the_centre_kept(tmp_path, size):
    # Three stripes along the long side: a centre crop keeps only the middle one.
    w, h = size
    img = Image.new("RGB", size, (255, 0, 0))
    middle = (0, 200, 0)
    box = (20, 0, 40, 20) if w > h else (0, 20, 20, 40)
    img.paste(Image.new("RGB", (20, 20), middle), box)
    path = tmp_path / "stripes.png"
    img.save(path)
    arr = imagefolder.decode_image(path, 10)
    assert arr.shape == (3, 10, 10) and arr.dtype == np.uint8
    inner = arr[:, 1:-1, 1:-1].reshape(3, -1)  # the outermost pixels blend with the stripes beside
    assert (inner.T == middle).all()


def test_subsets_are_seeded_stratified_and_taken_before_decoding(tree, tmp_path, monkeypatch):
    full = load(tree, tmp_path / "c0", image_size=8)
    calls = []
    real = imagefolder.decode_image

    def counting(path, size):
        calls.append(Path(path))
        return real(path, size)

    monkeypatch.setattr(imagefolder, "decode_image", counting)
    a = load(tree, tmp_path / "c1", image_size=8, seed=1, train_size=6, test_size=3)
    assert len(calls) == 9, "only the chosen files may be decoded"
    b = load(tree, tmp_path / "c2", image_size=8, seed=1, train_size=6, test_size=3)
    c = load(tree, tmp_path / "c3", image_size=8, seed=2, train_size=6, test_size=3)
    d = load(tree, tmp_path / "c4", image_size=8, seed=1, train_size=9, test_size=3)
    assert a.x_train.shape == (6, 3, 8, 8) and a.x_test.shape == (3, 3, 8, 8)
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert not torch.equal(a.x_train, c.x_train)
    assert torch.equal(a.x_test, d.x_test), "the test subset must not depend on train_size"
    for seed in range(8):  # stratified: every class gets its share, whatever the seed
        s = load(tree, tmp_path / "c5", image_size=8, seed=seed, train_size=6, test_size=3)
        assert torch.bincount(s.y_train, minlength=3).tolist() == [2, 2, 2]
        assert torch.bincount(s.y_test, minlength=3).tolist() == [1, 1, 1]
    # Each subset sample is a distinct image of the full split, with its own label.
    match = (a.x_train.flatten(1)[:, None] == full.x_train.flatten(1)[None]).all(-1)
    assert (match.sum(1) == 1).all()
    picked = match.float().argmax(1)
    assert len(set(picked.tolist())) == 6 and torch.equal(full.y_train[picked], a.y_train)


def test_num_classes_keeps_the_first_sorted_classes(tree, tmp_path):
    ds = load(tree, tmp_path / "cache", image_size=8, num_classes=2)
    assert ds.num_classes == 2 and ds.meta["classes"] == SORTED[:2]
    assert ds.y_train.tolist() == [0] * 4 + [1] * 4 and len(ds.y_test) == 4


def test_cache_is_written_once_and_reused_without_decoding(tree, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    first = load(tree, cache, image_size=16, train_size=9, seed=3)
    files = sorted((cache / "imagenet").iterdir())
    assert len(files) == 1 and files[0].suffix == ".npz", files  # no temporary files left behind
    with np.load(files[0], allow_pickle=False) as npz:
        assert npz["x_train"].dtype == np.uint8 and npz["x_train"].shape == (9, 3, 16, 16)
        np.testing.assert_array_equal(npz["y_train"], first.y_train.numpy())

    def must_not_decode(path, size):
        raise AssertionError(f"decoded {path} although the cache exists")

    monkeypatch.setattr(imagefolder, "decode_image", must_not_decode)
    second = load(tree, cache, image_size=16, train_size=9, seed=3)
    assert torch.equal(first.x_train, second.x_train) and torch.equal(first.y_test, second.y_test)
    # Another size, subset or seed, or a changed folder, is another cache entry: it must decode.
    for kw in ({"image_size": 8}, {"image_size": 16, "train_size": 6, "seed": 3}, {"image_size": 16, "train_size": 9, "seed": 4}):
        with pytest.raises(AssertionError, match="although the cache exists"):
            load(tree, cache, **kw)
    shutil.copy(tree / "val/apple/a.png", tree / "val/apple/e.png")
    with pytest.raises(AssertionError, match="although the cache exists"):
        load(tree, cache, image_size=16, train_size=9, seed=3)


def test_damaged_cache_is_decoded_again(tree, tmp_path):
    cache = tmp_path / "cache"
    first = load(tree, cache, image_size=8)
    (path,) = (cache / "imagenet").iterdir()
    path.write_bytes(path.read_bytes()[:200])
    again = load(tree, cache, image_size=8)
    assert torch.equal(first.x_train, again.x_train) and path.stat().st_size > 1000


def test_missing_root_and_splits(tmp_path):
    with pytest.raises(ValueError, match="imagenet needs root"):
        load_dataset("imagenet", cache_dir=tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{tmp_path / 'nowhere'} is not a directory"):
        load(tmp_path / "nowhere", tmp_path)
    root = make_tree(tmp_path / "r")
    shutil.rmtree(root / "val")
    with pytest.raises(FileNotFoundError, match=f"{root / 'val'} not found"):
        load(root, tmp_path)
    shutil.rmtree(root / "train")
    with pytest.raises(FileNotFoundError, match=f"{root / 'train'} not found"):
        load(root, tmp_path)


def test_no_class_folders_and_flat_val_hint(tmp_path):
    root = make_tree(tmp_path / "r")
    for name in CLASSES:
        for f in (root / "val" / name).iterdir():
            f.rename(root / "val" / f"{name}_{f.name}")
        (root / "val" / name).rmdir()
    with pytest.raises(ValueError, match=r"val has no class folders.*flat folder"):
        load(root, tmp_path)
    shutil.rmtree(root / "train")
    (root / "train").mkdir()
    with pytest.raises(ValueError, match=r"train has no class folders"):
        load(root, tmp_path)


def test_class_folders_that_differ_are_named(tmp_path):
    root = make_tree(tmp_path / "r")
    os.rename(root / "val" / "mango", root / "val" / "mangoes")
    with pytest.raises(ValueError, match=r"differ \(only in .*train: mango; only in .*val: mangoes\)"):
        load(root, tmp_path)


def test_empty_class_folder_is_named(tmp_path):
    root = make_tree(tmp_path / "r")
    for f in (root / "train" / "zebra").iterdir():
        f.unlink()
    (root / "train" / "zebra" / "notes.txt").write_text("not an image")
    with pytest.raises(ValueError, match=r"without images.*: zebra"):
        load(root, tmp_path)


def test_unreadable_image_names_the_file(tmp_path):
    root = make_tree(tmp_path / "r")
    bad = root / "train" / "mango" / "b.JPEG"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    with pytest.raises(ValueError, match=f"cannot read image {bad}"):
        load(root, tmp_path, image_size=8, workers=2)


def test_option_checks(tree, tmp_path):
    with pytest.raises(ValueError, match="unknown option 'image_sise'; did you mean 'image_size'"):
        load(tree, tmp_path, image_sise=32)
    with pytest.raises(ValueError, match="image_size must be an integer >= 1"):
        load(tree, tmp_path, image_size=0)
    with pytest.raises(ValueError, match="num_classes=4 but .*3 class folders"):
        load(tree, tmp_path, num_classes=4)
    with pytest.raises(ValueError, match=r"test_size=7 is larger than the 6 images available in .*val"):
        load(tree, tmp_path, test_size=7)


@pytest.mark.parametrize("path", ["configs/paper/prune_resnet34_b.yaml", "configs/paper/quant_imagenet_resnet18.yaml"])
def test_imagenet_paper_configs_validate(path):
    cfg = load_config(ROOT / path, ["data.root=/some/path"])
    assert cfg.data.name == "imagenet" and cfg.data.root == "/some/path" and cfg.data.image_size == 224
    assert cfg.model.name in ("resnet18", "resnet34")


def test_config_checks_root_and_image_size():
    with pytest.raises(ConfigError, match="data.root: required for data.name=imagenet"):
        load_config(None, ["data.name=imagenet"])
    with pytest.raises(ConfigError, match="data.image_size: only used with data.name=imagenet"):
        load_config(None, ["data.image_size=32"])
    with pytest.raises(ConfigError, match="data.image_size: must be >= 1"):
        load_config(None, ["data.name=imagenet", "data.root=x", "data.image_size=0"])


def test_effrep_train_on_a_tiny_tree(tree, tmp_path, capsys):
    from effrep_hpc.cli import main
    from effrep_hpc.store.checkpoint import load_checkpoint

    out = tmp_path / "run"
    args = [
        "train", "data.name=imagenet", f"data.root={tree}", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=32",
        "model.name=resnet18", "train.epochs=1", "train.batch_size=6", "train.milestones=[]", "run.device=cpu",
        "run.progress=false", f"run.out={out}",
    ]
    assert main(args) == 0
    ckpt = load_checkpoint(out / "checkpoint.pt")
    assert ckpt["epoch"] == 1 and ckpt["model"]["fc.weight"].shape == (3, 512)
    with h5py.File(out / "metrics.h5", "r") as f:
        assert f["done"][()].all() and np.isfinite(f["test_loss"][()]).all()
    assert len(list((tmp_path / "cache" / "imagenet").glob("*.npz"))) == 1
