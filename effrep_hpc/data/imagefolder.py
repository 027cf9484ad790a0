"""ImageNet-format image folders (``root/train/<class>/*.JPEG``, ``root/val/<class>/*``) decoded into memory.

Images are decoded with Pillow, the short side scaled to ``image_size`` and the centre square kept,
then held as uint8 and cached as ``.npz`` so a second load reads one file instead of decoding again.
Subsets are chosen from the file lists before anything is decoded: a 10k-image experiment on
ImageNet never opens the other 1.27M files.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch
from torch import Tensor

from effrep_hpc.data.base import Dataset, check_count, child_seed, default_cache_dir, register_dataset
from effrep_hpc.data.npz_cache import read_npz, write_npz_atomic

# Per-channel mean/std of the ImageNet training images on the 0..1 scale (the constants torchvision's
# pretrained models and most ImageNet code normalise with).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_IMAGE_SIZE = 224
IMAGE_EXTENSIONS = (".jpeg", ".jpg", ".png")  # compared lower-case: ImageNet's own files end in .JPEG
SPLITS = (("train", "train"), ("test", "val"))  # (Dataset split, folder under root)
CACHE_VERSION = 1  # bump when decoding changes, so old caches are not mistaken for new ones
_ARRAYS = ("x_train", "y_train", "x_test", "y_test", "classes", "key_json")
_CHUNK = 4096  # images handed to the thread pool at once: bounds the number of pending futures


def find_classes(root: str | Path) -> list[str]:
    """Class folder names shared by ``root/train`` and ``root/val``, sorted (their index is the label)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(
            f"ImageNet-format root {root} is not a directory: set data.root to the folder that holds train/ and val/"
        )
    found: dict[str, list[str]] = {}
    for _, folder in SPLITS:
        split_dir = root / folder
        if not split_dir.is_dir():
            raise FileNotFoundError(
                f"{split_dir} not found: an ImageNet-format root holds train/ and val/, each with one "
                "folder of images per class"
            )
        found[folder] = sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and not e.name.startswith("."))
        if not found[folder]:
            hint = (
                " (ImageNet's validation images ship as one flat folder: sort them into one folder per "
                "class, named like the train/ folders)"
                if folder == "val" and any(_is_image(e.name) for e in os.scandir(split_dir))
                else ""
            )
            raise ValueError(f"{split_dir} has no class folders; expected {split_dir}/<class>/<image files>{hint}")
    only_train = sorted(set(found["train"]) - set(found["val"]))
    only_val = sorted(set(found["val"]) - set(found["train"]))
    if only_train or only_val:
        parts = [f"only in {root / f}: {_some(names)}" for f, names in (("train", only_train), ("val", only_val)) if names]
        raise ValueError(f"the class folders of train/ and val/ differ ({'; '.join(parts)}); both need the same classes")
    return found["train"]


def list_images(split_dir: Path, classes: list[str]) -> tuple[list[str], np.ndarray]:
    """Image paths (relative to ``split_dir``, sorted within each class) and their int64 labels."""
    paths: list[str] = []
    labels: list[int] = []
    empty = []
    for label, name in enumerate(classes):
        files = sorted(
            e.name for e in os.scandir(split_dir / name) if _is_image(e.name) and not e.name.startswith(".") and e.is_file()
        )
        if not files:
            empty.append(name)
        paths.extend(f"{name}/{f}" for f in files)
        labels.extend([label] * len(files))
    if empty:
        raise ValueError(
            f"class folders in {split_dir} without images ({', '.join(IMAGE_EXTENSIONS)}): {_some(empty)}"
        )
    return paths, np.asarray(labels, dtype=np.int64)


def stratified_subset(labels: np.ndarray, size: Optional[int], *, seed: int, stream: str, what: str) -> np.ndarray:
    """Sorted indices of ``size`` samples, each class getting its share of ``size`` give or take one;
    None keeps all. Seeded per stream, so the test subset does not change with the train size."""
    n = len(labels)
    if size is None:
        return np.arange(n)
    size = check_count(size, what)
    if size > n:
        raise ValueError(f"{what}={size} is larger than the {n} images available")
    rng = np.random.default_rng(child_seed(seed, stream))
    # Systematic sampling within each class: a random order of the class, spaced over [0, 1) with a
    # random offset; the `size` smallest keys overall then take about size * n_c / n from class c.
    keys = np.empty(n)
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        keys[idx[rng.permutation(len(idx))]] = (np.arange(len(idx)) + rng.random()) / len(idx)
    return np.sort(np.argsort(keys, kind="stable")[:size])


def decode_image(path: str | Path, image_size: int) -> np.ndarray:
    """One image file as uint8 (3, S, S): short side scaled to S (bilinear, antialiased), centre square kept."""
    from PIL import Image

    resample = getattr(Image, "Resampling", Image).BILINEAR
    try:
        with Image.open(path) as src:
            # JPEG only: decode at a reduced scale that still leaves the short side >= S (much faster
            # for small S); other formats ignore it.
            src.draft("RGB", (image_size, image_size))
            im = src.convert("RGB")
            w, h = im.size
            side = min(w, h)
            box = ((w - side) / 2, (h - side) / 2, (w + side) / 2, (h + side) / 2)
            im = im.resize((image_size, image_size), resample, box=box)
            arr = np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError(f"cannot read image {path}: {type(exc).__name__}: {exc}") from exc
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_images(split_dir: Path, paths: list[str], image_size: int, workers: int) -> np.ndarray:
    """Decode ``paths`` (relative to ``split_dir``) into one uint8 (N, 3, S, S) array, in order."""
    out = np.empty((len(paths), 3, image_size, image_size), dtype=np.uint8)

    def one(i: int) -> None:
        out[i] = decode_image(split_dir / paths[i], image_size)

    if workers <= 1 or len(paths) <= 1:
        for i in range(len(paths)):
            one(i)
        return out
    # Pillow releases the GIL while decoding and resizing, so threads use several cores without
    # copying pixels between processes.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), _CHUNK):
            list(pool.map(one, range(start, min(start + _CHUNK, len(paths)))))
    return out


