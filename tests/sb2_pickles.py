"""Writing pickles in Stable Baselines 2's layout without Stable Baselines 2 or gym installed.

A pickle names a global by module and name; :class:`Global` writes any such name,
:class:`Instance` an object of a named class with a given state (``REDUCE``, then ``BUILD``),
as a pickle of an SB2 ``Box`` or ``RunningMeanStd`` does, and :class:`Raw` opcodes as they are
(the hostile pickles of ``test_sb2_pickle_hardening.py``). NumPy arrays pickle
as they do in NumPy.
"""

from __future__ import annotations

import io
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np


@dataclass(frozen=True)
class Global:
    """The global ``module.name``, written by name: nothing is imported to write it."""

    module: str
    name: str

    def __call__(self, *args: Any) -> None:  # the pickler only checks that a reduce function is callable
        raise NotImplementedError


@dataclass(frozen=True, eq=False)
class Instance:
    """``cls(*args)`` then, unless ``state`` is None, ``BUILD`` with ``state``: how SB2's objects pickle."""

    cls: Global
    state: Any = None
    args: tuple[Any, ...] = ()


@dataclass(frozen=True)
class Raw:
    """Opcodes written as they are, where a pickler cannot express them. They must leave exactly
    one value on the stack and use no memo entry a pickler's own opcodes could also use."""

    opcodes: bytes


class _Writer(pickle._Pickler):  # the Python pickler: its dispatch table can be extended
    dispatch: ClassVar[dict[type, Any]] = dict(pickle._Pickler.dispatch)

    def _save_global_name(self, obj: Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
        self.memoize(obj)

    def _save_raw(self, obj: Raw) -> None:
        self.write(obj.opcodes)

    dispatch[Global] = _save_global_name
    dispatch[Raw] = _save_raw

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, Instance):
            return obj.cls, obj.args, obj.state
        return NotImplemented


def dumps(value: Any, protocol: int = 4) -> bytes:
    """``value`` pickled; globals keep the names given (no Python 2 renaming)."""
    buffer = io.BytesIO()
    _Writer(buffer, protocol=protocol, fix_imports=False).dump(value)
    return buffer.getvalue()


def box(low: np.ndarray, high: np.ndarray, dtype: type = np.float32) -> Instance:
    low, high = np.asarray(low, dtype), np.asarray(high, dtype)
    state = {"low": low, "high": high, "shape": low.shape, "dtype": np.dtype(dtype)}
    return Instance(Global("gym.spaces.box", "Box"), state)


def cartpole_box() -> Instance:
    """CartPole-v1's observation space."""
    space = gym.make("CartPole-v1").observation_space
    return box(space.low, space.high)


def discrete(n: int) -> Instance:
    return Instance(Global("gym.spaces.discrete", "Discrete"), {"n": n, "shape": (), "dtype": np.dtype(np.int64)})


def running_mean_std(mean: np.ndarray, var: np.ndarray, count: float) -> Instance:
    state = {"mean": np.asarray(mean, np.float64), "var": np.asarray(var, np.float64), "count": count}
    return Instance(Global("stable_baselines.common.running_mean_std", "RunningMeanStd"), state)


def vec_normalize(obs: Instance, ret: Instance, **settings: Any) -> Instance:
    state = {"obs_rms": obs, "ret_rms": ret, "clip_obs": 10.0, "clip_reward": 10.0, "epsilon": 1e-8}
    state.update({"norm_obs": True, "norm_reward": True, "gamma": 0.99, "training": False, "old_obs": None})
    state.update(settings)
    return Instance(Global("stable_baselines.common.vec_env.vec_normalize", "VecNormalize"), state)


#: The plain fields of SB2's ACKTR ``data`` in the ``.pkl`` era (its defaults, as the zoo's files hold them).
ACKTR_PKL_FIELDS: dict[str, Any] = {
    "gamma": 0.99,
    "nprocs": 1,
    "n_steps": 20,
    "vf_coef": 0.25,
    "ent_coef": 0.01,
    "vf_fisher_coef": 1.0,
    "max_grad_norm": 0.5,
    "learning_rate": 0.25,
    "kfac_clip": 0.001,
    "lr_schedule": "linear",
    "verbose": 0,
}


def model_data(policy: str, observation_space: Instance, action_space: Instance, **fields: Any) -> dict[str, Any]:
    """``data`` as SB2's ACKTR ``save`` wrote it (the 2.x ``.pkl`` era's fields)."""
    data: dict[str, Any] = {
        **ACKTR_PKL_FIELDS,
        "policy": Global("stable_baselines.common.policies", policy),
        "observation_space": observation_space,
        "action_space": action_space,
        "n_envs": 4,
        "_vectorize_action": False,
    }
    data.update(fields)
    return data


def write_model(path: Path, data: dict[str, Any], params: list[np.ndarray]) -> Path:
    path.write_bytes(dumps((data, params)))
    return path


def mlp_parameters(n_inputs: int, n_outputs: int, gaussian: bool, seed: int = 0) -> list[np.ndarray]:
    """SB2 MlpPolicy parameters in creation order: pi_fc0, vf_fc0, pi_fc1, vf_fc1, vf, pi,
    (pi/logstd), q, each ``w`` then ``b``."""
    rng = np.random.default_rng(seed)

    def dense(rows: int, cols: int) -> list[np.ndarray]:
        return [rng.normal(0, 0.5, (rows, cols)).astype(np.float32), rng.normal(0, 0.1, cols).astype(np.float32)]

    params = dense(n_inputs, 64) + dense(n_inputs, 64) + dense(64, 64) + dense(64, 64) + dense(64, 1)
    params += dense(64, n_outputs)
    if gaussian:
        params.append(rng.normal(-0.5, 0.1, (1, n_outputs)).astype(np.float32))
    return params + dense(64, n_outputs)
