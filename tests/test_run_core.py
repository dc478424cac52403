"""The run core: the collector in every autoreset mode, policies that carry state, the
trainer's ownership of a run (concurrent ``set``, snapshots), and a core without widgets."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from acktr_lab import ACKTR, TENSORFLOW_ENV_DEFAULTS, DummyVecEnv
from acktr_lab.rollout import Batch, Collector
from acktr_lab.schedules import learning_rate_at, progress_of

REPO = Path(__file__).resolve().parents[1]
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP, AutoresetMode.DISABLED]


class CountdownEnv(gym.Env):
    """Deterministic episodes of varying length: episode k lasts ``3 + k % 3`` steps and is
    truncated when k is even, terminated when odd. The observation is ``[k, t]``; the
    reward is ``t + 1`` plus the action."""

    observation_space = gym.spaces.Box(0.0, 1e6, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, offset: int = 0) -> None:
        self.episode, self.t = offset - 1, 0

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return self._obs(), {}

    def _obs(self) -> np.ndarray:
        return np.array([self.episode, self.t], np.float32)

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        reward = float(self.t + int(action))
        ended = self.t >= 3 + self.episode % 3
        truncated = ended and self.episode % 2 == 0
        return self._obs(), reward, ended and not truncated, truncated, {}


class StepCountingActor:
    """A stateful actor: its state counts the observations read since the episode began.

    Action: the parity of the count; value: ``obs[1] + 10 · count``. It records every
    ``value`` query, so tests can see which state a bootstrap used.
    """

    def __init__(self) -> None:
        self.value_queries: list[tuple[np.ndarray, np.ndarray]] = []

    def initial_state(self, n_envs: int) -> tuple[np.ndarray]:
        return (np.zeros(n_envs, np.float32),)

    def _count(self, state: tuple[np.ndarray], starts: np.ndarray) -> np.ndarray:
        return np.where(starts, 0.0, state[0]).astype(np.float32)

    def act(self, obs: np.ndarray, state: tuple, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple]:
        count = self._count(state, starts) + 1
        return (count % 2).astype(np.int64), obs[:, 1] + 10.0 * count, (count,)

    def value(self, obs: np.ndarray, state: tuple, starts: np.ndarray) -> np.ndarray:
        count = self._count(state, starts)
        self.value_queries.append((obs.copy(), count.copy()))
        return obs[:, 1] + 10.0 * count

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        return actions


def _countdown_env(mode: AutoresetMode) -> SyncVectorEnv:
    return SyncVectorEnv([lambda: CountdownEnv(0), lambda: CountdownEnv(1)], autoreset_mode=mode)


def _batches(mode: AutoresetMode, gae_lambda: float | None = None) -> tuple[list[Batch], StepCountingActor]:
    actor = StepCountingActor()
    collector = Collector(_countdown_env(mode), actor, seed=0)
    return [collector.collect(n_steps=5, gamma=0.9, gae_lambda=gae_lambda) for _ in range(4)], actor


FIELDS = ("observations", "actions", "rewards", "dones", "episode_starts", "values", "last_values", "returns")


@pytest.mark.parametrize("gae_lambda", [None, 0.95])
def test_every_autoreset_mode_gives_identical_batches(gae_lambda: float | None) -> None:
    reference, _ = _batches(AutoresetMode.SAME_STEP, gae_lambda)
    for mode in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
        batches, _ = _batches(mode, gae_lambda)
        for a, b in zip(reference, batches):
            for name in FIELDS:
                np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=f"{mode} {name}")
            assert a.episode_returns == b.episode_returns and a.episode_lengths == b.episode_lengths
            assert b.n_transitions == 10  # gymnasium's extra reset step is never a transition


@pytest.mark.parametrize("mode", MODES, ids=[m.value for m in MODES])
def test_batches_against_a_hand_computation(mode: AutoresetMode) -> None:
    """Env 0 plays episodes 0, 1, 2, … (3, 4, 5, … steps; truncated when even): its first
    rollout of 5 steps is episode 0 (3 steps, truncated) and 2 steps of episode 1."""
    (batch, *_), actor = _batches(mode)
    gamma = 0.9
    np.testing.assert_array_equal(batch.observations[:, 0], [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]])
    np.testing.assert_array_equal(batch.dones[:, 0], [False, False, True, False, False])
    np.testing.assert_array_equal(batch.episode_starts[:, 0], [True, False, False, True, False])
    count = np.array([1, 2, 3, 1, 2])
    np.testing.assert_array_equal(batch.actions[:, 0], count % 2)
    raw = np.array([1, 2, 3, 1, 2]) + count % 2
    # Truncated at step 2: bootstrapped from the final observation [0, 3] with the state from
    # before the reset (3 observations read): V = 3 + 10·3 = 33.
    expected_rewards = raw + np.array([0, 0, gamma * 33.0, 0, 0])
    np.testing.assert_allclose(batch.rewards[:, 0], expected_rewards)
    final_query = next((obs, c) for obs, c in actor.value_queries if obs[0, 1] == 3)
    np.testing.assert_array_equal(final_query[0][0], [0, 3])
    assert final_query[1][0] == 3
    # Last value: observation [1, 2] after 2 observations of episode 1.
    assert batch.last_values[0] == pytest.approx(2 + 10 * 2)
    returns = np.zeros(5)
    running = batch.last_values[0]
    for t in reversed(range(5)):
        running = expected_rewards[t] + gamma * (1 - batch.dones[t, 0]) * running
        returns[t] = running
    np.testing.assert_allclose(batch.returns[:, 0], returns, rtol=1e-6)
    # Env 1 starts at episode 1 (4 steps, terminated): no bootstrap in this rollout.
    np.testing.assert_array_equal(batch.dones[:, 1], [False, False, False, True, False])
    np.testing.assert_allclose(batch.rewards[:, 1], np.array([1, 2, 3, 4, 1]) + np.array([1, 2, 3, 4, 1]) % 2)
    assert batch.episode_returns == (8.0, 12.0)  # raw rewards: env 0 2+2+4, env 1 2+2+4+4
    assert batch.episode_lengths == (3, 4)
    assert batch.initial_state[0].tolist() == [0.0, 0.0]


def test_next_step_env_and_same_step_env_train_identically() -> None:
    """gymnasium's default vector env (next-step autoreset) and our same-step DummyVecEnv,
    same seed: the same timesteps, reports and parameters, bit for bit."""

    def run(env: gym.vector.VectorEnv) -> tuple[ACKTR, list]:
        model = ACKTR("MlpPolicy", env, n_steps=8, seed=4)
        reports = list(model.trainer(8 * 4 * 14))
        return model, reports

    def envs(mode: AutoresetMode) -> gym.vector.VectorEnv:
        return gym.make_vec(
            "CartPole-v1",
            num_envs=4,
            vectorization_mode="sync",
            vector_kwargs={"autoreset_mode": mode},
            max_episode_steps=40,
        )

    next_step, next_reports = run(envs(AutoresetMode.NEXT_STEP))
    same_step, same_reports = run(DummyVecEnv([lambda: gym.make("CartPole-v1", max_episode_steps=40)] * 4))
    assert next_step.num_timesteps == same_step.num_timesteps == 8 * 4 * 14
    assert sum(len(r.episode_returns) for r in next_reports) > 4  # truncations and terminations happened
    for a, b in zip(next_reports, same_reports):
        assert (a.policy_loss, a.value_loss, a.episode_returns) == (b.policy_loss, b.value_loss, b.episode_returns)
    for name, value in next_step.get_parameters().items():
        np.testing.assert_array_equal(value, same_step.get_parameters()[name])


# -- the trainer owns the run ---------------------------------------------------------


def _model(seed: int = 3, **kwargs: Any) -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=8, seed=seed, **kwargs)


def test_reports_carry_the_values_their_update_used_under_a_concurrent_set() -> None:
    model = _model()
    trainer = model.trainer(16 * 60)
    used: list[float] = []
    update = model.learner.update

    def spying_update(*args: Any, **kwargs: Any) -> dict:
        used.append(float(model.learner.loss_coefficients["ent_coef"].numpy()))
        return update(*args, **kwargs)

    model.learner.update = spying_update  # type: ignore[method-assign]
    stop = threading.Event()
    rng = random.Random(0)

    def hammer() -> None:
        while not stop.is_set():
            trainer.set(
                learning_rate=rng.uniform(0.01, 0.5),
                lr_schedule=rng.choice(["constant", "linear", "middle_drop"]),
                ent_coef=rng.uniform(0.0, 0.1),
            )
            stop.wait(0.0002)

    thread = threading.Thread(target=hammer)
    thread.start()
    try:
        reports = list(trainer)
    finally:
        stop.set()
        thread.join()
    assert len({r.hyperparameters["ent_coef"] for r in reports}) > 5  # the values did change meanwhile
    for report, ent_coef in zip(reports, used):
        assert report.hyperparameters["ent_coef"] == pytest.approx(ent_coef)
        progress = progress_of(report.timesteps, trainer.run_length)
        expected = learning_rate_at(
            report.hyperparameters["learning_rate"], report.hyperparameters["lr_schedule"], progress
        )
        assert report.learning_rate == pytest.approx(expected, rel=1e-6)


def test_restoring_another_models_snapshot_is_refused() -> None:
    a, b = _model(seed=1), _model(seed=2)
    trainer_a, trainer_b = a.trainer(1_000), b.trainer(1_000)
    trainer_a.step()
    trainer_b.step()
    snapshot = trainer_a.snapshot()
    before = b.get_parameters()
    env_b = b.get_env()
    with pytest.raises(ValueError, match="another model"):
        trainer_b.restore(snapshot)
    for name, value in b.get_parameters().items():
        np.testing.assert_array_equal(value, before[name])
    assert b.get_env() is env_b and trainer_b.num_timesteps == 16
    # The model's own snapshot restores, and the env it reports is the one being stepped.
    trainer_a.step()
    trainer_a.restore(snapshot)
    assert a.get_env() is trainer_a.collector.env
    assert trainer_a.num_timesteps == 16
    # Another trainer of the same model may restore it too.
    a.trainer(500).restore(snapshot)


def test_a_second_trainer_leaves_the_first_ones_counters_alone() -> None:
    model = _model()
    first = model.trainer(1_000)
    first.step()
    first.step()
    second = model.trainer(1_000, reset_num_timesteps=False)
    assert first.num_timesteps == 32 and first.updates == 2
    assert second.num_timesteps == 32 and second.total_timesteps == 1_032
    second.step()
    assert first.num_timesteps == 32 and model.num_timesteps == 48
    first.set(ent_coef=0.3)
    assert model.ent_coef == 0.01  # the model follows its current run, the second
    model.ent_coef = 0.2
    assert second.hyperparameters["ent_coef"] == 0.2


# -- policies that carry state --------------------------------------------------------


def test_feedforward_policy_state_is_empty_and_predict_returns_none() -> None:
    model = _model()
    assert model.initial_state is None
    assert model.policy.initial_state(3) == ()
    obs = np.zeros((3, 4), np.float32)
    actions, state = model.predict(obs, state=None, mask=[True, False, False], deterministic=True)
    assert actions.shape == (3,) and state is None
    with pytest.raises(ValueError, match="mask"):
        model.predict(obs, mask=[True, False])
    # Unrolling [T, N] equals stepping each observation (env-major flat order).
    observations = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    starts = np.zeros((5, 3), bool)
    unrolled = model.policy.unroll(observations, (), starts)
    stepped = model.policy.step(observations.swapaxes(0, 1).reshape(15, 4), (), np.zeros(15, bool))
    np.testing.assert_allclose(unrolled.values.numpy(), stepped.values.numpy(), rtol=1e-6)
    assert unrolled.state == ()


# -- a core without widgets, and without TensorFlow's start-up noise ---------------------

BLOCK_WIDGETS = """
import sys
class Blocker:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('ipywidgets', 'IPython', 'ipykernel', 'jupyterlab', 'notebook'):
            raise ImportError(f'{name} is not installed (blocked by the test)')
