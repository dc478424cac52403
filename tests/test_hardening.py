"""Hostile inputs (issue 15): one section per class of defect, several inputs each.

Expert data files are covered in ``test_expert_hardening.py`` and envs that break the
gymnasium API in ``test_env_check.py``.
"""

from __future__ import annotations

import io
import json
import os
import stat
import subprocess
import sys
import time
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab import ACKTR
from acktr_lab.kfac import Dense, KfacOptimizer
from acktr_lab.serialization import ModelFileError

MiB = 1 << 20


# ----------------------------------------------------------------------------- helpers
def small_model(**kwargs: Any) -> ACKTR:
    return ACKTR("MlpPolicy", "CartPole-v1", **{"seed": 0, "n_steps": 5, **kwargs})


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small trained model's file (past the cold start: K-FAC state is non-trivial)."""
    path = tmp_path_factory.mktemp("saved") / "model.zip"
    small_model().learn(100).save(path)
    return path


def members(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def write_zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


def npz(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def read_npz(data: bytes) -> dict[str, np.ndarray]:
    with np.load(io.BytesIO(data)) as archive:
        return {k: archive[k] for k in archive.files}


def with_header(source: Path, target: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    entries = members(source)
    header = json.loads(entries["acktr_lab.json"])
    change(header["data"])
    entries["acktr_lab.json"] = json.dumps(header).encode()
    return write_zip(target, entries)


def with_arrays(source: Path, target: Path, member: str, change: Callable[[dict[str, np.ndarray]], None]) -> Path:
    entries = members(source)
    arrays = read_npz(entries[member])
    change(arrays)
    entries[member] = npz(arrays)
    return write_zip(target, entries)


def parameter_values(model: ACKTR) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.get_parameters().items()}


def assert_all_finite(model: ACKTR) -> None:
    for name, value in model.get_parameters().items():
        assert np.all(np.isfinite(value)), name


# ------------------------------------------------- 1. non-finite steps never reach the parameters
@pytest.mark.parametrize("damping", [0, 0.0, -0.01, float("nan"), float("inf"), "0.01", True, None])
def test_damping_must_be_a_positive_number(damping: Any) -> None:
    with pytest.raises(ValueError, match="damping"):
        small_model(damping=damping)
    layer = Dense(2, 2, name="d")
    with pytest.raises(ValueError, match="damping"):
        KfacOptimizer(list(layer.parameters), [layer], damping=damping)
    optimizer = KfacOptimizer(list(layer.parameters), [layer])
    with pytest.raises(ValueError, match="damping"):
        optimizer.set_hyperparameters(damping=damping)


@pytest.mark.parametrize(
    "settings",
    [
        # a damping that underflows to 0 in float32 with zeroed small eigenvalues: V = ∇ / 0
        {"damping": 1e-300, "eigen_epsilon": 0.5},
        # cold-start steps that overflow float32 parameters
        {"learning_rate": 1e38, "lr_schedule": "constant"},
        # K-FAC steps too big for float32 once the trust region allows them
        {"learning_rate": 1e30, "kfac_clip": 1e38, "max_grad_norm": 1e38, "lr_schedule": "constant"},
    ],
    ids=["singular-preconditioner", "cold-overflow", "kfac-overflow"],
)
def test_non_finite_step_is_skipped_and_parameters_stay_as_they_were(settings: dict[str, Any], tmp_path: Path) -> None:
    model = small_model(**settings)
    trainer = model.trainer(400)
    skipped = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        while not trainer.done:
            before = parameter_values(model)
            velocities = [v.numpy().copy() for v in model.optimizer.velocities]
            report = trainer.step()
            if report.skipped:
                skipped += 1
                for name, value in model.get_parameters().items():
                    np.testing.assert_array_equal(value, before[name], err_msg=name)
                for old, new in zip(velocities, model.optimizer.velocities):
                    np.testing.assert_array_equal(new.numpy(), old)
            assert_all_finite(model)
    assert skipped > 0, "these settings should make at least one step non-finite"
    assert int(model.optimizer.skipped_updates.numpy()) == skipped
    model.save(tmp_path / "after.zip")
    loaded = ACKTR.load(tmp_path / "after.zip")
    obs = np.random.default_rng(0).normal(size=(16, 4)).astype(np.float32)
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], model.predict(obs, deterministic=True)[0])


