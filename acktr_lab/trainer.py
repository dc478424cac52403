"""The trainer: owns one training run and yields an immutable report per update.

A run is a :class:`~acktr_lab.rollout.Collector` (acting) and a
:class:`~acktr_lab.learner.Learner` (learning) stepped in turn::

    env → collector → Batch → learner (policy, losses, K-FAC) → parameters
                                   ↓
                               UpdateReport → dashboard, logger, TensorBoard, callbacks

The trainer owns what belongs to the run: its counters and timing, the window of the
last 100 finished episodes, the live hyperparameters and snapshots. ``next(trainer)``
collects one rollout, performs exactly one update and returns an
:class:`~acktr_lab.report.UpdateReport`. :meth:`Trainer.set` may be called from any
thread: the values wait until the update in progress is done and apply from the next one,
so every report's ``hyperparameters`` are exactly the values its update used. The update
and its bookkeeping are never split by a KeyboardInterrupt: one arriving meanwhile is
raised right after.
"""

from __future__ import annotations

import collections
import contextlib
import math
import signal
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from acktr_lab import hyperparameters as hp
from acktr_lab.learner import LOSS_COEFFICIENTS, OPTIMIZER_SETTINGS, Learner, LearnerState
from acktr_lab.report import Edit, FactorEigenvalues, UpdateReport
from acktr_lab.rollout import Collector, CollectorState
from acktr_lab.schedules import learning_rate_at, progress_of
from acktr_lab.update_cost import attribute

#: How many finished episodes the trainer keeps for its running means (Stable Baselines' window).
EPISODE_WINDOW = 100


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


def _same(a: Any, b: Any) -> bool:
    """Whether a live value is unchanged (callables by identity, numbers by value)."""
    if callable(a) or callable(b):
        return a is b
    return bool(a == b)


def explained_variance(predictions: np.ndarray, targets: np.ndarray) -> float:
    """``1 - Var[targets - predictions] / Var[targets]`` (NaN when the targets are constant)."""
    variance = np.var(targets)
    return float("nan") if variance == 0 else float(1.0 - np.var(targets - predictions) / variance)


@dataclass(frozen=True)
class TrainerSnapshot:
    """The whole state of a run, in memory: see :meth:`Trainer.snapshot`."""

    learner: LearnerState
    collector: CollectorState
    hyperparameters: dict[str, Any]
    num_timesteps: int
    updates: int
    episode_returns: tuple[float, ...]
    episode_lengths: tuple[int, ...]
    edit_log: tuple[Edit, ...] = ()


def check_total_timesteps(total_timesteps: Any) -> None:
    """``ValueError`` naming ``total_timesteps`` unless it is a whole number ≥ 1 (an int, or a
    float such as ``1e5`` that is one, as Stable Baselines 2 accepted; not a bool or a string)."""
    whole = (
        not isinstance(total_timesteps, bool)
        and isinstance(total_timesteps, int | float | np.integer | np.floating)
        and math.isfinite(total_timesteps)
        and total_timesteps == int(total_timesteps)
    )
    if not whole or total_timesteps <= 0:
        raise ValueError(f"total_timesteps must be a positive integer, got {total_timesteps!r}")


