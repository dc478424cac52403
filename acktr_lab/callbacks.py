"""Callbacks for ``learn``: objects with ``on_update(report) -> bool | None`` and, optionally,
``on_training_start(trainer)`` and ``on_training_end(trainer)``. Returning ``False`` from
``on_update`` stops training (Stable Baselines semantics).

:class:`EvalCallback` is Stable Baselines 3's remedy for a policy that reaches a good score
and then loses it: evaluate every ``eval_freq`` steps and keep the best parameters.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from acktr_lab.evaluation import evaluate
from acktr_lab.preprocessing import spaces_equal
from acktr_lab.report import UpdateReport


class EvalCallback:
    """Evaluate deterministically every ``eval_freq`` timesteps and keep the best model.

    Args:
        eval_env: an env id or a gymnasium ``Env`` (not the training env).
        eval_freq: timesteps between evaluations (the first after ``eval_freq`` steps).
        n_eval_episodes: episodes per evaluation; episode i starts from ``reset(seed=seed + i)``,
            so every evaluation sees the same starts and their scores compare.
        best_model_save_path: a folder; the best model is saved there as ``best_model.zip``.
        restore_best: put the best parameters back into the model when training ends.
        verbose: 1 prints each evaluation.

    After training, ``evaluations`` holds ``(timesteps, mean, std)`` of each evaluation,
    ``best_mean_return`` the best mean and ``best_parameters`` its parameters.
    """

    def __init__(
        self,
        eval_env: str | gym.Env,
        *,
        eval_freq: int = 10_000,
        n_eval_episodes: int = 10,
        seed: int = 0,
        best_model_save_path: str | Path | None = None,
        restore_best: bool = False,
        verbose: int = 0,
    ) -> None:
        for name, value in (("eval_freq", eval_freq), ("n_eval_episodes", n_eval_episodes)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.eval_env = eval_env
        self.eval_freq = eval_freq
        self.n_eval_episodes = n_eval_episodes
        self.seed = int(seed)
        self.best_model_save_path = Path(best_model_save_path) if best_model_save_path is not None else None
        self.restore_best = bool(restore_best)
        self.verbose = int(verbose)
        self.evaluations: list[tuple[int, float, float]] = []
        self.best_mean_return = -math.inf
        self.best_parameters: dict[str, np.ndarray] | None = None
        self.model: Any = None
        self._next_evaluation = 0

    def on_training_start(self, trainer: Any) -> None:
        self.model = trainer.model
        if self.model is None:
            raise ValueError("EvalCallback needs a trainer made by a model (model.trainer(...) or model.learn)")
        self._check_spaces()
        self._next_evaluation = trainer.num_timesteps + self.eval_freq

    def _check_spaces(self) -> None:
        """``ValueError`` before training if the eval env's spaces are not the model's."""
        env = gym.make(self.eval_env) if isinstance(self.eval_env, str) else self.eval_env
        try:
            for what, mine, theirs in (
                ("observation", self.model.observation_space, env.observation_space),
                ("action", self.model.action_space, env.action_space),
            ):
                if not spaces_equal(mine, theirs):
                    raise ValueError(
                        f"EvalCallback: the eval env's {what} space {theirs} differs from the model's {mine}"
                    )
        finally:
            if env is not self.eval_env:
                env.close()

    def on_update(self, report: UpdateReport) -> bool:
        if report.timesteps < self._next_evaluation:
            return True
        while self._next_evaluation <= report.timesteps:
            self._next_evaluation += self.eval_freq
        returns = evaluate(self.model, self.eval_env, self.n_eval_episodes, seed=self.seed)
        mean, std = float(np.mean(returns)), float(np.std(returns))
        self.evaluations.append((report.timesteps, mean, std))
        if self.verbose >= 1:
            print(f"Eval num_timesteps={report.timesteps}, episode_reward={mean:.2f} +/- {std:.2f}")
        if mean > self.best_mean_return:
            self.best_mean_return = mean
            self.best_parameters = self.model.get_parameters()
            if self.best_model_save_path is not None:
                self.best_model_save_path.mkdir(parents=True, exist_ok=True)
                self.model.save(self.best_model_save_path / "best_model.zip")
        return True

    def on_training_end(self, trainer: Any) -> None:
        if self.restore_best and self.best_parameters is not None:
            self.model.load_parameters(self.best_parameters)
