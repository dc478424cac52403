"""Sweep files: :func:`load_sweep_config` reads a YAML sweep into ``acktr_lab.sweep.run``'s arguments.

A sweep file (``acktr-lab sweep CONFIG.yml``)::

    env: CartPole-v1
    space:                        # ACKTR arguments to search
      kfac_clip: [0.001, 0.01]    # a list: a grid (or choices, with search: random)
      learning_rate: {loguniform: [0.01, 0.5]}   # or a Tune domain: uniform, loguniform, choice, randint
    seeds: [0, 1, 2]              # every configuration runs once per seed
    timesteps: 100000             # each trial's budget
    fixed: {n_envs: 8}            # arguments every trial shares
    scheduler: fifo               # fifo, asha, pbt or pb2

The other optional keys are ``policy``, ``search`` (``grid``/``random``), ``num_samples``,
``metric``, ``mode``, ``report_every``, ``perturbation_interval``, ``eval_episodes``,
``address``, ``num_cpus``, ``max_concurrent_trials``, ``storage_path`` and ``name``, as
:func:`acktr_lab.sweep.run` documents them.

Everything is checked before anything runs, and a problem is a ``ValueError`` naming the
key and the value: unknown keys (with the known ones), values of the wrong type or out of
range (ACKTR's hyperparameters by their own bounds, :mod:`acktr_lab.hyperparameters`),
YAML that does not parse, a file too large. Values only: the file is read with
``yaml.safe_load``, never evaluated. Numbers written ``1e-3`` (a string to YAML 1.1) are
read as numbers where a number is expected.
"""

from __future__ import annotations

import collections
import math
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from acktr_lab import hyperparameters as hp
from acktr_lab.sweep.runner import OTHER_ARGUMENTS, SCHEDULERS, SEARCHES
from acktr_lab.yaml_values import load_yaml_values

__all__ = ["DOMAINS", "KEYS", "MAX_BYTES", "MAX_TRIALS", "count_trials", "load_sweep_config"]

