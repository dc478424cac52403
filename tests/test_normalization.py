"""Return normalisation (against a hand computation, in the collector, saved with the model)
and the evaluation callback that keeps the best model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from test_hardening import with_arrays
from test_run_core import CountdownEnv, StepCountingActor

from acktr_lab import ACKTR
from acktr_lab.callbacks import EvalCallback
from acktr_lab.normalization import OBSERVATION_PRIOR_COUNT, ReturnNormalizer
from acktr_lab.rollout import Collector


def _hand_scaled(rewards: np.ndarray, dones: np.ndarray, gamma: float) -> np.ndarray:
    """r_t / sqrt(Var[G_0..G_t] + 1e-8) over every env's discounted return so far, with
    gymnasium's RunningMeanStd prior (mean 0, var 1, count 1e-4)."""
    n_steps, n_envs = rewards.shape
    returns = np.zeros(n_envs)
    seen: list[np.ndarray] = []
    out = np.zeros_like(rewards, dtype=np.float64)
    for t in range(n_steps):
        returns = gamma * returns + rewards[t]
        seen.append(returns.copy())
        values = np.concatenate(seen)
        count = 1e-4 + values.size
        # The prior (mean 0, variance 1, weight 1e-4) pooled with every return seen so far.
        m2 = 1.0 * 1e-4 + ((values - values.mean()) ** 2).sum() + values.mean() ** 2 * 1e-4 * values.size / count
        out[t] = rewards[t] / np.sqrt(m2 / count + 1e-8)
        returns[dones[t]] = 0.0
    return out


def test_return_normalizer_against_a_hand_computation() -> None:
    rng = np.random.default_rng(0)
    rewards = rng.normal(3.0, 2.0, size=(12, 3))
    dones = rng.random((12, 3)) < 0.2
    normalizer = ReturnNormalizer(n_envs=3)
    scaled = np.stack([normalizer(rewards[t], dones[t], 0.9) for t in range(12)])
    np.testing.assert_allclose(scaled, _hand_scaled(rewards, dones, 0.9), rtol=1e-5)
    assert normalizer.scale == pytest.approx(scaled[-1, 0] / rewards[-1, 0], rel=1e-5)


def test_collector_scales_batch_rewards_but_not_episode_statistics() -> None:
    envs = [lambda: CountdownEnv(0), lambda: CountdownEnv(1)]
    plain = Collector(gym.vector.SyncVectorEnv(envs), StepCountingActor(), seed=0).collect(6, gamma=0.9)
    normalizer = ReturnNormalizer(n_envs=2)
    scaled = Collector(gym.vector.SyncVectorEnv(envs), StepCountingActor(), seed=0, return_normalizer=normalizer)
    batch = scaled.collect(6, gamma=0.9)
    assert batch.episode_returns == plain.episode_returns  # the env's own units
    # Scaled rewards, then the truncation bootstrap r̃ + γ·V(final) on top (env 0, step 2).
    replay = ReturnNormalizer(n_envs=2)
    raw = plain.rewards.astype(np.float64)
    raw[2, 0] -= 0.9 * 33.0  # undo the plain batch's bootstrap to get the env's reward
    expected = np.stack([replay(raw[t], plain.dones[t], 0.9) for t in range(6)]).astype(np.float64)
    expected[2, 0] += 0.9 * 33.0
    np.testing.assert_allclose(batch.rewards, expected, rtol=1e-5)
    assert normalizer.scale < 1.0  # returns here are larger than 1


def test_normalisation_statistics_survive_save_and_load(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, seed=0, normalize_returns=True)
    model.learn(16 * 20)
    scale = model.return_normalizer.scale
    assert scale != pytest.approx(1.0, abs=1e-3)
    model.save(tmp_path / "m")
    loaded = ACKTR.load(tmp_path / "m", env="CartPole-v1")
    assert loaded.normalize_returns is True
    assert loaded.return_normalizer.scale == pytest.approx(scale)
    assert loaded.return_normalizer.statistics.count == pytest.approx(model.return_normalizer.statistics.count)
    # A model without normalisation has none, and says so in its file.
    plain = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    plain.save(tmp_path / "p")
    assert ACKTR.load(tmp_path / "p").return_normalizer is None


def test_a_snapshot_restores_the_normalisation_statistics() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, seed=0, normalize_returns=True)
    trainer = model.trainer(2_000)
    trainer.step()
    snapshot = trainer.snapshot()
    scale = model.return_normalizer.scale
    for _ in range(5):
        trainer.step()
    assert model.return_normalizer.scale != scale
    trainer.restore(snapshot)
    assert model.return_normalizer.scale == scale


@pytest.mark.parametrize("bad", [True, 1, "yes", None])
def test_normalize_returns_must_be_a_boolean(bad: Any) -> None:
    if bad is True:
        ACKTR("MlpPolicy", "CartPole-v1", normalize_returns=bad)
        return
    with pytest.raises(ValueError, match="normalize_returns"):
        ACKTR("MlpPolicy", "CartPole-v1", normalize_returns=bad)


# -- keeping the best model -----------------------------------------------------------


def test_eval_callback_keeps_and_restores_the_best_parameters(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=10, seed=0)
    callback = EvalCallback(
        "CartPole-v1", eval_freq=400, n_eval_episodes=3, best_model_save_path=tmp_path, restore_best=True
    )
    model.learn(2_400, callback=callback)
    assert [t for t, _, _ in callback.evaluations] == [400, 800, 1200, 1600, 2000, 2400]
    best = max(mean for _, mean, _ in callback.evaluations)
    assert callback.best_mean_return == best
    for name, value in model.get_parameters().items():  # restored at the end
        np.testing.assert_array_equal(value, callback.best_parameters[name])
    saved = ACKTR.load(tmp_path / "best_model.zip")
    for name, value in saved.get_parameters().items():
        np.testing.assert_array_equal(value, callback.best_parameters[name])
    from acktr_lab.evaluation import evaluate

    assert np.mean(evaluate(model, "CartPole-v1", 3, seed=0)) == pytest.approx(best)


