"""Unpickle data files (CIFAR-10 batches) while refusing anything but plain values and numpy arrays.

A pickle is a program: unpickling calls whatever callable the file names, so an ordinary
``pickle.load`` of a file from a shared or downloaded directory can run arbitrary code (the classic
``os.system`` payload). Dataset batch files only ever need containers, bytes/str/numbers and numpy
arrays, so ``find_class`` resolves exactly those names and rejects everything else before it is
called.
"""

from __future__ import annotations

import builtins
import codecs
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

# Plain value types: calling any of these cannot touch the file system, import modules or run code.
_SAFE_BUILTINS = frozenset(
    {"bool", "bytearray", "bytes", "complex", "dict", "float", "frozenset", "int", "list", "set", "str", "tuple"}
)
# Python 2 pickles (the original CIFAR-10 files) name the builtins module ``__builtin__``.
_BUILTIN_MODULES = frozenset({"builtins", "__builtin__"})


def _numpy_reconstructors() -> dict[tuple[str, str], Any]:
    """The helper callables numpy's own pickles name, found via numpy's reduce output so the
    allowlist does not depend on private module paths (``numpy.core`` became ``numpy._core``)."""
    arr = np.zeros(1)
    reconstruct = arr.__reduce__()[0]
    frombuffer = arr.__reduce_ex__(5)[0]
    scalar = np.float64(0).__reduce__()[0]
    allowed: dict[tuple[str, str], Any] = {("numpy", "ndarray"): np.ndarray, ("numpy", "dtype"): np.dtype}
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = frombuffer
    # Python 3 writes bytes with protocols 0-2 as codecs.encode(text, 'latin1').
    allowed[("_codecs", "encode")] = _latin1_encode
    # Why the numpy entries are safe: they only build arrays of allowed dtypes; numpy itself refuses
    # object arrays from raw bytes, and object-array elements are unpickled through this same filter.
    return allowed


def _latin1_encode(text: str, encoding: str = "latin1", errors: str = "strict") -> bytes:
    """``codecs.encode`` restricted to the latin-1 round trip pickle uses for bytes."""
    if codecs.lookup(encoding).name != "iso8859-1":
        raise ForbiddenGlobalError(f"refusing codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, encoding, errors)


class ForbiddenGlobalError(pickle.UnpicklingError):
    """A pickle named a callable outside the allowlist; nothing it named was called."""


class RestrictedUnpickler(pickle.Unpickler):
    """An Unpickler whose ``find_class`` only returns plain builtin types and numpy array helpers."""

    def __init__(self, file: BinaryIO, *, source: str = "<pickle>", **kwargs: Any) -> None:
        super().__init__(file, **kwargs)
        self._source = source
        self._allowed = _numpy_reconstructors()

    def find_class(self, module: str, name: str) -> Any:
        """Resolve ``module.name`` only when it is on the allowlist; raise UnpicklingError otherwise."""
        if module in _BUILTIN_MODULES and name in _SAFE_BUILTINS:
            return getattr(builtins, name)
        if (module, name) in self._allowed:
            return self._allowed[(module, name)]
        raise ForbiddenGlobalError(
            f"refusing to load {module}.{name} from {self._source}: data files may only contain "
            "plain values and numpy arrays (a pickle that names other callables can run code)"
        )


def safe_load(path: str | Path) -> Any:
    """Unpickle ``path`` with :class:`RestrictedUnpickler`; Python 2 strings come back as bytes."""
    with open(path, "rb") as fh:
        return RestrictedUnpickler(fh, source=str(path), encoding="bytes").load()


def safe_loads(data: bytes, *, source: str = "<bytes>") -> Any:
    """Unpickle ``data`` with :class:`RestrictedUnpickler`; Python 2 strings come back as bytes."""
    return RestrictedUnpickler(io.BytesIO(data), source=source, encoding="bytes").load()
