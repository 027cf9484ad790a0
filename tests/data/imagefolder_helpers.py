"""A tiny ImageNet-format tree for the data tests (a module of its own so several test files can use it)."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

# Created out of order on purpose: labels must follow the sorted names (apple 0, mango 1, zebra 2).
CLASSES = ("zebra", "apple", "mango")
SORTED = sorted(CLASSES)
TRAIN_PER_CLASS, VAL_PER_CLASS = 4, 2
# Different sizes and aspect ratios (wide, tall, square), lossless PNG and JPEG with several extensions.
SHAPES = ((37, 21), (20, 44), (16, 16), (50, 30))
NAMES = ("a.png", "b.JPEG", "c.png", "d.jpg")


def colour(label: int, index: int, split: str) -> tuple[int, int, int]:
    """A solid colour that encodes the label (red), the image (green) and the split (blue)."""
    return (40 + 80 * label, 10 + 30 * index, 60 if split == "train" else 180)


def make_tree(root: Path, classes: tuple[str, ...] = CLASSES) -> Path:
    """Write a tiny ImageNet-format tree of solid-colour images; return ``root``."""
    for split, per_class in (("train", TRAIN_PER_CLASS), ("val", VAL_PER_CLASS)):
        for name in classes:
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(per_class):
                img = Image.new("RGB", SHAPES[i], colour(sorted(classes).index(name), i, split))
                img.save(folder / NAMES[i], quality=95)
    return root
