"""acktr_lab.tasks.CueMemoryEnv: the memory task of notebook 08 and the recurrent tests."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from acktr_lab import ACKTR
from acktr_lab.tasks import CueMemoryEnv


@pytest.mark.parametrize("delay", [0, 1, 3])
@pytest.mark.parametrize("cue", [0, 1])
def test_an_episode_is_cue_blanks_query(delay: int, cue: int) -> None:
    env = CueMemoryEnv(delay)
    obs, info = env.reset(seed=0, options={"cue": cue})
    assert info == {} and env.cue == cue
    seen = [obs]
    for _ in range(delay + 1):  # the cue and the blank steps: no reward, whatever the action
        obs, reward, terminated, truncated, _ = env.step(1 - cue)
        assert (reward, terminated, truncated) == (0.0, False, False)
        seen.append(obs)
    expected = np.zeros((delay + 2, 3), np.float32)
    expected[0, cue] = 1.0
    expected[-1, 2] = 1.0
    np.testing.assert_array_equal(np.stack(seen), expected)
    assert all(o.dtype == np.float32 and env.observation_space.contains(o) for o in seen)
    _, reward, terminated, truncated, _ = env.step(cue)  # the answer at the query
    assert (reward, terminated, truncated) == (1.0, True, False)


@pytest.mark.parametrize("cue", [0, 1])
def test_the_wrong_answer_at_the_query_earns_nothing(cue: int) -> None:
    env = CueMemoryEnv(2)
    env.reset(options={"cue": cue})
    for _ in range(3):
        env.step(cue)
    assert env.step(1 - cue)[1:3] == (0.0, True)


def test_the_query_looks_the_same_for_both_cues() -> None:
    """What makes memory necessary: only the first observation tells the cues apart."""
    episodes = []
    for cue in (0, 1):
        env = CueMemoryEnv(3)
        observations = [env.reset(options={"cue": cue})[0]]
        observations += [env.step(0)[0] for _ in range(4)]
        episodes.append(np.stack(observations))
    assert not np.array_equal(episodes[0][0], episodes[1][0])
    np.testing.assert_array_equal(episodes[0][1:], episodes[1][1:])


def test_the_cue_is_drawn_from_the_seed() -> None:
    cues = []
    for seed in range(40):
        env = CueMemoryEnv()
        env.reset(seed=seed)
        again = CueMemoryEnv()
        again.reset(seed=seed)
        assert env.cue == again.cue
        cues.append(env.cue)
    assert 10 <= sum(cues) <= 30  # both cues, about equally often


@pytest.mark.parametrize("delay", [-1, 1.5, True, "3"])
def test_a_bad_delay_is_refused(delay: object) -> None:
    with pytest.raises(ValueError, match="delay must be a non-negative integer"):
        CueMemoryEnv(delay)  # type: ignore[arg-type]


def test_a_bad_cue_option_is_refused() -> None:
    with pytest.raises(ValueError, match=r"options\['cue'\] must be 0 or 1, got 2"):
        CueMemoryEnv().reset(options={"cue": 2})


def test_it_follows_the_gymnasium_api_and_trains() -> None:
    env = CueMemoryEnv(3)
    check_env(env, skip_render_check=True)
    assert env.observation_space is not CueMemoryEnv(3).observation_space  # seeding one seeds no other
    model = ACKTR("MlpLstmPolicy", CueMemoryEnv(3), n_steps=5, seed=0, policy_kwargs={"n_lstm": 4})
    model.learn(20)
    assert model.num_timesteps == 20
    assert isinstance(model.action_space, gym.spaces.Discrete) and model.action_space.n == 2
