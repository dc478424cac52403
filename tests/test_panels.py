"""The training figure's panels: each draws from a (fake) report stream, headless, and a
user's own panel is one small class."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from fake_trainer import FakeTrainer
from matplotlib.axes import Axes
from png_checks import QUIET, assert_png

from acktr_lab.panels import (
    CurvatureHealthPanel,
    EpisodeLengthPanel,
    ExtremesPanel,
    LearningRatePanel,
    Panel,
    PretrainPanel,
    ReturnsPanel,
    ScalarPanel,
    SpectrumPanel,
    TrustRegionPanel,
    default_panels,
)
from acktr_lab.plots import TrainingPlots
from acktr_lab.report import PretrainReport


def _fed(panels: list[Panel], updates: int = 30, pretrain: bool = False) -> TrainingPlots:
    trainer = FakeTrainer(20 * updates)
    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve, panels=panels, pretrain=pretrain)
    if pretrain:
        plots.extend(PretrainReport(epoch=e, n_epochs=5, train_loss=1.0 / e, val_loss=1.2 / e) for e in range(1, 6))
    plots.extend(trainer)
    return plots


def _points(line: object) -> int:
    _, y = line.get_data()  # type: ignore[attr-defined]
    return int(np.sum(np.isfinite(np.asarray(y, dtype=float))))


@pytest.mark.parametrize(
    ("panel", "lines"),
    [
        (ReturnsPanel(), ("raw", "smooth")),
        (EpisodeLengthPanel(), ("raw", "smooth")),
        (ScalarPanel("policy_loss", "policy loss"), ("raw", "smooth")),
        (ScalarPanel("value_loss", "value loss", log=True), ("raw", "smooth")),
        (ScalarPanel("fps", "fps", smooth=False), ("raw",)),
        (ScalarPanel("explained_variance", "ev", clip=(-1.0, 1.0)), ("raw", "smooth")),
        (TrustRegionPanel(), ("kl", "trust_region_scale_smooth", "gfg")),
        (LearningRatePanel(), ("lr_used", "lr_curve", "lr_now")),
    ],
    ids=lambda p: getattr(p, "name", None) or "",
)
def test_each_panel_draws_from_a_report_stream_alone(panel: Panel, lines: tuple[str, ...]) -> None:
    plots = _fed([panel])
    assert list(plots.axes) == [panel.name]
    assert_png(plots.render_png())
    for key in lines:
        assert _points(panel.lines[key]) > 0, key


@pytest.mark.parametrize("panel", [SpectrumPanel("A"), SpectrumPanel("G"), ExtremesPanel()], ids=lambda p: p.name)
def test_eigenvalue_panels_draw_one_line_set_per_layer(panel: SpectrumPanel | ExtremesPanel) -> None:
    plots = _fed([panel])
    assert_png(plots.render_png())
    assert set(panel.layer_lines) == set(FakeTrainer().layers)
    assert not panel.note.get_visible()
    fresh = _fed([SpectrumPanel(panel.factor) if isinstance(panel, SpectrumPanel) else ExtremesPanel()], updates=2)
    assert fresh.panel(panel.name).note.get_visible()  # the cold start: no eigenvalues yet


def test_pretrain_panel_draws_the_cloning_losses() -> None:
    plots = _fed([PretrainPanel()], pretrain=True)
    assert_png(plots.render_png())
    panel = plots.panel("pretrain")
    assert _points(panel.lines["bc_train"]) == 5 and _points(panel.lines["bc_val"]) == 5


def test_a_users_own_panel_is_one_class_reading_any_metric_by_name() -> None:
    class GradNorm(Panel):  # as a user would write it in a notebook cell
        name, title, fields = "grad_norm", "gradient norm", ("kfac/grad_norm",)

        def setup(self, axis: Axes, plots: TrainingPlots) -> None:
            (self.lines["norm"],) = axis.plot([], [], "-")
            axis.set_yscale("log")

        def draw(self, axis: Axes, plots: TrainingPlots) -> None:
            self.lines["norm"].set_data(plots.history.array("timesteps"), plots.history.array("kfac/grad_norm"))

    plots = _fed([*default_panels(), GradNorm()], updates=25)
    assert list(plots.axes)[-1] == "grad_norm" and len(plots.axes) == 13
    assert_png(plots.render_png())
    values = plots.history.array("kfac/grad_norm")
    assert len(values) == 25 and np.all(values > 0)
    np.testing.assert_array_equal(plots.panel("grad_norm").lines["norm"].get_ydata(), values)
    assert plots.figure.axes[13].get_visible() is False  # 13 panels in a 4 × 4 grid: the rest hidden


def test_the_dashboard_shows_the_panels_it_is_given() -> None:
    from acktr_lab.widgets import Dashboard

    trainer = FakeTrainer(400)
    dashboard = Dashboard(trainer, redraw_interval=QUIET, panels=[ReturnsPanel(), LearningRatePanel()])  # type: ignore[arg-type]
    assert dashboard.run_blocking() == 20
    assert list(dashboard.plots.axes) == ["returns", "learning_rate"]
    assert_png(dashboard.plots.render_png())


@pytest.mark.parametrize(
    "panels",
    [[], [ReturnsPanel(), ReturnsPanel()], [ScalarPanel("", "no name")]],
    ids=["none", "duplicate", "unnamed"],
)
def test_panels_need_distinct_names(panels: list[Panel]) -> None:
    with pytest.raises(ValueError, match="distinct, non-empty names"):
        TrainingPlots(panels=panels)


def test_spectrum_panel_refuses_an_unknown_factor() -> None:
    with pytest.raises(ValueError, match="'A' or 'G'"):
        SpectrumPanel("B")


def test_curvature_health_shows_condition_numbers_skips_and_the_inverse_age() -> None:
    trainer = FakeTrainer(20 * 30)
    plots = TrainingPlots(panels=[CurvatureHealthPanel()])
    for report in trainer:
        if report.update in (12, 20):  # a non-finite step, then a non-finite input
            bad_step = 1.0 if report.update == 12 else 0.0
            metrics = {**report.metrics, "kfac/step_not_finite": bad_step}
            report = dataclasses.replace(report, skipped=True, kfac_step=False, metrics=metrics)
        plots.add(report)
    assert_png(plots.render_png())
    panel = plots.panel("curvature_health")
    assert set(panel.layer_lines) == set(trainer.layers)
    for layer, (line_a, line_g) in panel.layer_lines.items():
        history = plots.eigen_extremes[layer]
        np.testing.assert_allclose(line_a.get_ydata(), history.array("a_max") / history.array("a_min"))
        assert np.all(np.asarray(line_g.get_ydata()) >= 1.0)
    colors = [mark.get_color() for mark in panel._skip_marks]
    assert sorted(colors) == ["0.5", "C3"]
    assert panel.age.get_text() == "inverse age: 0 updates · skipped: 2"


def test_compare_overlays_another_run_on_the_panels_that_can_show_it() -> None:
    plots = _fed(default_panels(), updates=30)
    other_reports = list(FakeTrainer(10 * 40, n_steps=10))
    plots.compare(other_reports, "n_steps=10")
    assert_png(plots.render_png())
    for name in ("returns", "policy_loss", "value_loss", "learning_rate", "episode_length", "fps"):
        line = plots.panel(name).comparison_lines["n_steps=10"]
        assert line.get_label() == "n_steps=10" and _points(line) > 0, name
        legend = plots.axes[name].get_legend()
        assert legend is not None and "n_steps=10" in [t.get_text() for t in legend.get_texts()], name
    np.testing.assert_array_equal(
        plots.panel("learning_rate").comparison_lines["n_steps=10"].get_xdata(),
        [r.timesteps for r in other_reports],
    )
    assert "comparison_lines" not in vars(plots.panel("spectrum_a"))  # eigenvalues are not compared
    with pytest.raises(ValueError, match="non-empty label"):
        plots.compare(other_reports, "")


def test_the_dashboard_compares_a_live_branch_as_it_trains() -> None:
    from acktr_lab.widgets import Dashboard

    main = Dashboard(FakeTrainer(400), redraw_interval=QUIET)  # type: ignore[arg-type]
    branch = Dashboard(FakeTrainer(400, ent_coef=0.05), redraw_interval=QUIET)  # type: ignore[arg-type]
    main.run_blocking()
    main.compare(branch, "ent_coef=0.05")
    main.plots.draw()
    line = main.plots.panel("policy_loss").comparison_lines["ent_coef=0.05"]
    assert _points(line) == 0  # the branch has not trained yet
    branch.step()
    branch.step()
    main.plots.draw()
    assert _points(line) == 2  # drawn from the branch's records as they grow


def test_figure_png_is_a_decodable_png_of_the_figure() -> None:
    from matplotlib.figure import Figure

    from acktr_lab.plots import figure_png

    figure = Figure(figsize=(2, 1), dpi=50)
    figure.add_subplot().plot([0, 1], [1, 0])
    image = assert_png(figure_png(figure))
    pixels = np.asarray(image.convert("L"))
    assert pixels.min() < 100 < pixels.max()  # the line and the axes are drawn on a light background
