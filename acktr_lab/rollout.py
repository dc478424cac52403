"""The collector: steps a vector env with the policy and hands out typed batches.

The :class:`Collector` owns everything that lives *between* updates on the acting side:
the vector env, the last observations, the per-env episode starts, the policy's state
and the statistics of the episodes still running. :meth:`Collector.collect` runs
``n_steps`` steps of every env and returns a :class:`Batch` with the returns already
computed (n-step, or GAE when ``gae_lambda`` is given).

Every gymnasium autoreset mode is accepted (``env.metadata["autoreset_mode"]``, gymnasium
assumes ``NEXT_STEP`` where it is missing):

* ``SAME_STEP``: the step that ends an episode returns the next episode's first
  observation; the last one is in ``infos["final_obs"]``.
* ``NEXT_STEP`` (gymnasium's default) and ``DISABLED``: the step that ends an episode
  returns its last observation, and the collector resets the finished envs at once with
  ``env.reset(options={"reset_mask": dones})``. gymnasium's extra reset step then never
  happens: it never enters a batch and never counts as a timestep, and the batches equal
  those of the same env in ``SAME_STEP`` mode.

With a :class:`~acktr_lab.normalization.ReturnNormalizer` the batch's rewards are scaled
(episode statistics stay raw). A truncated episode did not really end, so its last
(scaled) reward is bootstrapped,
``r_t + γ·V(o_final, s_{t+1})``, from its true final observation and the policy state from
before the reset (as Stable Baselines 3 does); terminations and truncations both end the
episode for the return recursion.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode

from acktr_lab.normalization import ObservationNormalizer, ReturnNormalizer
from acktr_lab.preprocessing import assert_valid_observations
from acktr_lab.returns import bootstrap_truncated, gae_returns, nstep_returns

#: A policy state in NumPy: one ``[n_envs, ...]`` array per state tensor (``()`` if stateless).
StateArrays = tuple[np.ndarray, ...]


class Actor(Protocol):
    """What the collector needs from the policy (batched over the envs, NumPy in and out)."""

    def initial_state(self, n_envs: int) -> StateArrays:
        """The state before an episode's first observation."""

    def act(
        self, observations: np.ndarray, state: StateArrays, episode_starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, StateArrays]:
        """``(actions, values, next_state)``: sampled actions (the policy's own form), V(o_t, s_t)."""

    def value(self, observations: np.ndarray, state: StateArrays, episode_starts: np.ndarray) -> np.ndarray:
        """``V(o, s)`` without acting."""

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        """The policy's actions as ``env.step`` takes them (Box clipped, Discrete ``start`` added)."""


@dataclass(frozen=True)
class Batch:
    """One rollout of ``T = n_steps`` steps of ``N = n_envs`` envs, time-major ``[T, N, ...]``.

    ``rewards`` are bootstrapped on truncation; ``dones[t]`` marks an episode that ended at
    step ``t``; ``episode_starts[t]`` marks an observation that begins an episode (the state
    is reset before it), so ``episode_starts[t+1] = dones[t]``. ``initial_state`` is the
    policy state before ``observations[0]`` (before the reset that ``episode_starts[0]``
    asks for). ``returns`` are the targets of V and ``advantages = returns − values``.
    """

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    dones: np.ndarray
    episode_starts: np.ndarray
    values: np.ndarray
    last_values: np.ndarray
    returns: np.ndarray
    initial_state: StateArrays
    episode_returns: tuple[float, ...]
    episode_lengths: tuple[int, ...]

    @property
    def advantages(self) -> np.ndarray:
        return self.returns - self.values

    @property
    def n_transitions(self) -> int:
        return int(self.rewards.size)


@dataclass(frozen=True)
class CollectorState:
    """A collector's position between two rollouts (see :meth:`Collector.snapshot`)."""

    env: gym.vector.VectorEnv | None  # a deep copy, or None where the env cannot be copied
    observations: np.ndarray
    episode_starts: np.ndarray
    policy_state: StateArrays
    running_returns: np.ndarray
    running_lengths: np.ndarray
    return_normalizer: dict[str, np.ndarray] | None
    observation_normalizer: dict[str, np.ndarray] | None


def autoreset_mode(env: gym.vector.VectorEnv) -> AutoresetMode:
    """The env's autoreset mode (gymnasium assumes ``NEXT_STEP`` where none is declared)."""
    mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
    return mode if isinstance(mode, AutoresetMode) else AutoresetMode(mode)


