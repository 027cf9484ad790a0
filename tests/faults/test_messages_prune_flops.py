"""`effrep prune flops|layers` with a shape or layer the model does not have: one line, exit 2 (issue 11, item 3)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from effrep_hpc.errors import UserError
from effrep_hpc.models import count_flops_params, create_model
from effrep_hpc.prune.cost import planned_cost

ROOT = Path(__file__).resolve().parents[2]


def effrep(*args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "effrep_hpc.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def one_error_line(proc: subprocess.CompletedProcess) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and not proc.stdout, proc.stderr
    return lines[0]


def test_flops_at_an_input_shape_the_model_cannot_take() -> None:
    line = one_error_line(effrep("prune", "flops", "--model", "vgg16", "--preset", "vgg16-a", "--input-shape", "3,64,64"))
    assert line.startswith("error: vgg16 cannot take input shape 3x64x64 (")
    assert line.endswith("; it takes 3x32x32 (its registered input shape)")


@pytest.mark.parametrize(("shape", "why"), [((1, 32, 32), "channel"), ((3, 64, 64), "reduction dim")])
def test_counting_flops_checks_the_shape_against_the_model(shape: tuple[int, ...], why: str) -> None:
    with pytest.raises(UserError, match=rf"^vgg16 cannot take input shape {'x'.join(map(str, shape))} \(.*{why}.*\); it takes 3x32x32"):
        planned_cost("vgg16", preset="vgg16-a", input_shape=shape)
    with torch.device("meta"):
        model = create_model("vgg16")
    with pytest.raises(UserError, match="cannot take input shape"):
        count_flops_params(model, shape)
    assert count_flops_params(model, (3, 32, 32))[0] == 313_463_808, "the registered shape still counts as before"


def test_ratios_for_a_model_without_conv_layers() -> None:
    line = one_error_line(effrep("prune", "flops", "--model", "digits_mlp", "--ratio", "hidden.0=0.5"))
    assert line.startswith("error: digits_mlp has no prunable conv layers (")
    with pytest.raises(ValueError, match="^digits_mlp has no prunable conv layers"):
        planned_cost("digits_mlp", ratios={1: 0.5})
    proc = effrep("prune", "layers", "--model", "digits_mlp")
    assert proc.returncode == 0 and proc.stdout.strip() == "digits_mlp has no prunable conv layers (filter pruning removes conv filters)"
