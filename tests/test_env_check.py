"""The gymnasium API check: an env that breaks the API gets a clear error naming the env and
the problem (not an unpacking error deep in training), and the check never changes a run."""

from __future__ import annotations

import subprocess
import sys
import types
from typing import Any

import cloudpickle
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv

from acktr_lab import ACKTR
from acktr_lab.vec_env import DummyVecEnv, SubprocVecEnv, as_vector_env, make_vec_env

BOX4 = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)


class ValidEnv(gym.Env):
    """A valid env: random observations of its observation space (from ``np_random``), 2
    actions, 6-step episodes; counts its ``reset``/``step`` calls. Broken variants replace
    one member (:func:`_env`)."""

    observation_space: gym.Space = BOX4
    action_space: gym.Space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.resets = 0
        self.steps = 0
        self._t = 0

    def _obs(self) -> Any:
        space = self.observation_space
        if isinstance(space, gym.spaces.Box):
            return self.np_random.uniform(-1.0, 1.0, space.shape).astype(space.dtype)
        if isinstance(space, gym.spaces.Discrete):
            return int(space.start + self.np_random.integers(space.n))
        return np.zeros(space.shape, space.dtype)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        self.resets += 1
        self._t = 0
        return self._obs(), {}

    def step(self, action: Any) -> Any:
        self.steps += 1
        self._t += 1
        return self._obs(), float(action == 1), False, self._t >= 6, {}


def _env(**members: Any) -> ValidEnv:
    """An instance of ``BrokenEnv``, a subclass of :class:`ValidEnv` with ``members`` replaced."""
    return types.new_class("BrokenEnv", (ValidEnv,), exec_body=lambda ns: ns.update(members))()


def _reset_returning(value: Any) -> Any:
    """A ``reset`` method returning ``value`` (or ``value(env)`` if callable)."""

    def reset(self: ValidEnv, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        gym.Env.reset(self, seed=seed)
        return value(self) if callable(value) else value

    return reset


def _step_returning(value: Any) -> Any:
    """A ``step`` method returning ``value(env)``."""
    return lambda self, action: value(self)


# -- reset ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reset", "match"),
    [
        (
            _reset_returning(lambda e: e._obs()),
            r"BrokenEnv: reset\(\) must return \(obs, info\), got an ndarray of shape \(4,\)",
        ),
        (_reset_returning(lambda e: [0.0] * 4), r"reset\(\) must return \(obs, info\), got a list"),
        (
            _reset_returning(lambda e: (e._obs(), {}, 0)),
            r"reset\(\) must return \(obs, info\), got a tuple of 3 values",
        ),
        (
            _reset_returning(lambda e: (e._obs(), None)),
            r"reset\(\) must return \(obs, info\) with info a dict, got info = None",
        ),
        (lambda self: (np.zeros(4, np.float32), {}), r"reset\(\) must accept the keyword arguments seed and options"),
    ],
    ids=["bare-ndarray", "bare-list", "three-values", "info-none", "no-seed-keyword"],
)
def test_reset_breaking_the_api(reset: Any, match: str) -> None:
    with pytest.raises(TypeError, match=match):
        ACKTR("MlpPolicy", _env(reset=reset), seed=0, n_steps=5)


def test_reset_returning_only_a_discrete_observation() -> None:
    env = _env(observation_space=gym.spaces.Discrete(5), reset=_reset_returning(3))
    with pytest.raises(TypeError, match=r"got an int \(3\)\. Update the env to the gymnasium API.*shimmy"):
        ACKTR("MlpPolicy", env, seed=0, n_steps=5)


# -- step -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("step", "match"),
    [
        (
            lambda e: (e._obs(), 1.0, False, {}),
            r"BrokenEnv: step\(\) returned 4 values, \(obs, reward, done, info\).*shimmy",
        ),
        (
            lambda e: (e._obs(), 1.0, False),
            r"step\(\) must return \(obs, reward, terminated, truncated, info\), got a tuple of 3",
        ),
        (lambda e: [e._obs(), 1.0, False, False, {}], r"step\(\) must return \(obs, .*\), got a list"),
        (
            lambda e: (e._obs(), np.ones(1), False, False, {}),
            r"a number as its reward \(2nd value\), got an ndarray of shape \(1,\)",
        ),
        (lambda e: (e._obs(), None, False, False, {}), r"a number as its reward \(2nd value\), got None"),
        (lambda e: (e._obs(), 1.0, False, {}, {}), r"a bool as truncated \(4th value\), got a dict"),
        (lambda e: (e._obs(), 1.0, "no", False, {}), r"a bool as terminated \(3rd value\), got a str"),
        (lambda e: (e._obs(), 1.0, False, False, None), r"a dict as info \(5th value\), got None"),
    ],
    ids=[
        "old-4-tuple",
        "three-values",
        "list",
        "array-reward",
        "none-reward",
        "info-as-truncated",
        "str-flag",
        "no-info",
    ],
)
def test_step_breaking_the_api(step: Any, match: str) -> None:
    model = ACKTR("MlpPolicy", _env(step=_step_returning(step)), seed=0, n_steps=5)
    with pytest.raises(TypeError, match=match):
        model.learn(10)
    assert model.num_timesteps == 0  # caught at the first step, before any update