class Collector:
    """Steps ``env`` with ``actor`` and keeps the run's acting state between rollouts.

    ``return_normalizer`` (optional) scales the batch's rewards; it is reset for this env's
    number of envs and keeps its statistics. ``observation_normalizer`` (optional) sees
    every observation and is published to the policy at the start of each rollout.
    """

    def __init__(
        self,
        env: gym.vector.VectorEnv,
        actor: Actor,
        seed: int | None,
        return_normalizer: ReturnNormalizer | None = None,
        observation_normalizer: ObservationNormalizer | None = None,
    ) -> None:
        self.env = env
        self.actor = actor
        self.autoreset_mode = autoreset_mode(env)
        self.return_normalizer = return_normalizer
        self.observation_normalizer = observation_normalizer
        if return_normalizer is not None:
            return_normalizer.reset(env.num_envs)
        self._reset(seed)

    def _reset(self, seed: int | None) -> None:
        n_envs = self.env.num_envs
        observations, _ = _unpack(self.env.reset(seed=seed), 2, self.env, "reset()", "(obs, infos)")
        self._check(observations)
        if self.observation_normalizer is not None:
            self.observation_normalizer.update(observations)
        self.observations = observations
        self.episode_starts = np.ones(n_envs, dtype=bool)
        self.policy_state = self.actor.initial_state(n_envs)
        self.running_returns = np.zeros(n_envs, dtype=np.float64)
        self.running_lengths = np.zeros(n_envs, dtype=np.int64)

    def _check(self, observations: np.ndarray) -> None:
        assert_valid_observations(observations, self.env.single_observation_space)

    def _step(self, actions: np.ndarray) -> Any:
        """``env.step(actions)``; an error from inside it gets a note naming the env.

        Each env's output is checked in full at its first step only
        (:class:`~acktr_lab.env_checks.FirstCallCheck`); an env that later returns an
        observation of another shape, a reward that is not a number or an info that is not
        a dict fails inside gymnasium's vector env, whose own message names neither.
        """
        try:
            return self.env.step(actions)
        except (TypeError, ValueError, AttributeError, KeyError, IndexError) as error:
            error.add_note(
                f"acktr_lab: raised inside {self.env}.step(). Each env's step() output is checked in "
                "full at its first step only; if an env later returns an observation of another shape, "
                "a reward that is not a number or an info that is not a dict, the vector env fails like "
                "this. gymnasium.utils.env_checker.check_env(env) checks an env's API."
            )
            raise

    def _checked_rewards(self, rewards: Any) -> np.ndarray:
        """A step's rewards as float32 ``[n_envs]``: ``ValueError`` naming the env and the value
        for a reward that is not a real number or is not finite in float32 (NaN, ±inf, or
        beyond float32's range). Checked before the returns or their normalisation see it."""
        raw = np.asarray(rewards)
        if raw.shape != (self.num_envs,) or raw.dtype.kind not in "biuf":
            raise ValueError(
                f"vector env {self.env}: step() must return one real reward per env, an array of shape "
                f"({self.num_envs},), got {raw.dtype} of shape {raw.shape}"
            )
        if raw.dtype.kind == "f" and not np.abs(raw).max() <= _FLOAT32_MAX:  # NaN fails the test too
            i = int(np.flatnonzero(~(np.abs(raw) <= _FLOAT32_MAX))[0])
            raise ValueError(
                f"vector env {self.env}: env {i} returned a reward of {raw[i]!r}, which is not finite in "
                "float32 (NaN, inf or beyond ±3.4e38); the rollout stopped there, before the returns, "
                "their normalisation or the parameters saw it"
            )
        return raw.astype(np.float32)

    @property
    def num_envs(self) -> int:
        return int(self.env.num_envs)

    def collect(self, n_steps: int, gamma: float, gae_lambda: float | None = None) -> Batch:
        """Step every env ``n_steps`` times and return the batch with its returns."""
        actor, n_envs = self.actor, self.num_envs
        if self.observation_normalizer is not None:
            self.observation_normalizer.publish()  # fixed for this rollout and the update after it
        begin_rollout = getattr(actor, "begin_rollout", None)
        if begin_rollout is not None:  # e.g. the NumPy actor: current weights, the rollout's noise
            begin_rollout(n_steps, n_envs)
        initial_state = self.policy_state
        obs_buf, act_buf, rew_buf, done_buf, start_buf, val_buf = [], [], [], [], [], []
        episode_returns: list[float] = []
        episode_lengths: list[int] = []
        for _ in range(n_steps):
            actions, values, next_state = actor.act(self.observations, self.policy_state, self.episode_starts)
            next_obs, raw_rewards, terminated, truncated, infos = _unpack(
                self._step(actor.to_env_actions(actions)), 5, self.env, "step()", _STEP_RESULT
            )
            terminated, truncated = np.asarray(terminated, bool), np.asarray(truncated, bool)
            dones = terminated | truncated
            raw_rewards = self._checked_rewards(raw_rewards)
            next_obs, final_obs = self._split_final(next_obs, dones, infos)
            self._check(next_obs)
            if self.observation_normalizer is not None:
                self.observation_normalizer.update(next_obs)
            rewards = raw_rewards
            if self.return_normalizer is not None:
                rewards = self.return_normalizer(raw_rewards, dones, gamma)
            truncated_only = truncated & ~terminated
            if truncated_only.any():
                self._check(final_obs)
                final_values = actor.value(final_obs, next_state, np.zeros(n_envs, dtype=bool))
                rewards = bootstrap_truncated(rewards, truncated_only, final_values, gamma)
            self.running_returns += raw_rewards
            self.running_lengths += 1
            for i in np.flatnonzero(dones):
                episode_returns.append(float(self.running_returns[i]))
                episode_lengths.append(int(self.running_lengths[i]))
            self.running_returns[dones] = 0.0
            self.running_lengths[dones] = 0
            obs_buf.append(self.observations)
            act_buf.append(actions)
            rew_buf.append(rewards)
            done_buf.append(dones)
            start_buf.append(self.episode_starts)
            val_buf.append(values)
            self.observations, self.policy_state, self.episode_starts = next_obs, next_state, dones
        last_values = np.asarray(
            actor.value(self.observations, self.policy_state, self.episode_starts), dtype=np.float32
        )
        rewards_tn, values_tn, dones_tn = np.stack(rew_buf), np.stack(val_buf).astype(np.float32), np.stack(done_buf)
        if gae_lambda is None:
            returns = nstep_returns(rewards_tn, values_tn, dones_tn, last_values, gamma)
        else:
            returns = gae_returns(rewards_tn, values_tn, dones_tn, last_values, gamma, gae_lambda)
        return Batch(
            observations=np.stack(obs_buf),
            actions=np.stack(act_buf),
            rewards=rewards_tn.astype(np.float32),
            dones=dones_tn,
            episode_starts=np.stack(start_buf),
            values=values_tn,
            last_values=last_values,
            returns=returns,
            initial_state=initial_state,
            episode_returns=tuple(episode_returns),
            episode_lengths=tuple(episode_lengths),
        )

    def _split_final(
        self, observations: np.ndarray, dones: np.ndarray, infos: dict[str, Any]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(next observations, final observations)`` of a step, whatever the autoreset mode.

        The final observations matter only where ``dones``; elsewhere they are the next ones.
        """
        if not dones.any():
            return observations, observations
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            if "final_obs" not in infos:
                raise ValueError(
                    f"the vector env {self.env} declares same-step autoreset but gave no infos['final_obs'] "
                    "when an episode ended"
                )
            final_obs = np.array(observations, copy=True)
            for i in np.flatnonzero(dones):
                final_obs[i] = infos["final_obs"][i]
            return observations, final_obs
        # NEXT_STEP / DISABLED: these are the final observations; start the next episodes now.
        final_obs = np.array(observations, copy=True)
        reset_obs, _ = _unpack(
            self.env.reset(options={"reset_mask": np.array(dones, dtype=np.bool_)}),
            2,
            self.env,
            "reset()",
            "(obs, infos)",
        )
        next_obs = np.array(observations, copy=True)
        next_obs[dones] = np.asarray(reset_obs)[dones]
        return next_obs, final_obs

    # -- snapshots --------------------------------------------------------------------
    def snapshot(self) -> CollectorState:
        """The collector's state, with a deep copy of the env where it can be copied.

        Envs stepping in other processes (``AsyncVectorEnv``/``SubprocVecEnv``) cannot be
        copied: the snapshot holds ``None`` and :meth:`restore` then resets the env instead.
        """
        try:
            env_copy = None if isinstance(self.env.unwrapped, gym.vector.AsyncVectorEnv) else copy.deepcopy(self.env)
        except Exception:
            env_copy = None
        return CollectorState(
            env=env_copy,
            observations=np.array(self.observations, copy=True),
            episode_starts=self.episode_starts.copy(),
            policy_state=tuple(np.array(s, copy=True) for s in self.policy_state),
            running_returns=self.running_returns.copy(),
            running_lengths=self.running_lengths.copy(),
            return_normalizer=self.return_normalizer.state() if self.return_normalizer is not None else None,
            observation_normalizer=(
                self.observation_normalizer.state() if self.observation_normalizer is not None else None
            ),
        )

    def restore(self, state: CollectorState, seed: int | None) -> None:
        """Continue from ``state``; an env that could not be copied is reset with ``seed``."""
        if self.return_normalizer is not None and state.return_normalizer is not None:
            self.return_normalizer.load_state(state.return_normalizer)
        if self.observation_normalizer is not None and state.observation_normalizer is not None:
            self.observation_normalizer.load_state(state.observation_normalizer)
        if state.env is None:
            self._reset(seed)
            if self.return_normalizer is not None:
                self.return_normalizer.reset(self.num_envs)
            return
        self.env = copy.deepcopy(state.env)
        self.observations = np.array(state.observations, copy=True)
        self.episode_starts = state.episode_starts.copy()
        self.policy_state = tuple(np.array(s, copy=True) for s in state.policy_state)
        self.running_returns = state.running_returns.copy()
        self.running_lengths = state.running_lengths.copy()


_STEP_RESULT = "(obs, rewards, terminated, truncated, infos)"
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _unpack(result: Any, length: int, env: Any, call: str, expected: str) -> tuple[Any, ...]:
    """``result`` as a ``length``-tuple, or a ``TypeError`` naming the vector env and the call
    (a vector env that is not gymnasium's may break the API; gymnasium's are checked up front)."""
    if not isinstance(result, tuple) or len(result) != length:
        got = f"{len(result)} values" if isinstance(result, tuple | list) else type(result).__name__
        raise TypeError(f"vector env {type(env).__qualname__}.{call} must return {expected}, got {got}")
    return result
