"""The notebook dashboard and its plots, without a browser or a kernel.

The trainer here is :class:`fake_trainer.FakeTrainer`, a test double of
:class:`acktr_lab.trainer.Trainer` (same protocol, made-up reports, no TensorFlow), so
these tests check the dashboard's wiring: controls → ``trainer.set`` → the next report,
Run/Pause/Step on an asyncio loop, error surfacing, throttled rendering and plot data.
"""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path

import ipywidgets as widgets
import numpy as np
import pytest
from fake_trainer import FakeTrainer
from png_checks import QUIET, assert_png

from acktr_lab.hyperparameters import HYPERPARAMETERS, LIVE_HYPERPARAMETERS, Control, Hyperparameter
from acktr_lab.plots import BoundedHistory
from acktr_lab.report import FactorEigenvalues, PretrainReport, UpdateReport
from acktr_lab.widgets import LIVE_CONTROLS, Dashboard, TrainingPlots


def make_dashboard(trainer: FakeTrainer | None = None, **kwargs: object) -> tuple[Dashboard, FakeTrainer]:
    trainer = trainer if trainer is not None else FakeTrainer(2000)
    kwargs.setdefault("redraw_interval", QUIET)
    return Dashboard(trainer, **kwargs), trainer  # type: ignore[arg-type]


# -- controls ---------------------------------------------------------------------------
def test_live_controls_cover_the_live_hyperparameters() -> None:
    assert set(LIVE_CONTROLS) == set(LIVE_HYPERPARAMETERS)
    dashboard, trainer = make_dashboard()
    assert list(dashboard.controls) == list(LIVE_CONTROLS)
    for name, control in dashboard.controls.items():
        assert control.description == LIVE_CONTROLS[name].label and control.tooltip == LIVE_CONTROLS[name].help
    assert isinstance(dashboard.controls["learning_rate"], widgets.FloatLogSlider)
    assert isinstance(dashboard.controls["kfac_clip"], widgets.FloatLogSlider)
    assert isinstance(dashboard.controls["max_grad_norm"], widgets.FloatLogSlider)
    assert isinstance(dashboard.controls["gamma"], widgets.FloatSlider)
    assert isinstance(dashboard.controls["lr_schedule"], widgets.Dropdown)
    assert dashboard.controls["gae_lambda"].disabled and not dashboard.gae_enabled.value
    for name, value in trainer.hyperparameters.items():
        if isinstance(value, float):
            assert dashboard.controls[name].value == pytest.approx(value), name
    assert trainer.set_calls == []  # building the controls changed nothing
    assert isinstance(dashboard.widget, widgets.VBox)


def test_a_hyperparameter_added_to_the_definitions_gets_its_control() -> None:
    """The definitions drive the controls: one more live definition, one more control."""
    definitions = dict(HYPERPARAMETERS)
    definitions["clip_range"] = Hyperparameter(
        "clip_range",
        "float",
        0.2,
        low=0.0,
        live=True,
        control=Control(
            "linear", "clip range", "the ratio's clip", "clip_r", min=0.0, max=0.5, step=0.01, format=".2f"
        ),
    )

    class Trainer(FakeTrainer):
        def set(self, **values: object) -> None:  # the real validation knows no clip_range
            self.set_calls.append(dict(values))
            self._live.update(values)

    trainer = Trainer(2000)
    trainer._live["clip_range"] = 0.2
    dashboard, _ = make_dashboard(trainer, hyperparameters=definitions)
    control = dashboard.controls["clip_range"]
    assert isinstance(control, widgets.FloatSlider)
    assert (control.description, control.tooltip, control.value) == ("clip range", "the ratio's clip", 0.2)
    assert (control.min, control.max, control.step) == (0.0, 0.5, 0.01)
    assert "acktr-control-clip_range" in control._dom_classes
    control.value = 0.3
    assert trainer.set_calls[-1] == {"clip_range": 0.3}
    assert "clip_range" not in make_dashboard()[0].controls
    # a definition that is not live, or has no control, shows none
    definitions["clip_range"] = dataclasses.replace(definitions["clip_range"], live=False)
    assert "clip_range" not in make_dashboard(Trainer(2000), hyperparameters=definitions)[0].controls


def test_out_of_range_value_widens_the_slider_instead_of_clamping() -> None:
    dashboard, trainer = make_dashboard(FakeTrainer(2000, ent_coef=0.5, kfac_clip=5.0))
    assert dashboard.controls["ent_coef"].value == pytest.approx(0.5)
    assert dashboard.controls["kfac_clip"].value == pytest.approx(5.0)
    assert trainer.set_calls == []


