"""`model:` which registered model to build."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from effrep_hpc.config.base import result
from effrep_hpc.config.names import MODEL_NAMES
from effrep_hpc.registry import unknown_name_message


@dataclass
class ModelConfig:
    """Which registered model to build; ``kwargs`` go to its constructor (e.g. widths)."""

    name: str = result("digits_cnn")
    kwargs: dict[str, Any] = result(factory=dict)

    def _check(self) -> list[str]:
        if self.name not in MODEL_NAMES:
            return [f"model.name: {unknown_name_message('model', self.name, list(MODEL_NAMES))}"]
        return []


