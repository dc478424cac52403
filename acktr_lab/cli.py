"""Command line: ``python -m acktr_lab train CartPole-v1`` trains, saves, plots and shows an agent."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np

from acktr_lab.evaluation import evaluate

#: rl-baselines-zoo settings (Stable Baselines 2) for the classic tasks; anything else runs with defaults.
ZOO_SETTINGS: dict[str, dict[str, object]] = {
    "CartPole-v1": {"n_envs": 8, "ent_coef": 0.0, "timesteps": 200_000},
    "Pendulum-v1": {
        "n_envs": 4,
        "n_steps": 16,
        "learning_rate": 0.06,
        "lr_schedule": "constant",
        "ent_coef": 0.0,
        "timesteps": 2_000_000,
    },
    "Acrobot-v1": {"n_envs": 16, "ent_coef": 0.0, "timesteps": 500_000},
    "LunarLander-v3": {"n_envs": 8, "n_steps": 128, "lr_schedule": "constant", "timesteps": 1_000_000},
}


def record_gif(model: object, env_id: str, path: Path, seed: int, max_frames: int = 300) -> bool:
    """Render one deterministic episode to a GIF; False when the env cannot render."""
    try:
        from matplotlib.animation import PillowWriter
        from matplotlib.figure import Figure

        # Off-screen frames need no display: keep SDL (pygame) from probing for one and
        # printing "XDG_RUNTIME_DIR is invalid" on headless machines.
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        env = gym.make(env_id, render_mode="rgb_array")
        obs, _ = env.reset(seed=seed)
        frames = [env.render()]
        for _ in range(max_frames):
            action, _ = model.predict(obs, deterministic=True)  # type: ignore[attr-defined]
            obs, _, terminated, truncated, _ = env.step(action)
            frames.append(env.render())
            if terminated or truncated:
                break
        env.close()
    except Exception:
        return False
    figure = Figure(figsize=(frames[0].shape[1] / 100, frames[0].shape[0] / 100), dpi=100)
    axes = figure.add_axes((0, 0, 1, 1))
    axes.axis("off")
    image = axes.imshow(frames[0])
    writer = PillowWriter(fps=30)
    with writer.saving(figure, str(path), dpi=100):
        for frame in frames[::2]:
            image.set_data(frame)
            writer.grab_frame()
    return True


def train(args: argparse.Namespace) -> int:
    from acktr_lab import ACKTR
    from acktr_lab.plots import TrainingPlots

    settings = dict(ZOO_SETTINGS.get(args.env_id, {}))
    timesteps = int(args.timesteps or settings.pop("timesteps", 100_000))
    settings.pop("timesteps", None)
    n_envs = int(args.n_envs or settings.pop("n_envs", 1))
    settings.pop("n_envs", None)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(f"Training ACKTR on {args.env_id}: {timesteps} steps, {n_envs} envs, seed {args.seed}, settings {settings}")
    model = ACKTR("MlpPolicy", args.env_id, n_envs=n_envs, seed=args.seed, verbose=args.verbose, **settings)
    trainer = model.trainer(timesteps)
    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve)
    from tqdm.auto import tqdm

    with tqdm(total=timesteps, unit="step", dynamic_ncols=True) as bar:
        for report in trainer:
            plots.add(report)
            bar.update(min(report.timesteps, timesteps) - bar.n)
            if model.episode_returns:
                bar.set_postfix(ep_return=f"{np.mean(model.episode_returns):.1f}", refresh=False)
    stem = out / f"acktr_{args.env_id}"
    model.save(stem.with_suffix(".zip"))
    plots.save(stem.with_suffix(".png"))
    returns = evaluate(model, args.env_id, args.eval_episodes, seed=args.seed + 10_000)
    print(f"saved model  {stem.with_suffix('.zip')}")
    print(f"saved plots  {stem.with_suffix('.png')}")
    if not args.no_gif and record_gif(model, args.env_id, stem.with_suffix(".gif"), seed=args.seed):
        print(f"saved replay {stem.with_suffix('.gif')}")
    print(f"evaluation: mean return {np.mean(returns):.1f} ± {np.std(returns):.1f} over {len(returns)} episodes")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="acktr_lab", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    train_parser = commands.add_parser("train", help="train an ACKTR agent, save it with a plot and evaluate it")
    train_parser.add_argument("env_id", help="a gymnasium env id, e.g. CartPole-v1")
    train_parser.add_argument("--timesteps", type=int, default=None, help="training steps (default: per env)")
    train_parser.add_argument("--n-envs", type=int, default=None, help="parallel envs (default: zoo setting)")
    train_parser.add_argument("--seed", type=int, default=0)
    train_parser.add_argument("--out", default="runs", help="folder for the model, plot and replay")
    train_parser.add_argument("--eval-episodes", type=int, default=10)
    train_parser.add_argument("--verbose", type=int, default=0)
    train_parser.add_argument("--no-gif", action="store_true", help="skip the replay GIF")
    args = parser.parse_args(argv)
    return train(args)


if __name__ == "__main__":
    sys.exit(main())
