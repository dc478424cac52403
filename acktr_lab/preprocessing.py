"""Observation preprocessing per observation space, and spaces <-> JSON (never pickle).

Preprocessing maps a batch of raw observations ``[B, *space.shape]`` to float32
network inputs:

===================  ==========================================================
space                network input
===================  ==========================================================
``Box`` uint8, 3-D   ``x / 255`` (images, ``[B, H, W, C]``)
other ``Box``        ``float32(x)``
``Discrete(n)``      ``one_hot(x - start, n)``, ``[B, n]``
``MultiDiscrete``    ``concat_i one_hot(x_i - start_i, nvec_i)``, ``[B, Σ nvec]``
``MultiBinary``      ``float32(x)``
===================  ==========================================================

JSON form of a space (``space_to_json``), e.g.
``{"type": "Box", "shape": [3], "dtype": "float32", "low": [...], "high": [...]}``;
non-finite bounds are written as the strings ``"inf"``, ``"-inf"``, ``"nan"`` so
the result is strict JSON. :func:`space_from_json` also reads the space entries
of a Stable Baselines 2 ``data`` file (``{":type:": "<class 'gym.spaces.box.Box'>",
":serialized:": <cloudpickle>, "low": "[-1. -1. -8.]", ...}``) from the readable
fields only: the cloudpickle blob is never decoded.
"""

from __future__ import annotations

import math
import re
import reprlib
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

SUPPORTED_OBSERVATION_SPACES = "Box, Discrete, MultiDiscrete, MultiBinary"
_SUPPORTED_TYPES = (
    gym.spaces.Box,
    gym.spaces.Discrete,
    gym.spaces.MultiDiscrete,
    gym.spaces.MultiBinary,
)


# ------------------------------------------------------------------------- preprocessing
def check_observation_space(space: gym.spaces.Space) -> None:
    """Raise ``ValueError`` unless ``space`` is a Box, Discrete, MultiDiscrete or MultiBinary."""
    if not isinstance(space, _SUPPORTED_TYPES):
        raise ValueError(f"unsupported observation space {space!r}; supported: {SUPPORTED_OBSERVATION_SPACES}")