def test_slider_change_reaches_the_next_update() -> None:
    dashboard, _ = make_dashboard()
    first = dashboard.step()
    assert isinstance(first, UpdateReport) and first.hyperparameters["ent_coef"] == pytest.approx(0.01)
    dashboard.controls["ent_coef"].value = 0.05
    dashboard.controls["learning_rate"].value = 0.1
    dashboard.controls["lr_schedule"].value = "constant"
    dashboard.gae_enabled.value = True
    second = dashboard.step()
    assert second.hyperparameters["ent_coef"] == pytest.approx(0.05)
    assert second.hyperparameters["learning_rate"] == pytest.approx(0.1)
    assert second.hyperparameters["lr_schedule"] == "constant"
    assert second.hyperparameters["gae_lambda"] == pytest.approx(dashboard.controls["gae_lambda"].value)
    assert second.learning_rate == pytest.approx(0.1)
    # the schedule curve follows the new settings; the change is marked where it took effect
    np.testing.assert_allclose(dashboard.plots.lr_curve[1], 0.1)
    timesteps, changed = dashboard.plots.changes[-1]
    assert timesteps == first.timesteps
    assert changed["ent_coef"] == (pytest.approx(0.01), pytest.approx(0.05))
    assert changed["lr_schedule"] == ("linear", "constant")
    dashboard.gae_enabled.value = False
    assert dashboard.step().hyperparameters["gae_lambda"] is None
    assert "gae_lambda" in dashboard.plots.changes[-1][1]


def test_rejected_value_shows_an_error_and_reverts_the_control() -> None:
    trainer = FakeTrainer(2000, reject={"vf_coef": lambda value: value > 1.5})
    dashboard, _ = make_dashboard(trainer)
    dashboard.controls["vf_coef"].value = 1.8
    assert dashboard.controls["vf_coef"].value == pytest.approx(0.25)
    assert trainer.hyperparameters["vf_coef"] == pytest.approx(0.25)
    assert "rejected" in dashboard.status.value and "vf_coef" in dashboard.status.value
    assert dashboard.step().hyperparameters["vf_coef"] == pytest.approx(0.25)


def test_callable_learning_rate_is_shown_but_not_editable() -> None:
    def decay(progress_remaining: float) -> float:
        return 0.1 * progress_remaining

    dashboard, trainer = make_dashboard(FakeTrainer(2000, learning_rate=decay))
    assert dashboard.controls["learning_rate"].disabled
    assert dashboard.step() is not None
    assert trainer.set_calls == []


# -- Run / Pause / Step / Save ------------------------------------------------------------
def test_step_performs_exactly_one_update() -> None:
    dashboard, trainer = make_dashboard()
    report = dashboard.step()
    assert trainer.updates == 1 and dashboard.updates == 1
    assert report is dashboard.last_report and dashboard.state == "paused"
    assert dashboard.renders == 1
    dashboard.step()
    assert trainer.updates == 2
    assert dashboard.renders == 2  # always rendered after a step, however short the interval


def test_run_and_pause_on_the_event_loop() -> None:
    dashboard, trainer = make_dashboard()

    async def scenario() -> None:
        dashboard.run_button.click()
        assert dashboard.state == "running" and dashboard.task is not None
        assert dashboard.pause_button.disabled is False and dashboard.run_button.disabled is True
        for _ in range(5):
            await asyncio.sleep(0)
        # a control changed while running reaches the next update
        dashboard.controls["vf_coef"].value = 0.5
        await asyncio.sleep(0)
        assert dashboard.last_report.hyperparameters["vf_coef"] == pytest.approx(0.5)
        dashboard.pause_button.click()
        at_pause = trainer.updates
        assert at_pause >= 5
        await dashboard.task
        assert trainer.updates == at_pause  # no update started after Pause
        for _ in range(5):
            await asyncio.sleep(0)
        assert trainer.updates == at_pause
        assert dashboard.state == "paused" and not dashboard.run_button.disabled
        # Run again to the end
        dashboard.run_button.click()
        await dashboard.task

    asyncio.run(scenario())
    assert trainer.done and dashboard.state == "done"
    assert dashboard.run_button.disabled and dashboard.step_button.disabled
    assert len(dashboard.plots.history) == trainer.updates == 100
    assert dashboard.error is None
    assert_png(dashboard.image.value)


def test_run_without_an_event_loop_says_so() -> None:
    dashboard, trainer = make_dashboard()
    assert dashboard.run() is None
    assert "run_blocking" in dashboard.status.value and trainer.updates == 0


