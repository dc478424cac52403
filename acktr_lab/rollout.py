"""Collecting one rollout of ``n_steps`` from a gymnasium vector env (same-step autoreset).

Terminations and truncations are told apart: a truncated episode did not really end, so
its last reward is bootstrapped with ``γ·V(final observation)`` (as Stable Baselines 3
does), and both mark the end of the episode for the return computation.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from acktr_lab.preprocessing import assert_valid_observations
from acktr_lab.returns import bootstrap_truncated

#: ``act(observations) -> (actions, values)``, batched over the envs.
ActFn = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
#: ``value(observations) -> values``.
ValueFn = Callable[[np.ndarray], np.ndarray]
#: Policy actions → what ``env.step`` takes (Box clipped to bounds, Discrete ``start`` added);
#: the buffer keeps the policy's own actions.
ToEnvFn = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Rollout:
    """Arrays shaped ``[n_steps, n_envs, ...]``; ``rewards`` already bootstrapped on truncation."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    values: np.ndarray
    last_values: np.ndarray
    episode_returns: tuple[float, ...]
    episode_lengths: tuple[int, ...]

    @property
    def n_transitions(self) -> int:
        return int(self.rewards.size)


class RolloutCollector:
    """Steps a vector env with a policy and keeps the last observation between rollouts."""

    def __init__(self, env: gym.vector.VectorEnv, seed: int | None, to_env_actions: ToEnvFn) -> None:
        self.env = env
        self.to_env_actions = to_env_actions
        self.observations, _ = env.reset(seed=seed)
        self._check(self.observations)

    def _check(self, observations: np.ndarray) -> None:
        assert_valid_observations(observations, self.env.single_observation_space)

    def collect(self, act: ActFn, value: ValueFn, n_steps: int, gamma: float) -> Rollout:
        env = self.env
        obs_buf, act_buf, rew_buf, done_buf, val_buf = [], [], [], [], []
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        for _ in range(n_steps):
            actions, values = act(self.observations)
            next_obs, rewards, terminated, truncated, infos = env.step(self.to_env_actions(actions))
            self._check(next_obs)
            rewards = np.asarray(rewards, dtype=np.float32)
            truncated_only = np.asarray(truncated) & ~np.asarray(terminated)
            if truncated_only.any():
                final_obs = np.stack(
                    [infos["final_obs"][i] if truncated_only[i] else self.observations[i] for i in range(env.num_envs)]
                )
                rewards = bootstrap_truncated(rewards, truncated_only, value(final_obs), gamma)
            if "episode" in infos:
                ended = infos["_episode"]
                episode_returns += [float(r) for r in infos["episode"]["r"][ended]]
                episode_lengths += [int(n) for n in infos["episode"]["l"][ended]]
            obs_buf.append(self.observations)
            act_buf.append(actions)
            rew_buf.append(rewards)
            done_buf.append(np.asarray(terminated) | np.asarray(truncated))
            val_buf.append(values)
            self.observations = next_obs
        return Rollout(
            observations=np.stack(obs_buf),
            actions=np.stack(act_buf),
            rewards=np.stack(rew_buf).astype(np.float32),
            dones=np.stack(done_buf),
            values=np.stack(val_buf).astype(np.float32),
            last_values=np.asarray(value(self.observations), dtype=np.float32),
            episode_returns=tuple(episode_returns),
            episode_lengths=tuple(episode_lengths),
        )

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self) -> tuple[np.ndarray, gym.vector.VectorEnv | None]:
        """The current observations and a deep copy of the env where it can be copied.

        Envs stepping in other processes (``SubprocVecEnv``) cannot be copied: ``None``,
        and :meth:`restore` then resets the env instead.
        """
        try:
            env_copy = None if isinstance(self.env.unwrapped, gym.vector.AsyncVectorEnv) else copy.deepcopy(self.env)
        except Exception:
            env_copy = None
        return self.observations.copy(), env_copy

    def restore(self, state: tuple[np.ndarray, gym.vector.VectorEnv | None], seed: int | None) -> None:
        observations, env_copy = state
        if env_copy is not None:
            self.env = copy.deepcopy(env_copy)
            self.observations = observations.copy()
        else:
            self.observations, _ = self.env.reset(seed=seed)