def _is_uint8_rank3(space: gym.spaces.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def image_layout(space: gym.spaces.Space) -> str | None:
    """``"channels_last"`` for a uint8 ``Box`` ``(H, W, C)``, ``"channels_first"`` for
    ``(C, H, W)``, else None.

    As in Stable Baselines 3, the channels are the smallest dimension; where that is
    ambiguous, channel-last wins (Stable Baselines 2's and gymnasium's render layout).
    gymnasium's ``AtariPreprocessing`` + ``FrameStackObservation`` give channel-first
    ``(4, 84, 84)`` stacks.
    """
    if not _is_uint8_rank3(space):
        return None
    first, height, width = space.shape
    if space.shape[2] <= space.shape[0] and space.shape[2] <= space.shape[1]:
        return "channels_last"
    if first < height and first < width:
        return "channels_first"
    return None


def is_image_space(space: gym.spaces.Space) -> bool:
    """True for an image: a uint8 rank-3 ``Box``, channel-last or channel-first (see :func:`image_layout`)."""
    return image_layout(space) is not None


def flat_observation_dim(space: gym.spaces.Space) -> int:
    """Length of the flattened network input: ``Π shape`` (Box, MultiBinary), ``n``, ``Σ nvec``."""
    check_observation_space(space)
    if isinstance(space, gym.spaces.Discrete):
        return int(space.n)
    if isinstance(space, gym.spaces.MultiDiscrete):
        return sum(int(n) for n in space.nvec.ravel())  # Python ints: an int64 sum could wrap
    return math.prod(space.shape)


def preprocess_observation(obs: tf.Tensor | np.ndarray, space: gym.spaces.Space) -> tf.Tensor:
    """Batch ``[B, *space.shape]`` → float32 network input (see the module table).

    Graph-safe: only the space's (constant) attributes drive the branching.
    """
    check_observation_space(space)
    x = tf.convert_to_tensor(obs)
    if isinstance(space, gym.spaces.Discrete):
        index = tf.cast(x, tf.int64) - int(space.start)
        return tf.one_hot(index, int(space.n), dtype=tf.float32)
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = [int(n) for n in space.nvec.ravel()]
        start = [int(s) for s in np.broadcast_to(space.start, space.nvec.shape).ravel()]
        flat = tf.reshape(tf.cast(x, tf.int64), [-1, len(nvec)])
        parts = [tf.one_hot(flat[:, i] - start[i], n, dtype=tf.float32) for i, n in enumerate(nvec)]
        return tf.concat(parts, axis=-1)
    if _is_uint8_rank3(space):
        return tf.cast(x, tf.float32) / 255.0
    return tf.cast(x, tf.float32)


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def assert_valid_observations(obs: np.ndarray, space: gym.spaces.Space) -> None:
    """Raise ``ValueError`` naming the problem if ``obs`` cannot be observations of ``space``.

    ``obs`` is one observation (``space.shape``) or a batch (``[B, *space.shape]``).
    Checks: the shape; floating observations that are not finite in float32 (NaN, ±inf,
    or a wider float beyond float32's range, which the network would read as inf); integer
    observations outside ``[start, start + n)`` for Discrete/MultiDiscrete and outside
    ``{0, 1}`` for MultiBinary.
    """
    check_observation_space(space)
    a = np.asarray(obs)
    shape = tuple(space.shape)
    rank = len(shape)
    if a.ndim not in (rank, rank + 1) or tuple(a.shape[a.ndim - rank :]) != shape:
        raise ValueError(
            f"observations of shape {a.shape} do not match {space!r}: expected {shape} or (batch, *{shape})"
        )
    if np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.complexfloating):
        bad = ~np.isfinite(a)
        if a.dtype.kind == "f" and a.dtype.itemsize > 4:  # the network reads float32
            bad |= np.abs(a) > _FLOAT32_MAX
        if bad.any():
            first = tuple(int(i) for i in np.argwhere(bad)[0])
            raise ValueError(
                f"observations contain {int(bad.sum())} non-finite value(s) in float32 (NaN, inf or beyond "
                f"±{_FLOAT32_MAX:.3g}, which the network reads as inf), first at index {first}: {a[first]}"
            )
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        low = np.asarray(space.start)
        high = low + (space.n if isinstance(space, gym.spaces.Discrete) else space.nvec)
        if np.any(a < low) or np.any(a >= high):
            raise ValueError(f"observations out of range for {space!r}")
    if isinstance(space, gym.spaces.MultiBinary) and np.any((a != 0) & (a != 1)):
        raise ValueError(f"MultiBinary observations must be 0 or 1 for {space!r}")


def assert_valid_observation_input(obs: np.ndarray, space: gym.spaces.Space) -> None:
    """:func:`assert_valid_observations` for observations a user passes in (``predict``):
    also ``ValueError`` for values that are not real numbers, non-integral values for a
    Discrete/MultiDiscrete/MultiBinary space, and values outside an integer Box's dtype (a
    uint8 image of 300). An env's own observations are checked against its space when it
    first steps (:mod:`acktr_lab.env_checks`) and need only :func:`assert_valid_observations`."""
    a = np.asarray(obs)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"observations must be real numbers for {space!r}, got dtype {a.dtype}")
    assert_valid_observations(a, space)
    integral = isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete | gym.spaces.MultiBinary)
    if integral and a.dtype.kind == "f" and np.any(a != np.floor(a)):
        raise ValueError(f"observations of {space!r} must be whole numbers, got {reprlib.repr(a.tolist())}")
    if isinstance(space, gym.spaces.Box) and space.dtype.kind in "iu" and a.size:
        info = np.iinfo(space.dtype)
        if a.min() < info.min or a.max() > info.max:
            raise ValueError(
                f"observations of {space!r} must lie in {space.dtype}'s range [{info.min}, {info.max}], "
                f"got values from {a.min()} to {a.max()}"
            )


# ---------------------------------------------------------------------------- equality
def spaces_equal(a: gym.spaces.Space, b: gym.spaces.Space) -> bool:
    """Same type, shape and dtype, and the same bounds / ``n`` / ``start`` / ``nvec``."""
    if type(a) is not type(b) or tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype:
        return False
    if isinstance(a, gym.spaces.Box):
        return bool(np.array_equal(a.low, b.low, equal_nan=True) and np.array_equal(a.high, b.high, equal_nan=True))
    if isinstance(a, gym.spaces.Discrete):
        return int(a.n) == int(b.n) and int(a.start) == int(b.start)
    if isinstance(a, gym.spaces.MultiDiscrete):
        return bool(np.array_equal(a.nvec, b.nvec) and np.array_equal(a.start, b.start))
    if isinstance(a, gym.spaces.MultiBinary):
        return True  # n is the shape
    return bool(a == b)