def test_eval_callback_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="eval_freq"):
        EvalCallback("CartPole-v1", eval_freq=0)
    with pytest.raises(ValueError, match="n_eval_episodes"):
        EvalCallback("CartPole-v1", n_eval_episodes=2.5)  # type: ignore[arg-type]


# -- observation normalisation --------------------------------------------------------


def test_policy_reads_observations_standardised_by_the_running_statistics() -> None:
    from acktr_lab import MlpPolicy

    space = gym.spaces.Box(-100.0, 100.0, (3,), np.float32)
    plain = MlpPolicy(space, gym.spaces.Discrete(2), seed=1)
    normalised = MlpPolicy(space, gym.spaces.Discrete(2), seed=1, normalize_observations=True)
    mean, var = np.array([1.0, -2.0, 30.0]), np.array([4.0, 0.25, 900.0])
    normalised.observation_mean.assign(mean.astype(np.float32))
    normalised.observation_var.assign(var.astype(np.float32))
    obs = np.array([[3.0, -2.5, 60.0], [1.0, 10.0, -3000.0]], np.float32)
    standardised = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
    np.testing.assert_allclose(normalised(obs)[1].numpy(), plain(standardised)[1].numpy(), rtol=1e-5, atol=1e-6)
    assert standardised[1, 1] == 10.0 and standardised[1, 2] == -10.0  # clipped


def test_observation_statistics_follow_the_env_and_survive_save_and_load(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "Pendulum-v1", n_envs=2, n_steps=8, seed=0, normalize_observations=True)
    model.learn(16 * 10)
    statistics = model.observation_normalizer.statistics
    # The prior's weight, then 2 envs: their resets and every step.
    assert statistics.count == pytest.approx(OBSERVATION_PRIOR_COUNT + 2 + 16 * 10)
    # The policy reads the statistics as they were when the last rollout began.
    assert not np.allclose(model.policy.observation_mean.numpy(), 0.0)
    assert not np.array_equal(model.policy.observation_var.numpy(), statistics.var.astype(np.float32))
    model.save(tmp_path / "m")
    loaded = ACKTR.load(tmp_path / "m")
    np.testing.assert_array_equal(loaded.observation_normalizer.statistics.var, statistics.var)
    np.testing.assert_array_equal(loaded.observation_normalizer.statistics.mean, statistics.mean)
    assert loaded.observation_normalizer.statistics.count == statistics.count
    # The loaded policy reads what the saved one read, so it acts the same.
    for name in ("observation_mean", "observation_var"):
        np.testing.assert_array_equal(getattr(loaded.policy, name).numpy(), getattr(model.policy, name).numpy())
    obs = np.random.default_rng(0).uniform(-1, 1, (5, 3)).astype(np.float32)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], loaded.predict(obs, deterministic=True)[0])
    # Both publish the newest statistics when their next rollout begins.
    model.observation_normalizer.publish()
    loaded.observation_normalizer.publish()
    np.testing.assert_array_equal(loaded.policy.observation_var.numpy(), model.policy.observation_var.numpy())


def test_a_file_without_published_statistics_publishes_its_running_ones(tmp_path: Path) -> None:
    """Files saved before the published statistics were (and SB2's VecNormalize) hold only the
    running statistics: the policy then reads those."""
    model = ACKTR("MlpPolicy", "Pendulum-v1", n_envs=2, n_steps=8, seed=0, normalize_observations=True)
    model.learn(16 * 4)
    model.save(tmp_path / "m.zip")

    def drop(arrays: dict[str, np.ndarray]) -> None:
        del arrays["observation_normalizer/published_mean"], arrays["observation_normalizer/published_var"]

    path = with_arrays(tmp_path / "m.zip", tmp_path / "old.zip", "extra.npz", drop)
    loaded = ACKTR.load(path)
    running = model.observation_normalizer.statistics
    np.testing.assert_array_equal(loaded.policy.observation_mean.numpy(), running.mean.astype(np.float32))
    np.testing.assert_array_equal(loaded.policy.observation_var.numpy(), running.var.astype(np.float32))


def test_observation_normalisation_needs_a_box() -> None:
    with pytest.raises(ValueError, match="normalize_observations"):
        ACKTR("MlpPolicy", "FrozenLake-v1", normalize_observations=True)
    with pytest.raises(ValueError, match="normalize_observations"):
        ACKTR("MlpPolicy", "CartPole-v1", normalize_observations="yes")


def test_the_first_rollouts_see_observations_close_to_raw() -> None:
    """Acrobot-v1 starts every episode within ±0.1 of rest: the statistics of the first
    observations alone would scale some inputs 100 times (then clip them at ±10). With the
    prior the first update's inputs stay near the raw observations."""
    model = ACKTR("MlpPolicy", "Acrobot-v1", n_envs=4, n_steps=5, seed=0, normalize_observations=True)
    trainer = model.trainer(1_000)
    trainer.step()
    observations = np.concatenate([model.collector.observations, np.ones((1, 6), np.float32)])
    mean, var = model.policy.observation_mean.numpy(), model.policy.observation_var.numpy()
    standardised = (observations - mean) / np.sqrt(var + 1e-8)
    assert np.all(np.abs(standardised) < 2.0), standardised
    assert np.all(var > 0.9)  # still mostly the prior after 24 observations
