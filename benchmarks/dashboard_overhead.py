"""What the notebook dashboard costs in training throughput, measured side by side.

Two identical trainers (``ACKTR('MlpPolicy', 'CartPole-v1', n_envs=8, seed=0)``, the
tutorial notebook's setup) run in one process:
one is iterated directly, the other is driven by ``Dashboard.run_blocking`` (plots
rendered to PNG at the dashboard's throttle, status and controls kept in sync, exactly as
in a notebook, minus the browser). After a warm-up (the K-FAC cold start, ``tf.function``
tracing and the first render), segments of ``--updates`` updates (default 600: one ``run_blocking`` call of the
tutorial, about 10 s) alternate between the
two, ``--repeats`` times each, in ABBA order so that drift in the machine's load cancels.
Each segment's throughput is its timesteps over its wall time; the medians are compared.
Every dashboard segment ends with the final render ``run_blocking`` always makes.

The last line is ``dashboard_overhead_ratio <x>`` with ``x = median throughput without
the dashboard / median throughput with it``: 1.0 means no overhead, 1.10 that training
under the dashboard takes 10 % longer.

    python benchmarks/dashboard_overhead.py [--updates 600] [--repeats 5] [--png out.png]
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from acktr_lab import ACKTR, Trainer
from acktr_lab.widgets import Dashboard


def batch_size(model: ACKTR) -> int:
    """Timesteps per update: ``n_steps · n_envs``."""
    env = model.get_env()
    return model.n_steps * (env.num_envs if env is not None else 1)


def make_trainer(total_updates: int, seed: int) -> Trainer:
    """A CartPole trainer long enough for ``total_updates`` updates."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=8, seed=seed)
    return model.trainer((total_updates + 1) * batch_size(model))


def plain_segment(trainer: Trainer, updates: int) -> float:
    """Throughput (timesteps/s) of ``updates`` updates, iterating the trainer."""
    start_steps, started = trainer.num_timesteps, time.perf_counter()
    for _ in itertools.islice(trainer, updates):
        pass
    return (trainer.num_timesteps - start_steps) / (time.perf_counter() - started)


def dashboard_segment(dashboard: Dashboard, updates: int) -> float:
    """Throughput (timesteps/s) of ``updates`` updates under ``Dashboard.run_blocking``."""
    trainer = dashboard.trainer
    start_steps, started = trainer.num_timesteps, time.perf_counter()
    done = dashboard.run_blocking(max_updates=updates)
    elapsed = time.perf_counter() - started
    if done != updates:
        raise RuntimeError(f"the dashboard made {done} updates, expected {updates}")
    return (trainer.num_timesteps - start_steps) / elapsed


def main(argv: list[str] | None = None) -> float:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--updates", type=int, default=600, help="updates per timed segment")
    parser.add_argument("--repeats", type=int, default=5, help="timed segments per variant")
    parser.add_argument("--warmup", type=int, default=30, help="untimed updates first (cold start is 10)")
    parser.add_argument("--redraw-interval", type=float, default=0.5, help="Dashboard(redraw_interval=...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--png", default=None, help="also save the dashboard's final plots here")
    args = parser.parse_args(argv)

    total_updates = args.warmup + args.repeats * args.updates
    plain = make_trainer(total_updates, args.seed)
    watched = make_trainer(total_updates, args.seed)
    dashboard = Dashboard(watched, redraw_interval=args.redraw_interval)
    dashboard.widget  # noqa: B018 - what displaying it does: the first render

    plain_segment(plain, args.warmup)
    dashboard_segment(dashboard, args.warmup)

    without: list[float] = []
    with_dashboard: list[float] = []
    for repeat in range(args.repeats):
        order = ("plain", "dashboard") if repeat % 2 == 0 else ("dashboard", "plain")
        for variant in order:
            if variant == "plain":
                without.append(plain_segment(plain, args.updates))
            else:
                with_dashboard.append(dashboard_segment(dashboard, args.updates))
        print(
            f"repeat {repeat + 1}/{args.repeats}: without {without[-1]:8.1f} fps   "
            f"with dashboard {with_dashboard[-1]:8.1f} fps",
            flush=True,
        )

    median_without = statistics.median(without)
    median_with = statistics.median(with_dashboard)
    print(
        f"updates per segment {args.updates}, batch {batch_size(plain.model)} timesteps, "
        f"redraw_interval {args.redraw_interval} s"
    )
    print(f"renders {dashboard.renders} (last took {dashboard.render_seconds * 1000:.0f} ms)")
    print(f"median throughput without dashboard {median_without:.1f} timesteps/s")
    print(f"median throughput with dashboard    {median_with:.1f} timesteps/s")
    if args.png:
        dashboard.plots.save(args.png)
        print(f"final plots saved to {args.png}")
    ratio = median_without / median_with
    print(f"dashboard_overhead_ratio {ratio:.4f}")
    return ratio


if __name__ == "__main__":
    main()