# --------------------------------------- 2. values that overflow float32 in the cast are refused
@pytest.mark.parametrize("value", [1e39, -1e39, np.finfo(np.float64).max, 2.0**128])
def test_load_parameters_refuses_values_beyond_float32(value: float) -> None:
    model = small_model()
    before = parameter_values(model)
    bad = {k: v.astype(np.float64) for k, v in before.items()}
    bad["model/pi/w:0"] = np.full_like(bad["model/pi/w:0"], value)
    with pytest.raises(ValueError, match=r"model/pi/w:0.*not finite as float32"):
        model.load_parameters(bad)
    for name, array in model.get_parameters().items():
        np.testing.assert_array_equal(array, before[name])


@pytest.mark.parametrize("value", [1e39, -1e39, np.finfo(np.float64).max, np.nan])
def test_model_file_with_parameters_beyond_float32_is_refused(saved: Path, tmp_path: Path, value: float) -> None:
    def change(arrays: dict[str, np.ndarray]) -> None:
        arrays["model/vf/w:0"] = np.full(arrays["model/vf/w:0"].shape, value, np.float64)

    path = with_arrays(saved, tmp_path / "bad.zip", "parameters.npz", change)
    with pytest.raises(ModelFileError, match=r"bad\.zip: parameter model/vf/w:0"):
        ACKTR.load(path)
    model = small_model()
    before = parameter_values(model)
    with pytest.raises(ModelFileError, match=r"bad\.zip: its parameters do not fit this model: parameter model/vf/w:0"):
        model.load_parameters(path)
    for name, array in model.get_parameters().items():
        np.testing.assert_array_equal(array, before[name])


# --------------------------------------------- 3. the optimizer state from a file is validated
def _set(key_part: str, make: Callable[[np.ndarray], np.ndarray]) -> Callable[[dict[str, np.ndarray]], None]:
    def change(arrays: dict[str, np.ndarray]) -> None:
        key = next(k for k in arrays if key_part in k)
        arrays[key] = make(arrays[key])

    return change


@pytest.mark.parametrize(
    ("member", "change", "field"),
    [
        ("optimizer.npz", _set("velocity/0", lambda a: np.full_like(a, np.nan)), "velocity/0"),
        ("optimizer.npz", _set("/A", lambda a: np.full_like(a, np.nan)), "/A"),
        ("optimizer.npz", _set("G_eigenvalues", lambda a: -np.ones_like(a)), "G_eigenvalues"),
        ("optimizer.npz", _set("/G", lambda a: np.full(a.shape, 1e39)), "/G"),
        ("optimizer.npz", _set("iterations", lambda a: np.array(-1)), "iterations"),
        ("optimizer.npz", _set("iterations", lambda a: np.array(1.5)), "iterations"),
        ("optimizer.npz", _set("skipped_updates", lambda a: np.array("x")), "skipped_updates"),
        ("optimizer.npz", _set("A_eigenvectors", lambda a: a[:1]), "A_eigenvectors"),
        ("extra.npz", _set("generator_state", lambda a: a[:1]), "generator_state"),
        ("extra.npz", _set("generator_state", lambda a: a.astype(np.float64)), "generator_state"),
    ],
)
def test_bad_optimizer_state_in_a_file_is_refused(
    saved: Path, tmp_path: Path, member: str, change: Callable[[dict[str, np.ndarray]], None], field: str
) -> None:
    path = with_arrays(saved, tmp_path / "bad.zip", member, change)
    with pytest.raises(ModelFileError, match=rf"bad\.zip: .*{field}"):
        ACKTR.load(path)


@pytest.mark.parametrize(
    ("key", "value"),
    [(key, value) for key in ("var", "published_var") for value in (np.nan, 1e39, -1.0)]
    + [("published_mean", np.nan), ("published_mean", 1e39)],
)
def test_bad_normalisation_statistics_in_a_file_are_refused(tmp_path: Path, key: str, value: float) -> None:
    small_model(normalize_observations=True).learn(20).save(tmp_path / "good.zip")

    def change(arrays: dict[str, np.ndarray]) -> None:
        name = f"observation_normalizer/{key}"
        arrays[name] = np.full_like(arrays[name], value)

    path = with_arrays(tmp_path / "good.zip", tmp_path / "bad.zip", "extra.npz", change)
    with pytest.raises(ModelFileError, match=r"bad\.zip: observation_normalizer"):
        ACKTR.load(path)
    assert ACKTR.load(tmp_path / "good.zip").observation_normalizer is not None


