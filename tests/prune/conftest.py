"""Fixtures for the pruning tests: models with non-trivial BN statistics, so masking errors show."""

from __future__ import annotations

import pytest

from prune_helpers import calibrated


@pytest.fixture
def calibrate():  # noqa: ANN201 - the helper itself
    return calibrated
