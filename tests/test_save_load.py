"""Saving and loading: identical predictions, exact resumption of training, the safe zip
format (JSON + NumPy, never pickle), atomic writes, clear errors on bad files, callables,
and Stable Baselines 2 model files."""

from __future__ import annotations

import io
import itertools
import json
import os
import pickle
import sys
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

from acktr_lab import ACKTR, UpdateReport, make_vec_env
from acktr_lab.serialization import ModelFileError

sys.path.insert(0, str(Path(__file__).parent))
import identity_envs


def _observations(space: gym.Space, n: int, seed: int = 0) -> np.ndarray:
    space.seed(seed)
    return np.stack([space.sample() for _ in range(n)])


def _assert_same_predictions(a: ACKTR, b: ACKTR, obs: np.ndarray) -> None:
    np.testing.assert_array_equal(a.predict(obs, deterministic=True)[0], b.predict(obs, deterministic=True)[0])
    pa, pb = a.action_probability(obs), b.action_probability(obs)
    if isinstance(pa, tuple | list):
        for x, y in zip(pa, pb):
            np.testing.assert_array_equal(x, y)
    else:
        np.testing.assert_array_equal(pa, pb)


def _assert_same_parameters(a: ACKTR, b: ACKTR) -> None:
    pa, pb = a.get_parameters(), b.get_parameters()
    assert list(pa) == list(pb)
    for name in pa:
        np.testing.assert_array_equal(pa[name], pb[name], err_msg=name)


# -- round trips ----------------------------------------------------------------------


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_round_trip_mlp(tmp_path: Path, env_id: str) -> None:
    model = ACKTR("MlpPolicy", env_id, n_envs=2, n_steps=5, seed=0)
    model.learn(15 * 10)  # past the cold start: K-FAC state is populated
    path = tmp_path / "model"
    model.save(path)
    assert (tmp_path / "model.zip").is_file()
    loaded = ACKTR.load(path)
    assert loaded.get_env() is None
    _assert_same_parameters(model, loaded)
    obs = _observations(model.observation_space, 32)
    _assert_same_predictions(model, loaded, obs)
    actions = np.stack([model.action_space.sample() for _ in range(32)])
    np.testing.assert_array_equal(
        model.action_probability(obs, actions=actions, logp=True),
        loaded.action_probability(obs, actions=actions, logp=True),
    )
    assert loaded.num_timesteps == model.num_timesteps
    assert loaded.get_hyperparameters() == model.get_hyperparameters()


@pytest.mark.parametrize("make_env", [identity_envs.multi_discrete, identity_envs.multi_binary])
def test_round_trip_multi_spaces(tmp_path: Path, make_env: Any) -> None:
    model = ACKTR("MlpPolicy", make_env(), n_steps=5, seed=0)
    model.learn(20)
    model.save(tmp_path / "m.zip")
    loaded = ACKTR.load(tmp_path / "m.zip")
    _assert_same_predictions(model, loaded, _observations(model.observation_space, 16))


class TinyImageEnv(gym.Env):
    """40x40x1 uint8 images (the smallest size the Nature CNN takes is 36x36)."""

    observation_space = gym.spaces.Box(0, 255, (40, 40, 1), np.uint8)
    action_space = gym.spaces.Discrete(3)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._t = 0
        return self.np_random.integers(0, 256, (40, 40, 1), dtype=np.uint8), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self._t += 1
        obs = self.np_random.integers(0, 256, (40, 40, 1), dtype=np.uint8)
        return obs, float(action == 1), False, self._t >= 10, {}


