"""Run a sweep of ACKTR trials on Ray Tune: :func:`run` and its :class:`SweepResult`."""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from acktr_lab import hyperparameters as hp
from acktr_lab.sweep.trial import MODEL_FILE, TrialSetup, train_trial

#: The arguments a sweep may search over besides the hyperparameters.
OTHER_ARGUMENTS = ("policy_kwargs",)
SEARCHES = ("grid", "random")
SCHEDULERS = ("fifo", "asha", "pbt", "pb2")
#: What the table shows per trial besides its configuration.
RESULT_COLUMNS = ("timesteps", "eval/mean_return", "eval/std_return", "rollout/ep_return_mean")


@dataclass
class SweepResult:
    """A finished sweep: one row per trial in :attr:`table` (its configuration, seed, status,
    error, final evaluation and timesteps), each trial's reports in :attr:`histories`, and the
    best trial's model (by final ``eval/mean_return``) copied to :attr:`best_model_path`."""

    table: Any  # pandas.DataFrame
    histories: dict[str, Any]  # trial id -> pandas.DataFrame of its reports
    searched: tuple[str, ...]
    #: a local folder for the results (the experiment's own folder when the storage is local)
    experiment_path: Path
    #: where Tune keeps the experiment: a local path or a URI (``s3://…``, ``gs://…``)
    storage: str = ""
    best_trial: str | None = None
    best_config: dict[str, Any] = field(default_factory=dict)
    best_model_path: Path | None = None

    def best_model(self, env: Any = None) -> Any:
        """The best trial's final model (K-FAC state included), optionally with an env."""
        from acktr_lab import ACKTR

        if self.best_model_path is None:
            raise ValueError("no trial finished with an evaluation; there is no best model")
        return ACKTR.load(self.best_model_path, env=env)

    def scores(self, by: Sequence[str] | None = None, column: str = "eval/mean_return") -> dict[str, np.ndarray]:
        """Final scores grouped by configuration (``by``: the searched arguments, seeds apart)."""
        keys = list(self.searched if by is None else by)
        finished = self.table[self.table[column].notna()]
        groups: dict[str, np.ndarray] = {}
        for values, rows in finished.groupby(keys, sort=True) if keys else [((), finished)]:
            values = values if isinstance(values, tuple) else (values,)
            label = ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True)) or "all"
            groups[label] = rows[column].to_numpy(dtype=np.float64)
        return groups

    def aggregate_figure(self, by: Sequence[str] | None = None, **kwargs: Any) -> Any:
        """IQM ± bootstrap CI and performance profiles of :meth:`scores` (:mod:`acktr_lab.aggregate`)."""
        from acktr_lab.aggregate import aggregate_figure

        return aggregate_figure(self.scores(by), **kwargs)


def search_space(space: Mapping[str, Any], seeds: Sequence[int], search: str) -> dict[str, Any]:
    """Tune's ``param_space``: lists become ``grid_search`` (grid) or ``choice`` (random),
    Tune's own search-space objects stay, scalars are fixed; the seeds are a grid."""
    from ray import tune

    if search not in SEARCHES:
        raise ValueError(f"search must be one of {SEARCHES}, got {search!r}")
    unknown = sorted(k for k in space if k not in hp.HYPERPARAMETERS and k not in OTHER_ARGUMENTS)
    if unknown:
        raise ValueError(f"{unknown} are not ACKTR arguments a sweep can search; see acktr_lab.hyperparameters")
    if "seed" in space:
        raise ValueError("pass the seeds as seeds=[...], not in the search space")
    if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        raise ValueError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    out: dict[str, Any] = {}
    for name, value in space.items():
        if isinstance(value, list | tuple):
            if not value:
                raise ValueError(f"{name}: an empty list of values")
            if name in hp.HYPERPARAMETERS:
                for item in value:
                    hp.validate(name, item)
            out[name] = tune.grid_search(list(value)) if search == "grid" else tune.choice(list(value))
        else:
            if name in hp.HYPERPARAMETERS and not _is_tune_object(value):
                hp.validate(name, value)
            out[name] = value
    out["seed"] = tune.grid_search(list(seeds))
    return out


def _is_tune_object(value: Any) -> bool:
    from ray.tune.search.sample import Domain

    return isinstance(value, Domain) or (isinstance(value, dict) and "grid_search" in value)


