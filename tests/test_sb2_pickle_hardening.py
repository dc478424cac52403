"""Crafted Stable Baselines 2 pickles are refused, run nothing, and cost bounded work.

A ``.pkl`` model or ``obs_rms.pkl`` is a pickle, and a pickle is a program: each global it
names is imported and may be called. These tests write pickles that would run code (touching
a marker file through ``os.system``, ``builtins.exec``, ``subprocess``, ``getattr`` chains and
NumPy's own ``__reduce__`` helpers), hidden at many depths of otherwise plausible SB2 content,
and check that every reader (:func:`acktr_lab.serialization.load_model`, ``ACKTR.load``,
:func:`acktr_lab.vecnormalize.load_vecnormalize`) refuses them with a ``ModelFileError`` naming
the global, and that the marker never appears. :func:`test_payload_runs_under_a_plain_unpickler`
shows each payload is live: ``pickle.loads`` does run it.

They also check that content costing unbounded work (memo "billion laughs", cycles, deep
nesting, arrays whose shape does not fit their bytes) is refused quickly, and that truncated
or corrupted files raise ``ModelFileError`` and nothing else.

The last three groups are regressions of bugs these tests found: error messages that expanded
memo-shared structures, crafted files that changed the shared stand-ins for later loads, and huge
integers that escaped as ``OverflowError``.
"""

from __future__ import annotations

import builtins
import contextlib
import functools
import importlib
import io
import operator
import os
import pickle
import random
import re
import shlex
import shutil
import struct
import subprocess
import time
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sb2_pickles import ACKTR_PKL_FIELDS, Global, Instance, Raw, dumps

from acktr_lab import ACKTR, safe_pickle, sb2_pickle
from acktr_lab.safe_pickle import MAX_DEPTH, MAX_NODES, Reference
from acktr_lab.serialization import ModelFileError, load_model
from acktr_lab.vecnormalize import load_vecnormalize

ZOO = Path(__file__).resolve().parent / "data" / "sb2_zoo" / "acktr"
CARTPOLE = ZOO / "CartPole-v1.pkl"
ACROBOT_OBS_RMS = ZOO / "Acrobot-v1" / "obs_rms.pkl"

# --------------------------------------------------------------------------- writing pickles


def text(value: str) -> bytes:
    """Opcodes pushing the string ``value``."""
    encoded = value.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(encoded)) + encoded