# ---------------------------------------------------------- 4. bounded work for any file
def _npy_header(shape: tuple[int, ...], dtype: str = "<f4") -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": dtype, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def _honest_bomb(n_bytes: int) -> bytes:
    """An npz whose one member honestly decompresses to ``n_bytes`` of zeros (≈ n/1000 on disk)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        header = _npy_header((n_bytes // 4,))
        with archive.open("model/pi/w:0.npy", "w", force_zip64=True) as member:
            member.write(header)
            chunk = bytes(16 * MiB)
            for _ in range(n_bytes // len(chunk)):
                member.write(chunk)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def hostile_files(saved: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile")
    entries = members(saved)
    files: dict[str, Path] = {}
    # parameters.npz whose member decompresses to 1.1 GiB (> the 1 GiB cap) from ≈ 1 MB
    files["bomb"] = write_zip(folder / "bomb.zip", {**entries, "parameters.npz": _honest_bomb(1100 * MiB)})
    # a member whose .npy header declares 40000×40000 floats but holds a few bytes
    lying = io.BytesIO()
    with zipfile.ZipFile(lying, "w") as archive:
        archive.writestr("model/pi/w:0.npy", _npy_header((40000, 40000)) + bytes(64))
    files["declared-shape"] = write_zip(folder / "declared.zip", {**entries, "parameters.npz": lying.getvalue()})

    def wide(data: dict[str, Any]) -> None:
        data["policy_kwargs"]["net_arch"] = [20000, 20000]

    files["net_arch"] = with_header(saved, folder / "net_arch.zip", wide)

    def big_space(data: dict[str, Any]) -> None:
        data["observation_space"] = {"type": "Box", "shape": [40000, 40000], "dtype": "float32", "low": 0, "high": 1}

    files["space"] = with_header(saved, folder / "space.zip", big_space)

    def huge_steps(data: dict[str, Any]) -> None:
        data["hyperparameters"]["n_steps"] = 10**40

    files["n_steps"] = with_header(saved, folder / "n_steps.zip", huge_steps)
    return files


_CHILD = r"""
import json, resource, sys, time
from acktr_lab import ACKTR
from acktr_lab.serialization import ModelFileError

def vm_size():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

limit = vm_size() + int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
results = {}
for path in sys.argv[2:]:
    start = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        ACKTR.load(path)
        results[path] = {"error": None}
    except Exception as error:
        results[path] = {"error": type(error).__name__, "message": str(error)[:400]}
    results[path]["seconds"] = time.perf_counter() - start
    results[path]["growth_mib"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak) / 1024
