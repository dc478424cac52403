"""Run histories: a run's reports written to a file as they arrive, and read back to compare.

A history file is JSON Lines: a header line ``{"format": "acktr_lab.history", "version": 1}``
and then one line per update holding the report's scalar fields, its ``metrics`` by name,
the returns and lengths of the episodes that ended in its rollout, the hyperparameters it
used and the edits that took effect at it (everything but the Fisher eigenvalues)::

    model.learn(100_000, callback=HistoryWriter("runs/lr_0.25.jsonl"))
    dashboard.compare("runs/lr_0.25.jsonl", label="lr 0.25")

Reading (:func:`load_history`) is bounded and executes nothing: the file's size is capped
before it is read, every line is parsed by ``json`` and checked field by field, and anything
wrong with the content raises :class:`HistoryFileError` naming the line.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import IO, Any

from acktr_lab.hyperparameters import describe
from acktr_lab.report import SCALAR_FIELDS, Edit, UpdateReport
from acktr_lab.serialization import ModelFileError

__all__ = ["HISTORY_FORMAT", "MAX_HISTORY_BYTES", "HistoryFileError", "HistoryWriter", "load_history"]

HISTORY_FORMAT = {"format": "acktr_lab.history", "version": 1}
#: The largest history file read (a million-update run with a few dozen metrics is ≈ 1 GiB).
MAX_HISTORY_BYTES = 1 << 30
#: The most metrics, hyperparameters, edits or episodes one line may hold.
MAX_ENTRIES_PER_LINE = 10_000

_INT_FIELDS = tuple(name for name, kind in SCALAR_FIELDS.items() if kind == "int")
_FLOAT_FIELDS = tuple(name for name, kind in SCALAR_FIELDS.items() if kind == "float")
_BOOL_FIELDS = tuple(name for name, kind in SCALAR_FIELDS.items() if kind == "bool")


class HistoryFileError(ModelFileError):
    """A file that is not a readable run history: foreign, corrupt, truncated or too large."""


class HistoryWriter:
    """Writes each report to ``path`` as one JSON line (a new file; an existing one is
    replaced when the first report arrives). A ``learn`` callback (``on_update``), and
    usable directly: ``writer.write(report)``, ``writer.close()``, or as a context manager."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._file: IO[str] | None = None
        self.written = 0

    def write(self, report: UpdateReport) -> None:
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = self.path.open("w", encoding="utf-8")
            self._file.write(json.dumps(HISTORY_FORMAT) + "\n")
        self._file.write(json.dumps(_record(report)) + "\n")
        self._file.flush()
        self.written += 1

    def on_update(self, report: UpdateReport) -> bool:
        self.write(report)
        return True

    def on_training_end(self, trainer: Any) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> HistoryWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _record(report: UpdateReport) -> dict[str, Any]:
    record: dict[str, Any] = {name: getattr(report, name) for name in (*_INT_FIELDS, *_FLOAT_FIELDS, *_BOOL_FIELDS)}
    record["metrics"] = {name: float(value) for name, value in report.metrics.items()}
    record["episode_returns"] = [float(r) for r in report.episode_returns]
    record["episode_lengths"] = [int(n) for n in report.episode_lengths]
    record["hyperparameters"] = {name: _plain(describe(value)) for name, value in report.hyperparameters.items()}
    record["edits"] = [{k: _plain(v) for k, v in edit.to_dict().items()} for edit in report.edits]
    return record