def global_op(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def whole(opcodes: bytes) -> bytes:
    """A complete pickle (protocol 2 header, no frames) of one value's opcodes."""
    return pickle.PROTO + b"\x02" + opcodes + pickle.STOP


def _put(index: int) -> bytes:
    return pickle.LONG_BINPUT + struct.pack("<I", index)


def _get(index: int) -> bytes:
    return pickle.LONG_BINGET + struct.pack("<I", index)


def memo_laughs(depth: int, leaf: bytes = b"", base: int = 100_000) -> bytes:
    """Opcodes for a list holding the list below it twice, ``depth`` levels deep, through memo
    references: ``2**depth`` copies of the innermost list ``[leaf]`` (``[]`` without one) in a
    few bytes per level. Memo slots from ``base`` on."""
    out = pickle.MARK + leaf + pickle.LIST + _put(base) + pickle.POP
    for level in range(depth):
        out += pickle.MARK + _get(base + level) + _get(base + level) + pickle.LIST + _put(base + level + 1) + pickle.POP
    return out + _get(base + depth)


def deep_lists(levels: int) -> bytes:
    """Opcodes for ``levels`` lists, each inside the one before: no recursion is needed to write it."""
    return pickle.EMPTY_LIST * levels + pickle.APPEND * (levels - 1)


# --------------------------------------------------------------------------- SB2 content

BOX = Global("gym.spaces.box", "Box")
DISCRETE = Global("gym.spaces.discrete", "Discrete")
RUNNING_MEAN_STD = Global("stable_baselines.common.running_mean_std", "RunningMeanStd")
VEC_NORMALIZE = Global("stable_baselines.common.vec_env.vec_normalize", "VecNormalize")
MLP_POLICY = Global("stable_baselines.common.policies", "MlpPolicy")
RECONSTRUCT = Global("numpy._core.multiarray", "_reconstruct")
NDARRAY = Global("numpy", "ndarray")


def box_space(low: Any = None) -> Instance:
    low = np.full(4, -5.0, np.float32) if low is None else low
    state = {"low": low, "high": np.full(4, 5.0, np.float32), "shape": (4,), "dtype": np.dtype(np.float32)}
    return Instance(BOX, state)


def sb2_data(**fields: Any) -> dict[str, Any]:
    """``data`` as SB2's ACKTR saved it in a ``.pkl`` (CartPole-like spaces)."""
    data: dict[str, Any] = {
        **ACKTR_PKL_FIELDS,
        "policy": MLP_POLICY,
        "observation_space": box_space(),
        "action_space": Instance(DISCRETE, {"n": 2, "shape": (), "dtype": np.dtype(np.int64)}),
        "n_envs": 1,
        "_vectorize_action": False,
    }
    data.update(fields)
    return data


def running_mean_std(mean: Any = None, var: Any = None, count: Any = 1000.0) -> Instance:
    mean = np.linspace(-1.0, 1.0, 4) if mean is None else mean
    var = np.full(4, 2.0) if var is None else var
    return Instance(RUNNING_MEAN_STD, {"mean": mean, "var": var, "count": count})


def vec_normalize(obs_rms: Any, **settings: Any) -> Instance:
    state = {"obs_rms": obs_rms, "ret_rms": running_mean_std(np.float64(0.0), np.float64(1.0))}
    state.update({"clip_obs": 10.0, "clip_reward": 10.0, "epsilon": 1e-8, "norm_obs": True, "norm_reward": False})
    state.update(settings)
    return Instance(VEC_NORMALIZE, state)


def nested(value: Any, levels: int) -> Any:
    for _ in range(levels):
        value = [value]
    return value


# --------------------------------------------------------------------------- payloads


class Payload:
    """Unpickled, calls ``function(*args)``: what a crafted pickle does with ``REDUCE``."""

    def __init__(self, function: Callable[..., Any], *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, ...]:
        return self.function, self.args

    def __call__(self, *args: Any) -> None:  # so that a Payload may be the function of another one
        raise AssertionError("a payload is only pickled")


class EvilArray(np.ndarray):
    """An ndarray subclass whose unpickling runs code: ``_reconstruct`` builds it and ``BUILD``
    calls its ``__setstate__``, which touches the marker first."""

    marker = ""

    def __reduce__(self) -> tuple[Any, ...]:
        function, args, state = super().__reduce__()
        return function, args, (self.marker, state)

    def __setstate__(self, state: Any) -> None:
        Path(state[0]).touch()
        super().__setstate__(state[1])


def _shell_touch(marker: Path) -> str:
    return f"touch {shlex.quote(str(marker))}"


def _python_touch(marker: Path) -> str:
    return f"open({str(marker)!r}, 'w').close()"


def _evil_array(marker: Path) -> EvilArray:
    array = np.zeros(3).view(EvilArray)
    array.marker = str(marker)
    return array


def _numpy_load(marker: Path) -> Payload:
    evil = marker.parent / "evil.npy"
    np.save(evil, np.array([Payload(os.system, _shell_touch(marker))], dtype=object), allow_pickle=True)
    return Payload(np.load, str(evil), None, True)


def _runstring(marker: Path) -> Payload:
    from numpy.testing._private import utils

    return Payload(utils.runstring, _python_touch(marker), {})


_OS_SYSTEM = f"{os.system.__module__}.system"  # posix.system

#: id → (the payload, given the marker path; the global the reader must name as refused).
PAYLOADS: dict[str, tuple[Callable[[Path], Any], str]] = {
    "os.system": (lambda m: Payload(os.system, _shell_touch(m)), _OS_SYSTEM),
    "builtins.exec": (lambda m: Payload(builtins.exec, _python_touch(m)), "builtins.exec"),
    "builtins.eval": (lambda m: Payload(builtins.eval, _python_touch(m)), "builtins.eval"),
    "subprocess.Popen": (lambda m: Payload(subprocess.Popen, ["touch", str(m)]), "subprocess.Popen"),
    "subprocess.check_call": (lambda m: Payload(subprocess.check_call, ["touch", str(m)]), "subprocess.check_call"),
    "getattr-chain": (
        lambda m: Payload(Payload(getattr, Payload(builtins.__import__, "os"), "system"), _shell_touch(m)),
        "builtins.getattr",
    ),
    "methodcaller-import_module": (
        lambda m: Payload(
            Payload(operator.methodcaller, "system", _shell_touch(m)), Payload(importlib.import_module, "os")
        ),
        "operator.methodcaller",
    ),
    "pickle-in-pickle": (
        lambda m: Payload(pickle.loads, pickle.dumps(Payload(os.system, _shell_touch(m)))),
        f"{pickle.loads.__module__}.loads",
    ),
    "numpy-runstring": (_runstring, "numpy.testing._private.utils.runstring"),
    "numpy.load-allow_pickle": (_numpy_load, "numpy.load"),
    "numpy-_reconstruct-evil-class": (_evil_array, f"{EvilArray.__module__}.EvilArray"),
    "numpy-object-array-of-evil": (
        lambda m: np.array([Payload(os.system, _shell_touch(m)), 1.0], dtype=object),
        _OS_SYSTEM,
    ),
    "numpy.frompyfunc": (
        lambda m: Payload(Payload(np.frompyfunc, os.system, 1, 1), _shell_touch(m)),
        "numpy.frompyfunc",
    ),
    # hand-assembled: opcodes a pickler does not write for these, each naming the global another way
    "INST-os.system": (
        lambda m: Raw(pickle.MARK + text(_shell_touch(m)) + pickle.INST + b"os\nsystem\n"),
        "os.system",
    ),
    "OBJ-subprocess.Popen": (
        lambda m: Raw(
            pickle.MARK
            + global_op("subprocess", "Popen")
            + pickle.MARK
            + text("touch")
            + text(str(m))
            + pickle.LIST
            + pickle.OBJ
        ),
        "subprocess.Popen",
    ),
    "GLOBAL-python2-__builtin__.eval": (
        lambda m: Raw(global_op("__builtin__", "eval") + text(_python_touch(m)) + pickle.TUPLE1 + pickle.REDUCE),
        "__builtin__.eval",
    ),
    "STACK_GLOBAL-builtins.exec": (
        lambda m: Raw(
            text("builtins")
            + text("exec")
            + pickle.STACK_GLOBAL
            + text(_python_touch(m))
            + pickle.TUPLE1
            + pickle.REDUCE
        ),
        "builtins.exec",
    ),
}
PAYLOAD_IDS = list(PAYLOADS)
#: Payloads refused before their global is reached: an object array's dtype comes before its
#: elements in NumPy's layout, and object dtypes are refused.
REFUSED_FIRST = {"numpy-object-array-of-evil": "only numeric dtypes are read from a pickle, got 'O8'"}


def refusal(refused: str) -> str:
    """What a reader's message says of a global it refused."""
    return f"refused {refused!r}: the pickle asks to import it"


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """The file a payload would create; checked again after the test, whatever it asserted."""
    path = tmp_path / "payload-ran"
    yield path
    assert not path.exists(), "a payload ran"


def _assert_refused(read: Callable[[], Any], refused: str, marker: Path) -> ModelFileError:
    """``read()`` raises a ModelFileError naming the global ``refused``, and the marker is absent."""
    with pytest.raises(ModelFileError) as error:
        read()
    assert refusal(refused) in str(error.value)
    assert "(nothing was run)" in str(error.value)
    assert not marker.exists()
    return error.value


def _assert_payload_refused(read: Callable[[], Any], payload: str, marker: Path) -> ModelFileError:
    """As :func:`_assert_refused` for the payload ``payload`` (or its dtype, see REFUSED_FIRST)."""
    if payload not in REFUSED_FIRST:
        return _assert_refused(read, PAYLOADS[payload][1], marker)
    with pytest.raises(ModelFileError) as error:
        read()
    assert REFUSED_FIRST[payload] in str(error.value)
    assert not marker.exists()
    return error.value


# --------------------------------------------------------------------------- the payloads are live


@pytest.mark.parametrize("payload", PAYLOAD_IDS)
def test_payload_runs_under_a_plain_unpickler(payload: str, tmp_path: Path) -> None:
    """Control: each payload is a working exploit. ``pickle.loads`` creates the marker, so the
    refusal tests below would see it appear if a reader ever ran one."""
    marker = tmp_path / "payload-ran"
    build, refused = PAYLOADS[payload]
    # Python 3 maps Python 2's module names (``__builtin__``) only in a protocol 2 pickle
    raw = dumps(build(marker), protocol=2 if "python2" in payload else 4)
    module, name = refused.rsplit(".", 1)
    assert module.encode() in raw and name.encode() in raw  # the global the readers must refuse
    loaded = pickle.loads(raw)
    if isinstance(loaded, subprocess.Popen):
        loaded.wait(timeout=30)
    assert marker.exists()


# --------------------------------------------------------------------------- model files


@pytest.mark.parametrize("suffix", [".pkl", ".zip"])
@pytest.mark.parametrize("reader", ["load_model", "ACKTR.load"])
@pytest.mark.parametrize("payload", PAYLOAD_IDS)
def test_crafted_model_is_refused(payload: str, reader: str, suffix: str, tmp_path: Path, marker: Path) -> None:
    """The issue's example: the payload in ``policy_kwargs['net_arch']`` of a model's data.
    The content decides: a pickle named ``.zip`` is read (and refused) as a pickle."""
    path = tmp_path / f"model{suffix}"
    path.write_bytes(dumps(({"gamma": 0.99, "policy_kwargs": {"net_arch": [PAYLOADS[payload][0](marker)]}}, [])))
    read = {"load_model": load_model, "ACKTR.load": ACKTR.load}[reader]
    error = _assert_payload_refused(lambda: read(path), payload, marker)
    assert str(path) in str(error)


#: Where in a model's content a value is hidden: id → the content, given the value.
PLACEMENTS: dict[str, Callable[[Any], Any]] = {
    "policy_kwargs": lambda v: (sb2_data(policy_kwargs={"net_arch": [64, {"pi": [v]}]}), []),
    "last-parameter": lambda v: (sb2_data(), [np.zeros((4, 64), np.float32), np.zeros(64, np.float32), v]),
    "dict-key": lambda v: (sb2_data(policy_kwargs={v: 1}), []),
    "40-lists-deep": lambda v: (sb2_data(policy_kwargs={"net_arch": nested(v, 40)}), []),
    "space-state": lambda v: (sb2_data(observation_space=box_space(low=v)), []),
    "running-mean-std-in-data": lambda v: (sb2_data(obs_rms=running_mean_std(count=v)), []),
    "top-level": lambda v: v,
}
#: A harmless value of the right kind for each placement: the same content then reads.
HARMLESS: dict[str, Any] = {
    "policy_kwargs": 64,
    "last-parameter": np.zeros((64, 2), np.float32),
    "dict-key": "act_fun_name",
    "40-lists-deep": 64,
    "space-state": np.full(4, -5.0, np.float32),
    "running-mean-std-in-data": None,  # a RunningMeanStd is not model data: refused, without the payload
    "top-level": None,
}


@pytest.mark.parametrize("reader", ["load_model", "ACKTR.load"])
@pytest.mark.parametrize("placement", list(PLACEMENTS))
def test_payload_is_refused_wherever_it_is_hidden(placement: str, reader: str, tmp_path: Path, marker: Path) -> None:
    path = tmp_path / "CartPole-v1.pkl"
    path.write_bytes(dumps(PLACEMENTS[placement](Payload(os.system, _shell_touch(marker)))))
    read = {"load_model": load_model, "ACKTR.load": ACKTR.load}[reader]
    _assert_refused(lambda: read(path), _OS_SYSTEM, marker)


@pytest.mark.parametrize("placement", [p for p, v in HARMLESS.items() if v is not None])
def test_same_content_without_the_payload_reads(placement: str, tmp_path: Path) -> None:
    """Control: the placements are valid SB2 content, so the refusals above come from the payload."""
    path = tmp_path / "CartPole-v1.pkl"
    path.write_bytes(dumps(PLACEMENTS[placement](HARMLESS[placement])))
    file = load_model(path)
    assert file.source == "stable_baselines2"
    assert file.data["policy"] == {"class": "stable_baselines.common.policies.MlpPolicy"}


def _spliced(raw: bytes, opcodes: bytes) -> bytes:
    """``raw`` (a real SB2 pickle) with ``opcodes`` run and their value popped right after the
    protocol header, before the first frame: the file still unpickles to the same content."""
    assert raw[:2] == b"\x80\x04" and raw[2:3] == pickle.FRAME
    return raw[:2] + opcodes + pickle.POP + raw[2:]


@pytest.mark.parametrize("reader", ["load_model", "ACKTR.load"])
def test_payload_spliced_into_a_real_zoo_model_is_refused(reader: str, tmp_path: Path, marker: Path) -> None:
    payload = global_op(*_OS_SYSTEM.split(".")) + text(_shell_touch(marker)) + pickle.TUPLE1 + pickle.REDUCE
    path = tmp_path / "CartPole-v1.pkl"
    path.write_bytes(_spliced(CARTPOLE.read_bytes(), payload))
    read = {"load_model": load_model, "ACKTR.load": ACKTR.load}[reader]
    _assert_refused(lambda: read(path), _OS_SYSTEM, marker)


def test_harmless_splice_into_the_zoo_model_still_reads(tmp_path: Path) -> None:
    """Control for the splice: with a harmless value in its place the zoo model loads as before."""
    path = tmp_path / "CartPole-v1.pkl"
    path.write_bytes(_spliced(CARTPOLE.read_bytes(), text("harmless")))
    assert load_model(path).data == load_model(CARTPOLE).data


# --------------------------------------------------------------------------- VecNormalize statistics


def _zoo_model(tmp_path: Path, suffix: str = ".pkl") -> Path:
    """A copy of the real zoo CartPole agent, as ``<tmp>/agents/CartPole-v1<suffix>``."""
    folder = tmp_path / "agents"
    folder.mkdir()
    model = folder / f"CartPole-v1{suffix}"
    shutil.copyfile(CARTPOLE, model)
    return model


def _statistics_files(name: str, value: Any) -> dict[str, bytes]:
    """The files of a statistics folder with ``value`` hidden in the one called ``name``."""
    if name == "obs_rms.pkl":
        return {name: dumps(running_mean_std(mean=value))}
    if name == "ret_rms.pkl":  # a valid obs_rms.pkl beside it: ret_rms.pkl is read after it
        return {"obs_rms.pkl": dumps(running_mean_std()), name: dumps(running_mean_std(var=value))}
    return {name: dumps(vec_normalize(running_mean_std(count=value)))}


def _read_statistics(reader: str, tmp_path: Path, files: dict[str, bytes]) -> Callable[[], Any]:
    """How ``reader`` reads a statistics folder holding ``files``."""
    if reader.startswith("ACKTR.load"):
        model = _zoo_model(tmp_path, ".zip" if reader.endswith(".zip") else ".pkl")
        folder = tmp_path / "statistics" if "vecnormalize=" in reader else model.parent / "CartPole-v1"
    else:
        folder = tmp_path / "statistics"
    folder.mkdir()
    for name, raw in files.items():
        (folder / name).write_bytes(raw)
    if reader == "load_vecnormalize(folder)":
        return lambda: load_vecnormalize(folder)
    if reader == "load_vecnormalize(file)":
        return lambda: load_vecnormalize(folder / list(files)[-1])
    if "vecnormalize=" in reader:
        return lambda: ACKTR.load(model, vecnormalize=folder)
    return lambda: ACKTR.load(model)


STATISTICS_READERS = [
    "load_vecnormalize(folder)",
    "load_vecnormalize(file)",
    "ACKTR.load-beside",
    "ACKTR.load-beside.zip",
    "ACKTR.load-vecnormalize=folder",
]


@pytest.mark.parametrize("reader", ["load_vecnormalize(folder)", "ACKTR.load-beside"])
@pytest.mark.parametrize("payload", PAYLOAD_IDS)
def test_crafted_obs_rms_is_refused(payload: str, reader: str, tmp_path: Path, marker: Path) -> None:
    """``obs_rms.pkl`` with the payload as its mean; beside a legitimate model, ``ACKTR.load``
    reads it (default ``vecnormalize=True``) and refuses it."""
    read = _read_statistics(reader, tmp_path, _statistics_files("obs_rms.pkl", PAYLOADS[payload][0](marker)))
    error = _assert_payload_refused(read, payload, marker)
    assert "obs_rms.pkl" in str(error)


@pytest.mark.parametrize("reader", STATISTICS_READERS)
@pytest.mark.parametrize("name", ["obs_rms.pkl", "ret_rms.pkl", "vecnormalize.pkl"])
def test_every_statistics_file_is_refused_by_every_reader(name: str, reader: str, tmp_path: Path, marker: Path) -> None:
    read = _read_statistics(reader, tmp_path, _statistics_files(name, Payload(os.system, _shell_touch(marker))))
    error = _assert_refused(read, _OS_SYSTEM, marker)
    assert name in str(error)


@pytest.mark.parametrize("reader", STATISTICS_READERS)
@pytest.mark.parametrize("name", ["obs_rms.pkl", "vecnormalize.pkl"])
def test_legitimate_statistics_are_read(name: str, reader: str, tmp_path: Path) -> None:
    """Control: the same files without a payload are found and applied by the same readers."""
    mean = np.array([0.5, -0.25, 0.125, 2.0])
    files = {
        name: dumps(running_mean_std(mean=mean) if name == "obs_rms.pkl" else vec_normalize(running_mean_std(mean)))
    }
    loaded = _read_statistics(reader, tmp_path, files)()
    if reader.startswith("ACKTR.load"):
        np.testing.assert_allclose(loaded.observation_normalizer.state()["mean"], mean)
    else:
        np.testing.assert_allclose(loaded.observations.mean, mean)


def test_zoo_model_without_statistics_has_no_observation_normalisation(tmp_path: Path) -> None:
    """Control for ``ACKTR.load-beside``: the statistics applied above came from the folder."""
    model = _zoo_model(tmp_path)
    assert ACKTR.load(model).observation_normalizer is None


# --------------------------------------------------------------------------- bounded work


def _laughs(container: str, depth: int) -> Any:
    """A value holding the value below it twice, ``depth`` levels deep (``2**depth`` leaves)."""
    if container == "list-memo-opcodes":
        return Raw(memo_laughs(depth))
    value: Any = {} if container == "dict" else ()
    for _ in range(depth):
        value = {"left": value, "right": value} if container == "dict" else (value, value)
    return value


@pytest.mark.parametrize("target", ["model", "obs_rms"])
@pytest.mark.parametrize("container", ["list-memo-opcodes", "tuple", "dict"])
def test_memo_billion_laughs_is_refused_by_the_budget(container: str, target: str, tmp_path: Path) -> None:
    """60 levels of a value shared twice: 2**60 values reached, a few hundred bytes in the file."""
    laughs = _laughs(container, 60)
    if target == "model":
        path = tmp_path / "model.pkl"
        path.write_bytes(dumps(({"policy_kwargs": {"net_arch": laughs}}, []), protocol=3))
        read: Callable[[], Any] = functools.partial(load_model, path)
    else:
        path = tmp_path / "obs_rms.pkl"
        path.write_bytes(dumps(running_mean_std(mean=laughs), protocol=3))
        read = functools.partial(load_vecnormalize, path)
    assert len(path.read_bytes()) < 2_000
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=f"more than {MAX_NODES:,} values"):
        read()
    elapsed = time.perf_counter() - started
    # Work in proportion to the budget, not to the 2**60 values: at most ~10 µs a counted value
    # (≈ 2.7-5.8 s for MAX_NODES = 1,000,000 on a loaded 2-core machine; ≈ 0.25 s for 100,000).
    assert elapsed < 2 + MAX_NODES * 10e-6, f"took {elapsed:.1f} s"