print("RESULTS" + json.dumps(results))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc are Linux's")
def test_hostile_files_are_refused_quickly_under_a_memory_limit(hostile_files: dict[str, Path]) -> None:
    """Each file would make the library allocate gigabytes; under a 768 MiB address-space
    headroom each is refused with a ModelFileError within seconds, memory barely growing."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    paths = [str(p) for p in hostile_files.values()]
    completed = subprocess.run(
        [sys.executable, "-c", _CHILD, str(768 * MiB), *paths], capture_output=True, text=True, timeout=300, env=env
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    line = next(x for x in completed.stdout.splitlines() if x.startswith("RESULTS"))
    results = json.loads(line[len("RESULTS") :])
    expected = {
        "bomb": "more than the limit",
        "declared-shape": "more than the limit",
        "net_arch": "parameter budget",
        "space": "larger than the limit",
        "n_steps": "n_steps must be ≥ 1 and ≤ 100000, got 1000000000",
    }
    for name, path in hostile_files.items():
        result = results[str(path)]
        assert result["error"] == "ModelFileError", (name, result)
        assert expected[name] in result["message"] and path.name in result["message"], (name, result)
        assert result["seconds"] < 10 and result["growth_mib"] < 200, (name, result)


@pytest.mark.parametrize(
    ("name", "value"),
    [("n_steps", 10**6), ("n_steps", 10**40), ("n_envs", 10**5), ("kfac_update", 10**9), ("cold_iter", 10**9)],
)
def test_sizes_from_any_source_are_bounded(name: str, value: int) -> None:
    with pytest.raises(ValueError, match=rf"{name} must be .*≤ "):
        small_model(**{name: value})


def test_a_rollout_that_cannot_fit_in_memory_is_refused() -> None:
    env = gym.make("CartPole-v1")
    env = gym.wrappers.TransformObservation(
        env, lambda o: np.zeros((2048, 2048), np.float32), gym.spaces.Box(0, 1, (2048, 2048), np.float32)
    )
    with pytest.raises(ValueError, match=r"GiB per rollout"):
        ACKTR("MlpPolicy", env, n_steps=1000, seed=0)


# ------------------------------------------- 5. a file never chooses where learn() writes
def test_machine_settings_are_not_taken_from_a_file(saved: Path, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"

    def plant(data: dict[str, Any]) -> None:
        data["hyperparameters"].update(tensorboard_log=str(target), full_tensorboard_log=True, n_cpu_tf_sess=64)

    path = with_header(saved, tmp_path / "planted.zip", plant)
    model = ACKTR.load(path, env="CartPole-v1")
    assert model.tensorboard_log is None and not model.full_tensorboard_log and model.n_cpu_tf_sess == 1
    model.learn(50)
    assert not target.exists()
    # the caller can still ask for them, and then they apply
    mine = tmp_path / "mine"
    model = ACKTR.load(path, env="CartPole-v1", tensorboard_log=str(mine))
    model.learn(50)
    assert mine.exists()

    small_model(tensorboard_log=str(target)).save(tmp_path / "own.zip")
    assert ACKTR.load(tmp_path / "own.zip").tensorboard_log is None


# -------------------------------------------- 6. every problem with a file: ModelFileError
def _header_bytes(saved: Path, raw: bytes) -> dict[str, bytes]:
    return {**members(saved), "acktr_lab.json": raw}


def _hyper(**values: Any) -> Callable[[dict[str, Any]], None]:
    def change(data: dict[str, Any]) -> None:
        data["hyperparameters"].update(values)

    return change


def _drop(key: str) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.pop(key)


def _put(key: str, value: Any) -> Callable[[dict[str, Any]], None]:
    return lambda data: data.__setitem__(key, value)


HEADER_CASES: dict[str, tuple[Callable[[dict[str, Any]], None], str]] = {
    "missing observation_space": (_drop("observation_space"), "observation_space: missing"),
    "missing hyperparameters": (_drop("hyperparameters"), "hyperparameters: missing"),
    "hyperparameters not a dict": (_put("hyperparameters", [1, 2]), "hyperparameters: must be a dict"),
    "unknown hyperparameter": (_hyper(warp_drive=1), "hyperparameters.warp_drive: unknown"),
    "wrong type": (_hyper(gamma="high"), "hyperparameters.gamma: gamma must be a number"),
    "overflowing number": (_hyper(kfac_update=10**400), "hyperparameters.kfac_update"),
    "infinite float": (_hyper(learning_rate=float("inf")), "hyperparameters.learning_rate"),
    "unknown policy": (_put("policy", "EvilPolicy"), "policy: unknown policy"),
    "policy not a str": (_put("policy", {"a": 1}), "policy: unknown policy"),
    "policy_kwargs not a dict": (_put("policy_kwargs", "x"), "policy_kwargs: must be a dict"),
    "policy_kwargs unknown key": (_put("policy_kwargs", {"eval": "x"}), "not MlpPolicy arguments"),
    "act_fun not a name": (_put("policy_kwargs", {"act_fun": 3}), "act_fun"),
    "net_arch fractional": (_put("policy_kwargs", {"net_arch": [{"pi": [2.7]}]}), "net_arch pi"),
    "MultiDiscrete whose int64 sum wraps": (
        _put("observation_space", {"type": "MultiDiscrete", "nvec": [2**62, 2**62, 2**62, 2**62 + 4]}),
        "MultiDiscrete (one-hot) space of 18,446,744,073,709,551,620 elements",
    ),
    "a callable that cannot be one": (_put("callables", ["gamma"]), "callables: names 'gamma', which cannot be"),
    "net_arch of a million layers": (
        _put("policy_kwargs", {"net_arch": [1] * 1_000_000}),
        "policy_kwargs.net_arch: describes more than 64 layers",
    ),
    "net_arch of 65 layers in its dict": (
        _put("policy_kwargs", {"net_arch": [{"pi": [1] * 33, "vf": [1] * 32}]}),
        "policy_kwargs.net_arch: describes more than 64 layers",
    ),
    "space not a dict": (_put("action_space", 7), "action_space"),
    "space unknown type": (_put("action_space", {"type": "Tuple"}), "unknown space type"),
    "space negative shape": (
        _put("observation_space", {"type": "Box", "shape": [-4], "low": 0, "high": 1}),
        "must not be negative",
    ),
    "num_timesteps fractional": (_put("num_timesteps", 1.5), "num_timesteps"),
    "num_timesteps negative": (_put("num_timesteps", -3), "num_timesteps"),
    "callables not a list": (_put("callables", "learning_rate"), "callables"),
    "edit_log not a list": (_put("edit_log", "x"), "edit_log: must be a list"),
    "edit_log entry incomplete": (_put("edit_log", [{"update": 1}]), "edit_log[0]: must be a dict"),
    "edit_log unknown name": (
        _put("edit_log", [{"update": 1, "timesteps": 0, "name": "n_steps", "old": 5, "new": 9}]),
        "is not a live hyperparameter",
    ),
    "edit_log bad value": (
        _put("edit_log", [{"update": 1, "timesteps": 0, "name": "gamma", "old": 0.99, "new": 7}]),
        "edit_log[0].new: gamma must be",
    ),
}


@pytest.mark.parametrize("case", sorted(HEADER_CASES))
def test_bad_header_fields_raise_model_file_error_naming_the_field(saved: Path, tmp_path: Path, case: str) -> None:
    change, message = HEADER_CASES[case]
    path = with_header(saved, tmp_path / "bad.zip", change)
    with pytest.raises(ModelFileError, match=r"bad\.zip") as info:
        ACKTR.load(path)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"\xff\xfe\x00not utf-8", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'{"format": "acktr_lab", "format_version": 1, "data": ', "not valid JSON"),
        (b'{"format": "acktr_lab", "format_version": true, "data": {}}', "format version"),
        (b'{"format": "acktr_lab", "format_version": 1, "data": []}', "does not describe"),
        (b"null", "does not describe"),
    ],
)
def test_unreadable_headers_raise_model_file_error(saved: Path, tmp_path: Path, raw: bytes, message: str) -> None:
    path = write_zip(tmp_path / "bad.zip", _header_bytes(saved, raw))
    with pytest.raises(ModelFileError, match=message):
        ACKTR.load(path)


@pytest.mark.parametrize(
    "change",
    [
        _set("model/pi/w:0", lambda a: np.array(["x"] * a.size).reshape(a.shape)),
        _set("model/pi/w:0", lambda a: a.astype(np.complex64)),
        _set("model/pi/w:0", lambda a: a.reshape(-1)),
        _set("model/pi/w:0", lambda a: a.T.copy()),
    ],
    ids=["strings", "complex", "wrong-shape", "transposed"],
)
def test_bad_parameter_arrays_raise_model_file_error(
    saved: Path, tmp_path: Path, change: Callable[[dict[str, np.ndarray]], None]
) -> None:
    path = with_arrays(saved, tmp_path / "bad.zip", "parameters.npz", change)
    with pytest.raises(ModelFileError, match=r"bad\.zip.*model/pi/w:0"):
        ACKTR.load(path)


def _sb2_zip(path: Path, data: Any, parameter_list: Any = None, drop: str | None = None) -> Path:
    model = small_model()
    sb2_data = {
        "gamma": 0.99,
        "n_steps": 5,
        "policy": {
            ":type:": "<class 'type'>",
            ":serialized:": "00",
            "__init__": "<function MlpPolicy.__init__ at 0x7f>",
        },
        "observation_space": {
            ":type:": "<class 'gym.spaces.box.Box'>",
            "shape": [4],
            "dtype": "float32",
            "low": "[-4.8 -inf -0.42 -inf]",
            "high": "[4.8 inf 0.42 inf]",
        },
        "action_space": {":type:": "<class 'gym.spaces.discrete.Discrete'>", "n": 2},
    }
    if drop:
        sb2_data.pop(drop)
    entries = {
        "data": json.dumps(sb2_data if data is None else data).encode(),
        "parameters": npz(dict(model.get_parameters())),
    }
    if parameter_list is not None:
        entries["parameter_list"] = json.dumps(parameter_list).encode()
    return write_zip(path, entries)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"data": None, "drop": "observation_space"}, "observation_space: missing"),
        ({"data": [1, 2, 3]}, "'data' entry is a list, not a dict"),
        ({"data": "text"}, "'data' entry is a str, not a dict"),
        ({"data": None, "parameter_list": {"a": 1}}, "'parameter_list' must be a list"),
        ({"data": None, "parameter_list": ["model/nothing:0"]}, "'parameter_list' names"),
        ({"data": None, "drop": "policy"}, "unsupported Stable Baselines 2 policy"),
    ],
)
def test_bad_stable_baselines_zips_raise_model_file_error(tmp_path: Path, kwargs: dict[str, Any], message: str) -> None:
    path = _sb2_zip(tmp_path / "sb2.zip", **kwargs)
    with pytest.raises(ModelFileError, match=message):
        ACKTR.load(path)


def test_a_good_stable_baselines_zip_still_loads(tmp_path: Path) -> None:
    model = ACKTR.load(_sb2_zip(tmp_path / "sb2.zip", None))
    assert model.n_steps == 5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("n_steps", None),
        ("n_steps", "20"),
        ("kfac_update", "x"),
        ("gamma", "0.99"),
        ("learning_rate", [0.1]),
        ("gae_lambda", "none"),
        ("n_envs", 2.0),
        ("verbose", "yes"),
        ("tensorboard_log", 5),
    ],
)
def test_wrong_typed_arguments_name_the_argument(name: str, value: Any) -> None:
    with pytest.raises(ValueError, match=rf"^{name} must be"):
        small_model(**{name: value})


# --------------------------------------------------------------- 7. no silent coercions
def my_tanh(x: tf.Tensor) -> tf.Tensor:
    return tf.tanh(x) * 2.0


my_tanh.__name__ = "tanh"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"async_eigen_decomp": "no"}, "async_eigen_decomp must be True or False"),
        ({"approx_t2": 1}, "approx_t2 must be True or False"),
        ({"normalize_returns": "False"}, "normalize_returns must be True or False"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"seed": -1}, "seed must be ≥ 0"),
        ({"n_steps": True}, "n_steps must be an integer"),
        ({"cold_iter": 2.0}, "cold_iter must be an integer"),
        ({"ent_coef": True}, "ent_coef must be a number"),
        ({"policy_kwargs": {"net_arch": [{"pi": [2.7]}]}}, "net_arch pi must be a list of positive integers"),
        ({"policy_kwargs": {"net_arch": [64.0]}}, "net_arch entries must be positive ints"),
        ({"policy_kwargs": {"act_fun": my_tanh}}, "is not one of"),
        ({"policy_kwargs": [("net_arch", [64])]}, "policy_kwargs must be a dict"),
    ],
)
def test_values_of_the_wrong_type_are_refused_not_coerced(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        small_model(**kwargs)


def test_recurrent_layer_sizes_are_not_rounded() -> None:
    with pytest.raises(ValueError, match="layers must be a list of positive integers"):
        ACKTR("MlpLstmPolicy", "CartPole-v1", n_steps=5, policy_kwargs={"layers": [64.5]})


def test_numpy_scalars_of_the_right_kind_are_accepted() -> None:
    model = small_model(gamma=np.float32(0.98), kfac_update=np.int64(2), async_eigen_decomp=np.bool_(False))
    assert model.gamma == pytest.approx(0.98) and model.kfac_update == 2 and model.async_eigen_decomp is False


# ------------------------------------------------------------------------ 9. housekeeping
def test_temporary_files_of_a_killed_save_are_removed_by_the_next_save(tmp_path: Path) -> None:
    model = small_model()
    dead_pid = 2**22 + 12345  # above Linux's default pid_max: no such process
    leftovers = [tmp_path / f".model.zip.{dead_pid}.abc_1234.tmp"]  # as mkstemp names them
    kept = [
        tmp_path / f".model.zip.{os.getppid()}.busy1234.tmp",  # a save in progress elsewhere
        tmp_path / ".other.zip.1.abc12345.tmp",  # another file's
        tmp_path / ".model.zip.backup.tmp",  # a user's own file: not a name a save makes
        tmp_path / f".model.zip.{dead_pid}.notes.tmp",
    ]
    for path in [*leftovers, *kept]:
        path.write_bytes(b"partial")
    model.save(tmp_path / "model.zip")
    assert not any(p.exists() for p in leftovers)
    assert all(p.read_bytes() == b"partial" for p in kept)
    assert ACKTR.load(tmp_path / "model.zip").n_steps == 5


def test_saving_over_a_file_keeps_its_permissions_and_saves_through_a_link(tmp_path: Path) -> None:
    model = small_model()
    private = tmp_path / "private.zip"
    private.write_bytes(b"old")
    private.chmod(0o600)
    model.save(private)
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and ACKTR.load(private).n_steps == 5
    real = tmp_path / "store" / "model.zip"
    real.parent.mkdir()
    link = tmp_path / "latest.zip"
    link.symlink_to(real)
    model.save(link)
    assert link.is_symlink() and ACKTR.load(real).n_steps == 5


@pytest.mark.parametrize("depth", [0, 1, 2])
def test_saving_under_a_file_says_that_component_is_a_file(tmp_path: Path, depth: int) -> None:
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file")
    target = blocker.joinpath(*["sub"] * depth, "model.zip")
    with pytest.raises(NotADirectoryError, match=r"notes\.txt is a file, not a folder"):
        small_model().save(target)
    assert blocker.read_text() == "a file"


def test_async_eigendecomposition_reproducibility_is_documented_next_to_seed() -> None:
    doc = " ".join((ACKTR.__doc__ or "").split())
    assert "same seed gives the same" in doc and "async_eigen_decomp=True" in doc and "not bit-identical" in doc


# ------------------------------------------------------ a member that lies about its size
def test_a_lying_member_size_is_refused_before_reading(saved: Path, tmp_path: Path) -> None:
    """A member whose central directory claims 100 MiB for a few hundred compressed bytes."""
    data = bytearray(write_zip(tmp_path / "lie.zip", members(saved)).read_bytes())
    entry = data.rfind(b"PK\x01\x02", 0, data.rfind(b"extra.npz"))  # its central directory record
    data[entry + 24 : entry + 28] = (100 * MiB).to_bytes(4, "little")  # the uncompressed size
    (tmp_path / "lie.zip").write_bytes(bytes(data))
    start = time.perf_counter()
    with pytest.raises(ModelFileError, match=r"extra\.npz.*cannot expand to that"):
        ACKTR.load(tmp_path / "lie.zip")
    assert time.perf_counter() - start < 5


# ------------------------------------------------ 8. a vector env of our own breaking the API
class FourTupleVectorEnv(gym.vector.VectorEnv):
    """A vector env that is not gymnasium's: ``step`` returns the old 4-tuple."""

    def __init__(self) -> None:
        self.num_envs = 2
        self.single_observation_space = gym.spaces.Box(-1, 1, (3,), np.float32)
        self.single_action_space = gym.spaces.Discrete(2)
        self.observation_space = gym.vector.utils.batch_space(self.single_observation_space, 2)
        self.action_space = gym.vector.utils.batch_space(self.single_action_space, 2)

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        return np.zeros((2, 3), np.float32), {}

    def step(self, actions: Any) -> Any:
        return np.zeros((2, 3), np.float32), np.zeros(2), np.zeros(2, bool), {}


