"""Stable Baselines 2's ``VecNormalize`` statistics: read safely, applied as SB2 applied them.

SB2 agents trained with ``VecNormalize`` act correctly only on normalised observations::

    õ = clip((o − μ) / √(σ² + ε), −clip_obs, clip_obs)        (SB2: ε = 1e-8, clip_obs = 10)

SB2 saved ``μ, σ²`` (and the count) as pickled ``RunningMeanStd`` objects in
``obs_rms.pkl`` and ``ret_rms.pkl`` (the return's statistics, for rewards ``r / √(σ²_G + ε)``
clipped at ``clip_reward``), and later releases as one pickled ``VecNormalize`` in
``vecnormalize.pkl``. The rl-baselines-zoo keeps them in a folder named like the model,
beside it (``acktr/Acrobot-v1.pkl`` and ``acktr/Acrobot-v1/obs_rms.pkl``).

- :func:`load_vecnormalize` reads them with the restricted unpickler of
  :mod:`acktr_lab.safe_pickle`: nothing in them runs;
- :func:`find_vecnormalize` finds them beside a model file, as the zoo laid them out;
- :class:`SB2NormalizeObservation` and :class:`SB2VectorNormalizeObservation` apply them to
  a gymnasium env or vector env (frozen statistics, as SB2's ``VecNormalize`` with
  ``training=False``).

``ACKTR.load`` picks the statistics up itself and puts them in the policy's own observation
normalisation (the same formula with SB2's defaults), so ``predict``, ``evaluate`` and the
dashboard see normalised observations with no wrapper.

Whether SB2 normalised the observations (``norm_obs``) and rewards (``norm_reward``) is
stored in ``vecnormalize.pkl``. The older files do not store it; SB2 updated a statistics
object only when it used it, so one still at its initial count (``10⁻⁴``, never above 1) was
not used and is ignored.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import VectorEnv, VectorObservationWrapper

from acktr_lab import sb2_pickle
from acktr_lab.serialization import ModelFileError

#: The files that hold a VecNormalize's statistics, in the order they are looked for.
STATISTICS_FILES = ("vecnormalize.pkl", "obs_rms.pkl")
#: SB2's ``VecNormalize`` defaults.
SB2_CLIP_OBS = 10.0
SB2_EPSILON = 1e-8
#: A RunningMeanStd whose count never rose above this was never updated (SB2 starts at 1e-4).
_UNUSED_COUNT = 1.0


@dataclass(frozen=True)
class RunningStatistics:
    """Running mean and variance of a quantity over ``count`` samples (SB2's ``RunningMeanStd``)."""

    mean: np.ndarray
    var: np.ndarray
    count: float


@dataclass(frozen=True)
class VecNormalizeStatistics:
    """What an SB2 ``VecNormalize`` applied: ``observations`` / ``returns`` are None where it
    did not normalise them."""

    observations: RunningStatistics | None
    returns: RunningStatistics | None
    clip_obs: float = SB2_CLIP_OBS
    clip_reward: float = 10.0
    epsilon: float = SB2_EPSILON
    where: str = "VecNormalize statistics"

    def normalize(self, observations: np.ndarray) -> np.ndarray:
        """``clip((o − μ) / √(σ² + ε), −clip_obs, clip_obs)`` as float32 (SB2's formula)."""
        if self.observations is None:
            return np.asarray(observations, np.float32)
        mean, var = self.observations.mean, self.observations.var
        scaled = (np.asarray(observations, np.float64) - mean) / np.sqrt(var + self.epsilon)
        return np.clip(scaled, -self.clip_obs, self.clip_obs).astype(np.float32)


def _read(path: Path) -> bytes:
    size = path.stat().st_size
    if size > sb2_pickle.MAX_PICKLE_BYTES:
        raise ModelFileError(f"{path} is larger than the limit of {sb2_pickle.MAX_PICKLE_BYTES:,} bytes for a pickle")
    return path.read_bytes()


def _statistics(fields: dict[str, Any] | None, used: bool = True) -> RunningStatistics | None:
    if fields is None or not used:
        return None
    return RunningStatistics(fields["mean"], fields["var"], fields["count"])


def load_vecnormalize(path: str | os.PathLike[str]) -> VecNormalizeStatistics:
    """The statistics in ``path``: a folder holding ``vecnormalize.pkl`` or ``obs_rms.pkl``
    (with ``ret_rms.pkl`` where present), or one of those files.

    Raises:
        FileNotFoundError: where none of those files is.
        ModelFileError: for anything wrong with a file's content (a global it would import
            is named and refused; nothing runs).
    """
    target = Path(os.fspath(path))
    if target.is_dir():
        found = next((target / name for name in STATISTICS_FILES if (target / name).is_file()), None)
        if found is None:
            raise FileNotFoundError(f"{target} holds none of {list(STATISTICS_FILES)}")
        target = found
    elif not target.is_file():
        raise FileNotFoundError(f"no VecNormalize statistics at {target}")
    where = str(target)
    if target.name == "vecnormalize.pkl":
        fields = sb2_pickle.read_vecnormalize(_read(target), where, ModelFileError)
        return VecNormalizeStatistics(
            _statistics(fields["obs_rms"], fields["norm_obs"]),
            _statistics(fields["ret_rms"], fields["norm_reward"]),
            fields["clip_obs"],
            fields["clip_reward"],
            fields["epsilon"],
            where,
        )
    observations = sb2_pickle.read_running_mean_std(_read(target), where, ModelFileError)
    returns_path = target.with_name("ret_rms.pkl")
    returns = None
    if target.name == "obs_rms.pkl" and returns_path.is_file():
        returns = sb2_pickle.read_running_mean_std(_read(returns_path), str(returns_path), ModelFileError)
        if returns["mean"].shape != ():
            shape = returns["mean"].shape
            raise ModelFileError(f"{returns_path}: the return's statistics must be scalars, got {shape}")
    return VecNormalizeStatistics(
        _statistics(observations, observations["count"] > _UNUSED_COUNT),
        _statistics(returns, returns is not None and returns["count"] > _UNUSED_COUNT),
        where=where,
    )


def find_vecnormalize(model_path: str | os.PathLike[str]) -> Path | None:
    """The folder with a model's VecNormalize statistics, as the rl-baselines-zoo laid it out:
    ``<dir>/<model name>/`` or ``<dir>/`` itself; None where there is none."""
    model = Path(os.fspath(model_path))
    stem = model.name[: -len(model.suffix)] if model.suffix in (".zip", ".pkl") else model.name
    for folder in (model.parent / stem, model.parent):
        if folder.is_dir() and any((folder / name).is_file() for name in STATISTICS_FILES):
            return folder
    return None


def _checked(statistics: VecNormalizeStatistics, space: gym.Space) -> VecNormalizeStatistics:
    if statistics.observations is None:
        raise ValueError(f"{statistics.where}: the observations were not normalised; there is nothing to apply")
    if not isinstance(space, gym.spaces.Box) or statistics.observations.mean.shape != space.shape:
        raise ValueError(
            f"{statistics.where}: statistics of shape {statistics.observations.mean.shape} do not fit the "
            f"observation space {space}"
        )
    return statistics


def _normalized_space(space: gym.spaces.Box, clip: float) -> gym.spaces.Box:
    return gym.spaces.Box(-clip, clip, space.shape, np.float32)


class SB2NormalizeObservation(gym.ObservationWrapper):
    """An env's observations normalised with fixed SB2 ``VecNormalize`` statistics:
    ``clip((o − μ) / √(σ² + ε), −clip_obs, clip_obs)``."""

    def __init__(self, env: gym.Env, statistics: VecNormalizeStatistics) -> None:
        super().__init__(env)
        self.statistics = _checked(statistics, env.observation_space)
        self.observation_space = _normalized_space(env.observation_space, statistics.clip_obs)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return self.statistics.normalize(observation)


class SB2VectorNormalizeObservation(VectorObservationWrapper):
    """A vector env's observations normalised with fixed SB2 ``VecNormalize`` statistics
    (each env's row as :class:`SB2NormalizeObservation`)."""

    def __init__(self, env: VectorEnv, statistics: VecNormalizeStatistics) -> None:
        super().__init__(env)
        self.statistics = _checked(statistics, env.single_observation_space)
        self.single_observation_space = _normalized_space(env.single_observation_space, statistics.clip_obs)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, env.num_envs)

    def observations(self, observations: np.ndarray) -> np.ndarray:
        return self.statistics.normalize(observations)
