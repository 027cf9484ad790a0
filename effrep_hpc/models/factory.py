"""The model name table: ``register_model`` fills it, ``create_model`` builds from it by name."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from torch import nn

from effrep_hpc.registry import Registry, unknown_name_message


@dataclass(frozen=True)
class ModelSpec:
    """A registered constructor with the input shape (no batch dim) and class count it is built for."""

    name: str
    fn: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int


# The one name table of the zoo, filled at import time by the family modules' decorators.
_MODELS: Registry[ModelSpec] = Registry("model")


def register_model(
    name: str, *, input_shape: tuple[int, ...], num_classes: int
) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a model constructor under ``name`` with its default input shape and classes."""
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ValueError(
            f"input_shape of model {name!r} must be positive ints without the batch dim, got {input_shape}"
        )

    def deco(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _MODELS.register(name)(ModelSpec(name, fn, shape, int(num_classes)))
        return fn

    return deco


def list_models() -> list[str]:
    """Names of all registered models, sorted."""
    return _MODELS.names()


def model_spec(name: str) -> ModelSpec:
    """The registration of ``name``; KeyError naming close names when it is unknown."""
    return _MODELS.get(name)


def create_model(name: str, num_classes: int | None = None, **kw: Any) -> nn.Module:
    """Build model ``name`` (class count defaults to the registered one); kwargs are its explicit widths."""
    spec = model_spec(name)
    accepted = [p for p in inspect.signature(spec.fn).parameters if p != "num_classes"]
    unknown = [k for k in kw if k not in accepted]
    if unknown:
        # A typo in a width key would otherwise surface as a bare TypeError without the valid names.
        raise ValueError(unknown_name_message(f"argument of model {name!r}", unknown[0], accepted))
    return spec.fn(num_classes=spec.num_classes if num_classes is None else num_classes, **kw)


def rebuild_model(state: Mapping[str, Any], what: Any = "the checkpoint") -> nn.Module:
    """The model of a saved payload, built from its ``arch_name`` and ``arch`` spec and loaded with its ``model`` state_dict."""
    if not state.get("arch_name") or state.get("arch") is None:
        raise ValueError(f"{what} does not name its architecture (arch_name/arch); it cannot be rebuilt")
    model = create_model(state["arch_name"], **state["arch"])
    model.load_state_dict(state["model"])
    return model
