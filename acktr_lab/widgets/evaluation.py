"""Evaluations in the pretraining dashboard: the returns of deterministic episodes of the
policy at one point of the session (before pretraining, after it, during ACKTR), and how
they are labelled and shown (:class:`~acktr_lab.panels.EvaluationPanel`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np

from acktr_lab.panels import EvaluationPanel

__all__ = ["Evaluation", "default_eval_env", "env_label", "show_evaluations", "stage"]


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Returns of deterministic episodes of the policy at one point of the session.

    ``label`` says when (``"before pretraining"``, ``"after 20 BC epochs"``,
    ``"ACKTR, 4,000 steps"``), ``short_label`` the same for the plot's axis (``"start"``,
    ``"BC 20"``, ``"ACKTR 4k"``); ``seed`` is the seed of the first episode's reset
    (episode i uses ``seed + i``).
    """

    returns: tuple[float, ...]
    label: str
    seed: int
    short_label: str = ""

    @property
    def n_episodes(self) -> int:
        """How many episodes were run."""
        return len(self.returns)

    @property
    def mean(self) -> float:
        """Mean episode return."""
        return float(np.mean(self.returns))

    @property
    def std(self) -> float:
        """Standard deviation of the episode returns."""
        return float(np.std(self.returns))

    def __str__(self) -> str:
        return f"{self.label}: return {self.mean:.1f} ± {self.std:.1f} over {self.n_episodes} episodes"


def stage(bc_epochs: int, acktr_steps: int | None = None) -> tuple[str, str]:
    """When an evaluation happens, as ``(label, short_label)``: during ACKTR training
    (``acktr_steps`` timesteps so far), else before or after ``bc_epochs`` epochs of
    behaviour cloning."""
    if acktr_steps is not None:
        short = f"{acktr_steps / 1000:.3g}k" if acktr_steps >= 1000 else str(acktr_steps)
        return f"ACKTR, {acktr_steps:,} steps", f"ACKTR {short}"
    if bc_epochs == 0:
        return "before pretraining", "start"
    return f"after {bc_epochs} BC epochs", f"BC {bc_epochs}"


def show_evaluations(
    panel: EvaluationPanel, evaluations: Sequence[Evaluation], expert_mean: float | None, env: str | gym.Env | None
) -> None:
    """Hand ``evaluations`` (their short labels and returns), the expert's mean return and
    the env's name to ``panel`` (which redraws only when they changed)."""
    panel.show([(e.short_label or e.label, e.returns) for e in evaluations], expert_mean, env_label(env))


def default_eval_env(model: Any) -> str | None:
    """The env id of the model's (vector) env, if it has one."""
    env = getattr(model, "env", None)
    if env is None:
        return None
    spec = getattr(env, "spec", None)
    if spec is None:
        envs = getattr(getattr(env, "unwrapped", env), "envs", None)
        if envs:
            spec = getattr(envs[0], "spec", None)
    env_id = getattr(spec, "id", None)
    return env_id if isinstance(env_id, str) else None


def env_label(env: str | gym.Env | None) -> str:
    """The name of an env to show: its id, or its class name (``"none"`` for no env)."""
    if env is None:
        return "none"
    if isinstance(env, str):
        return env
    spec = getattr(env, "spec", None)
    return getattr(spec, "id", None) or type(env).__name__