sys.meta_path.insert(0, Blocker())
"""


def test_cli_runs_without_widgets_and_without_tensorflow_noise(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in TENSORFLOW_ENV_DEFAULTS}
    script = BLOCK_WIDGETS + (
        "from acktr_lab.cli import main\n"
        f"code = main(['train', 'CartPole-v1', '--timesteps', '400', '--out', {str(tmp_path)!r}, "
        "'--eval-episodes', '1', '--no-gif'])\n"
        "assert not any(m.startswith('ipywidgets') for m in sys.modules)\n"
        "sys.exit(code)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "acktr_CartPole-v1.zip").exists()
    for noise in ("absl::InitializeLog", "cpu_feature_guard", "oneDNN custom operations"):
        assert noise not in result.stderr, result.stderr


def test_a_users_tensorflow_log_level_is_respected() -> None:
    script = (
        "import os\n"
        "os.environ['TF_CPP_MIN_LOG_LEVEL'] = '0'\n"
        "os.environ['TF_ENABLE_ONEDNN_OPTS'] = '1'\n"
        "import acktr_lab\n"
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], os.environ['TF_ENABLE_ONEDNN_OPTS'])\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "0 1", result.stderr


def test_onednn_kernels_are_off_unless_the_user_turns_them_on() -> None:
    """The same seed trains alike on every CPU kind: TensorFlow's oneDNN kernels (on by
    default only on CPUs with AVX512-VNNI, BF16 or AMX) stay off when the user set nothing."""
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    script = (
        "import acktr_lab, os\n"
        "from tensorflow.python.util import _pywrap_util_port\n"
        "print(os.environ['TF_ENABLE_ONEDNN_OPTS'], _pywrap_util_port.IsMklEnabled())\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=300)
    assert result.stdout.strip() == "0 False", result.stderr


def test_the_core_never_imports_widgets_or_ray() -> None:
    """Only ``acktr_lab/widgets`` may import ipywidgets (and nothing imports ray but a sweep module)."""
    offenders = []
    for path in (REPO / "acktr_lab").rglob("*.py"):
        if "widgets" in path.relative_to(REPO / "acktr_lab").parts:
            continue
        text = path.read_text()
        if "import ipywidgets" in text or "from ipywidgets" in text or "acktr_lab.widgets" in text:
            offenders.append(str(path))
    assert offenders == []


def _imports_of(path: Path, package_root: Path) -> set[str]:
    """The acktr_lab modules ``path`` imports, at any level (functions and TYPE_CHECKING too)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] != "acktr_lab":
                continue
            module = package_root.parent.joinpath(*parts)
            if module.with_suffix(".py").exists() or (module / "__init__.py").exists():
                found.add(name)
    return found


