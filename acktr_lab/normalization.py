"""Return normalisation: rewards scaled by the running standard deviation of the return.

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
from gymnasium.wrappers.utils import RunningMeanStd


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
        try:
            mean, var, count = (np.asarray(state[k], np.float64) for k in ("return_mean", "return_var", "return_count"))
        except KeyError as error:
            raise ValueError(f"return normalisation state is missing {error}") from error
        if mean.shape != () or var.shape != () or count.shape != ():
            raise ValueError("return normalisation statistics must be scalars")
        if not (np.isfinite(mean) and np.isfinite(var) and np.isfinite(count)) or var < 0 or count <= 0:
            raise ValueError(f"invalid return normalisation statistics: mean {mean}, var {var}, count {count}")
        self.statistics.mean, self.statistics.var, self.statistics.count = mean, var, float(count)
        returns = np.asarray(state.get("running_returns", self.returns), np.float64)
        if returns.shape == self.returns.shape and np.all(np.isfinite(returns)):
            self.returns = returns.copy()
