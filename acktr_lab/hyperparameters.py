"""Validation of ACKTR's hyperparameters: one place, one clear error per bad value."""

from __future__ import annotations

import math
from typing import Any

from acktr_lab.schedules import SCHEDULES

#: What ``trainer.set`` may change while training runs.
LIVE_HYPERPARAMETERS = (
    "learning_rate",
    "ent_coef",
    "vf_coef",
    "vf_fisher_coef",
    "kfac_clip",
    "max_grad_norm",
    "gamma",
    "gae_lambda",
    "lr_schedule",
)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or (not isinstance(value, (int, float)) and not hasattr(value, "__float__")):
        raise ValueError(f"{name} must be a number, got {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def validate(name: str, value: Any) -> Any:
    """Return ``value`` normalised, or raise ``ValueError`` naming ``name`` and the problem."""
    if name == "learning_rate":
        if callable(value):
            return value
        number = _number(name, value)
        if number <= 0:
            raise ValueError(f"learning_rate must be > 0 (or a callable of the progress remaining), got {value!r}")
        return number
    if name == "lr_schedule":
        if callable(value):
            return value
        if value not in SCHEDULES:
            raise ValueError(f"unknown lr_schedule {value!r}; choose one of {sorted(SCHEDULES)} or pass a callable")
        return value
    if name == "gae_lambda":
        if value is None:
            return None
        number = _number(name, value)
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"gae_lambda must be in [0, 1] or None, got {value!r}")
        return number
    if name == "gamma":
        number = _number(name, value)
        if not 0.0 <= number <= 1.0:
            raise ValueError(f"gamma must be in [0, 1], got {value!r}")
        return number
    if name in ("ent_coef", "vf_coef", "vf_fisher_coef"):
        number = _number(name, value)
        if number < 0:
            raise ValueError(f"{name} must be ≥ 0, got {value!r}")
        return number
    if name in ("kfac_clip", "max_grad_norm"):
        number = _number(name, value)
        if number <= 0:
            raise ValueError(f"{name} must be > 0, got {value!r}")
        return number
    if name in ("n_steps", "kfac_update", "n_envs"):
        return _positive_int(name, value)
    raise ValueError(f"unknown hyperparameter {name!r}")


def validate_live(values: dict[str, Any]) -> dict[str, Any]:
    """Validate every value of a ``trainer.set`` call before any is applied."""
    unknown = sorted(set(values) - set(LIVE_HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"cannot set {unknown} while training; live hyperparameters are {list(LIVE_HYPERPARAMETERS)}")
    return {name: validate(name, value) for name, value in values.items()}


def describe(value: Any) -> Any:
    """A JSON- and plot-friendly form of a hyperparameter value (callables by name)."""
    if callable(value):
        return getattr(value, "__qualname__", getattr(value, "__name__", repr(value)))
    return value
