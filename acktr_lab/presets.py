"""Presets: per-environment settings, from Stable Baselines 2's rl-baselines-zoo.

Each :class:`Preset` is the zoo's ACKTR entry (``hyperparams/acktr.yml`` @ff84f39) moved to
today's gymnasium ids (``-v2`` Box2D envs are ``-v3``, ``Pendulum-v0`` is ``-v1``, Atari
``*NoFrameskip-v4`` is ``ALE/*-v5`` with gymnasium's ``AtariPreprocessing`` and a stack of
4 frames). The zoo's ``normalize: true`` becomes observation and return normalisation
(:mod:`acktr_lab.normalization`). Where this project changed a zoo setting, ``changes``
says what and why. ``zoo_score`` is the published SB2 ACKTR result
(``benchmark.md`` of the same commit) and ``zoo_timesteps`` its training budget.

Presets may also be read from a YAML file with the zoo's keys (:func:`preset_from_yaml`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym

from acktr_lab import hyperparameters as hp
from acktr_lab.vec_env import SubprocVecEnv, make_vec_env

#: Keys of a zoo entry that are not ACKTR hyperparameters.
_ZOO_KEYS = ("n_envs", "n_timesteps", "policy", "normalize")
#: Run settings a YAML file may not choose (the env count is a zoo key; the rest are the caller's).
_NOT_FROM_YAML = ("n_envs", "verbose", "tensorboard_log", "full_tensorboard_log", "seed")
#: What a YAML file may set besides those keys: ACKTR's constructor arguments, from their one definition.
_ACKTR_KEYS = (*(name for name in hp.HYPERPARAMETERS if name not in _NOT_FROM_YAML), "policy_kwargs")


def atari_wrapper(env: gym.Env) -> gym.Env:
    """gymnasium's Atari pipeline: no-op starts, frame skip 4, 84×84 greyscale, a stack of 4
    frames (channel-first ``(4, 84, 84)`` uint8; CnnPolicy reads it as it is)."""
    env = gym.wrappers.AtariPreprocessing(env, noop_max=30, frame_skip=4, screen_size=84, terminal_on_life_loss=False)
    return gym.wrappers.FrameStackObservation(env, 4)


def _register_atari() -> None:
    try:
        import ale_py
    except ImportError:
        raise ValueError(
            "Atari presets need ale-py (and opencv-python-headless): pip install 'acktr_lab[atari]'"
        ) from None
    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # no start-up banner on stderr per env
    gym.register_envs(ale_py)


@dataclass(frozen=True)
class Preset:
    """How to train ACKTR on one env: its settings, budget and the score to compare with."""

    env_id: str
    n_timesteps: int
    n_envs: int = 1
    policy: str = "MlpPolicy"
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)
    normalize: bool = False
    atari: bool = False
    zoo_score: float | None = None
    zoo_timesteps: int | None = None
    changes: str = ""

    def acktr_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``ACKTR(policy, env, **kwargs)`` (``n_envs`` excluded)."""
        kwargs = dict(self.hyperparameters)
        if self.normalize:
            kwargs.setdefault("normalize_returns", True)
            kwargs.setdefault("normalize_observations", not self.atari)
        return kwargs

    def make_env(
        self, n_envs: int | None = None, seed: int | None = None, *, subprocesses: bool = False
    ) -> gym.vector.VectorEnv:
        """``n_envs`` (default: the preset's) copies of the env, with the Atari pipeline if any."""
        env_kwargs: dict[str, Any] = {}
        wrapper: Callable[[gym.Env], gym.Env] | None = None
        if self.atari:
            _register_atari()
            env_kwargs = {"frameskip": 1}  # AtariPreprocessing skips frames itself
            wrapper = atari_wrapper
        return make_vec_env(
            self.env_id,
            n_envs=n_envs or self.n_envs,
            seed=seed,
            env_kwargs=env_kwargs,
            wrapper_class=wrapper,
            **({"vec_env_cls": SubprocVecEnv} if subprocesses else {}),
        )

    def make_eval_env(self, **kwargs: Any) -> gym.Env:
        """One env as ``evaluate`` and ``enjoy`` use it (``render_mode`` etc. in ``kwargs``)."""
        if self.atari:
            _register_atari()
            return atari_wrapper(gym.make(self.env_id, frameskip=1, **kwargs))
        return gym.make(self.env_id, **kwargs)

    def with_overrides(self, **values: Any) -> Preset:
        """This preset with zoo-style keys changed (``n_envs``, ``n_timesteps``, ``policy``,
        ``normalize``) and ACKTR hyperparameters set; unknown keys are refused."""
        return replace(self, **_split_settings(values, self.hyperparameters, where="the settings given"))


