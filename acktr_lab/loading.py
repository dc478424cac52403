"""A model from a file's content: every field checked first, every problem a ``ModelFileError``.

:func:`load_into` is the body of :meth:`acktr_lab.ACKTR.load`. What a file holds is read by
:func:`acktr_lab.serialization.load_model` (bounded work, no pickle); here it is checked
field by field against what the model needs before anything is built:

- hyperparameters against their definitions (:mod:`acktr_lab.hyperparameters`); machine
  settings (``tensorboard_log``, ``full_tensorboard_log``, ``n_cpu_tf_sess``) are never
  taken from a file: a file must not choose where ``learn()`` writes or how many threads run;
- the policy's name and ``policy_kwargs``, and the spaces (sizes bounded);
- the network it describes is built under a parameter budget equal to the numbers the file
  holds, so a file cannot make the library allocate more than it carries;
- parameters, optimizer state, random generator and normaliser statistics: dtype, shape,
  finiteness, and the float32 range of what is cast to float32.

The arguments a caller passes to ``load`` are checked as in the constructor and raise
``ValueError`` (their problems are the caller's, not the file's).
"""

from __future__ import annotations

import inspect
import json
import reprlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import gymnasium as gym

from acktr_lab import hyperparameters as hp
from acktr_lab.kfac import parameter_budget
from acktr_lab.policies import POLICIES
from acktr_lab.preprocessing import space_from_json
from acktr_lab.report import Edit
from acktr_lab.safe_archive import float32_overflow
from acktr_lab.serialization import MAX_MODEL_BYTES, ModelFile, ModelFileError
from acktr_lab.vecnormalize import SB2_CLIP_OBS, SB2_EPSILON, VecNormalizeStatistics

#: The model class (``acktr_lab.ACKTR``; not imported here: it imports this module).
ACKTR = TypeVar("ACKTR")

#: Errors that building from checked fields can still raise for a file's content.
_BUILD_ERRORS = (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError, MemoryError)
#: ``policy_kwargs`` a policy builds itself from the model, not from the file.
_NOT_FROM_FILE = ("seed", "dtype", "normalize_observations", "observation_space", "action_space")
_MAX_TIMESTEPS = 2**62


@dataclass(frozen=True)
class ModelSpec:
    """What a file says to build: the policy, its arguments, the hyperparameters, the spaces."""

    policy_name: str
    policy_kwargs: dict[str, Any] | None
    hyperparameters: dict[str, Any]
    observation_space: gym.Space
    action_space: gym.Space


def file_error(file: ModelFile, field: str, problem: object) -> ModelFileError:
    return ModelFileError(f"{file.where}: {field}: {problem}")


def load_into(
    cls: type[ACKTR],
    file: ModelFile,
    custom_objects: Mapping[str, Any] | None,
    overrides: dict[str, Any],
    statistics: VecNormalizeStatistics | None = None,
) -> ACKTR:
    """A model with no env, built from ``file`` with ``overrides`` (the caller's ``load`` kwargs)
    and, for a Stable Baselines 2 file, the ``VecNormalize`` ``statistics`` it was trained with."""
    unknown = sorted(set(overrides) - set(hp.HYPERPARAMETERS) - {"policy_kwargs", "nprocs"})
    if unknown:
        raise ValueError(
            f"load() got keyword argument(s) {unknown} that are not ACKTR hyperparameters "
            f"(the loaded model's settings may be changed with any of {sorted(hp.HYPERPARAMETERS)} or policy_kwargs)"
        )
    for name, value in overrides.items():
        if name in hp.HYPERPARAMETERS:
            hp.validate(name, value)
    if overrides.get("policy_kwargs") is not None and not isinstance(overrides["policy_kwargs"], Mapping):
        raise ValueError(f"policy_kwargs must be a dict, got {overrides['policy_kwargs']!r}")
    spec = sb2_spec(file, overrides) if file.source == "stable_baselines2" else spec_of(file, custom_objects, overrides)
    if statistics is not None:
        for name, used in (
            ("normalize_observations", statistics.observations is not None),
            ("normalize_returns", statistics.returns is not None),
        ):
            spec.hyperparameters.setdefault(name, used)
    model = build(cls, spec, file)
    if file.source == "stable_baselines2":
        if statistics is not None:
            apply_statistics(model, statistics)
        return model
    restore_state(model, file)
    return model


