"""`effrep trajectory`: a training run's snapshots -> PCA plane -> loss scan of that plane with the path drawn on it.

Li et al. (NeurIPS 2018, sec. 7): random directions are nearly orthogonal to the path training takes, so
the path is drawn on the plane of the first two principal directions of the snapshots' differences from
the final weights. Steps:

1. The writer reads the snapshots ``train.keep_every`` kept (``<run.out>/weights/epoch_XXXX.pt``, in epoch
   order, every ``trajectory.every``-th), takes their PCA against the reference (``landscape.checkpoint``,
   the scan's centre) with `landscape.trajectory`, projects every snapshot by least squares (coordinates,
   residual and distance), and writes the directions with the path (``trajectory.direction_file``, our
   format; ``trajectory.export`` also in the original code's). Directions can be imported instead
   (``trajectory.directions``: ours, or the original code's PCA files). The file is reused while the
   snapshots, the reference and the settings are those it was made from, so a resume does not redo the PCA.
2. Every rank reads that file; the grid keeps ``landscape.x``/``y``'s point counts and, with
   ``trajectory.range=auto``, takes its bounds from the path (`landscape.trajectory.scan_range`).
3. The scan runs as a loss scan on those directions (`runners.landscape.scan_losses`: MPI, array shards,
   resume), into ``trajectory.surface``, whose ``trajectory/`` group holds the path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from effrep_hpc.config import Config, Scope
from effrep_hpc.dist.env import local_rank
from effrep_hpc.errors import UserError
from effrep_hpc.landscape import trajectory as T
from effrep_hpc.landscape.directions import direction_layout, weights_hash
from effrep_hpc.landscape.grid import parse_axis
from effrep_hpc.runners.common import load_model, resolve_path, setup_runtime
from effrep_hpc.runners.driver import backend_for, setup_guard
from effrep_hpc.runners.landscape import Scan, scan_losses

SCOPE = Scope("trajectory", ("data", "landscape", "trajectory"))
SNAPSHOT = re.compile(r"epoch_(\d+)\.pt$")


def find_snapshots(folder: Path, every: int = 1) -> tuple[list[int], list[Path]]:
    """The epochs and files of the snapshots in ``folder`` in epoch order, every ``every``-th (the last always)."""
    found = sorted((int(m.group(1)), p) for p in folder.glob("epoch_*.pt") if (m := SNAPSHOT.search(p.name)))
    if not found:
        why = "does not exist" if not folder.is_dir() else "holds no epoch_XXXX.pt snapshots"
        raise UserError(
            f"{folder} {why}: train with train.keep_every=1 (or k) to keep the weights along the path, "
            f"or set trajectory.snapshots to the folder that holds them"
        )
    chosen = found[::every]
    if chosen[-1] != found[-1]:
        chosen.append(found[-1])
    if len(chosen) < 3:
        raise UserError(
            f"{folder}: {len(chosen)} snapshot(s) with trajectory.every={every}; two PCA directions need at least 3 "
            f"(keep more epochs with train.keep_every, or lower trajectory.every)"
        )
    return [e for e, _ in chosen], [p for _, p in chosen]


def _load_snapshot(path: Path) -> dict[str, torch.Tensor]:
    from effrep_hpc.store.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if "model" not in state:
        raise UserError(f"{path} holds no model weights (kind {state.get('kind')!r}); is it a train.keep_every snapshot?")
    weights: dict[str, torch.Tensor] = state["model"]
    return weights


def _fingerprint(cfg: Config, files: list[Path], reference_hash: str) -> str:
    """What the stored PCA was made from: the snapshot files (name, size, time), the reference and the settings."""
    t = cfg.trajectory
    files_key = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    settings = {k: getattr(t, k) for k in ("every", "directions", "center", "method")}
    text = json.dumps([files_key, reference_hash, settings, cfg.landscape.bias_bn], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _pca(cfg: Config, model: torch.nn.Module, epochs: list[int], files: list[Path]) -> dict[str, Any]:
    """The directions and the projected path of ``files`` against ``model`` (or of the imported directions)."""
    t, bias = cfg.trajectory, cfg.landscape.bias_bn
    snapshots = T.LazySnapshots(lambda i: _load_snapshot(files[i]), len(files))
    try:
        if t.directions:
            from effrep_hpc.store.directions import load_directions, read_pca_extras, read_trajectory

            x, y = load_directions(t.directions, *direction_layout(model))
            if y is None:
                raise UserError(f"trajectory.directions={t.directions} holds only an x direction; a trajectory needs two")
            # the original code's PCA files hold sklearn's statistics as root datasets, ours in trajectory/
            stored = (read_trajectory(t.directions) or {}).get("attrs", {})
            stored.update({k.rstrip("_"): v for k, v in read_pca_extras(t.directions).items()})
            stats = {k: np.asarray(stored.get(k, [np.nan, np.nan]), dtype=np.float64)
                     for k in ("explained_variance_ratio", "explained_variance", "singular_values")}
            dirs: tuple[dict[str, torch.Tensor], ...] = (x, y)
            method, centered = "imported", bool(stored.get("centered", t.center))
        else:
            pca = T.pca_directions(snapshots, model, 2, bias=bias, center=t.center, method=t.method,
                                   max_bytes=t.max_mb * 2**20)
            dirs, method, centered = pca.directions, pca.method, pca.centered
            stats = {"explained_variance_ratio": pca.explained_variance_ratio,
                     "explained_variance": pca.explained_variance, "singular_values": pca.singular_values}
        coords, residual = T.project_path(snapshots, model, dirs, bias=bias)
    except ValueError as exc:  # another architecture, too few distinct snapshots, dependent directions
        raise UserError(f"trajectory of {files[0].parent}: {exc}") from None
    along = np.einsum("ni,ij,nj->n", coords, _gram(model, dirs, bias), coords)
    return {
        "directions": dirs,
        "trajectory": {
            "epoch": np.asarray(epochs, dtype=np.int64), "x": coords[:, 0], "y": coords[:, 1], "residual": residual,
            "distance": np.sqrt(np.maximum(along, 0.0) + residual**2),
            "attrs": {**stats, "centered": centered, "method": method, "snapshots": str(files[0].parent),
                      "covered": "weights" if bias == "ignore" else "all"},
        },
    }


def _gram(model: torch.nn.Module, dirs: tuple[dict[str, torch.Tensor], ...], bias: str) -> np.ndarray:
    """``D D^T`` of the directions over the covered parameters (so ``|D^T c|`` is known without the weights)."""
    names = T.covered_parameters(model, bias)
    flat = torch.stack([torch.cat([d[n].double().reshape(-1) for n in names]) for d in dirs])
    gram: np.ndarray = (flat @ flat.T).cpu().numpy()
    return gram


def prepare_directions(cfg: Config, model: torch.nn.Module, path: Path) -> None:
    """Write ``path`` (directions + path) unless it already holds the PCA of these snapshots and settings."""
    from effrep_hpc.store.directions import direction_file_attrs, export_original, save_directions
    from effrep_hpc.store.sweep import locked

    t = cfg.trajectory
    folder = resolve_path(t.snapshots, cfg.run.out, "weights")
    epochs, files = find_snapshots(folder, t.every)
    fingerprint = _fingerprint(cfg, files, weights_hash(model))
    path.parent.mkdir(parents=True, exist_ok=True)
    with locked(path):  # array tasks start together: one computes, the others read its file
        if path.exists() and direction_file_attrs(path).get("fingerprint") == fingerprint:
            return
        what = f"projecting {len(files)} snapshots on {t.directions}" if t.directions else f"PCA of {len(files)} snapshots"
        print(f"trajectory: {what} from {folder} (epochs {epochs[0]}..{epochs[-1]})", flush=True)
        out = _pca(cfg, model, epochs, files)
        x, y = out["directions"]
        source = f"imported {t.directions}" if t.directions else "pca"
        save_directions(path, x, y, attrs={"fingerprint": fingerprint, "directions_source": source},
                        trajectory=out["trajectory"])
        if t.export:
            names = [n for n, _ in model.named_parameters()]
            extras = {f"{k}_": out["trajectory"]["attrs"][k]
                      for k in ("explained_variance_ratio", "singular_values", "explained_variance")}
            export_original(t.export, {n: x[n] for n in names}, {n: y[n] for n in names}, extras=extras)


def _axis(spec: str, bounds: tuple[float, float]) -> str:
    """``spec``'s point count over ``bounds`` rounded outward to 3 significant digits of the extent."""
    n = len(parse_axis(spec))
    lo, hi = bounds
    step = 10.0 ** (np.floor(np.log10(hi - lo)) - 2)
    return f"{np.floor(lo / step) * step:.6g}:{np.ceil(hi / step) * step:.6g}:{n}"