# -- observations ---------------------------------------------------------------------

IMAGE = gym.spaces.Box(0, 255, (36, 36, 1), np.uint8)
IMAGE_RE = r"Box\(0, 255, \(36, 36, 1\), uint8\)"
FIT = r"does not fit observation space "
OUT = r"out of range for observation space "
BAD_OBSERVATIONS = [
    pytest.param(
        BOX4, np.zeros(3, np.float32), ValueError, rf"from reset\(\), of shape \(3,\), {FIT}Box\(-1\.0", id="short"
    ),
    pytest.param(BOX4, np.zeros((1, 4), np.float32), ValueError, rf"of shape \(1, 4\), {FIT}", id="batched"),
    pytest.param(
        IMAGE, np.zeros((36, 36), np.uint8), ValueError, rf"of shape \(36, 36\), {FIT}{IMAGE_RE}", id="image-2d"
    ),
    pytest.param(
        gym.spaces.Discrete(4), np.array([1]), ValueError, rf"of shape \(1,\), {FIT}Discrete\(4\)", id="discr-1d"
    ),
    pytest.param(
        IMAGE, np.full((36, 36, 1), 0.5), TypeError, rf"has dtype float64, which {FIT}{IMAGE_RE}", id="image-float"
    ),
    pytest.param(
        gym.spaces.Discrete(4), 2.0, TypeError, rf"has dtype float64, which {FIT}Discrete\(4\)", id="discr-float"
    ),
    pytest.param(
        gym.spaces.MultiBinary(3), np.array([0.0, 1.0, 0.0]), TypeError, r"float64, .*MultiBinary", id="mb-float"
    ),
    pytest.param(BOX4, np.array(["a", "b", "c", "d"]), TypeError, r"which is not numbers", id="strings"),
    pytest.param(BOX4, None, TypeError, r"is None, which is not numbers", id="none"),
    pytest.param(gym.spaces.Discrete(4), 4, ValueError, rf"is 4, {OUT}Discrete\(4\)", id="discr-n"),
    pytest.param(
        gym.spaces.Discrete(3, start=1), 0, ValueError, rf"is 0, {OUT}Discrete\(3, start=1\)", id="discr-start"
    ),
    pytest.param(gym.spaces.Discrete(4), -1, ValueError, OUT, id="discr-negative"),
    pytest.param(gym.spaces.MultiDiscrete([3, 3]), np.array([0, 3]), ValueError, rf"is \[0, 3\], {OUT}Multi", id="md"),
    pytest.param(gym.spaces.MultiBinary(3), np.array([0, 2, 1], np.int8), ValueError, r"takes only 0 and 1", id="mb-2"),
]


@pytest.mark.parametrize(("space", "obs", "error", "match"), BAD_OBSERVATIONS)
def test_observation_that_does_not_fit_the_space(space: gym.Space, obs: Any, error: type, match: str) -> None:
    env = _env(observation_space=space, reset=_reset_returning((obs, {})))
    with pytest.raises(error, match=r"env BrokenEnv: the observation .*" + match):
        ACKTR("MlpPolicy", env, seed=0, n_steps=5)


def test_step_observation_checked_too() -> None:
    env = _env(step=_step_returning(lambda e: (np.zeros(5, np.float32), 0.0, False, False, {})))
    model = ACKTR("MlpPolicy", env, seed=0, n_steps=5)
    with pytest.raises(ValueError, match=r"the observation from step\(\), of shape \(5,\), does not fit"):
        model.learn(10)


def test_same_kind_dtype_and_out_of_bounds_box_are_accepted() -> None:
    """float64 for a float32 Box is only rounded (gymnasium warns); so is a Box value out of
    its bounds. Neither is an error."""
    obs = np.array([0.5, 2.0, 0.0, 0.0])  # float64, and 2.0 is above the bound
    env = _env(reset=_reset_returning((obs, {})), step=_step_returning(lambda e: (obs, 0.0, False, False, {})))
    with pytest.warns(UserWarning, match="not within the observation space"):
        vec = as_vector_env(env)
        vec.reset(seed=0)
        vec.step(np.array([0]))


