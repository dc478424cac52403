"""Bad input to the model's API: refused with a ValueError naming it, before anything changes.

Found by a review of the public API (2026-12-03): ``predict`` read NaN or out-of-range
observations, plain attributes took values that ``save()`` wrote and ``load()`` then refused,
``set_random_seed`` changed state before it failed, and a bad callback failed only after the
first update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from acktr_lab import ACKTR


def small_model(env: Any = "CartPole-v1", **kwargs: Any) -> ACKTR:
    return ACKTR("MlpPolicy", env, **{"seed": 0, "n_steps": 5, **kwargs})


class SpacesEnv(gym.Env):
    """An env with the given observation space and Discrete(2) actions."""

    def __init__(self, observation_space: gym.Space) -> None:
        self.observation_space = observation_space
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        return self.observation_space.sample(), 0.0, False, False, {}


@pytest.fixture(scope="module")
def cartpole() -> ACKTR:
    return small_model()


# -- predict and action_probability ---------------------------------------------------
@pytest.mark.parametrize(
    ("observation", "problem"),
    [
        (np.full(4, np.nan, np.float32), "non-finite"),
        (np.array([0.0, np.inf, 0.0, 0.0]), "non-finite"),
        (np.full(4, 1e39), "non-finite value.* in float32"),
        (np.zeros(4, np.complex64), "real numbers"),
        (np.array(["a", "b", "c", "d"]), "real numbers"),
    ],
)
def test_predict_and_action_probability_refuse_observations_the_policy_cannot_read(
    cartpole: ACKTR, observation: np.ndarray, problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        cartpole.predict(observation)
    with pytest.raises(ValueError, match=problem):
        cartpole.action_probability(observation)


@pytest.mark.parametrize(
    ("space", "observation", "problem"),
    [
        (gym.spaces.Discrete(16), 99, "out of range"),
        (gym.spaces.Discrete(16), -1, "out of range"),
        (gym.spaces.Discrete(16), 2.7, "whole numbers"),
        (gym.spaces.Discrete(3, start=5), 0, "out of range"),
        (gym.spaces.MultiBinary(3), [2, 0, 1], "0 or 1"),
        (gym.spaces.Box(0, 255, (4,), np.uint8), [300, 0, 0, 0], "uint8's range"),
        (gym.spaces.Box(0, 255, (4,), np.uint8), [-5, 0, 0, 0], "uint8's range"),
    ],
)
def test_predict_refuses_observations_outside_their_space(space: gym.Space, observation: Any, problem: str) -> None:
    model = small_model(SpacesEnv(space))
    good = space.sample()
    model.predict(good)  # the space's own observations pass
    with pytest.raises(ValueError, match=problem):
        model.predict(observation)


def test_predict_names_the_reset_pair_mistake_and_refuses_a_non_bool_deterministic(cartpole: ACKTR) -> None:
    env = gym.make("CartPole-v1")
    with pytest.raises(ValueError, match=r"not env.reset\(\)'s \(obs, info\) pair"):
        cartpole.predict(env.reset(seed=0))
    obs = env.reset(seed=0)[0]
    with pytest.raises(ValueError, match="deterministic"):
        cartpole.predict(obs, deterministic="no")
    np.testing.assert_array_equal(
        cartpole.predict(obs, deterministic=np.bool_(True))[0], cartpole.predict(obs, deterministic=True)[0]
    )


@pytest.mark.parametrize("mask", [[0.5], [np.nan], ["x"]])
def test_a_mask_must_be_true_or_false_per_observation(cartpole: ACKTR, mask: list[Any]) -> None:
    with pytest.raises(ValueError, match="mask"):
        cartpole.predict(np.zeros((1, 4), np.float32), mask=mask)
    cartpole.predict(np.zeros((1, 4), np.float32), mask=[1])


# -- settings, seeds and save --------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_steps", 0),
        ("n_steps", 2.5),
        ("verbose", "loud"),
        ("tensorboard_log", 3),
        ("full_tensorboard_log", "yes"),
        ("seed", -3),
        ("seed", 2**64),
        ("seed", "5"),
        ("seed", 3.7),
        ("seed", True),
    ],
)
def test_setting_an_attribute_out_of_its_definition_is_refused_and_saving_still_works(
    name: str, value: Any, tmp_path: Path
) -> None:
    model = small_model()
    before = getattr(model, name)
    generator = model.learner.generator.state.numpy().copy()
    with pytest.raises(ValueError, match=name):
        setattr(model, name, value)
    if name == "seed":
        with pytest.raises(ValueError, match=name):
            model.set_random_seed(value)
    assert getattr(model, name) == before
    np.testing.assert_array_equal(model.learner.generator.state.numpy(), generator)
    model.save(tmp_path / "model.zip")
    assert getattr(ACKTR.load(tmp_path / "model.zip"), name) in (before, None)


@pytest.mark.parametrize(
    ("name", "value"),
    [("kfac_update", 5), ("async_eigen_decomp", True), ("normalize_returns", True), ("normalize_observations", True)],
)
def test_settings_built_into_the_optimizer_or_policy_cannot_change_after_the_model_is_built(
    name: str, value: Any
) -> None:
    model = small_model()
    before = getattr(model, name)
    with pytest.raises(ValueError, match=rf"{name} is built into .* ACKTR.load\(\.\.\., {name}=\.\.\.\)"):
        setattr(model, name, value)
    assert getattr(model, name) == before
    assert model.get_hyperparameters()[name] == before


def test_settings_that_apply_to_the_next_run_can_change() -> None:
    model = small_model()
    model.n_steps = 3
    model.verbose = 0
    model.learn(6)
    assert model.num_timesteps == 6  # two rollouts of 3 steps
    model.seed = 7
    assert model.seed == 7 and model.get_hyperparameters()["seed"] == 7


def test_set_random_seed_refuses_a_bad_seed_before_changing_anything() -> None:
    model = small_model()
    generator = model.learner.generator.state.numpy().copy()
    with pytest.raises(ValueError, match="seed"):
        model.set_random_seed(-1)
    assert model.seed == 0
    np.testing.assert_array_equal(model.learner.generator.state.numpy(), generator)
    model.set_random_seed(np.int64(5))
    assert model.seed == 5 and type(model.seed) is int


def test_save_refuses_normalisation_statistics_that_load_would_refuse_and_keeps_the_old_file(tmp_path: Path) -> None:
    model = small_model(normalize_observations=True)
    path = tmp_path / "model.zip"
    model.save(path)
    saved = path.read_bytes()
    model.observation_normalizer.statistics.var = np.full(4, 1e60)  # beyond float32: the policy would read inf
    with pytest.raises(ValueError, match=r"nothing was saved: .*observation normalizer.*variance"):
        model.save(path)
    assert path.read_bytes() == saved
    ACKTR.load(path)


# -- learn's arguments ---------------------------------------------------------------
def one_argument(locals_: dict[str, Any]) -> bool:
    return True


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"callback": 5}, "callback"),
        ({"callback": "print"}, "callback"),
        ({"callback": one_argument}, "callback"),
        ({"callback": [lambda _l, _g: True, None]}, "callback"),
        ({"callback": (x for x in range(3))}, "callback"),
        ({"log_interval": None}, "log_interval"),
        ({"log_interval": 0}, "log_interval"),
        ({"log_interval": "x"}, "log_interval"),
        ({"tb_log_name": "../../escape"}, "tb_log_name"),
        ({"tb_log_name": ".."}, "tb_log_name"),
        ({"tb_log_name": None}, "tb_log_name"),
        ({"reset_num_timesteps": "no"}, "reset_num_timesteps"),
        ({"progress_bar": "yes"}, "progress_bar"),
    ],
)
def test_learn_refuses_bad_arguments_before_the_first_step(arguments: dict[str, Any], name: str) -> None:
    model = small_model()
    before = model.get_parameters()
    with pytest.raises(ValueError, match=name):
        model.learn(10, **arguments)
    assert model.num_timesteps == 0
    assert int(model.optimizer.iterations.numpy()) == 0
    for key, value in model.get_parameters().items():
        np.testing.assert_array_equal(value, before[key])


# -- set_env ---------------------------------------------------------------------------
def test_set_env_on_a_model_made_without_an_env_takes_its_spaces_as_stable_baselines_2_did() -> None:
    model = ACKTR("MlpPolicy", None, seed=0, n_steps=5, _init_setup_model=False)
    model.set_env("CartPole-v1")
    model.setup_model()
    model.learn(10)
    assert model.num_timesteps == 10 and model.observation_space.shape == (4,)
    with pytest.raises(ValueError, match="observation space"):
        model.set_env("Acrobot-v1")


def test_set_env_during_a_run_ends_it_as_the_models_run_and_the_next_run_steps_the_new_env() -> None:
    model = small_model()
    old = model.env
    run = model.trainer(100)
    next(run)
    new = gym.make_vec("CartPole-v1", num_envs=2)
    model.set_env(new)
    assert model.env is new and model.num_timesteps == 5
    next(run)  # the old run, if stepped on, keeps its own env and counters
    assert run.collector.env is old and run.num_timesteps == 10 and model.num_timesteps == 5
    second = model.trainer(20, reset_num_timesteps=False)
    report = next(second)
    assert second.collector.env is new and report.timesteps == 5 + 2 * 5


@pytest.mark.parametrize("total_timesteps", [float("inf"), float("nan"), None, "30", True, 25.5, 0])
def test_learn_names_total_timesteps_when_it_is_not_a_positive_whole_number(total_timesteps: Any) -> None:
    model = small_model()
    with pytest.raises(ValueError, match="total_timesteps must be a positive integer"):
        model.learn(total_timesteps)
    model.learn(10.0)  # a whole float is a count, as in Stable Baselines 2
    assert model.num_timesteps == 10


@pytest.mark.parametrize("actions", [5, -1, 0.7, np.nan, "a"])
def test_action_probability_refuses_what_is_not_an_action_of_the_space(cartpole: ACKTR, actions: Any) -> None:
    with pytest.raises(ValueError, match="actions"):
        cartpole.action_probability(np.zeros(4, np.float32), actions=actions)
    assert cartpole.action_probability(np.zeros(4, np.float32), actions=1).shape == (1,)


def test_a_recurrent_state_holding_nan_is_refused() -> None:
    model = ACKTR("MlpLstmPolicy", "CartPole-v1", seed=0, n_steps=5, policy_kwargs={"n_lstm": 4})
    _, state = model.predict(np.zeros((1, 4), np.float32))
    bad = np.array(state, copy=True)
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="state holds NaN"):
        model.predict(np.zeros((1, 4), np.float32), state=bad)
    model.predict(np.zeros((1, 4), np.float32), state=state)


def test_load_names_an_unknown_keyword_argument_rather_than_blaming_the_file(tmp_path: Path) -> None:
    small_model().save(tmp_path / "model.zip")
    with pytest.raises(ValueError, match=r"load\(\) got keyword argument\(s\) \['foo'\] that are not ACKTR"):
        ACKTR.load(tmp_path / "model.zip", foo=1)
    assert ACKTR.load(tmp_path / "model.zip", ent_coef=0.5).ent_coef == 0.5


@pytest.mark.parametrize("eval_env", ["Pendulum-v1", "MountainCarContinuous-v0"])
def test_eval_callback_refuses_an_eval_env_of_other_spaces_before_training(eval_env: str) -> None:
    from acktr_lab.callbacks import EvalCallback

    model = small_model()
    with pytest.raises(ValueError, match=r"EvalCallback: the eval env's (observation|action) space"):
        model.learn(10, callback=EvalCallback(eval_env, eval_freq=5, n_eval_episodes=1))
    assert int(model.optimizer.iterations.numpy()) == 0


class CountingEnv(gym.Wrapper):
    """CartPole-v1 counting its steps."""

    def __init__(self) -> None:
        super().__init__(gym.make("CartPole-v1"))
        self.steps = 0

    def step(self, action: Any) -> Any:
        self.steps += 1
        return self.env.step(action)


@pytest.mark.parametrize(
    ("arguments", "name"),
    [
        ({"learning_rate": lambda remaining: float("nan")}, "learning_rate"),
        ({"learning_rate": lambda remaining: "0.1"}, "learning_rate"),
        ({"learning_rate": lambda remaining: -1.0}, "learning_rate"),
        ({"lr_schedule": lambda progress: -5.0}, "lr_schedule"),
    ],
)
def test_a_schedule_returning_a_bad_value_is_refused_before_the_rollout_spends_env_steps(
    arguments: dict[str, Any], name: str
) -> None:
    env = CountingEnv()
    model = small_model(env, **arguments)
    before = env.steps
    with pytest.raises(ValueError, match=rf"{name}: the callable returned"):
        model.learn(10)
    assert env.steps == before and model.num_timesteps == 0


@pytest.mark.parametrize("name", ["gamma", "learning_rate", "vf_coef"])
def test_an_integer_beyond_floats_range_is_a_value_error_naming_the_hyperparameter(name: str) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be finite, got an integer of 1329 bits"):
        ACKTR("MlpPolicy", "CartPole-v1", **{name: 10**400})


def test_save_refuses_a_non_finite_parameter_and_keeps_the_old_file(tmp_path: Path) -> None:
    model = small_model()
    path = tmp_path / "model.zip"
    model.save(path)
    saved = path.read_bytes()
    variable = model.policy.trainable_variables[0]
    variable.assign(np.full(variable.shape, np.nan, variable.dtype.as_numpy_dtype))
    with pytest.raises(ValueError, match=r"nothing was saved: the model.s parameter \S+ holds NaN"):
        model.save(path)
    assert path.read_bytes() == saved
