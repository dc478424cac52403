"""What an update costs: the probe times the parts of a real update and changes nothing; the
trainer attributes each update's wall time to the parts its plan ran; the panel shows it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from fake_trainer import FakeTrainer
from png_checks import QUIET, assert_png

from acktr_lab import ACKTR
from acktr_lab.panels import UpdateCostPanel, moving_average
from acktr_lab.plots import TrainingPlots
from acktr_lab.update_cost import PARTS, attribute

PART_METRICS = [f"cost/{part}_ms" for part in (*PARTS, "rest", "gradient_step")]


def _model(**kwargs: object) -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, seed=5, cold_iter=2, **kwargs)  # type: ignore[arg-type]


def test_attribute_splits_an_update_into_the_parts_its_plan_ran() -> None:
    parts = {"gradient_step": 1.5, "statistics": 2.0, "decomposition": 3.0, "preconditioning": 0.5}
    plan = {"kfac/took_statistics": 1.0, "kfac/decomposed": 0.0, "kfac/preconditioned": 1.0}
    assert attribute(10.0, parts, plan) == {
        "cost/statistics_ms": 2.0,
        "cost/decomposition_ms": 0.0,
        "cost/preconditioning_ms": 0.5,
        "cost/rest_ms": 7.5,
        "cost/gradient_step_ms": 1.5,
    }
    # the parts measured apart may add up to more than a fast update took: rest is then 0
    everything = {"kfac/took_statistics": 1.0, "kfac/decomposed": 1.0, "kfac/preconditioned": 1.0}
    assert attribute(4.0, parts, everything)["cost/rest_ms"] == 0.0


def test_timing_the_parts_changes_nothing_in_the_run() -> None:
    """Same seed, with and without the probe: identical reports and parameters."""
    runs = []
    for cost_every in (0, 3):
        model = _model(kfac_update=2)
        trainer = model.trainer(8 * 2 * 10, cost_every=cost_every)
        reports = list(trainer)
        runs.append((model.get_parameters(), reports))
    (plain_parameters, plain_reports), (timed_parameters, timed_reports) = runs
    for name, value in plain_parameters.items():
        np.testing.assert_array_equal(timed_parameters[name], value, err_msg=name)
    for plain, timed in zip(plain_reports, timed_reports, strict=True):
        assert (plain.policy_loss, plain.value_loss, plain.kl) == (timed.policy_loss, timed.value_loss, timed.kl)
    assert all(name not in plain_reports[-1].metrics for name in PART_METRICS)
    assert all(report.metrics["cost/update_ms"] > 0 for report in plain_reports)  # always measured


def test_each_update_is_charged_for_the_parts_its_plan_ran() -> None:
    trainer = _model(kfac_update=2).trainer(8 * 2 * 12, cost_every=4)
    reports = list(trainer)
    assert set(trainer.update_cost) == {"gradient_step", *PARTS}
    for report in reports:
        m = report.metrics
        assert all(m[name] >= 0.0 for name in PART_METRICS), report.update
        assert m["cost/gradient_step_ms"] > 0.0
        assert (m["cost/decomposition_ms"] > 0.0) == bool(m["kfac/decomposed"]), report.update
        assert (m["cost/preconditioning_ms"] > 0.0) == bool(m["kfac/preconditioned"]), report.update
        parts = sum(m[f"cost/{part}_ms"] for part in PARTS)
        assert m["cost/rest_ms"] == pytest.approx(max(0.0, m["cost/update_ms"] - parts))
    # cold start (updates 1-2): no preconditioning; then a decomposition every kfac_update = 2 updates
    assert [bool(r.metrics["kfac/preconditioned"]) for r in reports[:4]] == [False, False, True, True]
    assert [bool(r.metrics["kfac/decomposed"]) for r in reports[2:8]] == [True, False] * 3


def test_cost_every_is_checked() -> None:
    trainer = _model().trainer(100)
    for bad in (-1, 1.5, True, "3"):
        with pytest.raises(ValueError, match="cost_every"):
            trainer.cost_every = bad  # type: ignore[assignment]


def _costed_reports(n: int) -> list:
    """Fake reports carrying cost metrics: update i costs i ms of rest on top of fixed parts."""
    reports = []
    for report in FakeTrainer(20 * n):
        costs = {
            "cost/statistics_ms": 1.0,
            "cost/decomposition_ms": 2.0 if report.update % 2 else 0.0,
            "cost/preconditioning_ms": 0.5,
            "cost/rest_ms": float(report.update),
            "cost/gradient_step_ms": 1.0,
        }
        reports.append(dataclasses.replace(report, metrics={**report.metrics, **costs}))
    return reports


def test_the_update_cost_panel_stacks_the_parts_next_to_a_gradient_step() -> None:
    plots = TrainingPlots(panels=[UpdateCostPanel()])
    panel = plots.panel("update_cost")
    plots.draw()
    assert panel.note.get_visible()  # nothing timed yet
    reports = _costed_reports(40)
    plots.extend(reports)
    assert_png(plots.render_png())
    assert not panel.note.get_visible()
    totals = np.zeros(len(reports))
    for part in ("statistics", "decomposition", "preconditioning", "rest"):
        totals = totals + moving_average(np.array([r.metrics[f"cost/{part}_ms"] for r in reports]))
        np.testing.assert_allclose(panel.lines[part].get_ydata(), totals, err_msg=part)
    np.testing.assert_allclose(panel.lines["gradient_step"].get_ydata(), 1.0)
    assert panel.ratio.get_text() == f"update {totals[-1]:.3g} ms = {totals[-1]:.1f}× a gradient step"
    legend = [t.get_text() for t in plots.axes["update_cost"].get_legend().get_texts()]
    assert legend[-1] == "plain gradient step" and legend[-2] == "+ rest = update"


def test_the_dashboard_asks_the_trainer_to_time_the_parts() -> None:
    from acktr_lab.widgets import Dashboard

    trainer = _model().trainer(8 * 2 * 6)
    assert trainer.cost_every == 0
    dashboard = Dashboard(trainer, redraw_interval=QUIET, panels=[UpdateCostPanel(every=2)])
    assert trainer.cost_every == 2
    assert dashboard.run_blocking() == 6
    dashboard.plots.draw()
    panel = dashboard.plots.panel("update_cost")
    assert np.all(np.isfinite(panel.lines["rest"].get_ydata())) and not panel.note.get_visible()
    assert math.isfinite(dashboard.last_report.metrics["cost/gradient_step_ms"])  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="every"):
        UpdateCostPanel(every=0)