@pytest.mark.parametrize("shape", ["list", "dict", "list-in-dict-in-list"])
def test_self_referencing_content_is_refused(shape: str, tmp_path: Path) -> None:
    value: Any
    if shape == "list":
        value = []
        value.append(value)
    elif shape == "dict":
        value = {}
        value["self"] = value
    else:
        value = [{}]
        value[0]["back"] = value
    path = tmp_path / "model.pkl"
    path.write_bytes(dumps(({"policy_kwargs": value}, [])))
    with pytest.raises(ModelFileError, match=f"nests deeper than {MAX_DEPTH} levels"):
        load_model(path)


def test_nesting_limit_is_max_depth() -> None:
    """The limit is exact: ``MAX_DEPTH + 1`` nested lists read, one more is refused."""
    allowed = safe_pickle.standard_globals({}, ())
    innermost: Any = nested([], MAX_DEPTH)
    read = safe_pickle.unpickle_data(dumps(innermost), allowed, ModelFileError, "here")
    assert read == innermost
    with pytest.raises(ModelFileError, match=f"here: the pickle nests deeper than {MAX_DEPTH} levels"):
        safe_pickle.unpickle_data(dumps([innermost]), allowed, ModelFileError, "here")


@pytest.mark.parametrize("levels", [MAX_DEPTH + 10, 100_000])
def test_deep_nesting_is_refused_without_recursion_errors(levels: int, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(dumps(({"policy_kwargs": Raw(deep_lists(levels))}, [])))
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=f"nests deeper than {MAX_DEPTH} levels"):
        ACKTR.load(path)
    assert time.perf_counter() - started < 10


