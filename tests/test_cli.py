"""The README's first command: ``python -m acktr_lab train ENV_ID`` trains, saves, plots, evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest

from acktr_lab import ACKTR
from acktr_lab.cli import main
from acktr_lab.history import load_history


def test_train_saves_a_loadable_model_a_plot_and_reports_a_return(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["train", "CartPole-v1", "--timesteps", "3200", "--out", str(tmp_path), "--eval-episodes", "2"])
    assert code == 0
    out = capsys.readouterr().out
    model_path = tmp_path / "acktr_CartPole-v1.zip"
    plot_path = tmp_path / "acktr_CartPole-v1.png"
    assert model_path.exists()
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "evaluation: mean return" in out
    loaded = ACKTR.load(model_path)
    assert loaded.num_timesteps == 3200
    history = load_history(tmp_path / "acktr_CartPole-v1.history.jsonl")
    assert history[-1].timesteps == 3200 and [r.update for r in history] == list(range(1, len(history) + 1))

    # the saved history compares against another run's (here: itself, relabelled)
    output = tmp_path / "compare.png"
    path = str(tmp_path / "acktr_CartPole-v1.history.jsonl")
    assert main(["compare", path, path, "--labels", "run", "again", "--output", str(output)]) == 0
    assert output.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "run (solid) against again" in capsys.readouterr().out


def test_compare_refuses_what_is_not_a_history(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text("not a history")
    assert main(["compare", str(bad)]) == 2
    assert "not an acktr_lab run history" in capsys.readouterr().err
    assert main(["compare", str(bad), "--labels", "a", "b"]) == 2
    assert main(["compare", str(tmp_path / "missing.jsonl")]) == 2


def test_unknown_command_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["fly", "CartPole-v1"])


def test_train_writes_tensorboard_logs_and_the_verbose_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--tensorboard DIR`` and ``--verbose 1`` reach the training loop (they once did not)."""
    logs = tmp_path / "tb"
    flags = ["--timesteps", "400", "--n-envs", "2", "--eval-episodes", "1", "--no-gif", "--out", str(tmp_path)]
    assert main(["train", "CartPole-v1", *flags, "--tensorboard", str(logs), "--verbose", "1"]) == 0
    events = list(logs.glob("ACKTR_CartPole-v1_*/events.out.tfevents.*"))
    assert len(events) == 1 and events[0].stat().st_size > 0
    assert "total_timesteps" in capsys.readouterr().out  # Stable Baselines 2's table


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--eval-episodes", "0"], "--eval-episodes: must be at least 1"),
        (["--seed", "-1"], "--seed: must be between 0 and"),
        (["--seed", "x"], "--seed: must be a whole number"),
        (["--n-envs", "0"], "--n-envs: must be at least 1"),
        (["--n-envs", "5000"], "--n-envs: must be at most 4096"),
    ],
)
def test_train_refuses_out_of_range_flags_in_one_line_before_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["train", "CartPole-v1", *flags, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
