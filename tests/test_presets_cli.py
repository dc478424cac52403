"""Presets (every one builds and trains), settings files, and the command line: train,
enjoy, record-expert and bench run and refuse bad input clearly."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from acktr_lab import ACKTR
from acktr_lab.cli import main
from acktr_lab.expert import ExpertDataset
from acktr_lab.presets import PRESETS, get_preset, preset_from_yaml

ZOO_ENVS = [
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "Pendulum-v1",
    "LunarLander-v3",
    "LunarLanderContinuous-v3",
    "MountainCarContinuous-v0",
    "BipedalWalker-v3",
    "ALE/Pong-v5",
    "ALE/Breakout-v5",
]


def test_every_zoo_env_has_a_preset() -> None:
    assert sorted(PRESETS) == sorted(ZOO_ENVS)
    for preset in PRESETS.values():
        assert preset.zoo_score is not None and preset.zoo_timesteps is not None


@pytest.mark.parametrize("env_id", ZOO_ENVS)
def test_each_preset_builds_and_trains_a_few_updates(env_id: str) -> None:
    preset = PRESETS[env_id]
    env = preset.make_env(n_envs=2, seed=0)
    model = ACKTR(preset.policy, env, seed=0, **preset.acktr_kwargs())
    if preset.atari:
        assert env.single_observation_space.shape == (4, 84, 84) and model.policy.channels_first
    assert model.normalize_returns == (preset.normalize or preset.hyperparameters.get("normalize_returns", False))
    reports = list(model.trainer(3 * 2 * model.n_steps))
    assert len(reports) == 3 and all(np.isfinite(r.policy_loss) and not r.skipped for r in reports)
    assert all(np.all(np.isfinite(v)) for v in model.get_parameters().values())
    eval_env = preset.make_eval_env()
    obs, _ = eval_env.reset(seed=0)
    action, _ = model.predict(obs, deterministic=True)
    assert eval_env.action_space.contains(action)
    eval_env.close()
    env.close()


def test_an_env_without_a_preset_gets_acktr_defaults() -> None:
    preset = get_preset("FrozenLake-v1")
    assert preset.n_envs == 1 and preset.acktr_kwargs() == {} and preset.policy == "MlpPolicy"


def test_settings_from_a_zoo_yaml_file(tmp_path: Path) -> None:
    path = tmp_path / "acktr.yml"
    path.write_text(
        "CartPole-v1:\n  n_envs: 4\n  n_timesteps: !!float 2e4\n  policy: 'MlpPolicy'\n  ent_coef: 0.0\n"
        "  normalize: true\n"
    )
    preset = preset_from_yaml(path, "CartPole-v1")
    assert (preset.n_envs, preset.n_timesteps) == (4, 20_000)
    assert preset.acktr_kwargs() == {"ent_coef": 0.0, "normalize_returns": True, "normalize_observations": True}
    for bad, message in (
        ('policy_kwargs: "dict(net_arch=[64])"\n', "Python expression"),
        ("n_envs: -3\n", "n_envs"),
        ("bogus: 1\n", "bogus"),
        ("- 1\n- 2\n", "mapping"),
        ("n_envs: [\n", "not valid YAML"),
        ("n_envs: &n 8\nn_timesteps: *n\n", r"an alias \(\*n\) is not read"),
    ):
        path.write_text(bad)
        with pytest.raises(ValueError, match=message):
            preset_from_yaml(path, "CartPole-v1")


# -- the command line -----------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run")
    flags = ["--timesteps", "640", "--n-envs", "2", "--out", str(out), "--eval-episodes", "1", "--no-gif"]
    code = main(["train", "Pendulum-v1", *flags, "--set", "n_steps=16", "--set", "normalize=true"])
    assert code == 0
    return out / "acktr_Pendulum-v1.zip"


def test_train_uses_the_preset_flags_and_settings(trained: Path) -> None:
    model = ACKTR.load(trained)
    assert model.env_id == "Pendulum-v1" and model.num_timesteps == 640 and model.n_steps == 16
    assert model.learning_rate == 0.06 and model.lr_schedule == "constant"  # from the preset
    assert model.normalize_observations and model.normalize_returns  # from --set normalize=true


def test_enjoy_prints_returns_and_writes_a_gif(trained: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gif = trained.parent / "replay.gif"
    assert main(["enjoy", str(trained), "--episodes", "2", "--output", str(gif)]) == 0
    out = capsys.readouterr().out
    assert "episode 1: return" in out and "mean return" in out
    assert gif.read_bytes()[:6] in (b"GIF87a", b"GIF89a")


def test_record_expert_writes_a_dataset(trained: Path) -> None:
    target = trained.parent / "expert"
    assert main(["record-expert", str(trained), "--episodes", "2", "--output", str(target)]) == 0
    dataset = ExpertDataset(expert_path=str(target.with_suffix(".npz")), verbose=0)
    assert len(dataset.returns) == 2
    assert dataset.observations.shape == (400, 3)  # Pendulum episodes last 200 steps


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "NoSuchEnv-v0"], "unknown environment"),
        (["train", "CartPole-v1", "--set", "ent_coef=-1"], "ent_coef"),
        (["train", "CartPole-v1", "--set", "warp=9"], "warp"),
        (["train", "CartPole-v1", "--set", "ent_coef"], "key=value"),
        (["train", "CartPole-v1", "--timesteps", "0"], "n_timesteps"),
        (["enjoy", "missing.zip"], "no model file"),
        (["enjoy", "{trained}", "--output", "replay.avi"], ".gif or .mp4"),
        (["enjoy", "{trained}", "--env", "NoSuchEnv-v0"], "unknown environment"),
        (["enjoy", "{trained}", "--env", "CartPole-v1"], "does not fit CartPole-v1: its observation space"),
        (["train", "ALE/NoSuchGame-v5"], "unknown environment"),
        (["record-expert", "{trained}", "--episodes", "0"], "--episodes"),
        (["bench", "--envs", "Pong"], "no benchmark"),
        (["bench", "--budget-scale", "2"], "budget-scale"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    argv: list[str], message: str, trained: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{trained}", str(trained)) for a in argv]
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_a_corrupt_model_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"not a zip at all")
    assert main(["enjoy", str(bad), "--env", "CartPole-v1"]) == 2
    assert "cannot load" in capsys.readouterr().err


def test_bench_writes_results_and_curves(tmp_path: Path) -> None:
    argv = ["bench", "--envs", "CartPole-v1", "--seeds", "1", "--budget-scale", "0.01", "--no-sb3"]
    assert main([*argv, "--out", str(tmp_path)]) == 0
    text = (tmp_path / "results.md").read_text()
    assert "| CartPole-v1 | ACKTR (acktr_lab) | 1,500 |" in text and "487.6" in text and "CPU cores" in text
    assert (tmp_path / "CartPole-v1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_results_name_the_seeds_of_a_row_that_lacks_some(tmp_path: Path) -> None:
    """A resumed benchmark can hold A2C on fewer seeds than ACKTR: its row says which."""
    from acktr_lab.benchmark import ALGORITHMS, Run, write_results

    def run(algorithm: str, seed: int, final: float) -> Run:
        return Run(ALGORITHMS[algorithm], "CartPole-v1", seed, 150_000, [(150_000, final)], [final] * 20, 60.0)

    runs = [run("acktr", 0, 500.0), run("acktr", 1, 480.0), run("acktr", 2, 490.0), run("a2c", 0, 300.0)]
    runs.append(run("a2c", 2, 100.0))
    text = write_results(runs, tmp_path, [0, 1, 2], 1.0).read_text()
    rows = {line.split("|")[2].strip(): line.split("|") for line in text.splitlines() if line.startswith("| Cart")}
    assert rows["ACKTR (acktr_lab)"][5].strip() == "500.0, 480.0, 490.0"
    assert rows["A2C (SB3)"][5].strip() == "300.0, 100.0 (seeds 0, 2; not run: 1)"
    assert rows["A2C (SB3)"][4].strip() == "200.0 ± 100.0" and rows["A2C (SB3)"][6].strip() == "never, never"


def test_a_table_merged_from_benchmarks_of_different_seeds_says_each_envs(tmp_path: Path) -> None:
    """One env benchmarked on more seeds than the rest: the header names its seeds, and no row
    of the other envs is said to lack them."""
    from acktr_lab.benchmark import ALGORITHMS, Run, write_results

    def run(algorithm: str, env_id: str, seed: int) -> Run:
        budget = {"CartPole-v1": 150_000, "Acrobot-v1": 500_000}[env_id]
        return Run(ALGORITHMS[algorithm], env_id, seed, budget, [(budget, -80.0)], [-80.0 - seed] * 20, 60.0)

    runs = [run(a, "CartPole-v1", s) for s in range(3) for a in ("acktr", "a2c")]
    runs += [run(a, "Acrobot-v1", s) for s in range(5) for a in ("acktr", "a2c")]
    runs.remove(run("a2c", "Acrobot-v1", 3))
    text = write_results(runs, tmp_path, [0, 1, 2], 1.0).read_text()
    assert "Seeds [0, 1, 2]; Acrobot-v1: seeds [0, 1, 2, 3, 4];" in text
    cells = [line.split("|") for line in text.splitlines() if line.startswith(("| CartPole", "| Acrobot"))]
    rows = {(row[1].strip(), row[2].strip()): row for row in cells}
    assert rows["CartPole-v1", "A2C (SB3)"][5].strip() == "-80.0, -81.0, -82.0"
    assert rows["Acrobot-v1", "ACKTR (acktr_lab)"][5].strip() == "-80.0, -81.0, -82.0, -83.0, -84.0"
    assert rows["Acrobot-v1", "A2C (SB3)"][5].strip() == "-80.0, -81.0, -82.0, -84.0 (seeds 0, 1, 2, 4; not run: 3)"

    # as many envs hold fewer seeds than were asked for as hold them all: those asked for lead
    pendulum = [Run(ALGORITHMS["acktr"], "Pendulum-v1", 0, 2_000_000, [], [-150.0] * 20, 60.0)]
    cartpole = [run for run in runs if run.env_id == "CartPole-v1"]
    text = write_results(pendulum + cartpole, tmp_path, [0, 1, 2], 1.0).read_text()
    assert "Seeds [0, 1, 2]; Pendulum-v1: seeds [0];" in text


def test_curves_are_one_colour_per_algorithm_with_the_mean_of_its_seeds() -> None:
    from matplotlib.figure import Figure

    from acktr_lab.benchmark import ALGORITHMS, Run, _plot_curves

    def run(seed: int, scores: list[float]) -> Run:
        return Run(ALGORITHMS["acktr"], "CartPole-v1", seed, 150_000, list(zip([10_000, 20_000], scores)), [0.0], 1.0)

    axes = Figure().add_subplot()
    _plot_curves(axes, [run(0, [100.0, 300.0]), run(1, [200.0, 500.0])], "ACKTR", "C0")
    lines = axes.get_lines()
    assert {line.get_color() for line in lines} == {"C0"}
    mean = [line for line in lines if line.get_label() == "ACKTR, mean of 2 seeds"]
    assert len(mean) == 1 and list(mean[0].get_ydata()) == [150.0, 400.0]

    # seeds evaluated unequally (a stopped run) or never: their curves, and no mean
    axes = Figure().add_subplot()
    short, empty = run(2, [50.0]), Run(ALGORITHMS["acktr"], "CartPole-v1", 3, 150_000, [], [0.0], 1.0)
    _plot_curves(axes, [run(0, [100.0, 300.0]), short, empty], "ACKTR", "C1")
    assert [line.get_label() for line in axes.get_lines() if not line.get_label().startswith("_")] == [
        "ACKTR, 3 seed(s)"
    ]
    assert sorted(len(line.get_ydata()) for line in axes.get_lines()) == [0, 0, 1, 2]


def test_bench_resume_keeps_earlier_runs_and_trains_only_the_missing_ones(tmp_path: Path) -> None:
    argv = ["bench", "--envs", "CartPole-v1", "--budget-scale", "0.01", "--algorithms", "acktr", "--out", str(tmp_path)]
    assert main([*argv, "--seeds", "1"]) == 0
    (first,) = json.loads((tmp_path / "runs.json").read_text())
    assert first["finished"].endswith(" UTC") and "CPU cores" in first["machine"]
    del first["finished"], first["machine"]  # as a runs.json written before runs were stamped
    (tmp_path / "runs.json").write_text(json.dumps([first]))
    assert main([*argv, "--seeds", "2", "--resume"]) == 0
    runs = json.loads((tmp_path / "runs.json").read_text())
    assert [run["seed"] for run in runs] == [0, 1]
    assert {key: runs[0][key] for key in first} == first  # kept, not trained again (its seconds would differ)
    assert len(runs[1]["curve"]) == 15 and len(runs[1]["final"]) == 20
    text = (tmp_path / "results.md").read_text()
    assert "Seeds [0, 1]" in text
    assert f"Runs finished {runs[1]['finished']} – {runs[1]['finished']} on {runs[1]['machine']}." in text
    assert "1 of the 2 runs carry no time or machine" in text
    row = next(line for line in text.splitlines() if line.startswith("| CartPole-v1 | ACKTR"))
    assert len(row.split("|")[5].split(",")) == 2  # per-seed finals of both seeds


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not a benchmark's runs.json"),
        ('[{"seed": 0}]', "is not a benchmark's runs.json"),
        (
            '[{"algorithm": "ACKTR (acktr_lab)", "env_id": "CartPole-v1", "seed": 0, "budget": 150000,'
            ' "curve": [], "final": [500.0], "seconds": 1.0}]',
            "not the 1,500 of --budget-scale 0.01",
        ),
        (
            '[{"algorithm": "PPO", "env_id": "CartPole-v1", "seed": 0, "budget": 1500,'
            ' "curve": [], "final": [500.0], "seconds": 1.0}]',
            "unknown run 'PPO'",
        ),
    ],
)
def test_bench_resume_refuses_a_runs_file_it_cannot_carry_on(
    tmp_path: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "runs.json").write_text(content)
    argv = ["bench", "--envs", "CartPole-v1", "--seeds", "1", "--budget-scale", "0.01", "--no-sb3"]
    assert main([*argv, "--out", str(tmp_path), "--resume"]) == 2
    assert message in capsys.readouterr().err
    assert (tmp_path / "runs.json").read_text() == content  # nothing already saved is lost


def test_bench_merges_seeds_run_by_separate_processes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """One seed per process (``--first-seed``), then one table of both (``--merge``), trained once."""
    argv = ["bench", "--envs", "CartPole-v1", "--budget-scale", "0.01", "--algorithms", "acktr", "--seeds", "1"]
    assert main([*argv, "--out", str(tmp_path / "a")]) == 0
    assert main([*argv, "--first-seed", "1", "--out", str(tmp_path / "b")]) == 0
    (seed_0,) = json.loads((tmp_path / "a" / "runs.json").read_text())
    (seed_1,) = json.loads((tmp_path / "b" / "runs.json").read_text())
    assert (seed_0["seed"], seed_1["seed"]) == (0, 1)
    merge = ["--merge", str(tmp_path / "a" / "runs.json"), str(tmp_path / "b" / "runs.json")]
    assert main([*argv[:-1], "2", *merge, "--out", str(tmp_path / "both")]) == 0
    assert json.loads((tmp_path / "both" / "runs.json").read_text()) == [seed_0, seed_1]  # neither trained again
    assert "Seeds [0, 1]" in (tmp_path / "both" / "results.md").read_text()

    seed_1["seed"] = 0  # another run of seed 0: which one is the table's?
    (tmp_path / "b" / "runs.json").write_text(json.dumps([seed_1]))
    assert main([*argv, *merge, "--out", str(tmp_path / "conflict")]) == 2
    assert "hold different runs of ACKTR (acktr_lab) on CartPole-v1 seed 0" in capsys.readouterr().err
    assert not (tmp_path / "conflict").exists()
    assert main([*argv, "--merge", str(tmp_path / "nothing.json"), "--out", str(tmp_path / "c")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert main([*argv, "--first-seed", "-1"]) == 2


def test_bench_refuses_contradicting_algorithm_flags(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--no-sb3", "--algorithms", "a2c"]) == 2
    assert "contradict" in capsys.readouterr().err


def test_gymnasium_env_check_of_the_atari_pipeline() -> None:
    env = get_preset("ALE/Pong-v5").make_eval_env()
    assert env.observation_space == gym.spaces.Box(0, 255, (4, 84, 84), np.uint8)
    env.close()
