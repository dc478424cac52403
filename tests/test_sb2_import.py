"""Stable Baselines 2's older ``.pkl`` models and its VecNormalize statistics.

Files are written in SB2's layout by ``tests/sb2_pickles.py`` (no SB2 or gym needed); real
rl-baselines-zoo agents (``tests/data/sb2_zoo``) are loaded and evaluated as published.
Hostile pickles are in ``test_sb2_pickle_hardening.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import sb2_pickles as sb2

from acktr_lab import ACKTR
from acktr_lab.evaluation import evaluate
from acktr_lab.sb2_pickle import SB2_ACTIVATIONS, SB2_POLICIES
from acktr_lab.serialization import ModelFileError, load_model
from acktr_lab.vecnormalize import (
    RunningStatistics,
    SB2NormalizeObservation,
    SB2VectorNormalizeObservation,
    VecNormalizeStatistics,
    find_vecnormalize,
    load_vecnormalize,
)

ZOO = Path(__file__).parent / "data" / "sb2_zoo" / "acktr"


def _mlp_forward(params: list[np.ndarray], obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(policy head output, value) of SB2's MlpPolicy by hand: two tanh layers per network."""
    pi = np.tanh(np.tanh(obs @ params[0] + params[1]) @ params[4] + params[5])
    vf = np.tanh(np.tanh(obs @ params[2] + params[3]) @ params[6] + params[7])
    return pi @ params[10] + params[11], (vf @ params[8] + params[9])[:, 0]


def test_discrete_pkl_predicts_what_its_parameters_imply(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 3, gaussian=False)
    data = sb2.model_data("MlpPolicy", sb2.box(-5 * np.ones(4), 5 * np.ones(4)), sb2.discrete(3))
    path = sb2.write_model(tmp_path / "agent.pkl", data, params)
    model = ACKTR.load(path)
    obs = np.random.default_rng(1).normal(size=(16, 4)).astype(np.float32)
    logits, values = _mlp_forward(params, obs)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, logits.argmax(axis=1))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.action_probability(obs), probabilities, rtol=1e-4, atol=1e-6)
    _, model_values = model.policy(obs)
    np.testing.assert_allclose(model_values.numpy(), values, rtol=1e-4, atol=1e-5)


