"""Run identity: resuming an output with any result-changing config difference is refused, naming the key, file untouched."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

import effrep_hpc.runners.landscape as landscape_runner
from effrep_hpc.config import load_config
from effrep_hpc.runners.landscape import run_landscape
from effrep_hpc.runners.quant_sweep import expand_sweep
from effrep_hpc.runners.sensitivity import run_sensitivity
from effrep_hpc.runners.train import run_train
from effrep_hpc.store.h5 import open_readonly
from effrep_hpc.store.sweep import prepare_sweep

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "configs/demo/digits.yaml"
BASE = ["run.progress=false", "run.threads=1", "dist.backend=serial"]
SCAN = ["landscape.x=-1:1:4", "landscape.y=-1:1:3", "landscape.train_size=64", "landscape.tile_size=2", "landscape.test=false"]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("trained")
    run_train(load_config(CONFIG, [f"run.out={out}", "train.epochs=1", "train.milestones=[1]", *BASE]))
    return out


@pytest.fixture(scope="module")
def partial(trained: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A landscape scan killed after two of its six tiles."""
    surface = tmp_path_factory.mktemp("partial") / "s.h5"
    real, calls = landscape_runner.evaluate_points, []

    def dying(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        calls.append(1)
        return real(*args, **kwargs)

    landscape_runner.evaluate_points = dying
    try:
        with pytest.raises(KeyboardInterrupt):
            run_landscape(load_config(CONFIG, [f"run.out={trained}", f"landscape.surface={surface}", *BASE, *SCAN]))
    finally:
        landscape_runner.evaluate_points = real
    with open_readonly(surface) as f:
        assert int(f["done"][()].sum()) == 4  # two tiles of two points
    return surface


@pytest.mark.parametrize(
    "change, key",
    [
        ("landscape.loss=mse", "landscape.loss"),
        ("landscape.bn=recompute", "landscape.bn"),
        ("landscape.train_size=32", "landscape.train_size"),
        ("data.train_size=500", "data.train_size"),
    ],
)
def test_landscape_resume_with_a_changed_result_key_is_refused(trained: Path, partial: Path, change: str, key: str) -> None:
    before = digest(partial)
    cfg = load_config(CONFIG, [f"run.out={trained}", f"landscape.surface={partial}", *BASE, *SCAN, change])
    with pytest.raises(ValueError, match=rf"cannot be resumed.*{key}: .*--overwrite"):
        run_landscape(cfg)
    assert digest(partial) == before
    assert not Path(str(partial) + ".lock").exists()


def test_landscape_resume_refusal_is_exit_2_naming_the_key(trained: Path, partial: Path) -> None:
    before = digest(partial)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    args = ["landscape", str(CONFIG), f"run.out={trained}", f"landscape.surface={partial}", *BASE, *SCAN, "landscape.loss=mse"]
    proc = subprocess.run([sys.executable, "-m", "effrep_hpc.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True)
    assert proc.returncode == 2, proc.stderr
    assert "landscape.loss: 'ce' -> 'mse'" in proc.stderr and "Traceback" not in proc.stderr
    assert digest(partial) == before


def test_landscape_resume_with_only_non_result_keys_changed_continues(trained: Path, partial: Path, tmp_path: Path) -> None:
    copy = tmp_path / "s.h5"
    copy.write_bytes(partial.read_bytes())
    cfg = load_config(CONFIG, [f"run.out={trained}", f"landscape.surface={copy}", *BASE, *SCAN,
                               "landscape.points_per_pass=1", "landscape.tile_size=3", "run.progress=true"])
    assert run_landscape(cfg) == copy
    with open_readonly(copy) as f:
        assert bool(f["done"][()].all())


def test_sensitivity_resume_with_a_changed_result_key_is_refused(trained: Path, tmp_path: Path) -> None:
    path = tmp_path / "sens.h5"
    base = [f"run.out={trained}", f"prune.sensitivity={path}", *BASE, "prune.layers=[features.0]",
            "prune.sensitivity_ratios=[0.5]", "prune.eval_size=64"]
    run_sensitivity(load_config(CONFIG, base))
    before = digest(path)
    for change, key in (("prune.eval_size=32", "prune.eval_size"), ("train.loss=mse", "train.loss"), ("prune.seed=3", "prune.seed")):
        with pytest.raises(ValueError, match=rf"cannot be resumed.*{key}: .*--overwrite"):
            run_sensitivity(load_config(CONFIG, [*base, change]))
        assert digest(path) == before
    # a key that only retraining reads does not matter while cells are not retrained
    assert run_sensitivity(load_config(CONFIG, [*base, "train.lr=0.5"])) == path


def test_sweep_resume_with_a_changed_result_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "sweep.h5"
    sweep = ["quant.sweep.algorithms=[bc,sr]", "quant.sweep.bits=[1]", "train.epochs=2"]
    plan = expand_sweep(load_config(None, sweep))
    prepare_sweep(path, [spec for spec, _ in plan], config_yaml="", epochs=2)
    before = digest(path)
    changed = expand_sweep(load_config(None, [*sweep, "quant.delta_scale=2.0"]))
    with pytest.raises(ValueError, match=r"run_0000 was made with a different config \(quant.delta_scale: 1.0 -> 2.0\)"):
        prepare_sweep(path, [spec for spec, _ in changed], config_yaml="", epochs=2)
    assert digest(path) == before
    # where only outputs move (a non-result key), the sweep is the same sweep
    moved = expand_sweep(load_config(None, [*sweep, "data.cache_dir=/elsewhere", "train.keep_every=0"]))
    assert prepare_sweep(path, [spec for spec, _ in moved], config_yaml="", epochs=2) == ["pending", "pending"]