@pytest.mark.parametrize("approx_t2", [False, True])
def test_round_trip_cnn(tmp_path: Path, approx_t2: bool) -> None:
    model = ACKTR("CnnPolicy", TinyImageEnv(), n_steps=4, seed=0, approx_t2=approx_t2)
    model.learn(8)  # two updates
    assert model.optimizer.iterations.numpy() == 2
    model.save(tmp_path / "cnn")
    loaded = ACKTR.load(tmp_path / "cnn", env=TinyImageEnv())
    assert type(loaded.policy).__name__ == "CnnPolicy"
    assert loaded.kfac_kwargs["approx_t2"] is approx_t2 and loaded.optimizer.approx_t2 is approx_t2
    assert "model/c1/w:0" in loaded.get_parameters()
    _assert_same_parameters(model, loaded)
    _assert_same_predictions(model, loaded, _observations(model.observation_space, 8))


def test_save_to_file_object(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    buffer = io.BytesIO()
    model.save(buffer)
    buffer.seek(0)
    loaded = ACKTR.load(buffer)
    _assert_same_parameters(model, loaded)


def test_load_kwargs_change_hyperparameters(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    model.save(tmp_path / "m")
    loaded = ACKTR.load(tmp_path / "m", ent_coef=0.5, learning_rate=0.1)
    assert loaded.ent_coef == 0.5 and loaded.learning_rate == 0.1
    _assert_same_parameters(model, loaded)
    with pytest.raises(ValueError, match="policy_kwargs"):
        ACKTR.load(tmp_path / "m", policy_kwargs={"net_arch": [8]})


def test_cloudpickle_refused(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    with pytest.raises(ValueError, match="pickle"):
        model.save(tmp_path / "m", cloudpickle=True)
    assert not list(tmp_path.iterdir())


# -- resuming training ----------------------------------------------------------------


def _comparable(report: UpdateReport) -> dict[str, Any]:
    return {
        "update_timesteps": report.timesteps,
        "learning_rate": report.learning_rate,
        "policy_loss": report.policy_loss,
        "value_loss": report.value_loss,
        "entropy": report.entropy,
        "kl": report.kl,
        "trust_region_scale": report.trust_region_scale,
        "gfg": report.gfg,
        "kfac_step": report.kfac_step,
        "episode_returns": report.episode_returns,
    }


def test_optimizer_state_restored(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=2, n_steps=5, seed=0)
    model.learn(13 * 10)
    model.save(tmp_path / "m")
    loaded = ACKTR.load(tmp_path / "m")
    assert int(loaded.optimizer.iterations.numpy()) == 13
    saved = model.optimizer.state_variables()
    restored = loaded.optimizer.state_variables()
    assert list(saved) == list(restored)
    assert any(name.endswith("/A") for name in saved) and any("velocity" in name for name in saved)
    for name in saved:
        np.testing.assert_array_equal(saved[name].numpy(), restored[name].numpy(), err_msg=name)
    for block in loaded.optimizer.blocks:
        assert np.any(block.input_factor.numpy() != 0), block.layer_name  # statistics, not a fresh start
    np.testing.assert_array_equal(model.learner.generator.state.numpy(), loaded.learner.generator.state.numpy())


@pytest.mark.parametrize("saved_after", [6, 14])  # during the cold start, and after K-FAC started
def test_training_resumes_exactly(tmp_path: Path, saved_after: int) -> None:
    """Continuing the loaded model on an identically seeded env gives exactly the updates
    that continuing the original gives: parameters, K-FAC statistics and inverse, momentum,
    iteration count (cold start vs K-FAC), schedule position and the random generator
    (actions, Fisher noise) are all restored."""
    n_envs, n_steps, total = 2, 10, 40 * 20
    model = ACKTR("MlpPolicy", "CartPole-v1", n_envs=n_envs, n_steps=n_steps, seed=3)
    trainer = model.trainer(total)
    for _ in range(saved_after):
        next(trainer)
    model.save(tmp_path / "m")

    def fresh_env() -> gym.vector.VectorEnv:
        return make_vec_env("CartPole-v1", n_envs=n_envs, seed=11)

    loaded = ACKTR.load(tmp_path / "m", env=fresh_env())
    model.set_env(fresh_env())  # the same env state for both: reset with the model's seed

    remaining = total - model.num_timesteps
    original_reports = list(itertools.islice(model.trainer(remaining, reset_num_timesteps=False), 8))
    loaded_reports = list(itertools.islice(loaded.trainer(remaining, reset_num_timesteps=False), 8))
    assert [r.kfac_step for r in loaded_reports] == [saved_after + i >= 10 for i in range(8)]
    for a, b in zip(original_reports, loaded_reports):
        np.testing.assert_equal(_comparable(a), _comparable(b))  # NaN == NaN during the cold start
    _assert_same_parameters(model, loaded)

    # The check has teeth: the same parameters (and random state) with a fresh optimizer
    # continue differently.
    parameters_only = ACKTR("MlpPolicy", fresh_env(), n_steps=n_steps, seed=3)
    parameters_only.load_parameters(tmp_path / "m.zip")
    parameters_only.learner.generator.reset(ACKTR.load(tmp_path / "m").learner.generator.state)
    parameters_only.num_timesteps = saved_after * n_envs * n_steps
    other = next(parameters_only.trainer(remaining, reset_num_timesteps=False))
    assert other.policy_loss == original_reports[0].policy_loss  # the same batch and parameters...
    assert other.kl != original_reports[0].kl  # ...but another step


# -- the file format ------------------------------------------------------------------


def test_file_is_zip_of_json_and_npz(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    model.save(tmp_path / "m.zip")
    with zipfile.ZipFile(tmp_path / "m.zip") as archive:
        names = set(archive.namelist())
        assert names == {"acktr_lab.json", "parameters.npz", "optimizer.npz", "extra.npz"}
        header = json.loads(archive.read("acktr_lab.json"))
        assert header["format"] == "acktr_lab" and header["format_version"] == 1
        assert header["data"]["policy"] == "MlpPolicy"
        assert header["data"]["hyperparameters"]["n_steps"] == 20
        for entry in names - {"acktr_lab.json"}:
            with np.load(io.BytesIO(archive.read(entry)), allow_pickle=False) as npz:
                for key in npz.files:
                    assert npz[key].dtype != object
        with np.load(io.BytesIO(archive.read("parameters.npz")), allow_pickle=False) as npz:
            assert npz.files == list(model.get_parameters())


class _Exploit:
    """Unpickling this would create a directory: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return os.mkdir, (str(self.marker),)


def _npz_with_object_array(marker: Path) -> bytes:
    buffer = io.BytesIO()
    array = np.empty(1, dtype=object)
    array[0] = _Exploit(marker)
    np.savez(buffer, **{"model/pi/w:0": array})
    return buffer.getvalue()


def _rewrite(source: Path, target: Path, replace: dict[str, bytes]) -> None:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for name in src.namelist():
            dst.writestr(name, replace.get(name, src.read(name)))


def test_object_array_is_refused_not_unpickled(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    model.save(tmp_path / "good.zip")
    marker = tmp_path / "pwned"
    _rewrite(tmp_path / "good.zip", tmp_path / "evil.zip", {"parameters.npz": _npz_with_object_array(marker)})
    with pytest.raises(ValueError, match=r"parameters arrays.*pickled object arrays, which are never loaded"):
        ACKTR.load(tmp_path / "evil.zip")
    with pytest.raises(ValueError):
        model.load_parameters(tmp_path / "evil.zip")
    assert not marker.exists()


def test_object_array_in_stable_baselines_zip_refused(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    with zipfile.ZipFile(tmp_path / "sb2.zip", "w") as archive:
        archive.writestr("data", json.dumps({"gamma": 0.99}))
        archive.writestr("parameters", _npz_with_object_array(marker))
    with pytest.raises(ModelFileError, match="pickled object arrays, which are never loaded"):
        ACKTR.load(tmp_path / "sb2.zip")
    assert not marker.exists()


# -- atomic save ----------------------------------------------------------------------


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "m.zip")


@pytest.mark.parametrize("failing", ["replace", "fsync"])
def test_interrupted_save_keeps_previous_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing: str) -> None:
    old = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    old.save(tmp_path / "m.zip")
    before = (tmp_path / "m.zip").read_bytes()
    new = ACKTR("MlpPolicy", "CartPole-v1", seed=1)

    def boom(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk unplugged")

    monkeypatch.setattr(os, failing, boom)
    with pytest.raises(OSError, match="disk unplugged"):
        new.save(tmp_path / "m.zip")
    monkeypatch.undo()

    assert (tmp_path / "m.zip").read_bytes() == before
    assert _leftovers(tmp_path) == []
    _assert_same_parameters(old, ACKTR.load(tmp_path / "m.zip"))


def test_keyboard_interrupt_during_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    old = ACKTR("MlpPolicy", "CartPole-v1", seed=0)
    old.save(tmp_path / "m.zip")
    before = (tmp_path / "m.zip").read_bytes()
    real_fdopen = os.fdopen

    class HalfWriter:
        def __init__(self, handle: Any) -> None:
            self.handle = handle

        def __enter__(self) -> HalfWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.handle.close()

        def write(self, payload: bytes) -> None:
            self.handle.write(payload[: len(payload) // 2])
            raise KeyboardInterrupt

    monkeypatch.setattr(os, "fdopen", lambda fd, mode: HalfWriter(real_fdopen(fd, mode)))
    with pytest.raises(KeyboardInterrupt):
        ACKTR("MlpPolicy", "CartPole-v1", seed=1).save(tmp_path / "m.zip")
    monkeypatch.undo()
    assert (tmp_path / "m.zip").read_bytes() == before
    assert _leftovers(tmp_path) == []


# -- bad files ------------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    ACKTR("MlpPolicy", "CartPole-v1", seed=0).save(tmp_path / "good.zip")
    return tmp_path / "good.zip"


def test_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "random.zip"
    path.write_bytes(np.random.default_rng(0).bytes(5000))
    with pytest.raises(ValueError, match="neither a zip archive nor a pickle"):
        ACKTR.load(path)


def test_truncated_file(saved: Path, tmp_path: Path) -> None:
    raw = saved.read_bytes()
    path = tmp_path / "half.zip"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        ACKTR.load(path)


def test_corrupted_member(saved: Path, tmp_path: Path) -> None:
    raw = bytearray(saved.read_bytes())
    with zipfile.ZipFile(saved) as archive:
        info = archive.getinfo("optimizer.npz")
    middle = info.header_offset + 30 + len(info.filename) + info.compress_size // 2
    raw[middle : middle + 16] = bytes(16)
    path = tmp_path / "flipped.zip"
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="corrupt"):
        ACKTR.load(path)


def test_foreign_zip(tmp_path: Path) -> None:
    path = tmp_path / "foreign.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "hello")
        archive.writestr("data.csv", "a,b\n1,2\n")
    with pytest.raises(ValueError, match=r"not an acktr_lab or Stable Baselines model.*readme.txt"):
        ACKTR.load(path)


@pytest.mark.parametrize("version", [99, "1", None])
def test_wrong_format_version(saved: Path, tmp_path: Path, version: Any) -> None:
    with zipfile.ZipFile(saved) as archive:
        header = json.loads(archive.read("acktr_lab.json"))
    header["format_version"] = version
    path = tmp_path / "future.zip"
    _rewrite(saved, path, {"acktr_lab.json": json.dumps(header).encode()})
    with pytest.raises(ValueError, match="format version"):
        ACKTR.load(path)


def test_header_not_json(saved: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad_header.zip"
    _rewrite(saved, path, {"acktr_lab.json": b"{not json"})
    with pytest.raises(ValueError, match="not valid JSON"):
        ACKTR.load(path)


def test_missing_member(saved: Path, tmp_path: Path) -> None:
    path = tmp_path / "missing.zip"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(path, "w") as dst:
        for name in src.namelist():
            if name != "optimizer.npz":
                dst.writestr(name, src.read(name))
    with pytest.raises(ValueError, match=r"optimizer\.npz"):
        ACKTR.load(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        ACKTR.load(tmp_path / "nothing_here")
    with pytest.raises(FileNotFoundError):
        ACKTR.load(tmp_path / "nothing_here.zip")


def test_load_without_zip_suffix(saved: Path) -> None:
    assert ACKTR.load(saved.with_suffix("")).policy_class.__name__ == "MlpPolicy"


# -- callables ------------------------------------------------------------------------


def halving(progress_remaining: float) -> float:
    return 0.5 * progress_remaining


def test_callable_learning_rate(tmp_path: Path) -> None:
    model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=5, learning_rate=halving, seed=0)
    model.learn(20)
    model.save(tmp_path / "m")
    with pytest.raises(ValueError, match="custom_objects") as info:
        ACKTR.load(tmp_path / "m")
    assert "learning_rate" in str(info.value) and "halving" in str(info.value)
    loaded = ACKTR.load(tmp_path / "m", env="CartPole-v1", custom_objects={"learning_rate": halving})
    assert loaded.learning_rate is halving
    _assert_same_parameters(model, loaded)
    loaded.learn(20)
    # A plain number through kwargs also replaces the callable.
    assert ACKTR.load(tmp_path / "m", learning_rate=0.1).learning_rate == 0.1


# -- Stable Baselines 2 files ---------------------------------------------------------


@pytest.fixture(scope="module")
def sb2_zip(shared_fixtures: Path) -> Path:
    path = shared_fixtures / "sb2" / "acktr_Pendulum-v0.zip"
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def _forbid_pickle(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("something tried to unpickle")

    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def test_sb2_load_without_unpickling(sb2_zip: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _forbid_pickle(monkeypatch)
    model = ACKTR.load(sb2_zip)
    monkeypatch.undo()
    assert model.policy_class.__name__ == "MlpPolicy"
    assert model.observation_space.shape == (3,)
    assert isinstance(model.action_space, gym.spaces.Box) and model.action_space.shape == (1,)
    np.testing.assert_allclose(model.action_space.high, [2.0])
    assert model.n_steps == 16 and model.learning_rate == pytest.approx(0.06) and model.lr_schedule == "constant"
    assert model.ent_coef == 0.0


def test_sb2_parameters_map_one_to_one(sb2_zip: Path) -> None:
    with zipfile.ZipFile(sb2_zip) as archive:
        order = json.loads(archive.read("parameter_list"))
        with np.load(io.BytesIO(archive.read("parameters")), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    model = ACKTR.load(sb2_zip)
    params = model.get_parameters()
    assert list(params) == order
    assert set(arrays) == set(order)
    for name in order:
        assert params[name].shape == arrays[name].shape, name
        np.testing.assert_array_equal(params[name], arrays[name], err_msg=name)
    # The same file through load_parameters into a fresh model.
    fresh = ACKTR("MlpPolicy", "Pendulum-v1", seed=0)
    fresh.load_parameters(sb2_zip)
    for name in order:
        np.testing.assert_array_equal(fresh.get_parameters()[name], arrays[name], err_msg=name)


def _stochastic_returns(model: ACKTR, n_episodes: int, seed: int) -> list[float]:
    env = gym.make("Pendulum-v1")
    returns = []
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            action, _ = model.predict(obs)
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    return returns


@pytest.mark.slow
def test_sb2_agent_performs_as_published(sb2_zip: Path) -> None:
    """Published (rl-baselines-zoo, Pendulum-v0, stochastic actions): -213.8 ± 137.9."""
    model = ACKTR.load(sb2_zip, env="Pendulum-v1", seed=0)
    returns = _stochastic_returns(model, 10, seed=500)
    assert np.mean(returns) > -400, returns
    untrained = ACKTR("MlpPolicy", "Pendulum-v1", seed=0)
    baseline = _stochastic_returns(untrained, 10, seed=500)
    assert np.mean(baseline) < -900, baseline
