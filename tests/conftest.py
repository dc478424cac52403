"""Shared test settings and fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Quiet TensorFlow's C++ logging. conftest.py is imported before any test
# module, so this is set before TensorFlow is first imported.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared_fixtures() -> Path:
    """``<repo>/../shared/fixtures``: reference files that live beside the repo."""
    path = REPO.parent / "shared" / "fixtures"
    if not path.is_dir():
        pytest.skip("../shared/fixtures not present (a user's clone has none)")
    return path
