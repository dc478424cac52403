"""Checkpoints of the benchmark's A2C runs: the file round-trips exactly, refuses what is not
the run's own checkpoint, and (where SB3 is installed) a stopped run carries on from it with
the same parameters, normalisation statistics and learning-rate schedule."""

from __future__ import annotations

import copy
import io
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from acktr_lab.benchmark_a2c import (
    CHECKPOINT_FORMAT,
    MAX_CHECKPOINT_BYTES,
    Checkpoint,
    CheckpointError,
    Normalizer,
    checkpoint_path,
    load_checkpoint,
    save_checkpoint,
    state_dicts,
)
from acktr_lab.benchmark_runs import ALGORITHMS, eval_points

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
        (state(seed=3.0), "it is the run ('A2C (SB3)', 'Pendulum-v1', 3.0, 10000)"),
        (state(seconds=10**400), "seconds is 1000000000"),
        (state(curve=[[667, 10**400]]), "the curve's score at 667 steps is 10000"),
        (state(curve=[[667, 1.0], [600, 2.0]]), "a curve point at 600 steps, not in 668 .. 1,280"),
        (state(curve=[[t, 1.0] for t in range(1, 17)]), "the curve has 16 points, more than a run's 15"),
        (state(normalizer=[1.0]), "the normalisation statistics are not a JSON object"),
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
        (
            {"state.json": b"{}", "parameters.zip": b"p", "extra": b""},
            "holds ['extra', 'parameters.zip', 'state.json'], not ['parameters.zip', 'state.json']",
        ),
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