#: The largest sweep file read (bytes).
MAX_BYTES = 1 << 20
#: The most trials a sweep file may ask for (configurations × seeds × samples).
MAX_TRIALS = 10_000
#: The Tune domains a search-space entry may be, each written ``{name: [arguments]}``.
DOMAINS = ("uniform", "loguniform", "choice", "randint")
#: The keys that must be there.
REQUIRED = ("env", "space", "seeds", "timesteps")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
# a number YAML 1.1 leaves a string: 1e-3, 5E4, -2.5e+3 (it wants a dot and a signed exponent)
_EXPONENT_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def load_sweep_config(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The keyword arguments of :func:`acktr_lab.sweep.run` that the YAML sweep file at
    ``path`` describes (see the module doc); ``ValueError`` naming what is wrong otherwise."""
    where = os.fspath(path)
    try:
        with open(path, "rb") as file:
            data = file.read(MAX_BYTES + 1)
    except OSError as error:
        raise ValueError(f"cannot read the sweep file {where}: {error}") from None
    if len(data) > MAX_BYTES:
        raise ValueError(f"{where} is larger than {MAX_BYTES} bytes; a sweep file is a few lines")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"{where} is not UTF-8 text: {error}") from None
    return parse_sweep_config(text, where)


def parse_sweep_config(text: str, where: str = "the sweep file") -> dict[str, Any]:
    """:func:`load_sweep_config` for the text of a sweep file (``where`` names it in errors)."""
    content = load_yaml_values(text, where)
    if not isinstance(content, dict):
        raise ValueError(f"{where} must hold a mapping of sweep settings (env, space, ...), got {_kind(content)}")
    bad_keys = [key for key in content if not isinstance(key, str)]
    if bad_keys:
        raise ValueError(f"{where}: keys must be names, got {_show(bad_keys)}")
    unknown = [key for key in content if key not in KEYS]
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {_show(unknown)}; the known keys are {list(KEYS)}")
    missing = [key for key in REQUIRED if key not in content]
    if missing:
        raise ValueError(f"{where}: missing key(s) {missing}; a sweep needs {list(REQUIRED)}")
    kwargs = {key: KEYS[key](content[key], f"{where}: {key}") for key in KEYS if key in content}
    both = sorted(set(kwargs["space"]) & set(kwargs.get("fixed", {})))
    if both:
        raise ValueError(f"{where}: {both} are both searched (space) and fixed; keep each in one of them")
    population = kwargs.get("scheduler") in ("pbt", "pb2")
    if population and not any(name in hp.LIVE_HYPERPARAMETERS for name in kwargs["space"]):
        raise ValueError(
            f"{where}: scheduler {kwargs['scheduler']} mutates live hyperparameters, and space has none of "
            f"{list(hp.LIVE_HYPERPARAMETERS)}"
        )
    trials = count_trials(kwargs)
    if trials > MAX_TRIALS:
        raise ValueError(f"{where}: the sweep has {trials} trials, more than {MAX_TRIALS}; search a smaller space")
    return kwargs


def count_trials(kwargs: Mapping[str, Any]) -> int:
    """How many trials :func:`acktr_lab.sweep.run` makes of these arguments: every grid
    point (lists, with ``search="grid"``) × seed × sample."""
    trials = len(kwargs.get("seeds", (0,))) * int(kwargs.get("num_samples", 1))
    if kwargs.get("search", "grid") == "grid":
        for value in kwargs.get("space", {}).values():
            if isinstance(value, list | tuple):
                trials *= len(value)
    return trials


# one checker per key: (value, "file: key") -> the argument


def _env(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise ValueError(f"{where} must be an environment id such as CartPole-v1, got {_show(value)}")
    return value


def _space(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must map ACKTR arguments to lists of values or Tune domains, got {_show(value)}")
    space = {}
    for name, entry in value.items():
        _check_argument(name, where)
        at = f"{where}.{name}"
        if isinstance(entry, list):
            if not entry:
                raise ValueError(f"{at}: an empty list of values")
            space[name] = [_argument_value(name, item, at) for item in entry]
        elif isinstance(entry, dict) and len(entry) == 1 and next(iter(entry)) in DOMAINS:
            space[name] = _domain(name, entry, at)
        else:
            raise ValueError(
                f"{at} must be a list of values or one of {{uniform: [low, high]}}, {{loguniform: [low, high]}}, "
                f"{{choice: [values]}}, {{randint: [low, high]}}; got {_show(entry)} (a single value goes in fixed)"
            )
    return space


def _seeds(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where} must be a non-empty list of integers, got {_show(value)}")
    seeds = []
    for seed in value:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ValueError(f"{where} must be a non-empty list of integers, got {_show(seed)} in it")
        try:
            seeds.append(hp.validate("seed", seed))
        except ValueError as error:
            raise ValueError(f"{where}: {error}") from None
    repeated = sorted(seed for seed, count in collections.Counter(seeds).items() if count > 1)
    if repeated:
        raise ValueError(f"{where}: seed(s) {repeated} repeated")
    return seeds


def _positive_int(value: Any, where: str) -> int:
    value = _number(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        value = int(value)  # 1.0e5
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{where} must be a positive integer, got {_show(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 1000:
        raise ValueError(f"{where} must be a non-empty string, got {_show(value)}")
    return value


def _one_of(options: tuple[str, ...]) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        if value not in options:
            raise ValueError(f"{where} must be one of {list(options)}, got {_show(value)}")
        return value

    return check


def _policy(value: Any, where: str) -> str:
    from acktr_lab.policies import POLICIES

    return _one_of(tuple(POLICIES))(value, where)


def _fixed(value: Any, where: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where} must map ACKTR arguments to values, got {_show(value)}")
    fixed = {}
    for name, item in value.items():
        _check_argument(name, where)
        fixed[name] = _argument_value(name, item, f"{where}.{name}")
    return fixed


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise ValueError(f"{where} must be a folder name (letters, digits, . _ -), got {_show(value)}")
    return value


KEYS: dict[str, Callable[[Any, str], Any]] = {
    "env": _env,
    "space": _space,
    "seeds": _seeds,
    "timesteps": _positive_int,
    "policy": _policy,
    "fixed": _fixed,
    "search": _one_of(SEARCHES),
    "num_samples": _positive_int,
    "scheduler": _one_of(SCHEDULERS),
    "metric": _text,
    "mode": _one_of(("max", "min")),
    "report_every": _positive_int,
    "perturbation_interval": _positive_int,
    "eval_episodes": _positive_int,
    "address": _text,
    "num_cpus": _positive_int,
    "max_concurrent_trials": _positive_int,
    "storage_path": _text,
    "name": _name,
}
"""Every key of a sweep file and its checker, in the order the docs list them."""


# ACKTR arguments


def _check_argument(name: Any, where: str) -> None:
    if name == "seed":
        raise ValueError(f"{where}: the seeds go in seeds: [...], not in {where.rsplit(': ', 1)[-1]}")
    if not isinstance(name, str) or (name not in hp.HYPERPARAMETERS and name not in OTHER_ARGUMENTS):
        known = [*hp.HYPERPARAMETERS, *OTHER_ARGUMENTS]
        known.remove("seed")
        raise ValueError(f"{where}: {_show(name)} is not an ACKTR argument; choose from {known}")


def _argument_value(name: str, value: Any, where: str) -> Any:
    """``value`` checked as ACKTR's argument ``name`` (by its bounds, for a hyperparameter)."""
    if name == "policy_kwargs":
        if value is not None and (not isinstance(value, dict) or not all(isinstance(k, str) for k in value)):
            raise ValueError(f"{where} must be a mapping of policy arguments or null, got {_show(value)}")
        return value
    kind = hp.HYPERPARAMETERS[name].kind
    if kind in ("float", "int") and isinstance(value, str):
        value = _number(value)
        if kind == "int" and isinstance(value, float) and value.is_integer():
            value = int(value)  # n_steps: 1e3
    try:
        return hp.validate(name, value)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def _domain(name: str, entry: dict[str, Any], where: str) -> Any:
    """A Tune search-space object from ``{uniform|loguniform|randint: [low, high]}`` or ``{choice: [...]}``."""
    from ray import tune

    ((domain, arguments),) = entry.items()
    at = f"{where}.{domain}"
    kind = hp.HYPERPARAMETERS[name].kind if name in hp.HYPERPARAMETERS else "mapping"
    if domain == "choice":
        if not isinstance(arguments, list) or not arguments:
            raise ValueError(f"{at} must be a non-empty list of values, got {_show(arguments)}")
        return tune.choice([_argument_value(name, item, at) for item in arguments])
    wanted = ("int", "float") if domain == "randint" else ("float",)
    if kind not in wanted:
        draws = "integers" if domain == "randint" else "real numbers"
        raise ValueError(f"{at}: {domain} draws {draws}, which {name} ({kind}) does not take; use a list or choice")
    bounds = [_number(item) for item in arguments] if isinstance(arguments, list) else []
    number = int if domain == "randint" else int | float
    if (
        len(bounds) != 2
        or not all(isinstance(b, number) and not isinstance(b, bool) and math.isfinite(b) for b in bounds)
        or not bounds[0] < bounds[1]
    ):
        what = "integers" if domain == "randint" else "numbers"
        raise ValueError(f"{at} must be [low, high], two {what} with low < high, got {_show(arguments)}")
    low, high = bounds
    if domain == "loguniform" and low <= 0:
        raise ValueError(f"{at}: loguniform needs low > 0, got {_show(arguments)}")
    for end in (low, high - 1) if domain == "randint" else (low, high):  # randint's high is excluded
        _argument_value(name, end, at)
    return {"uniform": tune.uniform, "loguniform": tune.loguniform, "randint": tune.randint}[domain](low, high)


# small helpers


def _number(value: Any) -> Any:
    """``value``, or the float a ``1e-3``-style string stands for."""
    if isinstance(value, str) and _EXPONENT_NUMBER.fullmatch(value.strip()):
        return float(value)
    return value


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _show(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