def normalize(images: np.ndarray) -> Tensor:
    """uint8 (N, 3, S, S) -> float32 on the 0..1 scale, standardised with the ImageNet mean/std."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return torch.from_numpy(images).to(torch.float32).div_(255.0).sub_(mean).div_(std)


def cache_path(cache_dir: Path, key: dict[str, Any]) -> Path:
    """Cache file for one selection of files at one image size."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return Path(cache_dir) / "imagenet" / f"imagenet_{key['image_size']}px_{digest}.npz"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _some(names: list[str], n: int = 5) -> str:
    """Up to ``n`` names, and how many more there are."""
    shown = ", ".join(names[:n])
    return shown + (f" and {len(names) - n} more" if len(names) > n else "")


def _default_workers() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))  # the CPUs this process (e.g. a SLURM task) may use
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(16, cpus))


@register_dataset("imagenet")
def load_imagenet(
    *,
    root: Optional[Path] = None,
    seed: int = 0,
    cache_dir: Optional[Path] = None,
    image_size: int = DEFAULT_IMAGE_SIZE,
    train_size: Optional[int] = None,
    test_size: Optional[int] = None,
    num_classes: Optional[int] = None,
    workers: Optional[int] = None,
) -> Dataset:
    """An ImageNet-format folder (train/ and val/ with one folder per class) as float32 (N, 3, S, S).

    Labels follow the sorted class folder names; ``num_classes`` keeps the first K of them.
    ``train_size``/``test_size`` pick stratified subsets with ``seed`` before decoding (val/ is the
    test split). Decoded images are cached under ``cache_dir``, keyed by the root, the image size
    and the chosen files; ``workers`` decoding threads (default: usable CPUs, at most 16).
    """
    if root is None:
        raise ValueError("imagenet needs root=<directory> holding train/<class>/* and val/<class>/*")
    image_size = check_count(image_size, "image_size")
    workers = _default_workers() if workers is None else check_count(workers, "workers")
    root = Path(root).expanduser().resolve()
    classes = find_classes(root)
    if num_classes is not None:
        num_classes = check_count(num_classes, "num_classes")
        if num_classes > len(classes):
            raise ValueError(f"num_classes={num_classes} but {root / 'train'} has only {len(classes)} class folders")
        classes = classes[:num_classes]

    selected: dict[str, tuple[Path, list[str], np.ndarray]] = {}
    for split, folder in SPLITS:
        size = train_size if split == "train" else test_size
        paths, labels = list_images(root / folder, classes)
        try:
            keep = stratified_subset(labels, size, seed=seed, stream=split, what=f"{split}_size")
        except ValueError as exc:
            raise ValueError(f"{exc} in {root / folder}") from None
        selected[split] = (root / folder, [paths[i] for i in keep], labels[keep])

    # The file lists are part of the key: adding or removing images makes a new cache, not a stale hit.
    listing = hashlib.sha256(
        json.dumps({s: sel[1] for s, sel in selected.items()}, sort_keys=True).encode()
    ).hexdigest()
    subset = train_size is not None or test_size is not None
    key = {
        "version": CACHE_VERSION,
        "root": str(root),
        "image_size": image_size,
        "classes": classes,
        "train_size": train_size,
        "test_size": test_size,
        "seed": seed if subset else None,
        "files": listing,
    }
    path = cache_path(Path(cache_dir) if cache_dir is not None else default_cache_dir(), key)
    arrays = read_npz(path, _ARRAYS)
    if arrays is None or str(arrays["key_json"]) != json.dumps(key, sort_keys=True):
        arrays = {}
        for split, (split_dir, paths, labels) in selected.items():
            arrays[f"x_{split}"] = decode_images(split_dir, paths, image_size, workers)
            arrays[f"y_{split}"] = labels
        arrays["classes"] = np.asarray(classes, dtype=str)
        arrays["key_json"] = np.asarray(json.dumps(key, sort_keys=True))
        try:
            write_npz_atomic(path, arrays)
        except OSError as exc:  # a read-only cache must not throw away an hour of decoding
            warnings.warn(f"could not write the imagenet cache {path}: {exc}", stacklevel=2)
    return Dataset(
        name="imagenet",
        x_train=normalize(arrays["x_train"]),
        y_train=torch.from_numpy(arrays["y_train"]).to(torch.int64),
        x_test=normalize(arrays["x_test"]),
        y_test=torch.from_numpy(arrays["y_test"]).to(torch.int64),
        num_classes=len(classes),
        input_shape=(3, image_size, image_size),
        meta={
            "mean": list(IMAGENET_MEAN),
            "std": list(IMAGENET_STD),
            "root": str(root),
            "image_size": image_size,
            "classes": list(classes),
            "cache_file": str(path),
        },
    )