def spec_of(file: ModelFile, custom_objects: Mapping[str, Any] | None, overrides: dict[str, Any]) -> ModelSpec:
    """The :class:`ModelSpec` of one of our files, every field checked."""
    data = file.data
    for key in ("hyperparameters", "policy", "observation_space", "action_space"):
        if key not in data:
            raise file_error(file, key, "missing; the file is incomplete or from another program")
    stored = data["hyperparameters"]
    if not isinstance(stored, dict):
        raise file_error(file, "hyperparameters", f"must be a dict, got {type(stored).__name__}")
    callables = data.get("callables", [])
    if not isinstance(callables, list) or not all(isinstance(name, str) for name in callables):
        raise file_error(file, "callables", "must be a list of hyperparameter names")
    custom = dict(custom_objects or {})
    for name in callables:
        definition = hp.HYPERPARAMETERS.get(name)
        if definition is None or not definition.callable_ok:
            raise file_error(file, "callables", f"names {name[:50]!r}, which cannot be a callable")
        if name not in custom and name not in overrides:
            described = stored.get(name, {}).get("callable") if isinstance(stored.get(name), dict) else None
            raise ValueError(f"{name} was a callable ({described}); pass it back with custom_objects={{'{name}': ...}}")
    hyper = file_hyperparameters(file, {k: v for k, v in stored.items() if k not in custom and k not in overrides})
    hyper.update(custom)
    policy_name = data["policy"]
    if not isinstance(policy_name, str) or policy_name not in POLICIES:
        raise file_error(file, "policy", f"unknown policy {str(policy_name)[:100]!r}; known: {sorted(POLICIES)}")
    policy_kwargs = check_policy_kwargs(file, policy_name, data.get("policy_kwargs", {}))
    if overrides.get("policy_kwargs") is not None and dict(overrides["policy_kwargs"]) != (policy_kwargs or {}):
        raise ValueError(
            f"policy_kwargs differ from the saved ones ({policy_kwargs}); the architecture cannot change on load"
        )
    hyper.update({k: v for k, v in overrides.items() if k != "policy_kwargs"})
    return ModelSpec(policy_name, policy_kwargs, hyper, *spaces_of(file))


def sb2_spec(file: ModelFile, overrides: dict[str, Any]) -> ModelSpec:
    """The :class:`ModelSpec` of a Stable Baselines 2 ACKTR zip (its readable fields only)."""
    data = file.data
    policy_info = data.get("policy", {})
    if isinstance(policy_info, dict) and isinstance(policy_info.get("class"), str):  # from a .pkl
        policy_name = policy_info["class"].rsplit(".", 1)[-1]
        policy_name = policy_name if policy_name in POLICIES else None
        text = policy_info["class"]
    else:
        text = json.dumps(policy_info)
        names = sorted(POLICIES, key=len, reverse=True)  # CnnLnLstmPolicy before CnnPolicy ...
        policy_name = next((name for name in names if f"{name}." in text or f"'{name}'" in text), None)
    if policy_name is None:
        raise file_error(file, "policy", f"unsupported Stable Baselines 2 policy: {text[:200]}")
    stored = {
        name: data[field]
        for field, name in hp.SB2_FIELDS.items()
        if field in data and data[field] is not None and name not in overrides
    }
    hyper = file_hyperparameters(file, stored)
    hyper.update({k: v for k, v in overrides.items() if k != "policy_kwargs"})
    policy_kwargs = check_policy_kwargs(file, policy_name, data.get("policy_kwargs") or None)
    return ModelSpec(policy_name, policy_kwargs, hyper, *spaces_of(file))


def file_hyperparameters(file: ModelFile, stored: Mapping[str, Any]) -> dict[str, Any]:
    """A file's hyperparameters, each checked against its definition; machine settings dropped."""
    hyper = {}
    for name, value in stored.items():
        definition = hp.HYPERPARAMETERS.get(name)
        if definition is None:
            raise file_error(file, f"hyperparameters.{name}", "unknown hyperparameter")
        if not definition.from_file:
            continue
        try:
            hyper[name] = definition.validate(value)
        except (ValueError, TypeError, OverflowError) as error:
            raise file_error(file, f"hyperparameters.{name}", error) from error
    return hyper