def _plain(value: Any) -> Any:
    """A JSON scalar: numbers, strings, booleans and None as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def load_history(path: str | os.PathLike[str], *, max_bytes: int = MAX_HISTORY_BYTES) -> list[UpdateReport]:
    """The reports a :class:`HistoryWriter` wrote to ``path`` (without Fisher eigenvalues).

    Raises :class:`HistoryFileError` for a file larger than ``max_bytes`` or any content that
    is not a history, and ``FileNotFoundError`` for a missing file.
    """
    where = str(path)
    size = os.stat(path).st_size
    if size > max_bytes:
        raise HistoryFileError(f"{where}: {size} bytes is more than the {max_bytes} bytes a history may have")
    with open(path, "rb") as file:
        data = file.read(max_bytes + 1)
    if len(data) > max_bytes:  # it grew while we looked
        raise HistoryFileError(f"{where}: more than the {max_bytes} bytes a history may have")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise HistoryFileError(f"{where}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    lines = text.splitlines()
    try:
        header = _parse(lines[0], where, 1) if lines else None
    except HistoryFileError:
        header = None
    if header != HISTORY_FORMAT:
        raise HistoryFileError(f"{where}: not an acktr_lab run history (its first line must be {HISTORY_FORMAT})")
    reports = []
    for number, line in enumerate(lines[1:], start=2):
        if line.strip():
            reports.append(_report(_parse(line, where, number), f"{where}, line {number}"))
    for earlier, later in itertools.pairwise(reports):
        if later.update <= earlier.update:
            raise HistoryFileError(f"{where}: update {later.update} follows update {earlier.update}")
    return reports


def _parse(line: str, where: str, number: int) -> Any:
    try:
        return json.loads(line)
    except (ValueError, RecursionError) as error:
        raise HistoryFileError(f"{where}, line {number}: not JSON ({type(error).__name__})") from None


def _report(record: Any, where: str) -> UpdateReport:
    if not isinstance(record, dict):
        raise HistoryFileError(f"{where}: a record must be a JSON object, got {type(record).__name__}")
    expected = {*_INT_FIELDS, *_FLOAT_FIELDS, *_BOOL_FIELDS, "metrics", "episode_returns", "episode_lengths"}
    expected |= {"hyperparameters", "edits"}
    if set(record) != expected:
        missing, unknown = sorted(expected - set(record)), sorted(set(record) - expected)
        raise HistoryFileError(f"{where}: fields do not match a report (missing {missing}, unknown {unknown})")
    values: dict[str, Any] = {}
    for name in _INT_FIELDS:
        values[name] = _integer(record[name], f"{where}: {name}")
    for name in _FLOAT_FIELDS:
        values[name] = _number(record[name], f"{where}: {name}")
    for name in _BOOL_FIELDS:
        if not isinstance(record[name], bool):
            raise HistoryFileError(f"{where}: {name} must be true or false, got {record[name]!r}")
        values[name] = record[name]
    metrics = _mapping(record["metrics"], f"{where}: metrics")
    values["metrics"] = {name: _number(value, f"{where}: metrics[{name!r}]") for name, value in metrics.items()}
    returns = _sequence(record["episode_returns"], f"{where}: episode_returns")
    lengths = _sequence(record["episode_lengths"], f"{where}: episode_lengths")
    values["episode_returns"] = tuple(_number(r, f"{where}: episode_returns") for r in returns)
    values["episode_lengths"] = tuple(_integer(n, f"{where}: episode_lengths") for n in lengths)
    hyperparameters = _mapping(record["hyperparameters"], f"{where}: hyperparameters")
    for name, value in hyperparameters.items():
        if not (value is None or isinstance(value, bool | int | float | str)):
            raise HistoryFileError(f"{where}: hyperparameter {name!r} must be a JSON scalar")
    values["hyperparameters"] = hyperparameters
    values["edits"] = tuple(_edit(edit, where) for edit in _sequence(record["edits"], f"{where}: edits"))
    return UpdateReport(**values)


def _edit(record: Any, where: str) -> Edit:
    fields = ("update", "timesteps", "name", "old", "new")
    if not isinstance(record, dict) or set(record) != set(fields):
        raise HistoryFileError(f"{where}: an edit must be an object with exactly the fields {fields}")
    if not isinstance(record["name"], str):
        raise HistoryFileError(f"{where}: an edit's name must be a string")
    for key in ("old", "new"):
        if not (record[key] is None or isinstance(record[key], bool | int | float | str)):
            raise HistoryFileError(f"{where}: an edit's {key} value must be a JSON scalar")
    return Edit(
        update=_integer(record["update"], f"{where}: edit update"),
        timesteps=_integer(record["timesteps"], f"{where}: edit timesteps"),
        name=record["name"],
        old=record["old"],
        new=record["new"],
    )


def _integer(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise HistoryFileError(f"{what} must be an integer ≥ 0, got {value!r}")
    return value


def _number(value: Any, what: str) -> float:
    """A float (NaN and ±inf, which JSON Lines from Python may hold, included)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HistoryFileError(f"{what} must be a number, got {type(value).__name__}")
    try:
        return float(value)
    except OverflowError:  # an integer beyond float range
        raise HistoryFileError(f"{what} is too large for a float") from None


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise HistoryFileError(f"{what} must be a JSON object")
    if len(value) > MAX_ENTRIES_PER_LINE:
        raise HistoryFileError(f"{what} has {len(value)} entries, more than {MAX_ENTRIES_PER_LINE}")
    return value


def _sequence(value: Any, what: str) -> Iterable[Any]:
    if not isinstance(value, list):
        raise HistoryFileError(f"{what} must be a JSON array")
    if len(value) > MAX_ENTRIES_PER_LINE:
        raise HistoryFileError(f"{what} has {len(value)} entries, more than {MAX_ENTRIES_PER_LINE}")
    return value
