"""Expert data against hostile ``.npz`` files: overflow to float32, bounded work, and one
error type (:class:`acktr_lab.expert.ExpertDataError`) naming the file and the array for
everything wrong with a file's content."""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from test_expert import sb2_cartpole_dict as sb2_dict

from acktr_lab import expert
from acktr_lab.expert import ExpertDataError, ExpertDataset, generate_expert_traj, load_expert_data

FLOAT32_MAX = float(np.finfo(np.float32).max)
FIRST_OVERFLOW = float(2**128 - 2**103)  # float32 max + half an ulp: the cast rounds to inf
PACKAGE_DIR = Path(expert.__file__).resolve().parents[1]  # acktr_lab/, above acktr_lab/expert/
MiB = 1 << 20
GiB = 1 << 30
#: The memory-bounded child processes use RLIMIT_AS and /proc/self/status.
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_AS and /proc")


# ------------------------------------------------------------------------------ helpers
def box_dict() -> dict[str, np.ndarray]:
    """Pendulum-shaped arrays: float observations and float (Box) actions."""
    data = sb2_dict()
    data["actions"] = np.linspace(-2, 2, 28).reshape(28, 1)
    return data


def npy_header(shape: tuple[int, ...], descr: str = "<f4", version: tuple[int, int] = (1, 0)) -> bytes:
    """A ``.npy`` magic string and header declaring ``shape`` and ``descr`` (no data)."""
    buffer = io.BytesIO()
    header = {"descr": descr, "fortran_order": False, "shape": shape}
    if version == (1, 0):
        np.lib.format.write_array_header_1_0(buffer, header)
    else:
        np.lib.format.write_array_header_2_0(buffer, header)
    return buffer.getvalue()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def write_npz(path: Path, members: dict[str, bytes], compression: int = zipfile.ZIP_STORED) -> Path:
    """An archive with the given raw members, named as given (``'obs.npy'``) up to a
    ``'#…'`` suffix, which lets a name be written twice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # duplicate names, on purpose
        with zipfile.ZipFile(path, "w", compression) as archive:
            for name, data in members.items():
                archive.writestr(name.split("#")[0], data)
    return path


def valid_members(**replace: bytes) -> dict[str, bytes]:
    """The members of a valid SB2 file, with some replaced by raw bytes."""
    members = {f"{key}.npy": npy_bytes(value) for key, value in sb2_dict().items()}
    members.update({f"{key}.npy": value for key, value in replace.items()})
    return members


def stream_member(path: Path, header: bytes, zero_bytes: int) -> Path:
    """A valid file but for ``'obs.npy'``: ``header`` + ``zero_bytes`` zeros, streamed through
    a ZIP_DEFLATED writer 1 MiB at a time (never held in memory; small on disk)."""
    chunk = bytes(MiB)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for member, data in valid_members().items():
            if member != "obs.npy":
                archive.writestr(member, data)
        with archive.open("obs.npy", "w", force_zip64=zero_bytes > GiB) as handle:
            handle.write(header)
            left = zero_bytes
            while left > 0:
                handle.write(chunk[: min(left, MiB)])
                left -= MiB
    return path


def patch_central_directory(path: Path, name: str, **fields: int) -> None:
    """Overwrite fields (``file_size``, ``flag_bits``, ``compress_type``) of the entry of
    ``name`` in a (non-zip64) archive's central directory and local header: a lying file."""
    raw = bytearray(path.read_bytes())
    eocd = raw.rindex(b"PK\x05\x06")
    count, _, offset = struct.unpack_from("<HII", raw, eocd + 10)
    central = {"flag_bits": (8, "<H"), "compress_type": (10, "<H"), "file_size": (24, "<I")}
    local = {"flag_bits": (6, "<H"), "compress_type": (8, "<H"), "file_size": (22, "<I")}
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", raw, offset + 28)
        local_offset = struct.unpack_from("<I", raw, offset + 42)[0]
        if raw[offset + 46 : offset + 46 + name_len].decode() == name:
            for field, value in fields.items():
                struct.pack_into(central[field][1], raw, offset + central[field][0], value)
                struct.pack_into(local[field][1], raw, local_offset + local[field][0], value)
            path.write_bytes(bytes(raw))
            return
        offset += 46 + name_len + extra_len + comment_len
    raise AssertionError(f"no member {name!r}")


