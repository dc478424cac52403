"""Observation and return normalisation, as the rl-baselines-zoo's ``normalize`` did.

:class:`ObservationNormalizer` keeps the running mean and variance of the observations; the
policy reads them (``x̃ = clip((x − μ)/√(σ² + ε), −10, 10)``), so ``predict`` and evaluation
after loading apply them with no wrapper to remember. The collector updates the statistics
at every step and hands them to the policy at the start of each rollout: acting and the
update that follows see the same inputs. Between rollouts the policy therefore reads the
statistics of the last rollout's start, not the newest; both are saved, so that a loaded
model acts as the saved one did and carries on training as it would have.

:class:`ReturnNormalizer` scales rewards by the running standard deviation of the return.

The same scaling as gymnasium's ``NormalizeReward`` and Stable Baselines' ``VecNormalize``
(``norm_reward``), kept by the collector rather than a wrapper, so that episode statistics
stay in the env's own units and the statistics are saved with the model::

    G_t = γ · G_{t−1} · (1 − done_{t−1}) + r_t      (per env, from the raw rewards)
    σ²  = running variance of every G_t seen        (gymnasium's RunningMeanStd)
    r̃_t = r_t / √(σ² + ε)

Why ACKTR needs it: every update is bounded by one KL trust region over actor *and*
critic, and the critic's share of ``gᵀF⁻¹g`` grows with the value error. With returns of
order 100 (CartPole-v1) the critic moves ≈ √(kfac_clip / 4) ≈ 0.016 per update, so V never
catches up with the returns (explained variance ≈ 0 for a whole 150k-step run, measured),
and the policy learns from advantages that are mostly value error. With returns of order
1 the critic fits them within a few thousand steps.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from gymnasium.wrappers.utils import RunningMeanStd

from acktr_lab.safe_archive import float32_overflow

#: Weight, in observations, of the prior (mean 0, variance 1) the observation statistics start from.
OBSERVATION_PRIOR_COUNT = 1_000.0


class ObservationNormalizer:
    """Running statistics of the observations, published to the policy's variables.

    The statistics start from a prior of ``prior_count`` observations with mean 0 and
    variance 1, so the first rollouts see inputs close to the raw ones rather than inputs
    scaled by the spread of the first few observations. Measured on Acrobot-v1, whose
    episodes all start within ±0.1 of rest: with gymnasium's negligible prior (1e-4), the
    first update saw some inputs scaled 100 times and clipped at ±10, the tanh units
    saturated, the cold start's K-FAC statistics were built from them, and seeds 0 and 2
    never left −500 in 500k steps (entropy at its maximum). With the prior they learn as
    with no observation normalisation.
    """

    def __init__(self, mean: tf.Variable, var: tf.Variable, prior_count: float = OBSERVATION_PRIOR_COUNT) -> None:
        self.mean_variable, self.var_variable = mean, var
        self.statistics = RunningMeanStd(epsilon=prior_count, shape=tuple(mean.shape))

    def update(self, observations: np.ndarray) -> None:
        """Add a batch of raw observations ``[B, ...]``."""
        batch = np.asarray(observations, dtype=np.float64)
        self.statistics.update(batch.reshape(batch.shape[0], -1))

    def publish(self) -> None:
        """Hand the current statistics to the policy."""
        self._hand_over(self.statistics.mean, self.statistics.var)

    def _hand_over(self, mean: np.ndarray, var: np.ndarray) -> None:
        """Make the policy read ``mean`` and ``var`` (in its variables' dtype)."""
        self.mean_variable.assign(mean.astype(self.mean_variable.dtype.as_numpy_dtype))
        self.var_variable.assign(var.astype(self.var_variable.dtype.as_numpy_dtype))

    def state(self) -> dict[str, np.ndarray]:
        """The running statistics, and the ones the policy reads now (``published_*``)."""
        return {
            "mean": np.asarray(self.statistics.mean, np.float64),
            "var": np.asarray(self.statistics.var, np.float64),
            "count": np.asarray(self.statistics.count, np.float64),
            "published_mean": self.mean_variable.numpy().astype(np.float64),
            "published_var": self.var_variable.numpy().astype(np.float64),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state` (``ValueError`` for wrong shapes or values).

        The policy gets the ``published_*`` statistics where the state has them, so that it
        acts as the one saved; a state without them (an older file, SB2's ``VecNormalize``)
        publishes the running statistics.
        """
        mean, var, count, published_mean, published_var = self.check_state(state)
        self.statistics.mean, self.statistics.var, self.statistics.count = mean, var, float(count)
        self._hand_over(published_mean, published_var)

    def check_state(self, state: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
        """``(mean, var, count, published_mean, published_var)`` of a :meth:`state`, or
        ``ValueError``: a missing entry, a wrong shape, a non-finite or negative value, or a
        value beyond float32's range (the policy reads float32)."""
        try:
            mean, var, count = (np.asarray(state[k], np.float64) for k in ("mean", "var", "count"))
        except KeyError as error:
            raise ValueError(f"observation normalisation state is missing {error}") from error
        published = [k for k in ("published_mean", "published_var") if k in state]
        if len(published) == 1:
            raise ValueError(f"observation normalisation state has {published[0]} without its pair")
        published_mean, published_var = (
            (np.asarray(state["published_mean"], np.float64), np.asarray(state["published_var"], np.float64))
            if published
            else (mean, var)
        )
        shape = tuple(self.mean_variable.shape)
        if any(x.shape != shape for x in (mean, var, published_mean, published_var)) or count.shape != ():
            raise ValueError(f"observation normalisation statistics must have shape {shape}")
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var)) and np.isfinite(count)):
            raise ValueError("observation normalisation statistics hold non-finite values")
        if np.any(var < 0) or np.any(published_var < 0) or count <= 0:
            raise ValueError("observation normalisation statistics have a negative variance or count")
        for what, values in (
            ("mean", mean),
            ("variance", var),
            ("published mean", published_mean),
            ("published variance", published_var),
        ):
            problem = float32_overflow(values)
            if problem is not None:
                raise ValueError(f"observation normalisation {what} {problem}")
        return mean, var, count, published_mean, published_var


class ReturnNormalizer:
    """Scales a vector env's rewards by the running std of its discounted returns."""

    def __init__(self, n_envs: int, epsilon: float = 1e-8) -> None:
        self.epsilon = float(epsilon)
        self.statistics = RunningMeanStd(shape=())
        self.returns = np.zeros(n_envs, dtype=np.float64)

    def reset(self, n_envs: int) -> None:
        """Start every env's return afresh (a new env); the statistics are kept."""
        self.returns = np.zeros(n_envs, dtype=np.float64)

    def __call__(self, rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
        """Scaled rewards of one step (float32); ``dones`` end the returns after this step."""
        self.returns = gamma * self.returns + np.asarray(rewards, dtype=np.float64)
        self.statistics.update(self.returns)
        scaled = np.asarray(rewards, dtype=np.float64) / np.sqrt(self.statistics.var + self.epsilon)
        self.returns[np.asarray(dones, dtype=bool)] = 0.0
        return scaled.astype(np.float32)

    @property
    def scale(self) -> float:
        """The factor rewards are multiplied by now."""
        return float(1.0 / np.sqrt(self.statistics.var + self.epsilon))

    # -- state ------------------------------------------------------------------------
    def state(self) -> dict[str, np.ndarray]:
        return {
            "return_mean": np.asarray(self.statistics.mean, np.float64),
            "return_var": np.asarray(self.statistics.var, np.float64),
            "return_count": np.asarray(self.statistics.count, np.float64),
            "running_returns": self.returns.copy(),
        }

    def load_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`state` (``ValueError`` for missing, non-finite or negative values)."""
        mean, var, count = self.check_state(state)
        self.statistics.mean, self.statistics.var, self.statistics.count = mean, var, float(count)
        returns = np.asarray(state.get("running_returns", self.returns), np.float64)
        if returns.shape == self.returns.shape and np.all(np.isfinite(returns)):
            self.returns = returns.copy()

    @staticmethod
    def check_state(state: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(mean, var, count)`` of a :meth:`state`, or ``ValueError`` for missing, non-scalar,
        non-finite or negative values."""
        try:
            mean, var, count = (np.asarray(state[k], np.float64) for k in ("return_mean", "return_var", "return_count"))
        except KeyError as error:
            raise ValueError(f"return normalisation state is missing {error}") from error
        if mean.shape != () or var.shape != () or count.shape != ():
            raise ValueError("return normalisation statistics must be scalars")
        if not (np.isfinite(mean) and np.isfinite(var) and np.isfinite(count)) or var < 0 or count <= 0:
            raise ValueError(f"invalid return normalisation statistics: mean {mean}, var {var}, count {count}")
        return mean, var, count
