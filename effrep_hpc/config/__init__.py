"""Typed configs: YAML files and dotted ``key=value`` overrides become nested dataclasses.

One module per section (``data``, ``model``, ``train``, ``run``, ``dist``, ``landscape``, ``hessian``, ``trajectory``,
``prune``, ``quant``, ``launch``, ``study``); :mod:`.base` builds and checks them, :mod:`.identity` decides whether a stored
output belongs to a config. Every problem in a config is reported in one :class:`ConfigError` naming
the key, the closest valid key and the valid choices, before any file is created. Importing this
package does not import torch (names are checked against the torch-free tables of :mod:`.names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from effrep_hpc.config.base import ConfigError, build, load, merge_overrides, parse_override, to_dict, to_yaml, yaml_load
from effrep_hpc.config.data import DataConfig
from effrep_hpc.config.dist import DistConfig
from effrep_hpc.config.hessian import HessianConfig
from effrep_hpc.config.identity import ResumeMismatch, Scope, check_resume, identity, identity_differences
from effrep_hpc.config.landscape import LandscapeConfig
from effrep_hpc.config.launch import LaunchConfig
from effrep_hpc.config.model import ModelConfig
from effrep_hpc.config.prune import PruneConfig
from effrep_hpc.config.quant import QuantConfig, QuantSweepConfig
from effrep_hpc.config.run import RunConfig
from effrep_hpc.config.study import StudyConfig, study_problems
from effrep_hpc.config.train import TrainConfig
from effrep_hpc.config.trajectory import TrajectoryConfig


@dataclass
class Config:
    """The root config: one section per concern; each experiment reads the sections it needs."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    run: RunConfig = field(default_factory=RunConfig)
    dist: DistConfig = field(default_factory=DistConfig)
    landscape: LandscapeConfig = field(default_factory=LandscapeConfig)
    hessian: HessianConfig = field(default_factory=HessianConfig)
    trajectory: TrajectoryConfig = field(default_factory=TrajectoryConfig)
    prune: PruneConfig = field(default_factory=PruneConfig)
    quant: QuantConfig = field(default_factory=QuantConfig)
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    study: StudyConfig = field(default_factory=StudyConfig)  # `effrep study`; the other sections are its base

    def _check(self) -> list[str]:
        return study_problems(self)  # builds every variant's config: a bad variant key fails at load


def from_dict(data: dict[str, Any], cls: type = Config) -> Any:
    """Build and validate a config dataclass from a mapping; raise ConfigError listing all problems."""
    return build(data, cls)


def load_config(path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), cls: type = Config) -> Config:
    """Load a YAML config file (or the defaults when ``path`` is None) and apply ``key=value`` overrides."""
    cfg: Config = load(path, overrides, cls)
    return cfg


def from_yaml(text: str, cls: type = Config) -> Any:
    """Rebuild a config from :func:`to_yaml` text (e.g. from a checkpoint or HDF5 attribute)."""
    return build(yaml_load(text) or {}, cls)


__all__ = [
    "Config", "ConfigError", "DataConfig", "DistConfig", "HessianConfig", "LandscapeConfig", "LaunchConfig", "ModelConfig",
    "PruneConfig", "QuantConfig", "QuantSweepConfig", "ResumeMismatch", "RunConfig", "Scope", "StudyConfig", "TrainConfig",
    "TrajectoryConfig",
    "check_resume", "from_dict", "from_yaml", "identity", "identity_differences", "load_config", "merge_overrides",
    "parse_override", "to_dict", "to_yaml", "yaml_load",
]
