"""The learning benchmark: ACKTR's presets against the published SB2 zoo ACKTR scores and
Stable Baselines3 A2C with its zoo settings, on the same envs, budgets and seeds.

Every run is evaluated deterministically every ``budget / 15`` steps (10 episodes) and at
the end (20 episodes), on a fresh env whose episode ``i`` starts from ``reset(seed=10_000
+ i)``. The results go to ``out/results.md`` (with the machine they ran on) and one
learning-curve PNG per env. A2C's runs are :mod:`acktr_lab.benchmark_a2c`'s, which
checkpoints them into ``out/checkpoints/`` so that ``resume`` carries a stopped run on. SB3
and PyTorch are imported only there and only when asked: they are never dependencies of
acktr_lab (``pip install torch==2.13.0 stable-baselines3``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from acktr_lab.benchmark_runs import ALGORITHMS, EVAL_SEED, Run, eval_points, machine
from acktr_lab.evaluation import evaluate
from acktr_lab.presets import PRESETS, Preset

BENCHMARK_ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1", "LunarLander-v3", "LunarLanderContinuous-v3")


def run_acktr(preset: Preset, seed: int, budget: int) -> Run:
    from acktr_lab import ACKTR

    run = Run(ALGORITHMS["acktr"], preset.env_id, seed, budget)
    started = time.perf_counter()
    model = ACKTR(preset.policy, preset.make_env(seed=seed), seed=seed, **preset.acktr_kwargs())
    points = eval_points(budget)
    for report in model.trainer(budget):
        while points and report.timesteps >= points[0]:
            points.pop(0)
            run.curve.append((report.timesteps, float(np.mean(evaluate(model, preset.make_eval_env(), 10, EVAL_SEED)))))
    run.final = evaluate(model, preset.make_eval_env(), 20, EVAL_SEED)
    run.stamp(started)
    return run


def _provenance(runs: list[Run]) -> str:
    """When and where the table's runs ran, from their stamps (runs of an older ``runs.json``
    carry none; a table of only such runs says when it was written)."""
    finished = sorted(run.finished for run in runs if run.finished)
    if not finished:
        return f"Written {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {machine()}."
    machines = " and ".join(sorted({run.machine for run in runs if run.machine}))
    unstamped = len(runs) - len(finished)
    note = ""
    if unstamped:
        note = f" {unstamped} of the {len(runs)} runs carry no time or machine (run before runs were stamped)."
    return f"Runs finished {finished[0]} – {finished[-1]} on {machines}.{note}"


def _fmt(value: float | None) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:,.1f}"


def _steps(value: int | None) -> str:
    return "never" if value is None else f"{value:,}"


def _seeds_text(seeds: list[int], env_seeds: dict[str, list[int]]) -> str:
    """The seeds the table holds: ``seeds``, or where envs hold different seeds (a table merged
    from benchmarks of different lengths), first the seeds of the envs that hold every seed
    asked for (else of the most envs), then the others by env."""
    groups: dict[tuple[int, ...], list[str]] = {}
    for env_id, ran in env_seeds.items():
        groups.setdefault(tuple(ran), []).append(env_id)
    if len(groups) <= 1:
        return f"Seeds {sorted({*seeds, *(s for ran in groups for s in ran)})}"
    common, *others = sorted(groups, key=lambda ran: (not set(seeds) <= set(ran), -len(groups[ran])))
    return "; ".join([f"Seeds {list(common)}", *(f"{', '.join(groups[ran])}: seeds {list(ran)}" for ran in others)])


def _plot_curves(axes: Any, group: list[Run], algorithm: str, colour: str) -> None:
    """One algorithm's curves in one colour: each seed's thin, and where every seed was
    evaluated as often, their mean at each evaluation (mean step, mean score) bold."""
    for run in group:
        steps, scores = zip(*run.curve) if run.curve else ((), ())
        axes.plot(steps, scores, color=colour, alpha=0.3, linewidth=0.8)
    lengths = {len(run.curve) for run in group}
    if len(group) > 1 and len(lengths) == 1 and 0 not in lengths:
        curves = np.array([run.curve for run in group], dtype=float)  # [seed, evaluation, (step, score)]
        mean = curves.mean(axis=0)
        axes.plot(mean[:, 0], mean[:, 1], color=colour, linewidth=2, label=f"{algorithm}, mean of {len(group)} seeds")
    else:
        axes.plot([], [], color=colour, label=f"{algorithm}, {len(group)} seed(s)")


def write_results(runs: list[Run], out: Path, seeds: list[int], budget_scale: float) -> Path:
    """``out/results.md`` and ``out/<env>.png`` from the runs. ``seeds``: those the benchmark
    was asked for. A row that lacks one of them, or a seed another row of its env holds, says
    which seeds its values are and which were not run."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    env_seeds = {
        env_id: sorted({run.seed for run in runs if run.env_id == env_id})
        for env_id in dict.fromkeys(run.env_id for run in runs)
    }
    lines = [
        "# Learning benchmark",
        "",
        _provenance(runs),
        f"{_seeds_text(seeds, env_seeds)}; budgets are {budget_scale:g} × each preset's. "
        "Final: deterministic evaluation, 20 episodes per seed, mean ± std over all of them; "
        "first ≥ zoo: the first 10-episode evaluation (every budget/15 steps) "
        "at or above the published SB2 ACKTR score, per seed.",
        "",
        "| env | algorithm | budget | final (mean ± std) | per-seed finals | first ≥ zoo, per seed "
        "| zoo ACKTR (SB2) | minutes |",
        "|---|---|--:|--:|---|---|--:|--:|",
    ]
    for env_id in dict.fromkeys(run.env_id for run in runs):
        preset = PRESETS[env_id]
        figure = Figure(figsize=(6, 3.5), dpi=100)
        axes = figure.add_subplot()
        for colour, algorithm in enumerate(dict.fromkeys(run.algorithm for run in runs if run.env_id == env_id)):
            mine = (run for run in runs if run.env_id == env_id and run.algorithm == algorithm)
            group = sorted(mine, key=lambda run: run.seed)
            finals = [value for run in group for value in run.final]
            firsts = ", ".join(_steps(run.first_reaching(preset.zoo_score)) for run in group)
            per_seed = ", ".join(_fmt(float(np.mean(run.final))) for run in group)
            ran = [run.seed for run in group]
            missing = sorted({*seeds, *env_seeds[env_id]} - set(ran))
            if missing:  # a resumed or stopped benchmark: say which seeds the values are
                per_seed += f" (seeds {', '.join(map(str, ran))}; not run: {', '.join(map(str, missing))})"
            minutes = sum(run.seconds for run in group) / 60
            lines.append(
                f"| {env_id} | {algorithm} | {group[0].budget:,} | {np.mean(finals):,.1f} ± {np.std(finals):,.1f} "
                f"| {per_seed} | {firsts} | {_fmt(preset.zoo_score)} | {minutes:.1f} |"
            )
            _plot_curves(axes, group, algorithm, f"C{colour}")
        if preset.zoo_score is not None:
            axes.axhline(preset.zoo_score, color="grey", linestyle="--", label="SB2 zoo ACKTR")
        axes.set(title=env_id, xlabel="timesteps", ylabel="deterministic evaluation")
        axes.legend(fontsize=6)
        figure.tight_layout()
        FigureCanvasAgg(figure).print_png(str(out / f"{env_id.replace('/', '_')}.png"))
    lines += [
        "",
        "Learning curves: " + ", ".join(f"`{e.replace('/', '_')}.png`" for e in dict.fromkeys(r.env_id for r in runs)),
    ]
    path = out / "results.md"
    path.write_text("\n".join(lines).rstrip() + "\n")
    (out / "runs.json").write_text(json.dumps([dataclasses.asdict(run) for run in runs], indent=1))
    return path


