"""Expert data (record / load / split / validate) and behaviour cloning."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab.expert import ExpertDataError, ExpertDataset, generate_expert_traj
from acktr_lab.gail import ExpertDataset as GailExpertDataset
from acktr_lab.gail import generate_expert_traj as gail_generate_expert_traj
from acktr_lab.policies import MlpPolicy
from acktr_lab.pretrain import behaviour_cloning
from acktr_lab.report import PretrainReport

SB2_KEYS = {"actions", "obs", "rewards", "episode_returns", "episode_starts"}


# ------------------------------------------------------------------------------ experts
def cartpole_controller(obs: np.ndarray) -> int:
    """Push towards where the pole falls: sign(3θ + θ̇ + 0.1x + 0.5ẋ)."""
    x, x_dot, theta, theta_dot = (float(v) for v in obs)
    return int(3.0 * theta + theta_dot + 0.1 * x + 0.5 * x_dot > 0)


def pendulum_controller(obs: np.ndarray) -> np.ndarray:
    """Energy pumping far from upright, PD near it (θ = 0 is up).

    Pendulum-v1: θ̈ = 15 sin θ + 3u, so E = ½θ̇² + 15 cos θ has dE/dt = 3uθ̇ and the
    upright rest state has E* = 15; pumping u = ½(E* - E)θ̇ raises E to E*.
    """
    cos, sin, omega = (float(v) for v in obs)
    theta = np.arctan2(sin, cos)
    energy = 0.5 * omega**2 + 15.0 * cos
    u = -10.0 * theta - 2.0 * omega if cos > 0.85 else 0.5 * (15.0 - energy) * omega
    return np.clip(np.array([u], dtype=np.float32), -2.0, 2.0)


@pytest.fixture(scope="module")
def cartpole_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, np.ndarray]]:
    path = tmp_path_factory.mktemp("expert") / "expert_cartpole"
    data = generate_expert_traj(cartpole_controller, path, env="CartPole-v1", n_episodes=10, seed=0, verbose=0)
    return path.with_suffix(".npz"), data


def episode_ids(starts: np.ndarray) -> np.ndarray:
    return np.cumsum(starts) - 1


def sb2_cartpole_dict(n_episodes: int = 4, length: int = 7) -> dict[str, np.ndarray]:
    """Arrays exactly as Stable Baselines 2 saves them for CartPole (Discrete → (N, 1))."""
    rng = np.random.default_rng(0)
    n = n_episodes * length
    starts = np.zeros(n, dtype=bool)
    starts[::length] = True
    return {
        "actions": rng.integers(0, 2, size=(n, 1)).astype(np.int64),
        "obs": rng.normal(size=(n, 4)).astype(np.float32),
        "rewards": np.ones(n),
        "episode_returns": np.full(n_episodes, float(length)),
        "episode_starts": starts,
    }


# ------------------------------------------------------------------------------ recording
def test_cartpole_controller_is_an_expert_and_the_file_has_sb2_layout(cartpole_file: Any) -> None:
    path, data = cartpole_file
    assert path.is_file()
    assert set(data) == SB2_KEYS
    n = len(data["obs"])
    assert data["obs"].shape == (n, 4)
    assert data["actions"].shape == (n, 1) and np.issubdtype(data["actions"].dtype, np.integer)
    assert data["rewards"].shape == (n,)
    assert data["episode_returns"].shape == (10,)
    assert data["episode_starts"].shape == (n,) and data["episode_starts"].dtype == bool
    assert data["episode_returns"].mean() >= 475
    # episode_starts is True exactly at the first step of each episode, returns add up.
    ids = episode_ids(data["episode_starts"])
    assert data["episode_starts"][0] and ids[-1] == 9
    np.testing.assert_allclose(np.bincount(ids, weights=data["rewards"]), data["episode_returns"])
    # obs is the observation *before* the action: replay episode 0 from the same seed.
    env = gym.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    for t in range(20):
        np.testing.assert_array_equal(data["obs"][t], obs)
        assert data["actions"][t, 0] == cartpole_controller(obs)
        obs, *_ = env.step(int(data["actions"][t, 0]))
    # the archive holds the same arrays, readable without pickle
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == SB2_KEYS
        for key in SB2_KEYS:
            np.testing.assert_array_equal(archive[key], data[key])
    # nothing else (temporary files) was left in the folder
    assert os.listdir(path.parent) == [path.name]


def test_file_round_trips_through_expert_dataset(cartpole_file: Any) -> None:
    path, data = cartpole_file
    dataset = ExpertDataset(expert_path=path, verbose=0, seed=0)
    np.testing.assert_array_equal(dataset.observations, data["obs"])
    np.testing.assert_array_equal(dataset.actions, data["actions"])
    np.testing.assert_array_equal(dataset.rewards, data["rewards"])
    np.testing.assert_array_equal(dataset.episode_starts, data["episode_starts"])
    np.testing.assert_array_equal(dataset.returns, data["episode_returns"])
    assert dataset.n_episodes == dataset.num_traj == 10
    assert dataset.n_transitions == dataset.num_transition == len(data["obs"])
    assert dataset.mean_return == pytest.approx(data["episode_returns"].mean())
    assert dataset.std_return == pytest.approx(data["episode_returns"].std())
    # the path without ".npz" works too, and the SB2 import path is the same class
    assert GailExpertDataset is ExpertDataset and gail_generate_expert_traj is generate_expert_traj
    assert GailExpertDataset(expert_path=str(path)[: -len(".npz")], verbose=0).n_episodes == 10


def test_split_is_by_trajectory_and_loaders_cover_each_split_once(cartpole_file: Any) -> None:
    path, data = cartpole_file
    ids = episode_ids(data["episode_starts"])
    dataset = ExpertDataset(expert_path=path, train_fraction=0.7, batch_size=128, verbose=0, seed=3)
    train_idx = dataset.train_loader.original_indices
    val_idx = dataset.val_loader.original_indices
    train_eps, val_eps = set(ids[train_idx]), set(ids[val_idx])
    assert not train_eps & val_eps
    assert train_eps | val_eps == set(range(10))
    assert len(train_eps) == 7 and len(val_eps) == 3
    assert sorted(train_eps) == dataset.train_episodes.tolist()
    # whole episodes on each side
    assert len(train_idx) + len(val_idx) == len(ids)
    assert len(train_idx) == int(np.isin(ids, list(train_eps)).sum())
    # one epoch of the train loader visits every training transition exactly once
    seen = []
    for obs_batch, act_batch in dataset.train_loader:
        assert obs_batch.shape[1:] == (4,) and act_batch.shape[1:] == (1,)
        seen.append(obs_batch)
    assert len(seen) == len(dataset.train_loader) == -(-len(train_idx) // 128)
    np.testing.assert_array_equal(np.sort(np.concatenate(seen), axis=0), np.sort(data["obs"][train_idx], axis=0))
    # seeded: the same seed gives the same split; two epochs are shuffled differently
    again = ExpertDataset(expert_path=path, train_fraction=0.7, batch_size=128, verbose=0, seed=3)
    np.testing.assert_array_equal(again.val_episodes, dataset.val_episodes)
    first = next(iter(dataset.train_loader))[0]
    second = next(iter(dataset.train_loader))[0]
    assert not np.array_equal(first, second)
    # get_next_batch wraps around epochs
    for _ in range(len(dataset.val_loader) + 2):
        obs_batch, _ = dataset.get_next_batch("val")
        assert set(ids[np.flatnonzero(np.isin(data["obs"][:, 0], obs_batch[:, 0]))]) <= val_eps
    assert dataset.get_next_batch()[0].shape[1:] == (4,)
    # with two episodes, each split still gets one
    two = ExpertDataset(expert_path=path, traj_limitation=2, train_fraction=0.99, verbose=0)
    assert len(two.train_episodes) == 1 and len(two.val_episodes) == 1


def test_traj_limitation_keeps_the_first_k_episodes(cartpole_file: Any) -> None:
    path, data = cartpole_file
    n3 = int(np.flatnonzero(data["episode_starts"])[3])
    dataset = ExpertDataset(expert_path=path, traj_limitation=3, verbose=0)
    assert dataset.n_episodes == 3 and dataset.n_transitions == n3
    np.testing.assert_array_equal(dataset.observations, data["obs"][:n3])
    np.testing.assert_array_equal(dataset.returns, data["episode_returns"][:3])
    assert ExpertDataset(expert_path=path, traj_limitation=50, verbose=0).n_episodes == 10


def test_log_info_and_plot(cartpole_file: Any, capsys: pytest.CaptureFixture[str]) -> None:
    path, _ = cartpole_file
    dataset = ExpertDataset(expert_path=path, verbose=1)
    out = capsys.readouterr().out
    assert "Total trajectories: 10" in out and "Average returns" in out
    figure = dataset.plot()
    assert figure.axes[0].get_xlabel() == "episode return"
    assert sum(p.get_height() for p in figure.axes[0].patches) == 10


def test_sb2_shaped_dict_and_file_load(tmp_path: Path) -> None:
    data = sb2_cartpole_dict()
    dataset = ExpertDataset(traj_data=data, verbose=0, batch_size=5)
    assert dataset.n_episodes == 4 and dataset.n_transitions == 28
    assert dataset.actions.shape == (28, 1)
    dataset.check_spaces(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))
    np.savez(tmp_path / "sb2.npz", **data)  # exactly what SB2 does
    from_file = ExpertDataset(expert_path=tmp_path / "sb2.npz", verbose=0)
    np.testing.assert_array_equal(from_file.actions, data["actions"])
    # SB2's optional keys may be absent: returns come from the rewards, or are unknown
    no_returns = {k: v for k, v in data.items() if k != "episode_returns"}
    np.testing.assert_allclose(ExpertDataset(traj_data=no_returns, verbose=0).returns, 7.0)
    minimal = {k: data[k] for k in ("obs", "actions", "episode_starts")}
    assert np.isnan(ExpertDataset(traj_data=minimal, verbose=0).mean_return)


# ------------------------------------------------------------------------------ bad data
def test_bad_datasets_raise_helpful_errors(tmp_path: Path, cartpole_file: Any) -> None:
    good_path, _ = cartpole_file
    data = sb2_cartpole_dict()
    with pytest.raises(ValueError, match=r"missing key\(s\) \['actions'\]"):
        ExpertDataset(traj_data={k: v for k, v in data.items() if k != "actions"}, verbose=0)
    with pytest.raises(ValueError, match="both"):
        ExpertDataset(expert_path=good_path, traj_data=data, verbose=0)
    with pytest.raises(ValueError, match="one of"):
        ExpertDataset(verbose=0)
    short = dict(data, actions=data["actions"][:-1])
    with pytest.raises(ValueError, match=r"lengths differ.*'obs' has 28.*'actions' has 27"):
        ExpertDataset(traj_data=short, verbose=0)
    empty = {k: v[:0] for k, v in data.items()}
    with pytest.raises(ValueError, match="empty"):
        ExpertDataset(traj_data=empty, verbose=0)
    with pytest.raises(ValueError, match="episode_starts\\[0\\] must be True"):
        ExpertDataset(traj_data=dict(data, episode_starts=np.roll(data["episode_starts"], 1)), verbose=0)
    with pytest.raises(ValueError, match="'episode_returns' has 3 entries but 'episode_starts' marks 4"):
        ExpertDataset(traj_data=dict(data, episode_returns=np.ones(3)), verbose=0)
    with pytest.raises(ValueError, match="NaN"):
        ExpertDataset(traj_data=dict(data, obs=np.full((28, 4), np.nan)), verbose=0)

    empty_file = tmp_path / "empty.npz"
    empty_file.write_bytes(b"")
    with pytest.raises(ValueError, match="empty file"):
        ExpertDataset(expert_path=empty_file, verbose=0)
    good_bytes = good_path.read_bytes()
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good_bytes[: len(good_bytes) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        ExpertDataset(expert_path=truncated, verbose=0)
    corrupt = bytearray(good_bytes)
    middle = len(corrupt) // 2
    corrupt[middle : middle + 64] = bytes(64)  # zero a block inside an array: CRC mismatch
    corrupt_file = tmp_path / "corrupt.npz"
    corrupt_file.write_bytes(bytes(corrupt))
    with pytest.raises(ValueError, match="corrupt"):
        ExpertDataset(expert_path=corrupt_file, verbose=0)
    text_file = tmp_path / "notes.npz"
    text_file.write_text("not an archive at all")
    with pytest.raises(ValueError, match=r"not an \.npz archive"):
        ExpertDataset(expert_path=text_file, verbose=0)
    with pytest.raises(ValueError, match="does not exist"):
        ExpertDataset(expert_path=tmp_path / "nowhere.npz", verbose=0)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **dict(data, obs=np.array([{"a": 1}] * 28, dtype=object)))
    with pytest.raises(ValueError, match="pickled object arrays"):
        ExpertDataset(expert_path=pickled, verbose=0)

    dataset = ExpertDataset(traj_data=data, verbose=0)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
    with pytest.raises(ValueError, match=r"actions have shape \(1,\) per transition.*expects \(2,\)"):
        dataset.check_spaces(obs_space, gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ValueError, match="out of range"):
        dataset.check_spaces(obs_space, gym.spaces.Discrete(1))
    with pytest.raises(ValueError, match=r"observations have shape \(4,\).*expects \(3,\)"):
        dataset.check_spaces(gym.spaces.Box(-1, 1, (3,), np.float32), gym.spaces.Discrete(2))
    float_actions = ExpertDataset(traj_data=dict(data, actions=data["actions"] + 0.5), verbose=0)
    with pytest.raises(ValueError, match="must be integers"):
        float_actions.check_spaces(obs_space, gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="0 or 1"):
        ExpertDataset(traj_data=dict(data, actions=np.full((28, 2), 2)), verbose=0).check_spaces(
            obs_space, gym.spaces.MultiBinary(2)
        )


# ------------------------------------------------------------------------------ images
class TinyImageEnv(gym.Env[np.ndarray, int]):
    """Random ``8x8xC`` uint8 frames, episodes of 5 steps; remembers what it emitted."""

    def __init__(self, channels: int = 3) -> None:
        self.observation_space = gym.spaces.Box(0, 255, (8, 8, channels), np.uint8)
        self.action_space = gym.spaces.Discrete(2)
        self.emitted: list[np.ndarray] = []
        self.t = 0

    def _frame(self) -> np.ndarray:
        frame = self.np_random.integers(0, 256, size=self.observation_space.shape, dtype=np.uint8)
        self.emitted.append(frame)
        return frame

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        self.t = 0
        return self._frame(), {}

    def step(self, action: int) -> tuple[np.ndarray, float, bool, bool, dict]:
        self.t += 1
        return self._frame(), float(action), False, self.t >= 5, {}


@pytest.mark.parametrize("channels", [3, 1])
def test_image_observations_are_written_as_png_and_loaded_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: int
) -> None:
    monkeypatch.chdir(tmp_path)
    env = TinyImageEnv(channels)
    data = generate_expert_traj(lambda obs: 1, "data/images_expert", env=env, n_episodes=3, seed=0, verbose=0)
    # the frames that preceded an action (not the final frame of each episode)
    frames = np.stack([f for i, f in enumerate(env.emitted) if i % 6 != 5])
    assert data["obs"].shape == (15,) and data["obs"].dtype.kind == "U"
    assert data["obs"][0] == os.path.join("data", "recorded_images", "0.png")
    assert all(Path(p).is_file() for p in data["obs"])
    assert np.all(data["actions"] == 1) and data["episode_returns"].tolist() == [5.0, 5.0, 5.0]

    dataset = ExpertDataset(expert_path="data/images_expert.npz", randomize=False, batch_size=4, verbose=0)
    dataset.check_spaces(env.observation_space, env.action_space)
    loaded = np.concatenate([obs for loader in (dataset.train_loader, dataset.val_loader) for obs, _ in loader])
    order = np.concatenate([dataset.train_loader.original_indices, dataset.val_loader.original_indices])
    assert loaded.dtype == np.uint8 and loaded.shape == (15, 8, 8, channels)
    np.testing.assert_array_equal(loaded, frames[order])

    # the archive still finds its images when opened from another working directory
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    moved = ExpertDataset(expert_path=tmp_path / "data" / "images_expert.npz", randomize=False, verbose=0)
    np.testing.assert_array_equal(next(iter(moved.train_loader))[0][0], frames[0])
    with pytest.raises(ValueError, match=r"images have shape"):
        moved.check_spaces(gym.spaces.Box(0, 255, (4, 4, channels), np.uint8), env.action_space)


def image_dataset(tmp_path: Path, sizes: list[tuple[int, int]]) -> ExpertDataset:
    """A dataset whose observations are PNG paths of the given (H, W) sizes, in order."""
    from PIL import Image

    tmp_path.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (height, width) in enumerate(sizes):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.zeros((height, width), np.uint8)).save(path)
        paths.append(str(path))
    n = len(paths)
    traj = {
        "obs": np.array(paths),
        "actions": np.zeros((n, 1)),
        "rewards": np.zeros(n),
        "episode_returns": np.zeros(1),
        "episode_starts": np.eye(1, n, dtype=bool)[0],
    }
    return ExpertDataset(traj_data=traj, batch_size=n, train_fraction=1.0, randomize=False, verbose=0)


def test_a_batch_image_of_another_size_is_refused_from_its_header_before_decoding(tmp_path: Path) -> None:
    """Every path may name one huge image: each is checked against the first's size before
    it is decoded (a 12.8 KB archive and one 105 KB PNG cost 1.6 GiB for a batch of 8)."""
    dataset = image_dataset(tmp_path, [(8, 8), (8, 8), (3000, 3000)])
    with pytest.raises(ExpertDataError, match=r"'.*2.png' is 3000×3000 \(H×W\), but the batch's first image is 8×8"):
        next(iter(dataset.train_loader))
    assert next(iter(image_dataset(tmp_path / "good", [(8, 8)] * 3).train_loader))[0].shape == (3, 8, 8, 1)


def test_an_image_beyond_the_pixel_limit_is_refused_before_decoding(tmp_path: Path) -> None:
    dataset = image_dataset(tmp_path, [(4097, 4097)])
    with pytest.raises(ExpertDataError, match=r"is 4097×4097 pixels, more than the limit of 16,777,216"):
        next(iter(dataset.train_loader))


# ------------------------------------------------------------------------------ models, vector envs
class FakeModel:
    """The SB2 model surface generate_expert_traj uses: predict, learn, get_env."""

    def __init__(self, env: Any = None) -> None:
        self.env = env
        self.learned = 0
        self.deterministic: list[bool] = []

    def get_env(self) -> Any:
        return self.env

    def learn(self, total_timesteps: int) -> FakeModel:
        self.learned += total_timesteps
        return self

    def predict(self, obs: np.ndarray, deterministic: bool = False) -> tuple[np.ndarray, None]:
        self.deterministic.append(deterministic)
        obs = np.asarray(obs)
        if obs.ndim == 2:
            return np.array([cartpole_controller(o) for o in obs]), None
        return np.array(cartpole_controller(obs)), None


def test_model_with_its_one_env_vector_env_and_training_first() -> None:
    vec = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")], autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    model = FakeModel(vec)
    data = generate_expert_traj(model, n_timesteps=7, n_episodes=2, seed=1, deterministic=True, verbose=0)
    assert model.learned == 7 and all(model.deterministic)
    assert data["episode_returns"].tolist() == [500.0, 500.0]
    assert data["obs"].shape == (1000, 4) and data["actions"].shape == (1000, 1)
    assert data["episode_starts"].sum() == 2 and data["episode_starts"][500]
    # two envs: refused
    two = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1")] * 2)
    with pytest.raises(ValueError, match="has 2 envs"):
        generate_expert_traj(FakeModel(two), n_episodes=1, verbose=0)
    with pytest.raises(ValueError, match="no env"):
        generate_expert_traj(FakeModel(None), n_episodes=1, verbose=0)


def test_recording_from_an_acktr_model() -> None:
    from acktr_lab import ACKTR

    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    data = generate_expert_traj(model, n_episodes=2, verbose=0)
    assert data["episode_returns"].shape == (2,) and data["actions"].shape[1:] == (1,)
    assert set(np.unique(data["actions"])) <= {0, 1}


# ------------------------------------------------------------------------------ behaviour cloning
def _mode_fn(policy: MlpPolicy) -> Callable[[np.ndarray], np.ndarray]:
    space = policy.observation_space
    fn = tf.function(
        lambda obs: policy(obs)[0].mode(),
        input_signature=[tf.TensorSpec([None, *space.shape], tf.as_dtype(space.dtype))],
    )
    return lambda obs: fn(tf.convert_to_tensor(obs)).numpy()


def evaluate_deterministic(policy: MlpPolicy, env_id: str, n_episodes: int, seed: int) -> np.ndarray:
    """Returns of ``n_episodes`` run in lockstep (one batched policy call per step)."""
    act = _mode_fn(policy)
    envs = [gym.make(env_id) for _ in range(n_episodes)]
    obs = np.stack([env.reset(seed=seed + i)[0] for i, env in enumerate(envs)])
    returns = np.zeros(n_episodes)
    active = np.ones(n_episodes, dtype=bool)
    while active.any():
        idx = np.flatnonzero(active)
        actions = act(obs[idx])
        for j, i in enumerate(idx):
            obs[i], reward, terminated, truncated, _ = envs[i].step(int(actions[j]))
            returns[i] += reward
            active[i] = not (terminated or truncated)
    return returns


def test_behaviour_cloning_cartpole_reaches_expert_level_without_rl() -> None:
    data = generate_expert_traj(cartpole_controller, env="CartPole-v1", n_episodes=20, seed=100, verbose=0)
    dataset = ExpertDataset(traj_data=data, train_fraction=0.8, batch_size=64, verbose=0, seed=0)
    env = gym.make("CartPole-v1")
    policy = MlpPolicy(env.observation_space, env.action_space, seed=0)
    before = evaluate_deterministic(policy, "CartPole-v1", 5, seed=1000)
    reports = list(behaviour_cloning(policy, dataset, n_epochs=8, learning_rate=3e-3))
    assert [r.epoch for r in reports] == list(range(1, 9))
    assert all(isinstance(r, PretrainReport) and r.n_epochs == 8 for r in reports)
    assert reports[-1].train_loss < 0.5 * reports[0].train_loss
    assert reports[-1].val_loss is not None and reports[-1].val_loss < 0.2
    returns = evaluate_deterministic(policy, "CartPole-v1", 20, seed=1000)
    assert returns.mean() >= 400, (before, returns)
    print(f"cartpole returns: untrained {before.mean():.1f}, cloned {returns.mean():.1f}")


def test_behaviour_cloning_pendulum_reduces_held_out_action_error() -> None:
    data = generate_expert_traj(pendulum_controller, env="Pendulum-v1", n_episodes=20, seed=0, verbose=0)
    assert data["actions"].shape == (4000, 1) and data["actions"].dtype == np.float32
    assert data["episode_returns"].mean() > -400  # the controller swings up and balances
    dataset = ExpertDataset(traj_data=data, train_fraction=0.75, batch_size=64, verbose=0, seed=0)
    env = gym.make("Pendulum-v1")
    policy = MlpPolicy(env.observation_space, env.action_space, seed=0)
    act = _mode_fn(policy)
    val = dataset.val_loader.original_indices

    def held_out_mse() -> float:
        return float(np.mean((act(data["obs"][val]) - data["actions"][val]) ** 2))

    untrained = held_out_mse()
    reports = list(behaviour_cloning(policy, dataset, n_epochs=30, learning_rate=3e-3, val_interval=10))
    assert [r.val_loss is not None for r in reports] == [e % 10 == 0 for e in range(1, 31)]
    trained = held_out_mse()
    assert trained < 0.5 * untrained, (untrained, trained)
    print(f"pendulum held-out MSE: untrained {untrained:.3f}, cloned {trained:.3f}")
    assert reports[-1].val_loss == pytest.approx(trained, rel=1e-4)  # per-transition mean


def _identity_data(n_episodes: int, length: int, obs: np.ndarray, actions: np.ndarray) -> dict[str, np.ndarray]:
    starts = np.zeros(n_episodes * length, dtype=bool)
    starts[::length] = True
    return {"obs": obs, "actions": actions, "episode_starts": starts}


@pytest.mark.parametrize("kind", ["multi_discrete", "multi_binary"])
def test_behaviour_cloning_multidiscrete_and_multibinary_reduce_loss(kind: str) -> None:
    rng = np.random.default_rng(0)
    n = 10 * 40
    obs = rng.uniform(0, 1, size=(n, 4)).astype(np.float32)
    obs_space = gym.spaces.Box(0, 1, (4,), np.float32)
    if kind == "multi_discrete":
        action_space: gym.Space = gym.spaces.MultiDiscrete([3, 2])
        actions = np.stack([np.argmax(obs[:, :3], axis=1), (obs[:, 3] > 0.5).astype(np.int64)], axis=1)
    else:
        action_space = gym.spaces.MultiBinary(4)
        actions = (obs > 0.5).astype(np.int8)
    dataset = ExpertDataset(traj_data=_identity_data(10, 40, obs, actions), batch_size=32, verbose=0, seed=0)
    policy = MlpPolicy(obs_space, action_space, seed=0)
    reports = list(behaviour_cloning(policy, dataset, n_epochs=20, learning_rate=1e-2))
    assert reports[-1].train_loss < 0.5 * reports[0].train_loss, reports
    assert reports[-1].val_loss is not None and reports[-1].val_loss < 0.6 * reports[0].train_loss


def test_behaviour_cloning_rejects_data_that_does_not_fit_the_policy() -> None:
    data = sb2_cartpole_dict()
    dataset = ExpertDataset(traj_data=data, verbose=0)
    policy = MlpPolicy(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Box(-1, 1, (2,), np.float32))
    with pytest.raises(ValueError, match=r"does not fit the policy.*actions have shape"):
        behaviour_cloning(policy, dataset)  # raised at the call, before iterating
    good = MlpPolicy(gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))
    with pytest.raises(ValueError, match="n_epochs"):
        behaviour_cloning(good, dataset, n_epochs=0)