def scan_config(cfg: Config, direction_file: Path, path: dict[str, Any]) -> Config:
    """The landscape section of the PCA-plane scan: the direction file, and the grid over the path."""
    L = cfg.landscape
    y_axis = L.x if L.y is None else L.y  # a trajectory is a 2D scan
    changes: dict[str, Any] = {"directions": str(direction_file), "target": None, "plane": None, "y": y_axis}
    if cfg.trajectory.range == "auto":
        bx, by = T.scan_range(np.stack([path["x"], path["y"]], axis=1), cfg.trajectory.margin)
        changes.update(x=_axis(L.x, bx), y=_axis(y_axis, by))
    return dataclasses.replace(cfg, landscape=dataclasses.replace(L, **changes))


def run_trajectory(cfg: Config, *, overwrite: bool = False) -> Optional[Path]:
    """PCA directions of the run's path, then the loss scan of their plane with the path; the surface on the writer."""
    from effrep_hpc.store.directions import read_trajectory

    t = cfg.trajectory
    backend = backend_for(cfg)
    direction_file = resolve_path(t.direction_file, cfg.run.out, "trajectory_directions.h5")
    with setup_guard(backend):
        if backend.is_writer:
            device = setup_runtime(cfg.run, local_rank())
            checkpoint = resolve_path(cfg.landscape.checkpoint, cfg.run.out, "checkpoint.pt")
            prepare_directions(cfg, load_model(checkpoint, cfg, device, "landscape.checkpoint"), direction_file)
    path = read_trajectory(direction_file)
    if path is None:
        raise UserError(f"{direction_file} holds no trajectory/ group; delete it and run again")
    scan_cfg = scan_config(cfg, direction_file, path)
    source = f"imported {t.directions}" if t.directions else "pca"
    ratios = np.asarray(path["attrs"]["explained_variance_ratio"], dtype=np.float64)

    def adjust(scan: Scan) -> None:
        scan.spec.trajectory = path
        scan.spec.attrs["directions_source"] = source
        if backend.is_writer and (backend.rank == 0 or backend.kind == "array"):
            pcs = ", ".join(f"{100 * r:.1f}%" for r in ratios)
            print(f"trajectory: {len(path['epoch'])} snapshots (epochs {int(path['epoch'][0])}..{int(path['epoch'][-1])}); "
                  f"explained variance of the 2 directions: {pcs} (sum {100 * np.nansum(ratios):.1f}%); "
                  f"largest residual off the plane {float(np.max(path['residual'])):.4g}; "
                  f"grid x={scan_cfg.landscape.x} y={scan_cfg.landscape.y}", flush=True)
            print(f"directions: {direction_file}" + (f" (original format: {t.export})" if t.export else ""), flush=True)

    surface = resolve_path(t.surface, cfg.run.out, "trajectory.h5")
    return scan_losses(scan_cfg, backend, surface, SCOPE, overwrite=overwrite, adjust=adjust)
