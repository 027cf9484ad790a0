"""``get_backend``: pick a backend by name, or from the launcher's environment with 'auto'."""

from __future__ import annotations

import inspect
from typing import Any, Mapping

from effrep_hpc.dist import env as envmod
from effrep_hpc.dist.base import Backend
from effrep_hpc.registry import did_you_mean, unknown_name_message

KINDS = ("auto", "serial", "mpi", "torch", "array")
# 'array' is never chosen automatically: an array task looks like a plain serial process.
AUTO_CHOICES = ("serial", "mpi", "torch")


def backend_class(kind: str) -> type[Backend]:
    """The class behind ``kind`` (imported on demand, so mpi4py and torch load only when used)."""
    if kind == "serial":
        from effrep_hpc.dist.serial import SerialBackend

        return SerialBackend
    if kind == "mpi":
        from effrep_hpc.dist.mpi import MPIBackend

        return MPIBackend
    if kind == "torch":
        from effrep_hpc.dist.torchdist import TorchBackend

        return TorchBackend
    if kind == "array":
        from effrep_hpc.dist.array import ArrayBackend

        return ArrayBackend
    raise ValueError(unknown_name_message("backend kind", kind, [k for k in KINDS if k != "auto"]))


def backend_options(kind: str) -> list[str]:
    """The keyword options the ``kind`` backend accepts."""
    params = inspect.signature(backend_class(kind).__init__).parameters
    return [name for name, p in params.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]


def _check_options(kind: str, given: Mapping[str, Any], valid: list[str]) -> None:
    unknown = sorted(set(given) - set(valid))
    if not unknown:
        return
    hints = []
    for name in unknown:
        hint = did_you_mean(name, valid)
        hints.append(f"{name!r}" + (f" ({hint[2:]})" if hint else ""))
    raise ValueError(
        f"unknown option(s) for the {kind!r} backend: {', '.join(hints)} "
        f"(valid: {', '.join(sorted(valid)) or 'none'})"
    )


def get_backend(kind: str = "auto", **kw: Any) -> Backend:
    """Create the backend ``kind`` ('auto', 'serial', 'mpi', 'torch', 'array') with its options ``kw``.

    With 'auto' the launcher decides (see :func:`effrep_hpc.dist.env.detect_kind`), and ``kw``
    may hold options of any auto-selectable backend; only the chosen one's are passed on, so one
    config works under mpiexec, torchrun and a plain ``python``. The 'mpi' and 'torch' backends
    are collective to create: every rank must call ``get_backend`` the same number of times.
    """
    if kind not in KINDS:
        raise ValueError(unknown_name_message("backend kind", kind, list(KINDS)))
    if kind == "auto":
        options = {k: backend_options(k) for k in AUTO_CHOICES}
        _check_options(kind, kw, sorted({name for names in options.values() for name in names}))
        kind = envmod.detect_kind()
        kw = {k: v for k, v in kw.items() if k in options[kind]}
    else:
        _check_options(kind, kw, backend_options(kind))
    return backend_class(kind)(**kw)
