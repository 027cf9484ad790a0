"""Fixtures for the landscape tests: tiny models defined here, not the model zoo."""

from __future__ import annotations

import pytest

from landscape_helpers import TinyCNN, TinyMLP, make_cnn, make_mlp


@pytest.fixture
def cnn() -> TinyCNN:
    return make_cnn()


@pytest.fixture
def mlp() -> TinyMLP:
    return make_mlp()