def _array(shape: Any, dtype: Any, data: Any) -> Instance:
    """An ndarray as NumPy pickles it, with the state given."""
    return Instance(RECONSTRUCT, (1, shape, dtype, False, data), (NDARRAY, (0,), b"b"))


ARRAYS = {
    "1e12-floats-in-8-bytes": (_array((10**12,), np.dtype("f8"), b"\0" * 8), "does not fit its 8 bytes"),
    "2**40-squared": (_array((2**40, 2**40), np.dtype("f8"), b"\0" * 8), "does not fit its 8 bytes"),
    "2**64-elements-wrapping": (_array((2**32, 2**32), np.dtype("u1"), b""), "does not fit its 0 bytes"),
    "negative": (_array((-1,), np.dtype("f8"), b"\0" * 8), "non-negative integers"),
    "float-size": (_array((1.0,), np.dtype("f8"), b"\0" * 8), "non-negative integers"),
    "list-shape": (_array([1], np.dtype("f8"), b"\0" * 8), "non-negative integers"),
    "bool-size": (_array((True,), np.dtype("f8"), b"\0" * 8), "non-negative integers"),
    "40-dimensions": (_array((1,) * 40, np.dtype("f8"), b"\0" * 8), "does not fit"),
    "zero-times-huge": (_array((0, 2**62), np.dtype("f8"), b""), "not a readable pickle"),
    "data-not-bytes": (_array((2,), np.dtype("f8"), [1.0, 2.0]), "must be bytes"),
    "object-dtype": (_array((2,), np.dtype(object), [1, 2]), "only numeric dtypes"),
    "structured-dtype": (_array((1,), np.dtype([("a", "f8")]), b"\0" * 8), "only numeric dtypes"),
    "datetime-dtype": (_array((1,), np.dtype("M8[ns]"), b"\0" * 8), "only numeric dtypes"),
    "string-dtype": (_array((1,), np.dtype("S8"), b"\0" * 8), "only numeric dtypes"),
    "frombuffer-1e12": (
        Instance(Global("numpy._core.numeric", "_frombuffer"), None, (b"\0" * 8, np.dtype("f8"), (10**12,), "C")),
        "does not fit its 8 bytes",
    ),
    "scalar-short-bytes": (
        Instance(Global("numpy.core.multiarray", "scalar"), None, (np.dtype("f8"), b"\0" * 4)),
        "does not fit its 4 bytes",
    ),
    "reconstruct-a-space": (
        Instance(RECONSTRUCT, (1, (1,), np.dtype("f8"), False, b"\0" * 8), (BOX, (0,), b"b")),
        "_reconstruct may only build numpy.ndarray",
    ),
}


