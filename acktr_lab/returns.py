"""Discounted returns for one rollout: n-step returns and GAE (NumPy).

All arrays are time-major, shaped ``[n_steps, n_envs]``; ``last_values`` is
``[n_envs]``, the critic's value ``V(s_T)`` of the observation after the rollout's
last step. Outputs are float32 (the recursions run in float64).

Contract on ``dones`` and truncation:

* ``dones[t]`` is true when the episode ended *at* step ``t`` (terminated **or**
  truncated). The recursion then does not look past ``t``: the next row belongs to
  a new episode (same-step autoreset).
* A truncated episode did not really end, so its last reward must be bootstrapped
  with the value of the *final* observation (``infos['final_obs']``), not of the
  reset observation that follows. That is the caller's job, done before calling
  these functions, as Stable Baselines 3 does: the rollout computes
  ``V(final_obs)`` and replaces the reward with
  ``r_t + γ · V(final_obs_t)`` on truncated (and not terminated) steps; see
  :func:`bootstrap_truncated`. With that, ``dones`` may treat truncation exactly
  like termination.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

ArrayLike = npt.ArrayLike


def _prepare(rewards: ArrayLike, dones: ArrayLike, last_values: ArrayLike) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(rewards, dtype=np.float64)
    if r.ndim < 1:
        raise ValueError(f"rewards must be at least 1-D [n_steps, ...], got shape {r.shape}")
    d = np.asarray(dones).astype(bool)
    if d.shape != r.shape:
        raise ValueError(f"dones shape {d.shape} differs from rewards shape {r.shape}")
    last = np.broadcast_to(np.asarray(last_values, dtype=np.float64), r.shape[1:])
    return r, d, last


def nstep_returns(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_values: ArrayLike,
    gamma: float,
) -> np.ndarray:
    """n-step discounted returns, bootstrapped from ``last_values`` (SB2 ``discount_with_dones``).

    Backward recursion with ``R_T = V(s_T) = last_values``::

        R_t = r_t + γ · (1 - done_t) · R_{t+1}

    so each return sums discounted rewards to the end of its episode or of the
    rollout, plus ``γ^k · V(s_T)`` when the episode is still running at the end.
    ``values`` is accepted for a uniform signature with :func:`gae_returns` and is
    only checked for shape. Advantages are ``R_t - V(s_t)``.
    """
    r, d, last = _prepare(rewards, dones, last_values)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != r.shape:
        raise ValueError(f"values shape {v.shape} differs from rewards shape {r.shape}")
    out = np.empty_like(r)
    running = last.copy()
    for t in range(r.shape[0] - 1, -1, -1):
        running = r[t] + gamma * (1.0 - d[t]) * running
        out[t] = running
    return out.astype(np.float32)


def _gae64(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_values: ArrayLike,
    gamma: float,
    gae_lambda: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(advantages, values) in float64; see :func:`gae_advantages`."""
    r, d, last = _prepare(rewards, dones, last_values)
    v = np.asarray(values, dtype=np.float64)
    if v.shape != r.shape:
        raise ValueError(f"values shape {v.shape} differs from rewards shape {r.shape}")
    n_steps = r.shape[0]
    advantages = np.empty_like(r)
    running = np.zeros_like(last)
    for t in range(n_steps - 1, -1, -1):
        next_values = last if t == n_steps - 1 else v[t + 1]
        nonterminal = 1.0 - d[t]
        delta = r[t] + gamma * nonterminal * next_values - v[t]
        running = delta + gamma * gae_lambda * nonterminal * running
        advantages[t] = running
    return advantages, v


def gae_advantages(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_values: ArrayLike,
    gamma: float,
    gae_lambda: float,
) -> np.ndarray:
    """Generalized advantage estimates (Schulman et al. 2016), float32.

    With ``V_T = last_values`` and ``nonterminal_t = 1 - done_t``::

        δ_t = r_t + γ · nonterminal_t · V_{t+1} - V_t
        A_t = δ_t + γ · λ · nonterminal_t · A_{t+1},   A_T = 0
    """
    advantages, _ = _gae64(rewards, values, dones, last_values, gamma, gae_lambda)
    return advantages.astype(np.float32)


def gae_returns(
    rewards: ArrayLike,
    values: ArrayLike,
    dones: ArrayLike,
    last_values: ArrayLike,
    gamma: float,
    gae_lambda: float,
) -> np.ndarray:
    """λ-returns ``R_t = A_t + V_t`` from :func:`gae_advantages` (float32).

    ``λ = 1`` gives the n-step (Monte Carlo + bootstrap) returns of
    :func:`nstep_returns`; ``λ = 0`` gives the TD(0) targets
    ``r_t + γ (1 - done_t) V_{t+1}``.
    """
    advantages, v = _gae64(rewards, values, dones, last_values, gamma, gae_lambda)
    return (advantages + v).astype(np.float32)


def bootstrap_truncated(
    rewards: ArrayLike,
    truncated: ArrayLike,
    final_values: ArrayLike,
    gamma: float,
    terminated: ArrayLike | None = None,
) -> np.ndarray:
    """Rewards with truncated steps bootstrapped: ``r_t + γ · V(final_obs_t)`` (float32).

    ``final_values`` has the shape of ``rewards`` and holds ``V(final_obs_t)`` at
    truncated steps; its other entries are ignored (they may be NaN). A step that
    is both terminated and truncated is a real termination and is not
    bootstrapped when ``terminated`` is given. The input is not modified.
    """
    r = np.asarray(rewards, dtype=np.float64)
    trunc = np.asarray(truncated).astype(bool)
    if trunc.shape != r.shape:
        raise ValueError(f"truncated shape {trunc.shape} differs from rewards shape {r.shape}")
    if terminated is not None:
        term = np.asarray(terminated).astype(bool)
        if term.shape != r.shape:
            raise ValueError(f"terminated shape {term.shape} differs from rewards shape {r.shape}")
        trunc = trunc & ~term
    final = np.broadcast_to(np.asarray(final_values, dtype=np.float64), r.shape)
    return (r + gamma * np.where(trunc, final, 0.0)).astype(np.float32)