def test_the_parameter_archive_is_bounded_before_torch_reads_it(tmp_path: Path) -> None:
    """``parameters.zip`` and the ``torch.save`` files in it are zips too: their declared
    sizes are checked before anything is decompressed, and their members must be SB3's."""
    path = checkpoint_path(tmp_path, ENV, SEED)

    def archive(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", method) as zipped:
            for name, data in members.items():
                zipped.writestr(name, data)
        return buffer.getvalue()

    sb3 = {"_stable_baselines3_version": b"2.9.2", "system_info.txt": b""}
    bomb = archive({"data.pkl": bytes(MAX_CHECKPOINT_BYTES + 1)}, zipfile.ZIP_DEFLATED)
    assert len(bomb) < MAX_CHECKPOINT_BYTES // 500
    for parameters, message in [
        (b"not a zip", "not a readable zip archive"),
        (archive({"policy.pth": b"", **sb3}), "holds ['_stable_baselines3_version', 'policy.pth', 'system_info.txt']"),
        (archive({"policy.pth": bomb, "policy.optimizer.pth": bomb, **sb3}), "more than the limit"),
        (archive({"policy.pth": b"x", "policy.optimizer.pth": b"x", **sb3}), "policy.pth: not a readable zip"),
    ]:
        with pytest.raises(CheckpointError, match=r"parameters\.zip") as error:
            state_dicts(parameters, path)
        assert message in str(error.value) and "delete it" in str(error.value)


class StoppedError(Exception):
    """A benchmark process stopped part-way."""


@pytest.fixture
def sb3() -> Any:
    pytest.importorskip("stable_baselines3", reason="SB3 is installed for the benchmark only, not a dependency")
    import acktr_lab.benchmark_a2c as bench

    return bench


def test_a_stopped_a2c_run_carries_on_from_its_checkpoint(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sb3: Any
) -> None:
    """Pendulum-v1 (VecNormalize, gSDE, a linear learning rate): stopped at its second
    evaluation, then resumed: the parameters, RMSprop state and statistics are those of the
    model when it was saved, the learning rate goes on from the saved progress, and the
    run ends at its budget with its whole curve."""
    import torch

    budget, path = 3_000, checkpoint_path(tmp_path, ENV, SEED)
    real_evaluate, real_checkpoint_of, real_resume = sb3.evaluate, sb3.checkpoint_of, sb3.resume_sb3_a2c
    calls: list[int] = []
    stops = [StoppedError]
    at_save: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
    resumed: list[Any] = []

    def evaluate(policy: Any, env: Any, episodes: int, seed: int) -> list[float]:
        calls.append(episodes)
        if len(calls) == 2 and stops:  # the first run stops here, once
            raise stops.pop()
        return real_evaluate(policy, env, 2, seed)  # two episodes are enough here

    def checkpoint_of(model: Any, venv: Any, *args: Any) -> Checkpoint:
        params = copy.deepcopy(model.get_parameters())
        at_save.append((model.num_timesteps, params, Normalizer.of(venv).to_json()))
        return real_checkpoint_of(model, venv, *args)

    def resume_sb3_a2c(*args: Any) -> Any:
        resumed.append(real_resume(*args))
        return resumed[-1]

    monkeypatch.setattr(sb3, "evaluate", evaluate)
    monkeypatch.setattr(sb3, "checkpoint_of", checkpoint_of)
    monkeypatch.setattr(sb3, "resume_sb3_a2c", resume_sb3_a2c)
    with pytest.raises(StoppedError):
        sb3.run_sb3_a2c(ENV, SEED, budget, path)
    saved = load_checkpoint(path, ENV, SEED, budget, (3,))
    first = eval_points(budget)[0]
    assert first <= saved.timesteps < eval_points(budget)[1] and saved.timesteps % 64 == 0  # 8 envs × 8 steps
    assert [t for t, _ in saved.curve] == [first + (-first) % 8]  # evaluated on the step that passed it
    # One checkpoint per rollout here (every 60 steps, a rollout is 64): the last is the one kept.
    assert [t for t, _, _ in at_save] == list(range(64, saved.timesteps + 1, 64))
    _, params_at_save, stats_at_save = at_save[-1]

    model, venv, normalize = sb3.resume_sb3_a2c(saved, path)
    assert normalize and model.num_timesteps == saved.timesteps
    params = model.get_parameters()
    assert all(torch.equal(params["policy"][name], value) for name, value in params_at_save["policy"].items())
    optimizer, optimizer_at_save = params["policy.optimizer"], params_at_save["policy.optimizer"]
    assert optimizer["param_groups"] == optimizer_at_save["param_groups"] and optimizer_at_save["state"]
    for index, entry in optimizer_at_save["state"].items():
        assert all(torch.equal(optimizer["state"][index][key], value) for key, value in entry.items())
    assert Normalizer.of(venv).to_json() == stats_at_save

    resumed.clear()
    calls.clear()
    run = sb3.run_sb3_a2c(ENV, SEED, budget, path, resume=True)
    assert run.curve[0] == saved.curve[0] and [t for t, _ in run.curve] == sorted({t for t, _ in run.curve})
    assert len(run.curve) == 15 and len(calls) == 15  # 14 evaluations left, then the final one
    (model, _, _) = resumed[0]
    # Stopped at the budget, with SB3's progress 1 - t / budget over the whole run (a
    # learn(budget) from t would train t steps more; a reset would restart the schedule).
    assert budget <= model.num_timesteps < budget + 64
    rate = model.policy.optimizer.param_groups[0]["lr"]
    assert rate == pytest.approx(7e-4 * (1 - model.num_timesteps / budget), abs=1e-12)
    assert path.exists()  # the caller removes it once the run is recorded


def test_the_a2c_benchmark_envs_make_no_render_only_bodies(sb3: Any) -> None:
    """SB3's make_vec_env would make LunarLander with render_mode="rgb_array", whose engine
    puffs are Box2D bodies that only render() removes (≈ 4x slower steps by an episode's
    end); the benchmark's envs do not render, so none are made."""
    pytest.importorskip("Box2D", reason="LunarLander needs the box2d extra")
    _, venv, _ = sb3.make_sb3_a2c("LunarLanderContinuous-v3", SEED)
    assert venv.get_attr("render_mode") == [None] * venv.num_envs
    venv.reset()
    for _ in range(100):
        venv.step(np.ones((venv.num_envs, 2), dtype=np.float32))  # both engines at full throttle
    assert venv.get_attr("particles") == [[]] * venv.num_envs
    venv.close()


def test_a_checkpoint_whose_tensors_do_not_fit_is_refused(tmp_path: Path, sb3: Any) -> None:
    import torch
    from stable_baselines3.common.save_util import save_to_zip_file

    model, venv, _ = sb3.make_sb3_a2c(ENV, SEED)
    model.learn(128)
    path = checkpoint_path(tmp_path, ENV, SEED)

    def refused(change: Any) -> str:
        params = copy.deepcopy(model.get_parameters())  # not the model's own tensors
        change(params)
        buffer = io.BytesIO()
        save_to_zip_file(buffer, params=params)
        checkpoint = Checkpoint(ENV, SEED, BUDGET, 128, [], 1.0, Normalizer.of(venv), buffer.getvalue())
        with pytest.raises(CheckpointError, match="delete it") as error:
            sb3.resume_sb3_a2c(checkpoint, path)
        return str(error.value)

    name = next(iter(model.policy.state_dict()))

    def nan(params: dict[str, Any]) -> None:
        params["policy"][name][0] = float("nan")

    def alpha(params: dict[str, Any]) -> None:
        params["policy.optimizer"]["param_groups"][0]["alpha"] = 0.5

    def square_avg(params: dict[str, Any]) -> None:
        params["policy.optimizer"]["state"][0]["square_avg"] = torch.zeros(3)

    def missing(params: dict[str, Any]) -> None:
        del params["policy"][name]

    assert f"the policy's {name} holds non-finite values" in refused(nan)
    assert "RMSprop's ['alpha'] are not the zoo's" in refused(alpha)
    assert "square_avg of parameter 0 is torch.float32 (3,)" in refused(square_avg)
    assert "does not name the zoo A2C policy's tensors" in refused(missing)


def test_bench_removes_a_finished_runs_checkpoint_and_starts_afresh_without_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sb3: Any
) -> None:
    from acktr_lab.cli import main

    path = checkpoint_path(tmp_path, "CartPole-v1", 0)
    save_checkpoint(path, Checkpoint("CartPole-v1", 0, 1_500, 800, [], 1.0, None, b"not even a zip"))
    argv = ["bench", "--envs", "CartPole-v1", "--seeds", "1", "--budget-scale", "0.01", "--algorithms", "a2c"]
    assert main([*argv, "--out", str(tmp_path), "--resume"]) == 2  # resumed: its parameters are refused
    assert path.exists()  # and kept: nothing is deleted for an error
    saves: list[int] = []
    real_save = sb3.save_checkpoint
    monkeypatch.setattr(sb3, "save_checkpoint", lambda p, c: saves.append(c.timesteps) or real_save(p, c))
    assert main([*argv, "--out", str(tmp_path)]) == 0  # without --resume: from step 0
    (run,) = json.loads((tmp_path / "runs.json").read_text())
    assert len(run["curve"]) == 15 and saves == list(range(40, 1_500, 40))  # each rollout (8 envs × 5 steps)
    assert not path.exists()  # recorded, so removed
