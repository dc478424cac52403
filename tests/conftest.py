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


#: Tests that must run one after another in one pytest-xdist worker (``--dist loadgroup``):
#: everything that starts Ray (one local cluster at a time on a 2-core machine), and the
#: real-browser tests (a JupyterLab server and Chromium each).
SERIAL_GROUPS = {
    "test_sweep.py": "ray",
    "test_sweep_cli.py": "ray",
    "test_sweep_dashboard.py": "ray",
    "test_notebooks.py::test_notebook_runs_top_to_bottom[10_sweeps]": "ray",
    "test_browser.py": "browser",
}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put each test of :data:`SERIAL_GROUPS` into its xdist group (a no-op without xdist)."""
    for item in items:
        name = item.nodeid.rsplit("/", 1)[-1]
        group = SERIAL_GROUPS.get(name) or SERIAL_GROUPS.get(name.split("::", 1)[0])
        if group is not None:
            item.add_marker(pytest.mark.xdist_group(group))
