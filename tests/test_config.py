"""Config loading: YAML + overrides into typed dataclasses, with errors a user can act on."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from effrep_hpc.config import Config, ConfigError, from_yaml, load_config, to_yaml

ROOT = Path(__file__).resolve().parents[1]


def test_overrides_are_typed(tmp_path: Path) -> None:
    cfg = load_config(ROOT / "configs/demo/digits.yaml", ["train.lr=0.05", "data.name=mnist1d", "train.milestones=[2, 4]", "landscape.y=null"])
    assert isinstance(cfg, Config)
    assert cfg.train.lr == 0.05 and isinstance(cfg.train.lr, float)
    assert cfg.data.name == "mnist1d"
    assert cfg.train.milestones == [2, 4]
    assert cfg.landscape.y is None
    # an int given for a float key is accepted and converted
    assert isinstance(load_config(None, ["train.lr=1"]).train.lr, float)


def test_resolved_config_round_trips() -> None:
    cfg = load_config(ROOT / "configs/demo/digits.yaml", ["train.epochs=3"])
    assert from_yaml(to_yaml(cfg)) == cfg


def test_unknown_key_names_closest() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.lrr=0.1"])
    msg = str(info.value)
    assert "train.lrr" in msg and "did you mean train.lr?" in msg and "valid keys" in msg


def test_unknown_section_and_bad_choice_reported_together() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["trian.lr=0.1", "train.optimizer=sgdd"])
    msg = str(info.value)
    assert len(info.value.problems) == 2
    assert "did you mean train?" in msg
    assert "did you mean 'sgd'?" in msg and "adam" in msg


def test_wrong_type_and_impossible_values() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.epochs=three"])
    assert "train.epochs: expected an integer" in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config(None, ["train.lr=-1", "landscape.x=1:-1:5"])
    msg = str(info.value)
    assert "train.lr: must be > 0" in msg and "landscape.x" in msg and "lo <= hi" in msg


def test_unknown_model_lists_close_names() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, ["model.name=resnet5"])
    assert "resnet56" in str(info.value)


def test_cli_config_error_exit_code_and_nothing_written(tmp_path: Path) -> None:
    out = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "effrep_hpc.cli", "train", str(ROOT / "configs/demo/digits.yaml"), f"run.out={out}", "train.lrr=0.1"],
        capture_output=True, text=True, cwd=ROOT, timeout=120,
    )
    assert proc.returncode == 2
    assert "train.lrr" in proc.stderr and "train.lr" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_loading_a_config_and_the_presets_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from effrep_hpc.config import load_config\n"
        "import effrep_hpc.prune.presets, effrep_hpc.experiments, effrep_hpc.landscape.grid\n"
        "load_config('configs/demo/digits.yaml', ['quant.sweep.algorithms=[bc,sr]', 'prune.preset=vgg16-a'])\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_torch_free_name_tables_match_the_registries() -> None:
    from effrep_hpc.config.names import MODEL_NAMES
    from effrep_hpc.models import list_models
    from effrep_hpc.prune import criteria, presets
    from effrep_hpc.quant import algorithms

    assert sorted(MODEL_NAMES) == list_models()
    assert criteria.CRITERIA == ("l1", "l2", "random", "largest", "mean_mean", "mean_std", "mean_l1", "mean_l2", "var_l2")
    assert set(presets.PRESETS) and all(p.model in MODEL_NAMES for p in presets.PRESETS.values())
    assert algorithms.ALGORITHMS["sr-adam"].rule == "sr"


@pytest.mark.parametrize("package", ["effrep_hpc.prune", "effrep_hpc.quant", "effrep_hpc.landscape"])
def test_every_lazily_exported_name_resolves(package: str) -> None:
    import importlib

    mod = importlib.import_module(package)
    for name in mod.__all__:
        assert getattr(mod, name) is not None, name


def test_result_keys_are_named_in_differences() -> None:
    from effrep_hpc.config import Scope, identity_differences

    scope = Scope("landscape", ("data", "landscape"))
    a = load_config(None, [])
    b = load_config(None, ["landscape.loss=mse", "landscape.tile_size=7", "run.out=elsewhere", "data.seed=3"])
    assert identity_differences(to_yaml(a), b, scope) == ["data.seed: 0 -> 3", "landscape.loss: 'ce' -> 'mse'"]
    # a file written before a key existed compares against that key's default
    assert identity_differences("landscape: {x: '-1:1:25'}\n", a, scope) == []
