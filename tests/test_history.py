"""Run histories: written as a run goes, read back exactly, compared on the panels; a
damaged or hostile history file raises HistoryFileError and does no unbounded work."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_trainer import FakeTrainer
from png_checks import QUIET, assert_png

from acktr_lab import ACKTR
from acktr_lab.history import HISTORY_FORMAT, HistoryFileError, HistoryWriter, load_history
from acktr_lab.plots import TrainingPlots
from acktr_lab.report import UpdateReport
from acktr_lab.serialization import ModelFileError


def _same_report(saved: UpdateReport, loaded: UpdateReport) -> None:
    for name in ("update", "timesteps", "total_timesteps", "kfac_step", "skipped", "episode_lengths", "edits"):
        assert getattr(loaded, name) == getattr(saved, name), name
    for name in ("fps", "learning_rate", "policy_loss", "value_loss", "entropy", "kl", "trust_region_scale", "gfg"):
        np.testing.assert_equal(getattr(loaded, name), getattr(saved, name), err_msg=name)  # NaN == NaN
    np.testing.assert_equal(loaded.episode_returns, saved.episode_returns)
    assert set(loaded.metrics) == set(saved.metrics)
    for name, value in saved.metrics.items():
        np.testing.assert_equal(loaded.metrics[name], value, err_msg=name)
    assert dict(loaded.hyperparameters) == {k: v for k, v in saved.hyperparameters.items()}


def test_a_learn_history_reads_back_exactly_with_its_edits(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=1, cold_iter=2)
    trainer = model.trainer(200)
    seen: list[UpdateReport] = []
    with HistoryWriter(tmp_path / "run.jsonl") as writer:
        for report in trainer:
            if report.update == 5:
                trainer.set(ent_coef=0.05, lr_schedule="constant")
            writer.write(report)
            seen.append(report)
    loaded = load_history(tmp_path / "run.jsonl")
    assert len(loaded) == len(seen) == 20
    for saved, back in zip(seen, loaded, strict=True):
        _same_report(saved, back)
    edits = [(e.update, e.name, e.old, e.new) for r in loaded for e in r.edits]
    assert edits == [(6, "ent_coef", 0.01, 0.05), (6, "lr_schedule", "linear", "constant")]
    assert any(r.episode_returns for r in loaded) and math.isnan(loaded[0].trust_region_scale)  # cold start


def test_learn_takes_a_list_of_callbacks_and_the_writer_is_one(tmp_path: Path) -> None:
    stops: list[int] = []

    class StopAtThree:
        def on_update(self, report: UpdateReport) -> bool:
            stops.append(report.update)
            return report.update < 3

    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    writer = HistoryWriter(tmp_path / "sub" / "run.jsonl")
    model.learn(1000, callback=[writer, StopAtThree()])
    assert stops == [1, 2, 3]
    assert [r.update for r in load_history(writer.path)] == [1, 2, 3]  # every callback saw every report
    assert writer._file is None  # closed at the end of training


def test_the_dashboard_writes_a_history_and_compares_saved_ones(tmp_path: Path) -> None:
    from acktr_lab.widgets import Dashboard

    path = tmp_path / "other.jsonl"
    other = Dashboard(FakeTrainer(400, ent_coef=0.05), redraw_interval=QUIET, history=path)  # type: ignore[arg-type]
    other.run_blocking()
    main = Dashboard(FakeTrainer(600), redraw_interval=QUIET)  # type: ignore[arg-type]
    main.run_blocking()
    main.compare(path, "ent_coef=0.05 (saved)")
    assert_png(main.plots.render_png())
    line = main.plots.panel("policy_loss").comparison_lines["ent_coef=0.05 (saved)"]
    np.testing.assert_array_equal(line.get_xdata(), other.plots.history.array("timesteps"))
    legend = [t.get_text() for t in main.plots.axes["policy_loss"].get_legend().get_texts()]
    assert "ent_coef=0.05 (saved)" in legend


def test_training_plots_compare_a_saved_history(tmp_path: Path) -> None:
    reports = list(FakeTrainer(300))
    with HistoryWriter(tmp_path / "h.jsonl") as writer:
        for report in reports:
            writer.write(report)
    plots = TrainingPlots()
    plots.extend(FakeTrainer(300, ent_coef=0.1))
    plots.compare(str(tmp_path / "h.jsonl"), "saved")
    plots.draw()
    np.testing.assert_array_equal(
        plots.panel("learning_rate").comparison_lines["saved"].get_ydata(), [r.learning_rate for r in reports]
    )


def _valid_lines(tmp_path: Path) -> list[str]:
    path = tmp_path / "valid.jsonl"
    with HistoryWriter(path) as writer:
        for report in FakeTrainer(60):
            writer.write(report)
    return path.read_text().splitlines()


def _record(lines: list[str], index: int = 1) -> dict[str, Any]:
    return json.loads(lines[index])


def _with(record: dict[str, Any], **changes: Any) -> str:
    return json.dumps({**record, **changes})


BAD_CONTENT = {
    "empty": lambda lines: "",
    "not a history": lambda lines: '{"format": "something else"}\n' + "\n".join(lines[1:]),
    "no header": lambda lines: "\n".join(lines[1:]),
    "not JSON": lambda lines: lines[0] + "\n{not json",
    "deeply nested": lambda lines: lines[0] + "\n" + "[" * 100_000 + "]" * 100_000,
    "an array record": lambda lines: lines[0] + "\n[1, 2]",
    "missing field": lambda lines: lines[0] + "\n" + json.dumps({k: v for k, v in _record(lines).items() if k != "kl"}),
    "unknown field": lambda lines: lines[0] + "\n" + _with(_record(lines), extra=1),
    "text for a number": lambda lines: lines[0] + "\n" + _with(_record(lines), kl="0.1"),
    "negative update": lambda lines: lines[0] + "\n" + _with(_record(lines), update=-1),
    "float update": lambda lines: lines[0] + "\n" + _with(_record(lines), update=1.5),
    "number for a bool": lambda lines: lines[0] + "\n" + _with(_record(lines), skipped=0),
    "huge integer": lambda lines: lines[0] + "\n" + _with(_record(lines), kl=10**300 * 10**300),
    "metric not a number": lambda lines: lines[0] + "\n" + _with(_record(lines), metrics={"train/kl": [1]}),
    "metrics not an object": lambda lines: lines[0] + "\n" + _with(_record(lines), metrics=[1]),
    "too many episodes": lambda lines: lines[0] + "\n" + _with(_record(lines), episode_returns=[0.0] * 10_001),
    "nested hyperparameter": lambda lines: lines[0] + "\n" + _with(_record(lines), hyperparameters={"a": {"b": 1}}),
    "bad edit": lambda lines: lines[0] + "\n" + _with(_record(lines), edits=[{"update": 1}]),
    "updates out of order": lambda lines: "\n".join([lines[0], lines[2], lines[1]]),
}


@pytest.mark.parametrize("damage", list(BAD_CONTENT), ids=list(BAD_CONTENT))
def test_a_damaged_history_raises_the_history_file_error(tmp_path: Path, damage: str) -> None:
    lines = _valid_lines(tmp_path)
    path = tmp_path / "bad.jsonl"
    path.write_text(BAD_CONTENT[damage](lines))
    with pytest.raises(HistoryFileError) as caught:
        load_history(path)
    assert str(path) in str(caught.value)
    assert isinstance(caught.value, ModelFileError)  # the library's file error


def test_history_bytes_are_checked(tmp_path: Path) -> None:
    path = tmp_path / "h.jsonl"
    path.write_bytes(json.dumps(HISTORY_FORMAT).encode() + b"\n\xff\xfe")
    with pytest.raises(HistoryFileError, match="not UTF-8"):
        load_history(path)
    lines = _valid_lines(tmp_path)
    path.write_text("\n".join(lines))
    assert len(load_history(path)) == 3
    with pytest.raises(HistoryFileError, match="more than the 100 bytes"):
        load_history(path, max_bytes=100)  # refused before reading
    with pytest.raises(FileNotFoundError):
        load_history(tmp_path / "missing.jsonl")