# -------------------------------------------------------------------------------- JSON
def _encode_array(x: np.ndarray) -> Any:
    """Nested lists; non-finite floats become the strings "inf", "-inf", "nan"."""

    def enc(v: Any) -> Any:
        if isinstance(v, list):
            return [enc(e) for e in v]
        if isinstance(v, float) and not math.isfinite(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        return v

    return enc(np.asarray(x).tolist())


def _decode_values(v: Any) -> Any:
    if isinstance(v, list):
        return [_decode_values(e) for e in v]
    if isinstance(v, str):
        return float(v)
    return v


def _bounds(value: Any, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    """Bounds from a JSON list/number, or from NumPy's ``str(array)`` (SB2 files)."""
    if isinstance(value, str):
        return _parse_numpy_str(value, shape, dtype, what)
    arr = np.asarray(_decode_values(value))
    return np.broadcast_to(arr, shape).astype(dtype)


_NUMBER = re.compile(r"[-+]?(?:inf|nan|(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)", re.IGNORECASE)


def _parse_numpy_str(text: str, shape: tuple[int, ...], dtype: np.dtype, what: str) -> np.ndarray:
    """Parse ``str(ndarray)`` such as ``"[-1. -1. -8.]"`` or ``"[[0 0]\\n [1 1]]"``.

    NumPy summarises big arrays with ``...``; such a string is accepted only when
    every value shown is the same (e.g. image bounds of 0 and 255).
    """
    size = math.prod(shape)
    longest = 40 * size + 64  # a float64's repr takes at most 24 characters, plus brackets and spaces
    if len(text) > longest:
        raise ValueError(
            f"{what} is a text of {len(text):,} characters, more than {size:,} values can take ({longest:,})"
        )
    tokens = _NUMBER.findall(text)
    if not tokens:
        raise ValueError(f"cannot read {what} from {reprlib.repr(text)}")
    values = np.array([float(t) for t in tokens])
    if "..." in text:
        if not np.all((values == values[0]) | (np.isnan(values) & np.isnan(values[0]))):
            raise ValueError(
                f"{what} {reprlib.repr(text)} is summarised ('...') and not constant; it cannot be rebuilt"
            )
        return np.full(shape, values[0]).astype(dtype)
    if values.size == 1:
        return np.full(shape, values[0]).astype(dtype)
    if values.size != size:
        raise ValueError(f"{what} {reprlib.repr(text)} has {values.size} values, expected {size}")
    return values.reshape(shape).astype(dtype)


def _int_list(value: Any) -> list[int]:
    """A list of ints from a JSON list/int or from NumPy's ``str`` of an int array."""
    if isinstance(value, str):
        return [int(float(t)) for t in _NUMBER.findall(value)]
    return [int(v) for v in np.asarray(value).ravel()]


def space_to_json(space: gym.spaces.Space) -> dict[str, Any]:
    """A strict-JSON dict describing ``space`` (Box, Discrete, MultiDiscrete, MultiBinary).

    Raises:
        ValueError: for any other space.
    """
    if isinstance(space, gym.spaces.Box):
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": np.dtype(space.dtype).name,
            "low": _encode_array(space.low),
            "high": _encode_array(space.high),
        }
    if isinstance(space, gym.spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n), "start": int(space.start)}
    if isinstance(space, gym.spaces.MultiDiscrete):
        return {
            "type": "MultiDiscrete",
            "nvec": np.asarray(space.nvec).tolist(),
            "start": np.asarray(space.start).tolist(),
            "dtype": np.dtype(space.dtype).name,
        }
    if isinstance(space, gym.spaces.MultiBinary):
        n = space.n
        return {"type": "MultiBinary", "n": int(n) if np.isscalar(n) else [int(k) for k in n]}
    raise ValueError(f"cannot serialise space {space!r}; supported: {SUPPORTED_OBSERVATION_SPACES}")


def _sb2_type_name(type_string: str) -> str:
    """``"<class 'gym.spaces.box.Box'>"`` → ``"Box"``."""
    match = re.search(r"'([\w.]+)'", type_string)
    name = match.group(1) if match else type_string
    return name.rsplit(".", 1)[-1]


