"""Direction files: save and load the x (and y) directions of a landscape scan (HDF5).

Our format (``kind="directions"``, ``schema_version=1``): groups ``x/`` and optionally ``y/`` with one
dataset per parameter, keyed by parameter name, plus, for a direction between models, one per BN
running statistic it moves (``<bn>.running_mean``, ``<bn>.running_var``); root attributes ``names``
(JSON list, parameter order, then the statistics), ``directions_hash``
(``landscape.direction_hash((x, y))``) and whatever the caller adds (normalization, seeds, source).
bfloat16 tensors are stored as float32 (numpy has no bfloat16). Tensors are read back in the model's
dtype, except float64 ones (directions between models), which stay float64.

The original loss-landscape scripts' format is read too: groups ``xdirection`` / ``ydirection`` with
datasets ``"0" .. "K-1"`` in ``net.parameters()`` order. Their ``states`` variant holds one tensor
per ``state_dict`` entry (BN running statistics and, from PyTorch 0.4.1 on, ``num_batches_tracked``
included); it is accepted when the buffer entries are zero (a random direction of that code): moving
statistics are read from our format and from surface files only. Its PCA direction files (trajectory
plots) add root datasets ``explained_variance_ratio_``, ``singular_values_`` and ``explained_variance_``,
which ``read_pca_extras`` returns.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import h5py
import numpy as np
import torch
from torch import Tensor

from effrep_hpc.landscape.directions import direction_hash, is_running_stat
from effrep_hpc.store.h5 import atomic_create, open_readonly, read_attr, read_group, set_attrs, write_group

SCHEMA_VERSION = 1
_RESERVED = ("kind", "schema_version", "names", "directions_hash")


def _to_numpy(t: Tensor) -> np.ndarray:
    t = t.detach().to("cpu")
    if t.dtype == torch.bfloat16:
        t = t.float()
    return t.numpy()


def save_directions(
    path: str | Path,
    x: Mapping[str, Tensor],
    y: Mapping[str, Tensor] | None = None,
    *,
    attrs: Mapping[str, Any] | None = None,
    trajectory: Mapping[str, Any] | None = None,
) -> None:
    """Write x (and y) to ``path`` atomically (temporary file in the same folder, then renamed).

    ``trajectory``: the projected path of PCA directions, stored as the group ``trajectory/`` in the layout
    of a surface file's (docs/surface-format.md), read back by :func:`read_trajectory`.
    """
    if y is not None:
        if list(y) != list(x):
            diff = next((a, b) for a, b in zip(list(x) + [None], list(y) + [None]) if a != b)
            raise ValueError(f"x and y must name the same parameters in the same order; first difference: {diff}")
        for name in x:
            if tuple(x[name].shape) != tuple(y[name].shape):
                raise ValueError(
                    f"x and y differ in the shape of {name!r}: {tuple(x[name].shape)} vs {tuple(y[name].shape)}"
                )
    extra = dict(attrs or {})
    clash = [k for k in extra if k in _RESERVED]
    if clash:
        raise ValueError(f"attribute(s) {clash} are written by save_directions itself; rename them")
    with atomic_create(path) as f:
        for group_name, direction in (("x", x), ("y", y)):
            if direction is None:
                continue
            group = f.create_group(group_name)
            for name, tensor in direction.items():
                group.create_dataset(name, data=_to_numpy(tensor))
        set_attrs(f, {
            "kind": "directions",
            "schema_version": SCHEMA_VERSION,
            "names": json.dumps(list(x)),
            "directions_hash": direction_hash([x, y]),
            **extra,
        })
        if trajectory is not None:
            write_group(f, "trajectory", trajectory)


def read_trajectory(path: str | Path) -> dict[str, Any] | None:
    """The ``trajectory/`` group of a direction or surface file (datasets and ``"attrs"``), None if it has none."""
    with open_readonly(path) as f:
        return read_group(f["trajectory"]) if "trajectory" in f else None


def export_original(
    path: str | Path,
    x: Mapping[str, Tensor],
    y: Mapping[str, Tensor] | None = None,
    *,
    extras: Mapping[str, Sequence[float]] | None = None,
) -> None:
    """Write x (and y) in the original scripts' format: ``xdirection/0..K-1`` in parameter order, plus PCA extras.

    ``x`` and ``y`` must hold the model's parameters in ``net.parameters()`` order (no BN statistics: that
    format's weights layout has none); ``extras`` are root datasets such as ``explained_variance_ratio_``
    (names from ``PCA_EXTRAS``), as the original code's PCA direction files hold them.
    """
    stats = [name for name in x if is_running_stat(name)]
    if stats:
        raise ValueError(f"the original format holds parameters only; {stats[0]!r} is a BN statistic")
    unknown = [name for name in (extras or {}) if name not in PCA_EXTRAS]
    if unknown:
        raise ValueError(f"unknown PCA extra {unknown[0]!r}; expected one of {list(PCA_EXTRAS)}")
    with atomic_create(path) as f:
        for group_name, direction in (("xdirection", x), ("ydirection", y)):
            if direction is not None:
                group = f.create_group(group_name)
                for i, tensor in enumerate(direction.values()):
                    group.create_dataset(str(i), data=_to_numpy(tensor))
        for name, values in (extras or {}).items():
            f.create_dataset(name, data=np.asarray(values, dtype=np.float64))


def direction_file_attrs(path: str | Path) -> dict[str, Any]:
    """The root attributes of a direction file as Python values (empty for the original format)."""
    with open_readonly(path) as f:
        return {key: read_attr(f, key) for key in f.attrs}


def _stale(path: Path, what: str) -> ValueError:
    return ValueError(f"direction file {path} does not fit the model: {what} (was it made for another model?)")


def _tensor(data: np.ndarray, like: Tensor) -> Tensor:
    """A stored array as a tensor on ``like``'s device in its dtype, or in float64 where stored so.

    Directions between models are float64 differences (exact at the models); keeping them so reproduces
    the scan they were computed for.
    """
    dtype = torch.float64 if np.asarray(data).dtype == np.float64 and like.is_floating_point() else like.dtype
    return torch.as_tensor(np.asarray(data)).to(device=like.device, dtype=dtype)


def _ours(
    path: Path, group: h5py.Group, params: list[tuple[str, Tensor]], state: list[tuple[str, Tensor]]
) -> dict[str, Tensor]:
    out: dict[str, Tensor] = {}
    for name, param in params:
        if name not in group:
            raise _stale(path, f"it has no tensor for parameter {name!r} in group {group.name}")
        data = group[name][()]
        if tuple(np.shape(data)) != tuple(param.shape):
            raise _stale(path, f"parameter {name!r} has shape {tuple(np.shape(data))} in the file, "
                               f"{tuple(param.shape)} in the model")
        out[name] = _tensor(data, param)
    # BN running statistics moved along the direction (a direction between models), in state order
    for name, buf in state:
        if name in group and name not in out and is_running_stat(name) and buf.is_floating_point():
            data = group[name][()]
            if tuple(np.shape(data)) != tuple(buf.shape):
                raise _stale(path, f"BN statistic {name!r} has shape {tuple(np.shape(data))} in the file, "
                                   f"{tuple(buf.shape)} in the model")
            out[name] = _tensor(data, buf)
    extra = [k for k in group if k not in out]
    if extra:
        raise _stale(path, f"it has a tensor {extra[0]!r} in group {group.name} that the model does not have")
    return out


def _original(
    path: Path, group: h5py.Group, params: list[tuple[str, Tensor]], state: list[tuple[str, Tensor]]
) -> dict[str, Tensor]:
    n = len(group)
    keys = sorted(group, key=lambda k: int(k) if k.isdigit() else -1)
    if keys != [str(i) for i in range(n)]:
        raise ValueError(f"{path}: group {group.name} should hold datasets '0'..'{n - 1}', found {keys[:5]}...")
    entries = [np.asarray(group[str(i)][()]) for i in range(n)]
    state_old = [(k, v) for k, v in state if not k.endswith("num_batches_tracked")]
    param_names = {k for k, _ in params}
    if n == len(params):
        layout = params
    elif n in (len(state), len(state_old)):
        layout = state if n == len(state) else state_old
    else:
        raise _stale(path, f"group {group.name} holds {n} tensors, but the model has {len(params)} parameters "
                           f"({len(state)} state_dict entries)")
    out: dict[str, Tensor] = {}
    for i, ((name, ref), data) in enumerate(zip(layout, entries)):
        if tuple(data.shape) != tuple(ref.shape):
            raise _stale(path, f"tensor {i} of {group.name} has shape {tuple(data.shape)}, but the model's "
                               f"{name!r} (entry {i} in order) has {tuple(ref.shape)}")
        if name in param_names:
            out[name] = torch.as_tensor(data).to(device=ref.device, dtype=ref.dtype)
        elif np.any(data != 0):
            raise ValueError(
                f"{path}: tensor {i} of {group.name} moves the buffer {name!r}; buffers are read from this "
                f"format only when zero. For an interpolation between models use landscape.target or "
                f"landscape.plane (they move the BN running statistics), or recreate the direction with "
                f"biases/BN ignored or as a per-parameter direction."
            )
    return {name: out[name] for name, _ in params}


def load_directions(
    path: str | Path, state: Mapping[str, Tensor], parameters: Sequence[str]
) -> tuple[dict[str, Tensor], dict[str, Tensor] | None]:
    """Read ``(x, y)`` (y None if absent) in our format, a surface file's, or the original scripts' format.

    ``state`` is the model's state_dict in module order (buffers included: the original format may
    follow it, and BN running statistics stored in our format are read after the parameters) and
    ``parameters`` the names of its parameters; ``landscape.directions.direction_layout``
    gives both for a module. Tensors come back with the parameters' dtype and device. A file made for
    another model (names, count or shapes differ) raises ValueError naming the first mismatching one.
    """
    missing = [n for n in parameters if n not in state]
    if missing:
        raise ValueError(f"parameter {missing[0]!r} is not in the given state")
    params = [(n, state[n]) for n in parameters]
    state_items = list(state.items())
    path = Path(path)
    with open_readonly(path) as f:
        if "x" in f and isinstance(f["x"], h5py.Group):
            version = read_attr(f, "schema_version", SCHEMA_VERSION)
            if int(version) > SCHEMA_VERSION:
                raise ValueError(f"{path} has schema_version {version}; this version reads up to {SCHEMA_VERSION}")
            x = _ours(path, f["x"], params, state_items)
            y = _ours(path, f["y"], params, state_items) if "y" in f else None
        elif "directions" in f and isinstance(f["directions"], h5py.Group) and "x" in f["directions"]:
            # A surface file: the directions it was computed with are stored inside it.
            g = f["directions"]
            x = _ours(path, g["x"], params, state_items)
            y = _ours(path, g["y"], params, state_items) if "y" in g else None
        elif "xdirection" in f:
            x = _original(path, f["xdirection"], params, state_items)
            y = _original(path, f["ydirection"], params, state_items) if "ydirection" in f else None
        else:
            raise ValueError(
                f"{path} is not a direction file: expected a group 'x' (effrep), 'directions' (a surface file) "
                f"or 'xdirection' (original "
                f"loss-landscape code); found {sorted(f)[:8]}"
            )
    return x, y


PCA_EXTRAS: tuple[str, ...] = ("explained_variance_ratio_", "singular_values_", "explained_variance_")


def read_pca_extras(path: str | Path) -> dict[str, np.ndarray]:
    """The PCA statistics a direction file holds as root datasets (the original code's PCA files): name -> array.

    Returns those of ``PCA_EXTRAS`` present (sklearn's attribute names, one value per direction), as
    float64 arrays; an empty dict for a file without them (e.g. random directions).
    """
    with open_readonly(path) as f:
        return {
            name: np.asarray(f[name][()], dtype=np.float64).reshape(-1)
            for name in PCA_EXTRAS
            if name in f and isinstance(f[name], h5py.Dataset)
        }
