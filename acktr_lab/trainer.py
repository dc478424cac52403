"""The step-wise trainer: the one training loop, an iterator of immutable reports.

``next(trainer)`` collects one rollout, computes returns (n-step, or GAE when
``gae_lambda`` is set), performs exactly one ACKTR update and returns an
:class:`~acktr_lab.report.UpdateReport`. Hyperparameters changed with :meth:`Trainer.set`
take effect from the next update without recompiling anything (the values live in
``tf.Variable``s or are plain NumPy inputs). The update and its bookkeeping are never
split by a KeyboardInterrupt: one arriving meanwhile is raised right after.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from acktr_lab import hyperparameters as hp
from acktr_lab.report import FactorEigenvalues, UpdateReport
from acktr_lab.returns import gae_returns, nstep_returns
from acktr_lab.schedules import learning_rate_at, progress_of

if TYPE_CHECKING:
    from acktr_lab.acktr import ACKTR


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back SIGINT (Ctrl-C, a kernel interrupt) until the block is done."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """``1 - Var[targets - predictions] / Var[targets]`` (NaN when the targets are constant)."""
    variance = np.var(targets)
    return float("nan") if variance == 0 else float(1.0 - np.var(targets - predictions) / variance)


def _flatten(array: np.ndarray) -> np.ndarray:
    """``[n_steps, n_envs, ...]`` → ``[n_envs · n_steps, ...]`` (env-major, as Stable Baselines)."""
    return array.swapaxes(0, 1).reshape(-1, *array.shape[2:])


@dataclass(frozen=True)
class TrainerSnapshot:
    """The whole training state, in memory: see :meth:`Trainer.snapshot`."""

    parameters: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    generator_state: np.ndarray
    hyperparameters: dict[str, Any]
    num_timesteps: int
    updates: int
    collector_state: Any
    episode_returns: tuple[float, ...]
    episode_lengths: tuple[int, ...]


class Trainer:
    """Iterator of :class:`UpdateReport`, one per update, until ``total_timesteps``.

    ``total_timesteps`` here is absolute (the model's step count at which the run ends);
    the learning-rate schedule runs over this run, as in Stable Baselines 2's ``learn``.
    """

    def __init__(self, model: ACKTR, total_timesteps: int, *, reset_num_timesteps: bool = True) -> None:
        if isinstance(total_timesteps, bool) or int(total_timesteps) != total_timesteps or total_timesteps <= 0:
            raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")
        if reset_num_timesteps:
            model.num_timesteps = 0
        self.model = model
        self.run_length = int(total_timesteps)
        self.start_timesteps = model.num_timesteps
        self.total_timesteps = self.start_timesteps + self.run_length
        self.updates = 0
        self._time_training = 0.0
        self._steps_timed = 0

    # -- iteration --------------------------------------------------------------------
    @property
    def num_timesteps(self) -> int:
        return self.model.num_timesteps

    @property
    def done(self) -> bool:
        return self.model.num_timesteps >= self.total_timesteps

    def __iter__(self) -> Trainer:
        return self

    def __next__(self) -> UpdateReport:
        if self.done:
            raise StopIteration
        return self.step()

    def step(self) -> UpdateReport:
        """One rollout and exactly one update."""
        if self.done:
            raise StopIteration
        model = self.model
        used = self.hyperparameters
        started = time.perf_counter()
        rollout = model.collector.collect(model.act, model.value, model.n_steps, used["gamma"])
        if used["gae_lambda"] is None:
            returns = nstep_returns(rollout.rewards, rollout.values, rollout.dones, rollout.last_values, used["gamma"])
        else:
            returns = gae_returns(
                rollout.rewards, rollout.values, rollout.dones, rollout.last_values, used["gamma"], used["gae_lambda"]
            )
        batch_end = model.num_timesteps - self.start_timesteps + rollout.n_transitions
        learning_rate = learning_rate_at(
            model.learning_rate, model.lr_schedule, progress_of(batch_end, self.run_length)
        )
        values = _flatten(rollout.values)
        flat_returns = _flatten(returns)
        with deferred_interrupt():
            metrics = model.update_from_rollout(
                _flatten(rollout.observations),
                _flatten(rollout.actions),
                flat_returns - values,
                flat_returns,
                learning_rate,
            )
            model.num_timesteps += rollout.n_transitions
            model.episode_returns.extend(rollout.episode_returns)
            model.episode_lengths.extend(rollout.episode_lengths)
            self.updates += 1
        self._time_training += time.perf_counter() - started
        self._steps_timed += rollout.n_transitions
        eigenvalues = None
        if bool(metrics["inverse_refreshed"]):
            eigenvalues = {name: FactorEigenvalues(a, g) for name, (a, g) in model.optimizer.eigenvalues().items()}
        return UpdateReport(
            update=self.updates,
            timesteps=model.num_timesteps,
            total_timesteps=self.total_timesteps,
            fps=self._steps_timed / max(self._time_training, 1e-9),
            learning_rate=float(metrics["learning_rate"]),
            policy_loss=float(metrics["policy_loss"]),
            value_loss=float(metrics["value_loss"]),
            entropy=float(metrics["entropy"]),
            explained_variance=explained_variance(values, flat_returns),
            kl=float(metrics["kl"]),
            trust_region_scale=float(metrics["trust_region_scale"]),
            gfg=float(metrics["gfg"]),
            kfac_step=bool(metrics["kfac_step"]),
            skipped=bool(metrics["skipped"]),
            episode_returns=rollout.episode_returns,
            episode_lengths=rollout.episode_lengths,
            fisher_eigenvalues=eigenvalues,
            hyperparameters={k: hp.describe(v) for k, v in used.items()},
        )

    # -- live hyperparameters ---------------------------------------------------------
    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The live values (``learning_rate`` is the schedule's initial value)."""
        return {name: getattr(self.model, name) for name in hp.LIVE_HYPERPARAMETERS}

    def set(self, **values: Any) -> None:
        """Change live hyperparameters from the next update on; all validated first."""
        checked = hp.validate_live(values)
        for name, value in checked.items():
            setattr(self.model, name, value)

    def learning_rate_curve(self, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """``(timesteps, learning rate)`` over the whole run under the current settings."""
        steps = np.linspace(self.start_timesteps, self.total_timesteps, max(2, n_points))
        rates = np.array(
            [
                learning_rate_at(
                    self.model.learning_rate,
                    self.model.lr_schedule,
                    min(1.0, (s - self.start_timesteps) / self.run_length),
                )
                for s in steps
            ]
        )
        return steps, rates

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self) -> TrainerSnapshot:
        """Everything needed to come back here: parameters, K-FAC state, schedule position,
        random state and the env (copied when gymnasium allows; see :meth:`restore`)."""
        model = self.model
        return TrainerSnapshot(
            parameters=model.get_parameters(),
            optimizer_state={k: v.numpy().copy() for k, v in model.optimizer.state_variables().items()},
            generator_state=model.generator.state.numpy().copy(),
            hyperparameters=self.hyperparameters,
            num_timesteps=model.num_timesteps,
            updates=self.updates,
            collector_state=model.collector.snapshot(),
            episode_returns=tuple(model.episode_returns),
            episode_lengths=tuple(model.episode_lengths),
        )

    def restore(self, snapshot: TrainerSnapshot) -> None:
        """Go back to a snapshot. Envs that cannot be copied (``SubprocVecEnv``) are reset
        with the model's seed instead of resuming mid-episode."""
        model = self.model
        model.load_parameters(snapshot.parameters)
        model._restore_optimizer(snapshot.optimizer_state)
        model.generator.reset(snapshot.generator_state)
        for name, value in snapshot.hyperparameters.items():
            setattr(model, name, value)
        model.num_timesteps = snapshot.num_timesteps
        self.updates = snapshot.updates
        model.collector.restore(snapshot.collector_state, seed=model.seed)
        model.episode_returns.clear()
        model.episode_returns.extend(snapshot.episode_returns)
        model.episode_lengths.clear()
        model.episode_lengths.extend(snapshot.episode_lengths)
