"""Loggers: anything with ``write(values: dict)`` and ``close()``."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any, Protocol

import numpy as np
import tensorflow as tf


class Logger(Protocol):
    def write(self, values: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class TableLogger:
    """Prints a Stable Baselines style key/value table."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream

    def write(self, values: Mapping[str, Any]) -> None:
        stream = self.stream or sys.stdout
        rows = [(str(k), _format(v)) for k, v in values.items()]
        key_width = max(len(k) for k, _ in rows)
        value_width = max(len(v) for _, v in rows)
        line = "-" * (key_width + value_width + 7)
        print(line, file=stream)
        for key, value in rows:
            print(f"| {key:<{key_width}} | {value:<{value_width}} |", file=stream)
        print(line, file=stream, flush=True)

    def close(self) -> None:
        pass


def _format(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return f"{value:<8.3g}"
    return str(value)


class TensorBoardLogger:
    """Writes scalars with ``tf.summary`` under ``<log_dir>/<name>_<n>`` (a fresh run folder).

    ``write`` takes ``{"step": int, name: float, ...}``. ``histograms`` takes name → array.
    """

    def __init__(self, log_dir: str | Path, name: str) -> None:
        root = Path(log_dir)
        root.mkdir(parents=True, exist_ok=True)
        run = 1 + max((int(p.name.rsplit("_", 1)[1]) for p in root.glob(f"{name}_*") if _numbered(p.name)), default=0)
        self.path = root / f"{name}_{run}"
        self.writer = tf.summary.create_file_writer(str(self.path))

    def write(self, values: Mapping[str, Any]) -> None:
        step = int(values["step"])
        with self.writer.as_default():
            for key, value in values.items():
                if key != "step" and value is not None and np.isfinite(value):
                    tf.summary.scalar(key, float(value), step=step)

    def histograms(self, arrays: Mapping[str, np.ndarray], step: int) -> None:
        with self.writer.as_default():
            for key, value in arrays.items():
                tf.summary.histogram(key, value, step=step)

    def close(self) -> None:
        self.writer.flush()
        self.writer.close()


def _numbered(name: str) -> bool:
    return "_" in name and name.rsplit("_", 1)[1].isdigit()