def test_the_package_has_no_import_cycle() -> None:
    """Data flows one way: no module imports (even lazily) one that imports it back, e.g.
    acktr ↔ trainer ↔ training_loop. Packages' ``__init__`` re-exports are left out."""
    root = REPO / "acktr_lab"
    modules = {
        ".".join(path.relative_to(REPO).with_suffix("").parts): path
        for path in root.rglob("*.py")
        if path.name != "__init__.py"
    }
    graph = {name: _imports_of(path, root) & set(modules) for name, path in modules.items()}
    assert "acktr_lab.learner" in graph["acktr_lab.trainer"]  # the check sees imports
    cycles: list[list[str]] = []
    finished: set[str] = set()

    def visit(node: str, stack: list[str]) -> None:
        if node in stack:
            cycles.append([*stack[stack.index(node) :], node])
            return
        if node in finished:
            return
        for child in sorted(graph[node]):
            visit(child, [*stack, node])
        finished.add(node)

    for start in sorted(graph):
        visit(start, [])
    assert cycles == []


@pytest.mark.parametrize("learning_rate", [float("nan"), float("inf"), -0.1, "fast", True])
def test_an_update_refuses_a_bad_learning_rate_and_changes_nothing(learning_rate: Any) -> None:
    # the scheduled rate is an input of the compiled step: it is checked before the step runs
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    batch = model.collector.collect(5, 0.99)
    before = [v.numpy().copy() for v in model.policy.variables]
    held = model.learner.optimizer.get_hyperparameters()["learning_rate"]
    with pytest.raises(ValueError, match="learning_rate must be"):
        model.learner.update(batch, learning_rate)
    for value, variable in zip(before, model.policy.variables):
        np.testing.assert_array_equal(variable.numpy(), value)
    assert model.learner.optimizer.get_hyperparameters()["learning_rate"] == held
    assert model.learner.update(batch, 0.1)["train/learning_rate"] == 0.1


