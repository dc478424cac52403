"""The pretraining dashboard, without a browser or a kernel, on a real model and real data.

A small ACKTR model on CartPole-v1 is cloned from demonstrations recorded by a hand-written
controller (push the cart towards where the pole falls); the tests drive the widget the
way a notebook does: picking datasets, Pretrain (blocking, and as an asyncio task started
by a button click), Evaluate and the hand-over to the training dashboard.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pytest
from png_checks import QUIET, assert_png

from acktr_lab import ACKTR
from acktr_lab.expert import ExpertDataset, generate_expert_traj
from acktr_lab.panels import EvaluationPanel, PretrainPanel
from acktr_lab.plots import TrainingPlots
from acktr_lab.report import PretrainReport, UpdateReport
from acktr_lab.widgets import Dashboard, PretrainDashboard
from acktr_lab.widgets.pretrain import Evaluation


def controller(obs: np.ndarray) -> int:
    """Push towards where the pole is falling: balances CartPole for 500 steps."""
    return int(obs[2] + 0.5 * obs[3] > 0)


@pytest.fixture(scope="module")
def expert_data() -> dict[str, np.ndarray]:
    return generate_expert_traj(controller, env="CartPole-v1", n_episodes=5, seed=0, verbose=0)


@pytest.fixture(scope="module")
def expert_file(expert_data: dict[str, np.ndarray], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("expert") / "cartpole_expert.npz"
    np.savez(path, **expert_data)
    return path


@pytest.fixture(scope="module")
def pendulum_data() -> dict[str, np.ndarray]:
    return generate_expert_traj(lambda obs: np.array([0.0]), env="Pendulum-v1", n_episodes=2, seed=0, verbose=0)


@pytest.fixture
def dataset(expert_data: dict[str, np.ndarray]) -> ExpertDataset:
    return ExpertDataset(traj_data=expert_data, verbose=0, seed=0)


@pytest.fixture
def model() -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=5, seed=0)


def make(model: ACKTR, datasets: dict[str, Any], **kwargs: Any) -> PretrainDashboard:
    kwargs.setdefault("redraw_interval", QUIET)
    return PretrainDashboard(model, datasets=datasets, **kwargs)


def test_selecting_a_dataset_reports_episodes_and_return(
    model: ACKTR, dataset: ExpertDataset, expert_file: Path
) -> None:
    pretraining = make(model, {"in memory": dataset, "from file": str(expert_file)})
    # the first dataset is picked at once
    assert pretraining.dataset is dataset and pretraining.dataset_name == "in memory"
    assert pretraining.dataset_dropdown.value == "in memory"
    assert "5 episodes" in pretraining.dataset_info.value
    assert "mean return 500.0" in pretraining.dataset_info.value
    assert "'in memory'" in pretraining.status_text
    assert not pretraining.pretrain_button.disabled
    assert isinstance(pretraining.widget, widgets.VBox)
    assert_png(pretraining.image.value)

    # picking a file in the dropdown loads it
    pretraining.dataset_dropdown.value = "from file"
    loaded = pretraining.dataset
    assert isinstance(loaded, ExpertDataset) and loaded is not dataset
    assert pretraining.dataset_name == "from file" and loaded.n_episodes == 5
    assert "5 episodes" in pretraining.dataset_info.value and str(expert_file) in pretraining.dataset_info.value
    pretraining.select_dataset("in memory")
    pretraining.dataset_dropdown.value = "from file"
    assert pretraining.dataset is loaded  # loaded once, then kept


def test_pretrain_blocking_delivers_reports_to_the_plot(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset})
    reports = pretraining.pretrain_blocking(n_epochs=6, learning_rate=1e-3)
    assert [r.epoch for r in reports] == [1, 2, 3, 4, 5, 6]
    assert all(isinstance(r, PretrainReport) for r in reports)
    assert pretraining.epochs_input.value == 6 and pretraining.learning_rate_slider.value == pytest.approx(1e-3)
    train = pretraining.history.array("train_loss")
    val = pretraining.history.array("val_loss")
    assert len(train) == len(val) == 6 and np.all(np.isfinite(train)) and np.all(np.isfinite(val))
    assert train[-1] < train[0] and val[-1] < val[0]  # the policy learns the expert's actions
    assert pretraining.state == "done" and pretraining.error is None
    assert "epoch 6/6" in pretraining.status_text and "validation loss" in pretraining.status_text
    assert pretraining.renders >= 1
    assert_png(pretraining.image.value)
    np.testing.assert_allclose(pretraining.plots.panel("pretrain").lines["bc_train"].get_ydata(), train)

    # a second run continues the epoch count on the plot
    more = pretraining.pretrain_blocking(n_epochs=2)
    assert [r.epoch for r in more] == [1, 2]
    assert list(pretraining.history.array("epoch")) == [1, 2, 3, 4, 5, 6, 7, 8]
    assert pretraining.run_starts == [0, 6] and len(pretraining.reports) == 8


def test_evaluate_shows_the_return(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset})
    assert pretraining.eval_env == "CartPole-v1"  # the model's env by default
    before = pretraining.evaluate(n_episodes=2)
    assert isinstance(before, Evaluation) and before.label == "before pretraining"
    pretraining.pretrain_blocking(n_epochs=3, learning_rate=2e-3)
    pretraining.evaluate_button.click()
    after = pretraining.last_evaluation
    assert after is not None and after is not before and after.label == "after 3 BC epochs"
    assert (before.short_label, after.short_label) == ("start", "BC 3")
    assert after.n_episodes == pretraining.eval_episodes_input.value == 5
    assert all(1 <= r <= 500 for r in after.returns) and after.mean == pytest.approx(np.mean(after.returns))
    assert pretraining.evaluations == [before, after]
    assert f"return {after.mean:.1f} ± {after.std:.1f}" in pretraining.status_text
    assert pretraining.error is None
    assert_png(pretraining.image.value)


def test_a_bad_file_shows_an_error_and_keeps_the_dataset(model: ACKTR, dataset: ExpertDataset, tmp_path: Path) -> None:
    bad = tmp_path / "garbage.npz"
    bad.write_bytes(np.random.default_rng(0).bytes(2048))
    pretraining = make(model, {"expert": dataset, "broken": str(bad)})

    assert pretraining.load_path(bad) is None
    assert "not an .npz archive" in pretraining.status_text and "garbage.npz" in pretraining.status_text
    assert pretraining.dataset is dataset and pretraining.dataset_name == "expert"
    assert pretraining.state == "ready" and isinstance(pretraining.error, ValueError)

    pretraining.dataset_dropdown.value = "broken"  # picked in the dropdown: refused, put back
    assert pretraining.dataset is dataset and pretraining.dataset_dropdown.value == "expert"
    assert "not an .npz archive" in pretraining.status_text

    pretraining.path_text.value = str(tmp_path / "missing.npz")
    pretraining.load_button.click()
    assert "does not exist" in pretraining.status_text and pretraining.dataset is dataset
    assert list(pretraining.dataset_dropdown.options) == ["expert", "broken"]
    pretraining.pretrain_blocking(n_epochs=1)  # still usable
    assert len(pretraining.reports) == 1


def test_a_dataset_for_other_spaces_is_refused(
    model: ACKTR, dataset: ExpertDataset, pendulum_data: dict[str, np.ndarray], tmp_path: Path
) -> None:
    pendulum = ExpertDataset(traj_data=pendulum_data, verbose=0, seed=0)
    pretraining = make(model, {"pendulum": pendulum, "cartpole": dataset})
    assert pretraining.dataset is None  # the first one did not fit
    assert "'pendulum' does not fit the model" in pretraining.status_text
    assert "observation" in pretraining.status_text and "(3,)" in pretraining.status_text
    assert pretraining.pretrain_button.disabled
    with pytest.raises(ValueError, match="pick a dataset first"):
        pretraining.pretrain_blocking(n_epochs=1)
    assert "pick a dataset first" in pretraining.status_text

    assert pretraining.select_dataset("cartpole") is dataset
    np.savez(tmp_path / "pendulum.npz", **pendulum_data)
    assert pretraining.load_path(tmp_path / "pendulum.npz") is None
    assert "does not fit the model" in pretraining.status_text and "still using 'cartpole'" in pretraining.status_text
    assert pretraining.dataset is dataset and "pendulum.npz" not in pretraining.datasets


def test_continue_training_hands_over_to_a_dashboard(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset}, total_timesteps=400)
    pretraining.pretrain_blocking(n_epochs=2)
    pretraining.pretrain_blocking(n_epochs=1)
    pretraining.continue_button.click()
    dashboard = pretraining.dashboard
    assert isinstance(dashboard, Dashboard) and pretraining.state == "training"
    assert dashboard.trainer is pretraining.trainer and dashboard.trainer.model is model
    assert dashboard.trainer.total_timesteps == 400
    # the pretraining losses are in the training dashboard's behaviour-cloning panel
    assert list(dashboard.plots.pretrain_history.array("epoch")) == [1, 2, 3]
    np.testing.assert_allclose(
        dashboard.plots.pretrain_history.array("train_loss"), pretraining.history.array("train_loss")
    )
    # shown in the same widget, below the pretraining plot (which stays)
    assert dashboard.widget in pretraining.training_area.children
    assert pretraining.training_area in pretraining.widget.children
    assert pretraining.image in pretraining.widget.children
    assert pretraining.pretrain_button.disabled and pretraining.continue_button.disabled
    assert not pretraining.evaluate_button.disabled
    assert pretraining.continue_training() is dashboard

    weights = [w.copy() for w in model.get_parameters().values()]
    report = dashboard.step()
    assert isinstance(report, UpdateReport) and dashboard.updates == 1
    assert model.num_timesteps == dashboard.trainer.num_timesteps == 20
    assert any(not np.array_equal(a, b) for a, b in zip(weights, model.get_parameters().values()))
    evaluation = pretraining.evaluate(n_episodes=1)
    assert (evaluation.label, evaluation.short_label) == ("ACKTR, 20 steps", "ACKTR 20")
    with pytest.raises(RuntimeError, match="handed over"):
        pretraining.pretrain_blocking(n_epochs=1)


def test_pretrain_button_runs_an_asyncio_task(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset}, n_epochs=3, redraw_interval=0.0)

    async def scenario() -> None:
        pretraining.pretrain_button.click()
        task = pretraining.task
        assert task is not None and pretraining.state == "pretraining"
        assert pretraining.pretrain_button.disabled and not pretraining.stop_button.disabled
        assert pretraining.dataset_dropdown.disabled and pretraining.continue_button.disabled
        assert pretraining.start_pretraining() is task  # a second click changes nothing
        await task

    asyncio.run(scenario())
    assert pretraining.state == "done" and pretraining.error is None
    assert [r.epoch for r in pretraining.reports] == [1, 2, 3]
    assert len(pretraining.history) == 3 and not pretraining.pretrain_button.disabled
    train_line = pretraining.plots.panel("pretrain").lines["bc_train"]
    assert len(train_line.get_xdata()) == 3  # the final render shows every epoch
    assert_png(pretraining.image.value)
    assert "pretraining done" in pretraining.status_text


def test_stop_ends_the_task_after_the_current_epoch(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset}, n_epochs=50)

    async def scenario() -> None:
        pretraining.pretrain_button.click()
        await asyncio.sleep(0)  # the task runs one epoch, then yields
        assert len(pretraining.reports) == 1
        pretraining.stop_button.click()
        assert pretraining.task is not None
        await pretraining.task

    asyncio.run(scenario())
    assert pretraining.state == "stopped" and len(pretraining.reports) == 1
    assert "stopped after epoch 1" in pretraining.status_text


def test_a_failure_in_the_task_is_surfaced(
    model: ACKTR, dataset: ExpertDataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = model.pretrainer

    def failing(*args: Any, **kwargs: Any) -> Iterator[PretrainReport]:
        iterator = real(*args, **kwargs)
        yield next(iterator)
        raise RuntimeError("out of demonstrations")

    monkeypatch.setattr(model, "pretrainer", failing)
    pretraining = make(model, {"expert": dataset})

    async def scenario() -> None:
        pretraining.pretrain_button.click()
        assert pretraining.task is not None
        await pretraining.task

    asyncio.run(scenario())
    assert pretraining.state == "error" and isinstance(pretraining.error, RuntimeError)
    assert "RuntimeError: out of demonstrations" in pretraining.status_text
    assert any("out of demonstrations" in o.get("text", "") for o in pretraining.error_output.outputs)
    assert len(pretraining.reports) == 1 and not pretraining.pretrain_button.disabled


def test_pretrain_without_an_event_loop_says_so(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset})
    assert pretraining.start_pretraining() is None
    assert "pretrain_blocking()" in pretraining.status_text and pretraining.reports == []


def _tick_labels(axis: Any) -> list[str]:
    return [label.get_text() for label in axis.get_xticklabels()]


def test_the_evaluation_panel_draws_returns_error_bars_and_the_expert() -> None:
    panel = EvaluationPanel()
    plots = TrainingPlots(panels=[panel], figsize=(4.0, 3.0))
    axis = plots.axes["evaluation"]
    assert_png(plots.render_png())  # nothing yet: a note, no ticks, no legend
    assert panel.note is not None and panel.note.get_text() == "no evaluation yet"
    assert list(axis.get_xticks()) == [] and axis.get_legend() is None and panel.errorbars is None

    panel.show([], expert_mean=200.0, env_label="CartPole-v1")
    assert_png(plots.render_png())
    assert list(panel.lines["expert"].get_ydata()) == [200.0, 200.0]
    assert axis.get_title() == "evaluation on CartPole-v1 (deterministic)"
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["expert 200.0"]

    rng = np.random.default_rng(0)
    evaluations: list[tuple[str, tuple[float, ...]]] = []
    for k in range(7):  # a stream of evaluations, the plot rendered after each
        n_episodes = int(rng.integers(1, 6))
        evaluations.append((f"eval {k}", tuple(rng.normal(50.0 * k, 10.0, n_episodes))))
        panel.show(evaluations, expert_mean=200.0, env_label="CartPole-v1")
        assert_png(plots.render_png())
        returns = [values for _, values in evaluations]
        dots_x, dots_y = panel.lines["episodes"].get_data()
        np.testing.assert_array_equal(dots_x, [i for i, values in enumerate(returns) for _ in values])
        np.testing.assert_allclose(dots_y, [value for values in returns for value in values])
        means, stds = [np.mean(v) for v in returns], [np.std(v) for v in returns]
        mean_x, mean_y = panel.errorbars.lines[0].get_data()
        np.testing.assert_array_equal(mean_x, np.arange(k + 1))
        np.testing.assert_allclose(mean_y, means)
        (bars,) = panel.errorbars.lines[2]
        low_high = [segment[:, 1] for segment in bars.get_segments()]  # each bar from mean - std to mean + std
        np.testing.assert_allclose(low_high, np.c_[np.subtract(means, stds), np.add(means, stds)])
        # the old artists were replaced, not piled up: dots, mean, two caps and the expert line
        assert len(axis.lines) == 5 and len(axis.containers) == 1 and panel.note is None
        assert axis.get_xlim() == (-0.5, k + 0.5)
        assert axis.get_ylim()[0] <= min(min(v) for v in returns) and axis.get_ylim()[1] >= 200.0
    every = 2  # seven labels: every other one, four in all
    assert _tick_labels(axis) == [label for label, _ in evaluations][::every]
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["expert 200.0", "mean ± std"]

    drawn = panel.lines["episodes"]
    panel.show(list(evaluations), expert_mean=200.0, env_label="CartPole-v1")  # the same data again
    plots.draw()
    assert panel.lines["episodes"] is drawn  # not redrawn
    panel.show(evaluations, expert_mean=None, env_label="CartPole-v1")
    plots.draw()
    assert "expert" not in panel.lines and len(axis.lines) == 4
    assert [t.get_text() for t in axis.get_legend().get_texts()] == ["mean ± std"]


def test_the_pretraining_figure_is_made_of_panels(model: ACKTR, dataset: ExpertDataset) -> None:
    pretraining = make(model, {"expert": dataset}, total_timesteps=400)
    plots = pretraining.plots
    assert isinstance(plots, TrainingPlots)
    assert [panel.name for panel in plots.panels] == ["pretrain", "evaluation"]
    loss, evaluation = plots.panels
    assert isinstance(loss, PretrainPanel) and isinstance(evaluation, EvaluationPanel)
    assert plots.axes["pretrain"].get_xlabel() == "epoch (over all runs)"
    assert evaluation.note is not None and evaluation.note.get_text() == "press Evaluate"
    assert plots.title.get_text() == "behaviour cloning on 'expert': no epoch yet"

    before = pretraining.evaluate(n_episodes=2)
    pretraining.pretrain_blocking(n_epochs=3)
    pretraining.pretrain_blocking(n_epochs=2)
    after = pretraining.evaluate(n_episodes=2)
    assert pretraining.history is plots.pretrain_history and pretraining.run_starts is loss.run_starts
    # the losses of both runs, epochs counted over all runs, a dashed line between the runs
    epochs, train = loss.lines["bc_train"].get_data()
    np.testing.assert_array_equal(epochs, [1, 2, 3, 4, 5])
    np.testing.assert_allclose(train, [r.train_loss for r in pretraining.reports])
    assert [line.get_xdata()[0] for line in loss.separators] == [3.5]
    # the evaluations beside the expert's return
    assert evaluation.labels == ("start", "BC 5")
    assert evaluation.returns == (before.returns, after.returns)
    np.testing.assert_allclose(evaluation.errorbars.lines[0].get_ydata(), [before.mean, after.mean])
    assert list(evaluation.lines["expert"].get_ydata()) == [dataset.mean_return] * 2
    assert plots.axes["evaluation"].get_title() == "evaluation on CartPole-v1 (deterministic)"
    assert _tick_labels(plots.axes["evaluation"]) == ["start", "BC 5"]
    assert plots.title.get_text().startswith("'expert': epoch 2/2   ·   train loss")
    assert_png(pretraining.image.value)

    # the training dashboard's behaviour-cloning panel separates the runs too
    dashboard = pretraining.continue_training()
    training_loss = dashboard.plots.panel("pretrain")
    assert isinstance(training_loss, PretrainPanel) and training_loss.run_starts == [0, 3]
    dashboard.plots.draw()
    assert [line.get_xdata()[0] for line in training_loss.separators] == [3.5]
