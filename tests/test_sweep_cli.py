"""``acktr-lab sweep``: sweep files, the sweep's progress bar, and one sweep run end to end.

The sweep files and the progress bar are tested without running Ray; the one end-to-end test
starts its own local Ray (2 CPUs, tens of seconds here) through the command.
"""

from __future__ import annotations

import importlib.util
import io
import pickle
from pathlib import Path
from types import SimpleNamespace

import pytest

ray = pytest.importorskip("ray", reason="the sweep extra (ray[tune]) is not installed")
import pandas as pd  # noqa: E402
from png_checks import assert_png  # noqa: E402
from ray.tune.search.sample import Categorical, Float, Integer  # noqa: E402

from acktr_lab.cli import main  # noqa: E402
from acktr_lab.sweep.config import KEYS, MAX_BYTES, count_trials, load_sweep_config  # noqa: E402
from acktr_lab.sweep.progress import SweepProgress  # noqa: E402

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
BASE = "env: CartPole-v1\nspace: {kfac_clip: [0.001, 0.01]}\nseeds: [0, 1]\ntimesteps: 1000\n"


def searching(entry: str) -> str:
    """:data:`BASE` searching ``entry`` (``name: values``) instead."""
    return BASE.replace("kfac_clip: [0.001, 0.01]", entry)


