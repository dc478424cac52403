"""acktr_lab.episodes: recording an episode step by step, and an LSTM state's parts."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from acktr_lab import ACKTR
from acktr_lab.episodes import Episode, record_episode, split_lstm_state
from acktr_lab.evaluation import evaluate
from acktr_lab.tasks import CueMemoryEnv


class CountingModel:
    """``predict`` whose state counts the steps since the last ``mask`` start; action = that count mod 2."""

    def __init__(self) -> None:
        self.masks: list[bool] = []
        self.deterministic: list[bool] = []

    def predict(self, obs: Any, state: Any = None, mask: Any = None, deterministic: bool = False) -> tuple[Any, Any]:
        start = bool(np.asarray(mask).reshape(-1)[0])
        self.masks.append(start)
        self.deterministic.append(deterministic)
        count = 1 if start or state is None else int(state[0, 0]) + 1
        return count % 2, np.array([[count, -count]], np.float32)


class StepEnv(gym.Env):
    """Episodes of ``length`` steps, then truncated; observation = steps taken; reward = action."""

    def __init__(self, length: int = 5) -> None:
        self.observation_space = gym.spaces.Box(0.0, 100.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.length, self._t = length, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.array([0.0], np.float32), {}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self._t += 1
        return np.array([self._t], np.float32), float(action), False, self._t >= self.length, {}


def test_each_step_records_what_the_policy_saw_carried_did_and_got() -> None:
    model = CountingModel()
    episode = record_episode(model, StepEnv(5), seed=0)
    assert isinstance(episode, Episode) and len(episode) == 5
    assert model.masks == [True, False, False, False, False]  # the state restarts at the first step only
    assert model.deterministic == [True] * 5
    np.testing.assert_array_equal(episode.observations[:, 0], [0, 1, 2, 3, 4])  # o_t, before step t
    np.testing.assert_array_equal(episode.states, [[1, -1], [2, -2], [3, -3], [4, -4], [5, -5]])
    np.testing.assert_array_equal(episode.actions, [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(episode.rewards, [1, 0, 1, 0, 1])
    assert episode.total_return == 3.0
    assert episode.terminated is False  # StepEnv truncates


def test_a_state_of_several_parts_is_stacked_part_by_part() -> None:
    class TwoPartModel(CountingModel):
        def predict(self, obs: Any, state: Any = None, mask: Any = None, deterministic: bool = False) -> Any:
            action, counts = super().predict(obs, None if state is None else state[0], mask, deterministic)
            return action, (counts, 10 * counts[:, :1])

    episode = record_episode(TwoPartModel(), StepEnv(3))
    assert isinstance(episode.states, tuple) and len(episode.states) == 2
    np.testing.assert_array_equal(episode.states[0], [[1, -1], [2, -2], [3, -3]])
    np.testing.assert_array_equal(episode.states[1], [[10], [20], [30]])


def test_an_env_id_is_made_and_closed_and_a_feedforward_policy_carries_no_state() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    episode = record_episode(model, "CartPole-v1", seed=3)
    assert episode.states is None
    assert episode.total_return == evaluate(model, "CartPole-v1", 1, seed=3)[0]  # the same deterministic episode
    assert episode.terminated == (len(episode) < 500)
    sampled = record_episode(model, "CartPole-v1", seed=3, deterministic=False)
    assert sampled.observations.shape == (len(sampled), 4)


def test_an_lstm_policy_state_is_its_cell_and_hidden_vectors() -> None:
    model = ACKTR("MlpLstmPolicy", CueMemoryEnv(3), n_steps=5, seed=0, policy_kwargs={"n_lstm": 4})
    episode = record_episode(model, CueMemoryEnv(3), options={"cue": 1})
    np.testing.assert_array_equal(episode.observations[0], [0, 1, 0])
    assert episode.terminated and len(episode) == 5
    assert isinstance(episode.states, np.ndarray) and episode.states.shape == (5, 8)
    cell, hidden = split_lstm_state(episode.states)
    assert cell.shape == hidden.shape == (5, 4)
    # The same loop by hand: the state predict returns after each observation.
    env = CueMemoryEnv(3)
    obs, _ = env.reset(options={"cue": 1})
    state = None
    for t in range(5):
        action, state = model.predict(obs, state=state, mask=[t == 0], deterministic=True)
        np.testing.assert_array_equal(episode.actions[t], action)
        np.testing.assert_array_equal(episode.states[t], state[0])
        obs, *_ = env.step(action)
    # h = o ⊙ tanh(c) with o = σ(·) ∈ (0, 1): |h| < |tanh(c)|, and of the same sign.
    assert np.all(np.abs(hidden) < np.abs(np.tanh(cell)) + 1e-7)
    assert np.all(np.sign(hidden) == np.sign(cell))


def test_split_lstm_state_keeps_leading_axes_and_refuses_odd_sizes() -> None:
    states = np.arange(2 * 3 * 6).reshape(2, 3, 6)
    cell, hidden = split_lstm_state(states)
    np.testing.assert_array_equal(cell, states[..., :3])
    np.testing.assert_array_equal(hidden, states[..., 3:])
    with pytest.raises(ValueError, match=r"even last dimension \(2·n_lstm\), got shape \(2, 5\)"):
        split_lstm_state(np.zeros((2, 5)))