@pytest.mark.parametrize("case", list(ARRAYS))
def test_bad_arrays_are_refused_without_allocating(case: str, tmp_path: Path) -> None:
    array, message = ARRAYS[case]
    raw = dumps((sb2_data(), [np.zeros(3, np.float32), array]))
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=re.escape(message)):
            load_model(io.BytesIO(raw))  # (a path would be read in 16 MiB chunks)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20, f"{peak:,} bytes allocated"


def test_a_good_array_in_the_same_layout_reads(tmp_path: Path) -> None:
    """Control for the array cases: the hand-written layout is NumPy's."""
    path = tmp_path / "model.pkl"
    raw = np.arange(6, dtype=">f4").tobytes()
    path.write_bytes(dumps((sb2_data(), [_array((2, 3), np.dtype(">f4"), raw)])))
    np.testing.assert_array_equal(load_model(path).parameters["0"], np.arange(6, dtype=np.float32).reshape(2, 3))


PERSISTENT_IDS = {
    "PERSID": pickle.PERSID + b"os.system\n",
    "BINPERSID": text("posix.system") + pickle.BINPERSID,
    "BINPERSID-tuple": text("subprocess.Popen") + text("touch") + pickle.TUPLE2 + pickle.BINPERSID,
}


@pytest.mark.parametrize("target", ["model", "obs_rms"])
@pytest.mark.parametrize("case", list(PERSISTENT_IDS))
def test_persistent_ids_are_refused(case: str, target: str, tmp_path: Path) -> None:
    value = Raw(PERSISTENT_IDS[case])
    if target == "model":
        path = tmp_path / "model.pkl"
        path.write_bytes(dumps((sb2_data(policy_kwargs={"net_arch": [value]}), [])))
        read: Callable[[], Any] = functools.partial(load_model, path)
    else:
        path = tmp_path / "obs_rms.pkl"
        path.write_bytes(dumps(running_mean_std(mean=value)))
        read = functools.partial(load_vecnormalize, path)
    with pytest.raises(ModelFileError, match=r"""refused ["']persistent id"""):
        read()


