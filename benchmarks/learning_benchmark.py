"""The learning benchmark: ACKTR's presets against the published SB2 zoo ACKTR scores and
Stable Baselines3 A2C (its zoo settings) on the same envs, budgets and seeds.

    pip install torch==2.13.0 stable-baselines3   # for the A2C rows only; never a dependency
    python benchmarks/learning_benchmark.py                      # everything, 3 seeds (many hours on 2 cores)
    python benchmarks/learning_benchmark.py --envs CartPole-v1 --seeds 3
    python benchmarks/learning_benchmark.py --budget-scale 0.1 --no-sb3   # a quick look
    python benchmarks/learning_benchmark.py --envs LunarLanderContinuous-v3 --algorithms a2c \
        --resume --out benchmarks/results/lunarlander_continuous   # carry on: train only what runs.json lacks
    python benchmarks/learning_benchmark.py --envs Pendulum-v1 --first-seed 2 --seeds 1 --out seed2
    python benchmarks/learning_benchmark.py --envs Pendulum-v1 --merge seed2/runs.json --resume   # one table

Writes ``benchmarks/results/results.md`` and one learning-curve PNG per env; the same as
``acktr-lab bench`` (see :mod:`acktr_lab.benchmark`).
"""

from __future__ import annotations

import sys

from acktr_lab.cli import main

if __name__ == "__main__":
    sys.exit(main(["bench", *sys.argv[1:]]))
