"""Live hyperparameters, snapshots and interrupt safety of the step-wise trainer."""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acktr_lab import ACKTR
from acktr_lab.report import Edit, UpdateReport
from acktr_lab.schedules import SCHEDULES, progress_of


def _model(**kwargs: object) -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, seed=3, **kwargs)


def test_set_takes_effect_from_the_next_update_without_retracing() -> None:
    model = _model()
    trainer = model.trainer(2_000)
    first = trainer.step()
    assert first.hyperparameters["learning_rate"] == 0.25
    traces = model.train_step_traces()

    trainer.set(
        learning_rate=0.1,
        ent_coef=0.05,
        vf_coef=0.5,
        kfac_clip=0.002,
        max_grad_norm=1.0,
        lr_schedule="constant",
        gamma=0.95,
        gae_lambda=0.9,
        vf_fisher_coef=0.5,
    )
    second = trainer.step()
    assert second.hyperparameters["learning_rate"] == 0.1
    assert second.hyperparameters["lr_schedule"] == "constant"
    assert second.hyperparameters["gae_lambda"] == 0.9
    assert second.learning_rate == pytest.approx(0.1)  # constant schedule: the base value itself
    assert float(model.learner.loss_coefficients["ent_coef"].numpy()) == pytest.approx(0.05)
    assert float(model.learner.loss_coefficients["vf_fisher_coef"].numpy()) == pytest.approx(0.5)
    assert model.optimizer.get_hyperparameters()["kfac_clip"] == pytest.approx(0.002)
    assert model.optimizer.get_hyperparameters()["max_grad_norm"] == pytest.approx(1.0)
    assert model.train_step_traces() == traces


@pytest.mark.parametrize("kfac_kwargs", [{}, {"kfac_update": 3, "stats_update": 3}, {"async_eigen_decomp": True}])
def test_every_update_plan_is_compiled_at_the_first_update(kfac_kwargs: dict) -> None:
    """No pause to trace later on (e.g. at the first K-FAC step, after the cold start)."""
    model = _model(**kfac_kwargs)
    plans = model.optimizer.possible_plans()
    assert len(plans) == len(set(plans)) >= 2  # the cold start and at least one K-FAC plan
    trainer = model.trainer(16 * 20)
    trainer.step()
    compiled = model.learner.compiled_functions()
    assert [compiled.get(f"update {tuple(plan)}") for plan in plans] == [1] * len(plans)
    assert {"kl", "kfac momentum step", "weight read"} <= set(compiled)  # shared stages, the NumPy actor's read
    reports = [trainer.step() for _ in range(15)]
    assert any(r.kfac_step for r in reports)
    assert model.learner.compiled_functions() == compiled


def test_learning_rate_follows_the_schedule_after_a_change() -> None:
    model = _model()
    trainer = model.trainer(1_600)
    trainer.step()
    trainer.set(lr_schedule="double_linear_con", learning_rate=0.2)
    report = trainer.step()
    expected = 0.2 * SCHEDULES["double_linear_con"](progress_of(report.timesteps, 1_600))
    assert report.learning_rate == pytest.approx(expected)
    steps, rates = trainer.learning_rate_curve(50)
    assert steps[0] == 0 and steps[-1] == 1_600
    assert rates[-1] == pytest.approx(0.2 * 0.125)


def test_invalid_values_change_nothing() -> None:
    model = _model()
    trainer = model.trainer(1_000)
    before = trainer.hyperparameters
    with pytest.raises(ValueError, match="gamma"):
        trainer.set(learning_rate=0.1, gamma=1.5)
    with pytest.raises(ValueError, match="lr_schedule"):
        trainer.set(lr_schedule="cosine")
    with pytest.raises(ValueError, match="n_steps"):
        trainer.set(n_steps=5)
    with pytest.raises(ValueError, match="kfac_clip"):
        trainer.set(kfac_clip=float("nan"))
    assert trainer.hyperparameters == before
    assert trainer.step().hyperparameters["learning_rate"] == 0.25


def test_snapshot_and_restore_replay_the_same_updates() -> None:
    model = _model()
    trainer = model.trainer(4_000)
    for _ in range(12):  # past the cold start, so K-FAC state matters
        trainer.step()
    snapshot = trainer.snapshot()
    first = [trainer.step() for _ in range(4)]
    params_first = model.get_parameters()

    trainer.set(learning_rate=0.01)  # a branch the user later abandons
    trainer.step()
    trainer.restore(snapshot)
    assert trainer.hyperparameters["learning_rate"] == 0.25
    again = [trainer.step() for _ in range(4)]
    for a, b in zip(first, again):
        assert a.timesteps == b.timesteps
        assert a.policy_loss == pytest.approx(b.policy_loss, rel=1e-5, abs=1e-7)
        assert a.value_loss == pytest.approx(b.value_loss, rel=1e-5, abs=1e-7)
        assert a.episode_returns == b.episode_returns
    for name, value in model.get_parameters().items():
        np.testing.assert_allclose(value, params_first[name], rtol=1e-5, atol=1e-7)


