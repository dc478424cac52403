"""Stable Baselines 2's pickled files, read as data (:mod:`acktr_lab.safe_pickle`).

- **Model ``.pkl``** (SB2 releases before the zip format; the rl-baselines-zoo still ships
  CartPole-v1, LunarLander-v2, Acrobot-v1 and MountainCar-v0 agents in it): a pickle of
  ``(data, params)``. ``data`` holds the constructor arguments, with the policy as a
  reference to ``stable_baselines.common.policies.<Name>`` and the spaces as pickled
  ``gym.spaces`` objects; ``params`` is the list of parameter arrays in creation order.
  :func:`read_model` gives ``data`` in the zip format's shape (spaces as their readable
  fields, the policy as ``{"class": "stable_baselines.common.policies.<Name>"}``) and the
  arrays, still unnamed: their names come from the policy the data describes.
- **VecNormalize statistics**: ``obs_rms.pkl`` / ``ret_rms.pkl`` (pickled ``RunningMeanStd``:
  ``mean``, ``var``, ``count``), or ``vecnormalize.pkl`` (a pickled ``VecNormalize`` without
  its env) in later releases: :func:`read_running_mean_std`, :func:`read_vecnormalize`.

Every problem is raised as the caller's error type, naming the file.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from acktr_lab.safe_pickle import PickledObject, Reference, standard_globals, unpickle_data

#: Stable Baselines 2's policy classes with an equivalent here (of the same name).
SB2_POLICIES = ("MlpPolicy", "CnnPolicy", "MlpLstmPolicy", "MlpLnLstmPolicy", "CnnLstmPolicy", "CnnLnLstmPolicy")
#: TensorFlow activations a pickled ``policy_kwargs['act_fun']`` may name (``acktr_lab.policies.ACTIVATIONS``).
SB2_ACTIVATIONS = ("tanh", "relu", "elu", "selu", "sigmoid", "softplus", "swish", "leaky_relu")
#: The most bytes a pickle is read from (SB2's CnnPolicy models are ≈ 13 MB).
MAX_PICKLE_BYTES = 256 << 20
_GLOBALS = standard_globals({name: name for name in SB2_POLICIES}, SB2_ACTIVATIONS)
_SPACE_FIELDS = ("dtype", "shape", "low", "high", "n", "nvec")


def is_pickle(raw: bytes) -> bool:
    """Whether ``raw`` starts as a pickle of protocol 2 to 5 does."""
    return len(raw) >= 2 and raw[0] == 0x80 and 2 <= raw[1] <= 5


def _describe(value: Any) -> str:
    if isinstance(value, PickledObject | Reference):
        return value.kind
    return type(value).__name__


def read_model(raw: bytes, where: str, error: type[ValueError]) -> tuple[dict[str, Any], list[np.ndarray]]:
    """``(data, arrays)`` of an SB2 model ``.pkl``: ``data`` as an SB2 zip's ``data`` entry reads."""
    content = unpickle_data(raw, _GLOBALS, error, where)
    if not (isinstance(content, tuple) and len(content) == 2 and isinstance(content[0], dict)):
        raise error(f"{where}: a Stable Baselines 2 .pkl holds a tuple (data, params), this one a {_describe(content)}")
    data, params = content
    if not isinstance(params, list) or not all(isinstance(a, np.ndarray) for a in params):
        raise error(f"{where}: params must be a list of arrays, got {_describe(params)}")
    fields: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise error(f"{where}: data keys must be strings, got {key!r}")
        try:
            fields[key] = _field(key, value)
        except ValueError as problem:
            raise error(f"{where}: {key}: {problem}") from problem
    return fields, params


