"""The Stable Baselines 2 API of ACKTR: construction, validation, prediction, parameters,
environments, ``learn`` (callbacks, logging, TensorBoard), trainer reports, seeding and the
rollout's handling of truncation."""

from __future__ import annotations

import inspect
import math
import sys
import warnings
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab import ACKTR, CnnPolicy, DummyVecEnv, MlpPolicy, SubprocVecEnv, UpdateReport, make_vec_env
from acktr_lab.rollout import Collector
from acktr_lab.vec_env import as_vector_env

sys.path.insert(0, str(Path(__file__).parent))
import identity_envs

BOX = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


class SpaceEnv(gym.Env):
    """An env with arbitrary spaces; observations turn NaN from step ``nan_after`` on."""

    def __init__(self, observation_space: gym.Space, action_space: gym.Space, nan_after: int | None = None) -> None:
        self.observation_space = observation_space
        self.action_space = action_space
        self.nan_after = nan_after
        self._t = 0

    def _obs(self) -> Any:
        obs = self.observation_space.sample()
        if self.nan_after is not None and self._t >= self.nan_after:
            obs = np.full_like(obs, np.nan)
        return obs

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self._t += 1
        return self._obs(), 0.0, False, False, {}


# -- constructor ----------------------------------------------------------------------

SB2_DEFAULTS: dict[str, Any] = {
    "gamma": 0.99,
    "nprocs": None,
    "n_steps": 20,
    "ent_coef": 0.01,
    "vf_coef": 0.25,
    "vf_fisher_coef": 1.0,
    "learning_rate": 0.25,
    "max_grad_norm": 0.5,
    "kfac_clip": 0.001,
    "lr_schedule": "linear",
    "verbose": 0,
    "tensorboard_log": None,
    "_init_setup_model": True,
    "async_eigen_decomp": False,
    "kfac_update": 1,
    "gae_lambda": None,
    "policy_kwargs": None,
    "full_tensorboard_log": False,
    "seed": None,
    "n_cpu_tf_sess": 1,
}


def test_constructor_signature_matches_stable_baselines() -> None:
    params = inspect.signature(ACKTR.__init__).parameters
    positional = [n for n, p in params.items() if p.kind is p.POSITIONAL_OR_KEYWORD][1:]  # drop self
    assert positional == ["policy", "env", *SB2_DEFAULTS], "positional order differs from Stable Baselines 2"
    for name, default in SB2_DEFAULTS.items():
        assert params[name].default == default, name
    # Extra K-FAC constants are keyword-only, with ACKTR's values.
    extra = {n: p.default for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert extra == {
        "n_envs": 1,
        "momentum": 0.9,
        "damping": 0.01,
        "stats_decay": 0.99,
        "cold_iter": 10,
        "eigen_epsilon": 1e-6,
        "stats_update": 1,
        "approx_t2": False,
        "normalize_returns": False,
        "normalize_observations": False,
    }


@pytest.mark.parametrize(
    ("method", "defaults"),
    [
        ("learn", {"callback": None, "log_interval": 100, "tb_log_name": "ACKTR", "reset_num_timesteps": True}),
        ("predict", {"state": None, "mask": None, "deterministic": False}),
        ("action_probability", {"state": None, "mask": None, "actions": None, "logp": False}),
        ("load_parameters", {"exact_match": True}),
        ("save", {"cloudpickle": False}),
        ("load", {"env": None, "custom_objects": None}),
    ],
)
def test_method_signatures(method: str, defaults: dict[str, Any]) -> None:
    params = inspect.signature(getattr(ACKTR, method)).parameters
    for name, default in defaults.items():
        assert params[name].default == default, f"{method}({name}=...)"


@pytest.mark.parametrize("policy", ["MlpPolicy", MlpPolicy])
def test_policy_by_name_or_class(policy: Any) -> None:
    model = ACKTR(policy, "CartPole-v1", seed=0)
    assert model.policy_class is MlpPolicy
    assert isinstance(model.policy, MlpPolicy)


def test_unknown_policy_name() -> None:
    with pytest.raises(ValueError, match="NoSuchPolicy"):
        ACKTR("NoSuchPolicy", "CartPole-v1")


def test_env_by_id_uses_n_envs() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=3, seed=0)
    assert model.get_env().num_envs == 3
    assert model.observation_space.shape == (4,)
    assert model.action_space == gym.spaces.Discrete(2)


def test_env_gymnasium_object() -> None:
    env = gym.make("CartPole-v1")
    model = ACKTR("MlpPolicy", env, seed=0)
    assert model.get_env().num_envs == 1
    model.learn(40)
    assert model.num_timesteps == 40


def test_env_dummy_vec_env() -> None:
    vec = make_vec_env("CartPole-v1", n_envs=2, seed=0)
    model = ACKTR("MlpPolicy", vec, n_steps=5, seed=0)
    assert model.get_env().num_envs == 2
    model.learn(20)
    assert model.num_timesteps == 20


