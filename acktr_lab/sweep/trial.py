"""One sweep trial: an ACKTR run on the step-wise trainer, reporting to Ray Tune.

:func:`train_trial` is the Tune function trainable. Its ``config`` holds the ACKTR arguments
the search chose (top-level keys, so that schedulers such as PBT can mutate them), the
``seed``, and the fixed :class:`TrialSetup` under :data:`SETUP_KEY`.

Every ``report_every`` updates it reports the update's scalars (``train/…``, ``kfac/…``,
``rollout/ep_return_mean`` over the last 100 episodes, ``timesteps``) and, every
``checkpoint_every`` reports and at the end, a checkpoint: the model's zip, K-FAC state
included, so a trial restored elsewhere (PBT's exploit, a retry on another node) continues
with the optimizer's statistics. The last report adds the deterministic evaluation
``eval/mean_return`` over ``eval_episodes`` episodes.

A trial started from a checkpoint reports where it came from (``pbt/parent``: the trial
that wrote the checkpoint, ``pbt/parent_timesteps``: when) in every report, and in its first
report the fingerprint of the K-FAC statistics it loaded (``kfac/restored_fingerprint``),
which equals the ``kfac/statistics_fingerprint`` the parent reported with that checkpoint:
the lineage of PBT's exploits, carried by Tune's results. Every report also names the Ray
node the trial runs on (``node``), so a restore from a checkpoint another node wrote can be
seen in the results.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

MODEL_FILE = "model.zip"
ORIGIN_FILE = "origin.json"


@dataclass(frozen=True)
class TrialSetup:
    """What every trial of a sweep shares."""

    env: str | Callable[[], Any]
    timesteps: int
    policy: str = "MlpPolicy"
    report_every: int = 10
    checkpoint_every: int = 1
    eval_episodes: int = 10
    fixed: dict[str, Any] = field(default_factory=dict)


def statistics_fingerprint(model: Any) -> float:
    """``Σ |x|`` over every K-FAC factor statistic (``blocks/*/A``, ``blocks/*/G``): equal for
    equal optimizer states, so a restored trial can be matched to the checkpoint it loaded."""
    total = 0.0
    for name, variable in model.optimizer.state_variables().items():
        if name.startswith("blocks/") and name.rsplit("/", 1)[-1] in ("A", "G"):
            total += float(np.abs(variable.numpy().astype(np.float64)).sum())
    return total


def _env(setup: TrialSetup) -> Any:
    """The env a model trains or is evaluated on: the id, or a fresh env from the factory."""
    return setup.env() if callable(setup.env) else setup.env


def _build(setup: TrialSetup, arguments: dict[str, Any], seed: int, checkpoint_dir: Path | None) -> Any:
    """A new model, or the one a checkpoint holds with this trial's (possibly mutated) arguments."""
    from acktr_lab import ACKTR
    from acktr_lab.vec_env import as_vector_env

    if checkpoint_dir is None:
        return ACKTR(setup.policy, _env(setup), seed=seed, **arguments)
    fixed_by_file = ("n_envs", "policy_kwargs")  # the architecture and the rollout shape stay the file's
    model = ACKTR.load(checkpoint_dir / MODEL_FILE, **{k: v for k, v in arguments.items() if k not in fixed_by_file})
    n_envs = int(arguments.get("n_envs", 1))
    model.set_env(as_vector_env(setup.env, n_envs=n_envs) if isinstance(setup.env, str) else _env(setup))
    return model


def _save(model: Any, trial_id: str, directory: Path) -> None:
    model.save(directory / MODEL_FILE)
    origin = {"trial_id": trial_id, "timesteps": model.num_timesteps, "fingerprint": statistics_fingerprint(model)}
    (directory / ORIGIN_FILE).write_text(json.dumps(origin))


def _episode_mean(model: Any) -> float | None:
    returns = list(model.episode_returns)
    return float(np.mean(returns)) if returns else None


def train_trial(config: dict[str, Any], setup: TrialSetup) -> None:
    """The Tune trainable (see the module doc); ``setup`` comes through ``tune.with_parameters``."""
    import ray
    from ray import tune

    from acktr_lab.evaluation import evaluate

    seed = int(config["seed"])
    arguments = {**setup.fixed, **{k: v for k, v in config.items() if k != "seed"}}
    arguments.setdefault("verbose", 0)
    trial_id = tune.get_context().get_trial_id()
    node = ray.get_runtime_context().get_node_id()
    checkpoint = tune.get_checkpoint()
    origin: dict[str, Any] = {}
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            model = _build(setup, arguments, seed, Path(directory))
            origin = json.loads((Path(directory) / ORIGIN_FILE).read_text())
    else:
        model = _build(setup, arguments, seed, None)
    lineage = {"pbt/parent": origin.get("trial_id", ""), "pbt/parent_timesteps": float(origin.get("timesteps", 0))}
    restored = {"kfac/restored_fingerprint": statistics_fingerprint(model)} if origin else {}
    remaining = setup.timesteps - model.num_timesteps
    if remaining <= 0:
        return
    trainer = model.trainer(remaining, reset_num_timesteps=checkpoint is None)
    reports = 0
    for index, report in enumerate(trainer):
        last = model.num_timesteps >= setup.timesteps
        if (index + 1) % setup.report_every and not last:
            continue
        metrics = {k: v for k, v in report.scalars().items() if np.isfinite(v)}
        mean_return = _episode_mean(model)
        if mean_return is None and not last:
            continue  # no episode has ended yet: nothing to compare trials by
        metrics.update(lineage, timesteps=float(model.num_timesteps), seed=float(seed), node=node)
        metrics.update(restored)  # the first report after a restore only
        restored = {}
        metrics["rollout/ep_return_mean"] = mean_return if mean_return is not None else float("nan")
        if last:
            returns = evaluate(model, _env(setup), n_episodes=setup.eval_episodes, seed=10_000 + seed)
            metrics["eval/mean_return"] = float(np.mean(returns))
            metrics["eval/std_return"] = float(np.std(returns))
        reports += 1
        if last or reports % setup.checkpoint_every == 0:
            metrics["kfac/statistics_fingerprint"] = statistics_fingerprint(model)
            with tempfile.TemporaryDirectory() as directory:
                _save(model, trial_id, Path(directory))
                tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
        else:
            tune.report(metrics)