def write(tmp_path: Path, text: str, name: str = "sweep.yml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


# sweep files


def test_a_sweep_file_becomes_the_arguments_of_run(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
env: CartPole-v1
space:
  kfac_clip: [0.001, 1e-2]            # 1e-2: a string to YAML 1.1, a number here
  learning_rate: {loguniform: [1e-3, 0.5]}
  gamma: {uniform: [0.9, 0.999]}
  n_steps: {randint: [5, 21]}
  lr_schedule: {choice: [linear, constant]}
  policy_kwargs: [null, {net_arch: [32, 32]}]
seeds: [0, 1, 2]
timesteps: 1.0e5
policy: MlpPolicy
fixed: {n_envs: 4, ent_coef: 0.0, normalize_returns: true}
search: grid
num_samples: 2
scheduler: asha
metric: rollout/ep_return_mean
mode: max
report_every: 5
perturbation_interval: 2_000
eval_episodes: 3
address: auto
num_cpus: 2
max_concurrent_trials: 2
storage_path: runs/sweeps
name: cartpole.grid-1
""",
    )
    kwargs = load_sweep_config(path)
    assert list(kwargs) == list(KEYS)  # every key, and nothing else
    space = kwargs.pop("space")
    assert kwargs == {
        "env": "CartPole-v1",
        "seeds": [0, 1, 2],
        "timesteps": 100_000,
        "policy": "MlpPolicy",
        "fixed": {"n_envs": 4, "ent_coef": 0.0, "normalize_returns": True},
        "search": "grid",
        "num_samples": 2,
        "scheduler": "asha",
        "metric": "rollout/ep_return_mean",
        "mode": "max",
        "report_every": 5,
        "perturbation_interval": 2000,
        "eval_episodes": 3,
        "address": "auto",
        "num_cpus": 2,
        "max_concurrent_trials": 2,
        "storage_path": "runs/sweeps",
        "name": "cartpole.grid-1",
    }
    assert space["kfac_clip"] == [0.001, 0.01]
    assert space["policy_kwargs"] == [None, {"net_arch": [32, 32]}]
    rate, gamma, steps, schedule = (space[k] for k in ("learning_rate", "gamma", "n_steps", "lr_schedule"))
    assert isinstance(rate, Float) and (rate.lower, rate.upper) == (1e-3, 0.5)
    assert type(rate.get_sampler()).__name__ == "_LogUniform"
    assert isinstance(gamma, Float) and (gamma.lower, gamma.upper) == (0.9, 0.999)
    assert type(gamma.get_sampler()).__name__ == "_Uniform"
    assert isinstance(steps, Integer) and (steps.lower, steps.upper) == (5, 21)
    assert isinstance(schedule, Categorical) and schedule.categories == ["linear", "constant"]
    assert count_trials({**kwargs, "space": space}) == 2 * 2 * 3 * 2  # kfac_clip × policy_kwargs × seeds × samples


def test_the_example_sweep_loads_as_a_small_grid() -> None:
    kwargs = load_sweep_config(REPO / "examples" / "sweep_cartpole.yml")
    assert kwargs["env"] == "CartPole-v1" and list(kwargs["space"]) == ["kfac_clip"]
    assert len(kwargs["seeds"]) == 3 and count_trials(kwargs) == 3 * len(kwargs["space"]["kfac_clip"])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (BASE + "learning_rat: 0.1\n", r"unknown key\(s\) \['learning_rat'\]; the known keys are \['env', 'space'"),
        ("space: {}\nseeds: [0]\ntimesteps: 100\n", r"missing key\(s\) \['env'\]"),
        ("- env: CartPole-v1\n", "must hold a mapping of sweep settings"),
        (BASE.replace("kfac_clip:", "learning_rat:"), "space: 'learning_rat' is not an ACKTR argument"),
        (BASE.replace("[0.001, 0.01]", "[0.001, -1.0]"), r"space\.kfac_clip: kfac_clip must be > 0, got -1\.0"),
        (BASE.replace("[0.001, 0.01]", "0.001"), r"space\.kfac_clip must be a list of values or one of"),
        (BASE.replace("[0.001, 0.01]", "[]"), r"space\.kfac_clip: an empty list"),
        (BASE.replace("[0.001, 0.01]", "{loguniform: [0, 0.1]}"), "loguniform needs low > 0"),
        (BASE.replace("[0.001, 0.01]", "{uniform: [0.1, 0.01]}"), r"kfac_clip\.uniform must be \[low, high\]"),
        (BASE.replace("[0.001, 0.01]", "{uniform: [0.1]}"), r"kfac_clip\.uniform must be \[low, high\]"),
        (searching("n_steps: {uniform: [5, 10]}"), "uniform draws real numbers"),
        (searching("n_steps: {randint: [1.5, 10]}"), "two integers"),
        (searching("n_steps: {randint: [0, 10]}"), "n_steps must be ≥ 1 and ≤ 100000, got 0"),
        (searching("lr_schedule: {choice: [linear, cubic]}"), "unknown lr_schedule"),
        (searching("seed: [1, 2]"), r"the seeds go in seeds: \[\.\.\.\], not in space"),
        (BASE.replace("[0, 1]", "[0, 1, 0]"), r"seeds: seed\(s\) \[0\] repeated"),
        (BASE.replace("[0, 1]", "'0, 1'"), "seeds must be a non-empty list of integers"),
        (BASE.replace("[0, 1]", "[0, true]"), "seeds must be a non-empty list of integers, got True in it"),
        (BASE.replace("1000", "-5"), "timesteps must be a positive integer, got -5"),
        (BASE.replace("1000", "12.5"), "timesteps must be a positive integer, got 12.5"),
        (BASE + "scheduler: hyperband\n", r"scheduler must be one of \[.*'pb2'\], got 'hyperband'"),
        (searching("n_steps: [5, 10]") + "scheduler: pbt\n", "pbt mutates live hyperparameters"),
        (BASE + "mode: biggest\n", "mode must be one of"),
        (BASE + "search: bayes\n", "search must be one of"),
        (BASE + "policy: LinearPolicy\n", "policy must be one of"),
        (BASE + "fixed: {n_envs: 0}\n", r"fixed\.n_envs: n_envs must be ≥ 1 and ≤ 4096, got 0"),
        (BASE + "fixed: {kfac_clip: 0.01}\n", r"\['kfac_clip'\] are both searched"),
        (BASE + "fixed: {policy_kwargs: [64]}\n", r"fixed\.policy_kwargs must be a mapping"),
        (BASE + "name: ../elsewhere\n", "name must be a folder name"),
        (BASE + "num_cpus: 0\n", "num_cpus must be a positive integer"),
        (BASE + "eval_episodes: ten\n", "eval_episodes must be a positive integer, got 'ten'"),
        (BASE + "report_every: true\n", "report_every must be a positive integer, got True"),
        (BASE.replace("[0.001, 0.01]", "[" + ", ".join(["0.001"] * 100) + "]") + "num_samples: 60\n", "trials"),
        ("env: [CartPole-v1\n", "not valid YAML"),
        ("[" * 100_000, "nests too deeply"),
        # "billion laughs": 9 levels of 9 aliases, 9^9 values from a few hundred bytes
        (
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(
                f"{c}: &{c} [*{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}, *{p}]\n"
                for p, c in zip("abcdefgh", "bcdefghi")
            )
            + BASE,
            r"an alias \(\*a\) is not read",
        ),
    ],
)
def test_a_bad_sweep_file_is_a_value_error_naming_what_is_wrong(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=message) as caught:
        load_sweep_config(path)
    assert str(path) in str(caught.value)


def test_a_sweep_file_that_is_not_small_utf8_text_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read the sweep file"):
        load_sweep_config(tmp_path / "missing.yml")
    big = write(tmp_path, BASE + "#" * MAX_BYTES, "big.yml")
    with pytest.raises(ValueError, match=f"larger than {MAX_BYTES} bytes"):
        load_sweep_config(big)
    latin = tmp_path / "latin.yml"
    latin.write_bytes(BASE.encode() + b"name: caf\xe9\n")
    with pytest.raises(ValueError, match="not UTF-8"):
        load_sweep_config(latin)


def test_the_sweep_command_refuses_a_bad_file_or_env_before_starting_ray(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sweep", str(write(tmp_path, BASE + "learning_rat: 0.1\n"))]) == 2
    assert "acktr-lab sweep: error:" in capsys.readouterr().err
    assert main(["sweep", str(write(tmp_path, BASE.replace("CartPole-v1", "NoSuchEnv-v0")))]) == 2
    assert "unknown environment 'NoSuchEnv-v0'" in capsys.readouterr().err
    assert main(["sweep", str(write(tmp_path, BASE)), "--num-cpus", "0"]) == 2
    assert "--num-cpus must be at least 1" in capsys.readouterr().err
    assert not ray.is_initialized()


def test_the_sweep_command_says_how_to_install_ray(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else find_spec(name, *a))
    assert main(["sweep", str(write(tmp_path, BASE))]) == 2
    assert "pip install 'acktr_lab[sweep]'" in capsys.readouterr().err


def test_the_printed_table_puts_the_best_first_and_unfinished_trials_last() -> None:
    from acktr_lab.cli import _sweep_table

    nan = float("nan")
    table = pd.DataFrame(
        {
            "trial_id": ["t0", "t1", "t2", "t3"],
            "kfac_clip": [0.001, 0.01, 0.0001, 0.01],
            "seed": [0, 0, 0, 1],
            "status": ["finished", "error", "finished", "finished"],
            "error": [None, "ValueError: bad", None, None],
            "timesteps": [800.0, nan, 800.0, 800.0],
            "eval/mean_return": [20.0, nan, 35.25, 20.0],
            "eval/std_return": [1.0, nan, 0.5, 2.0],
        }
    )
    result = SimpleNamespace(table=table, searched=("kfac_clip",))
    ordered, shown = _sweep_table(result, "max")
    assert ordered["trial_id"].tolist() == ["t2", "t0", "t3", "t1"]  # ties keep their order, as idxmax picks
    assert shown.columns.tolist() == ["kfac_clip", "seed", "status", "final eval", "timesteps"]
    assert shown.values.tolist() == [
        ["0.0001", 0, "finished", "35.2 ± 0.5", "800"],
        ["0.001", 0, "finished", "20.0 ± 1.0", "800"],
        ["0.01", 1, "finished", "20.0 ± 2.0", "800"],
        ["0.01", 0, "error", "-", "-"],
    ]
    assert _sweep_table(result, "min")[0]["trial_id"].tolist() == ["t0", "t3", "t2", "t1"]


# the progress bar


def trial(trial_id: str) -> SimpleNamespace:
    return SimpleNamespace(trial_id=trial_id)


def test_the_progress_bar_counts_every_trials_latest_timesteps() -> None:
    out = io.StringIO()
    progress = SweepProgress(1_000, file=out)
    a, b = trial("a"), trial("b")
    progress.setup(stop=None, num_samples=1, total_num_samples=2)  # Tune's count of trials
    assert (progress.total, progress.position) == (2_000, 0)
    progress.on_trial_start(iteration=0, trials=[a, b], trial=a)
    progress.on_trial_result(0, [a, b], a, {"timesteps": 400.0, "rollout/ep_return_mean": 20.0})
    progress.on_trial_result(0, [a, b], b, {"timesteps": 600.0, "rollout/ep_return_mean": 35.5})
    progress.on_trial_result(0, [a, b], a, {"timesteps": 800.0, "rollout/ep_return_mean": float("nan")})
    assert (progress.bar.total, progress.bar.n) == (2_000, 1_400)
    assert (progress.best, progress.best_trial) == (35.5, "b")
    # PBT: a continues from b's checkpoint at 600 steps, so its count moves back from 800
    progress.on_trial_start(1, [a, b], a)  # restarted: keeps its 800 until it reports
    assert progress.bar.n == 1_400
    progress.on_trial_result(1, [a, b], a, {"timesteps": 680.0, "rollout/ep_return_mean": 30.0})
    assert (progress.position, progress.bar.n) == (1_280, 1_280)
    progress.on_trial_result(1, [a, b], a, {"done": True})  # a result without timesteps changes nothing
    assert progress.bar.n == 1_280
    progress.on_trial_result(2, [a, b], b, {"timesteps": 1_040.0, "rollout/ep_return_mean": 50.0})
    assert progress.bar.n == 680 + 1_000  # capped at the budget
    progress.on_trial_result(2, [a, b], a, {"timesteps": 1_000.0, "rollout/ep_return_mean": 40.0})
    progress.on_trial_complete(2, [a, b], a)
    progress.on_trial_complete(2, [a, b], b)
    assert progress.bar.postfix == "best ep_return_mean=50.0, ended=2/2"
    assert pickle.loads(pickle.dumps(progress)).bar is None  # Tune pickles its callbacks: the bar stays
    progress.on_experiment_end(trials=[a, b])
    assert progress.bar.disable  # closed
    assert (progress.bar.n, progress.bar.total) == (2_000, 2_000) and "2000/2000" in out.getvalue()
    progress.close()  # again: nothing


def test_the_progress_bar_ends_full_when_trials_stop_early_or_fail() -> None:
    progress = SweepProgress(1_000, trials=2, mode="min", metric="train/loss", file=io.StringIO())
    a, b, c = trial("a"), trial("b"), trial("c")
    progress.on_trial_start(0, [a], a)
    progress.on_trial_result(0, [a], a, {"timesteps": 300.0, "train/loss": 2.0})
    progress.on_trial_result(0, [a], a, {"timesteps": 500.0, "train/loss": 3.0})
    assert progress.best == 2.0  # mode min
    progress.on_trial_complete(0, [a], a)  # stopped by ASHA at 500 steps: the total drops by the rest
    assert (progress.total, progress.position) == (1_500, 500)
    progress.on_trial_start(0, [a, b, c], b)  # more trials than announced: the total grows
    assert progress.trials == 3 and progress.total == 2_500
    progress.on_trial_result(0, [a, b, c], b, {"timesteps": 1_000.0})
    progress.on_trial_complete(0, [a, b, c], b)
    progress.on_trial_error(0, [a, b, c], c)  # failed before reporting
    progress.on_experiment_end(trials=[a, b, c])
    assert (progress.bar.n, progress.bar.total) == (1_500, 1_500)
    assert progress.bar.postfix == "best loss=2, ended=3/3, failed=1"


def test_the_progress_bar_refuses_a_bad_budget() -> None:
    with pytest.raises(ValueError, match="timesteps"):
        SweepProgress(0)
    with pytest.raises(ValueError, match="trials"):
        SweepProgress(100, trials=0)
    with pytest.raises(ValueError, match="mode"):
        SweepProgress(100, mode="best")


# end to end


def test_the_sweep_command_runs_a_grid_and_saves_its_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write(
        tmp_path,
        f"""
env: CartPole-v1
space: {{kfac_clip: [0.001, 0.01]}}
seeds: [0]
timesteps: 800
fixed: {{n_envs: 4}}
report_every: 5
eval_episodes: 1
storage_path: {tmp_path / "runs"}
name: cli
""",
    )
    out = tmp_path / "out"
    assert main(["sweep", str(config), "--num-cpus", "2", "--output", str(out)]) == 0
    assert not ray.is_initialized()  # the command's own Ray is shut down
    printed, errors = capsys.readouterr()
    table = pd.read_csv(out / "sweep_results.csv")
    assert len(table) == 2 and sorted(table["kfac_clip"]) == [0.001, 0.01]
    assert (table["status"] == "finished").all() and (table["timesteps"] == 800).all()
    assert table["eval/mean_return"].is_monotonic_decreasing  # best first
    assert_png((out / "sweep_aggregate.png").read_bytes())
    best = table.iloc[0]
    lines = printed.splitlines()
    header = next(i for i, line in enumerate(lines) if line.split()[:3] == ["kfac_clip", "seed", "status"])
    first = lines[header + 1].split()
    assert first[:3] == [str(best["kfac_clip"]), "0", "finished"] and first[-1] == "800"  # 0.01, not 0.010
    assert f"{best['eval/mean_return']:.1f} ± {best['eval/std_return']:.1f}" in lines[header + 1]
    assert f"best configuration: kfac_clip={best['kfac_clip']}, seed=0" in printed
    assert (tmp_path / "runs" / "cli" / "best_model.zip").is_file()
    assert f"best model   {tmp_path / 'runs' / 'cli' / 'best_model.zip'}" in printed
    assert "1600/1600" in errors and "ended=2/2" in errors  # the progress bar, over both trials