class Trainer:
    """Iterator of :class:`UpdateReport`, one per update, until ``total_timesteps`` more steps.

    Args:
        learner, collector: the run's two halves (the collector acts with the learner's policy).
        total_timesteps: the length of this run; the learning-rate schedule runs over it,
            as in Stable Baselines 2's ``learn``.
        hyperparameters: a value for every live hyperparameter
            (:data:`~acktr_lab.hyperparameters.LIVE_HYPERPARAMETERS`).
        n_steps: steps per env per update.
        num_timesteps: the step count the run starts from (it ends at this plus ``total_timesteps``).
        episodes: ``(returns, lengths)`` of earlier finished episodes, for the running means.
        seed: resets envs that a snapshot could not copy (see :meth:`restore`).
        model: the object this run belongs to, for consumers (a dashboard's Save button, the
            locals of Stable Baselines callbacks); the trainer never uses it.
        edits: live changes to replay, each applied from its ``update`` on (an earlier run's
            :attr:`edit_log`: with the same seed the run is reproduced exactly).
        cost_every: time the parts of an update (:mod:`acktr_lab.update_cost`) at the first
            update and then every ``cost_every`` updates, and report every update's cost split
            into them (``cost/…`` metrics); 0 (the default) reports only ``cost/update_ms`` and
            ``cost/rollout_ms``. The timing changes nothing in the run and is not counted in fps.

    Every change of a live hyperparameter (from :meth:`set`, a dashboard's controls or
    ``edits``) is recorded in :attr:`edit_log` as an :class:`~acktr_lab.report.Edit`, and
    reported with the update it first applies to.
    """

    def __init__(
        self,
        learner: Learner,
        collector: Collector,
        total_timesteps: int,
        *,
        hyperparameters: Mapping[str, Any],
        n_steps: int,
        num_timesteps: int = 0,
        episodes: tuple[Iterable[float], Iterable[int]] = ((), ()),
        seed: int | None = None,
        model: Any = None,
        edits: Iterable[Edit] = (),
        cost_every: int = 0,
    ) -> None:
        check_total_timesteps(total_timesteps)
        missing = sorted(set(hp.LIVE_HYPERPARAMETERS) - set(hyperparameters))
        if missing:
            raise ValueError(f"the trainer needs a value for every live hyperparameter; missing {missing}")
        self.learner = learner
        self.collector = collector
        self.model = model
        self.n_steps = hp.validate("n_steps", n_steps)
        self.seed = seed
        self.run_length = int(total_timesteps)
        self.start_timesteps = int(num_timesteps)
        self.total_timesteps = self.start_timesteps + self.run_length
        self.num_timesteps = self.start_timesteps
        self.updates = 0
        self.episode_returns: collections.deque[float] = collections.deque(episodes[0], maxlen=EPISODE_WINDOW)
        self.episode_lengths: collections.deque[int] = collections.deque(episodes[1], maxlen=EPISODE_WINDOW)
        self._hyperparameters = hp.validate_live(dict(hyperparameters))
        self._pending: dict[str, Any] = {}
        #: Every change of a live hyperparameter in this run, in order.
        self.edit_log: list[Edit] = []
        self._replay: dict[int, dict[str, Any]] = {}
        for edit in edits:
            if not isinstance(edit, Edit):
                raise ValueError(f"edits must be Edit records (a run's edit_log), got {edit!r}")
            if isinstance(edit.update, bool) or not isinstance(edit.update, int) or edit.update < 1:
                raise ValueError(f"an edit's update must be a positive integer, got {edit.update!r}")
            self._replay.setdefault(edit.update, {}).update(hp.validate_live({edit.name: edit.new}))
        self._lock = threading.Lock()
        self._time_training = 0.0
        self._steps_timed = 0
        self.cost_every = cost_every
        #: The latest part timings (:meth:`UpdateCostProbe.measure`); empty until the first.
        self.update_cost: dict[str, float] = {}

    # -- iteration --------------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.num_timesteps >= self.total_timesteps

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
        with self._lock:  # values set meanwhile apply from here on, never inside an update
            update = self.updates + 1
            changes = {**self._replay.get(update, {}), **self._pending}
            edits = tuple(
                Edit(update, self.num_timesteps, name, self._hyperparameters[name], value)
                for name, value in changes.items()
                if not _same(self._hyperparameters[name], value)
            )
            self.edit_log.extend(edits)
            self._hyperparameters.update(changes)
            self._pending.clear()
            used = dict(self._hyperparameters)
        # the update's learning rate, known (and checked) before the rollout spends env steps
        n_transitions = self.n_steps * self.collector.num_envs
        progress = progress_of(self.num_timesteps - self.start_timesteps + n_transitions, self.run_length)
        learning_rate = learning_rate_at(used["learning_rate"], used["lr_schedule"], progress)
        started = time.perf_counter()
        batch = self.collector.collect(self.n_steps, used["gamma"], used["gae_lambda"])
        collected = time.perf_counter()
        with deferred_interrupt():
            self.learner.set_hyperparameters(**{k: used[k] for k in (*LOSS_COEFFICIENTS, *OPTIMIZER_SETTINGS)})
            metrics = self.learner.update(batch, learning_rate)
            self.num_timesteps += batch.n_transitions
            self.episode_returns.extend(batch.episode_returns)
            self.episode_lengths.extend(batch.episode_lengths)
            self.updates += 1
        finished = time.perf_counter()
        self._time_training += finished - started
        self._steps_timed += batch.n_transitions
        decomposed = metrics.pop("kfac/eigenvalues", None)  # present whenever the inverse was refreshed
        metrics = {k: float(v) for k, v in metrics.items()}
        metrics["cost/rollout_ms"] = 1000.0 * (collected - started)
        metrics["cost/update_ms"] = 1000.0 * (finished - collected)
        if self.cost_every and (not self.update_cost or self.updates % self.cost_every == 0):
            self.update_cost = self.learner.cost_probe.measure(batch)
        if self.update_cost:
            metrics.update(attribute(metrics["cost/update_ms"], self.update_cost, metrics))
        metrics["train/explained_variance"] = explained_variance(batch.values, batch.returns)
        eigenvalues = None
        if bool(metrics["kfac/inverse_refreshed"]):
            eigenvalues = {name: FactorEigenvalues(a, g) for name, (a, g) in decomposed.items()}
        return UpdateReport(
            update=self.updates,
            timesteps=self.num_timesteps,
            total_timesteps=self.total_timesteps,
            fps=self._steps_timed / max(self._time_training, 1e-9),
            learning_rate=metrics["train/learning_rate"],
            policy_loss=metrics["train/policy_loss"],
            value_loss=metrics["train/value_loss"],
            entropy=metrics["train/entropy"],
            explained_variance=metrics["train/explained_variance"],
            kl=metrics["train/kl"],
            trust_region_scale=metrics["kfac/trust_region_scale"],
            gfg=metrics["kfac/gfg"],
            kfac_step=bool(metrics["kfac/kfac_step"]),
            skipped=bool(metrics["kfac/skipped"]),
            metrics=metrics,
            edits=edits,
            episode_returns=batch.episode_returns,
            episode_lengths=batch.episode_lengths,
            fisher_eigenvalues=eigenvalues,
            hyperparameters={k: hp.describe(v) for k, v in used.items()},
        )

    @property
    def cost_every(self) -> int:
        """Updates between timings of an update's parts (0: never; see the class docstring)."""
        return self._cost_every

    @cost_every.setter
    def cost_every(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 0:
            raise ValueError(f"cost_every must be an integer ≥ 0 (0: no timing), got {value!r}")
        self._cost_every = int(value)

    # -- live hyperparameters ---------------------------------------------------------
    @property
    def hyperparameters(self) -> dict[str, Any]:
        """The live values the next update will use (``learning_rate`` is the schedule's
        initial value)."""
        with self._lock:
            return {**self._hyperparameters, **self._pending}

    def set(self, **values: Any) -> None:
        """Change live hyperparameters from the next update on; all validated first.

        Safe from any thread: an update in progress keeps the values it started with.
        """
        checked = hp.validate_live(values)
        with self._lock:
            self._pending.update(checked)

    def learning_rate_curve(self, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        """``(timesteps, learning rate)`` over the whole run under the current settings."""
        current = self.hyperparameters
        steps = np.linspace(self.start_timesteps, self.total_timesteps, max(2, n_points))
        progress = np.minimum(1.0, (steps - self.start_timesteps) / self.run_length)
        rates = np.array([learning_rate_at(current["learning_rate"], current["lr_schedule"], p) for p in progress])
        return steps, rates

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self) -> TrainerSnapshot:
        """Everything needed to come back here: parameters, K-FAC state, random state,
        schedule position, hyperparameters and the env (copied when gymnasium allows; see
        :meth:`restore`)."""
        return TrainerSnapshot(
            learner=self.learner.state(),
            collector=self.collector.snapshot(),
            hyperparameters=self.hyperparameters,
            num_timesteps=self.num_timesteps,
            updates=self.updates,
            episode_returns=tuple(self.episode_returns),
            episode_lengths=tuple(self.episode_lengths),
            edit_log=tuple(self.edit_log),
        )

    def restore(self, snapshot: TrainerSnapshot) -> None:
        """Go back to a snapshot of this model (``ValueError`` for another model's, and
        nothing changes). Envs that cannot be copied (``SubprocVecEnv``) are reset with the
        run's seed instead of resuming mid-episode."""
        if not isinstance(snapshot, TrainerSnapshot):
            raise TypeError(f"restore takes a TrainerSnapshot, got {type(snapshot).__name__}")
        self.learner.restore(snapshot.learner)  # checks the owner before changing anything
        self.collector.restore(snapshot.collector, seed=self.seed)
        with self._lock:
            self._hyperparameters = dict(snapshot.hyperparameters)
            self._pending.clear()
        self.num_timesteps = snapshot.num_timesteps
        self.updates = snapshot.updates
        self.edit_log = list(snapshot.edit_log)
        self.episode_returns.clear()
        self.episode_returns.extend(snapshot.episode_returns)
        self.episode_lengths.clear()
        self.episode_lengths.extend(snapshot.episode_lengths)
