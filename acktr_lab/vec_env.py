"""Gymnasium vector envs for Stable Baselines users, and coercion of "an env" to one.

:class:`DummyVecEnv` and :class:`SubprocVecEnv` are gymnasium's
``SyncVectorEnv`` and ``AsyncVectorEnv`` under Stable Baselines names, **not**
Stable Baselines 2's classes: ``reset()`` returns ``(obs, infos)`` and ``step()``
returns ``(obs, rewards, terminated, truncated, infos)``. They default to
*same-step* autoreset: when sub-env ``i`` ends an episode at a step, that same
step returns the first observation of its next episode, and the observation the
episode ended on is in ``infos["final_obs"][i]`` (``infos["_final_obs"][i]`` is
true), as in Stable Baselines 2.

:func:`as_vector_env` accepts every gymnasium vector env as it is, whatever its
autoreset mode: next-step (gymnasium's default, e.g. ``gymnasium.make_vec(id,
n)``), same-step or disabled. The collector (:mod:`acktr_lab.rollout`) handles
each and keeps its own episode statistics.

**API check.** An env that breaks the gymnasium API (``reset()`` returning only the
observation, ``step()`` returning the old 4-tuple, observations that do not fit the
observation space, spaces that are not gymnasium spaces, ...) gets a ``TypeError`` or
``ValueError`` naming the env and the problem, before training, instead of an unpacking
error deep in it. The spaces go through gymnasium's passive checker
(``gymnasium.utils.passive_env_checker``), whose observation check also adds its warnings;
see :func:`check_env_declaration`, :func:`check_reset_result`, :func:`check_step_result`.

* :class:`DummyVecEnv` (env ids, env objects and :func:`make_vec_env` by default): each
  env's spaces and ``reset`` signature as it is made, then what it returns from its first
  ``reset()`` and first ``step()``, the calls the vector env makes anyway (the collector
  resets as it is made; the first step is training's), as gymnasium's own
  ``PassiveEnvChecker`` does. The check never calls the env, so a seeded run is exactly
  what it was without it.
* :class:`SubprocVecEnv` and vector envs made elsewhere (:func:`check_vector_env`): an
  extra instance or a deep copy of the first env is reset and stepped once and checked;
  the envs that train are never called by the check.
"""

from __future__ import annotations

import copy
import multiprocessing
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

from acktr_lab.env_checks import (
    CheckedFactory,
    EnvFactory,
    FirstCallCheck,
    check_env_declaration,
    check_observation,
    check_reset_result,
    check_space,
    check_step_result,
    env_name,
    probe,
    probe_new,
)

__all__ = [
    "DummyVecEnv",
    "SubprocVecEnv",
    "as_vector_env",
    "check_env_declaration",
    "check_observation",
    "check_reset_result",
    "check_step_result",
    "check_vector_env",
    "env_name",
    "make_vec_env",
]


