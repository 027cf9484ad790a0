"""The quant config block and sweep expansion: paper and demo configs validate, typos are caught, FP runs once."""

from __future__ import annotations

from pathlib import Path

import pytest

from effrep_hpc.config import ConfigError, load_config
from effrep_hpc.runners.quant_sweep import expand_sweep

ROOT = Path(__file__).resolve().parents[2]
PAPER = sorted((ROOT / "configs/paper").glob("quant_*.yaml"))
DEMO = sorted((ROOT / "configs/demo").glob("quant*.yaml"))


def test_the_four_paper_configs_exist() -> None:
    names = {p.stem for p in PAPER}
    assert names == {"quant_cifar10_vgg9", "quant_cifar10_resnet56", "quant_cifar10_wrn56_2", "quant_imagenet_resnet18"}


@pytest.mark.parametrize("path", PAPER + DEMO, ids=lambda p: p.name)
def test_configs_load_validate_and_expand(path: Path, tmp_path: Path) -> None:
    cfg = load_config(path)
    plan = expand_sweep(cfg)
    assert plan, "every config expands to at least one run"
    spec, run_cfg = plan[-1]
    assert run_cfg.quant.algorithm == spec.key["algorithm"] and run_cfg.train.lr == spec.key["lr"]
    # a run's stored YAML is a config of its own that reproduces the run (no sweep inside)
    (tmp_path / "run.yaml").write_text(spec.config_yaml)
    again = load_config(tmp_path / "run.yaml")
    assert again.quant.sweep.algorithms == [] and again.train.seed == spec.key["seed"]
    assert (again.quant.algorithm, again.quant.bits, again.train.batch_size) == (
        spec.key["algorithm"], spec.key["bits"], spec.key["batch_size"]
    )


def test_paper_configs_use_the_papers_models() -> None:
    models = {load_config(p).model.name for p in PAPER}
    assert models == {"vgg9", "resnet56", "wrn56_2", "resnet18"}


def test_expansion_order_and_fp_runs_once_at_float_width() -> None:
    cfg = load_config(None, ["quant.sweep.algorithms=[fp, bc, sr]", "quant.sweep.bits=[1, 2]", "quant.sweep.seeds=[0, 1]"])
    keys = [spec.key for spec, _ in expand_sweep(cfg)]
    assert len(keys) == 2 + 4 + 4
    expected = [("fp", 32, 0), ("fp", 32, 1), ("bc", 1, 0), ("bc", 1, 1)]
    assert [(k["algorithm"], k["bits"], k["seed"]) for k in keys[:4]] == expected
    assert [spec.name for spec, _ in expand_sweep(cfg)][:2] == ["run_0000", "run_0001"]


def test_run_config_ignores_how_the_sweep_is_run() -> None:
    a = load_config(None, ["quant.sweep.seeds=[0, 1]", "run.threads=1", "dist.backend=serial"])
    b = load_config(None, ["quant.sweep.seeds=[0, 1]", "run.progress=false", "quant.lock_timeout=5"])
    assert [s.config_yaml for s, _ in expand_sweep(a)] == [s.config_yaml for s, _ in expand_sweep(b)]


@pytest.mark.parametrize(
    "overrides,message",
    [
        (["quant.algorithm=bcadam"], "did you mean 'bc-adam'"),
        (["quant.sweep.algorithms=[sr, rr]"], r"quant.sweep.algorithms\[1\]: unknown algorithm 'rr'"),
        (["quant.bits=32"], r"quant.bits: must be in 1..16"),
        (["quant.sweep.bits=[1, 40]"], r"quant.sweep.bits: every entry must be an integer in 1..16"),
        (["quant.sweep.lr=[0.1, 0]"], r"quant.sweep.lr: every entry must be > 0"),
        (["quant.sweep.seeds=[1, 1]"], "repeated entries"),
        (["quant.delta_rule=fixed"], "needs a positive quant.delta"),
        (["quant.delta=0.5"], "only used with quant.delta_rule=fixed"),
        (["dist.task_id=1"], "only used with dist.backend=array"),
        (["dist.backend=array", "dist.task_id=3", "dist.num_tasks=2"], r"dist.task_id: must be in 0..1"),
        (["quant.sweeps.bits=[1]"], "did you mean quant.sweep"),
    ],
)
def test_bad_quant_settings_are_reported(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, overrides)


def test_fp_accepts_the_float_width() -> None:
    assert load_config(None, ["quant.algorithm=fp", "quant.bits=32"]).quant.bits == 32
