"""Names of the pruning criteria and their spellings: plain data, importable without torch (configs check them)."""

from __future__ import annotations

from effrep_hpc.registry import unknown_name_message

WEIGHT_CRITERIA = ("l1", "l2", "random", "largest")
ACTIVATION_CRITERIA = ("mean_mean", "mean_std", "mean_l1", "mean_l2", "var_l2")
CRITERIA = WEIGHT_CRITERIA + ACTIVATION_CRITERIA
# Spellings people use for the same criterion (the paper writes "mean-mean", "largest-L1").
_ALIASES = {"largest_l1": "largest", "smallest": "l1", "smallest_l1": "l1"}


def criterion_name(name: str) -> str:
    """The canonical spelling of a criterion (case and ``-``/``_`` insensitive), or ValueError."""
    if not isinstance(name, str):
        raise ValueError(f"a pruning criterion is a name such as 'l1' (got {name!r})")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in CRITERIA:
        raise ValueError(unknown_name_message("pruning criterion", name, list(CRITERIA)))
    return key


def is_activation_criterion(name: str) -> bool:
    """True for the criteria that need feature maps (and so sample images), not just weights."""
    return criterion_name(name) in ACTIVATION_CRITERIA
