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
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv

EnvFactory = Callable[[], gym.Env]


class DummyVecEnv(SyncVectorEnv):
    """gymnasium's ``SyncVectorEnv`` (envs stepped in turn, in this process), same-step autoreset.

    Accepts every ``SyncVectorEnv`` keyword; ``autoreset_mode`` defaults to
    ``AutoresetMode.SAME_STEP``.
    """

    def __init__(self, env_fns: Sequence[EnvFactory], **kwargs: Any) -> None:
        kwargs.setdefault("autoreset_mode", AutoresetMode.SAME_STEP)
        super().__init__(env_fns, **kwargs)


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
    """

    def __init__(self, env_fns: Sequence[EnvFactory], **kwargs: Any) -> None:
        kwargs.setdefault("autoreset_mode", AutoresetMode.SAME_STEP)
        kwargs.setdefault("context", _default_context())
        super().__init__(env_fns, **kwargs)


def _env_factory(
    env_id: str | Callable[..., gym.Env],
    rank: int,
    seed: int | None,
    env_kwargs: dict[str, Any],
    wrapper_class: Callable[[gym.Env], gym.Env] | None,
) -> EnvFactory:
    def make() -> gym.Env:
        env = gym.make(env_id, **env_kwargs) if isinstance(env_id, str) else env_id(**env_kwargs)
        if wrapper_class is not None:
            env = wrapper_class(env)
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
    ``reset``.
    """
    if n_envs < 1:
        raise ValueError(f"n_envs must be at least 1, got {n_envs}")
    kwargs = dict(env_kwargs or {})
    fns = [_env_factory(env_id_or_callable, i, seed, kwargs, wrapper_class) for i in range(n_envs)]
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
            f"{env!r} is an old `gym` env; install `shimmy` (pip install 'shimmy[gym-v26]') "
            "to use it through gymnasium, or use a gymnasium env"
        ) from None
    version = str(getattr(old_gym, "__version__", "0.26"))
    major_minor = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if major_minor < (0, 26):
        return shimmy.GymV22CompatibilityV0(env=env)
    return shimmy.GymV26CompatibilityV0(env=env)


def as_vector_env(env: Any, n_envs: int = 1) -> VectorEnv:
    """Coerce ``env`` to a gymnasium vector env.

    Accepts:

    * an env id string: ``n_envs`` copies via :func:`make_vec_env`;
    * a gymnasium ``Env``: a one-env :class:`DummyVecEnv` around *that object*
      (``n_envs`` must be 1);
    * a gymnasium ``VectorEnv`` in any autoreset mode, used as is (``n_envs`` is
      ignored: the vector env decides);
    * an old ``gym`` env, through ``shimmy`` (``ValueError`` if shimmy is missing).

    Raises:
        ValueError: ``n_envs > 1`` with an env object; old gym without shimmy.
        TypeError: anything else (the message names what was passed).
    """
    if isinstance(env, str):
        return make_vec_env(env, n_envs=n_envs)
    if isinstance(env, VectorEnv):
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