def test_env_subproc_vec_env() -> None:
    vec = SubprocVecEnv([lambda: gym.make("CartPole-v1") for _ in range(2)])
    try:
        model = ACKTR("MlpPolicy", vec, n_steps=5, seed=0)
        model.learn(20)
        assert model.num_timesteps == 20
        action, _ = model.predict(np.zeros((2, 4), np.float32))
        assert action.shape == (2,)
    finally:
        vec.close()


def test_tf1_only_arguments_accepted() -> None:
    with pytest.warns(DeprecationWarning, match="nprocs"):
        model = ACKTR("MlpPolicy", "CartPole-v1", nprocs=2, seed=0)
    assert model.n_cpu_tf_sess == 2
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        model = ACKTR("MlpPolicy", "CartPole-v1", n_cpu_tf_sess=2, full_tensorboard_log=True, seed=0)
    assert model.full_tensorboard_log is True
    assert model.get_hyperparameters()["n_cpu_tf_sess"] == 2


def test_init_setup_model_false_defers_building() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", _init_setup_model=False, seed=0)
    assert not hasattr(model, "policy")
    model.setup_model()
    assert model.predict(np.zeros(4, np.float32))[0] in (0, 1)


# -- validation -----------------------------------------------------------------------


def test_dict_action_space_rejected() -> None:
    env = SpaceEnv(BOX, gym.spaces.Dict({"a": gym.spaces.Discrete(2)}))
    with pytest.raises(ValueError, match=r"action space Dict"):
        ACKTR("MlpPolicy", env)


@pytest.mark.parametrize(
    ("space", "name"),
    [(gym.spaces.Dict({"a": BOX}), "Dict"), (gym.spaces.Tuple((BOX, gym.spaces.Discrete(2))), "Tuple")],
)
def test_dict_and_tuple_observation_spaces_rejected(space: gym.Space, name: str) -> None:
    with pytest.raises(ValueError, match=rf"observation space {name}"):
        ACKTR("MlpPolicy", SpaceEnv(space, gym.spaces.Discrete(2)))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"n_steps": 0}, "n_steps"),
        ({"n_steps": -5}, "n_steps"),
        ({"n_steps": 2.5}, "n_steps"),
        ({"lr_schedule": "exponential"}, "lr_schedule"),
        ({"gamma": 1.5}, "gamma"),
        ({"gamma": -0.1}, "gamma"),
        ({"learning_rate": float("nan")}, "learning_rate"),
        ({"learning_rate": -0.1}, "learning_rate"),
        ({"gae_lambda": 2}, "gae_lambda"),
        ({"ent_coef": -1.0}, "ent_coef"),
        ({"vf_coef": float("inf")}, "vf_coef"),
        ({"kfac_clip": 0.0}, "kfac_clip"),
        ({"max_grad_norm": -1.0}, "max_grad_norm"),
        ({"kfac_update": 0}, "kfac_update"),
        ({"n_envs": 0}, "n_envs"),
    ],
)
def test_bad_hyperparameters_name_the_parameter(kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        ACKTR("MlpPolicy", "CartPole-v1", **kwargs)


def test_nan_observation_at_reset() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        ACKTR("MlpPolicy", SpaceEnv(BOX, gym.spaces.Discrete(2), nan_after=0))


def test_nan_observation_during_training() -> None:
    model = ACKTR("MlpPolicy", SpaceEnv(BOX, gym.spaces.Discrete(2), nan_after=3), n_steps=5, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        model.learn(100)


class LaterBadStepEnv(SpaceEnv):
    """A Box(3)/Discrete(2) env whose step ``bad_at`` (and only it) returns ``reward`` and
    ``observation`` in place of good ones (None: keep the good one)."""

    def __init__(self, bad_at: int, reward: Any = None, observation: Any = None) -> None:
        super().__init__(BOX, gym.spaces.Discrete(2))
        self.bad_at, self.bad_reward, self.bad_observation = bad_at, reward, observation
        self.steps = 0  # over the env's life, across resets

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict]:
        obs, reward, terminated, _, info = super().step(action)
        self.steps += 1
        if self.steps == self.bad_at:
            obs = obs if self.bad_observation is None else self.bad_observation
            reward = reward if self.bad_reward is None else self.bad_reward
        return obs, reward, terminated, self._t >= 7, info


@pytest.mark.parametrize("reward", [np.nan, np.inf, -np.inf, 1e300])
def test_a_reward_not_finite_in_float32_mid_run_stops_it_before_the_returns_and_parameters(reward: float) -> None:
    model = ACKTR("MlpPolicy", LaterBadStepEnv(bad_at=13, reward=reward), n_steps=5, seed=0, normalize_returns=True)
    model.learn(10)  # steps 1-10: two good updates
    before = model.get_parameters()
    statistics = model.return_normalizer.state()
    with pytest.raises(ValueError, match=r"env 0 returned a reward of .*not finite in float32"):
        model.learn(10, reset_num_timesteps=False)  # steps 11-15: step 13 is bad
    for name, value in model.get_parameters().items():
        np.testing.assert_array_equal(value, before[name], err_msg=name)
    after = model.return_normalizer.state()
    assert all(np.isfinite(v).all() for v in after.values())
    assert after["return_count"] == statistics["return_count"] + 2  # steps 11 and 12, not 13


def test_an_observation_of_another_shape_after_the_first_step_gets_a_note_naming_the_env() -> None:
    model = ACKTR("MlpPolicy", LaterBadStepEnv(bad_at=3, observation=np.zeros(5, np.float32)), n_steps=5, seed=0)
    with pytest.raises(ValueError) as error:
        model.learn(10)
    notes = "".join(getattr(error.value, "__notes__", []))
    assert f"acktr_lab: raised inside {model.env}.step()" in notes and "first step only" in notes


def test_cnn_policy_needs_images() -> None:
    with pytest.raises(ValueError, match="CnnPolicy needs image observations"):
        ACKTR("CnnPolicy", "CartPole-v1")
    with pytest.raises(ValueError, match="too small for the Nature CNN"):
        ACKTR(CnnPolicy, SpaceEnv(gym.spaces.Box(0, 255, (8, 8, 1), np.uint8), gym.spaces.Discrete(2)))


def test_cnn_policy_reads_channel_first_images_as_their_channel_last_transpose() -> None:
    last = CnnPolicy(gym.spaces.Box(0, 255, (40, 36, 4), np.uint8), gym.spaces.Discrete(3), seed=5)
    first = CnnPolicy(gym.spaces.Box(0, 255, (4, 40, 36), np.uint8), gym.spaces.Discrete(3), seed=5)
    assert not last.channels_first and first.channels_first
    for name, variable in last.parameters.items():
        np.testing.assert_array_equal(variable.numpy(), first.parameters[name].numpy())
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 36, 4), dtype=np.uint8)
    dist_last, values_last = last(images)
    dist_first, values_first = first(images.transpose(0, 3, 1, 2))
    np.testing.assert_allclose(values_first.numpy(), values_last.numpy(), rtol=1e-5)
    np.testing.assert_allclose(dist_first.probabilities().numpy(), dist_last.probabilities().numpy(), rtol=1e-5)


