"""`effrep train`: config -> data and model -> epochs -> checkpoint and metrics, resumable after a kill.

Every epoch ends with an atomic checkpoint holding model, optimizer, schedule, RNG states and the
config, so re-running the same command continues from the last finished epoch and, on CPU with a
fixed seed, ends with exactly the weights of an uninterrupted run.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch


from effrep_hpc.config import Config, to_dict, to_yaml, yaml_load
from effrep_hpc.data import augment, load_dataset
from effrep_hpc.models import create_model
from effrep_hpc.runners.common import env_world, init_process_group, progress, report, setup_runtime
from effrep_hpc.store.checkpoint import load_checkpoint, save_checkpoint
from effrep_hpc.store.curves import MetricsFile
from effrep_hpc.train.loop import evaluate, train_epoch
from effrep_hpc.train.optim import build_optimizer, build_scheduler

METRIC_FIELDS = ["epoch", "train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds"]
# Sections whose change makes an existing checkpoint a different experiment.
RESULT_SECTIONS = ("data", "model", "train")


@dataclass
class TrainOutputs:
    """Where a training run wrote its results, and its final numbers."""

    checkpoint: Path
    metrics: Path
    weights_dir: Path
    final: dict[str, float]


def dataset_from_config(cfg: Config, device: torch.device) -> Any:
    """Load the dataset that ``cfg.data`` names, onto ``device``."""
    d = cfg.data
    extra: dict[str, Any] = {}
    for key in ("train_size", "test_size", "num_classes", "image_size"):
        if getattr(d, key) is not None:
            extra[key] = getattr(d, key)
    if d.input_shape is not None:
        extra["input_shape"] = tuple(d.input_shape)
    return load_dataset(d.name, root=d.root, seed=d.seed, device=device, cache_dir=d.cache_dir, **extra)


def model_from_config(cfg: Config, num_classes: int) -> torch.nn.Module:
    """Build the model that ``cfg.model`` names for ``num_classes`` classes."""
    return create_model(cfg.model.name, num_classes=num_classes, **cfg.model.kwargs)


def config_differences(old_yaml: str, new: Config, sections: tuple[str, ...] = RESULT_SECTIONS) -> list[str]:
    """Dotted keys whose values differ between a stored config and ``new``, within ``sections``."""
    old = yaml_load(old_yaml) or {}
    cur = to_dict(new)
    diffs: list[str] = []

    def walk(a: Any, b: Any, prefix: str) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b)):
                walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        elif a != b:
            diffs.append(f"{prefix}: {a!r} -> {b!r}")

    for section in sections:
        walk(old.get(section), cur.get(section), section)
    return diffs


def _clear_outputs(paths: list[Path]) -> None:
    for p in paths:
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _weights_payload(model: torch.nn.Module, epoch: int, config_yaml: str) -> dict[str, Any]:
    return {
        "kind": "weights",
        "arch_name": getattr(model, "arch_name", None),
        "arch": getattr(model, "arch", None),
        "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "epoch": epoch,
        "config": config_yaml,
    }


def run_train(cfg: Config, *, overwrite: bool = False) -> TrainOutputs:
    """Train (or resume training) the model of ``cfg``; return the output paths and final metrics."""
    rank, world, local = env_world()
    device = setup_runtime(cfg.run, local)
    group = init_process_group(device)
    distributed = group is not None
    is_main = rank == 0
    out = Path(cfg.run.out)
    ckpt_path, metrics_path, weights_dir = out / "checkpoint.pt", out / "metrics.h5", out / "weights"
    config_yaml = to_yaml(cfg)
    t = cfg.train

    state = None
    if ckpt_path.exists() and not overwrite:
        state = load_checkpoint(ckpt_path)
        diffs = config_differences(state.get("config", ""), cfg)
        if diffs:
            raise ValueError(
                f"{ckpt_path} belongs to a run with a different config ({'; '.join(diffs)}). "
                f"Resume with the same config, choose another run.out, or pass --overwrite to start over."
            )
    elif overwrite and is_main:
        _clear_outputs([ckpt_path, metrics_path, weights_dir])
    if group is not None:
        group.barrier()  # rank 0 cleared old outputs before anyone reads them

    dataset = dataset_from_config(cfg, device)
    torch.manual_seed(t.seed)  # model initialisation is part of the seeded experiment
    model = model_from_config(cfg, dataset.num_classes).to(device)
    optimizer = build_optimizer(
        model.parameters(), t.optimizer, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay
    )
    scheduler = build_scheduler(optimizer, t.schedule, epochs=t.epochs, milestones=t.milestones, gamma=t.gamma)
    generator = torch.Generator().manual_seed(t.seed)
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start_epoch = int(state["epoch"])

    net: torch.nn.Module = model
    if distributed:
        if device.type == "cuda":
            # Statistics over the global batch, as in one process. SyncBatchNorm exists only on GPUs:
            # on CPU each process normalises with its own shard's statistics (standard DDP).
            net = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)

    aug_gen = generator if device.type == "cpu" else torch.Generator(device=device).manual_seed(t.seed + 1)
    aug = (lambda xb: augment(xb, generator=aug_gen)) if cfg.data.augment else None

    metrics = (
        MetricsFile(metrics_path, config_yaml=config_yaml, fields=METRIC_FIELDS, epochs=t.epochs, resume=state is not None)
        if is_main
        else None
    )
    final: dict[str, float] = dict(state.get("final", {})) if state is not None else {}
    try:
        if is_main and t.keep_every > 0 and start_epoch == 0:
            save_checkpoint(weights_dir / "epoch_0000.pt", _weights_payload(model, 0, config_yaml))
        bar = progress(t.epochs, f"train {cfg.model.name}", enabled=is_main and cfg.run.progress, unit="epoch", initial=start_epoch)
        for epoch in range(start_epoch, t.epochs):
            began = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            tr = train_epoch(
                net, optimizer, dataset.x_train, dataset.y_train, batch_size=t.batch_size,
                generator=generator, loss=t.loss, augment=aug, rank=rank, world=world,
            )
            scheduler.step()
            te = evaluate(net, dataset.x_test, dataset.y_test, loss=t.loss, rank=rank, world=world)
            sums = torch.tensor([*tr, *te], dtype=torch.float64)
            if distributed:
                torch.distributed.all_reduce(sums)
            tl, tc, tn, el, ec, en = sums.tolist()
            final = {
                "epoch": epoch + 1,
                "train_loss": tl / tn,
                "train_acc": 100.0 * tc / tn,
                "test_loss": el / en,
                "test_acc": 100.0 * ec / en,
                "lr": lr,
                "seconds": time.perf_counter() - began,
            }
            if is_main:
                assert metrics is not None
                metrics.write_epoch(epoch, final)
                if t.keep_every > 0 and ((epoch + 1) % t.keep_every == 0 or epoch + 1 == t.epochs):
                    save_checkpoint(weights_dir / f"epoch_{epoch + 1:04d}.pt", _weights_payload(model, epoch + 1, config_yaml))
                save_checkpoint(
                    ckpt_path,
                    {
                        "kind": "train",
                        "arch_name": getattr(model, "arch_name", cfg.model.name),
                        "arch": getattr(model, "arch", None),
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "generator": generator.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "epoch": epoch + 1,
                        "config": config_yaml,
                        "final": final,
                    },
                )
            bar.set_postfix(loss=f"{final['train_loss']:.3f}", test_acc=f"{final['test_acc']:.1f}", refresh=False)
            bar.update(1)
        bar.close()
    finally:
        if metrics is not None:
            metrics.close()
    if group is not None:
        group.barrier()
        group.close()
    return TrainOutputs(checkpoint=ckpt_path, metrics=metrics_path, weights_dir=weights_dir, final=final)


def print_outputs(outputs: TrainOutputs) -> None:
    """Print the final metrics and where every output went (rank 0 only)."""
    rank, _, _ = env_world()
    if rank != 0:
        return
    f = outputs.final
    if f:
        print(
            f"epoch {int(f['epoch'])}: train loss {f['train_loss']:.4f} acc {f['train_acc']:.2f}%  "
            f"test loss {f['test_loss']:.4f} acc {f['test_acc']:.2f}%",
            flush=True,
        )
    report("metrics", outputs.metrics)
    if outputs.weights_dir.exists():
        report("weights", outputs.weights_dir)
    report("checkpoint", outputs.checkpoint)
