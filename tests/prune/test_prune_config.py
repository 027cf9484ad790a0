"""The prune section of configs: clear errors for bad values, and every shipped prune config validates."""

from __future__ import annotations

from pathlib import Path

import pytest

from effrep_hpc.config import ConfigError, load_config
from effrep_hpc.prune import planned_cost, preset_for_model

ROOT = Path(__file__).resolve().parents[2]
PAPER_CONFIGS = sorted((ROOT / "configs/paper").glob("prune_*.yaml"))
DEMO_CONFIGS = sorted((ROOT / "configs/demo").glob("prune*.yaml"))


def _problems(*overrides: str) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(None, list(overrides))
    return str(info.value)


def test_unknown_preset_names_the_close_ones_and_all_valid() -> None:
    msg = _problems("prune.preset=resnet56-c")
    assert "prune.preset: unknown pruning preset 'resnet56-c'" in msg
    assert "did you mean 'resnet56-b'" in msg and "vgg16-a" in msg


@pytest.mark.parametrize("ratio", ["1.0", "-0.1", "2", "true"])
def test_ratio_outside_0_1_is_refused(ratio: str) -> None:
    msg = _problems(f"prune.ratios={{features.0: {ratio}}}")
    assert "prune.ratios[features.0]: must be a number in [0, 1)" in msg


def test_sensitivity_ratios_criteria_and_counts_are_checked_together() -> None:
    msg = _problems(
        "prune.sensitivity_ratios=[0.5, 1.0]", "prune.sensitivity_criteria=[l1, smalest]", "prune.iterations=0",
    )
    assert "prune.sensitivity_ratios[1]: must lie in [0, 1)" in msg
    assert "prune.sensitivity_criteria: unknown pruning criterion 'smalest'" in msg
    assert "prune.iterations: must be >= 1" in msg
    assert "prune.strategy: invalid value 'greedyy'; did you mean 'greedy'?" in _problems("prune.strategy=greedyy")


def test_defaults_are_the_papers_retraining_recipe() -> None:
    cfg = load_config(None)
    assert (cfg.prune.criterion, cfg.prune.strategy) == ("l1", "independent")
    assert (cfg.prune.retrain_lr, cfg.prune.retrain_schedule, cfg.prune.retrain_epochs) == (0.001, "constant", 40)
    assert cfg.prune.sensitivity_ratios == pytest.approx([0.1 * k for k in range(1, 10)])


def test_the_paper_configs_exist_for_the_four_models() -> None:
    names = {p.name for p in PAPER_CONFIGS}
    assert {"prune_vgg16_a.yaml", "prune_resnet56_b.yaml", "prune_resnet110_b.yaml", "prune_resnet34_b.yaml"} <= names


@pytest.mark.parametrize("path", PAPER_CONFIGS + DEMO_CONFIGS, ids=lambda p: p.name)
def test_shipped_prune_configs_load_and_their_plan_fits_the_model(path: Path) -> None:
    cfg = load_config(path)
    if cfg.prune.preset:
        preset = preset_for_model(cfg.prune.preset, cfg.model.name)
        assert preset.model == cfg.model.name
    report = planned_cost(
        cfg.model.name, preset=cfg.prune.preset, ratios=cfg.prune.ratios, arch=cfg.model.kwargs,
        input_shape=cfg.data.input_shape,
    )
    assert 0 < report["flops_reduction_pct"] < 100


def test_resnet34_config_uses_imagenet_data() -> None:
    cfg = load_config(ROOT / "configs/paper/prune_resnet34_b.yaml")
    assert cfg.data.name == "imagenet" and cfg.data.image_size == 224
    assert cfg.prune.retrain_epochs == 20