def test_a_custom_vector_env_returning_the_old_step_tuple_gets_a_clear_error() -> None:
    model = ACKTR("MlpPolicy", FourTupleVectorEnv(), n_steps=5, seed=0)
    with pytest.raises(TypeError, match=r"FourTupleVectorEnv\.step\(\) must return \(obs, rewards, terminated"):
        model.learn(10)


def test_a_file_with_half_of_the_published_statistics_is_refused(tmp_path: Path) -> None:
    small_model(normalize_observations=True).learn(20).save(tmp_path / "good.zip")

    def drop(arrays: dict[str, np.ndarray]) -> None:
        del arrays["observation_normalizer/published_var"]

    path = with_arrays(tmp_path / "good.zip", tmp_path / "half.zip", "extra.npz", drop)
    with pytest.raises(ModelFileError, match=r"half\.zip: observation_normalizer.*published_mean without its pair"):
        ACKTR.load(path)


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
@pytest.mark.parametrize("where", ["outer", "nested"])
def test_members_compressed_other_than_stored_or_deflated_are_refused(
    saved: Path, tmp_path: Path, method: int, where: str
) -> None:
    """zipfile inflates a bzip2/LZMA member a whole stream per read: 2 KB can become 3 GiB
    before any cap applies. Such members are refused by their method, before reading."""
    entries = members(saved)
    path = tmp_path / "model.zip"
    if where == "outer":
        with zipfile.ZipFile(path, "w", compression=method) as archive:
            for name, data in entries.items():
                archive.writestr(name, data)
    else:
        inner = io.BytesIO()
        with (
            zipfile.ZipFile(io.BytesIO(entries["parameters.npz"])) as source,
            zipfile.ZipFile(inner, "w", compression=method) as target,
        ):
            for name in source.namelist():
                target.writestr(name, source.read(name))
        write_zip(path, {**entries, "parameters.npz": inner.getvalue()})
    with pytest.raises(ModelFileError, match=rf"compressed with zip method {method}; only stored and deflated"):
        ACKTR.load(path)


