"""What reporting to Ray Tune costs a trial, by report interval.

One CartPole-v1 trial (8 envs, ACKTR defaults, seed 0) of ``--timesteps`` steps, run:

- alone, through the step-wise trainer (no Ray): the baseline;
- as a one-trial sweep (``acktr_lab.sweep.run``) reporting every 1, 10 and 50 updates,
  with a checkpoint only at the end (grid/ASHA) and, for PBT, with one at every report.

The trial's own training time is Tune's ``time_total_s`` (the trainable's wall time, without
Ray's start-up, the process start or TensorFlow's import); the overhead is its ratio to the
baseline. Run: ``python benchmarks/sweep_overhead.py`` (needs the ``sweep`` extra).
"""

from __future__ import annotations

import argparse
import platform
import time


def baseline(timesteps: int) -> float:
    from acktr_lab import ACKTR

    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=8, seed=0, n_cpu_tf_sess=1)
    start = time.perf_counter()
    for _ in model.trainer(timesteps):
        pass
    return time.perf_counter() - start


def in_tune(timesteps: int, report_every: int, checkpoint_every: int | None) -> float:
    from acktr_lab.sweep import run

    result = run(
        "CartPole-v1",
        {},
        seeds=[0],
        timesteps=timesteps,
        fixed={"n_envs": 8},
        report_every=report_every,
        checkpoint_every=checkpoint_every,
        eval_episodes=1,
        storage_path="/tmp/acktr_lab_sweep_overhead",
    )
    history = next(iter(result.histories.values()))
    return float(history["time_total_s"].iloc[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=100_000)
    args = parser.parse_args()
    from acktr_lab.sweep import start_ray

    start_ray(num_cpus=2)
    base = baseline(args.timesteps)
    updates = args.timesteps // 160
    print(f"{platform.processor() or platform.machine()}, {args.timesteps:,} steps ({updates:,} updates)")
    print(f"{'setting':<40} {'seconds':>8} {'ratio':>6}")
    print(f"{'trainer alone (no Ray)':<40} {base:8.1f} {1.0:6.2f}")
    for report_every, checkpoint_every, label in (
        (1, None, "report every update"),
        (10, None, "report every 10 updates (default)"),
        (50, None, "report every 50 updates"),
        (10, 1, "every 10, checkpoint each report (PBT)"),
    ):
        seconds = in_tune(args.timesteps, report_every, checkpoint_every)
        print(f"{label:<40} {seconds:8.1f} {seconds / base:6.2f}")


if __name__ == "__main__":
    main()