@pytest.mark.parametrize(
    "opcodes",
    [
        pytest.param(pickle.EXT1 + b"\x01", id="EXT1-unregistered"),
        pytest.param(pickle.EXT4 + struct.pack("<i", 2**31 - 1), id="EXT4-unregistered"),
        pytest.param(pickle.BINGET + b"\x07", id="memo-miss"),
        pytest.param(pickle.MARK + pickle.BUILD, id="build-on-mark"),
        pytest.param(pickle.BINBYTES8 + struct.pack("<Q", 2**62) + b"xx", id="bytes8-huge-length"),
        pytest.param(pickle.BYTEARRAY8 + struct.pack("<Q", 2**62) + b"xx", id="bytearray8-huge-length"),
        pytest.param(pickle.FRAME + struct.pack("<Q", 2**62) + pickle.NONE, id="frame-huge-length"),
        pytest.param(pickle.LONG4 + struct.pack("<i", 2**31 - 1) + b"\x01", id="long4-huge-length"),
        pytest.param(b"\xff", id="unknown-opcode"),
        pytest.param(global_op("gym.spaces.box", "Box") + text("x") + pickle.TUPLE1 + pickle.REDUCE, id="space-args"),
        pytest.param(pickle.EMPTY_SET + pickle.MARK + text("x") + pickle.ADDITEMS, id="a-set"),
        pytest.param(pickle.EMPTY_DICT + pickle.EMPTY_TUPLE + pickle.NONE + pickle.SETITEM, id="tuple-key"),
    ],
)
def test_malformed_or_foreign_opcodes_are_model_file_errors(opcodes: bytes, tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(whole(opcodes))
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match=re.escape(str(path))):
        load_model(path)
    assert time.perf_counter() - started < 5


# --------------------------------------------------------------------------- truncated and corrupted files


def test_every_prefix_of_the_zoo_model_is_a_model_file_error() -> None:
    raw = CARTPOLE.read_bytes()
    for length in range(len(raw)):
        with pytest.raises(ModelFileError):
            load_model(io.BytesIO(raw[:length]))


def test_every_prefix_of_an_unframed_model_is_a_model_file_error() -> None:
    """Protocol 3 has no frames, so the prefixes end inside every kind of opcode and value."""
    raw = dumps((sb2_data(), [np.ones((4, 3), np.float32), np.zeros(3, np.float32)]), protocol=3)
    load_model(io.BytesIO(raw))  # the whole file reads
    for length in range(len(raw)):
        with pytest.raises(ModelFileError):
            load_model(io.BytesIO(raw[:length]))