# -- prediction and action probabilities ----------------------------------------------


@pytest.fixture(scope="module")
def cartpole() -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", seed=0)


@pytest.fixture(scope="module")
def pendulum() -> ACKTR:
    model = ACKTR("MlpPolicy", "Pendulum-v1", seed=0)
    model.policy.log_std.assign(np.full((1, 1), np.log(3.0), np.float32))  # wide: samples leave [-2, 2]
    return model


def test_predict_discrete_shapes(cartpole: ACKTR) -> None:
    action, state = cartpole.predict(np.zeros(4, np.float32), deterministic=True)
    assert state is None
    assert np.ndim(action) == 0 and int(action) in (0, 1)
    actions, _ = cartpole.predict(np.zeros((5, 4), np.float32))
    assert actions.shape == (5,)
    with pytest.raises(ValueError, match="observation shape"):
        cartpole.predict(np.zeros(3, np.float32))


def test_predict_deterministic_is_mode(cartpole: ACKTR) -> None:
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    actions, _ = cartpole.predict(obs, deterministic=True)
    probs = cartpole.action_probability(obs)
    np.testing.assert_array_equal(actions, probs.argmax(axis=1))


def test_predict_box_clipped(pendulum: ACKTR) -> None:
    obs = np.zeros((200, 3), np.float32)
    actions, _ = pendulum.predict(obs)
    assert actions.shape == (200, 1)
    assert actions.min() >= -2.0 and actions.max() <= 2.0
    assert np.any(np.abs(actions) == 2.0), "some samples of std 3 should have been clipped"
    single, _ = pendulum.predict(np.zeros(3, np.float32))
    assert single.shape == (1,)


