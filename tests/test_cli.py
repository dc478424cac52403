"""The README's first command: ``python -m acktr_lab train ENV_ID`` trains, saves, plots, evaluates."""

from __future__ import annotations

from pathlib import Path

import pytest

from acktr_lab import ACKTR
from acktr_lab.cli import main


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


def test_unknown_command_is_refused() -> None:
    with pytest.raises(SystemExit):
        main(["fly", "CartPole-v1"])
