"""A test double of :class:`acktr_lab.trainer.Trainer` for the dashboard tests.

``FakeTrainer`` follows the trainer's protocol (iterator of :class:`UpdateReport`,
``step``, ``done``, ``num_timesteps``, live ``hyperparameters``/``set`` validated by the
real :func:`acktr_lab.hyperparameters.validate_live`, ``learning_rate_curve``,
``snapshot``/``restore``, ``model.save``) without TensorFlow: its reports are made-up but
plausible numbers. It is deterministic, fast, and lets a test make ``step`` fail or
``set`` reject values. It trains nothing.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np

from acktr_lab import hyperparameters as hp
from acktr_lab.plots import same_value
from acktr_lab.report import Edit, FactorEigenvalues, UpdateReport
from acktr_lab.schedules import learning_rate_at, progress_of

DEFAULTS: dict[str, Any] = dict(hp.LIVE_DEFAULTS)


class FakeModel:
    """Stands in for ``ACKTR``: ``save`` writes a small file and remembers the path."""

    def __init__(self) -> None:
        self.saved: list[str] = []

    def save(self, path: str) -> None:
        Path(path).write_bytes(b"fake model")
        self.saved.append(str(path))


class FakeTrainer:
    """Trainer protocol test double (see the module docstring).

    Args:
        total_timesteps: the run's length.
        n_steps: timesteps per update.
        layers: ``{layer: (A size, G size)}`` for the Fisher eigenvalues in the reports.
        cold_iter: updates before K-FAC starts (``kfac_step`` False, trust region NaN).
        fail_at: the update number whose ``step`` raises ``RuntimeError``.
        reject: ``{name: predicate}``; ``set`` raises ``ValueError`` when a predicate
            holds for the new value (on top of the real validation).
    """

    def __init__(
        self,
        total_timesteps: int = 2000,
        *,
        n_steps: int = 20,
        layers: dict[str, tuple[int, int]] | None = None,
        cold_iter: int = 3,
        fail_at: int | None = None,
        reject: dict[str, Any] | None = None,
        **hyperparameters: Any,
    ) -> None:
        self.total_timesteps = int(total_timesteps)
        self.n_steps = n_steps
        self.layers = layers if layers is not None else {"pi_fc0": (5, 64), "pi_fc1": (65, 64), "pi": (65, 2)}
        self.cold_iter = cold_iter
        self.fail_at = fail_at
        self.reject = dict(reject or {})
        self.model = FakeModel()
        self.num_timesteps = 0
        self.updates = 0
        self._live = dict(DEFAULTS)
        self._live.update(hp.validate_live(hyperparameters))
        self._rng = np.random.default_rng(0)
        self._episode_timer = 0
        self.set_calls: list[dict[str, Any]] = []
        self._last_used = dict(self._live)  # to report changes as edits, as the real trainer does

    @property
    def done(self) -> bool:
        return self.num_timesteps >= self.total_timesteps

    def __iter__(self) -> FakeTrainer:
        return self

    def __next__(self) -> UpdateReport:
        return self.step()

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return dict(self._live)

    def set(self, **values: Any) -> None:
        checked = hp.validate_live(values)
        for name, value in checked.items():
            predicate = self.reject.get(name)
            if predicate is not None and predicate(value):
                raise ValueError(f"{name}={value!r} rejected by the fake trainer")
        self.set_calls.append(dict(checked))
        self._live.update(checked)

    def learning_rate_curve(self, n_points: int = 200) -> tuple[np.ndarray, np.ndarray]:
        steps = np.linspace(0, self.total_timesteps, max(2, n_points))
        rates = np.array(
            [
                learning_rate_at(self._live["learning_rate"], self._live["lr_schedule"], s / self.total_timesteps)
                for s in steps
            ]
        )
        return steps, rates

    def step(self) -> UpdateReport:
        if self.done:
            raise StopIteration
        if self.fail_at is not None and self.updates + 1 == self.fail_at:
            raise RuntimeError(f"fake failure at update {self.fail_at}")
        used = dict(self._live)
        edits = tuple(
            Edit(self.updates + 1, self.num_timesteps, name, self._last_used[name], value)
            for name, value in used.items()
            if name in self._last_used and not same_value(self._last_used[name], value)
        )
        self._last_used = used
        self.num_timesteps += self.n_steps
        self.updates += 1
        u = self.updates
        rng = self._rng
        lr = learning_rate_at(
            used["learning_rate"], used["lr_schedule"], progress_of(self.num_timesteps, self.total_timesteps)
        )
        kfac = u > self.cold_iter
        returns: list[float] = []
        lengths: list[int] = []
        self._episode_timer += self.n_steps
        episode_length = 10 + u // 2
        while self._episode_timer >= episode_length:
            self._episode_timer -= episode_length
            lengths.append(episode_length)
            returns.append(float(episode_length + rng.normal(0, 3)))
        eigenvalues = None
        if kfac:
            eigenvalues = {
                name: FactorEigenvalues(
                    input_factor=np.sort(np.concatenate([[0.0], np.logspace(-5, 1, n_a - 1) * (1 + 0.01 * u)])),
                    gradient_factor=np.sort(np.logspace(-6, 0, n_g) / (1 + 0.01 * u)),
                )
                for name, (n_a, n_g) in self.layers.items()
            }
        return UpdateReport(
            update=u,
            timesteps=self.num_timesteps,
            total_timesteps=self.total_timesteps,
            fps=1000.0 + rng.normal(0, 20),
            learning_rate=lr,
            policy_loss=float(-0.1 + 0.05 * rng.normal()),
            value_loss=float(50.0 / u + abs(rng.normal())),
            entropy=float(0.69 * np.exp(-u / 200)),
            explained_variance=float(1 - 2.0 / np.sqrt(u)),
            kl=float(1e-3 * (1 + rng.random())),
            trust_region_scale=float(min(1.0, 0.1 + rng.random())) if kfac else float("nan"),
            gfg=float(1e3 * (1 + rng.random())) if kfac else float("nan"),
            kfac_step=kfac,
            skipped=False,
            episode_returns=tuple(returns),
            episode_lengths=tuple(lengths),
            fisher_eigenvalues=eigenvalues,
            hyperparameters=used,
            edits=edits,
            metrics={
                "kfac/grad_norm": float(1.0 / np.sqrt(u) + 0.01 * rng.random()),
                "kfac/inverse_age": 0.0 if kfac else float("nan"),
                "kfac/step_not_finite": 0.0,
            },
        )

    def snapshot(self) -> dict[str, Any]:
        return copy.deepcopy({k: v for k, v in vars(self).items() if k != "model"})

    def restore(self, snapshot: dict[str, Any]) -> None:
        vars(self).update(copy.deepcopy(snapshot))