def test_action_probability_discrete(cartpole: ACKTR) -> None:
    obs = np.random.default_rng(1).normal(size=(6, 4)).astype(np.float32)
    probs = cartpole.action_probability(obs[0])
    assert probs.shape == (2,)
    assert probs.sum() == pytest.approx(1.0, abs=1e-6)
    batch = cartpole.action_probability(obs)
    assert batch.shape == (6, 2)
    np.testing.assert_allclose(batch.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(batch[0], probs, atol=1e-7)
    # With actions: p(a) and log p(a), consistent with each other and with the full distribution.
    actions = np.array([0, 1, 1, 0, 1, 0])
    p = cartpole.action_probability(obs, actions=actions)
    logp = cartpole.action_probability(obs, actions=actions, logp=True)
    assert p.shape == (6, 1) and logp.shape == (6, 1)
    np.testing.assert_allclose(p[:, 0], batch[np.arange(6), actions], rtol=1e-5)
    np.testing.assert_allclose(np.exp(logp), p, rtol=1e-6)
    one = cartpole.action_probability(obs[0], actions=1)
    assert one.shape == (1,)
    assert one[0] == pytest.approx(probs[1], rel=1e-5)
    with pytest.raises(ValueError, match="actions"):
        cartpole.action_probability(obs, actions=[0, 1])


def test_action_probability_box(pendulum: ACKTR) -> None:
    obs = np.random.default_rng(2).normal(size=(4, 3)).astype(np.float32)
    mean, std = pendulum.action_probability(obs)
    assert mean.shape == (4, 1) and std.shape == (4, 1)
    np.testing.assert_allclose(std, 3.0, rtol=1e-5)
    mean1, std1 = pendulum.action_probability(obs[0])
    assert mean1.shape == (1,) and std1.shape == (1,)
    np.testing.assert_allclose(mean1, mean[0], atol=1e-6)
    deterministic, _ = pendulum.predict(obs, deterministic=True)
    np.testing.assert_allclose(deterministic, np.clip(mean, -2, 2), atol=1e-6)
    actions = np.array([[0.5], [-1.0], [0.0], [1.5]], np.float32)
    density = pendulum.action_probability(obs, actions=actions)
    logp = pendulum.action_probability(obs, actions=actions, logp=True)
    expected = -0.5 * ((actions - mean) / std) ** 2 - np.log(std) - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(logp, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.log(density), logp, rtol=1e-6, atol=1e-7)


def test_action_probability_multidiscrete() -> None:
    env = identity_envs.multi_discrete()
    model = ACKTR("MlpPolicy", env, seed=0)
    obs = np.array([[0, 1], [2, 2], [1, 0]])
    probs = model.action_probability(obs)
    assert [p.shape for p in probs] == [(3, 3), (3, 3)]
    for p in probs:
        np.testing.assert_allclose(p.sum(axis=1), 1.0, atol=1e-6)
    single = model.action_probability(obs[0])
    assert [p.shape for p in single] == [(3,), (3,)]
    actions = np.array([[0, 2], [1, 1], [2, 0]])
    joint = model.action_probability(obs, actions=actions)
    expected = probs[0][np.arange(3), actions[:, 0]] * probs[1][np.arange(3), actions[:, 1]]
    np.testing.assert_allclose(joint[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(model.action_probability(obs, actions=actions, logp=True), np.log(joint), rtol=1e-5)
    action, _ = model.predict(obs[0])
    assert action.shape == (2,) and env.action_space.contains(action.astype(np.int64))


def test_action_probability_multibinary() -> None:
    env = identity_envs.multi_binary()
    model = ACKTR("MlpPolicy", env, seed=0)
    obs = np.array([[0, 1, 1], [1, 0, 0]], np.int8)
    probs = model.action_probability(obs)
    assert probs.shape == (2, 3)
    assert np.all((probs > 0) & (probs < 1))
    assert model.action_probability(obs[0]).shape == (3,)
    actions = np.array([[1, 0, 1], [0, 0, 1]], np.int8)
    joint = model.action_probability(obs, actions=actions)
    expected = np.prod(np.where(actions == 1, probs, 1 - probs), axis=1)
    np.testing.assert_allclose(joint[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(model.action_probability(obs, actions=actions, logp=True), np.log(joint), rtol=1e-5)
    actions_pred, _ = model.predict(obs)
    assert actions_pred.shape == (2, 3) and set(np.unique(actions_pred)) <= {0, 1}


# -- parameters -----------------------------------------------------------------------

MLP_DISCRETE_NAMES = [
    f"model/{layer}/{kind}:0"
    for layer in ("pi_fc0", "vf_fc0", "pi_fc1", "vf_fc1", "vf", "pi", "q")
    for kind in ("w", "b")
]


def test_parameter_names_and_order(cartpole: ACKTR) -> None:
    params = cartpole.get_parameters()
    assert list(params) == MLP_DISCRETE_NAMES
    assert params["model/pi_fc0/w:0"].shape == (4, 64)
    assert params["model/pi/w:0"].shape == (64, 2)
    assert params["model/vf/w:0"].shape == (64, 1)
    variables = cartpole.get_parameter_list()
    assert len(variables) == len(params)
    for variable, (name, value) in zip(variables, params.items()):
        assert isinstance(variable, tf.Variable)
        assert name.endswith(variable.name), (name, variable.name)
        np.testing.assert_array_equal(variable.numpy(), value)


def test_box_parameter_names(pendulum: ACKTR) -> None:
    names = list(pendulum.get_parameters())
    assert names[names.index("model/pi/b:0") + 1] == "model/pi/logstd:0"
    assert pendulum.get_parameters()["model/pi/logstd:0"].shape == (1, 1)


def test_load_parameters_exact_and_partial() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    other = ACKTR("MlpPolicy", "CartPole-v1", seed=1)
    target = other.get_parameters()
    model.load_parameters(target)
    for name, value in model.get_parameters().items():
        np.testing.assert_array_equal(value, target[name])

    fresh = ACKTR("MlpPolicy", "CartPole-v1", seed=2)
    before = fresh.get_parameters()
    partial = {"model/pi/w:0": np.ones((64, 2), np.float32)}
    with pytest.raises(RuntimeError, match="model/pi_fc0/w:0"):
        fresh.load_parameters(partial)
    np.testing.assert_array_equal(fresh.get_parameters()["model/pi/w:0"], before["model/pi/w:0"])  # untouched
    fresh.load_parameters(partial, exact_match=False)
    after = fresh.get_parameters()
    np.testing.assert_array_equal(after["model/pi/w:0"], 1.0)
    np.testing.assert_array_equal(after["model/pi_fc0/w:0"], before["model/pi_fc0/w:0"])


@pytest.mark.parametrize(
    "bad",
    [
        {"model/pi/w:0": np.ones((64, 3), np.float32)},
        {"model/pi_fc0/w:0": np.ones((64, 4), np.float32)},  # transposed: same size, wrong layout
    ],
)
def test_load_parameters_shape_mismatch(bad: dict[str, np.ndarray]) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    before = model.get_parameters()
    with pytest.raises(ValueError, match="shape"):
        model.load_parameters(bad, exact_match=False)
    for name, value in model.get_parameters().items():
        np.testing.assert_array_equal(value, before[name])


def test_load_parameters_unknown_name() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    with pytest.raises(ValueError, match="model/nope"):
        model.load_parameters({"model/nope:0": np.zeros(1)}, exact_match=False)


# -- environments ---------------------------------------------------------------------


def test_set_env_and_get_env() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    with pytest.raises(ValueError, match="observation space"):
        model.set_env(gym.make("MountainCar-v0"))
    with pytest.raises(ValueError, match="action space"):
        model.set_env(SpaceEnv(gym.make("CartPole-v1").observation_space, gym.spaces.Discrete(3)))
    new = make_vec_env("CartPole-v1", n_envs=3, seed=5)
    model.set_env(new)
    assert model.get_env().num_envs == 3
    model.learn(3 * 20)
    assert model.num_timesteps == 60


def test_model_without_env() -> None:
    bare = ACKTR("MlpPolicy", None, _init_setup_model=False)
    assert bare.get_env() is None
    with pytest.raises(ValueError, match="env"):
        bare.setup_model()


# -- learn ----------------------------------------------------------------------------


def test_learn_returns_self_and_counts_steps() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    assert model.learn(100) is model
    assert model.num_timesteps == 100
    model.learn(50, reset_num_timesteps=False)
    assert model.num_timesteps == 150
    model.learn(20)
    assert model.num_timesteps == 20


def test_learn_callback_function_stops() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    calls: list[tuple[dict, dict]] = []

    def callback(local_vars: dict[str, Any], global_vars: dict[str, Any]) -> bool:
        calls.append((local_vars, global_vars))
        return len(calls) < 3

    model.learn(1000, callback=callback)
    assert len(calls) == 3
    assert model.num_timesteps == 3 * 10
    local_vars, global_vars = calls[-1]
    assert local_vars["self"] is model
    assert isinstance(global_vars, dict)


def test_learn_callback_returning_none_continues() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    count = []
    model.learn(50, callback=lambda _locals, _globals: count.append(1))
    assert len(count) == 5 and model.num_timesteps == 50


def test_learn_callback_object() -> None:
    class Recorder:
        def __init__(self) -> None:
            self.reports: list[UpdateReport] = []

        def on_update(self, report: UpdateReport) -> bool:
            self.reports.append(report)
            return report.update < 4

    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    recorder = Recorder()
    model.learn(1000, callback=recorder)
    assert [r.update for r in recorder.reports] == [1, 2, 3, 4]
    assert model.num_timesteps == 40


def test_learn_verbose_prints_table(capsys: pytest.CaptureFixture[str]) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, verbose=1, seed=0)
    model.learn(100, log_interval=5)
    out = capsys.readouterr().out
    for key in (
        "nupdates",
        "total_timesteps",
        "fps",
        "policy_entropy",
        "policy_loss",
        "value_loss",
        "explained_variance",
        "ep_reward_mean",
        "ep_len_mean",
    ):
        assert f"| {key}" in out, key
    assert out.count("| nupdates") == 3  # updates 1, 5 and 10
    quiet = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    quiet.learn(20)
    assert "nupdates" not in capsys.readouterr().out


def _scalar_events(log_dir: Path) -> dict[str, list[tuple[int, float]]]:
    scalars: dict[str, list[tuple[int, float]]] = {}
    files = sorted(log_dir.rglob("events.out.tfevents.*"))
    assert files, f"no event files under {log_dir}"
    for path in files:
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            for value in event.summary.value:
                number = value.simple_value if value.HasField("simple_value") else float(tf.make_ndarray(value.tensor))
                scalars.setdefault(value.tag, []).append((event.step, number))
    return scalars


def test_tensorboard_log(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, tensorboard_log=str(tmp_path), seed=0)
    model.learn(100, tb_log_name="run")
    run_dir = tmp_path / "run_1"
    assert run_dir.is_dir()
    scalars = _scalar_events(run_dir)
    for tag in (
        "train/policy_loss",
        "train/value_loss",
        "train/entropy",
        "train/learning_rate",
        "loss/policy_gradient_loss",
        "loss/value_function_loss",
        "input_info/learning_rate",
    ):
        assert tag in scalars, sorted(scalars)
    steps = [step for step, _ in scalars["train/policy_loss"]]
    assert steps == list(range(10, 101, 10))
    assert all(math.isfinite(v) for _, v in scalars["train/value_loss"])
    lr = [v for _, v in scalars["train/learning_rate"]]
    assert lr == sorted(lr, reverse=True) and lr[0] < 0.25  # linear schedule
    model.learn(20, tb_log_name="run")
    assert (tmp_path / "run_2").is_dir()


def test_full_tensorboard_log_histograms(tmp_path: Path) -> None:
    model = ACKTR(
        "MlpPolicy",
        "CartPole-v1",
        n_envs=2,
        n_steps=5,
        tensorboard_log=str(tmp_path),
        full_tensorboard_log=True,
        seed=0,
    )
    model.learn(20)
    tags = set()
    for path in tmp_path.rglob("events.out.tfevents.*"):
        for event in tf.compat.v1.train.summary_iterator(str(path)):
            tags.update(value.tag for value in event.summary.value)
    assert "model/pi_fc0/w:0" in tags


# -- trainer reports ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cartpole_reports() -> tuple[ACKTR, list[UpdateReport]]:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=4, n_steps=20, seed=3)
    return model, list(model.trainer(4 * 20 * 30))


def test_report_fields(cartpole_reports: tuple[ACKTR, list[UpdateReport]]) -> None:
    _, reports = cartpole_reports
    assert len(reports) == 30
    assert [r.update for r in reports] == list(range(1, 31))
    assert [r.timesteps for r in reports] == [80 * i for i in range(1, 31)]
    for r in reports:
        assert r.total_timesteps == 2400
        assert r.fps > 0 and math.isfinite(r.fps)
        assert 0 < r.learning_rate <= 0.25
        assert math.isfinite(r.policy_loss) and math.isfinite(r.value_loss) and r.value_loss >= 0
        assert 0 < r.entropy <= math.log(2) + 1e-6
        assert math.isfinite(r.explained_variance) and r.explained_variance <= 1
        assert math.isfinite(r.kl) and r.kl >= -1e-6
        assert r.skipped is False
        assert set(r.hyperparameters) >= {"learning_rate", "ent_coef", "gamma", "lr_schedule"}
        assert 0.0 <= r.progress <= 1.0
    rates = [r.learning_rate for r in reports]
    assert rates == sorted(rates, reverse=True)
    # Linear schedule, evaluated as Stable Baselines 2's Scheduler does: at the batch's last sample.
    assert rates[0] == pytest.approx(0.25 * (1 - 79 / 2400), rel=1e-6)
    assert rates[-1] == pytest.approx(0.25 / 2400, rel=1e-6)


def test_report_cold_start_then_kfac(cartpole_reports: tuple[ACKTR, list[UpdateReport]]) -> None:
    _, reports = cartpole_reports
    assert [r.kfac_step for r in reports] == [False] * 10 + [True] * 20
    for r in reports[:10]:
        assert math.isnan(r.trust_region_scale) and math.isnan(r.gfg)
        assert r.fisher_eigenvalues is None
    for r in reports[10:]:
        assert 0 < r.trust_region_scale <= 1 and r.gfg > 0


def test_report_fisher_eigenvalues(cartpole_reports: tuple[ACKTR, list[UpdateReport]]) -> None:
    model, reports = cartpole_reports
    expected = {
        "pi_fc0": (5, 64),
        "pi_fc1": (65, 64),
        "vf_fc0": (5, 64),
        "vf_fc1": (65, 64),
        "vf": (65, 1),
        "pi": (65, 2),
    }
    assert len(model.policy.kfac_layers) == len(expected)
    for r in reports[10:]:  # kfac_update=1: refreshed on every K-FAC update
        assert r.fisher_eigenvalues is not None
        assert set(r.fisher_eigenvalues) == set(expected)
        for name, (a_size, g_size) in expected.items():
            factors = r.fisher_eigenvalues[name]
            assert factors.input_factor.shape == (a_size,)
            assert factors.gradient_factor.shape == (g_size,)
            assert np.all(factors.input_factor >= 0) and np.all(np.diff(factors.input_factor) >= 0)
            assert np.all(np.isfinite(factors.gradient_factor))
        # A includes the bias column of ones: its largest eigenvalue is at least 1.
        assert r.fisher_eigenvalues["pi_fc0"].input_factor[-1] >= 1.0 - 1e-6


def test_report_episodes(cartpole_reports: tuple[ACKTR, list[UpdateReport]]) -> None:
    model, reports = cartpole_reports
    returns = [x for r in reports for x in r.episode_returns]
    lengths = [x for r in reports for x in r.episode_lengths]
    assert len(returns) > 10 and len(returns) == len(lengths)
    assert returns == [float(n) for n in lengths]  # CartPole: reward 1 per step
    assert list(model.episode_returns)[-len(returns) :] == returns[-100:]
    scalars = next(r for r in reports if r.episode_returns).scalars()
    assert "rollout/ep_return_mean" in scalars


def test_metrics_travel_by_name_to_the_report_and_its_scalars(
    cartpole_reports: tuple[ACKTR, list[UpdateReport]],
) -> None:
    """Every number the learner and the optimizer report arrives by name, no field copied."""
    _, reports = cartpole_reports
    for report in reports:
        names = set(report.metrics)
        assert {"train/policy_loss", "train/kl", "train/explained_variance", "kfac/grad_norm", "kfac/skipped"} <= names
        assert {name.split("/")[0] for name in names} == {"train", "kfac", "cost"}
        assert {"cost/rollout_ms", "cost/update_ms"} <= names  # measured for every update
        assert report.metrics["cost/update_ms"] > 0 and report.metrics["cost/rollout_ms"] > 0
        assert report.metrics["train/kl"] == report.kl
        assert report.metrics["kfac/gfg"] == report.gfg or not report.kfac_step  # NaN outside K-FAC steps
        assert math.isfinite(report.metrics["kfac/grad_norm"]) and report.metrics["kfac/grad_norm"] > 0
        scalars = report.scalars()
        assert all(scalars[name] == value or math.isnan(value) for name, value in report.metrics.items())
        assert report.to_dict()["metrics"] == dict(report.metrics)


def test_kfac_update_interval() -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, kfac_update=3, seed=0)
    reports = list(model.trainer(10 * 17))
    refreshed = [r.fisher_eigenvalues is not None for r in reports]
    assert refreshed == [False] * 10 + [True, False, False, True, False, False, True]
    ages = [r.metrics["kfac/inverse_age"] for r in reports]
    assert all(math.isnan(age) for age in ages[:10]) and ages[10:] == [0, 1, 2, 0, 1, 2, 0]


@pytest.mark.parametrize("async_eigen", [False, True])
def test_reported_eigenvalues_are_the_ones_in_use_after_the_update(async_eigen: bool) -> None:
    """The compiled step returns the eigenvalues it decomposed (no separate read); with
    ``async_eigen_decomp`` they are read when a decomposition is installed. Either way a
    report carries exactly what the optimizer uses after that update."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0, async_eigen_decomp=async_eigen)
    reported = 0
    for report in model.trainer(10 * 30):
        if report.fisher_eigenvalues is None:
            continue
        reported += 1
        in_use = model.learner.optimizer.eigenvalues()
        assert set(report.fisher_eigenvalues) == set(in_use)
        for name, factors in report.fisher_eigenvalues.items():
            np.testing.assert_array_equal(factors.input_factor, in_use[name][0], err_msg=name)
            np.testing.assert_array_equal(factors.gradient_factor, in_use[name][1], err_msg=name)
    assert reported >= 2


# -- seeding --------------------------------------------------------------------------


def _run(seed: int, updates: int = 14) -> tuple[dict[str, np.ndarray], list[UpdateReport]]:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=10, seed=seed)
    reports = list(model.trainer(2 * 10 * updates))
    return model.get_parameters(), reports


def _comparable(report: UpdateReport) -> dict[str, Any]:
    """Everything a report holds but the wall-clock fps and timings (``cost/…``)."""
    data = {name: value for name, value in report.to_dict().items() if name != "fps"}
    data["metrics"] = {name: value for name, value in data["metrics"].items() if not name.startswith("cost/")}
    return data


def test_same_seed_same_run() -> None:
    params_a, reports_a = _run(7)
    params_b, reports_b = _run(7)
    for name in params_a:
        np.testing.assert_array_equal(params_a[name], params_b[name], err_msg=name)
    for ra, rb in zip(reports_a, reports_b):
        da, db = _comparable(ra), _comparable(rb)
        eig_a, eig_b = da.pop("fisher_eigenvalues"), db.pop("fisher_eigenvalues")
        np.testing.assert_equal(da, db)
        assert (eig_a is None) == (eig_b is None)
        if eig_a is not None:
            for layer in eig_a:
                np.testing.assert_array_equal(eig_a[layer]["input_factor"], eig_b[layer]["input_factor"])
                np.testing.assert_array_equal(eig_a[layer]["gradient_factor"], eig_b[layer]["gradient_factor"])


def test_different_seed_different_run() -> None:
    params_a, reports_a = _run(7, updates=3)
    params_b, reports_b = _run(8, updates=3)
    assert any(not np.array_equal(params_a[n], params_b[n]) for n in params_a)
    assert [r.policy_loss for r in reports_a] != [r.policy_loss for r in reports_b]


# -- rollout: truncation is bootstrapped ----------------------------------------------


class FixedEpisodeEnv(gym.Env):
    """Reward ``reward`` every step; the episode ends after ``length`` steps, by
    termination or by truncation."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, length: int, reward: float, truncate: bool) -> None:
        self.length, self.reward, self.truncate = length, reward, truncate
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return np.zeros(1, np.float32), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self._t += 1
        ended = self._t >= self.length
        obs = np.full(1, self._t / self.length, np.float32)
        return obs, self.reward, ended and not self.truncate, ended and self.truncate, {}


class ConstantActor:
    """Always action 0 and value ``c``; records the observations V was asked about."""

    def __init__(self, c: float) -> None:
        self.c = c
        self.seen_by_value: list[np.ndarray] = []

    def initial_state(self, n_envs: int) -> tuple:
        return ()

    def act(self, obs: np.ndarray, state: tuple, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        return np.zeros(len(obs), np.int64), np.full(len(obs), self.c, np.float32), state

    def value(self, obs: np.ndarray, state: tuple, starts: np.ndarray) -> np.ndarray:
        self.seen_by_value.append(obs.copy())
        return np.full(len(obs), self.c, np.float32)

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        return np.asarray(actions)


def test_rollout_bootstraps_truncation_only() -> None:
    gamma, c, r, length = 0.9, 5.0, 2.0, 3
    env = as_vector_env(
        DummyVecEnv(
            [
                lambda: FixedEpisodeEnv(length, r, truncate=True),
                lambda: FixedEpisodeEnv(length, r, truncate=False),
            ]
        )
    )
    actor = ConstantActor(c)
    collector = Collector(env, actor, seed=0)
    rollout = collector.collect(n_steps=7, gamma=gamma)
    ends = np.array([False, False, True, False, False, True, False])
    np.testing.assert_array_equal(rollout.dones[:, 0], ends)
    np.testing.assert_array_equal(rollout.dones[:, 1], ends)
    # Truncated env: r + γ·c where the episode was cut; terminated env: exactly r.
    np.testing.assert_allclose(rollout.rewards[:, 0], np.where(ends, r + gamma * c, r))
    np.testing.assert_array_equal(rollout.rewards[:, 1], np.full(7, r, np.float32))
    # V was asked about the final observation (1.0), not the reset one (0.0).
    final_queries = [obs[0, 0] for obs in actor.seen_by_value[:-1]]
    assert final_queries == [1.0, 1.0]
    assert rollout.episode_returns == (6.0, 6.0, 6.0, 6.0)
    assert rollout.episode_lengths == (3, 3, 3, 3)
    assert rollout.n_transitions == 14
    np.testing.assert_array_equal(rollout.last_values, [c, c])
    env.close()


def test_rollout_truncation_with_returns() -> None:
    """End to end through the returns: a truncated step's return is r + γ·V(final)."""
    gamma, c, r = 0.5, 4.0, 1.0
    env = as_vector_env(DummyVecEnv([lambda: FixedEpisodeEnv(2, r, truncate=True)]))
    collector = Collector(env, ConstantActor(c), seed=0)
    rollout = collector.collect(n_steps=2, gamma=gamma)
    np.testing.assert_allclose(rollout.returns[:, 0], [r + gamma * (r + gamma * c), r + gamma * c])
    env.close()


def test_a_gaussian_policy_reports_its_log_std_after_each_update() -> None:
    model = ACKTR("MlpPolicy", "Pendulum-v1", n_envs=2, n_steps=5, seed=0, cold_iter=1)
    log_std = model.learner.policy.log_std
    values = []
    for report in model.trainer(10 * 4):
        values.append(report.metrics["train/log_std"])
        assert report.metrics["train/log_std"] == pytest.approx(float(np.mean(log_std.numpy())))
    assert values[0] != values[-1]  # it is trained
    cartpole = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    assert "train/log_std" not in next(iter(cartpole.trainer(10))).metrics  # no Gaussian, no log std