def make_scheduler(
    scheduler: str | Any | None,
    space: Mapping[str, Any],
    timesteps: int,
    perturbation_interval: int | None,
    report_steps: int | None = None,
) -> Any:
    """A Tune scheduler from its name (``"fifo"``, ``"asha"``, ``"pbt"``, ``"pb2"``) or the object itself.

    ``"pbt"`` mutates the searched live hyperparameters (``trainer.set`` may change them) every
    ``perturbation_interval`` timesteps (default: a quarter of the budget), synchronously: the
    population waits at each perturbation point, then the bottom quarter (at least one trial)
    continues from the top quarter's checkpoints with mutated hyperparameters (each value
    multiplied by 0.8 or 1.2, or resampled). The interval is rounded up to a whole number of
    reports (``report_steps`` timesteps each): synchronous PBT waits for every trial to report
    at a perturbation point, and measured here it waited for ever when the points fell between
    reports.

    ``"pb2"`` (Parker-Holder et al. 2020) exploits the same way but chooses the new values
    with a time-varying Gaussian-process bandit over ``[low, high]`` bounds: the range of a
    searched list, or the bounds of ``tune.uniform``/``tune.loguniform``. It needs GPy and
    scikit-learn (both in the ``sweep`` extra).
    """
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, PopulationBasedTraining

    if scheduler is None or scheduler == "fifo":
        return FIFOScheduler()
    if not isinstance(scheduler, str):
        return scheduler
    if scheduler == "asha":
        return ASHAScheduler(time_attr="timesteps", max_t=timesteps, grace_period=max(1, timesteps // 8))
    if scheduler not in ("pbt", "pb2"):
        raise ValueError(f"scheduler must be one of {SCHEDULERS} or a Tune scheduler, got {scheduler!r}")
    fixed = sorted(k for k in space if k not in hp.LIVE_HYPERPARAMETERS)
    mutations = {k: v for k, v in space.items() if k in hp.LIVE_HYPERPARAMETERS}
    if fixed and not mutations:
        live = list(hp.LIVE_HYPERPARAMETERS)
        raise ValueError(f"{scheduler.upper()} mutates live hyperparameters ({live}); {fixed} are not")
    if not mutations:
        raise ValueError(f"{scheduler.upper()} needs a search space over live hyperparameters to mutate")
    interval = perturbation_interval or max(1, timesteps // 4)
    if report_steps:
        interval = math.ceil(interval / report_steps) * report_steps
    # every trial waits at each perturbation point, so that the bottom ones exploit the top
    # ones' checkpoints of that moment (asynchronous PBT can skip exploits in small populations)
    shared = {"time_attr": "timesteps", "perturbation_interval": interval, "log_config": False, "synch": True}
    if scheduler == "pbt":
        return PopulationBasedTraining(
            hyperparam_mutations={k: list(v) if isinstance(v, tuple) else v for k, v in mutations.items()}, **shared
        )
    bounds = {k: _bounds(k, v) for k, v in mutations.items()}
    try:
        import GPy  # noqa: F401
        import sklearn  # noqa: F401
        from ray.tune.schedulers.pb2 import PB2
    except ImportError as error:
        raise ImportError(f"PB2 needs GPy and scikit-learn ({error}): pip install 'acktr-lab[sweep]'") from error
    return PB2(hyperparam_bounds=bounds, **shared)


def _bounds(name: str, value: Any) -> list[float]:
    """PB2's ``[low, high]`` for a searched hyperparameter: a list's range, or a Tune float
    or integer domain's bounds; both ends must be valid values of ``name``."""
    from ray.tune.search.sample import Float, Integer

    if isinstance(value, Float | Integer):
        low, high = value.lower, value.upper
    elif (
        isinstance(value, list | tuple)
        and len(value) >= 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value)
    ):
        low, high = min(value), max(value)
    else:
        raise ValueError(
            f"PB2 searches {name} between bounds: give a list of at least two numbers or "
            f"tune.uniform/tune.loguniform, not {value!r}"
        )
    for end in (low, high):
        hp.validate(name, float(end))
    return [float(low), float(high)]


def run(
    env: str | Callable[[], Any],
    space: Mapping[str, Any],
    seeds: Sequence[int] = (0,),
    timesteps: int = 100_000,
    *,
    policy: str = "MlpPolicy",
    fixed: Mapping[str, Any] | None = None,
    search: str = "grid",
    num_samples: int = 1,
    scheduler: str | Any | None = None,
    metric: str = "rollout/ep_return_mean",
    mode: str = "max",
    report_every: int = 10,
    checkpoint_every: int | None = None,
    perturbation_interval: int | None = None,
    eval_episodes: int = 10,
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_trial: float = 1.0,
    max_concurrent_trials: int | None = None,
    storage_path: str | os.PathLike[str] = "runs/sweeps",
    name: str | None = None,
    callbacks: Sequence[Any] = (),
    stop: Any = None,
) -> SweepResult:
    """Train ACKTR once per configuration and seed, on Ray Tune, and collect the results.

    Args:
        env: an env id, or a function returning a gymnasium env (run on the workers).
        space: ACKTR arguments to search: lists (a grid, or choices for ``search="random"``)
            or Ray Tune search-space objects (``tune.loguniform(1e-4, 1e-2)``, ...).
        seeds: every configuration runs once per seed.
        timesteps: the budget of each trial.
        fixed: ACKTR arguments every trial shares (``n_envs``, ``ent_coef``, ...).
        search: ``"grid"`` or ``"random"`` (``num_samples`` draws per seed).
        scheduler: ``None``/``"fifo"`` (run every trial to its budget), ``"asha"`` (stop the
            worst early), ``"pbt"`` (mutate the live hyperparameters, exploiting the best
            trials' checkpoints), ``"pb2"`` (PBT choosing the new values by a GP bandit
            within the searched bounds), or any Tune scheduler object.
        metric, mode: what schedulers compare, reported every ``report_every`` updates.
        checkpoint_every: checkpoint every so many reports (default: every report with
            PBT or PB2, else only at the end).
        address: an existing Ray cluster (``"auto"``, ``"ray://head:10001"``); by default a
            local Ray is started for the call with ``num_cpus`` CPUs and shut down after.
        cpus_per_trial: CPUs each trial reserves (each trial's TensorFlow uses one thread).
        storage_path, name: where Tune keeps the trials and checkpoints: a local folder, or a
            URI every node reaches (``s3://bucket/sweeps``) for a cluster without a shared
            file system. The best model is copied to the experiment's folder (for a URI, to
            ``runs/sweeps/<name>`` here).
        callbacks: Tune callbacks (a ``SweepDashboard``'s ``callback`` is one).
        stop: a Tune stopper (or stopping dict).
    """
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")  # Tune's legacy reporter honours verbose=0
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    import ray
    from ray import tune

    if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
        raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
    if mode not in ("max", "min"):
        raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
    param_space = search_space(space, seeds, search)
    for name_, value in (fixed or {}).items():
        if name_ in hp.HYPERPARAMETERS:
            hp.validate(name_, value)
    trial_scheduler = make_scheduler(
        scheduler, space, timesteps, perturbation_interval, _report_steps(env, fixed or {}, report_every)
    )
    from ray.tune.schedulers import PopulationBasedTraining

    pbt = isinstance(trial_scheduler, PopulationBasedTraining)  # PB2 is one too
    setup = TrialSetup(
        env=env,
        timesteps=timesteps,
        policy=policy,
        report_every=report_every,
        checkpoint_every=checkpoint_every or (1 if pbt else 1_000_000_000),
        eval_episodes=eval_episodes,
        fixed={"n_cpu_tf_sess": 1, **dict(fixed or {})},
    )
    started = not ray.is_initialized()
    if started:
        start_ray(address=address, num_cpus=num_cpus)
    storage = os.fspath(storage_path)
    storage = storage if _is_uri(storage) else str(Path(storage).resolve())
    try:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(train_trial, setup=setup), {"cpu": cpus_per_trial}),
            param_space=param_space,
            tune_config=tune.TuneConfig(
                metric=metric,
                mode=mode,
                scheduler=trial_scheduler,
                num_samples=num_samples,
                max_concurrent_trials=max_concurrent_trials,
                # a reused actor keeps reporting its first trial's id, which PBT's lineage needs right
                reuse_actors=False,
            ),
            run_config=tune.RunConfig(
                storage_path=storage,
                name=name,
                callbacks=list(callbacks),
                stop=stop,
                verbose=0,
                failure_config=tune.FailureConfig(max_failures=0, fail_fast=False),
                # PBT may exploit any checkpoint a trial reported since its last perturbation
                checkpoint_config=tune.CheckpointConfig(num_to_keep=None if pbt else 1),
            ),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Consider boosting PBT performance")
            grid = tuner.fit()
        return collect(grid, tuple(space))
    finally:
        if started:
            ray.shutdown()


def start_ray(address: str | None = None, num_cpus: int | None = None) -> None:
    """Start a local Ray with ``num_cpus`` CPUs, or connect to the cluster at ``address``,
    quietly: what Ray's start-up writes to the process's stderr (its C++ lines) is kept back
    and shown only if starting fails. :func:`run` leaves a Ray started here running."""
    import ray

    # Ray announces, as a warning, each time it turns on token authentication (as it should)
    # for a local cluster: kept out of notebooks; every other message of that logger stays.
    announcement = logging.getLogger("ray._private.authentication.authentication_token_setup")
    if not any(isinstance(f, _DropMessage) for f in announcement.filters):
        announcement.addFilter(_DropMessage("Token authentication is enabled for this Ray cluster"))
    with tempfile.TemporaryFile() as captured:
        saved = os.dup(2)
        os.dup2(captured.fileno(), 2)
        try:
            ray.init(
                address=address,
                num_cpus=num_cpus if address is None else None,
                include_dashboard=False,
                configure_logging=False,
                log_to_driver=False,
                runtime_env={"env_vars": {"TF_CPP_MIN_LOG_LEVEL": "3"}},
            )
        except Exception as error:
            os.dup2(saved, 2)
            captured.seek(0)
            output = captured.read().decode(errors="replace")[-2000:]
            raise RuntimeError(f"Ray did not start: {error}\n{output}") from error
        finally:
            os.dup2(saved, 2)
            os.close(saved)


class _DropMessage(logging.Filter):
    """Drops the log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


def collect(grid: Any, searched: tuple[str, ...]) -> SweepResult:
    """The :class:`SweepResult` of a Tune ``ResultGrid``."""
    import pandas as pd

    rows, histories, checkpoints = [], {}, {}
    for result in grid:
        trial_id = _trial_id(result)
        history = result.metrics_dataframe if result.metrics_dataframe is not None else pd.DataFrame()
        # the trial's own last report: after a PBT exploit, ``result.metrics`` is the donor's
        last = history.iloc[-1].to_dict() if len(history) else {}
        row: dict[str, Any] = {"trial_id": trial_id}
        row.update({k: last.get(f"config/{k}", result.config.get(k)) for k in searched})
        row["seed"] = result.config.get("seed")
        row["status"] = "error" if result.error is not None else "finished"
        row["error"] = None if result.error is None else _error_line(result.error)
        for column in RESULT_COLUMNS:
            row[column] = last.get(column, np.nan)
        rows.append(row)
        histories[trial_id] = history
        if result.checkpoint is not None and result.error is None:
            checkpoints[trial_id] = result.checkpoint
    table = pd.DataFrame(rows)
    storage = str(grid.experiment_path)
    experiment = _local_folder(storage)
    out = SweepResult(table, histories, searched, experiment, storage)
    finished = table[table["eval/mean_return"].notna()] if len(table) else table
    if len(finished):  # the best evaluation return, whatever the schedulers compared
        index = finished["eval/mean_return"].idxmax()
        best = table.loc[index]
        out.best_trial = str(best["trial_id"])
        out.best_config = {k: _plain(best[k]) for k in (*searched, "seed")}
        checkpoint = checkpoints.get(out.best_trial)
        if checkpoint is not None:
            with checkpoint.as_directory() as directory:
                out.best_model_path = experiment / "best_model.zip"
                shutil.copyfile(Path(directory) / MODEL_FILE, out.best_model_path)
    return out


def _report_steps(env: Any, fixed: Mapping[str, Any], report_every: int) -> int | None:
    """Timesteps between a trial's reports: ``report_every · n_envs · n_steps`` (unknown for an
    env factory, which may make a vector env)."""
    if not isinstance(env, str):
        return None
    n_envs = int(fixed.get("n_envs", 1))
    n_steps = int(fixed.get("n_steps", hp.HYPERPARAMETERS["n_steps"].default))
    return report_every * n_envs * n_steps


def _is_uri(path: str) -> bool:
    """Whether a storage path is a URI (``s3://bucket/sweeps``) rather than a local folder."""
    return re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", path) is not None


def _local_folder(experiment: str) -> Path:
    """The local folder for an experiment's results: its own folder when Tune stores it
    locally, else ``runs/sweeps/<experiment name>`` under the current directory."""
    if not _is_uri(experiment):
        return Path(experiment)
    folder = Path("runs", "sweeps", experiment.rstrip("/").rsplit("/", 1)[-1]).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _trial_id(result: Any) -> str:
    """A result's trial id, from its folder (``train_trial_<id>_<index>_<config>``)."""
    match = re.search(r"_([0-9a-f]{5}_\d{5})(?:_|$)", Path(result.path).name)
    return match.group(1) if match else Path(result.path).name


def _plain(value: Any) -> Any:
    """A table cell as a plain Python value (NumPy scalars unwrapped)."""
    return value.item() if isinstance(value, np.generic) else value


def _error_line(error: BaseException) -> str:
    """The last line of a trial's error (Ray wraps it in its own traceback)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:500]