# -- spaces ---------------------------------------------------------------------------


class _OldGymBox:
    """Stands in for an old ``gym.spaces.Box``."""

    __module__ = "gym.spaces.box"
    shape = (4,)


@pytest.mark.parametrize(
    ("members", "match"),
    [
        (
            {"observation_space": (4,)},
            r"BrokenEnv: observation_space must be a gymnasium\.spaces\.Space, got \(4,\) \(a builtins\.tuple\)",
        ),
        ({"observation_space": None}, r"observation_space must be a gymnasium\.spaces\.Space, got None"),
        ({"observation_space": _OldGymBox()}, r"observation_space must be .*an old `gym` space"),
        ({"action_space": 2}, r"action_space must be a gymnasium\.spaces\.Space, got 2 \(a builtins\.int\)"),
        ({"action_space": [0, 1]}, r"action_space must be a gymnasium\.spaces\.Space, got \[0, 1\]"),
    ],
    ids=["obs-tuple", "obs-none", "obs-old-gym", "action-int", "action-list"],
)
def test_spaces_that_are_not_gymnasium_spaces(members: dict[str, Any], match: str) -> None:
    with pytest.raises(TypeError, match=match):
        ACKTR("MlpPolicy", _env(**members), seed=0, n_steps=5)
    with pytest.raises(TypeError, match=match):  # made by a factory: before the seeded reset
        make_vec_env(lambda: _env(**members), n_envs=2, seed=0)


# -- every way in ---------------------------------------------------------------------


class BareResetEnv(ValidEnv):
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        return np.zeros(4, np.float32)


def test_registered_env_id_and_make_vec_env() -> None:
    gym.register("AcktrLabBareReset-v0", entry_point=BareResetEnv)
    try:
        with pytest.raises(TypeError, match=r"env 'AcktrLabBareReset-v0' \(BareResetEnv\): reset\(\) must return"):
            ACKTR("MlpPolicy", "AcktrLabBareReset-v0", n_envs=2, seed=0, n_steps=5)
    finally:
        del gym.registry["AcktrLabBareReset-v0"]
    with pytest.raises(TypeError, match=r"BareResetEnv: reset\(\) must return"):
        ACKTR("MlpPolicy", make_vec_env(BareResetEnv, n_envs=2, seed=1), seed=0, n_steps=5)


class SeedOnlyResetEnv(ValidEnv):
    def reset(self, *, seed: int | None = None) -> Any:  # type: ignore[override]
        return super().reset(seed=seed)


class DropOptions(gym.Wrapper):
    """A user's wrapper that adapts a ``reset`` without ``options``."""

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        return self.env.reset(seed=seed)


def test_reset_signature_behind_wrappers() -> None:
    """Behind gymnasium's wrappers (gymnasium.make's), the env's own reset must take seed and
    options; behind a user's wrapper, the wrapper's reset is what counts."""
    gym.register("AcktrLabSeedOnly-v0", entry_point=SeedOnlyResetEnv)
    try:
        with pytest.raises(
            TypeError, match=r"'AcktrLabSeedOnly-v0' \(SeedOnlyResetEnv\): reset\(\) must accept .* without options"
        ):
            ACKTR("MlpPolicy", "AcktrLabSeedOnly-v0", seed=0, n_steps=5)
    finally:
        del gym.registry["AcktrLabSeedOnly-v0"]
    ACKTR("MlpPolicy", DropOptions(SeedOnlyResetEnv()), seed=0, n_steps=5).learn(10)


