"""What one benchmark run is: an algorithm on an env with a seed, its evaluation curve, final
score and provenance, and when a run is evaluated. Shared by :mod:`acktr_lab.benchmark` (the
benchmark, ACKTR's runs, the table) and :mod:`acktr_lab.benchmark_a2c` (SB3 A2C's runs)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field

import gymnasium as gym

#: The algorithms the benchmark trains: command-line name -> the name its rows carry.
ALGORITHMS = {"acktr": "ACKTR (acktr_lab)", "a2c": "A2C (SB3)"}
EVALUATIONS = 15
EVAL_SEED = 10_000


@dataclass
class Run:
    """One algorithm on one env with one seed: its evaluation curve and final score."""

    algorithm: str
    env_id: str
    seed: int
    budget: int
    curve: list[tuple[int, float]] = field(default_factory=list)
    final: list[float] = field(default_factory=list)
    seconds: float = 0.0
    #: When the run finished (``YYYY-MM-DD HH:MM UTC``) and on what (:func:`machine`): a
    #: resumed benchmark's table can hold runs of other days and machines.
    finished: str = ""
    machine: str = ""

    def stamp(self, started: float) -> None:
        """Record the run's duration since ``started`` (``time.perf_counter()``), time and machine."""
        self.seconds = time.perf_counter() - started
        self.finished = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        self.machine = machine()

    def first_reaching(self, score: float | None) -> int | None:
        if score is None:
            return None
        return next((t for t, mean in self.curve if mean >= score), None)


def eval_points(budget: int) -> list[int]:
    """The timesteps at which a run of ``budget`` steps is evaluated (``EVALUATIONS`` of them)."""
    return [round(budget * (i + 1) / EVALUATIONS) for i in range(EVALUATIONS)]


def machine() -> str:
    """The platform, cores and versions a run trained on."""
    import tensorflow as tf

    return (
        f"{platform.platform()}, {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
        f"Python {platform.python_version()}, TensorFlow {tf.__version__}, gymnasium {gym.__version__}"
    )
