"""Learning-rate schedules against their formulas and against SB2's Scheduler loop."""

from __future__ import annotations

import pytest

from acktr_lab.schedules import (
    SCHEDULES,
    learning_rate_at,
    progress_of,
    resolve_schedule,
)

POINTS = [i / 400 for i in range(401)] + [0.25, 0.2500001, 0.2499999, 0.4375, 0.5, 0.75]


def _expected(name: str, p: float) -> float:
    """The design-note formulas, written independently of the implementation."""
    r = 1.0 - p
    if name == "constant":
        return 1.0
    if name == "linear":
        return r
    if name == "middle_drop":
        return r if r >= 0.75 else 0.075
    if name == "double_linear_con":
        return max(1.0 - 2.0 * p, 0.125)
    if name == "double_middle_drop":
        if r >= 0.75:
            return r
        if r >= 0.25:
            return 0.075
        return 0.125
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(SCHEDULES))
def test_formulas_at_many_points(name: str) -> None:
    f = SCHEDULES[name]
    for p in POINTS:
        assert f(p) == pytest.approx(_expected(name, p), abs=1e-12), (name, p)


def test_boundaries() -> None:
    assert SCHEDULES["middle_drop"](0.25) == 0.75  # r = 0.75 is still on the line
    assert SCHEDULES["middle_drop"](0.2500001) == pytest.approx(0.075)
    assert SCHEDULES["double_linear_con"](0.4375) == pytest.approx(0.125)
    assert SCHEDULES["double_linear_con"](0.0) == 1.0
    assert SCHEDULES["double_linear_con"](1.0) == 0.125
    dmd = SCHEDULES["double_middle_drop"]
    assert dmd(0.25) == 0.75
    assert dmd(0.26) == pytest.approx(0.075)
    assert dmd(0.75) == pytest.approx(0.075)  # r = 0.25 is in [0.25, 0.75)
    assert dmd(0.7500001) == pytest.approx(0.125)
    assert dmd(1.0) == pytest.approx(0.125)
    assert SCHEDULES["linear"](1.0) == 0.0


def test_resolve_schedule() -> None:
    assert resolve_schedule("linear") is SCHEDULES["linear"]

    def custom(p: float) -> float:
        return 0.5

    assert resolve_schedule(custom) is custom
    with pytest.raises(ValueError, match="double_middle_drop") as info:
        resolve_schedule("cosine")
    for name in SCHEDULES:
        assert name in str(info.value)
    with pytest.raises(TypeError):
        resolve_schedule(3)  # type: ignore[arg-type]


def test_learning_rate_at_float_and_callable() -> None:
    assert learning_rate_at(0.25, "linear", 0.2) == pytest.approx(0.2)
    assert learning_rate_at(0.25, "constant", 0.9) == pytest.approx(0.25)
    # SB3 convention: the callable gets progress_remaining = 1 - p and overrides the schedule.
    seen: list[float] = []

    def lr(progress_remaining: float) -> float:
        seen.append(progress_remaining)
        return 0.1 * progress_remaining

    assert learning_rate_at(lr, "middle_drop", 0.3) == pytest.approx(0.07)
    assert seen == [pytest.approx(0.7)]


def test_progress_of() -> None:
    assert progress_of(1, 100) == 0.0
    assert progress_of(64, 100) == pytest.approx(0.63)
    assert progress_of(100, 100) == pytest.approx(0.99)
    assert progress_of(0, 100) == 0.0  # clipped
    assert progress_of(500, 100) == 1.0  # clipped
    with pytest.raises(ValueError):
        progress_of(1, 0)


class _SB2Scheduler:
    """A re-implementation of Stable Baselines 2's ``common.schedules.Scheduler``."""

    def __init__(self, initial_value: float, n_values: int, schedule: str) -> None:
        self.step = 0.0
        self.initial_value = initial_value
        self.nvalues = n_values
        self.schedule = _SB2_FUNCTIONS[schedule]

    def value(self) -> float:
        current_value = self.initial_value * self.schedule(self.step / self.nvalues)
        self.step += 1.0
        return current_value


def _sb2_middle_drop(progress: float) -> float:
    eps = 0.75
    if 1 - progress < eps:
        return eps * 0.1
    return 1 - progress


def _sb2_double_linear_con(progress: float) -> float:
    progress *= 2
    eps = 0.125
    if 1 - progress < eps:
        return eps
    return 1 - progress


def _sb2_double_middle_drop(progress: float) -> float:
    eps1 = 0.75
    eps2 = 0.25
    if 1 - progress < eps1:
        if 1 - progress < eps2:
            return eps2 * 0.5
        return eps1 * 0.1
    return 1 - progress


_SB2_FUNCTIONS = {
    "constant": lambda _: 1.0,
    "linear": lambda p: 1 - p,
    "middle_drop": _sb2_middle_drop,
    "double_linear_con": _sb2_double_linear_con,
    "double_middle_drop": _sb2_double_middle_drop,
}


@pytest.mark.parametrize("name", sorted(SCHEDULES))
@pytest.mark.parametrize(("n_batch", "total"), [(64, 64 * 50), (80, 10_000), (5, 1000)])
def test_matches_sb2_scheduler_loop(name: str, n_batch: int, total: int) -> None:
    """ACKTR calls ``value()`` once per sample and uses the last one for the update."""
    initial = 0.25
    scheduler = _SB2Scheduler(initial, total, name)
    for update in range(1, total // n_batch + 1):
        for _ in range(n_batch):
            sb2_lr = scheduler.value()
        ours = learning_rate_at(initial, name, progress_of(update * n_batch, total))
        assert ours == sb2_lr, (name, update)  # bit-identical
