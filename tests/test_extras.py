"""Extras: a missing one is named with the pip line that adds it."""

from __future__ import annotations

import importlib.util

import pytest

from acktr_lab import extras


def test_installed_extras_need_nothing() -> None:
    # the test environment installs every extra (pyproject's tests extra)
    for name in ("box2d", "atari", "mujoco", "notebooks"):
        assert extras.missing_extra(name) is None, name


def test_a_missing_extra_names_its_modules_and_the_pip_line(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(extras.importlib.util, "find_spec", lambda name: None if name == "mujoco" else real(name))
    assert extras.missing_extra("mujoco") == "this needs mujoco: pip install 'acktr_lab[mujoco]'"
    with pytest.raises(ValueError, match="unknown extra 'gpu'"):
        extras.missing_extra("gpu")
