"""What every runner needs: device and threads, the launch's torch.distributed world, data, checkpoints, progress."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import torch

from effrep_hpc.config import RunConfig
from effrep_hpc.dist import Backend, get_backend
from effrep_hpc.dist import env as envmod
from effrep_hpc.errors import UserError


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) of a torchrun/srun launch; (0, 1, local rank) when not launched so."""
    envmod.check_step(advice="export RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT per task (slurm/train-ddp.sbatch)")
    if envmod.torch_world_size() <= 1:
        return 0, 1, envmod.local_rank()
    return (*envmod.torch_rank_and_size(), envmod.local_rank())


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    """Resolve ``auto`` to the CUDA device of this local rank when CUDA is present, else the CPU."""
    if spec == "auto":
        return torch.device("cuda", local_rank % torch.cuda.device_count()) if torch.cuda.is_available() else torch.device("cpu")
    device = torch.device(spec)
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if device.type == "cuda" and (device.index or 0) >= count:
        raise UserError(f"run.device={spec} but this machine has {count} CUDA device(s); use run.device=auto or cpu")
    return device


def setup_runtime(run: RunConfig, local_rank: int = 0) -> torch.device:
    """Apply threads (run.threads=0: this rank's share of the cores, see dist.env) and determinism; return the device."""
    threads, note = envmod.thread_choice(run.threads)
    torch.set_num_threads(threads)
    if note:
        print(note, file=sys.stderr, flush=True)
    if run.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return pick_device(run.device, local_rank)


def init_process_group(device: torch.device) -> Optional[Backend]:
    """Join torch.distributed (dist/'s torch backend) when launched with WORLD_SIZE > 1; None otherwise."""
    if envmod.torch_world_size() <= 1:
        return None
    return get_backend("torch", backend="nccl" if device.type == "cuda" else "gloo")


def progress(total: int, desc: str, *, enabled: bool = True, unit: str = "it", initial: int = 0) -> Any:
    """A tqdm bar on stderr with rate and ETA; a no-op object when disabled (non-zero ranks)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5)


def load_model(
    path: Path, cfg: Any, device: torch.device, setting: str = "the checkpoint path", num_classes: Optional[int] = None
) -> torch.nn.Module:
    """Rebuild a checkpoint's model (possibly a pruned one) from its arch spec, checking it is the configured one.

    With ``num_classes`` (the data's), a classifier for another number of classes is refused too.
    """
    from effrep_hpc.models import rebuild_model
    from effrep_hpc.store.checkpoint import load_checkpoint

    state = dict(load_checkpoint(path))
    arch_name = state.get("arch_name") or cfg.model.name
    if arch_name != cfg.model.name:
        raise ValueError(f"checkpoint {path} holds a {arch_name!r} model but the config says model.name={cfg.model.name!r}; "
                         f"set model.name={arch_name} (or point {setting} at a {cfg.model.name} checkpoint)")
    state.update(arch_name=arch_name, arch=dict(state.get("arch") or cfg.model.kwargs))
    try:
        model = rebuild_model(state, path)
    except (RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"checkpoint {path} does not fit a {arch_name} built from {state['arch']}: {first}") from None
    out_features = getattr(model, "arch", {}).get("num_classes")
    if num_classes is not None and out_features is not None and int(out_features) != num_classes:
        raise ValueError(f"the model in {path} predicts {out_features} classes but data {cfg.data.name!r} has {num_classes}")
    return model.to(device).eval()


def dataset_from_config(cfg: Any, device: torch.device) -> Any:
    """Load the dataset that ``cfg.data`` names, onto ``device``."""
    from effrep_hpc.data import load_dataset

    d = cfg.data
    keys = ("train_size", "test_size", "num_classes", "image_size")
    extra: dict[str, Any] = {k: getattr(d, k) for k in keys if getattr(d, k) is not None}
    if d.input_shape is not None:
        extra["input_shape"] = tuple(d.input_shape)
    return load_dataset(d.name, root=d.root, seed=d.seed, device=device, cache_dir=d.cache_dir, **extra)


def resolve_path(value: Optional[str], out: str, default_name: str) -> Path:
    """``value`` if given, else ``<out>/<default_name>``."""
    return Path(value) if value else Path(out) / default_name


def activation_images(cfg: Any, dataset: Any) -> torch.Tensor:
    """A seeded sample of ``prune.activation_images`` training inputs (what activation criteria measure)."""
    from effrep_hpc.data.base import seeded_subset

    n = min(cfg.prune.activation_images, dataset.num_train)
    return seeded_subset(dataset.x_train, dataset.y_train, n, seed=cfg.prune.seed, stream="prune-activations", what="images")[0]
