"""One episode of a model, recorded step by step: what the policy saw, carried, did and got.

:func:`record_episode` plays one episode with ``model.predict(obs, state, mask)``, the Stable
Baselines 2 loop, and keeps every observation, policy state, action and reward, so that a
notebook can plot what a recurrent policy's state does over an episode. :func:`split_lstm_state`
reads an LSTM policy's state as its cell and hidden vectors. (Rendered frames of an episode:
:mod:`acktr_lab.replay`.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

__all__ = ["Episode", "record_episode", "split_lstm_state"]

PolicyStates = np.ndarray | tuple[np.ndarray, ...]


@dataclass(frozen=True)
class Episode:
    """One recorded episode of ``T`` steps.

    Step ``t`` is: the policy sees ``observations[t]``, its state becomes ``states[t]`` (what
    ``predict`` returned, computed from ``observations[t]`` and ``states[t − 1]``; for an LSTM
    policy ``[c_t, h_t]``), it takes ``actions[t]`` (chosen from that state) and gets
    ``rewards[t]``.

    Attributes:
        observations: ``[T, *observation_shape]``.
        actions: ``[T, *action_shape]``, as passed to ``env.step`` (Box actions clipped).
        rewards: ``[T]``.
        states: ``[T, *state_shape]`` (a tuple of such arrays for a policy whose state has
            several parts); ``None`` for feedforward policies.
        terminated: the episode reached a terminal state (``False``: it was truncated).
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    states: PolicyStates | None
    terminated: bool

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def total_return(self) -> float:
        """The undiscounted return ``Σ_t rewards[t]``."""
        return float(np.sum(self.rewards))


def record_episode(
    model: Any,
    env: str | gym.Env,
    *,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
    deterministic: bool = True,
) -> Episode:
    """Play one episode of ``model.predict`` on ``env`` and record it.

    The state ``predict`` returns is passed back at the next step, and ``mask=[True]`` marks
    the first observation (the state restarts from zeros), as in Stable Baselines 2's loop::

        obs, _ = env.reset(seed=seed, options=options)
        state, start, done = None, True, False
        while not done:
            action, state = model.predict(obs, state=state, mask=[start])
            obs, reward, terminated, truncated, _ = env.step(action)
            start, done = False, terminated or truncated

    Args:
        model: anything with Stable Baselines 2's ``predict(obs, state, mask, deterministic)``.
        env: a gymnasium ``Env`` (used as it is and left open) or an env id (made here and
            closed afterwards).
        seed, options: passed to ``env.reset``.
        deterministic: the distribution's mode (``True``) or a sample (``False``).
    """
    created = isinstance(env, str)
    environment = gym.make(env) if isinstance(env, str) else env
    try:
        obs, _ = environment.reset(seed=seed, options=options)
        observations, actions, rewards, states = [], [], [], []
        state, start, done, terminated = None, True, False, False
        while not done:
            action, state = model.predict(obs, state=state, mask=[start], deterministic=deterministic)
            observations.append(np.asarray(obs))
            actions.append(np.asarray(action))
            states.append(state)
            obs, reward, terminated, truncated, _ = environment.step(action)
            rewards.append(float(reward))
            start, done = False, bool(terminated or truncated)
    finally:
        if created:
            environment.close()
    return Episode(
        observations=np.stack(observations),
        actions=np.stack(actions),
        rewards=np.asarray(rewards, dtype=np.float64),
        states=_stack_states(states),
        terminated=bool(terminated),
    )


def _stack_states(states: list[Any]) -> PolicyStates | None:
    """``predict``'s per-step states (each for one observation) → ``[T, ...]`` arrays."""
    if states[0] is None:
        return None
    if isinstance(states[0], tuple):
        return tuple(np.stack([np.asarray(s[k])[0] for s in states]) for k in range(len(states[0])))
    return np.stack([np.asarray(s)[0] for s in states])


def split_lstm_state(states: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An LSTM policy's state ``[..., 2·n_lstm]`` → ``(c, h)``, each ``[..., n_lstm]``.

    The state is Stable Baselines 2's ``[c, h]`` concatenated: ``c`` the cell (the memory,
    ``c_t = f ⊙ c_{t−1} + i ⊙ u``), ``h = o ⊙ tanh(c)`` the hidden output the heads read
    (see :mod:`acktr_lab.recurrent`).
    """
    array = np.asarray(states)
    if array.ndim == 0 or array.shape[-1] % 2:
        raise ValueError(f"an LSTM state has an even last dimension (2·n_lstm), got shape {array.shape}")
    n = array.shape[-1] // 2
    return array[..., :n], array[..., n:]
