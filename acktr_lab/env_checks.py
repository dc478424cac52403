"""Checks of an env against the gymnasium API, once, before training (see :mod:`acktr_lab.vec_env`).

An env that breaks the API (``reset()`` returning only the observation, ``step()``
returning the old 4-tuple, observations that do not fit the observation space, spaces
that are not gymnasium spaces, ...) gets a ``TypeError`` or ``ValueError`` naming the env
and the problem. The spaces go through gymnasium's passive checker
(``gymnasium.utils.passive_env_checker``), whose observation check also adds its warnings.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import reprlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.utils import passive_env_checker

EnvFactory = Callable[[], gym.Env]

# -- the gymnasium API check ----------------------------------------------------------

#: The observation spaces whose observations are checked (the ones acktr_lab's policies take;
#: the policy refuses the others by itself).
_CHECKED_OBSERVATION_SPACES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


def env_name(env: Any) -> str:
    """How error messages name ``env``: its class, with its gymnasium id where it has one."""
    base = getattr(env, "unwrapped", env)
    env_id = getattr(getattr(base, "spec", None), "id", None)
    cls = type(base).__qualname__
    return f"{env_id!r} ({cls})" if isinstance(env_id, str) else cls


def _describe(value: Any) -> str:
    """A short description of a returned value for an error message."""
    if isinstance(value, np.ndarray):
        return f"an ndarray of shape {value.shape} and dtype {value.dtype}"
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} value{'' if len(value) == 1 else 's'}"
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[:1].lower() in 'aeiou' else 'a'} {name} ({reprlib.repr(value)})"


def _shimmy_installed() -> bool:
    try:
        return importlib.util.find_spec("shimmy") is not None
    except (ImportError, ValueError):
        return False


def _old_api_hint() -> str:
    """What to do about an env written for the old gym API (reset -> obs, step -> 4 values)."""
    hint = (
        "Update the env to the gymnasium API (gym >= 0.26): reset() returns (obs, info) and step() returns "
        "(obs, reward, terminated, truncated, info). An env written for old `gym` (a gym.Env with gym spaces) "
        "is accepted as it is when shimmy is installed: acktr_lab wraps it with shimmy's GymV21CompatibilityV0"
    )
    if not _shimmy_installed():
        hint += " (shimmy is not installed here: pip install 'shimmy[gym-v21]', or 'shimmy[gym-v26]' for gym 0.26)"
    return hint


def _reset_signature_problem(reset: Callable[..., Any]) -> str | None:
    """Why gymnasium's ``reset(seed=..., options=...)`` call would fail on ``reset``, or None."""
    try:
        signature = inspect.signature(reset)
    except (TypeError, ValueError):  # a builtin or C callable: nothing to read
        return None
    params = signature.parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    keywords = {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    missing = [k for k in ("seed", "options") if k not in keywords]
    if not missing:
        return None
    return f"its signature is reset{signature}, without {' and '.join(missing)}"


def _only_gymnasium_wrappers(env: Any) -> bool:
    """Whether every wrapper around ``env.unwrapped`` is one of gymnasium's (a user's own
    wrapper may adapt an older ``reset`` on purpose)."""
    while isinstance(env, gym.Wrapper):
        if not type(env).__module__.startswith("gymnasium."):
            return False
        env = env.env
    return True


def check_space(space: Any, what: str, kind: str) -> None:
    """gymnasium's passive check of a space, with errors that name ``what`` owns it."""
    check = (
        passive_env_checker.check_observation_space if kind == "observation" else passive_env_checker.check_action_space
    )
    attribute = f"{kind}_space" if what.startswith("env ") else f"single_{kind}_space"
    try:
        check(space)
    except TypeError as err:
        module = type(space).__module__
        hint = (
            "it is an old `gym` space: use gymnasium.spaces (an old gym env is accepted as it is with shimmy)"
            if module == "gym" or module.startswith("gym.")
            else f"set {attribute} to a gymnasium space, e.g. gymnasium.spaces.Box(...)"
        )
        raise TypeError(
            f"{what}: {attribute} must be a gymnasium.spaces.Space, got {reprlib.repr(space)} "
            f"(a {module}.{type(space).__qualname__}); {hint}"
        ) from err
    except AssertionError as err:
        raise ValueError(f"{what}: invalid {attribute} {space}: {err}") from err


def check_env_declaration(env: Any) -> None:
    """Check what ``env`` declares, without calling it: gymnasium spaces, a ``reset`` taking
    ``seed`` and ``options``.

    The spaces go through gymnasium's passive checker (``check_observation_space``,
    ``check_action_space``; its warnings, e.g. a Box with ``low == high``, stay warnings).

    Raises:
        TypeError: a space that is not a ``gymnasium.spaces.Space`` (or is missing); a
            ``reset`` that cannot take ``seed=`` and ``options=`` (vector envs pass both): the
            env's, and, behind gymnasium's own wrappers only, the unwrapped env's.
        ValueError: a malformed gymnasium space.
    """
    what = f"env {env_name(env)}"
    for kind in ("observation", "action"):
        check_space(getattr(env, f"{kind}_space", None), what, kind)
    resets = [getattr(env, "reset", None)]
    if _only_gymnasium_wrappers(env):  # they pass seed= and options= on: the env's own reset must take them
        resets.append(getattr(getattr(env, "unwrapped", env), "reset", None))
    for reset in resets:
        problem = _reset_signature_problem(reset) if callable(reset) else "it has no reset() method"
        if problem is not None:
            raise TypeError(
                f"{what}: reset() must accept the keyword arguments seed and options "
                f"(gymnasium calls env.reset(seed=..., options=...)), but {problem}. {_old_api_hint()}"
            )


def check_observation(env: Any, obs: Any, method: str) -> None:
    """Check one observation ``env`` returned from ``method`` (``"reset"`` or ``"step"``)
    against its observation space.

    For Box, Discrete, MultiDiscrete and MultiBinary spaces (the others are left to the
    policy, which refuses them): numbers, the space's shape, a dtype that casts to the
    space's without changing kind (``np.can_cast(..., "same_kind")``: a float observation
    for an integer space such as a uint8 image or a Discrete would be truncated, while a
    float64 one for a float32 Box is only rounded and passes with gymnasium's warning), and
    values inside a Discrete/MultiDiscrete range and 0/1 for MultiBinary. Then gymnasium's
    own ``check_obs``, whose findings (e.g. a Box observation outside its bounds) are warnings.

    Raises:
        TypeError: not numbers, or a dtype of another kind.
        ValueError: a shape that does not fit the space, or values out of its range.
    """
    space = getattr(env, "observation_space", None)
    if not isinstance(space, _CHECKED_OBSERVATION_SPACES):
        return
    where = f"env {env_name(env)}: the observation from {method}()"
    try:
        a = np.asarray(obs)
    except (TypeError, ValueError) as err:  # e.g. a ragged list
        raise ValueError(f"{where} is {_describe(obs)}, not an array ({err}); observation space {space}") from err
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{where} is {_describe(obs)}, which is not numbers for observation space {space}")
    if a.shape != space.shape:
        raise ValueError(f"{where}, of shape {a.shape}, does not fit observation space {space} (shape {space.shape})")
    if not np.can_cast(a.dtype, space.dtype, casting="same_kind"):
        raise TypeError(
            f"{where} has dtype {a.dtype}, which does not fit observation space {space}: it would be "
            f"cast to {space.dtype} and truncated; return {space.dtype} observations"
        )
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        low = np.asarray(space.start)
        high = low + (space.n if isinstance(space, gym.spaces.Discrete) else space.nvec)
        if np.any(a < low) or np.any(a >= high):
            raise ValueError(f"{where} is {reprlib.repr(a.tolist())}, out of range for observation space {space}")
    if isinstance(space, gym.spaces.MultiBinary) and np.any((a != 0) & (a != 1)):
        raise ValueError(f"{where} is {reprlib.repr(a.tolist())}: observation space {space} takes only 0 and 1")
    passive_env_checker.check_obs(obs, space, method)


def check_reset_result(env: Any, result: Any) -> None:
    """Check what ``env.reset()`` returned: ``(obs, info)``, info a dict, obs as in
    :func:`check_observation`.

    Raises:
        TypeError: not a pair (e.g. the old API's bare observation), info not a dict, obs of
            the wrong type.
        ValueError: obs of the wrong shape or out of range.
    """
    what = f"env {env_name(env)}"
    if not isinstance(result, tuple) or len(result) != 2:
        raise TypeError(f"{what}: reset() must return (obs, info), got {_describe(result)}. {_old_api_hint()}")
    obs, info = result
    if not isinstance(info, dict):
        raise TypeError(f"{what}: reset() must return (obs, info) with info a dict, got info = {_describe(info)}")
    check_observation(env, obs, "reset")


def check_step_result(env: Any, result: Any) -> None:
    """Check what ``env.step()`` returned: ``(obs, reward, terminated, truncated, info)`` with
    a real scalar reward, bool (or integer) scalar flags, a dict info, and obs as in
    :func:`check_observation`.

    Raises:
        TypeError: another number of values (4: the old gym API), a reward or flag that is
            not a scalar of the right kind, info not a dict, obs of the wrong type.
        ValueError: obs of the wrong shape or out of range.
    """
    what = f"env {env_name(env)}"
    shape = "(obs, reward, terminated, truncated, info)"
    if not isinstance(result, tuple):
        raise TypeError(f"{what}: step() must return {shape}, got {_describe(result)}")
    if len(result) == 4:
        raise TypeError(
            f"{what}: step() returned 4 values, (obs, reward, done, info) of the old gym API, "
            f"not {shape}. {_old_api_hint()}"
        )
    if len(result) != 5:
        raise TypeError(f"{what}: step() must return {shape}, got a tuple of {len(result)} values")
    obs, reward, terminated, truncated, info = result
    r = np.asarray(reward)
    if r.ndim != 0 or r.dtype.kind not in "biuf":
        raise TypeError(f"{what}: step() must return a number as its reward (2nd value), got {_describe(reward)}")
    for label, flag in (("terminated (3rd value)", terminated), ("truncated (4th value)", truncated)):
        f = np.asarray(flag)
        if f.ndim != 0 or f.dtype.kind not in "biu":
            raise TypeError(f"{what}: step() must return a bool as {label}, got {_describe(flag)}")
    if not isinstance(info, dict):
        raise TypeError(f"{what}: step() must return a dict as info (5th value), got {_describe(info)}")
    check_observation(env, obs, "step")


class FirstCallCheck(gym.Wrapper):
    """Passes everything through, checking what the env returns from its first ``reset()``
    and its first ``step()`` (as gymnasium's ``PassiveEnvChecker`` does, but raising)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self._reset_checked = False
        self._step_checked = False

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        result = self.env.reset(seed=seed, options=options)
        if not self._reset_checked:
            check_reset_result(self.env, result)
            self._reset_checked = True
        return result

    def step(self, action: Any) -> Any:
        result = self.env.step(action)
        if not self._step_checked:
            check_step_result(self.env, result)
            self._step_checked = True
        return result


class CheckedFactory:
    """An env factory whose env is checked (:func:`check_env_declaration`) as it is made."""

    def __init__(self, make: EnvFactory) -> None:
        self.make = make

    def __call__(self) -> gym.Env:
        env = self.make()
        check_env_declaration(env)
        return env


@contextmanager
def _spaces_rng_kept(env: gym.Env) -> Iterator[None]:
    """Put the random state of ``env``'s spaces back afterwards (a copied env can share its
    spaces with the original, e.g. spaces that are class attributes)."""
    spaces = [getattr(env, name, None) for name in ("observation_space", "action_space")]
    generators = [s.np_random for s in spaces if isinstance(s, gym.spaces.Space)]
    states = [g.bit_generator.state for g in generators]
    try:
        yield
    finally:
        for generator, state in zip(generators, states, strict=True):
            generator.bit_generator.state = state


def probe(env: gym.Env) -> None:
    """Reset and step ``env`` (a copy or an extra instance, never a user's env) once and
    check it and what it returns. An exception of the env itself is left to training (the
    copy may be the cause)."""
    check_env_declaration(env)
    if getattr(env, "render_mode", None) == "human":  # would open a window
        return
    with _spaces_rng_kept(env):
        try:
            result = env.reset()
        except Exception:
            return
        check_reset_result(env, result)
        action_space = copy.deepcopy(env.action_space)
        action_space.seed(0)
        try:
            result = env.step(action_space.sample())
        except Exception:
            return
        check_step_result(env, result)


def probe_new(make: EnvFactory) -> None:
    """:func:`probe` a new env from ``make``, then close it."""
    env = make()
    try:
        probe(env)
    finally:
        env.close()


# -- vector envs ----------------------------------------------------------------------