def _field(key: str, value: Any) -> Any:
    """One ``data`` value as the zip format holds it (JSON-like)."""
    if isinstance(value, Reference):
        if value.kind == "policy" and key == "policy":
            return {"class": f"stable_baselines.common.policies.{value.name}"}
        if value.kind == "activation" and key == "act_fun":
            return value.name
        raise ValueError(f"a reference to {value.kind} {value.name!r} is not expected here")
    if isinstance(value, PickledObject):
        if key in ("observation_space", "action_space") and value.kind.startswith("gym.spaces."):
            return _space_fields(value)
        raise ValueError(f"a pickled {value.kind} is not expected here")
    if isinstance(value, dict):
        return {k: _field(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_field(key, v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray | np.dtype | bytes):
        raise ValueError(f"a {type(value).__name__} is not expected here")
    return value


def _space_fields(space: PickledObject) -> dict[str, Any]:
    """A pickled gym space's state as the zip format's readable space fields."""
    if not isinstance(space.state, dict):
        raise ValueError(f"the pickled {space.kind} has no readable state")
    out: dict[str, Any] = {":type:": f"<class '{space.kind}'>"}
    for name in _SPACE_FIELDS:
        if name not in space.state:
            continue
        value = space.state[name]
        if isinstance(value, np.dtype):
            value = value.name
        elif isinstance(value, np.ndarray):
            if value.dtype.kind not in "biuf":
                raise ValueError(f"the space's {name} must be numbers, got {value.dtype}")
            value = value.tolist()
        elif isinstance(value, tuple):
            value = [int(k) if isinstance(k, np.integer) else k for k in value]
        elif isinstance(value, np.generic):
            value = value.item()
        out[name] = value
    return out


def _statistics_of(record: Any, where: str, error: type[ValueError]) -> dict[str, Any]:
    """``{"mean", "var", "count"}`` of a pickled ``RunningMeanStd``, each checked."""
    if not isinstance(record, PickledObject) or record.kind != "RunningMeanStd":
        raise error(f"{where}: expected a pickled RunningMeanStd, got {_describe(record)}")
    if not isinstance(record.state, dict):
        raise error(f"{where}: the pickled RunningMeanStd's state is a {type(record.state).__name__}, not a dict")
    state = record.state
    missing = [k for k in ("mean", "var", "count") if k not in state]
    if missing:
        raise error(f"{where}: the RunningMeanStd is missing {missing}")
    try:
        mean, var = (np.asarray(state[k]) for k in ("mean", "var"))
    except ValueError as problem:  # a ragged list
        raise error(f"{where}: the statistics are not arrays of numbers ({problem})") from problem
    count = state["count"]
    for name, values in (("mean", mean), ("var", var)):
        if values.dtype.kind not in "iuf" or not np.all(np.isfinite(values)):
            raise error(f"{where}: the statistics' {name} must be finite numbers")
    if mean.shape != var.shape:
        raise error(f"{where}: the mean's shape {mean.shape} differs from the variance's {var.shape}")
    if np.any(var < 0):
        raise error(f"{where}: the variance is negative")
    if isinstance(count, bool) or not isinstance(count, int | float | np.number) or not math.isfinite(float(count)):
        raise error(f"{where}: the count must be a finite number, got {str(count)[:40]}")
    if float(count) <= 0:
        raise error(f"{where}: the count must be positive, got {float(count)}")
    return {"mean": mean.astype(np.float64), "var": var.astype(np.float64), "count": float(count)}


def read_running_mean_std(raw: bytes, where: str, error: type[ValueError]) -> dict[str, Any]:
    """``{"mean", "var", "count"}`` of SB2's ``obs_rms.pkl`` / ``ret_rms.pkl``."""
    return _statistics_of(unpickle_data(raw, _GLOBALS, error, where), where, error)


def read_vecnormalize(raw: bytes, where: str, error: type[ValueError]) -> dict[str, Any]:
    """The settings and statistics of SB2's ``vecnormalize.pkl`` (a pickled ``VecNormalize``).

    Returns ``{"obs_rms", "ret_rms", "norm_obs", "norm_reward", "clip_obs", "clip_reward",
    "epsilon"}``, SB2's defaults for any setting the file lacks.
    """
    record = unpickle_data(raw, _GLOBALS, error, where)
    if not isinstance(record, PickledObject) or record.kind != "VecNormalize":
        raise error(f"{where}: expected a pickled VecNormalize, got {_describe(record)}")
    if not isinstance(record.state, dict):
        raise error(f"{where}: the pickled VecNormalize's state is a {type(record.state).__name__}, not a dict")
    state = record.state
    out: dict[str, Any] = {}
    for name in ("obs_rms", "ret_rms"):
        out[name] = _statistics_of(state[name], f"{where} ({name})", error) if name in state else None
    for name, default in (("norm_obs", True), ("norm_reward", True)):
        value = state.get(name, default)
        if not isinstance(value, bool):
            raise error(f"{where}: {name} must be a bool, got {str(value)[:40]}")
        out[name] = value
    for name, default in (("clip_obs", 10.0), ("clip_reward", 10.0), ("epsilon", 1e-8)):
        value = state.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < float(value) < math.inf:
            raise error(f"{where}: {name} must be a positive number, got {str(value)[:40]}")
        out[name] = float(value)
    return out
