"""Deterministic evaluation episodes: what the CLI, the pretraining dashboard and the tests report."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


def evaluate(model: Any, env: str | gym.Env, n_episodes: int, seed: int) -> list[float]:
    """Returns of ``n_episodes`` deterministic episodes of ``model.predict`` on ``env``.

    ``env`` is an env id (made here and closed afterwards) or a gymnasium ``Env`` (used
    as is and left open). Episode i starts with ``env.reset(seed=seed + i)``. The policy
    state ``predict`` returns is carried through each episode and reset at its start.
    """
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    created = isinstance(env, str)
    environment = gym.make(env) if isinstance(env, str) else env
    try:
        returns = []
        for episode in range(int(n_episodes)):
            obs, _ = environment.reset(seed=int(seed) + episode)
            total, done, state, start = 0.0, False, None, True
            while not done:
                action, state = model.predict(obs, state=state, mask=[start], deterministic=True)
                start = False
                obs, reward, terminated, truncated, _ = environment.step(action)
                total += float(reward)
                done = bool(terminated or truncated)
            returns.append(total)
    finally:
        if created:
            environment.close()
    return returns