def check_policy_kwargs(file: ModelFile, policy_name: str, value: Any) -> dict[str, Any] | None:
    """``policy_kwargs`` from a file: a dict of the policy's own keyword arguments."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise file_error(file, "policy_kwargs", f"must be a dict, got {type(value).__name__}")
    if not all(isinstance(k, str) for k in value):
        raise file_error(file, "policy_kwargs", "must have argument names (strings) as keys")
    accepted = _keyword_arguments(POLICIES[policy_name])
    unknown = sorted(k for k in value if k not in accepted or k in _NOT_FROM_FILE)
    if unknown:
        raise file_error(file, "policy_kwargs", f"{unknown} are not {policy_name} arguments a file may set")
    if "act_fun" in value and not isinstance(value["act_fun"], str):
        raise file_error(file, "policy_kwargs.act_fun", f"must be an activation's name, got {value['act_fun']!r}")
    for key in ("net_arch", "layers"):
        if key in value and _entries_beyond(value[key], MAX_FILE_LAYERS):
            raise file_error(
                file,
                f"policy_kwargs.{key}",
                f"describes more than {MAX_FILE_LAYERS} layers ({reprlib.repr(value[key])}); a file may describe "
                f"at most {MAX_FILE_LAYERS}, since each is built (seconds per thousand) before its parameters are read",
            )
    return dict(value)


#: The most layers a file's ``net_arch``/``layers`` may describe.
MAX_FILE_LAYERS = 64


def _entries_beyond(value: Any, limit: int) -> bool:
    """Whether the lists and dicts in ``value`` hold more than ``limit`` entries in all (a walk
    that stops as soon as they do)."""
    count, pending = 0, [value]
    while pending:
        item = pending.pop()
        if isinstance(item, list | tuple):
            count += len(item)
            pending.extend(item[: limit + 1])
        elif isinstance(item, dict):
            count += len(item)
            pending.extend(list(item.values())[: limit + 1])
        if count > limit:
            return True
    return False


def _keyword_arguments(policy_class: type) -> set[str]:
    names: set[str] = set()
    for klass in policy_class.__mro__:
        init = klass.__dict__.get("__init__")
        if init is not None:
            names |= {p.name for p in inspect.signature(init).parameters.values() if p.kind is p.KEYWORD_ONLY}
    return names


def spaces_of(file: ModelFile) -> tuple[gym.Space, gym.Space]:
    spaces = []
    for key in ("observation_space", "action_space"):
        if key not in file.data:
            raise file_error(file, key, "missing; the file is incomplete or from another program")
        try:
            spaces.append(space_from_json(file.data[key]))
        except ValueError as error:
            raise file_error(file, key, error) from error
    return spaces[0], spaces[1]


def check_parameter_arrays(file: ModelFile) -> int:
    """The number of parameters the file holds, each array checked: real numbers, finite,
    within float32's range (they become float32)."""
    total = 0
    for name, array in file.parameters.items():
        if array.dtype.kind not in "iuf":
            raise file_error(file, f"parameter {name}", f"must hold real numbers, got dtype {array.dtype}")
        problem = float32_overflow(array)
        if problem is not None:
            raise file_error(file, f"parameter {name}", problem)
        total += int(array.size)
    return total


def build(cls: type[ACKTR], spec: ModelSpec, file: ModelFile) -> ACKTR:
    """The model the file describes, with the file's parameters; nothing bigger than the file."""
    budget = check_parameter_arrays(file)
    try:
        model = cls(
            spec.policy_name, None, policy_kwargs=spec.policy_kwargs, _init_setup_model=False, **spec.hyperparameters
        )
        model.observation_space, model.action_space = spec.observation_space, spec.action_space
        with parameter_budget(budget, max_curvature_bytes=MAX_MODEL_BYTES):
            model.setup_model()
    except _BUILD_ERRORS as error:
        raise ModelFileError(
            f"{file.where}: cannot build the {spec.policy_name} it describes "
            f"(policy_kwargs {spec.policy_kwargs}, {budget:,} parameters in the file): {error}"
        ) from error
    parameters = file.parameters
    try:
        if file.source == "stable_baselines2":
            if file.positional:
                parameters = name_sb2_parameters(model.policy, list(parameters.values()))
            parameters = model.policy.parameters_from_sb2(parameters)
        model.load_parameters(parameters)
    except (*_BUILD_ERRORS, RuntimeError) as error:
        raise ModelFileError(f"{file.where}: the parameters do not fit the model: {error}") from error
    return model


def name_sb2_parameters(policy: Any, arrays: list[Any]) -> dict[str, Any]:
    """A ``.pkl``'s unnamed parameter arrays named by the policy's SB2 creation order.

    Raises:
        ValueError: listing every position whose shape differs, or the counts where they differ.
    """
    expected = policy.sb2_parameter_shapes()
    names = list(expected)
    rows = []
    for index in range(max(len(names), len(arrays))):
        name = names[index] if index < len(names) else "(none)"
        want = expected.get(name)
        got = tuple(arrays[index].shape) if index < len(arrays) else None
        if want != got:
            rows.append(f"#{index} {name}: expected {want}, the file holds {got}")
    if rows:
        raise ValueError(
            f"the file's {len(arrays)} arrays do not match the {len(names)} parameters of the "
            f"{type(policy).__name__} its spaces and policy_kwargs describe: " + "; ".join(rows[:10])
        )
    return dict(zip(names, arrays, strict=True))