def test_prefixes_through_acktr_load_are_model_file_errors(tmp_path: Path) -> None:
    raw = CARTPOLE.read_bytes()
    path = tmp_path / "CartPole-v1.pkl"
    for length in sorted({0, 1, 2, 3, 11, 12, 100, 1000, len(raw) // 2, len(raw) - 2, len(raw) - 1}):
        path.write_bytes(raw[:length])
        with pytest.raises(ModelFileError):
            ACKTR.load(path)


def test_every_prefix_of_a_zoo_obs_rms_is_a_model_file_error(tmp_path: Path) -> None:
    raw = ACROBOT_OBS_RMS.read_bytes()
    assert raw[:2] == b"\x80\x03"  # unframed
    path = tmp_path / "obs_rms.pkl"
    for length in range(len(raw)):
        path.write_bytes(raw[:length])
        with pytest.raises(ModelFileError):
            load_vecnormalize(path)
    path.write_bytes(raw)
    assert load_vecnormalize(path).observations is not None


def test_zoo_obs_rms_truncated_beside_a_model_is_a_model_file_error(tmp_path: Path) -> None:
    model = _zoo_model(tmp_path)
    folder = model.parent / "CartPole-v1"
    folder.mkdir()
    raw = ACROBOT_OBS_RMS.read_bytes()
    for length in (2, len(raw) // 2, len(raw) - 1):
        (folder / "obs_rms.pkl").write_bytes(raw[:length])
        with pytest.raises(ModelFileError, match=r"obs_rms\.pkl"):
            ACKTR.load(model)


@pytest.mark.parametrize("source", ["zoo-model", "unframed-model", "zoo-obs_rms"])
def test_corrupted_bytes_load_or_raise_model_file_error(source: str, tmp_path: Path) -> None:
    """Seeded single- and multi-byte corruptions: each file reads or is a ModelFileError."""
    if source == "zoo-model":
        raw = CARTPOLE.read_bytes()
    elif source == "unframed-model":
        raw = dumps((sb2_data(), [np.ones((4, 3), np.float32)]), protocol=3)
    else:
        raw = ACROBOT_OBS_RMS.read_bytes()
    rng = random.Random(source)
    path = tmp_path / ("obs_rms.pkl" if source.endswith("obs_rms") else "model.pkl")
    refused = 0
    for _ in range(400):
        corrupted = bytearray(raw)
        for _ in range(rng.choice((1, 1, 2, 4))):
            corrupted[rng.randrange(2, len(raw))] = rng.randrange(256)
        path.write_bytes(bytes(corrupted))
        try:
            load_vecnormalize(path) if source.endswith("obs_rms") else load_model(path)
        except ModelFileError:
            refused += 1
    assert refused > 0


# --------------------------------------------------------------------------- library bugs, pinned

_IGNORED_LEAF = global_op("numpy.random", "__RandomState_ctor") + pickle.EMPTY_TUPLE + pickle.REDUCE
_F8 = global_op("numpy", "dtype") + text("f8") + pickle.TUPLE1 + pickle.REDUCE
_RECONSTRUCT_OPS = (
    global_op("numpy.core.multiarray", "_reconstruct")
    + global_op("numpy", "ndarray")
    + pickle.BININT1
    + b"\x00"
    + pickle.TUPLE1
    + pickle.SHORT_BINBYTES
    + b"\x01b"
    + pickle.TUPLE3
    + pickle.REDUCE
)
#: id → opcodes given a shared structure's opcodes ``s``: each puts ``s`` where an error message
#: of :mod:`acktr_lab.safe_pickle` formats it with ``str(...)[:n]``.
MESSAGE_PATHS: dict[str, Callable[[bytes], bytes]] = {
    "array-state": lambda s: _RECONSTRUCT_OPS + s + pickle.BUILD,
    "array-shape": lambda s: (
        _RECONSTRUCT_OPS
        + pickle.MARK
        + pickle.BININT1
        + b"\x01"
        + s
        + _F8
        + pickle.NEWFALSE
        + pickle.SHORT_BINBYTES
        + b"\x00"
        + pickle.TUPLE
        + pickle.BUILD
    ),
    "dtype-spec": lambda s: global_op("numpy", "dtype") + s + pickle.TUPLE1 + pickle.REDUCE,
    "dtype-state": lambda s: _F8 + s + pickle.BUILD,
    "scalar-dtype": lambda s: (
        global_op("numpy.core.multiarray", "scalar")
        + s
        + pickle.SHORT_BINBYTES
        + b"\x00"
        + pickle.TUPLE2
        + pickle.REDUCE
    ),
    "frombuffer-shape": lambda s: (
        global_op("numpy.core.numeric", "_frombuffer")
        + pickle.MARK
        + pickle.SHORT_BINBYTES
        + b"\x00"
        + _F8
        + s
        + text("C")
        + pickle.TUPLE
        + pickle.REDUCE
    ),
    "persistent-id": lambda s: s + pickle.BINPERSID,
}


@pytest.mark.parametrize("path", list(MESSAGE_PATHS))
def test_error_messages_do_not_expand_shared_structures(path: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Depth 18 (262,144 shared leaves) rather than 60, so that the bug costs ~0.2 s, not forever:
    each leaf the message formats is counted. A bounded message formats a handful of them."""
    formatted = [0]

    def counting_repr(self: Any) -> str:
        formatted[0] += 1
        return "x"

    monkeypatch.setattr(safe_pickle._Ignored, "__repr__", counting_repr)
    raw = whole(pickle.MARK + MESSAGE_PATHS[path](memo_laughs(18, leaf=_IGNORED_LEAF)) + pickle.POP_MARK + pickle.NONE)
    with pytest.raises(ModelFileError):
        load_model(io.BytesIO(raw))
    assert formatted[0] <= 1_000, f"the error message formatted {formatted[0]:,} values"


@pytest.fixture
def restore_references() -> Iterator[None]:
    """Undo any change a crafted pickle makes to the shared table of stand-ins (see the next test)."""
    saved = {id(v): (v, dict(v.__dict__)) for v in sb2_pickle._GLOBALS.values() if isinstance(v, Reference)}
    yield
    for value, fields in saved.values():
        value.__dict__.clear()
        value.__dict__.update(fields)


@pytest.mark.usefixtures("restore_references")
def test_a_crafted_file_cannot_change_how_later_files_read(tmp_path: Path) -> None:
    rename = pickle.EMPTY_DICT + text("name") + text("CnnPolicy") + pickle.SETITEM + pickle.BUILD
    crafted = tmp_path / "crafted.pkl"
    crafted.write_bytes(
        dumps((sb2_data(policy=Raw(global_op("stable_baselines.common.policies", "MlpPolicy") + rename)), []))
    )
    with contextlib.suppress(ModelFileError):
        load_model(crafted)
    assert load_model(CARTPOLE).data["policy"] == {"class": "stable_baselines.common.policies.MlpPolicy"}


HUGE = 10**400  # past float's range
HUGER = 10**5000  # past the 4,300 digits ``str()`` converts
#: id → (file name, content): a huge integer where a reader expects a number or a key.
HUGE_INTEGERS: dict[str, tuple[str, Any]] = {
    "obs_rms-count": ("obs_rms.pkl", running_mean_std(count=HUGE)),
    "vecnormalize-count": ("vecnormalize.pkl", vec_normalize(running_mean_std(count=HUGE))),
    "vecnormalize-clip_obs": ("vecnormalize.pkl", vec_normalize(running_mean_std(), clip_obs=HUGE)),
    "vecnormalize-epsilon": ("vecnormalize.pkl", vec_normalize(running_mean_std(), epsilon=HUGE)),
    "vecnormalize-norm_obs": ("vecnormalize.pkl", vec_normalize(running_mean_std(), norm_obs=HUGER)),
    "model-data-key": ("model.pkl", ({**sb2_data(), HUGER: 1}, [])),
    "model-gamma": ("model.pkl", (sb2_data(gamma=HUGE), [])),
    "model-learning_rate": ("model.pkl", (sb2_data(learning_rate=HUGE), [])),
    "model-net_arch": ("model.pkl", (sb2_data(policy_kwargs={"net_arch": [HUGER]}), [])),
}


@pytest.mark.parametrize("case", list(HUGE_INTEGERS))
def test_huge_integers_are_model_file_errors(case: str, tmp_path: Path) -> None:
    name, content = HUGE_INTEGERS[case]
    path = tmp_path / name
    path.write_bytes(dumps(content))
    with pytest.raises(ModelFileError):
        ACKTR.load(path) if name == "model.pkl" else load_vecnormalize(path)


# ------------------------------------------------ what the C unpickler would do before any budget applies
def _shared_tuple_key(depth: int) -> bytes:
    """A dict whose key is a tuple of depth ``depth`` sharing itself through the memo: hashing
    it costs 2^depth (CPython does not cache tuple hashes)."""
    key = pickle.NONE
    for i in range(depth):
        key += _put(i) + _get(i) + pickle.TUPLE2
    return pickle.EMPTY_DICT + key + pickle.NONE + pickle.SETITEM


@pytest.mark.parametrize(
    ("opcodes", "problem"),
    [
        pytest.param(_shared_tuple_key(60), "a dict key in the pickle is a tuple", id="2^60-hash-key"),
        pytest.param(
            pickle.MARK + _shared_tuple_key(60)[1:-1] + pickle.NONE + pickle.DICT,
            "a dict key in the pickle is a tuple",
            id="2^60-hash-DICT",
        ),
        pytest.param(pickle.NONE + _put(2**31) + pickle.POP + pickle.NONE, "", id="memo-index-2^31"),
        pytest.param(
            pickle.NONE + (pickle.NONE + pickle.POP) * 600_000, "more than 1,000,000 opcodes", id="1.2M-opcodes"
        ),
    ],
)
def test_work_a_few_bytes_could_demand_is_refused_in_bounded_time_and_memory(
    opcodes: bytes, problem: str, tmp_path: Path
) -> None:
    """A 247-byte dict key took hours to hash; an 11-byte memo index asked the C unpickler for
    32 GiB. The pure-Python unpickler keeps its memo in a dict, checks keys before hashing them
    and counts its opcodes."""
    path = tmp_path / "model.pkl"
    path.write_bytes(whole(opcodes))
    started = time.perf_counter()
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError, match=re.escape(str(path)) + ".*" + re.escape(problem)):
            load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.perf_counter() - started < 20
    assert peak < 64 * 2**20


@pytest.mark.parametrize(
    ("state", "problem"),
    [
        ({"mean": [[1.0], [1.0, 2.0]], "var": [[1.0], [1.0, 2.0]], "count": 5.0}, "not arrays of numbers"),
        ([1, 2], "state is a list, not a dict"),
    ],
)
def test_statistics_of_the_wrong_shape_are_model_file_errors(state: Any, problem: str, tmp_path: Path) -> None:
    path = tmp_path / "obs_rms.pkl"
    path.write_bytes(dumps(Instance(RUNNING_MEAN_STD, state)))
    with pytest.raises(ModelFileError, match=re.escape(str(path)) + ".*" + problem):
        load_vecnormalize(path)
    path = tmp_path / "vecnormalize.pkl"
    path.write_bytes(dumps(Instance(VEC_NORMALIZE, [1, 2])))
    with pytest.raises(ModelFileError, match="the pickled VecNormalize's state is a list, not a dict"):
        load_vecnormalize(path)


def test_shared_bytes_rebuilt_into_many_arrays_are_refused(tmp_path: Path) -> None:
    """2 MiB of bytes memoised once and rebuilt by 8 REDUCEs (5 bytes each) would allocate
    16 MiB from a 2 MiB file: the arrays built may hold at most the file's size (+ 1 MiB)."""
    size = 2 * 2**20
    frombuffer = pickle.GLOBAL + b"numpy.core.numeric\n_frombuffer\n" + _put(0)
    arguments = (
        pickle.MARK
        + pickle.BINBYTES8
        + struct.pack("<Q", size)
        + bytes(size)
        + pickle.SHORT_BINUNICODE
        + b"\x02u1"
        + pickle.BININT
        + struct.pack("<i", size)
        + pickle.TUPLE1
        + pickle.SHORT_BINUNICODE
        + b"\x01C"
        + pickle.TUPLE
        + _put(1)
    )
    rebuilds = pickle.EMPTY_LIST + pickle.MARK + (_get(0) + _get(1) + pickle.REDUCE) * 8 + pickle.APPENDS
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.PROTO + b"\x04" + frombuffer + arguments + rebuilds + pickle.STOP)
    with pytest.raises(ModelFileError, match="arrays would hold more bytes than the file itself"):
        load_model(path)


def test_policy_kwargs_keyed_by_anything_but_names_are_a_model_file_error(tmp_path: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(dumps((sb2_data(policy_kwargs={1: 2, "net_arch": [8]}), [])))
    with pytest.raises(ModelFileError, match="policy_kwargs: must have argument names"):
        ACKTR.load(path)


def test_one_dict_copied_by_many_ordered_dict_calls_is_refused(tmp_path: Path) -> None:
    """1,000 items memoised once, passed to 200 ``OrderedDict(...)`` calls of 7 bytes each:
    200,000 items copied in all, past the 100,000 the pickle may hold."""
    items = b"".join(pickle.BININT + struct.pack("<i", i) + pickle.NONE for i in range(1000))
    source = pickle.EMPTY_DICT + pickle.MARK + items + pickle.SETITEMS + _put(1)
    ordered = pickle.GLOBAL + b"collections\nOrderedDict\n" + _put(0)
    calls = pickle.EMPTY_LIST + pickle.MARK + (_get(0) + _get(1) + pickle.TUPLE1 + pickle.REDUCE) * 200 + pickle.APPENDS
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.PROTO + b"\x04" + ordered + source + pickle.POP + calls + pickle.STOP)
    with pytest.raises(ModelFileError, match="copies more than 100,000 items into OrderedDicts"):
        load_model(path)