def test_keyboard_interrupt_never_splits_an_update() -> None:
    model = _model()
    trainer = model.trainer(2_000)
    trainer.step()
    original = model.learner.update

    def interrupted_update(*args: object, **kwargs: object) -> dict:
        os.kill(os.getpid(), signal.SIGINT)  # arrives in the middle of the update
        return original(*args, **kwargs)

    model.learner.update = interrupted_update  # type: ignore[method-assign]
    with pytest.raises(KeyboardInterrupt):
        trainer.step()
    model.learner.update = original  # type: ignore[method-assign]
    # The update completed and its bookkeeping with it: counters agree.
    assert int(model.optimizer.iterations.numpy()) == trainer.updates == 2
    assert model.num_timesteps == 2 * 16
    assert all(np.all(np.isfinite(v)) for v in model.get_parameters().values())
    assert trainer.step().update == 3


# -- the edit log ------------------------------------------------------------------------
def _edited_run(edits: tuple[Edit, ...] = (), live: bool = False) -> tuple[ACKTR, list[UpdateReport]]:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=10, seed=3)
    trainer = model.trainer(20 * 16, edits=edits)
    reports = []
    for report in trainer:
        if live and report.update == 3:
            trainer.set(ent_coef=0.05, learning_rate=0.1)
        if live and report.update == 11:
            trainer.set(lr_schedule="constant", gae_lambda=0.9, ent_coef=0.05)  # ent_coef unchanged: no edit
        reports.append(report)
    return model, reports


def _not_timed(metrics: Mapping[str, float]) -> dict[str, float]:
    return {name: value for name, value in metrics.items() if not name.startswith("cost/")}


def test_live_changes_are_logged_and_a_seeded_replay_reproduces_the_run_exactly(tmp_path: Path) -> None:
    original, reports = _edited_run(live=True)
    log = original.edit_log
    assert [(e.update, e.name, e.old, e.new) for e in log] == [
        (4, "ent_coef", 0.01, 0.05),
        (4, "learning_rate", 0.25, 0.1),
        (12, "lr_schedule", "linear", "constant"),
        (12, "gae_lambda", None, 0.9),
    ]
    assert all(e.timesteps == (e.update - 1) * 20 for e in log)
    assert [e for r in reports for e in r.edits] == list(log)  # each reported with its first update
    assert reports[3].edits == log[:2] and not reports[4].edits

    replay, replayed = _edited_run(edits=log)
    assert replay.edit_log == log
    for name, value in original.get_parameters().items():
        np.testing.assert_array_equal(replay.get_parameters()[name], value, err_msg=name)
    # every metric but the wall-clock ones (cost/…) is reproduced; NaN == NaN
    np.testing.assert_equal([_not_timed(r.metrics) for r in replayed], [_not_timed(r.metrics) for r in reports])

    unedited, _ = _edited_run()
    assert any(not np.array_equal(unedited.get_parameters()[k], v) for k, v in original.get_parameters().items())

    # saved with the model, and replayable from the loaded file
    original.save(tmp_path / "edited.zip")
    loaded = ACKTR.load(tmp_path / "edited.zip")
    assert loaded.edit_log == log
    from_file, _ = _edited_run(edits=loaded.edit_log)
    np.testing.assert_array_equal(from_file.get_parameters()["model/pi/w:0"], original.get_parameters()["model/pi/w:0"])


def test_a_restored_snapshot_takes_its_edit_log_back() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    trainer = model.trainer(200)
    next(trainer)
    snapshot = trainer.snapshot()
    trainer.set(gamma=0.9)
    next(trainer)
    assert len(trainer.edit_log) == 1
    trainer.restore(snapshot)
    assert trainer.edit_log == []


@pytest.mark.parametrize(
    "edits",
    [
        [{"update": 1, "name": "gamma"}],
        [Edit(0, 0, "gamma", 0.99, 0.9)],
        [Edit(2, 0, "n_steps", 20, 10)],
        [Edit(2, 0, "gamma", 0.99, 7.0)],
    ],
)
def test_bad_edits_to_replay_are_refused(edits: list[Any]) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=5, seed=0)
    with pytest.raises(ValueError):
        model.trainer(100, edits=edits)


def test_a_slider_change_is_logged_as_an_edit() -> None:
    from acktr_lab.widgets import Dashboard

    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    dashboard = Dashboard(model.trainer(100), redraw_interval=1e9)
    dashboard.step()
    dashboard.controls["ent_coef"].value = 0.03
    report = dashboard.step()
    assert isinstance(report, UpdateReport)
    assert [(e.update, e.name, e.old, e.new) for e in report.edits] == [(2, "ent_coef", 0.01, 0.03)]
    assert model.edit_log == report.edits