def test_box_pkl_predicts_its_mean_and_keeps_its_log_std(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(3, 2, gaussian=True)
    data = sb2.model_data("MlpPolicy", sb2.box(-np.ones(3), np.ones(3)), sb2.box(-100 * np.ones(2), 100 * np.ones(2)))
    model = ACKTR.load(sb2.write_model(tmp_path / "agent.pkl", data, params))
    obs = np.random.default_rng(2).uniform(-1, 1, (8, 3)).astype(np.float32)
    mean, _ = _mlp_forward(params, obs)
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(actions, mean, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(model.get_parameters()["model/pi/logstd:0"], params[12])


def test_hyperparameters_come_across_and_learning_continues(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False)
    data = sb2.model_data(
        "MlpPolicy",
        sb2.cartpole_box(),
        sb2.discrete(2),
        gamma=0.98,
        n_steps=8,
        learning_rate=0.2,
        kfac_clip=0.002,
        ent_coef=0.0,
        lr_schedule="constant",
    )
    model = ACKTR.load(sb2.write_model(tmp_path / "agent.pkl", data, params), env="CartPole-v1", seed=0)
    assert (model.gamma, model.n_steps, model.learning_rate, model.kfac_clip) == (0.98, 8, 0.2, 0.002)
    assert (model.ent_coef, model.lr_schedule) == (0.0, "constant")
    before = model.get_parameters()["model/pi/w:0"].copy()
    model.learn(total_timesteps=3 * 8)
    assert model.num_timesteps == 24
    assert not np.allclose(model.get_parameters()["model/pi/w:0"], before)


def test_format_is_chosen_by_content_not_name(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False)
    data = sb2.model_data("MlpPolicy", sb2.box(-np.ones(4), np.ones(4)), sb2.discrete(2))
    pkl_named_zip = sb2.write_model(tmp_path / "agent.zip", data, params)
    assert load_model(pkl_named_zip).positional
    ours = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    ours.save(tmp_path / "ours.pkl")
    loaded = ACKTR.load(tmp_path / "ours.pkl")
    for name, value in ours.get_parameters().items():
        np.testing.assert_array_equal(loaded.get_parameters()[name], value)
    assert ACKTR.load(tmp_path / "agent").observation_space.shape == (4,)  # no suffix: .zip found first


def test_load_parameters_from_a_pkl(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False, seed=3)
    data = sb2.model_data("MlpPolicy", sb2.box(-np.ones(4), np.ones(4)), sb2.discrete(2))
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    model.load_parameters(sb2.write_model(tmp_path / "agent.pkl", data, params))
    np.testing.assert_array_equal(model.get_parameters()["model/vf_fc1/w:0"], params[6])


def test_mismatched_parameters_are_listed(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False)
    params[4] = np.zeros((32, 128), np.float32)  # as many numbers, another shape
    data = sb2.model_data("MlpPolicy", sb2.box(-np.ones(4), np.ones(4)), sb2.discrete(2))
    with pytest.raises(ModelFileError, match=r"#4 model/pi_fc1/w:0: expected \(64, 64\), the file holds \(32, 128\)"):
        ACKTR.load(sb2.write_model(tmp_path / "wrong.pkl", data, params))
    extra = [*sb2.mlp_parameters(4, 2, False), np.zeros(3, np.float32)]
    with pytest.raises(ModelFileError, match=r"15 arrays do not match the 14 parameters.*#14 \(none\)"):
        ACKTR.load(sb2.write_model(tmp_path / "long.pkl", data, extra))
    with pytest.raises(ModelFileError, match=r"cannot build the MlpPolicy.*parameters in the file"):  # too few numbers
        ACKTR.load(sb2.write_model(tmp_path / "short.pkl", data, sb2.mlp_parameters(4, 2, False)[:-1]))


def test_recurrent_pkl_splits_nothing_it_should_not(tmp_path: Path) -> None:
    """MlpLstmPolicy's list holds SB2's separate ``lstm1/wx`` and ``lstm1/wh``; they are joined."""
    rng = np.random.default_rng(4)
    n_lstm, shapes = 8, []
    shapes += [(3, 64), (64,), (64, 64), (64,)]  # pi_fc0, pi_fc1 (SB2's legacy `layers`)
    shapes += [(64, 4 * n_lstm), (n_lstm, 4 * n_lstm), (4 * n_lstm,)]  # lstm1/wx, wh, b
    shapes += [(n_lstm, 1), (1,), (n_lstm, 2), (2,), (n_lstm, 2), (2,)]  # vf, pi, q
    params = [rng.normal(0, 0.3, shape).astype(np.float32) for shape in shapes]
    data = sb2.model_data(
        "MlpLstmPolicy", sb2.box(-np.ones(3), np.ones(3)), sb2.discrete(2), policy_kwargs={"n_lstm": n_lstm}
    )
    model = ACKTR.load(sb2.write_model(tmp_path / "lstm.pkl", data, params))
    joined = model.get_parameters()["model/lstm1/w:0"]
    np.testing.assert_array_equal(joined, np.concatenate([params[4], params[5]]))


def test_cnn_pkl_parameters_map_in_creation_order(tmp_path: Path) -> None:
    """SB2's CnnPolicy: nature CNN c1, c2, c3, fc1, then vf, pi, q, on channel-last uint8 images."""
    rng = np.random.default_rng(5)
    shapes = [(8, 8, 4, 32), (32,), (4, 4, 32, 64), (64,), (3, 3, 64, 64), (64,), (3136, 512), (512,)]
    shapes += [(512, 1), (1,), (512, 6), (6,), (512, 6), (6,)]
    params = [rng.normal(0, 0.01, shape).astype(np.float32) for shape in shapes]
    images = sb2.box(np.zeros((84, 84, 4)), 255 * np.ones((84, 84, 4)), np.uint8)
    model = ACKTR.load(
        sb2.write_model(tmp_path / "pong.pkl", sb2.model_data("CnnPolicy", images, sb2.discrete(6)), params)
    )
    loaded = model.get_parameters()
    for index, name in ((4, "model/c3/w:0"), (6, "model/fc1/w:0"), (10, "model/pi/w:0"), (13, "model/q/b:0")):
        np.testing.assert_array_equal(loaded[name], params[index])
    assert model.observation_space.shape == (84, 84, 4) and model.observation_space.dtype == np.uint8
    actions, _ = model.predict(rng.integers(0, 256, (2, 84, 84, 4), dtype=np.uint8), deterministic=True)
    assert actions.shape == (2,)


def test_activation_references_become_names(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False)
    kwargs = {"act_fun": sb2.Global("tensorflow.python.ops.gen_nn_ops", "relu")}
    data = sb2.model_data("MlpPolicy", sb2.box(-np.ones(4), np.ones(4)), sb2.discrete(2), policy_kwargs=kwargs)
    model = ACKTR.load(sb2.write_model(tmp_path / "relu.pkl", data, params))
    assert model.policy.act_fun_name == "relu"


def test_sb2_names_are_ours() -> None:
    from acktr_lab.policies import ACTIVATIONS, POLICIES

    assert set(SB2_POLICIES) == set(POLICIES)
    assert set(SB2_ACTIVATIONS) == set(ACTIVATIONS)


def test_unknown_policy_class_is_refused_by_name(tmp_path: Path) -> None:
    data = sb2.model_data("MlpPolicy", sb2.box(-np.ones(4), np.ones(4)), sb2.discrete(2))
    data["policy"] = sb2.Global("__main__", "CustomPolicy")
    with pytest.raises(ModelFileError, match=r"refused '__main__\.CustomPolicy'"):
        ACKTR.load(sb2.write_model(tmp_path / "custom.pkl", data, sb2.mlp_parameters(4, 2, False)))


# -- VecNormalize statistics ------------------------------------------------------------


def _statistics(mean: list[float], var: list[float], **kwargs: float) -> VecNormalizeStatistics:
    return VecNormalizeStatistics(RunningStatistics(np.array(mean), np.array(var), 100.0), None, **kwargs)


def test_wrapper_matches_a_hand_computation() -> None:
    statistics = _statistics([1.0, -2.0, 0.5, 0.0], [4.0, 0.25, 1e-12, 1.0], clip_obs=5.0)
    env = SB2NormalizeObservation(gym.make("CartPole-v1"), statistics)
    raw_env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=3)
    raw, _ = raw_env.reset(seed=3)
    expected = [(raw[0] - 1.0) / 2.0, (raw[1] + 2.0) / 0.5, (raw[2] - 0.5) / np.sqrt(1e-12 + 1e-8), raw[3]]
    np.testing.assert_allclose(obs, np.clip(expected, -5.0, 5.0), rtol=1e-6)
    assert obs.dtype == np.float32 and env.observation_space.contains(obs)
    vector = SB2VectorNormalizeObservation(gym.make_vec("CartPole-v1", num_envs=2), statistics)
    raw_vector = gym.make_vec("CartPole-v1", num_envs=2)
    batch, _ = vector.reset(seed=5)
    raw_batch, _ = raw_vector.reset(seed=5)
    mean, std = np.array([1.0, -2.0, 0.5, 0.0]), np.sqrt(np.array([4.0, 0.25, 1e-12, 1.0]) + 1e-8)
    np.testing.assert_allclose(batch, np.clip((raw_batch - mean) / std, -5, 5), rtol=1e-6)
    assert vector.single_observation_space.shape == (4,)


def test_wrapper_refuses_statistics_of_another_shape() -> None:
    with pytest.raises(ValueError, match=r"shape \(3,\) do not fit"):
        SB2NormalizeObservation(gym.make("CartPole-v1"), _statistics([0, 0, 0], [1, 1, 1]))


def test_zoo_folder_statistics_are_picked_up(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False)
    data = sb2.model_data("MlpPolicy", sb2.box(-5 * np.ones(4), 5 * np.ones(4)), sb2.discrete(2))
    path = sb2.write_model(tmp_path / "CartPole-v1.pkl", data, params)
    (tmp_path / "CartPole-v1").mkdir()
    mean, var = np.array([0.5, -0.5, 0.1, 2.0]), np.array([0.04, 4.0, 0.01, 9.0])
    (tmp_path / "CartPole-v1" / "obs_rms.pkl").write_bytes(sb2.dumps(sb2.running_mean_std(mean, var, 5e5)))
    (tmp_path / "CartPole-v1" / "ret_rms.pkl").write_bytes(sb2.dumps(sb2.running_mean_std(0.0, 1e-12, 1e-4)))
    assert find_vecnormalize(path) == tmp_path / "CartPole-v1"
    model = ACKTR.load(path)
    assert model.normalize_observations and not model.normalize_returns  # ret_rms never updated
    obs = np.random.default_rng(6).normal(size=(32, 4)).astype(np.float32)
    normalized = np.clip((obs - mean) / np.sqrt(var + 1e-8), -10, 10).astype(np.float32)
    logits, _ = _mlp_forward(params, normalized)
    np.testing.assert_array_equal(model.predict(obs, deterministic=True)[0], logits.argmax(axis=1))
    plain = ACKTR.load(path, vecnormalize=False)
    assert not plain.normalize_observations
    np.testing.assert_array_equal(plain.predict(normalized, deterministic=True)[0], logits.argmax(axis=1))


def test_vecnormalize_pkl_settings(tmp_path: Path) -> None:
    params = sb2.mlp_parameters(4, 2, gaussian=False)
    data = sb2.model_data("MlpPolicy", sb2.box(-5 * np.ones(4), 5 * np.ones(4)), sb2.discrete(2))
    path = sb2.write_model(tmp_path / "agent.pkl", data, params)
    obs_rms = sb2.running_mean_std(np.ones(4), 2 * np.ones(4), 1000.0)
    ret_rms = sb2.running_mean_std(0.3, 25.0, 1000.0)
    folder = tmp_path / "agent"
    folder.mkdir()
    (folder / "vecnormalize.pkl").write_bytes(sb2.dumps(sb2.vec_normalize(obs_rms, ret_rms)))
    model = ACKTR.load(path)
    assert model.normalize_observations and model.normalize_returns
    assert model.return_normalizer.scale == pytest.approx(1 / np.sqrt(25.0 + 1e-8))
    (folder / "vecnormalize.pkl").write_bytes(sb2.dumps(sb2.vec_normalize(obs_rms, ret_rms, norm_reward=False)))
    assert load_vecnormalize(folder).returns is None
    (folder / "vecnormalize.pkl").write_bytes(sb2.dumps(sb2.vec_normalize(obs_rms, ret_rms, clip_obs=5.0)))
    with pytest.raises(ModelFileError, match="SB2NormalizeObservation"):
        ACKTR.load(path)
    statistics = load_vecnormalize(folder / "vecnormalize.pkl")
    wrapped = SB2NormalizeObservation(gym.make("CartPole-v1"), statistics)
    assert wrapped.observation_space.high[0] == 5.0
    with pytest.raises(FileNotFoundError, match="no VecNormalize statistics at"):
        ACKTR.load(path, vecnormalize=tmp_path / "elsewhere")


def test_vecnormalize_argument_is_for_sb2_files_only(tmp_path: Path) -> None:
    ACKTR("MlpPolicy", "CartPole-v1", seed=0).save(tmp_path / "ours.zip")
    with pytest.raises(ValueError, match="Stable Baselines 2 files"):
        ACKTR.load(tmp_path / "ours.zip", vecnormalize=tmp_path)


# -- real rl-baselines-zoo agents -------------------------------------------------------


def test_zoo_cartpole_pkl_scores_as_published() -> None:
    model = ACKTR.load(ZOO / "CartPole-v1.pkl")
    assert (model.n_steps, model.ent_coef, model.lr_schedule) == (20, 0.0, "linear")
    assert min(evaluate(model, "CartPole-v1", n_episodes=5, seed=0)) == 500.0  # published 487.6 ± 63.9


def test_zoo_acrobot_pkl_gets_its_statistics(tmp_path: Path) -> None:
    model = ACKTR.load(ZOO / "Acrobot-v1.pkl")
    statistics = load_vecnormalize(ZOO / "Acrobot-v1")
    np.testing.assert_allclose(model.observation_normalizer.state()["mean"], statistics.observations.mean)
    assert model.normalize_returns  # ret_rms was updated: SB2 normalised rewards too
    with_statistics = np.mean(evaluate(model, "Acrobot-v1", n_episodes=10, seed=0))
    assert with_statistics > -100  # published −91.3 ± 32.5 (stochastic); measured −80.8 deterministic
    alone = tmp_path / "Acrobot-v1.pkl"
    shutil.copy(ZOO / "Acrobot-v1.pkl", alone)  # no statistics beside it
    without = ACKTR.load(alone)
    assert not without.normalize_observations
    wrapped = SB2NormalizeObservation(gym.make("Acrobot-v1"), statistics)
    assert np.mean(evaluate(without, wrapped, n_episodes=10, seed=0)) == pytest.approx(with_statistics)


def test_cli_enjoys_a_zoo_pkl_with_its_statistics(capsys: pytest.CaptureFixture[str]) -> None:
    from acktr_lab.cli import main

    assert main(["enjoy", str(ZOO / "Acrobot-v1.pkl"), "--env", "Acrobot-v1", "--episodes", "3"]) == 0
    mean = float(capsys.readouterr().out.split("mean return ")[1].split()[0])
    assert mean > -150  # published −91.3 ± 32.5
    assert main(["enjoy", str(ZOO / "Acrobot-v1.pkl"), "--episodes", "1"]) == 2  # a .pkl names no env
    assert "pass --env" in capsys.readouterr().err