def test_preparing_the_plans_not_due_yet_changes_nothing() -> None:
    """At the first update every K-FAC plan is traced and the ones not due are run to their
    failing plan assertion (so that TensorFlow instantiates them then, not mid-run): no
    parameter, statistic, momentum, counter or random draw may change."""
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    learner = model.learner
    batch = model.collector.collect(5, 0.99)

    def everything() -> dict[str, np.ndarray]:
        values = {f"param/{k}": v.numpy().copy() for k, v in model.policy.parameters.items()}
        values.update({f"kfac/{k}": v.numpy().copy() for k, v in learner.optimizer.state_variables().items()})
        values["generator"] = learner.generator.state.numpy().copy()
        return values

    before = everything()
    plans = learner.optimizer.possible_plans()
    assert len(plans) >= 2
    learner._prepare_every_plan(learner.optimizer.plan(), learner.step_inputs(batch)).result()
    compiled = learner.compiled_functions(acting=False)
    assert [compiled.get(f"update {tuple(plan)}") for plan in plans] == [1] * len(plans)
    # a dry run, even of the plan that is due, is refused with a message saying what it is
    # (TensorFlow logs the refusal as a warning where it was imported before acktr_lab)
    due = learner._update_step(learner.optimizer.plan())
    learning_rate = learner.optimizer.hyperparameters["learning_rate"].read_value()
    with pytest.raises(tf.errors.InvalidArgumentError, match="refused on purpose"):
        due(learner.step_inputs(batch), learning_rate, learner._dry_run)
    after = everything()
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)
