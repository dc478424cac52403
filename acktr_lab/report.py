"""Immutable per-update reports: the one currency between the core and its consumers.

The trainer yields an :class:`UpdateReport` after every update and behaviour cloning
yields a :class:`PretrainReport` after every epoch. Dashboards, loggers, TensorBoard
writers and callbacks only ever *read* these; none of them reaches into the model.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

import numpy as np


@dataclass(frozen=True)
class FactorEigenvalues:
    """Eigenvalues (ascending) of one layer's Kronecker factors A = E[aaᵀ] and G = E[ggᵀ]."""

    input_factor: np.ndarray  # eigenvalues of A
    gradient_factor: np.ndarray  # eigenvalues of G


@dataclass(frozen=True)
class Edit:
    """One change of a live hyperparameter during a run: ``name`` went from ``old`` to
    ``new`` from update ``update`` on (the first update that used ``new``), when the run had
    taken ``timesteps`` steps. A run's edits, replayed at the same updates with the same
    seed, reproduce it exactly (``model.learn(n, edits=log)``)."""

    update: int
    timesteps: int
    name: str
    old: Any
    new: Any

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly (a callable is named, and a replay then needs it passed back)."""
        from acktr_lab.hyperparameters import describe

        return {
            "update": self.update,
            "timesteps": self.timesteps,
            "name": self.name,
            "old": describe(self.old),
            "new": describe(self.new),
        }


def _frozen(mapping: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class UpdateReport:
    """What happened in one ACKTR update (one rollout plus one K-FAC step).

    ``hyperparameters`` holds the values this update actually used (after any
    ``trainer.set``), so plots can mark where a user changed something.
    ``fisher_eigenvalues`` maps layer name to its factors' eigenvalues and is
    ``None`` on updates where the inverse was not refreshed. ``metrics`` holds every
    number the learner and the optimizer reported, by namespaced name (``train/kl``,
    ``kfac/grad_norm``, ...): a metric added there reaches the loggers and TensorBoard
    (:meth:`scalars`) with no field to copy.
    """

    update: int
    timesteps: int
    total_timesteps: int
    fps: float
    learning_rate: float
    policy_loss: float
    value_loss: float
    entropy: float
    explained_variance: float
    kl: float
    trust_region_scale: float
    gfg: float  # gᵀF⁻¹g of the preconditioned gradient (before lr² scaling)
    kfac_step: bool  # False during the cold start (clipped momentum SGD)
    skipped: bool  # True when a non-finite gradient made the optimizer skip the update
    episode_returns: tuple[float, ...] = ()
    episode_lengths: tuple[int, ...] = ()
    fisher_eigenvalues: Mapping[str, FactorEigenvalues] | None = None
    hyperparameters: Mapping[str, Any] = field(default_factory=lambda: _frozen(None))
    metrics: Mapping[str, float] = field(default_factory=lambda: _frozen(None))
    edits: tuple[Edit, ...] = ()  # the live changes that took effect at this update

    def __post_init__(self) -> None:
        object.__setattr__(self, "hyperparameters", _frozen(self.hyperparameters))
        object.__setattr__(self, "metrics", _frozen(self.metrics))
        if self.fisher_eigenvalues is not None:
            object.__setattr__(self, "fisher_eigenvalues", _frozen(self.fisher_eigenvalues))

    @property
    def progress(self) -> float:
        """Fraction of the run done, in [0, 1]."""
        return min(1.0, self.timesteps / max(1, self.total_timesteps))

    def scalars(self) -> dict[str, float]:
        """Flat ``namespace/name -> float`` view for loggers and TensorBoard."""
        out = {
            "time/update": float(self.update),
            "time/timesteps": float(self.timesteps),
            "time/fps": self.fps,
            "train/learning_rate": self.learning_rate,
            "train/policy_loss": self.policy_loss,
            "train/value_loss": self.value_loss,
            "train/entropy": self.entropy,
            "train/explained_variance": self.explained_variance,
            "train/kl": self.kl,
            "kfac/trust_region_scale": self.trust_region_scale,
            "kfac/gfg": self.gfg,
            "kfac/kfac_step": float(self.kfac_step),
            **{name: float(value) for name, value in self.metrics.items()},
        }
        if self.episode_returns:
            out["rollout/ep_return_mean"] = float(np.mean(self.episode_returns))
            out["rollout/ep_len_mean"] = float(np.mean(self.episode_lengths))
        return out

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        data["hyperparameters"] = dict(self.hyperparameters)
        data["metrics"] = dict(self.metrics)
        data["edits"] = [edit.to_dict() for edit in self.edits]
        if self.fisher_eigenvalues is not None:
            data["fisher_eigenvalues"] = {
                k: {"input_factor": v.input_factor, "gradient_factor": v.gradient_factor}
                for k, v in self.fisher_eigenvalues.items()
            }
        return data


#: The report's own scalar fields by type (``"int"``, ``"float"`` or ``"bool"``), in declaration order.
SCALAR_FIELDS: dict[str, str] = {
    f.name: str(f.type) for f in fields(UpdateReport) if f.type in ("int", "float", "bool")
}


@dataclass(frozen=True)
class PretrainReport:
    """Behaviour-cloning progress after one epoch. ``val_loss`` is ``None`` on epochs
    where validation was not run."""

    epoch: int
    n_epochs: int
    train_loss: float
    val_loss: float | None = None
