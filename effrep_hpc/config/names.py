"""Torch-free name tables the config checks use, so loading a config never imports torch.

``tests/test_config.py`` checks each table against the registry it mirrors (models, criteria,
presets, algorithms), so a model added to the zoo but not here fails a test, not a user.
"""

from __future__ import annotations

MODEL_NAMES: tuple[str, ...] = (
    "digits_cnn", "digits_mlp", "digits_vgg", "mnist1d_net",
    "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "resnet20_noshort", "resnet32_noshort", "resnet44_noshort", "resnet56_noshort", "resnet110_noshort",
    "wrn56_2", "wrn56_4", "wrn56_8", "wrn56_2_noshort", "wrn56_4_noshort", "wrn56_8_noshort",
    "resnet18", "resnet34",
    "vgg9", "vgg16",
    *(f"{data}_resnet{depth}{short}" for data in ("digits", "mnist1d") for depth in (20, 56, 110) for short in ("", "_noshort")),
)