def test_a_file_cannot_make_kfac_allocate_more_curvature_than_the_cap(saved: Path, tmp_path: Path) -> None:
    """A 16383-wide observation into 1-unit layers: 33k parameters, but each first layer's
    factor A and its eigenvectors are 16384² floats (2 GiB): refused before allocating."""

    def wide(data: dict[str, Any]) -> None:
        data["observation_space"] = {"type": "Box", "shape": [16383], "dtype": "float32", "low": -1.0, "high": 1.0}
        data["policy_kwargs"]["net_arch"] = [{"pi": [1], "vf": [1]}]

    path = with_header(saved, tmp_path / "header.zip", wide)
    entries = members(path)
    entries["parameters.npz"] = npz({"padding": np.zeros(40_000, np.float32)})  # the parameter budget passes
    write_zip(path, entries)
    with pytest.raises(ModelFileError, match=r"pi_fc0.: its K-FAC factors and eigenvectors would take 2,048.0 MiB"):
        ACKTR.load(path)


def test_layers_built_under_a_parameter_budget_start_from_zeros() -> None:
    """A network built from a file gets every weight from it: its layers skip the orthogonal
    initialisation, whose SVD costs O(k³) for a k×k layer (72 s for a 17 KB file)."""
    from acktr_lab.kfac import parameter_budget

    rng = np.random.default_rng(0)
    with parameter_budget(10_000):
        zero = Dense(16, 8, name="from_file", init_scale=1.0, rng=rng)
    fresh = Dense(16, 8, name="fresh", init_scale=1.0, rng=rng)
    assert not np.any(zero.parameters[0].numpy())
    assert np.allclose(fresh.parameters[0].numpy().T @ fresh.parameters[0].numpy(), np.eye(8), atol=1e-5)


