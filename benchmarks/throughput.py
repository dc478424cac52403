"""Training throughput, start-up and peak memory: ACKTR (acktr_lab) against Stable Baselines3 A2C.

Side by side in one run, on the same machine, each training run in its own fresh process
(so that peak memory is that run's alone) with one thread for TensorFlow and for PyTorch:

* ACKTR with its defaults (``ACKTR("MlpPolicy", env_id, n_envs=N, seed=s)``), iterated
  through its step-wise trainer, each update timed;
* SB3 A2C with its defaults (``A2C("MlpPolicy", make_vec_env(env_id, N), seed=s)``, its envs
  made without a render mode, as ACKTR's);
* random actions on the same ``SyncVectorEnv`` of N envs: the env's own cost, the ceiling
  (measured with every seed, between the two training runs; the median is reported).

Configurations (issue #14): CartPole-v1 ×8, Acrobot-v1 ×16, Pendulum-v1 ×4, each for
``--steps`` steps (150k) and ``--seeds`` seeds (3), ACKTR and A2C alternating per seed.

Reported per configuration: the median training fps over seeds and its ratio to A2C's,
the fraction of the (median) random-policy fps that training reaches, peak resident memory
(``ru_maxrss`` of the run's process) and its ratio to A2C's, and ACKTR's start-up: the
first update's time (compilation included) against the median update, the slowest later
update, and the number of traces (compiled functions: update plans, acting, reads).

The last line is ``throughput_ratio <cartpole> <acrobot> <pendulum>`` (ACKTR fps / A2C fps).

    pip install torch==2.13.0 stable-baselines3   # the A2C rows only; never a dependency
    python benchmarks/throughput.py [--steps 150000] [--seeds 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

CONFIGS = (("CartPole-v1", 8), ("Acrobot-v1", 16), ("Pendulum-v1", 4))
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def worker_acktr(env_id: str, n_envs: int, steps: int, seed: int) -> dict[str, Any]:
    from acktr_lab import ACKTR

    started = time.perf_counter()
    model = ACKTR("MlpPolicy", env_id, n_envs=n_envs, seed=seed, n_cpu_tf_sess=1)
    durations: list[float] = []
    last = time.perf_counter()
    timesteps = 0
    for report in model.trainer(steps):
        now = time.perf_counter()
        durations.append(now - last)
        last, timesteps = now, report.timesteps
    total = time.perf_counter() - started
    # every compiled function traced: the update plans and the stages they share, acting and
    # values through TensorFlow, the NumPy actor's noise draw and weight read, the eigenvalue read
    traces = sum(model.learner.compiled_functions().values())
    return {
        "fps": timesteps / total,
        "seconds": total,
        "peak_mib": _peak_mib(),
        "first_update_ms": 1e3 * durations[0],
        "median_update_ms": 1e3 * statistics.median(durations),
        "slowest_later_update_ms": 1e3 * max(durations[1:]),
        "traces": traces,
    }


def worker_a2c(env_id: str, n_envs: int, steps: int, seed: int) -> dict[str, Any]:  # pragma: no cover
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env

    torch.set_num_threads(1)
    started = time.perf_counter()
    # No render mode, as ACKTR's envs (make_vec_env's default "rgb_array" costs LunarLander
    # a Box2D body per engine puff; see acktr_lab.benchmark_a2c.make_sb3_a2c).
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs={"render_mode": None})
    model = A2C("MlpPolicy", venv, seed=seed, device="cpu")
    model.learn(steps)
    total = time.perf_counter() - started
    return {"fps": model.num_timesteps / total, "seconds": total, "peak_mib": _peak_mib()}


def worker_random(env_id: str, n_envs: int, steps: int, seed: int) -> dict[str, Any]:
    import gymnasium as gym

    env = gym.make_vec(env_id, num_envs=n_envs, vectorization_mode="sync")
    env.reset(seed=seed)
    env.action_space.seed(seed)
    started = time.perf_counter()
    for _ in range(steps // n_envs):
        env.step(env.action_space.sample())
    return {"fps": (steps // n_envs) * n_envs / (time.perf_counter() - started), "peak_mib": _peak_mib()}


WORKERS = {"acktr": worker_acktr, "a2c": worker_a2c, "random": worker_random}


def run_worker(kind: str, env_id: str, n_envs: int, steps: int, seed: int) -> dict[str, Any]:
    """One run in a fresh process with one thread; its JSON result."""
    command = [sys.executable, __file__, "--worker", kind, env_id, str(n_envs), str(steps), str(seed)]
    done = subprocess.run(command, env={**os.environ, **ONE_THREAD}, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{kind} {env_id} seed {seed} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="smoke run: 20k steps, 1 seed")
    parser.add_argument("--envs", nargs="+", default=[env for env, _ in CONFIGS], help="a subset of the configurations")
    parser.add_argument("--worker", nargs=5, metavar=("KIND", "ENV", "N_ENVS", "STEPS", "SEED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        kind, env_id, n_envs, steps, seed = args.worker
        print(json.dumps(WORKERS[kind](env_id, int(n_envs), int(steps), int(seed))), flush=True)
        return
    steps, seeds = (20_000, 1) if args.quick else (args.steps, args.seeds)
    print(
        f"{platform.platform()}, {os.cpu_count()} CPU cores, Python {platform.python_version()}; "
        f"{steps} steps, seeds 0..{seeds - 1}, one thread per run, each run in its own process",
        flush=True,
    )
    rows: list[dict[str, Any]] = []
    ratios: dict[str, float] = {}
    for env_id, n_envs in CONFIGS:
        if env_id not in args.envs:
            continue
        results: dict[str, list[dict[str, Any]]] = {"acktr": [], "a2c": [], "random": []}
        for seed in range(seeds):
            # the env's own cost measured with every seed too, between the training runs:
            # the machine's speed drifts, and a single reading moved the fraction by ±10%
            for kind in ("acktr", "random", "a2c") if seed % 2 == 0 else ("a2c", "random", "acktr"):
                result = run_worker(kind, env_id, n_envs, steps, seed)
                results[kind].append(result)
                print(f"  {env_id} ×{n_envs} {kind} seed {seed}: {result['fps']:,.0f} fps", flush=True)
        acktr, a2c = results["acktr"], results["a2c"]

        def median(runs: list[dict[str, Any]], key: str) -> float:
            return statistics.median(r[key] for r in runs)

        env_fps = median(results["random"], "fps")

        ratios[env_id] = median(acktr, "fps") / median(a2c, "fps")
        rows.append(
            {
                "config": f"{env_id} ×{n_envs}",
                "acktr_fps": median(acktr, "fps"),
                "a2c_fps": median(a2c, "fps"),
                "ratio": ratios[env_id],
                "env_fps": env_fps,
                "acktr_of_env": median(acktr, "fps") / env_fps,
                "a2c_of_env": median(a2c, "fps") / env_fps,
                "acktr_mib": median(acktr, "peak_mib"),
                "a2c_mib": median(a2c, "peak_mib"),
                "first_ms": median(acktr, "first_update_ms"),
                "update_ms": median(acktr, "median_update_ms"),
                "slowest_ms": median(acktr, "slowest_later_update_ms"),
                "traces": median(acktr, "traces"),
            }
        )
    print()
    print(
        "| config | ACKTR fps | A2C fps | ratio | random-policy fps | ACKTR / env | A2C / env | "
        "ACKTR MiB | A2C MiB | memory ratio | first update ms | median update ms | slowest later ms | traces |"
    )
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(
            f"| {r['config']} | {r['acktr_fps']:,.0f} | {r['a2c_fps']:,.0f} | {r['ratio']:.2f} | {r['env_fps']:,.0f} | "
            f"{r['acktr_of_env']:.3f} | {r['a2c_of_env']:.3f} | {r['acktr_mib']:.0f} | {r['a2c_mib']:.0f} | "
            f"{r['acktr_mib'] / r['a2c_mib']:.2f} | {r['first_ms']:.0f} | {r['update_ms']:.1f} | "
            f"{r['slowest_ms']:.0f} | {r['traces']:.0f} |"
        )
    print("\nthroughput_ratio " + " ".join(f"{ratios.get(env, float('nan')):.3f}" for env, _ in CONFIGS))


if __name__ == "__main__":
    main()