class DummyVecEnv(SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` (envs stepped in turn, in this process), same-step autoreset.

    Accepts every ``SyncVectorEnv`` keyword; ``autoreset_mode`` defaults to
    ``AutoresetMode.SAME_STEP``. Each env is checked against the gymnasium API: its
    declaration (:func:`check_env_declaration`) as it is made, what it returns from its first
    ``reset()`` and ``step()`` (:func:`check_reset_result`, :func:`check_step_result`) when
    the vector env first resets and steps. ``envs`` holds the envs themselves, unwrapped.
    """

    def __init__(self, env_fns: Sequence[EnvFactory], **kwargs: Any) -> None:
        kwargs.setdefault("autoreset_mode", AutoresetMode.SAME_STEP)
        env_fns = list(env_fns)
        super().__init__([CheckedFactory(fn) for fn in env_fns], **kwargs)
        self.env_fns = env_fns
        self._unchecked_calls = {"reset", "step"}

    @contextmanager
    def _checking(self, call: str) -> Iterator[None]:
        """During the first ``call``, each env is seen through a :class:`FirstCallCheck`."""
        envs = self.envs
        self.envs = [FirstCallCheck(e) if isinstance(e, gym.Env) else e for e in envs]
        try:
            yield
        finally:
            self.envs = envs
        self._unchecked_calls.discard(call)

    def reset(self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None) -> Any:
        if "reset" not in self._unchecked_calls:
            return super().reset(seed=seed, options=options)
        with self._checking("reset"):
            return super().reset(seed=seed, options=options)

    def step(self, actions: Any) -> Any:
        if "step" not in self._unchecked_calls:
            return super().step(actions)
        with self._checking("step"):
            return super().step(actions)


def _default_context() -> str:
    """``forkserver`` where available, else ``spawn``: forking a process that already runs
    TensorFlow's thread pools can deadlock the child."""
    methods = multiprocessing.get_all_start_methods()
    return "forkserver" if "forkserver" in methods else "spawn"


class SubprocVecEnv(AsyncVectorEnv):
    """gymnasium's ``AsyncVectorEnv`` (one process per env), same-step autoreset.

    Accepts every ``AsyncVectorEnv`` keyword; ``autoreset_mode`` defaults to
    ``AutoresetMode.SAME_STEP`` and ``context`` to ``"forkserver"`` (``"spawn"``
    where unavailable). Env factories are sent to the workers with cloudpickle,
    so lambdas work. As with any non-fork start method, a script that creates one
    must do so under ``if __name__ == "__main__":`` (notebooks need nothing).

    The gymnasium API check happens here, in this process, before the workers start: an
    extra env from ``env_fns[0]`` is checked (:func:`check_env_declaration`), reset and
    stepped once, its results checked (:func:`check_reset_result`, :func:`check_step_result`),
    and closed, as ``AsyncVectorEnv`` itself makes and closes one for its spaces. The
    workers' envs are never touched by the check, and nothing of acktr_lab is sent to the
    workers (it would import TensorFlow in each). ``_probe_with`` (internal) is the
    factory of that extra env where it is not ``env_fns[0]``.
    """

    def __init__(self, env_fns: Sequence[EnvFactory], *, _probe_with: EnvFactory | None = None, **kwargs: Any) -> None:
        kwargs.setdefault("autoreset_mode", AutoresetMode.SAME_STEP)
        kwargs.setdefault("context", _default_context())
        env_fns = list(env_fns)
        probe_with = _probe_with or (env_fns[0] if env_fns else None)
        if probe_with is not None:
            probe_new(probe_with)
        super().__init__(env_fns, **kwargs)


def _env_factory(
    env_id: str | Callable[..., gym.Env],
    rank: int,
    seed: int | None,
    env_kwargs: dict[str, Any],
    wrapper_class: Callable[[gym.Env], gym.Env] | None,
    check: Callable[[gym.Env], None] | None = None,
) -> EnvFactory:
    # ``check`` is None for factories sent to worker processes: pickling a function of
    # acktr_lab would import acktr_lab, and TensorFlow, in each worker.
    def make() -> gym.Env:
        env = gym.make(env_id, **env_kwargs) if isinstance(env_id, str) else env_id(**env_kwargs)
        if wrapper_class is not None:
            env = wrapper_class(env)
        if check is not None:
            check(env)  # before the seeded reset below
        if seed is not None:
            # Seeds the env's RNG once; later reset(seed=None) calls continue from it.
            env.reset(seed=seed + rank)
            env.action_space.seed(seed + rank)
            env.observation_space.seed(seed + rank)
        return env

    return make


def make_vec_env(
    env_id_or_callable: str | Callable[..., gym.Env],
    n_envs: int = 1,
    seed: int | None = None,
    vec_env_cls: type[SyncVectorEnv] | type[AsyncVectorEnv] = DummyVecEnv,
    env_kwargs: dict[str, Any] | None = None,
    wrapper_class: Callable[[gym.Env], gym.Env] | None = None,
) -> VectorEnv:
    """``n_envs`` copies of an env in a ``vec_env_cls`` (default :class:`DummyVecEnv`).

    Each copy is ``gymnasium.make(env_id, **env_kwargs)`` (or
    ``env_id_or_callable(**env_kwargs)``), wrapped with ``wrapper_class`` if given.
    With a ``seed``, copy ``i`` is reset once with ``seed + i`` and its spaces are
    seeded with ``seed + i``, so the run is reproducible without passing a seed to
    ``reset``. The envs are checked against the gymnasium API: each one's declaration
    (:func:`check_env_declaration`) before that reset where they are made in this process,
    and their first results by :class:`DummyVecEnv`; for vector envs with worker processes,
    an extra env, made in this process, is checked, reset and stepped once, and closed.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    kwargs = dict(env_kwargs or {})
    in_workers = issubclass(vec_env_cls, AsyncVectorEnv)
    check = None if in_workers else check_env_declaration
    fns = [_env_factory(env_id_or_callable, i, seed, kwargs, wrapper_class, check) for i in range(n_envs)]
    if in_workers:  # probe a checked twin of env 0 here, once
        checked_twin = _env_factory(env_id_or_callable, 0, seed, kwargs, wrapper_class, check_env_declaration)
        if issubclass(vec_env_cls, SubprocVecEnv):
            return vec_env_cls(fns, _probe_with=checked_twin)
        probe_new(checked_twin)
    if vec_env_cls in (SyncVectorEnv, AsyncVectorEnv):
        return vec_env_cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)
    return vec_env_cls(fns)


def _from_old_gym(env: Any) -> gym.Env | None:
    """An old ``gym`` env wrapped by shimmy, or None if ``env`` is not one.

    ``gym`` is looked up in ``sys.modules`` (an old-gym env exists only if gym was
    imported), so this never imports gym itself.
    """
    old_gym = sys.modules.get("gym")
    old_env_cls = getattr(old_gym, "Env", None)
    if not isinstance(old_env_cls, type) or not isinstance(env, old_env_cls):
        return None
    try:
        import shimmy
    except ImportError:
        raise ValueError(
            f"{env!r} is an old `gym` env; install `shimmy` (pip install 'shimmy[gym-v21]', or "
            "'shimmy[gym-v26]' for gym 0.26) to use it through gymnasium, or use a gymnasium env"
        ) from None
    version = str(getattr(old_gym, "__version__", "0.26"))
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < (0, 26):
        # shimmy >= 1.0 names it GymV21CompatibilityV0; shimmy 0.x called it GymV22CompatibilityV0.
        compatibility = getattr(shimmy, "GymV21CompatibilityV0", None) or shimmy.GymV22CompatibilityV0
        return compatibility(env=env)
    return shimmy.GymV26CompatibilityV0(env=env)


def check_vector_env(env: VectorEnv) -> None:
    """Check a vector env built elsewhere against the gymnasium API, without calling its envs.

    * Its ``single_observation_space`` and ``single_action_space`` go through gymnasium's
      passive space checks (``TypeError``/``ValueError`` as in :func:`check_env_declaration`).
    * :class:`DummyVecEnv` and :class:`SubprocVecEnv` check their own envs' first results.
    * A gymnasium ``SyncVectorEnv`` (e.g. ``gymnasium.make_vec(..., "sync")``): a deep copy of
      its first env is reset and stepped once and checked (skipped if it cannot be copied).
    * A gymnasium ``AsyncVectorEnv``: an extra instance of its first env, made in this
      process from ``env_fns[0]`` (as ``AsyncVectorEnv`` itself does for its spaces), is reset
      and stepped once, checked and closed.
    * Other vector envs: the spaces only; the collector then checks each observation batch
      (shape, finite values, range).

    The envs in the vector env are never called, so its state and random state are untouched.
    """
    what = f"vector env {type(env.unwrapped).__qualname__}"
    for kind in ("observation", "action"):
        check_space(getattr(env, f"single_{kind}_space", None), what, kind)
    base = env.unwrapped
    if isinstance(base, DummyVecEnv | SubprocVecEnv):
        return
    if isinstance(base, SyncVectorEnv) and base.envs:
        try:
            twin = copy.deepcopy(base.envs[0])
        except Exception:  # e.g. a simulator handle: check nothing more rather than touch the env
            return
        probe(twin)  # not closed: a copy may share resources with the original
    elif isinstance(base, AsyncVectorEnv) and getattr(base, "env_fns", None):
        probe_new(base.env_fns[0])


def as_vector_env(env: Any, n_envs: int = 1) -> VectorEnv:
    """Coerce ``env`` to a gymnasium vector env, checked against the gymnasium API.

    Accepts:

    * an env id string: ``n_envs`` copies via :func:`make_vec_env`;
    * a gymnasium ``Env``: a one-env :class:`DummyVecEnv` around *that object*
      (``n_envs`` must be 1);
    * a gymnasium ``VectorEnv`` in any autoreset mode, used as is (``n_envs`` is
      ignored: the vector env decides), after :func:`check_vector_env`;
    * an old ``gym`` env, through ``shimmy`` (``ValueError`` if shimmy is missing).

    An env (or each env of a vector env made here) is checked as :class:`DummyVecEnv` does:
    its spaces and ``reset`` signature now, what it returns from its first ``reset()`` and
    ``step()`` when the vector env first resets (the collector does so as it is made) and
    steps (the first step of training). The env is never called by the check, so a seeded
    run is exactly the same with it. A vector env made elsewhere: :func:`check_vector_env`.

    Raises:
        ValueError: ``n_envs > 1`` with an env object; old gym without shimmy; an env whose
            observations do not fit its observation space (shape, range).
        TypeError: anything else that is not an env (the message names what was passed); an
            env that breaks the gymnasium API (spaces, ``reset``/``step`` results).
    """
    if isinstance(env, str):
        return make_vec_env(env, n_envs=n_envs)
    if isinstance(env, VectorEnv):
        check_vector_env(env)
        return env
    single = env if isinstance(env, gym.Env) else _from_old_gym(env)
    if single is None:
        raise TypeError(
            f"cannot use {env!r} (type {type(env).__module__}.{type(env).__qualname__}) as "
            "an environment; pass an env id string, a gymnasium Env, or a gymnasium VectorEnv"
        )
    if n_envs != 1:
        raise ValueError(
            f"n_envs={n_envs} needs an env id or a vector env: one env object "
            f"({single!r}) cannot be copied; use make_vec_env(...)"
        )
    return DummyVecEnv([lambda: single])
