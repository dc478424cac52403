"""Vector envs: input kinds, autoreset modes, truncation, episode statistics."""

from __future__ import annotations

import sys
import types

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv
from gymnasium.wrappers.vector import RecordEpisodeStatistics

from acktr_lab.vec_env import DummyVecEnv, SubprocVecEnv, as_vector_env, make_vec_env


def _unwrap(env: gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    while isinstance(env, gym.vector.VectorWrapper):
        env = env.env
    return env


def test_env_id() -> None:
    env = as_vector_env("CartPole-v1", n_envs=3)
    assert isinstance(env, DummyVecEnv)
    assert env.num_envs == 3
    assert env.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    obs, _ = env.reset(seed=0)
    assert obs.shape == (3, 4)
    env.close()


def test_gym_env_object_is_reused() -> None:
    single = gym.make("CartPole-v1")
    env = as_vector_env(single)
    assert _unwrap(env).envs[0] is single
    with pytest.raises(ValueError, match="n_envs=2"):
        as_vector_env(gym.make("CartPole-v1"), n_envs=2)
    env.close()


def test_vector_env_used_as_is() -> None:
    vec = make_vec_env("CartPole-v1", n_envs=2)
    env = as_vector_env(vec, n_envs=1)  # n_envs is ignored for vector envs
    assert env is vec and env.num_envs == 2
    wrapped = RecordEpisodeStatistics(vec)
    assert as_vector_env(wrapped) is wrapped
    made = gym.make_vec(
        "CartPole-v1",
        num_envs=2,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
    )
    assert as_vector_env(made) is made
    env.close()
    made.close()


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED])
def test_every_autoreset_mode_accepted(mode: AutoresetMode) -> None:
    vec = SyncVectorEnv([lambda: gym.make("CartPole-v1")], autoreset_mode=mode)
    assert as_vector_env(vec) is vec
    default = SyncVectorEnv([lambda: gym.make("CartPole-v1")])  # gymnasium's default: NEXT_STEP
    assert as_vector_env(default) is default
    vec.close()
    default.close()


def test_other_inputs_rejected() -> None:
    with pytest.raises(TypeError, match="int"):
        as_vector_env(42)
    with pytest.raises(TypeError, match="dict"):
        as_vector_env({"env": "CartPole-v1"})


def test_old_gym_env_without_shimmy(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old-gym env is recognised; without shimmy the error says to install it."""
    fake_gym = types.ModuleType("gym")

    class OldEnv:  # stands in for gym.Env
        pass

    fake_gym.Env = OldEnv  # type: ignore[attr-defined]
    fake_gym.__version__ = "0.21.0"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gym", fake_gym)
    monkeypatch.setitem(sys.modules, "shimmy", None)  # import shimmy -> ImportError
    with pytest.raises(ValueError, match="shimmy"):
        as_vector_env(OldEnv())


def test_final_obs_and_truncation_vs_termination() -> None:
    env = RecordEpisodeStatistics(make_vec_env("CartPole-v1", n_envs=2, seed=0, env_kwargs={"max_episode_steps": 5}))
    env.reset()
    # Alternating pushes keep the pole up for 5 steps: both envs hit the time limit.
    for t in range(5):
        obs, _, terminated, truncated, infos = env.step(np.array([t % 2, t % 2]))
        if t < 4:
            assert not truncated.any() and not terminated.any()
    assert truncated.all() and not terminated.any()
    assert infos["_final_obs"].all()
    final = np.stack(infos["final_obs"])
    assert final.shape == (2, 4)
    assert not np.allclose(final, obs)  # obs is already the next episode's first observation
    # Episode statistics are recorded on the same step.
    assert infos["_episode"].all()
    np.testing.assert_array_equal(infos["episode"]["l"], [5, 5])
    np.testing.assert_array_equal(infos["episode"]["r"], [5.0, 5.0])
    env.close()


def test_termination_and_episode_statistics() -> None:
    env = RecordEpisodeStatistics(make_vec_env("CartPole-v1", n_envs=2, seed=1))
    env.reset()
    lengths = np.zeros(2, dtype=int)
    returns = np.zeros(2)
    seen = 0
    for _ in range(200):
        # Always push left: the pole falls within a few dozen steps (termination).
        _, rewards, terminated, truncated, infos = env.step(np.array([0, 0]))
        lengths += 1
        returns += rewards
        done = terminated | truncated
        if done.any():
            assert terminated[done].all() and not truncated.any()
            assert infos["_final_obs"][done].all()
            assert infos["_episode"].tolist() == done.tolist()
            np.testing.assert_array_equal(infos["episode"]["l"][done], lengths[done])
            np.testing.assert_allclose(infos["episode"]["r"][done], returns[done])
            seen += int(done.sum())
            lengths[done] = 0
            returns[done] = 0.0
        else:
            assert "episode" not in infos and "final_obs" not in infos
    assert seen >= 4
    env.close()


def test_make_vec_env_seed_is_reproducible() -> None:
    def first_obs() -> np.ndarray:
        env = make_vec_env("CartPole-v1", n_envs=2, seed=7)
        obs, _ = env.reset()
        env.close()
        return obs

    a, b = first_obs(), first_obs()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a[0], a[1])  # different seeds per copy


def test_make_vec_env_callable_and_wrapper() -> None:
    env = make_vec_env(
        lambda max_episode_steps: gym.make("CartPole-v1", max_episode_steps=max_episode_steps),
        n_envs=1,
        env_kwargs={"max_episode_steps": 3},
        wrapper_class=gym.wrappers.RecordEpisodeStatistics,
    )
    assert isinstance(env.envs[0], gym.wrappers.RecordEpisodeStatistics)
    # The per-env wrapper's "episode" info lands in final_info under same-step autoreset,
    # so it does not clash with the vector-level statistics.
    env = RecordEpisodeStatistics(env)
    env.reset(seed=0)
    for _ in range(3):
        *_, truncated, infos = env.step(np.array([0]))
    assert truncated.all()
    np.testing.assert_array_equal(infos["episode"]["l"], [3])
    assert infos["final_info"]["episode"]["l"][0] == 3
    with pytest.raises(ValueError):
        make_vec_env("CartPole-v1", n_envs=0)
    env.close()


def test_subproc_vec_env_two_envs() -> None:
    env = RecordEpisodeStatistics(
        make_vec_env(
            "CartPole-v1",
            n_envs=2,
            seed=0,
            vec_env_cls=SubprocVecEnv,
            env_kwargs={"max_episode_steps": 3},
        )
    )
    assert isinstance(_unwrap(env), SubprocVecEnv)
    obs, _ = env.reset()
    assert obs.shape == (2, 4)
    for _ in range(3):
        obs, _, _, truncated, infos = env.step(np.array([0, 1]))
    assert truncated.all()
    assert infos["_final_obs"].all() and infos["_episode"].all()
    np.testing.assert_array_equal(infos["episode"]["l"], [3, 3])
    env.close()
    # Same seed, same observations as in this process.
    dummy = make_vec_env("CartPole-v1", n_envs=2, seed=0, env_kwargs={"max_episode_steps": 3})
    sub = make_vec_env(
        "CartPole-v1",
        n_envs=2,
        seed=0,
        vec_env_cls=SubprocVecEnv,
        env_kwargs={"max_episode_steps": 3},
    )
    np.testing.assert_array_equal(dummy.reset()[0], sub.reset()[0])
    dummy.close()
    sub.close()