def refused(path: Path | None, *fragments: str, **kwargs: Any) -> str:
    """Load ``path`` (a file) or ``kwargs['traj_data']``; assert ``ExpertDataError`` (not
    any other exception) whose message names the file (when a file) and ``fragments``."""
    try:
        if path is None:
            ExpertDataset(verbose=0, **kwargs)
        else:
            ExpertDataset(expert_path=path, verbose=0, **kwargs)
    except ExpertDataError as error:
        message = str(error)
    else:
        raise AssertionError(f"{path or 'traj_data'} was accepted")
    if path is not None:
        assert repr(str(path)) in message, message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ------------------------------------------------------------------------------ float32 overflow
@pytest.mark.parametrize("value", [1e39, -1e39, np.finfo(np.float64).max, FIRST_OVERFLOW, -FIRST_OVERFLOW])
@pytest.mark.parametrize("key", ["obs", "actions", "rewards", "episode_returns"])
def test_values_that_overflow_float32_are_refused_from_files_and_dicts(tmp_path: Path, key: str, value: float) -> None:
    data = box_dict()
    array = data[key].astype(np.float64)
    array.reshape(-1)[3] = value
    data[key] = array
    assert np.all(np.isfinite(array))  # finite as stored (float64) ...
    with np.errstate(over="ignore"):
        assert not np.all(np.isfinite(array.astype(np.float32)))  # ... but not as float32
    path = tmp_path / "overflow.npz"
    np.savez(path, **data)
    for message in (refused(path, f"{key!r}", "float32"), refused(None, f"{key!r}", "float32", traj_data=data)):
        assert "beyond the float32 range" in message


def test_values_at_the_float32_limit_load_and_int_arrays_are_not_range_checked(tmp_path: Path) -> None:
    data = box_dict()
    data["obs"] = data["obs"].astype(np.float64)
    data["obs"][0, 0], data["obs"][1, 0] = FLOAT32_MAX, -FLOAT32_MAX
    data["obs"][2, 0] = np.nextafter(FIRST_OVERFLOW, 0)  # above float32 max, rounds down to it
    data["rewards"] = np.full(28, np.iinfo(np.int64).max)  # int64 → float32 stays finite
    np.savez(tmp_path / "edge.npz", **data)
    dataset = ExpertDataset(expert_path=tmp_path / "edge.npz", verbose=0)
    assert np.all(np.isfinite(dataset.observations.astype(np.float32)))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("key", ["obs", "actions", "rewards", "episode_returns"])
def test_nan_and_inf_are_refused_naming_the_array(tmp_path: Path, key: str, bad: float) -> None:
    data = box_dict()
    data[key] = data[key].astype(np.float32)
    data[key].reshape(-1)[-1] = bad
    np.savez(tmp_path / "nan.npz", **data)
    refused(tmp_path / "nan.npz", f"{key!r}", "NaN or infinite")


def test_pretrain_on_a_valid_file_keeps_the_policy_finite_and_refuses_overflow(tmp_path: Path) -> None:
    from acktr_lab import ACKTR

    def controller(obs: np.ndarray) -> int:
        return int(3.0 * obs[2] + obs[3] > 0)

    generate_expert_traj(controller, tmp_path / "expert", env="CartPole-v1", n_episodes=3, seed=0, verbose=0)
    model = ACKTR("MlpPolicy", "CartPole-v1", seed=0, n_steps=5)
    dataset = ExpertDataset(expert_path=tmp_path / "expert.npz", batch_size=32, verbose=0, seed=0)
    before = [v.numpy().copy() for v in model.policy.trainable_variables]
    model.pretrain(dataset, n_epochs=2, learning_rate=1e-3)
    after = [v.numpy() for v in model.policy.trainable_variables]
    assert all(np.all(np.isfinite(v)) for v in after)
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # it did train

    hostile = {k: np.asarray(v) for k, v in np.load(tmp_path / "expert.npz").items()}
    hostile["obs"] = hostile["obs"].astype(np.float64)
    hostile["obs"][5] = 1e39
    np.savez(tmp_path / "hostile.npz", **hostile)
    refused(tmp_path / "hostile.npz", "'obs'", "float32")
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(after, model.policy.trainable_variables))