def budget_of(env_id: str, budget_scale: float) -> int:
    """The timesteps a benchmark run of ``env_id`` trains: ``budget_scale`` × the preset's."""
    return max(1, round(PRESETS[env_id].n_timesteps * budget_scale))


def load_runs(path: Path, budget_scale: float) -> list[Run]:
    """The runs of an earlier benchmark (its ``runs.json``), to resume it.

    Raises ``ValueError`` naming the problem when the file is not such a list of runs, or
    when a run trained another budget than ``budget_scale`` gives its env: a table must not
    mix budgets.
    """
    try:
        records = json.loads(path.read_text())
        runs = [
            Run(
                algorithm=str(r["algorithm"]),
                env_id=str(r["env_id"]),
                seed=int(r["seed"]),
                budget=int(r["budget"]),
                curve=[(int(t), float(score)) for t, score in r["curve"]],
                final=[float(value) for value in r["final"]],
                seconds=float(r["seconds"]),
                finished=str(r.get("finished", "")),
                machine=str(r.get("machine", "")),
            )
            for r in records
        ]
    except (ValueError, TypeError, KeyError) as error:  # JSONDecodeError is a ValueError
        raise ValueError(f"{path} is not a benchmark's runs.json: {error!r}") from None
    for run in runs:
        if run.algorithm not in ALGORITHMS.values() or run.env_id not in BENCHMARK_ENVS:
            raise ValueError(f"{path}: unknown run {run.algorithm!r} on {run.env_id!r}")
        if run.budget != budget_of(run.env_id, budget_scale):
            raise ValueError(
                f"{path}: {run.algorithm} on {run.env_id} seed {run.seed} trained {run.budget:,} steps, "
                f"not the {budget_of(run.env_id, budget_scale):,} of --budget-scale {budget_scale:g}"
            )
    return runs


