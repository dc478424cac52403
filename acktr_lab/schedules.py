"""Learning-rate schedules: the five Stable Baselines 2 schedules and SB3-style callables.

A schedule is a multiplier ``f(p)`` of the initial learning rate, where
``p ∈ [0, 1]`` is the *fraction of training done*. The five Stable Baselines 2
schedules are (written in terms of ``r = 1 - p``, the fraction remaining, which
is what SB2 compares against its thresholds)::

    constant            f(p) = 1
    linear              f(p) = r
    middle_drop         f(p) = r            if r ≥ 0.75  else 0.075
    double_linear_con   f(p) = max(1 - 2p, 0.125)
    double_middle_drop  f(p) = r            if r ≥ 0.75
                               0.075        if 0.25 ≤ r < 0.75
                               0.125        if r < 0.25

The learning rate of an update is ``lr = initial · f(p)``. When the initial learning
rate is instead a callable, it follows the Stable Baselines 3 convention: it receives
``progress_remaining = 1 - p`` and returns the learning rate itself; the named
schedule is then ignored.

Which ``p`` an update sees (:func:`progress_of`): SB2's ``Scheduler`` keeps a
counter ``step`` that ``value()`` increments *once per sample* of the batch, and
ACKTR calls ``value()`` for every sample, keeping the last value. With ``T_end``
the number of timesteps collected in this ``learn()`` call once the batch is
collected, the update therefore uses ``p = (T_end - 1) / total_timesteps``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

Schedule = Callable[[float], float]
"""A multiplier of the initial learning rate as a function of p = fraction done."""

LearningRate = float | Callable[[float], float]
"""A float, or an SB3-style callable ``progress_remaining -> learning rate``."""


def constant(p: float) -> float:
    """``f(p) = 1``."""
    del p
    return 1.0


def linear(p: float) -> float:
    """``f(p) = 1 - p``."""
    return 1.0 - p


def middle_drop(p: float) -> float:
    """``f(p) = 1 - p`` while ``1 - p ≥ 0.75``, else ``0.075`` (= 0.1 · 0.75)."""
    remaining = 1.0 - p
    if remaining < 0.75:
        return 0.75 * 0.1
    return remaining


def double_linear_con(p: float) -> float:
    """``f(p) = max(1 - 2p, 0.125)``."""
    remaining = 1.0 - 2.0 * p
    if remaining < 0.125:
        return 0.125
    return remaining


def double_middle_drop(p: float) -> float:
    """``f(p) = 1 - p`` while ``1 - p ≥ 0.75``; ``0.075`` while ``0.25 ≤ 1 - p < 0.75``;
    ``0.125`` (= 0.5 · 0.25) once ``1 - p < 0.25``."""
    remaining = 1.0 - p
    if remaining < 0.75:
        if remaining < 0.25:
            return 0.25 * 0.5
        return 0.75 * 0.1
    return remaining


SCHEDULES: dict[str, Schedule] = {
    "constant": constant,
    "linear": linear,
    "middle_drop": middle_drop,
    "double_linear_con": double_linear_con,
    "double_middle_drop": double_middle_drop,
}
"""The Stable Baselines 2 schedules by the names its ``lr_schedule`` argument accepts."""


def resolve_schedule(name_or_callable: str | Schedule) -> Schedule:
    """Return the schedule ``f(p)`` for a SB2 schedule name, or a callable unchanged.

    Raises:
        ValueError: for an unknown name (the message lists the valid ones).
        TypeError: for anything that is neither a string nor a callable.
    """
    if isinstance(name_or_callable, str):
        try:
            return SCHEDULES[name_or_callable]
        except KeyError:
            valid = ", ".join(sorted(SCHEDULES))
            raise ValueError(f"unknown learning-rate schedule {name_or_callable!r}; valid schedules: {valid}") from None
    if callable(name_or_callable):
        return name_or_callable
    raise TypeError(f"lr_schedule must be a schedule name or a callable, got {type(name_or_callable).__name__}")


def learning_rate_at(initial: LearningRate, schedule: str | Schedule, progress: float) -> float:
    """The learning rate at ``p = progress`` (fraction of training done).

    ``initial · f(p)`` for a float ``initial``; for a callable ``initial`` (SB3
    convention) ``initial(1 - p)``, overriding ``schedule``.
    """
    if callable(initial):
        return _checked("learning_rate", initial(1.0 - progress), f"progress remaining {1.0 - progress:.4g}")
    return float(initial) * _checked("lr_schedule", resolve_schedule(schedule)(progress), f"progress {progress:.4g}")


def _checked(name: str, value: Any, where: str) -> float:
    """``value``, a callable's result, as a float; ``ValueError`` naming ``name`` unless it is a
    finite number ≥ 0 (not a bool or a string)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float | np.integer | np.floating)
        or not (math.isfinite(value) and value >= 0)
    ):
        raise ValueError(f"{name}: the callable returned {value!r} at {where}; it must return a finite number ≥ 0")
    return float(value)


def progress_of(timesteps_done: int, total_timesteps: int) -> float:
    """Fraction of training done SB2 uses for the update whose batch ends at ``timesteps_done``.

    SB2's ``Scheduler.value()`` returns ``initial · f(step / total)`` and then does
    ``step += 1``; ACKTR calls it once per sample of the batch and uses the last
    value, so an update whose batch brings the count (within the current ``learn()``
    call) to ``T_end`` uses ``p = (T_end - 1) / total``. The result is clipped to
    ``[0, 1]`` (SB2 never exceeds 1 because it runs ``total // batch`` updates).

    Raises:
        ValueError: if ``total_timesteps`` is not positive.
    """
    if total_timesteps <= 0:
        raise ValueError(f"total_timesteps must be positive, got {total_timesteps}")
    p = (timesteps_done - 1) / total_timesteps
    return min(max(p, 0.0), 1.0)