def test_gymnasium_sync_vector_env_is_checked_on_a_copy() -> None:
    broken = SyncVectorEnv([BareResetEnv], autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(TypeError, match=r"BareResetEnv: reset\(\) must return \(obs, info\)"):
        ACKTR("MlpPolicy", broken, seed=0, n_steps=5)
    valid = SyncVectorEnv([ValidEnv, ValidEnv])
    shared_space_rng = ValidEnv.action_space.np_random.bit_generator.state  # a class attribute: shared by the copy
    assert as_vector_env(valid) is valid
    assert [(e.resets, e.steps) for e in valid.envs] == [(0, 0), (0, 0)]  # a copy was probed
    assert ValidEnv.action_space.np_random.bit_generator.state == shared_space_rng


class StepFourEnv(ValidEnv):
    def step(self, action: Any) -> Any:
        return self._obs(), 0.0, False, {}


def test_subproc_vec_env_checks_an_extra_env_in_this_process() -> None:
    """The check fails before any worker starts."""
    with pytest.raises(TypeError, match=r"StepFourEnv: step\(\) returned 4 values"):
        SubprocVecEnv([StepFourEnv, StepFourEnv])
    with pytest.raises(TypeError, match=r"StepFourEnv: step\(\) returned 4 values"):
        make_vec_env(StepFourEnv, n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    with pytest.raises(TypeError, match=r"observation_space must be a gymnasium\.spaces\.Space"):
        make_vec_env(lambda: _env(observation_space=(4,)), n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)


def test_gymnasium_async_vector_env_is_checked_on_an_extra_env() -> None:
    def make() -> gym.Env:
        """Defined in the test, so that cloudpickle sends it to the workers by value: they then
        import gymnasium, not this module (and TensorFlow)."""

        class LocalStepFourEnv(gym.Env):
            observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
            action_space = gym.spaces.Discrete(2)

            def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
                return np.zeros(2, np.float32), {}

            def step(self, action: Any) -> Any:
                return np.zeros(2, np.float32), 0.0, False, {}

        return LocalStepFourEnv()

    env = AsyncVectorEnv([make, make], context="forkserver")
    try:
        with pytest.raises(TypeError, match=r"LocalStepFourEnv: step\(\) returned 4 values"):
            ACKTR("MlpPolicy", env, seed=0, n_steps=5)
    finally:
        env.close(terminate=True)


def test_nothing_of_acktr_lab_goes_to_the_workers() -> None:
    """Pickling a function of acktr_lab would import acktr_lab, and TensorFlow, in each worker."""
    env = make_vec_env("CartPole-v1", n_envs=2, seed=0, vec_env_cls=SubprocVecEnv)
    try:
        payload = cloudpickle.dumps(list(env.env_fns))
    finally:
        env.close()
    code = (
        "import pickle, sys; fns = pickle.loads(sys.stdin.buffer.read()); fns[0]().reset(); "
        "print(sorted(m for m in sys.modules if m.startswith(('acktr_lab', 'tensorflow'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, check=True, timeout=60)
    assert out.stdout.decode().strip() == "[]"


def test_old_gym_env_goes_through_shimmy_v21(monkeypatch: pytest.MonkeyPatch) -> None:
    """An old gym (< 0.26) env goes through shimmy's GymV21CompatibilityV0 (the name since
    shimmy 1.0; shimmy 0.x called it GymV22CompatibilityV0)."""
    fake_gym = types.ModuleType("gym")
    fake_gym.Env = type("Env", (), {})  # type: ignore[attr-defined]
    fake_gym.__version__ = "0.21.0"  # type: ignore[attr-defined]
    wrapped: list[Any] = []
    fake_shimmy = types.ModuleType("shimmy")
    fake_shimmy.GymV21CompatibilityV0 = lambda env: wrapped.append(env) or ValidEnv()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "gym", fake_gym)
    monkeypatch.setitem(sys.modules, "shimmy", fake_shimmy)
    old = fake_gym.Env()
    vec = as_vector_env(old)
    assert wrapped == [old] and isinstance(vec.envs[0], ValidEnv)


# -- a valid env: trains, and the check changes nothing -----------------------------


class EpisodeCountingEnv(ValidEnv):
    """Observations depend on how many resets came before: any extra reset or step made by
    a check would change the run."""

    def _obs(self) -> Any:
        return np.append(super()._obs()[:3], self.resets / 10).astype(np.float32)


def _run(env: Any) -> dict[str, np.ndarray]:
    """Train 30 steps with seed 3; the env sees only the calls training makes."""
    model = ACKTR("MlpPolicy", env, seed=3, n_steps=5)
    sub = model.env.envs[0]
    assert (sub.resets, sub.steps) == (1, 0)  # the collector's own reset, nothing more
    model.learn(30)
    assert (sub.resets, sub.steps) == (1 + 30 // 6, 30)
    return model.get_parameters()


def test_valid_env_trains_and_runs_are_unchanged_by_the_check() -> None:
    first = _run(EpisodeCountingEnv())
    second = _run(EpisodeCountingEnv())
    gymnasium_vec = _run(SyncVectorEnv([EpisodeCountingEnv], autoreset_mode=AutoresetMode.SAME_STEP))
    assert first.keys() == second.keys() == gymnasium_vec.keys()
    for name in first:
        np.testing.assert_array_equal(first[name], second[name])
        np.testing.assert_array_equal(first[name], gymnasium_vec[name])  # probed on a copy: same run


def test_dummy_vec_env_keeps_the_envs_themselves() -> None:
    envs = [ValidEnv(), ValidEnv()]
    vec = DummyVecEnv([lambda: envs[0], lambda: envs[1]])
    vec.reset(seed=0)
    vec.step(np.array([0, 1]))
    assert vec.envs[0] is envs[0] and vec.envs[1] is envs[1]
    assert [(e.resets, e.steps) for e in envs] == [(1, 1), (1, 1)]