@pytest.mark.parametrize("recurrent", [False, True])
def test_pretrain_stops_before_a_non_finite_update_from_huge_finite_actions(recurrent: bool) -> None:
    """3e38 is a finite float32, but its square overflows in the MSE: no update is applied."""
    from acktr_lab.policies import MlpPolicy
    from acktr_lab.pretrain import behaviour_cloning
    from acktr_lab.recurrent import MlpLstmPolicy

    obs_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
    action_space = gym.spaces.Box(-2, 2, (1,), np.float32)
    if recurrent:
        policy: Any = MlpLstmPolicy(obs_space, action_space, n_lstm=4, seed=0)
    else:
        policy = MlpPolicy(obs_space, action_space, seed=0)
    data = box_dict()
    data["obs"] = data["obs"][:, :3]
    data["actions"] = data["actions"].astype(np.float32)
    data["actions"][10] = 3e38
    dataset = ExpertDataset(traj_data=data, batch_size=8, train_fraction=1.0, verbose=0, seed=0)
    with pytest.raises(ExpertDataError, match=r"traj_data.*stopped at epoch 1.*largest \|action\| 3e\+38"):
        list(behaviour_cloning(policy, dataset, n_epochs=2, learning_rate=1e-3, sequence_length=4))
    assert all(np.all(np.isfinite(v.numpy())) for v in policy.trainable_variables)
    data["actions"][10] = 1.0  # the same data, sane: trains
    sane = ExpertDataset(traj_data=data, batch_size=8, verbose=0, seed=0)
    reports = list(behaviour_cloning(policy, sane, n_epochs=2, learning_rate=1e-3, sequence_length=4))
    assert all(np.isfinite(r.train_loss) for r in reports)
    assert all(np.all(np.isfinite(v.numpy())) for v in policy.trainable_variables)


def test_observations_must_fit_the_space_dtype_and_range() -> None:
    data = sb2_dict()
    data["obs"] = np.full((28, 4), 300.0)
    dataset = ExpertDataset(traj_data=data, verbose=0)
    with pytest.raises(ExpertDataError, match=r"expert data \(traj_data\).*would wrap around"):
        dataset.check_spaces(gym.spaces.Box(0, 255, (4,), np.uint8), gym.spaces.Discrete(2))
    dataset.check_spaces(gym.spaces.Box(0, 255, (4,), np.int16), gym.spaces.Discrete(2))
    dataset.check_spaces(gym.spaces.Box(-1, 1, (4,), np.float16), gym.spaces.Discrete(2))
    data["obs"] = np.full((28, 4), -1e5)
    with pytest.raises(ExpertDataError, match=r"float16 .*would become infinite"):
        ExpertDataset(traj_data=data, verbose=0).check_spaces(
            gym.spaces.Box(-1, 1, (4,), np.float16), gym.spaces.Discrete(2)
        )
    data["obs"] = np.full((28, 2), 5)
    with pytest.raises(ExpertDataError, match="observations out of range"):
        ExpertDataset(traj_data=data, verbose=0).check_spaces(gym.spaces.MultiDiscrete([3, 3]), gym.spaces.Discrete(2))
    with pytest.raises(ExpertDataError, match="observations out of range"):
        ExpertDataset(traj_data=data, verbose=0).check_spaces(gym.spaces.MultiBinary(2), gym.spaces.Discrete(2))


