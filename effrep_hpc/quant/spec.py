"""The training algorithms as data, the grids and the largest bit width: importable without torch (configs check them)."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

MAX_BITS = 16
GRIDS = ("paper", "midrise")  # Delta*Z with zero (Li et al. 2017), or (j + 1/2)*Delta; see quant/quantizers.py


@dataclass(frozen=True)
class AlgorithmSpec:
    """One training algorithm: how the step is applied (``rule``) and which base optimizer computes it."""

    name: str
    rule: Literal["fp", "bc", "sr", "r"]
    optimizer: Literal["sgd", "adam"]

    @property
    def keeps_float_copy(self) -> bool:
        """Whether float weights exist during training (FP's weights, BC's w_r)."""
        return self.rule in ("fp", "bc")

    @property
    def quantized(self) -> bool:
        """Whether the deployed weights lie on a grid."""
        return self.rule != "fp"


ALGORITHMS: MappingProxyType[str, AlgorithmSpec] = MappingProxyType(
    {
        name: AlgorithmSpec(name, rule, opt)  # type: ignore[arg-type]
        for rule in ("fp", "bc", "sr", "r")
        for opt, name in (("sgd", rule), ("adam", f"{rule}-adam"))
    }
)


def get_algorithm(name: str) -> AlgorithmSpec:
    """The spec of algorithm ``name``; ValueError naming close names when it is unknown."""
    if name not in ALGORITHMS:
        from effrep_hpc.registry import unknown_name_message

        raise ValueError(unknown_name_message("quantization algorithm", name, list(ALGORITHMS)))
    return ALGORITHMS[name]
