"""ACKTR's hyperparameters, each defined once: type, default, bounds, live or not, SB2 name.

:data:`HYPERPARAMETERS` is the one definition. Validation (:func:`validate`), what
``trainer.set`` may change (:data:`LIVE_HYPERPARAMETERS`), what a saved model stores and
which Stable Baselines 2 fields a loaded SB2 model takes (:data:`SB2_FIELDS`) all derive
from it. Values are checked strictly against their documented type: ``True`` is not a
number, ``1.5`` is not an integer, ``"no"`` is not a boolean; nothing is coerced.

Bounds come from what the maths needs (``damping > 0``: the damped curvature must be
invertible) and, for sizes, from what fits memory (``n_steps ≤`` :data:`MAX_STEPS`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from acktr_lab.schedules import SCHEDULES

#: Upper bounds on sizes, from any source (code, CLI or a model file): a rollout's steps
#: per env, the number of envs, and K-FAC's periods. The rollout's memory is checked
#: separately against the observation size (:func:`check_rollout_memory`).
MAX_STEPS = 100_000
MAX_ENVS = 4096
MAX_PERIOD = 1_000_000
MAX_THREADS = 1024
#: The most bytes one rollout's observations may take (n_steps · n_envs · observation bytes).
MAX_ROLLOUT_BYTES = 8 << 30


@dataclass(frozen=True)
class Control:
    """How a dashboard shows a live hyperparameter (plain data: the core never imports widgets).

    ``kind``: ``"log"`` (a log slider; ``min``/``max`` are values, ``step`` is in decades),
    ``"linear"`` (a slider), ``"optional"`` (a checkbox, off meaning ``None``, and a slider
    starting at ``default``) or ``"choice"`` (a dropdown of ``options``). ``short`` names it
    in the plots' change labels. A range is widened to include the current value.
    """

    kind: str
    label: str
    help: str
    short: str
    min: float = 0.0
    max: float = 1.0
    step: float = 0.01
    format: str = ".3g"
    default: float | None = None
    options: tuple[str, ...] = ()


def _log(label: str, help: str, short: str, low: float, high: float) -> Control:
    return Control("log", label, help, short, min=low, max=high, step=0.02, format=".3g")


def _linear(label: str, help: str, short: str, low: float, high: float, step: float, fmt: str) -> Control:
    return Control("linear", label, help, short, min=low, max=high, step=step, format=fmt)


@dataclass(frozen=True)
class Hyperparameter:
    """One hyperparameter: its type (``"float"``, ``"int"``, ``"bool"``, ``"str"`` or
    ``"choice"``), default, bounds (``low``/``high``, each inclusive unless ``*_open``),
    whether ``None`` or a callable (of the progress remaining) is allowed, whether it can
    change while training runs (``live``), its Stable Baselines 2 name (None: not SB2's),
    whether a model file may set it (``from_file``: False for machine settings such as
    paths and thread counts, which a loaded file must never choose) and, for a live one,
    how a dashboard shows it (``control``)."""

    name: str
    kind: str
    default: Any
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    optional: bool = False
    callable_ok: bool = False
    choices: tuple[str, ...] = ()
    live: bool = False
    sb2_name: str | None = None
    from_file: bool = True
    doc: str = ""
    control: Control | None = None

    def bounds_text(self) -> str:
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '≥'} {self.low:g}")
        if self.high is not None:
            parts.append(f"{'<' if self.high_open else '≤'} {self.high:g}")
        return " and ".join(parts)

    def validate(self, value: Any) -> Any:
        """``value`` checked and normalised (NumPy scalars to Python ones), else ``ValueError``
        naming the hyperparameter (a value of the wrong type too)."""
        if value is None:
            if self.optional:
                return None
            raise ValueError(f"{self.name} must be {self._type_text()}, got None")
        if self.callable_ok and callable(value) and not isinstance(value, str):
            return value
        if self.kind == "bool":
            if not isinstance(value, bool | np.bool_):
                raise ValueError(f"{self.name} must be True or False, got {value!r}")
            return bool(value)
        if self.kind == "str":
            if not isinstance(value, str | os.PathLike):
                raise ValueError(f"{self.name} must be {self._type_text()}, got {value!r}")
            return os.fspath(value)
        if self.kind == "choice":
            if not isinstance(value, str) or value not in self.choices:
                raise ValueError(
                    f"unknown {self.name} {value!r}; choose one of {list(self.choices)}"
                    + (" or pass a callable" if self.callable_ok else "")
                )
            return value
        if self.kind == "int":
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | np.integer):
                raise ValueError(f"{self.name} must be {self._type_text()}, got {value!r}")
            number: float = int(value)
        else:
            if isinstance(value, bool | np.bool_) or not isinstance(value, int | float | np.integer | np.floating):
                raise ValueError(f"{self.name} must be {self._type_text()}, got {value!r}")
            try:
                number = float(value)
            except OverflowError:  # an int beyond float's range, e.g. 10**400
                bits = int(value).bit_length()
                raise ValueError(f"{self.name} must be finite, got an integer of {bits} bits") from None
            if not math.isfinite(number):
                raise ValueError(f"{self.name} must be finite, got {value!r}")
        too_low = self.low is not None and (number <= self.low if self.low_open else number < self.low)
        too_high = self.high is not None and (number >= self.high if self.high_open else number > self.high)
        if too_low or too_high:
            raise ValueError(f"{self.name} must be {self.bounds_text()}, got {value!r}")
        return number

    def _type_text(self) -> str:
        text = {"int": "an integer", "float": "a number", "str": "a path (str)", "bool": "True or False"}.get(
            self.kind, f"one of {list(self.choices)}"
        )
        if self.callable_ok:
            text += " or a callable of the progress remaining"
        return text + (" or None" if self.optional else "")


def _h(name: str, kind: str, default: Any, **options: Any) -> Hyperparameter:
    return Hyperparameter(name, kind, default, **options)


#: Every ACKTR hyperparameter, in Stable Baselines 2's argument order, then ours.
HYPERPARAMETERS: dict[str, Hyperparameter] = {
    h.name: h
    for h in (
        _h(
            "gamma",
            "float",
            0.99,
            low=0.0,
            high=1.0,
            live=True,
            sb2_name="gamma",
            doc="discount factor γ",
            control=_linear("gamma", "discount factor", "γ", 0.8, 1.0, 0.0005, ".4f"),
        ),
        _h("n_steps", "int", 20, low=1, high=MAX_STEPS, sb2_name="n_steps", doc="steps per env per update"),
        _h(
            "ent_coef",
            "float",
            0.01,
            low=0.0,
            live=True,
            sb2_name="ent_coef",
            doc="entropy coefficient",
            control=_linear("entropy coef", "weight of the entropy bonus", "ent", 0.0, 0.1, 0.0005, ".4f"),
        ),
        _h(
            "vf_coef",
            "float",
            0.25,
            low=0.0,
            live=True,
            sb2_name="vf_coef",
            doc="value loss coefficient",
            control=_linear("value coef", "weight of the value loss", "vf", 0.0, 2.0, 0.01, ".2f"),
        ),
        _h(
            "vf_fisher_coef",
            "float",
            1.0,
            low=0.0,
            live=True,
            sb2_name="vf_fisher_coef",
            control=_linear(
                "value Fisher coef",
                "weight of the value head in the sampled Fisher",
                "vf_fisher",
                0.0,
                2.0,
                0.01,
                ".2f",
            ),
        ),
        _h(
            "learning_rate",
            "float",
            0.25,
            low=0.0,
            low_open=True,
            callable_ok=True,
            live=True,
            sb2_name="learning_rate",
            control=_log("learning rate", "initial learning rate; the schedule multiplies it", "lr", 1e-4, 10.0),
        ),
        _h(
            "max_grad_norm",
            "float",
            0.5,
            low=0.0,
            low_open=True,
            live=True,
            sb2_name="max_grad_norm",
            control=_log("max grad norm", "gradient clipping during the cold start", "grad_norm", 1e-2, 100.0),
        ),
        _h(
            "kfac_clip",
            "float",
            0.001,
            low=0.0,
            low_open=True,
            live=True,
            sb2_name="kfac_clip",
            control=_log(
                "kfac clip", "trust-region radius: the update is scaled so lr²·gᵀF⁻¹g ≤ kfac_clip", "clip", 1e-5, 1.0
            ),
        ),
        _h(
            "lr_schedule",
            "choice",
            "linear",
            choices=tuple(sorted(SCHEDULES)),
            callable_ok=True,
            live=True,
            sb2_name="lr_schedule",
            control=Control(
                "choice", "lr schedule", "learning-rate schedule over the run", "schedule", options=tuple(SCHEDULES)
            ),
        ),
        _h("verbose", "int", 0, low=0, high=10, sb2_name="verbose"),
        _h("tensorboard_log", "str", None, optional=True, from_file=False, doc="TensorBoard folder"),
        _h("async_eigen_decomp", "bool", False, sb2_name="async_eigen_decomp"),
        _h("kfac_update", "int", 1, low=1, high=MAX_PERIOD, sb2_name="kfac_update"),
        _h(
            "gae_lambda",
            "float",
            None,
            low=0.0,
            high=1.0,
            optional=True,
            live=True,
            sb2_name="gae_lambda",
            control=Control(
                "optional",
                "GAE λ",
                "GAE lambda; unticked = n-step returns (None)",
                "λ",
                min=0.5,
                max=1.0,
                step=0.005,
                format=".3f",
                default=0.95,
            ),
        ),
        _h("full_tensorboard_log", "bool", False, from_file=False),
        _h("seed", "int", None, low=0, high=2**63 - 1, optional=True, sb2_name="seed"),
        _h("n_cpu_tf_sess", "int", 1, low=1, high=MAX_THREADS, optional=True, from_file=False),
        _h("n_envs", "int", 1, low=1, high=MAX_ENVS),
        _h("momentum", "float", 0.9, low=0.0, high=1.0, high_open=True),
        _h("damping", "float", 0.01, low=0.0, low_open=True),
        _h("stats_decay", "float", 0.99, low=0.0, high=1.0, low_open=True),
        _h("cold_iter", "int", 10, low=0, high=MAX_PERIOD),
        _h("eigen_epsilon", "float", 1e-6, low=0.0),
        _h("stats_update", "int", 1, low=1, high=MAX_PERIOD),
        _h("approx_t2", "bool", False),
        _h("normalize_returns", "bool", False),
        _h("normalize_observations", "bool", False),
    )
}

#: What ``trainer.set`` may change while training runs.
LIVE_HYPERPARAMETERS: tuple[str, ...] = tuple(name for name, h in HYPERPARAMETERS.items() if h.live)
#: How a dashboard shows each live hyperparameter, in the order of the definitions.
LIVE_CONTROLS: dict[str, Control] = {
    name: h.control for name, h in HYPERPARAMETERS.items() if h.live and h.control is not None
}
#: The defaults of the live hyperparameters (a new run's values unless given).
LIVE_DEFAULTS: dict[str, Any] = {name: HYPERPARAMETERS[name].default for name in LIVE_HYPERPARAMETERS}
#: Stable Baselines 2 ``data`` field → our name, for the fields a loaded SB2 model takes.
SB2_FIELDS: dict[str, str] = {h.sb2_name: name for name, h in HYPERPARAMETERS.items() if h.sb2_name}
#: The K-FAC constants ACKTR fixes, exposed as keyword-only arguments.
KFAC_CONSTANTS: tuple[str, ...] = (
    "momentum",
    "damping",
    "stats_decay",
    "cold_iter",
    "eigen_epsilon",
    "stats_update",
    "approx_t2",
)


def validate(name: str, value: Any) -> Any:
    """Return ``value`` normalised, or raise ``ValueError`` naming ``name`` and the problem."""
    if name not in HYPERPARAMETERS:
        raise ValueError(f"unknown hyperparameter {name!r}")
    return HYPERPARAMETERS[name].validate(value)


def validate_live(values: Mapping[str, Any]) -> dict[str, Any]:
    """Validate every value of a ``trainer.set`` call before any is applied."""
    unknown = sorted(set(values) - set(LIVE_HYPERPARAMETERS))
    if unknown:
        raise ValueError(f"cannot set {unknown} while training; live hyperparameters are {list(LIVE_HYPERPARAMETERS)}")
    return {name: validate(name, value) for name, value in values.items()}


def check_rollout_memory(n_steps: int, n_envs: int, observation_bytes: int) -> None:
    """``ValueError`` if the env has more than :data:`MAX_ENVS` envs (a vector env passed in
    is bounded as ``n_envs`` is), or one rollout's observations (``n_steps · n_envs`` of them)
    would take more than :data:`MAX_ROLLOUT_BYTES`."""
    if int(n_envs) > MAX_ENVS:
        raise ValueError(f"the env has {n_envs} envs, more than the limit of {MAX_ENVS}")
    total = int(n_steps) * int(n_envs) * int(observation_bytes)
    if total > MAX_ROLLOUT_BYTES:
        raise ValueError(
            f"n_steps={n_steps} × n_envs={n_envs} observations of {observation_bytes:,} bytes need "
            f"{total / 2**30:.1f} GiB per rollout, more than the limit of {MAX_ROLLOUT_BYTES / 2**30:.0f} GiB; "
            "use fewer steps or envs"
        )


def describe(value: Any) -> Any:
    """A JSON- and plot-friendly form of a hyperparameter value (callables by name)."""
    if callable(value):
        return getattr(value, "__qualname__", getattr(value, "__name__", repr(value)))
    return value