PRESETS: dict[str, Preset] = {
    preset.env_id: preset
    for preset in (
        Preset(
            "CartPole-v1",
            150_000,
            n_envs=8,
            hyperparameters={"normalize_returns": True},
            zoo_score=487.6,
            zoo_timesteps=1_000_000,
            changes=(
                "return normalisation and 150k steps instead of 1M: without it the critic cannot follow "
                "returns of ≈ 100 under the joint trust region, and the policy reaches 500 and collapses"
            ),
        ),
        Preset(
            "Acrobot-v1",
            500_000,
            n_envs=16,
            hyperparameters={"ent_coef": 0.0},
            normalize=True,
            zoo_score=-91.3,
            zoo_timesteps=500_000,
        ),
        Preset(
            "MountainCar-v0",
            1_000_000,
            n_envs=16,
            hyperparameters={"ent_coef": 0.0},
            normalize=True,
            zoo_score=-111.9,
            zoo_timesteps=1_000_000,
        ),
        Preset(
            "Pendulum-v1",
            2_000_000,
            n_envs=4,
            hyperparameters={
                "ent_coef": 0.0,
                "gamma": 0.99,
                "n_steps": 16,
                "learning_rate": 0.06,
                "lr_schedule": "constant",
                "normalize_returns": True,
                "gae_lambda": 0.95,
            },
            zoo_score=-213.8,
            zoo_timesteps=2_000_000,
            changes=(
                "return normalisation: with raw rewards (returns ≈ −600) nothing improves for ≈ 1.4M steps; "
                "GAE with λ = 0.95 instead of n-step returns: seeds 0-2 then end at −136.7, −154.2 and −159.7 "
                "instead of −143.6, −367.9 and −211.0 (benchmarks/results/pendulum/gae.md)"
            ),
        ),
        Preset(
            "LunarLander-v3",
            1_000_000,
            n_envs=8,
            hyperparameters={"n_steps": 128, "gamma": 0.99, "lr_schedule": "constant"},
            normalize=True,
            zoo_score=96.8,
            zoo_timesteps=1_000_000,
            changes=(
                "observation and return normalisation: seeds 0-2 then end at 234.7, 227.1 and 157.6 "
                "instead of 198.3, 96.1 and 9.3 (benchmarks/results/lunarlander/normalize.md)"
            ),
        ),
        Preset(
            "LunarLanderContinuous-v3",
            5_000_000,
            n_envs=8,
            hyperparameters={
                "gamma": 0.999,
                "n_steps": 16,
                "ent_coef": 0.0,
                "learning_rate": 0.06,
                "lr_schedule": "constant",
            },
            normalize=True,
            zoo_score=240.0,
            zoo_timesteps=5_000_000,
            changes=(
                "γ = 0.999 instead of 0.99 (as rl-baselines3-zoo's PPO on LunarLander): with 0.99 the policy "
                "lets a strong initial drift carry it off the pad and crashes there, and seeds 1 and 2 ended at "
                "238.3 and 226.8 (benchmarks/results/lunarlander_continuous/gamma.md)"
            ),
        ),
        Preset(
            "MountainCarContinuous-v0",
            300_000,
            n_envs=16,
            hyperparameters={"ent_coef": 0.0},
            normalize=True,
            zoo_score=93.8,
            zoo_timesteps=300_000,
        ),
        Preset(
            "BipedalWalker-v3",
            5_000_000,
            n_envs=8,
            hyperparameters={
                "ent_coef": 0.0,
                "lr_schedule": "constant",
                "learning_rate": 0.298,
                "n_steps": 32,
                "gamma": 0.98,
                "vf_coef": 0.38,
            },
            normalize=True,
            zoo_score=292.4,
            zoo_timesteps=5_000_000,
        ),
        *(
            Preset(
                f"ALE/{game}-v5",
                5_000_000,
                n_envs=32,
                policy="CnnPolicy",
                hyperparameters={"lr_schedule": "linear", "async_eigen_decomp": True},
                atari=True,
                zoo_score=score,
                zoo_timesteps=5_000_000,
            )
            for game, score in (("Pong", 19.2), ("Breakout", 448.5))
        ),
    )
}


def get_preset(env_id: str) -> Preset:
    """The preset for ``env_id``; an env without one trains with ACKTR's defaults on 1 env."""
    if env_id in PRESETS:
        return PRESETS[env_id]
    if env_id.startswith("ALE/"):
        return Preset(
            env_id, 5_000_000, n_envs=32, policy="CnnPolicy", hyperparameters={"async_eigen_decomp": True}, atari=True
        )
    return Preset(env_id, 100_000)


def _split_settings(values: Mapping[str, Any], base: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(values) - set(_ZOO_KEYS) - set(_ACKTR_KEYS))
    if unknown:
        raise ValueError(
            f"unknown setting(s) {unknown} in {where}; use {list(_ZOO_KEYS)} or ACKTR's arguments {list(_ACKTR_KEYS)}"
        )
    out: dict[str, Any] = {k: values[k] for k in _ZOO_KEYS if k in values}
    for key in ("n_envs", "n_timesteps"):
        if key in out:
            value = out[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value) or value < 1:
                raise ValueError(f"{key} in {where} must be a positive integer, got {value!r}")
            out[key] = int(value)
    if "normalize" in out and not isinstance(out["normalize"], bool):
        raise ValueError(f"normalize in {where} must be true or false, got {out['normalize']!r}")
    hyperparameters = {k: v for k, v in values.items() if k in _ACKTR_KEYS}
    if hyperparameters:
        out["hyperparameters"] = {**base, **hyperparameters}
    return out


def preset_from_yaml(path: str | Path, env_id: str) -> Preset:
    """A preset from a YAML file with the zoo's keys: either one entry (``n_envs: 8 …``) or a
    mapping from env ids to entries, as the zoo's ``acktr.yml``. Values only: Python
    expressions (the zoo's ``policy_kwargs: "dict(...)"``) are refused, never evaluated."""
    from acktr_lab.yaml_values import MAX_YAML_BYTES, load_yaml_values

    try:
        with open(path, "rb") as file:
            text = file.read(MAX_YAML_BYTES + 1).decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read the settings file {path}: {error}") from error
    content = load_yaml_values(text, f"the settings file {path}")
    if isinstance(content, dict) and env_id in content and isinstance(content[env_id], dict):
        content = content[env_id]
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} must hold a mapping of settings (or env ids to settings), got {type(content).__name__}"
        )
    if isinstance(content.get("policy_kwargs"), str):
        raise ValueError(f"policy_kwargs in {path} must be a mapping, not a Python expression")
    base = get_preset(env_id)
    settings = _split_settings(content, {}, where=str(path))
    return replace(base, hyperparameters=settings.pop("hyperparameters", {}), **settings)
