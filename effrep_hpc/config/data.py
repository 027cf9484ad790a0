"""`data:` which in-memory dataset to load, and how."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from effrep_hpc.config.base import result


@dataclass
class DataConfig:
    """Which in-memory dataset to load, and how."""

    name: Literal["digits", "mnist1d", "cifar10", "imagenet", "synthetic"] = result("digits")
    # cifar10: directory with data_batch_1..5 and test_batch; imagenet: directory with train/ and val/
    root: Optional[str] = None
    cache_dir: Optional[str] = None  # mnist1d, imagenet: where generated/decoded data is cached
    seed: int = result(0)
    augment: bool = result(False)  # random crop (pad 4) + horizontal flip on the device
    train_size: Optional[int] = result(None)  # take a seeded subset of the training set
    test_size: Optional[int] = result(None)
    input_shape: Optional[list[int]] = result(None)  # synthetic only
    num_classes: Optional[int] = result(None)  # synthetic: number of classes; imagenet: keep the first K classes
    image_size: Optional[int] = result(None)  # imagenet only: side of the centre crop (default 224)

    def _check(self) -> list[str]:
        problems = []
        if self.name == "cifar10" and not self.root:
            problems.append("data.root: required for data.name=cifar10 (directory of the python-pickle batches)")
        if self.name == "imagenet" and not self.root:
            problems.append("data.root: required for data.name=imagenet (directory holding train/<class>/ and val/<class>/)")
        if self.image_size is not None and self.name != "imagenet":
            problems.append(f"data.image_size: only used with data.name=imagenet (data.name is {self.name!r})")
        for key in ("train_size", "test_size", "num_classes", "image_size"):
            value = getattr(self, key)
            if value is not None and value < 1:
                problems.append(f"data.{key}: must be >= 1 (got {value})")
        return problems