def merge_runs(paths: Iterable[Path], budget_scale: float) -> list[Run]:
    """The runs of several ``runs.json`` files (:func:`load_runs`), in order, each (env,
    algorithm, seed) once. ``ValueError`` naming both files when two hold different runs
    of the same (env, algorithm, seed): a table must not silently pick one."""
    runs: dict[tuple[str, str, int], tuple[Run, Path]] = {}
    for path in paths:
        for run in load_runs(path, budget_scale):
            key = (run.env_id, run.algorithm, run.seed)
            if key in runs and runs[key][0] != run:
                raise ValueError(
                    f"{runs[key][1]} and {path} hold different runs of {run.algorithm} on {run.env_id} "
                    f"seed {run.seed}; keep one of them"
                )
            runs.setdefault(key, (run, path))
    return [run for run, _ in runs.values()]


def run_benchmark(
    envs: Iterable[str],
    seeds: Iterable[int],
    budget_scale: float,
    out: Path,
    progress: Callable[[str], None] = print,
    algorithms: Iterable[str] | None = None,
    resume: bool = False,
    merge: Iterable[Path] = (),
) -> Path:
    """Train every (env, algorithm, seed), then write the results (see the module docstring).

    ``algorithms``: keys of :data:`ALGORITHMS` (default: both). With ``resume``, the runs
    already in ``out/runs.json`` are kept and not trained again, so a benchmark of many
    hours can be stopped and carried on; the table then holds them all. An A2C run stopped
    part-way carries on from its last checkpoint in ``out/checkpoints/`` (an ACKTR run
    starts again); without ``resume`` a checkpoint there is deleted when its run starts
    afresh. ``merge``: the ``runs.json`` of benchmarks run elsewhere (other processes or
    machines, e.g. one seed each), whose runs join the table and are not trained again. A run (env, algorithm,
    seed) found in two files must be the same run in both (``ValueError`` otherwise), and
    every file must hold ``budget_scale``'s budgets.
    """
    from tqdm.auto import tqdm

    from acktr_lab.benchmark_a2c import checkpoint_path, run_sb3_a2c  # imports SB3 only when a run starts

    envs, seeds, merge = list(envs), list(seeds), [Path(path) for path in merge]
    algorithms = list(algorithms) if algorithms is not None else list(ALGORITHMS)
    unknown = sorted(set(algorithms) - set(ALGORITHMS))
    if unknown:
        raise ValueError(f"unknown algorithms {unknown}; choose from {list(ALGORITHMS)}")
    sources = [out / "runs.json"] if resume and (out / "runs.json").exists() else []
    runs = merge_runs([*sources, *merge], budget_scale)
    if sources or merge:
        progress(f"resuming: {len(runs)} runs from {', '.join(map(str, [*sources, *merge]))}")
    done = {(run.env_id, run.algorithm, run.seed) for run in runs}
    # Interleaved per seed, so that a benchmark stopped early still compares both on its seeds.
    jobs = [
        (env_id, algorithm, seed)
        for env_id in envs
        for seed in seeds
        for algorithm in algorithms
        if (env_id, ALGORITHMS[algorithm], seed) not in done
    ]
    for env_id, algorithm, seed in tqdm(jobs, unit="run", desc="benchmark"):
        budget = budget_of(env_id, budget_scale)
        if algorithm == "acktr":
            run = run_acktr(PRESETS[env_id], seed, budget)
        else:
            run = run_sb3_a2c(env_id, seed, budget, checkpoint_path(out, env_id, seed), resume)
        runs.append(run)
        progress(f"{run.algorithm} {env_id} seed {seed}: final {np.mean(run.final):.1f} in {run.seconds / 60:.1f} min")
        # After every run: a long benchmark stopped early keeps its rows (and --resume carries on).
        write_results(runs, out, seeds, budget_scale)
        if algorithm == "a2c":  # recorded: its checkpoint is no longer needed
            checkpoint_path(out, env_id, seed).unlink(missing_ok=True)
    path = write_results(runs, out, seeds, budget_scale)
    progress(f"wrote {path}")
    return path
