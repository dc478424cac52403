"""Command line: ``acktr-lab`` (or ``python -m acktr_lab``).

- ``train ENV_ID``: train with the env's preset (:mod:`acktr_lab.presets`), a YAML file
  (``--config``) and flags; save the model, a plot of the run, its history and a replay; evaluate.
- ``compare HISTORY...``: overlay saved run histories on one figure.
- ``enjoy PATH``: run a saved agent, print its returns, write a GIF or MP4 of an episode.
- ``record-expert PATH``: record a saved agent's episodes as an expert dataset (``.npz``).
- ``bench``: the learning benchmark against the published results and SB3 A2C.
- ``sweep CONFIG.yml``: a sweep of ACKTR trials on Ray Tune (:mod:`acktr_lab.sweep.config`):
  the table of trials, the best configuration and model, a CSV and an aggregate plot.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from acktr_lab.evaluation import evaluate
from acktr_lab.policies import POLICIES
from acktr_lab.presets import Preset, get_preset, preset_from_yaml

#: Exit status for bad input (argparse's own).
USAGE_ERROR = 2


def _positive_int(text: str) -> int:
    """An argparse type: a whole number ≥ 1 (else argparse's one-line error, exit 2)."""
    value = _whole(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seed(text: str) -> int:
    """An argparse type: a seed, a whole number in [0, 2**63 - 10_001] (ACKTR's seed bounds;
    the evaluation after training uses ``seed + 10_000``)."""
    value = _whole(text)
    if not 0 <= value <= 2**63 - 10_001:
        raise argparse.ArgumentTypeError(f"must be between 0 and {2**63 - 10_001}, got {value}")
    return value


def _n_envs(text: str) -> int:
    """An argparse type: a number of envs, 1 to ``MAX_ENVS`` (refused before any env is made)."""
    from acktr_lab.hyperparameters import MAX_ENVS

    value = _positive_int(text)
    if value > MAX_ENVS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_ENVS}, got {value}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status 2."""


def _check_env_id(env_id: str) -> None:
    try:
        if env_id.startswith("ALE/"):
            get_preset(env_id).make_eval_env().close()  # registers the ALE envs, or says what to install
        else:
            gym.spec(env_id)
    except gym.error.Error as error:
        raise CliError(f"unknown environment {env_id!r}: {error}") from None


def _parse_set(items: list[str]) -> dict[str, Any]:
    """``["ent_coef=0.0", "lr_schedule=constant"]`` → values read as YAML scalars."""
    import yaml

    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set takes key=value, got {item!r}")
        try:
            values[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise CliError(f"--set {item!r}: {error}") from None
    return values


def _preset(args: argparse.Namespace) -> Preset:
    preset = preset_from_yaml(args.config, args.env_id) if args.config else get_preset(args.env_id)
    overrides = _parse_set(args.set or [])
    for flag, key in (("timesteps", "n_timesteps"), ("n_envs", "n_envs"), ("policy", "policy")):
        if getattr(args, flag) is not None:
            overrides[key] = getattr(args, flag)
    return preset.with_overrides(**overrides) if overrides else preset


def record_replay(
    model: Any, preset: Preset, path: Path, seed: int, max_frames: int = 1_000, deterministic: bool = True
) -> bool:
    """Render one episode to a GIF (or an MP4 where ffmpeg is installed); False when the
    env cannot render."""
    from acktr_lab.replay import episode_frames, write_replay

    if path.suffix == ".mp4":
        from matplotlib.animation import FFMpegWriter

        if not FFMpegWriter.isAvailable():
            raise CliError("writing an MP4 needs ffmpeg on the PATH; write a .gif instead")
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")  # off-screen frames need no display
    try:
        env = preset.make_eval_env(render_mode="rgb_array")
        frames, _ = episode_frames(model, env, seed=seed, max_frames=max_frames, deterministic=deterministic)
        env.close()
    except Exception:
        return False
    write_replay(frames, path)
    return True


def train(args: argparse.Namespace) -> int:
    from types import SimpleNamespace

    from acktr_lab import ACKTR
    from acktr_lab.history import HistoryWriter
    from acktr_lab.plots import TrainingPlots
    from acktr_lab.training_loop import run_learn

    _check_env_id(args.env_id)
    try:
        preset = _preset(args)
    except ValueError as error:
        raise CliError(str(error)) from None
    kwargs = preset.acktr_kwargs()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(
        f"Training ACKTR ({preset.policy}) on {args.env_id}: {preset.n_timesteps} steps, {preset.n_envs} envs, "
        f"seed {args.seed}, settings {kwargs}"
    )
    env = preset.make_env(seed=args.seed)
    try:
        model = ACKTR(
            preset.policy, env, seed=args.seed, verbose=args.verbose, tensorboard_log=args.tensorboard, **kwargs
        )
    except (TypeError, ValueError) as error:  # a setting of the wrong type or out of range
        env.close()
        raise CliError(f"bad setting: {error}") from None
    model.env_id = args.env_id
    trainer = model.trainer(preset.n_timesteps)
    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve)
    stem = out / f"acktr_{args.env_id.replace('/', '_')}"
    history = stem.with_name(stem.name + ".history.jsonl")
    with HistoryWriter(history) as writer:

        def record(report: Any) -> None:
            plots.add(report)
            writer.write(report)

        # learn()'s loop: the progress bar, --verbose's table and --tensorboard's logs
        run_learn(
            trainer,
            callback=SimpleNamespace(on_update=record),
            verbose=args.verbose,
            progress_bar=True,
            tensorboard_log=args.tensorboard,
            tb_log_name=f"ACKTR_{args.env_id.replace('/', '_')}",
        )
    model.save(stem.with_suffix(".zip"))
    plots.save(stem.with_suffix(".png"))
    returns = evaluate(model, preset.make_eval_env(), args.eval_episodes, seed=args.seed + 10_000)
    print(f"saved model  {stem.with_suffix('.zip')}")
    print(f"saved plots  {stem.with_suffix('.png')}")
    print(f"saved history {history} (acktr-lab compare {history} OTHER.history.jsonl)")
    if not args.no_gif and record_replay(model, preset, stem.with_suffix(".gif"), seed=args.seed):
        print(f"saved replay {stem.with_suffix('.gif')}")
    print(f"evaluation: mean return {np.mean(returns):.1f} ± {np.std(returns):.1f} over {len(returns)} episodes")
    return 0


def _load(path: str, env_id: str | None) -> tuple[Any, Preset]:
    from acktr_lab import ACKTR
    from acktr_lab.preprocessing import spaces_equal
    from acktr_lab.serialization import ModelFileError

    if not Path(path).is_file():
        raise CliError(f"no model file at {path}")
    try:
        model = ACKTR.load(path)
    except (ModelFileError, ValueError) as error:
        raise CliError(f"cannot load {path}: {error}") from None
    env_id = env_id or model.env_id
    if env_id is None:
        raise CliError(f"{path} does not say which env it was trained on; pass --env ENV_ID")
    _check_env_id(env_id)
    preset = get_preset(env_id)
    env = preset.make_eval_env()
    try:
        for what, mine, theirs in (
            ("observation", model.observation_space, env.observation_space),
            ("action", model.action_space, env.action_space),
        ):
            if not spaces_equal(mine, theirs):
                raise CliError(f"{path} does not fit {env_id}: its {what} space is {mine}, the env's is {theirs}")
    finally:
        env.close()
    return model, preset


def enjoy(args: argparse.Namespace) -> int:
    model, preset = _load(args.path, args.env)
    if args.episodes < 1:
        raise CliError(f"--episodes must be at least 1, got {args.episodes}")
    returns = evaluate(model, preset.make_eval_env(), args.episodes, seed=args.seed)
    for i, value in enumerate(returns):
        print(f"episode {i}: return {value:.1f}")
    print(f"mean return {np.mean(returns):.1f} ± {np.std(returns):.1f} over {len(returns)} episodes")
    if args.output:
        target = Path(args.output)
        if target.suffix not in (".gif", ".mp4"):
            raise CliError(f"--output must end in .gif or .mp4, got {target.name}")
        if record_replay(model, preset, target, seed=args.seed, deterministic=not args.stochastic):
            print(f"saved replay {target}")
        else:
            print(f"{preset.env_id} cannot render frames; no replay written")
    return 0


def record_expert(args: argparse.Namespace) -> int:
    from acktr_lab.expert import generate_expert_traj

    model, preset = _load(args.path, args.env)
    if args.episodes < 1:
        raise CliError(f"--episodes must be at least 1, got {args.episodes}")
    data = generate_expert_traj(
        model,
        args.output,
        env=preset.make_eval_env(),
        n_episodes=args.episodes,
        seed=args.seed,
        deterministic=args.deterministic,
        progress_bar=True,
        verbose=0,
    )
    returns = data["episode_returns"]
    print(f"recorded {len(returns)} episodes ({len(data['actions'])} steps), mean return {np.mean(returns):.1f}")
    print(f"saved expert data {Path(args.output).with_suffix('.npz')}")
    return 0


def bench(args: argparse.Namespace) -> int:
    from acktr_lab.benchmark import BENCHMARK_ENVS, run_benchmark

    unknown = sorted(set(args.envs or []) - set(BENCHMARK_ENVS))
    if unknown:
        raise CliError(f"no benchmark for {unknown}; choose from {list(BENCHMARK_ENVS)}")
    if args.seeds < 1 or args.first_seed < 0 or not 0 < args.budget_scale <= 1:
        raise CliError("--seeds must be ≥ 1, --first-seed ≥ 0 and --budget-scale in (0, 1]")
    missing = [path for path in args.merge if not Path(path).is_file()]
    if missing:
        raise CliError(f"--merge: no such file {missing}")
    if args.no_sb3 and args.algorithms is not None and "a2c" in args.algorithms:
        raise CliError("--no-sb3 and --algorithms a2c contradict each other")
    algorithms = args.algorithms or (["acktr"] if args.no_sb3 else ["acktr", "a2c"])
    if "a2c" in algorithms and importlib.util.find_spec("stable_baselines3") is None:
        raise CliError(
            "the A2C runs need Stable Baselines3, installed for benchmarks only: "
            "pip install torch==2.13.0 stable-baselines3 (or run ACKTR alone with --no-sb3)"
        )
    try:
        run_benchmark(
            envs=args.envs or list(BENCHMARK_ENVS),
            seeds=range(args.first_seed, args.first_seed + args.seeds),
            budget_scale=args.budget_scale,
            out=Path(args.out),
            algorithms=algorithms,
            resume=args.resume,
            merge=[Path(path) for path in args.merge],
        )
    except ValueError as error:  # a runs.json that cannot be resumed
        raise CliError(str(error)) from None
    return 0


def compare(args: argparse.Namespace) -> int:
    """Draw saved run histories on one figure: the first as the run, the others overlaid."""
    from acktr_lab.history import load_history
    from acktr_lab.plots import TrainingPlots
    from acktr_lab.serialization import ModelFileError

    labels = args.labels or [Path(path).name.removesuffix(".jsonl").removesuffix(".history") for path in args.histories]
    if len(labels) != len(args.histories):
        raise CliError(f"{len(args.histories)} histories but {len(labels)} labels")
    try:
        runs = [load_history(path) for path in args.histories]
    except (OSError, ModelFileError) as error:
        raise CliError(str(error)) from None
    if not runs[0]:
        raise CliError(f"{args.histories[0]} holds no update")
    plots = TrainingPlots()
    plots.extend(runs[0])
    for label, reports in zip(labels[1:], runs[1:]):
        plots.compare(reports, label)
    plots.save(args.output)
    print(f"saved comparison {args.output}: {labels[0]} (solid) against {', '.join(labels[1:]) or 'nothing'}")
    return 0


def _sweep_table(result: Any, mode: str) -> tuple[Any, Any]:
    """The trials best first (by final evaluation, as the best model is chosen), and what is
    printed of them: the searched arguments, seed, status, final evaluation and timesteps."""
    table = result.table.sort_values("eval/mean_return", ascending=mode == "min", na_position="last", kind="stable")
    shown = table[[*result.searched, "seed", "status"]].copy()
    for name in result.searched:  # as written (pandas would print 0.01 as 0.010 beside 0.001)
        shown[name] = [str(value) for value in table[name]]
    shown["final eval"] = [
        "-" if np.isnan(mean) else f"{mean:.1f} ± {std:.1f}"
        for mean, std in zip(table["eval/mean_return"], table["eval/std_return"])
    ]
    shown["timesteps"] = ["-" if np.isnan(t) else str(int(t)) for t in table["timesteps"]]
    return table, shown


def sweep(args: argparse.Namespace) -> int:
    """Run the sweep a YAML file describes on Ray Tune, with a progress bar; print and save the results."""
    import importlib.util

    from acktr_lab.extras import EXTRAS, missing_extra

    if "sweep" in EXTRAS:
        hint = missing_extra("sweep")
    else:
        hint = None if importlib.util.find_spec("ray") else "this needs ray: pip install 'acktr_lab[sweep]'"
    if hint is not None:
        raise CliError(f"sweeps run on Ray Tune; {hint}")
    try:
        from acktr_lab.sweep import run
        from acktr_lab.sweep.config import count_trials, load_sweep_config
        from acktr_lab.sweep.progress import SweepProgress
    except ImportError as error:  # ray without its tune extra
        raise CliError(f"sweeps need Ray Tune ({error}): pip install 'acktr_lab[sweep]'") from None

    try:
        config = load_sweep_config(args.config)
    except ValueError as error:
        raise CliError(str(error)) from None
    if args.num_cpus is not None and args.num_cpus < 1:
        raise CliError(f"--num-cpus must be at least 1, got {args.num_cpus}")
    if args.address is not None:
        config["address"] = args.address
    if args.num_cpus is not None:
        config["num_cpus"] = args.num_cpus
    _check_env_id(config["env"])
    trials, timesteps = count_trials(config), config["timesteps"]
    searched = ", ".join(config["space"]) or "seeds only"
    print(
        f"Sweeping ACKTR on {config['env']}: {trials} trials ({searched}; seeds {config['seeds']}), "
        f"{timesteps} steps each, scheduler {config.get('scheduler', 'fifo')}"
    )
    progress = SweepProgress(timesteps, trials=trials)
    try:
        result = run(**config, callbacks=[progress])
    except ValueError as error:  # what Tune's search space or scheduler refuses, before any trial runs
        raise CliError(str(error)) from None
    except (ConnectionError, RuntimeError) as error:  # no Ray cluster at --address
        if not isinstance(error, ConnectionError) and not isinstance(error.__cause__, ConnectionError):
            raise
        raise CliError(f"cannot reach Ray at {config.get('address')}: {error}") from None
    finally:
        progress.close()

    table, shown = _sweep_table(result, "max")  # best evaluation return first, as result.best_config
    print(shown.to_string(index=False))
    for _, row in table[table["status"] == "error"].iterrows():
        print(f"trial {row['trial_id']} failed: {row['error']}")
    out = Path(args.output) if args.output else result.experiment_path
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep_results.csv", index=False)
    print(f"saved results {out / 'sweep_results.csv'}")
    if result.best_trial is None:
        print("no trial finished with an evaluation: no best configuration")
        return 1
    best = table[table["trial_id"] == result.best_trial].iloc[0]
    settings = ", ".join(f"{k}={v}" for k, v in result.best_config.items())
    print(f"best configuration: {settings} (final eval {best['eval/mean_return']:.1f} ± {best['eval/std_return']:.1f})")
    if result.best_model_path is not None:
        print(f"best model   {result.best_model_path}")
    try:
        figure = result.aggregate_figure()
    except ValueError as error:  # no configuration with a finite final evaluation to group
        print(f"no aggregate plot: {error}")
    else:
        figure.savefig(out / "sweep_aggregate.png", dpi=100)
        print(f"saved plot   {out / 'sweep_aggregate.png'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="acktr-lab", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)

    p = commands.add_parser("train", help="train an ACKTR agent, save it with a plot and a replay, evaluate it")
    p.add_argument("env_id", help="a gymnasium env id, e.g. CartPole-v1 or ALE/Pong-v5")
    p.add_argument(
        "--config",
        help="a YAML file of settings (rl-baselines-zoo keys): its ACKTR settings replace the preset's; n_envs, "
        "n_timesteps, policy and normalize keep the preset's unless it sets them",
    )
    p.add_argument("--set", action="append", metavar="KEY=VALUE", help="change one setting (repeatable)")
    p.add_argument("--timesteps", type=int, default=None, help="training steps (default: the preset's)")
    p.add_argument("--n-envs", type=_n_envs, default=None, help="parallel envs (default: the preset's)")
    p.add_argument("--policy", choices=sorted(POLICIES), default=None, help="default: the preset's")
    p.add_argument("--seed", type=_seed, default=0)
    p.add_argument("--tensorboard", default=None, metavar="DIR", help="write TensorBoard logs to DIR")
    p.add_argument("--out", default="runs", help="folder for the model, plot, run history and replay")
    p.add_argument("--eval-episodes", type=_positive_int, default=10)
    p.add_argument("--verbose", type=int, default=0)
    p.add_argument("--no-gif", action="store_true", help="skip the replay GIF")
    p.set_defaults(run=train)

    def saved_agent_command(name: str, help_text: str, episodes: int) -> argparse.ArgumentParser:
        p = commands.add_parser(name, help=help_text)
        p.add_argument("path", help="a model saved by acktr_lab, or a Stable Baselines 2 ACKTR .zip or .pkl")
        p.add_argument("--env", default=None, help="env id (default: the one the model was trained on)")
        p.add_argument("--episodes", type=int, default=episodes)
        p.add_argument("--seed", type=_seed, default=0)
        return p

    p = saved_agent_command("enjoy", "run a saved agent: returns, and a GIF or MP4 of an episode", 5)
    p.add_argument("--output", default=None, metavar="FILE.gif|FILE.mp4", help="write a replay of one episode")
    p.add_argument("--stochastic", action="store_true", help="sample actions in the replay")
    p.set_defaults(run=enjoy)

    p = saved_agent_command("record-expert", "record a saved agent's episodes as expert data (.npz)", 20)
    p.add_argument("--output", default="expert", help="the .npz to write")
    p.add_argument("--deterministic", action="store_true", help="record the greedy policy")
    p.set_defaults(run=record_expert)

    p = commands.add_parser("compare", help="overlay saved run histories (.history.jsonl) on one figure (PNG)")
    p.add_argument("histories", nargs="+", help="history files written by train, a Dashboard or HistoryWriter")
    p.add_argument("--labels", nargs="*", default=None, help="one per history (default: the file names)")
    p.add_argument("--output", default="compare.png", help="the PNG to write")
    p.set_defaults(run=compare)

    p = commands.add_parser("bench", help="the learning benchmark (ACKTR against the zoo and SB3 A2C)")
    p.add_argument("--envs", nargs="*", default=None, help="default: every benchmark env")
    p.add_argument("--seeds", type=int, default=3, help="how many seeds (default 3)")
    p.add_argument("--first-seed", type=int, default=0, help="seeds FIRST .. FIRST+SEEDS-1 (default 0)")
    p.add_argument("--budget-scale", type=float, default=1.0, help="fraction of each zoo budget to train")
    p.add_argument("--out", default="benchmarks/results")
    p.add_argument("--no-sb3", action="store_true", help="ACKTR only (SB3 A2C needs torch and stable-baselines3)")
    p.add_argument(
        "--algorithms", nargs="+", choices=("acktr", "a2c"), default=None, help="default: both (acktr with --no-sb3)"
    )
    p.add_argument(
        "--resume", action="store_true", help="keep the runs already in OUT/runs.json and train only the others"
    )
    p.add_argument(
        "--merge",
        nargs="+",
        default=[],
        metavar="RUNS.json",
        help="runs.json files of benchmarks run elsewhere (e.g. one seed per process): added, not trained again",
    )
    p.set_defaults(run=bench)

    p = commands.add_parser("sweep", help="a sweep of ACKTR trials on Ray Tune from a YAML file (pip extra: sweep)")
    p.add_argument("config", metavar="CONFIG.yml", help="the sweep: env, space, seeds, timesteps, ...")
    p.add_argument("--address", default=None, help="an existing Ray cluster ('auto', 'ray://head:10001')")
    p.add_argument("--num-cpus", type=int, default=None, help="CPUs of the local Ray started for the sweep")
    p.add_argument("--output", default=None, metavar="DIR", help="for the CSV and plot (default: the sweep's folder)")
    p.set_defaults(run=sweep)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args))
    except CliError as error:
        print(f"acktr-lab {args.command}: error: {error}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    sys.exit(main())