# ------------------------------------------------------------------------------ bounded work
_CHILD = r"""
import importlib.util, json, resource, sys, time
import numpy as np

# acktr_lab.expert (and safe_archive.py) without acktr_lab/__init__, which imports TensorFlow:
# a bare package object stands in for acktr_lab
import os, types
package = types.ModuleType("acktr_lab")
package.__path__ = [sys.argv[1]]
sys.modules["acktr_lab"] = package
import acktr_lab.expert as module
assert "tensorflow" not in sys.modules
path, headroom, control = sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
kwargs = json.loads(sys.argv[5])

def vm_size() -> int:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmSize:"))

limit = vm_size() + headroom
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
start = time.perf_counter()
result = {}
try:
    module.load_expert_data(path, **kwargs)
    result["error"] = None
except Exception as error:
    result["error"], result["message"] = type(error).__name__, str(error)
result["seconds"] = time.perf_counter() - start
result["peak_growth"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - peak_before
if control:  # numpy's own loader under the same limit: shows the limit bites
    try:
        with np.load(path, allow_pickle=False) as archive:
            [archive[key] for key in archive.files]
        result["numpy"] = "loaded"
    except MemoryError:
        result["numpy"] = "MemoryError"
print(json.dumps(result))
"""


def load_in_limited_process(
    path: Path, headroom: int = 512 * MiB, control: bool = False, **kwargs: Any
) -> dict[str, Any]:
    """``load_expert_data(path, **kwargs)`` in a child process whose address space may grow by
    ``headroom`` bytes only (``RLIMIT_AS``); returns the error, time and peak-RSS growth."""
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            _CHILD,
            str(PACKAGE_DIR),
            str(path),
            str(headroom),
            str(int(control)),
            json.dumps(kwargs),
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def honest_bomb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~6 MB archive whose 'obs.npy' honestly decompresses to 1.25 GiB of zeros
    (more than MAX_EXPERT_BYTES), with truthful zip sizes and CRC."""
    path = tmp_path_factory.mktemp("bomb") / "bomb.npz"
    n_bytes = 1280 * MiB
    return stream_member(path, npy_header((n_bytes // 16, 4)), n_bytes)


@linux_only
def test_honest_zip_bomb_is_refused_before_decompressing_with_bounded_memory(honest_bomb: Path) -> None:
    assert os.path.getsize(honest_bomb) < 8 * MiB
    info = zipfile.ZipFile(honest_bomb).getinfo("obs.npy")
    assert info.file_size > expert.MAX_EXPERT_BYTES
    result = load_in_limited_process(honest_bomb, control=True)
    assert result["error"] == "ExpertDataError", result
    message = result["message"]
    assert repr(str(honest_bomb)) in message and "'obs.npy'" in message, message
    assert f"{info.file_size:,} bytes" in message and f"{expert.MAX_EXPERT_BYTES:,} bytes" in message, message
    assert result["seconds"] < 5.0 and result["peak_growth"] < 32 * MiB, result
    assert result["numpy"] == "MemoryError", result  # np.load would try to allocate it all


@linux_only
def test_bomb_within_a_raised_cap_is_refused_by_memory_not_by_us(honest_bomb: Path) -> None:
    """``max_bytes`` above the bomb lets it through the size checks; the (limited) process
    then fails to allocate it, reported as ExpertDataError, not a bare MemoryError."""
    result = load_in_limited_process(honest_bomb, max_bytes=2 * GiB)
    assert result["error"] == "ExpertDataError" and "not enough memory" in result["message"], result


def test_the_cap_is_per_call_and_the_module_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = stream_member(tmp_path / "mid.npz", npy_header((8 * MiB // 16, 4)), 8 * MiB)
    assert load_expert_data(path)["obs"].shape == (MiB // 2, 4)
    message = refused(path, "'obs.npy'", "more than the limit of 4,194,304 bytes", max_bytes=4 * MiB)
    assert "max_bytes" in message
    monkeypatch.setattr(expert, "MAX_EXPERT_BYTES", 4 * MiB)
    refused(path, "'obs.npy'", "more than the limit of 4,194,304 bytes")
    # the sum counts: two members of 3 MiB each exceed a 5 MiB cap though each fits
    two = tmp_path / "two.npz"
    with zipfile.ZipFile(two, "w", zipfile.ZIP_DEFLATED) as archive:
        for key in ("obs", "actions"):
            archive.writestr(f"{key}.npy", npy_bytes(np.zeros((3 * MiB // 8,))))
    with pytest.raises(ExpertDataError, match=r"2 members together .* more than the limit of 5,242,880 bytes"):
        load_expert_data(two, max_bytes=5 * MiB)
    with pytest.raises(ValueError, match="max_bytes must be a positive integer"):
        load_expert_data(two, max_bytes=0)


@linux_only
@pytest.mark.parametrize(
    ("shape", "data_bytes", "fragments"),
    [
        ((40000, 40000), MiB, ("(40000, 40000)", "6,400,000,000 bytes", "more than the limit")),  # > cap
        ((2**62,), 16, ("more than the limit",)),  # huge length
        ((1000, 4), 400, ("declares shape (1000, 4)", "16,000 bytes", "holds")),  # header > data
        ((10,), MiB, ("declares shape (10,)", "40 bytes", "holds")),  # header < data (trailing data)
        ((-1, 4), 16, ("negative shape (-1, 4)",)),
    ],
)
def test_header_shape_must_match_the_member_before_allocation(
    tmp_path: Path, shape: tuple[int, ...], data_bytes: int, fragments: tuple[str, ...]
) -> None:
    path = stream_member(tmp_path / "shape.npz", npy_header(shape), data_bytes)
    result = load_in_limited_process(path, headroom=256 * MiB)
    assert result["error"] == "ExpertDataError", result
    for fragment in ("'obs.npy'", repr(str(path)), *fragments):
        assert fragment in result["message"], (fragment, result)
    assert result["seconds"] < 5.0 and result["peak_growth"] < 16 * MiB, result


@linux_only
def test_member_whose_zip_size_lies_is_read_only_up_to_its_declared_size(tmp_path: Path) -> None:
    """Declared 10 floats; the deflate stream really holds 256 MiB more zeros."""
    path = stream_member(tmp_path / "lie.npz", npy_header((10,)), 256 * MiB)
    patch_central_directory(path, "obs.npy", file_size=len(npy_header((10,))) + 40)
    result = load_in_limited_process(path, headroom=256 * MiB)
    assert result["error"] == "ExpertDataError", result
    assert "'obs.npy'" in result["message"] and "corrupt" in result["message"], result
    assert result["seconds"] < 5.0 and result["peak_growth"] < 16 * MiB, result


def test_member_claiming_more_than_its_compressed_bytes_can_hold_is_refused(tmp_path: Path) -> None:
    """A tiny member that declares 512 MiB (under the cap): refused before allocating."""
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        path = write_npz(tmp_path / "claim.npz", valid_members(obs=npy_header((MiB * 128,)) + bytes(40)), compression)
        patch_central_directory(path, "obs.npy", file_size=len(npy_header((MiB * 128,))) + 512 * MiB)
        refused(path, "'obs.npy'", "cannot expand to that")
    # a deflated member that claims a size it cannot reach, under the ratio bound: EOF
    path = write_npz(tmp_path / "short.npz", valid_members(obs=npy_header((4096,)) + bytes(40)), zipfile.ZIP_DEFLATED)
    patch_central_directory(path, "obs.npy", file_size=len(npy_header((4096,))) + 4096 * 4)
    refused(path, "'obs.npy'", "corrupt or truncated")


# ------------------------------------------------------------------------------ corrupt content
@pytest.mark.parametrize(
    ("replace", "fragments"),
    [
        ({"obs": b"\x00" * 50}, ("'obs.npy'", "not a valid .npy array")),
        ({"obs": b"\x93NUMPY\x01"}, ("'obs.npy'", "not a valid .npy array")),  # truncated header
        ({"obs": npy_header((28, 4))[:20]}, ("'obs.npy'", "not a valid .npy array")),
        ({"obs": b"\x93NUMPY\x03\x00" + b"\x00" * 60}, ("'obs.npy'", "format version 3.0")),
        ({"obs": b"\x93NUMPY\x01\x00\x10\x00{'a': (((((}   \n"}, ("'obs.npy'", "not a valid .npy array")),
        ({"obs": npy_header((28, 4), "|O") + bytes(8 * 112)}, ("'obs.npy'", "pickled object arrays")),
        ({"obs": npy_bytes(np.zeros((28, 4), "M8[s]"))}, ("'obs.npy'", "unsupported dtype")),
        ({"obs": npy_bytes(np.zeros(28, [("a", "<f4"), ("b", "<i4")]))}, ("'obs.npy'", "unsupported dtype")),
        ({"obs": npy_header((28,), "|V8") + bytes(224)}, ("'obs.npy'", "unsupported dtype")),
        ({"obs": npy_header((28,), "|S0")}, ("'obs.npy'", "unsupported dtype")),
        ({"obs": npy_header((28, 4), "<f4", (2, 0)) + bytes(10)}, ("'obs.npy'", "declares shape (28, 4)")),
        ({"obs": npy_header((1,) * 100)}, ("'obs.npy'", "at most 32 whole-number sizes")),
        ({"obs": npy_header((True,))}, ("'obs.npy'", "at most 32 whole-number sizes")),
        ({"obs": npy_header((0, 10**30))}, ("'obs.npy'", "which NumPy refuses")),
        ({"obs": npy_header((0, 2**62))}, ("'obs.npy'", "which NumPy refuses")),
        ({"actions": npy_bytes(np.array(["left", "right"] * 14))}, ("'actions'", "must be numeric")),
        ({"rewards": npy_bytes(np.array(["1.0"] * 28))}, ("'rewards'", "must be numeric")),
        ({"episode_returns": npy_bytes(np.array(["7"] * 4))}, ("'episode_returns'", "must be numeric")),
        ({"episode_starts": npy_bytes(np.array(["True"] * 28))}, ("'episode_starts'", "must be booleans")),
        ({"episode_starts": npy_bytes(np.full(28, 0.5))}, ("'episode_starts'", "other than 0/1")),
        ({"episode_starts": npy_bytes(np.full(28, 2))}, ("'episode_starts'", "other than 0/1")),
        ({"episode_starts": npy_bytes(np.full(28, np.nan))}, ("'episode_starts'", "other than 0/1")),
        ({"episode_starts": npy_bytes(np.ones((28, 2), bool))}, ("'episode_starts'", "one flag per transition")),
        ({"rewards": npy_bytes(np.ones(28) + 1j)}, ("'rewards'", "complex")),
        ({"rewards": npy_bytes(np.ones((28, 2)))}, ("'rewards'", "one number per transition")),
        ({"rewards": npy_bytes(np.ones(27))}, ("lengths differ", "'rewards' has 27")),
        ({"actions": npy_bytes(np.ones((29, 1)))}, ("lengths differ", "'actions' has 29")),
        ({"episode_starts": npy_bytes(np.ones(3, bool))}, ("lengths differ", "'episode_starts' has 3")),
        ({"obs": npy_bytes(np.float32(1.0))}, ("'obs'", "scalar")),
        ({"obs": npy_bytes(np.zeros((0, 4), np.float32))}, ("empty", "'obs' holds 0 transitions")),
        ({"episode_returns": npy_bytes(np.zeros(0))}, ("'episode_returns' has 0 entries",)),
        ({"obs": npy_bytes(np.array([["a.png"] * 2] * 28))}, ("image-path observations", "1-D")),
        ({"obs": npy_bytes(np.array([b"\xff\xfe.png"] * 28))}, ("'obs'", "not UTF-8")),
        (
            {"obs": npy_header((28,), "<U1") + np.full(28, 0x110000, "<u4").tobytes()},
            ("'obs.npy'", "invalid Unicode code points"),
        ),
        (
            {"obs": npy_header((28,), "<U1") + np.full(28, 0xD800, "<u4").tobytes()},
            ("'obs.npy'", "invalid Unicode code points"),
        ),
        ({"obs#1": b"", "obs#2": b""}, ("'obs.npy'", "more than once")),
    ],
)
def test_each_kind_of_bad_content_raises_expert_data_error_naming_file_and_array(
    tmp_path: Path, replace: dict[str, bytes], fragments: tuple[str, ...]
) -> None:
    members = valid_members(**{key: value for key, value in replace.items() if "#" not in key})
    members.update({f"{key.split('#')[0]}.npy#{key}": value for key, value in replace.items() if "#" in key})
    for compression in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        refused(write_npz(tmp_path / "bad.npz", members, compression), *fragments)


@pytest.mark.parametrize("missing", ["obs", "actions", "episode_starts"])
def test_missing_keys_name_the_file_and_the_key(tmp_path: Path, missing: str) -> None:
    members = {name: data for name, data in valid_members().items() if name != f"{missing}.npy"}
    members["notes.txt"] = b"not an array: skipped, never read"
    refused(write_npz(tmp_path / "missing.npz", members), f"missing key(s) [{missing!r}]")


def test_archive_level_damage(tmp_path: Path) -> None:
    good = write_npz(tmp_path / "good.npz", valid_members(), zipfile.ZIP_DEFLATED)
    raw = good.read_bytes()
    (tmp_path / "single.npz").write_bytes(npy_bytes(np.zeros(3)))
    refused(tmp_path / "single.npz", "single .npy array")
    (tmp_path / "pickle.npz").write_bytes(b"\x80\x04\x95" + bytes(20))
    refused(tmp_path / "pickle.npz", "not an .npz archive")
    for cut in (10, 100, len(raw) // 2, len(raw) - 10):
        (tmp_path / "cut.npz").write_bytes(raw[:cut])
        refused(tmp_path / "cut.npz", "corrupt or truncated")
    for field, value, fragment in (
        ("flag_bits", 1, "encrypted"),
        ("compress_type", 99, "compressed with zip method 99"),  # refused by its method, before reading
    ):
        path = tmp_path / f"{field}.npz"
        path.write_bytes(raw)
        patch_central_directory(path, "actions.npy", **{field: value})
        refused(path, "'actions.npy'", fragment)
    # a damaged deflate stream or CRC: zlib.error / BadZipFile inside the member
    info = zipfile.ZipFile(good).getinfo("obs.npy")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for offset in (start + 2, start + info.compress_size // 2, start + info.compress_size - 3):
        damaged = bytearray(raw)
        damaged[offset : offset + 2] = bytes(b ^ 0x5A for b in damaged[offset : offset + 2])
        (tmp_path / "damaged.npz").write_bytes(bytes(damaged))
        refused(tmp_path / "damaged.npz", "'obs.npy'")


def test_booleans_are_normalised_and_non_npy_members_are_skipped(tmp_path: Path) -> None:
    starts = npy_bytes(sb2_dict()["episode_starts"])
    body = bytearray(starts)
    header = len(starts) - 28
    body[header + 7] = 2  # a "boolean" byte that is neither 0 nor 1 (a start)
    path = write_npz(tmp_path / "bools.npz", dict(valid_members(episode_starts=bytes(body)), junk=b"\x00" * 99))
    data = load_expert_data(path)
    assert "junk" not in data and set(data) == {"obs", "actions", "rewards", "episode_returns", "episode_starts"}
    assert data["episode_starts"].view(np.uint8).max() == 1
    assert ExpertDataset(expert_path=path, verbose=0).n_episodes == 4
    fortran = write_npz(tmp_path / "fortran.npz", valid_members(obs=npy_bytes(np.asfortranarray(sb2_dict()["obs"]))))
    np.testing.assert_array_equal(load_expert_data(fortran)["obs"], sb2_dict()["obs"])


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_fuzzed_files_raise_only_expert_data_error(tmp_path: Path, compression: int) -> None:
    """Random byte flips and truncations of a valid file: it loads, or ExpertDataError."""
    raw = write_npz(tmp_path / "seed.npz", valid_members(), compression).read_bytes()
    rng = np.random.default_rng(compression)
    path = tmp_path / "fuzz.npz"
    outcomes = {"loaded": 0, "refused": 0}
    spaces = (gym.spaces.Box(-np.inf, np.inf, (4,), np.float32), gym.spaces.Discrete(2))
    for trial in range(300):
        mutated = bytearray(raw)
        if trial % 10 == 0:
            mutated = mutated[: int(rng.integers(0, len(raw)))]
        else:
            for position in rng.integers(0, len(raw), size=int(rng.integers(1, 4))):
                mutated[position] = int(rng.integers(0, 256))
        path.write_bytes(bytes(mutated))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dataset = ExpertDataset(expert_path=path, verbose=0, max_bytes=16 * MiB)
                dataset.check_spaces(*spaces)
                next(iter(dataset.train_loader))
            outcomes["loaded"] += 1
        except ExpertDataError as error:
            assert repr(str(path)) in str(error), str(error)
            outcomes["refused"] += 1
    assert outcomes["refused"] > 50 and outcomes["loaded"] > 0, outcomes


def test_a_pretraining_step_that_makes_a_parameter_non_finite_is_undone_and_stops() -> None:
    """Finite gradients, a finite learning rate, yet 3e38 + 1e38 overflows float32: the step
    is applied, found non-finite, undone (the parameters are as before) and reported."""
    import tensorflow as tf

    from acktr_lab.pretrain import _NON_FINITE, _apply_if_finite

    big, small = tf.Variable([3e38, 1.0]), tf.Variable([2.0])
    optimizer = tf.keras.optimizers.SGD(learning_rate=1e38)
    optimizer.build([big, small])

    @tf.function
    def step(gradient: tf.Tensor) -> None:
        _apply_if_finite(optimizer, [gradient, tf.constant([-1.0])], [big, small])

    with pytest.raises(tf.errors.InvalidArgumentError, match=_NON_FINITE):
        step(tf.constant([-1.0, 0.0]))
    np.testing.assert_array_equal(big.numpy(), np.float32([3e38, 1.0]))
    np.testing.assert_array_equal(small.numpy(), np.float32([2.0]))
    step(tf.constant([0.0, -1e-37]))  # a finite step is kept
    np.testing.assert_allclose(big.numpy(), [3e38, 11.0], rtol=1e-6)
    np.testing.assert_allclose(small.numpy(), [1e38], rtol=1e-6)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("learning_rate", np.inf),
        ("learning_rate", 1e39),
        ("learning_rate", np.nan),
        ("learning_rate", 0.0),
        ("learning_rate", "0.1"),
        ("learning_rate", True),
        ("adam_epsilon", np.inf),
        ("n_epochs", 2.7),
        ("n_epochs", "3"),
        ("n_epochs", np.inf),
        ("n_epochs", 0),
        ("val_interval", 1.5),
    ],
)
def test_pretrain_refuses_bad_settings_naming_them_before_any_change(name: str, value: Any) -> None:
    from acktr_lab.policies import MlpPolicy
    from acktr_lab.pretrain import behaviour_cloning

    data = box_dict()
    data["obs"] = data["obs"][:, :3]
    policy = MlpPolicy(
        gym.spaces.Box(-np.inf, np.inf, (3,), np.float32), gym.spaces.Box(-2, 2, (1,), np.float32), seed=0
    )
    dataset = ExpertDataset(traj_data=data, batch_size=8, train_fraction=1.0, verbose=0, seed=0)
    before = [v.numpy().copy() for v in policy.trainable_variables]
    with pytest.raises(ValueError, match=name):
        behaviour_cloning(policy, dataset, **{name: value})
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, policy.trainable_variables))


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_expert_members_compressed_other_than_stored_or_deflated_are_refused(tmp_path: Path, method: int) -> None:
    plain = tmp_path / "plain.npz"
    np.savez(plain, **box_dict())
    with zipfile.ZipFile(plain) as source, zipfile.ZipFile(tmp_path / "packed.npz", "w", method) as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
    refused(tmp_path / "packed.npz", f"compressed with zip method {method}")