def space_from_json(data: dict[str, Any]) -> gym.spaces.Space:
    """Rebuild a space from :func:`space_to_json` output or from a SB2 ``data`` entry.

    For SB2 entries (key ``":type:"``) only the readable fields (``dtype``,
    ``shape``, ``low``, ``high``, ``n``, ``nvec``, ``start``) are used; the
    ``":serialized:"`` cloudpickle blob is ignored, never unpickled.

    Raises:
        ValueError: for an unknown space type or unreadable fields.
    """
    try:
        return _space_from_json(data)
    except ValueError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, OverflowError, RecursionError, MemoryError) as exc:
        raise ValueError(f"malformed space description ({type(exc).__name__}: {exc})") from exc


#: The most elements a space read from a file may have (observation or action entries, or
#: Discrete choices): bounds the memory its bounds and the layers built for it may take.
MAX_SPACE_ELEMENTS = 1 << 24


def _check_space_size(kind: str, count: int) -> None:
    if count > MAX_SPACE_ELEMENTS:
        raise ValueError(f"a {kind} space of {count:,} elements is larger than the limit of {MAX_SPACE_ELEMENTS:,}")


def _shape(value: Any) -> tuple[int, ...]:
    if not isinstance(value, list | tuple) or not all(isinstance(k, int) and not isinstance(k, bool) for k in value):
        raise ValueError(f"a space's shape must be a list of integers, got {value!r}")
    if any(k < 0 for k in value):
        raise ValueError(f"a space's shape must not be negative, got {value!r}")
    return tuple(value)


def _space_from_json(data: Any) -> gym.spaces.Space:
    if not isinstance(data, dict):
        raise ValueError(f"a space must be described by a dict, got {type(data).__name__}")
    if ":type:" in data:
        kind = _sb2_type_name(str(data[":type:"]))
    elif "type" in data:
        kind = str(data["type"])
    else:
        raise ValueError(f"space description has no 'type' (or SB2 ':type:') key: {list(data)}")
    try:
        if kind == "Box":
            dtype = np.dtype(str(data.get("dtype", "float32")))
            if dtype.kind not in "biuf" or dtype.names is not None or dtype.subdtype is not None:
                raise ValueError(f"a Box space must hold numbers, got dtype {dtype}")
            shape = _shape(data["shape"])
            _check_space_size("Box", math.prod(shape))
            low = _bounds(data["low"], shape, dtype, "low")
            high = _bounds(data["high"], shape, dtype, "high")
            return gym.spaces.Box(low=low, high=high, shape=shape, dtype=dtype)
        if kind == "Discrete":
            n, start = data["n"], data.get("start", 0)
            if not all(isinstance(k, int | np.integer) and not isinstance(k, bool) for k in (n, start)):
                raise ValueError(f"a Discrete space needs integer n and start, got n={n!r}, start={start!r}")
            _check_space_size("Discrete", int(n))
            if abs(int(start)) > 2**62:
                raise ValueError(f"a Discrete space's start must fit int64, got {start!r}")
            return gym.spaces.Discrete(int(n), start=int(start))
        if kind == "MultiDiscrete":
            if isinstance(data["nvec"], str):  # SB2: str(ndarray), shape stored beside it
                flat = _int_list(data["nvec"])
                shape = tuple(int(k) for k in data.get("shape") or [len(flat)])
                nvec = np.asarray(flat, dtype=np.int64).reshape(shape)
            else:
                nvec = np.asarray(data["nvec"], dtype=np.int64)
            _check_space_size("MultiDiscrete", nvec.size)
            _check_space_size("MultiDiscrete (one-hot)", sum(int(n) for n in nvec.ravel()))  # no int64 wrap
            start = data.get("start")
            start_arr = None if start is None else np.asarray(_int_list(start), dtype=np.int64).reshape(nvec.shape)
            return gym.spaces.MultiDiscrete(nvec, dtype=np.dtype(data.get("dtype", "int64")), start=start_arr)
        if kind == "MultiBinary":
            n = data["n"]
            if isinstance(n, str):
                n = _int_list(n)
            n = _shape([n] if isinstance(n, int) else n)
            _check_space_size("MultiBinary", math.prod(n))
            n = n[0] if isinstance(data["n"], int) else n
            return gym.spaces.MultiBinary(n if isinstance(n, int) else [int(k) for k in n])
    except (KeyError, TypeError) as exc:
        raise ValueError(f"malformed {kind} space description: {exc!r}") from exc
    raise ValueError(f"unknown space type {kind!r}; supported: {SUPPORTED_OBSERVATION_SPACES}")
