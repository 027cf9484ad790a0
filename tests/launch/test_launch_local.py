"""Without SLURM: `effrep submit --local` runs the same array and merge through submitit's local executor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from effrep_hpc.cli import main
from effrep_hpc.config import load_config
from effrep_hpc.models import create_model
from effrep_hpc.runners.landscape import run_landscape
from effrep_hpc.store.checkpoint import save_checkpoint
from effrep_hpc.store.surface import read_surface

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "configs/demo/digits.yaml")
GRID = ("landscape.x=-1:1:4", "landscape.y=-1:1:3", "landscape.train_size=128", "landscape.test=false", "run.progress=false", "run.threads=1")


def test_local_array_and_merge_equal_the_serial_scan(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    model = create_model("digits_cnn")  # untrained weights are as good as any for comparing two scans
    save_checkpoint(tmp_path / "checkpoint.pt", {"kind": "train", "arch_name": model.arch_name, "arch": model.arch, "model": model.state_dict()})
    run_landscape(load_config(CONFIG, [f"run.out={tmp_path}", f"landscape.surface={tmp_path}/serial.h5", "dist.backend=serial", *GRID]))
    code = main(["submit", "landscape", CONFIG, f"run.out={tmp_path}", *GRID, "--local", "--array", "2", "--poll", "0.2"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "array: local jobs of 2 task(s)" in out and "3/3 job(s) completed" in out
    serial, merged = read_surface(tmp_path / "serial.h5"), read_surface(tmp_path / "surface.h5")
    assert merged["done"].all()
    for name in ("train_loss", "train_acc"):
        np.testing.assert_array_equal(merged[name], serial[name], err_msg=name)