def test_trainer_exception_is_surfaced_in_the_asyncio_task() -> None:
    dashboard, trainer = make_dashboard(FakeTrainer(2000, fail_at=4))

    async def scenario() -> None:
        dashboard.run_button.click()
        await dashboard.task

    asyncio.run(scenario())
    assert dashboard.state == "error"
    assert isinstance(dashboard.error, RuntimeError)
    assert "RuntimeError" in dashboard.status.value and "fake failure" in dashboard.status.value
    error_text = "".join(output["text"] for output in dashboard.error_output.outputs)
    assert "Traceback" in error_text and "fake failure at update 4" in error_text
    assert trainer.updates == 3 and len(dashboard.plots.history) == 3


def test_trainer_exception_in_step_and_run_blocking() -> None:
    dashboard, _ = make_dashboard(FakeTrainer(2000, fail_at=1))
    assert dashboard.step() is None
    assert isinstance(dashboard.error, RuntimeError) and dashboard.state == "error"
    dashboard, _ = make_dashboard(FakeTrainer(2000, fail_at=2))
    with pytest.raises(RuntimeError, match="fake failure"):
        dashboard.run_blocking()
    assert dashboard.state == "error" and "fake failure" in dashboard.status.value
    assert dashboard.error_output.outputs


def test_save_button(tmp_path: Path) -> None:
    dashboard, trainer = make_dashboard()
    dashboard.save_path.value = str(tmp_path / "model.zip")
    dashboard.save_button.click()
    assert (tmp_path / "model.zip").exists() and trainer.model.saved == [str(tmp_path / "model.zip")]
    assert "saved to" in dashboard.status.value
    dashboard.save_path.value = str(tmp_path / "missing" / "model.zip")
    dashboard.save_button.click()
    assert "saving to" in dashboard.status.value and dashboard.error is not None
    assert dashboard.state == "ready"  # a failed save does not stop training


# -- run_blocking, throttling, plots -----------------------------------------------------
def test_run_blocking_feeds_the_plots_and_renders_a_final_image() -> None:
    dashboard, trainer = make_dashboard()
    assert dashboard.run_blocking(max_updates=30) == 30
    assert dashboard.renders == 2  # throttled: the first update and the final image
    assert dashboard.state == "paused" and trainer.updates == 30
    plots = dashboard.plots
    last = dashboard.last_report
    assert len(plots.history) == 30
    assert plots.history["policy_loss"][-1] == pytest.approx(last.policy_loss)
    assert plots.history["timesteps"][-1] == last.timesteps
    assert len(plots.episodes) > 0 and plots.mean_return is not None
    assert np.isnan(plots.history["gfg"][0])  # cold start
    assert plots.kfac_start == 3 * trainer.n_steps
    assert "update 30" in dashboard.status.value
    image = assert_png(dashboard.image.value)
    assert image.size == (1120, 720)
    assert dashboard.run_blocking() == 70 and dashboard.state == "done"


def test_redraws_follow_the_interval() -> None:
    dashboard, _ = make_dashboard(redraw_interval=0.0)
    dashboard.render_budget = 1e9  # no slow-render back-off for this test
    dashboard.run_blocking(max_updates=3)
    assert dashboard.renders == 3  # one per update; the final forced render has nothing new
    dashboard.widget  # noqa: B018 - displaying renders only if never rendered
    assert dashboard.renders == 3
    dashboard.controls["lr_schedule"].value = "constant"  # while paused: the new curve is drawn
    assert dashboard.renders == 4


def test_eigenvalue_panels_get_data() -> None:
    trainer = FakeTrainer(2000, cold_iter=2)
    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve)
    for _ in range(5):
        plots.add(trainer.step())
    assert set(plots.spectra) == set(trainer.layers)
    history = plots.eigen_extremes["pi_fc0"]
    assert len(history) == 3  # updates 3, 4, 5 carried eigenvalues
    a = plots.spectra["pi_fc0"].input_factor
    assert history["a_max"][-1] == pytest.approx(a.max())
    assert history["a_min"][-1] == pytest.approx(a[a > 0].min())  # smallest nonzero
    plots.draw()
    lines = {line.get_label(): line for line in plots.axes["spectrum_a"].get_lines()}
    assert set(trainer.layers) <= set(lines)
    y = np.asarray(lines["pi_fc0"].get_ydata())
    assert y[0] == pytest.approx(a.max()) and np.all(np.diff(y[np.isfinite(y)]) <= 0)  # descending
    assert len(plots.axes["extremes"].get_lines()) == 4 * len(trainer.layers)


def test_plots_render_and_save_without_a_notebook(tmp_path: Path) -> None:
    trainer = FakeTrainer(400)
    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve)
    assert_png(plots.render_png())  # empty plots render too
    for report in trainer:
        plots.add(report)
    trainer.set(kfac_clip=0.01)
    path = plots.save(tmp_path / "plots.png")
    assert assert_png(path.read_bytes()).size == (1120, 720)
    steps, rates = plots.lr_curve
    assert steps[0] == 0 and steps[-1] == 400 and rates[0] == pytest.approx(0.25) and rates[-1] == pytest.approx(0)


