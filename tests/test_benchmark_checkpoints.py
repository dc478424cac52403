"""Checkpoints of the benchmark's A2C runs: the file round-trips exactly, refuses what is not
the run's own checkpoint, and (where SB3 is installed) a stopped run carries on from it with
the same parameters, normalisation statistics and learning-rate schedule."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acktr_lab.benchmark import ALGORITHMS, eval_points
from acktr_lab.benchmark_a2c import (
    CHECKPOINT_FORMAT,
    Checkpoint,
    CheckpointError,
    Normalizer,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
)

ENV, SEED, BUDGET = "Pendulum-v1", 3, 10_000


def a_checkpoint(normalizer: Normalizer | None = None) -> Checkpoint:
    stats = Normalizer(np.array([0.1, -2.5, 1 / 3]), np.array([1.5, 0.25, 7.0]), 641.0, -0.7, 12.5, 641.0)
    return Checkpoint(
        ENV, SEED, BUDGET, 1_280, [(667, -1234.5), (1_280, -987.25)], 12.5, normalizer or stats, b"params"
    )


def test_a_checkpoint_round_trips_exactly(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, ENV, SEED)
    saved = a_checkpoint()
    save_checkpoint(path, saved)
    loaded = load_checkpoint(path, ENV, SEED, BUDGET, (3,))
    assert (loaded.timesteps, loaded.curve, loaded.seconds, loaded.parameters) == (1_280, saved.curve, 12.5, b"params")
    assert loaded.normalizer is not None and saved.normalizer is not None
    np.testing.assert_array_equal(loaded.normalizer.obs_mean, saved.normalizer.obs_mean)  # bitwise, 1/3 included
    np.testing.assert_array_equal(loaded.normalizer.obs_var, saved.normalizer.obs_var)
    assert loaded.normalizer.to_json() == saved.normalizer.to_json()
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


def test_an_interrupted_save_leaves_the_previous_checkpoint_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = checkpoint_path(tmp_path, ENV, SEED)
    save_checkpoint(path, a_checkpoint())
    before = path.read_bytes()

    def interrupted(*args: Any) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("acktr_lab.benchmark_a2c.os.replace", interrupted)
    later = Checkpoint(ENV, SEED, BUDGET, 2_000, [], 20.0, a_checkpoint().normalizer, b"newer")
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, later)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == [path.name]


def state(**changes: Any) -> dict[str, Any]:
    fields = json.loads(a_checkpoint().state_json())
    fields.update(changes)
    return fields


def write(path: Path, fields: Any, members: dict[str, bytes] | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in (members or {"state.json": json.dumps(fields).encode(), "parameters.zip": b"p"}).items():
            archive.writestr(name, data)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        (state(format="something else"), f"is not a {CHECKPOINT_FORMAT}"),
        (state(format_version=2), "format version 2"),
        (state(seed=4), "it is the run ('A2C (SB3)', 'Pendulum-v1', 4, 10000)"),
        (state(budget=20_000), "not ('A2C (SB3)', 'Pendulum-v1', 3, 10000)"),
        (state(algorithm=ALGORITHMS["acktr"]), "it is the run ('ACKTR (acktr_lab)'"),
        (state(timesteps=10_000), "timesteps 10000 is not in 1 .. 9,999"),
        (state(timesteps=True), "timesteps True"),
        (state(curve=[[2_000, 1.0]]), "a curve point at 2000 steps"),
        (state(curve=[[5, float("nan")]]), "the curve's score at 5 steps is nan"),
        (state(curve={"a": 1}), "not a list of [timesteps, score] pairs"),
        (state(seconds=-1.0), "seconds is -1.0"),
        (state(normalizer=None), "normalisation statistics missing"),
        (state(normalizer={**a_checkpoint().normalizer.to_json(), "obs_var": [1.0, -1.0, 1.0]}), "obs_var is -1.0"),
        (state(normalizer={**a_checkpoint().normalizer.to_json(), "obs_mean": [1.0]}), "not a list of 3 numbers"),
        (state(normalizer={**a_checkpoint().normalizer.to_json(), "obs_count": float("inf")}), "obs_count is inf"),
        ([1, 2], f"is not a {CHECKPOINT_FORMAT}"),
    ],
)
def test_a_checkpoint_that_is_not_this_runs_is_refused(tmp_path: Path, fields: Any, message: str) -> None:
    path = checkpoint_path(tmp_path, ENV, SEED)
    write(path, fields)
    with pytest.raises(CheckpointError, match="delete it") as error:
        load_checkpoint(path, ENV, SEED, BUDGET, (3,))
    assert message in str(error.value) and str(path) in str(error.value)


def test_statistics_in_a_checkpoint_of_a_run_that_does_not_normalise_are_refused(tmp_path: Path) -> None:
    path = checkpoint_path(tmp_path, ENV, SEED)
    save_checkpoint(path, a_checkpoint())
    with pytest.raises(CheckpointError, match="for a run that does not normalise"):
        load_checkpoint(path, ENV, SEED, BUDGET, None)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a zip", "not a readable zip archive"),
        ({"state.json": b"{", "parameters.zip": b"p"}, "state.json is not JSON"),
        ({"state.json": b"{}"}, "holds ['state.json'], not"),
        ({"state.json": b"{}", "parameters.zip": b"p", "extra": b""}, "not ['state.json', 'parameters.zip']"),
    ],
)
def test_a_corrupt_checkpoint_is_refused(tmp_path: Path, content: bytes | dict[str, bytes], message: str) -> None:
    path = checkpoint_path(tmp_path, ENV, SEED)
    if isinstance(content, bytes):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    else:
        write(path, None, content)
    with pytest.raises(CheckpointError, match="benchmark checkpoint") as error:
        load_checkpoint(path, ENV, SEED, BUDGET, (3,))
    assert message in str(error.value)


class StoppedError(Exception):
    """A benchmark process stopped part-way."""


def test_a_stopped_a2c_run_carries_on_from_its_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Pendulum-v1 (VecNormalize, gSDE, a linear learning rate): stopped at its second
    evaluation, then resumed: the parameters and statistics are the saved ones, the
    learning rate goes on from the saved progress, and the run ends with its whole curve."""
    pytest.importorskip("stable_baselines3", reason="SB3 is installed for the benchmark only, not a dependency")
    import torch
    from stable_baselines3.common.callbacks import BaseCallback
    from stable_baselines3.common.save_util import load_from_zip_file

    import acktr_lab.benchmark_a2c as bench

    budget, path = 3_000, checkpoint_path(tmp_path, ENV, SEED)
    real_evaluate, calls, stops = bench.evaluate, [], [StoppedError]

    def evaluate(policy: Any, env: Any, episodes: int, seed: int) -> list[float]:
        calls.append(episodes)
        if len(calls) == 2 and stops:  # the first run stops here, once
            raise stops.pop()
        return real_evaluate(policy, env, 2, seed)  # two episodes are enough here

    monkeypatch.setattr(bench, "evaluate", evaluate)
    with pytest.raises(StoppedError):
        bench.run_sb3_a2c(ENV, SEED, budget, path)
    saved = load_checkpoint(path, ENV, SEED, budget, (3,))
    first = eval_points(budget)[0]
    assert first <= saved.timesteps < eval_points(budget)[1] and saved.timesteps % 64 == 0  # 8 envs × 8 steps
    assert [t for t, _ in saved.curve] == [first + (-first) % 8]  # evaluated on the step that passed it

    model, venv, normalize = bench.resume_sb3_a2c(saved, path)
    assert normalize and model.num_timesteps == saved.timesteps
    params = model.get_parameters()["policy"]
    _, stored, _ = load_from_zip_file(io.BytesIO(saved.parameters), load_data=False)
    assert all(torch.equal(params[name], stored["policy"][name]) for name in params)
    assert saved.normalizer is not None and Normalizer.of(venv).to_json() == saved.normalizer.to_json()

    rates: list[float] = []

    class LearningRates(BaseCallback):
        def _on_rollout_start(self) -> None:  # after each update: the rate train() used
            rates.append(self.model.policy.optimizer.param_groups[0]["lr"])

        def _on_step(self) -> bool:
            return len(rates) < 2  # stop in the second rollout

    model.learn(budget - saved.timesteps, callback=LearningRates(), reset_num_timesteps=False)
    # SB3's progress is 1 - t / budget over the whole run, not over what is left of it.
    assert rates[1] == pytest.approx(7e-4 * (1 - (saved.timesteps + 64) / budget))

    calls.clear()
    run = bench.run_sb3_a2c(ENV, SEED, budget, path, resume=True)
    assert run.curve[0] == saved.curve[0] and [t for t, _ in run.curve][1:] == sorted(t for t, _ in run.curve[1:])
    assert len(run.curve) == 15 and run.curve[-1][0] >= budget and len(calls) == 15
    assert run.seconds > saved.seconds and not path.exists()  # done: the checkpoint is removed