def apply_statistics(model: ACKTR, statistics: VecNormalizeStatistics) -> None:
    """An SB2 ``VecNormalize``'s statistics as the model's own normalisation statistics."""
    where = statistics.where
    if statistics.observations is not None and model.observation_normalizer is not None:
        if statistics.clip_obs != SB2_CLIP_OBS or statistics.epsilon != SB2_EPSILON:
            raise ModelFileError(
                f"{where}: clip_obs={statistics.clip_obs}, epsilon={statistics.epsilon}; the policy's own "
                f"normalisation uses SB2's defaults ({SB2_CLIP_OBS}, {SB2_EPSILON}). Load with "
                "vecnormalize=False and wrap the env in acktr_lab.vecnormalize.SB2NormalizeObservation"
            )
        observed = statistics.observations
        state = {"mean": observed.mean.reshape(-1), "var": observed.var.reshape(-1), "count": observed.count}
        try:
            model.observation_normalizer.load_state(state)
        except ValueError as error:
            space = model.observation_space
            raise ModelFileError(f"{where}: {error} (the model's observation space is {space})") from error
    if statistics.returns is not None and model.return_normalizer is not None:
        returns = statistics.returns
        try:
            model.return_normalizer.load_state(
                {"return_mean": returns.mean, "return_var": returns.var, "return_count": returns.count}
            )
        except ValueError as error:
            raise ModelFileError(f"{where}: {error}") from error


def restore_state(model: ACKTR, file: ModelFile) -> None:
    """The optimizer, random generator, counters and normaliser statistics a file holds."""
    try:
        model.learner.restore_optimizer(file.optimizer)
    except (ValueError, TypeError) as error:
        raise file_error(file, "optimizer state", error) from error
    if "generator_state" in file.extra:
        state = file.extra["generator_state"]
        expected = model.learner.generator.state
        if state.dtype.kind not in "iu" or tuple(state.shape) != tuple(expected.shape):
            raise file_error(
                file,
                "generator_state",
                f"must be {expected.dtype.name} of shape {tuple(expected.shape)}, got {state.dtype} {state.shape}",
            )
        model.learner.generator.reset(state.astype(expected.dtype.as_numpy_dtype))
    steps = file.data.get("num_timesteps", 0)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 0 <= steps <= _MAX_TIMESTEPS:
        raise file_error(file, "num_timesteps", f"must be an integer in [0, 2**62], got {str(steps)[:50]}")
    model._num_timesteps = steps
    model._edit_log = edit_log_of(file)
    env_id = file.data.get("env_id")
    model.env_id = env_id if isinstance(env_id, str) else None
    for prefix, normalizer in (
        ("return_normalizer/", model.return_normalizer),
        ("observation_normalizer/", model.observation_normalizer),
    ):
        if normalizer is None:
            continue
        state = {k[len(prefix) :]: v for k, v in file.extra.items() if k.startswith(prefix)}
        if not state:
            raise file_error(file, prefix[:-1], "the model normalises but the file holds no statistics")
        try:
            normalizer.load_state(state)
        except (ValueError, TypeError) as error:
            raise file_error(file, prefix[:-1], error) from error


def edit_log_of(file: ModelFile) -> tuple[Edit, ...]:
    """The saved run's live changes, each checked (a callable's value stays its name)."""
    entries = file.data.get("edit_log", [])
    if not isinstance(entries, list):
        raise file_error(file, "edit_log", "must be a list of edits")
    edits = []
    for index, entry in enumerate(entries):
        field = f"edit_log[{index}]"
        if not isinstance(entry, dict) or set(entry) != {"update", "timesteps", "name", "old", "new"}:
            raise file_error(file, field, "must be a dict of update, timesteps, name, old and new")
        name, update, steps = entry["name"], entry["update"], entry["timesteps"]
        if name not in hp.LIVE_HYPERPARAMETERS:
            raise file_error(file, field, f"{str(name)[:50]!r} is not a live hyperparameter")
        for key, value in (("update", update), ("timesteps", steps)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_TIMESTEPS:
                raise file_error(file, f"{field}.{key}", f"must be a non-negative integer, got {str(value)[:50]}")
        values = []
        for key in ("old", "new"):
            value = entry[key]
            named_callable = isinstance(value, str) and hp.HYPERPARAMETERS[name].callable_ok
            try:  # a callable was saved by its name: kept as that name
                values.append(value if named_callable else hp.validate(name, value))
            except ValueError as error:
                raise file_error(file, f"{field}.{key}", error) from error
        edits.append(Edit(update, steps, name, *values))
    return tuple(edits)