def test_learning_rate_changes_are_recorded_and_redraw_the_curve() -> None:
    trainer = FakeTrainer(1000)
    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve)
    for _ in range(3):
        plots.add(trainer.step())
    trainer.set(learning_rate=0.5, lr_schedule="constant")
    plots.add(trainer.step())
    plots.add(trainer.step())
    trainer.set(gamma=0.95)
    plots.add(trainer.step())
    assert plots.changes == [
        (60, {"learning_rate": (0.25, 0.5), "lr_schedule": ("linear", "constant")}),
        (100, {"gamma": (0.99, 0.95)}),
    ]
    np.testing.assert_allclose(plots.lr_curve[1], 0.5)
    assert plots.history["learning_rate"][-1] == pytest.approx(0.5)
    plots.draw()
    now_x, now_y = plots.panel("learning_rate").lines["lr_now"].get_data()
    assert list(now_x) == [120] and list(now_y) == [pytest.approx(0.5)]
    texts = [text.get_text() for text in plots.axes["learning_rate"].texts]
    assert any("lr 0.25→0.5" in text for text in texts) and any("γ 0.99→0.95" in text for text in texts)


def test_pretrain_reports_come_first() -> None:
    epochs = [
        PretrainReport(epoch=e, n_epochs=3, train_loss=1.0 / e, val_loss=None if e < 3 else 0.5) for e in (1, 2, 3)
    ]
    dashboard, trainer = make_dashboard(pretrain=epochs)
    assert isinstance(dashboard.step(), PretrainReport) and trainer.updates == 0
    assert "behaviour cloning epoch 1/3" in dashboard.status.value
    assert dashboard.run_blocking(max_updates=2) == 2
    assert dashboard.pretrain_epochs == 3 and trainer.updates == 2
    assert dashboard.plots.pretrain_history["train_loss"] == pytest.approx([1.0, 0.5, 1 / 3])
    with pytest.raises(ValueError, match="pretrain=True"):
        TrainingPlots().add(epochs[0])


def test_bounded_history_thins_evenly_and_keeps_the_newest() -> None:
    history = BoundedHistory(("x",), max_points=100)
    for i in range(10_000):
        history.append(x=float(i))
        assert len(history) <= 101 and history["x"][-1] == i
    xs = np.asarray(history["x"])
    assert xs[0] == 0 and len(history) >= 50
    gaps = np.diff(xs[:-1])
    assert np.all(gaps == history.stride)
    with pytest.raises(ValueError):
        history.append(y=1.0)


def test_fisher_eigenvalues_with_zeros_and_empty_factors() -> None:
    plots = TrainingPlots()
    trainer = FakeTrainer(100, cold_iter=0)
    report = trainer.step()
    zeros = {"dead": FactorEigenvalues(np.zeros(3), np.array([0.0, 1e-3]))}
    plots.add(report)
    plots.add(dataclasses.replace(report, update=2, timesteps=40, fisher_eigenvalues=zeros))
    assert np.isnan(plots.eigen_extremes["dead"]["a_max"][-1])
    assert plots.eigen_extremes["dead"]["g_min"][-1] == pytest.approx(1e-3)
    assert_png(plots.render_png())


def test_the_edit_log_view_lists_every_change_newest_first() -> None:
    from acktr_lab.widgets.dashboard import EDIT_LOG_ROWS

    trainer = FakeTrainer(20 * 40)
    dashboard, _ = make_dashboard(trainer)
    assert dashboard.edit_log_view.value == ""  # no change yet: nothing shown
    dashboard.step()
    dashboard.controls["ent_coef"].value = 0.05
    dashboard.controls["vf_coef"].value = 0.75
    dashboard.step()
    view = dashboard.edit_log_view.value
    assert "2 changes" in view
    assert [(e.update, e.name, e.old, e.new) for e in dashboard.edit_log] == [
        (2, "ent_coef", 0.01, 0.05),
        (2, "vf_coef", 0.25, 0.75),
    ]
    assert "<td>ent_coef</td><td>0.01 → 0.05</td>" in view and "<td>2</td><td>20</td>" in view
    for i in range(EDIT_LOG_ROWS + 3):
        dashboard.controls["ent_coef"].value = 0.001 * (i + 1)
        dashboard.step()
    view = dashboard.edit_log_view.value
    assert len(dashboard.edit_log) == EDIT_LOG_ROWS + 5
    assert f"newest {EDIT_LOG_ROWS} of {EDIT_LOG_ROWS + 5}" in view
    assert view.count("<tr><td>") == EDIT_LOG_ROWS
    assert view.index("0.014 → 0.015") < view.index("0.013 → 0.014")  # newest first