def test_a_json_header_beyond_its_cap_is_refused_before_it_is_parsed(saved: Path, tmp_path: Path) -> None:
    """Text becomes Python objects many times its size: a header may hold 16 MiB, not 1 GiB."""
    entries = members(saved)
    header = json.loads(entries["acktr_lab.json"])
    header["data"]["padding"] = [0] * (9 * 2**20)  # "0, " per entry: 27 MiB of JSON
    entries["acktr_lab.json"] = json.dumps(header).encode()
    path = write_zip(tmp_path / "model.zip", entries)
    with pytest.raises(ModelFileError, match=r"the header declares [\d,]+ bytes of JSON, more than the limit"):
        ACKTR.load(path)


def test_an_archive_of_too_many_members_is_refused(saved: Path, tmp_path: Path) -> None:
    entries = {**members(saved), **{f"junk/{i}": b"" for i in range(10_001)}}
    path = write_zip(tmp_path / "model.zip", entries)
    with pytest.raises(ModelFileError, match=r"holds 10,00\d members, more than the limit of 10,000"):
        ACKTR.load(path)


def test_an_sb2_bound_written_as_text_is_bounded_by_the_values_it_must_hold() -> None:
    from acktr_lab.preprocessing import _parse_numpy_str

    np.testing.assert_array_equal(
        _parse_numpy_str("[-1. -1.  2.5  8.]", (4,), np.dtype(np.float32), "low"), [-1, -1, 2.5, 8]
    )
    with pytest.raises(ValueError, match=r"low is a text of 2,000,002 characters, more than 4 values can take"):
        _parse_numpy_str("[" + "1 " * 1_000_000 + "]", (4,), np.dtype(np.float32), "low")
