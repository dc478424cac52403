"""The expert-data format's arrays: saving, loading (bounded, never unpickled) and checking.

See :mod:`acktr_lab.expert` for the keys, shapes and meanings. Everything wrong with a file
or its arrays raises :class:`ExpertDataError` (a ``ValueError``) naming the file and the
array.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np

from acktr_lab.safe_archive import BoundedArchive, check_code_points, float32_overflow

PathLike = str | os.PathLike[str]

#: Keys every dataset must have.
REQUIRED_KEYS: tuple[str, ...] = ("obs", "actions", "episode_starts")
#: Keys Stable Baselines 2 writes in addition; used for the report when present.
OPTIONAL_KEYS: tuple[str, ...] = ("rewards", "episode_returns")

#: Default cap, in bytes, on what one expert archive may decompress to: the sum of the
#: declared (uncompressed) sizes of its ``.npy`` members, headers included, and so also on
#: any single array. Archives over it are refused before any array is read or allocated,
#: so a small hostile file (a "zip bomb") cannot exhaust memory. 1 GiB holds about 30
#: million CartPole transitions (float32 observations, int64 actions, float64 rewards,
#: bool starts: 33 bytes each). Pass ``max_bytes`` to :func:`load_expert_data` or
#: :class:`ExpertDataset` to read a bigger archive, or set ``acktr_lab.expert.MAX_EXPERT_BYTES``
#: (the package's name, read at each call) to change the default.
MAX_EXPERT_BYTES: int = 1 << 30
#: The most pixels one expert image may have (4096 × 4096; Pillow's own limit is 89 M).
MAX_IMAGE_PIXELS: int = 1 << 24

_HINT = "expected an .npz archive written by generate_expert_traj or Stable Baselines 2"


class ExpertDataError(ValueError):
    """Expert data that cannot be used, with a message naming the file (or ``traj_data``)
    and the array at fault: a missing, corrupt, truncated, oversized or foreign file, or
    arrays with missing keys or wrong dtypes, shapes, lengths or values. A ``ValueError``."""


# ---------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------
def save_image(path: str, image: np.ndarray) -> None:
    """Write an ``(H, W, C)`` ``uint8`` image losslessly as PNG (grey, RGB or RGBA)."""
    from PIL import Image

    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.shape[-1] == 1:
        Image.fromarray(array[:, :, 0], mode="L").save(path, format="PNG")
    else:
        Image.fromarray(array, mode="RGB" if array.shape[-1] == 3 else "RGBA").save(path, format="PNG")


def load_image(path: str, size: tuple[int, int] | None = None) -> np.ndarray:
    """Read an image file as an ``(H, W, C)`` ``uint8`` array (grey images get ``C = 1``).

    ``size`` (``(H, W)``): the size the image must have, checked from its header before it
    is decoded (a batch's images share the first one's size), as is the limit of
    :data:`MAX_IMAGE_PIXELS` pixels.

    Raises ``ExpertDataError`` (a ``ValueError``) naming the path for a missing,
    unreadable, oversized or wrongly sized image, or a path with a NUL character.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.width * image.height > MAX_IMAGE_PIXELS:
                raise ExpertDataError(
                    f"the expert image {path!r} is {image.width}×{image.height} pixels, more than the limit of "
                    f"{MAX_IMAGE_PIXELS:,}"
                )
            if size is not None and (image.height, image.width) != tuple(size):
                raise ExpertDataError(
                    f"the expert image {path!r} is {image.height}×{image.width} (H×W), but the batch's first image "
                    f"is {size[0]}×{size[1]}; all images of a dataset must have one shape"
                )
            if image.mode not in ("L", "RGB", "RGBA"):
                converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                array = np.asarray(converted, dtype=np.uint8)
            else:
                array = np.asarray(image, dtype=np.uint8)
    except ExpertDataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise ExpertDataError(f"could not read the expert image {path!r}: {error}") from error
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array


# ---------------------------------------------------------------------------------------
# saving
# ---------------------------------------------------------------------------------------
def _npz_path(save_path: PathLike) -> str:
    """The file ``np.savez`` writes for ``save_path`` (it appends ``.npz`` when missing)."""
    path = os.fspath(save_path)
    return path if path.endswith(".npz") else path + ".npz"


def save_expert_data(save_path: PathLike, data: Mapping[str, np.ndarray]) -> str:
    """``np.savez(save_path, **data)`` written atomically; returns the ``.npz`` path.

    The archive is written to a temporary file in the target directory and moved into
    place with ``os.replace``, so a reader never sees a half-written file.
    """
    final = _npz_path(save_path)
    directory = os.path.dirname(os.path.abspath(final))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".expert-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{k: np.asarray(v) for k, v in data.items()})
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return final


# ---------------------------------------------------------------------------------------
# loading and checking
# ---------------------------------------------------------------------------------------
def resolve_expert_path(expert_path: PathLike) -> str:
    """``expert_path``, or ``expert_path + '.npz'`` when only that exists (as SB2)."""
    path = os.fspath(expert_path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    return path


def _byte_cap(max_bytes: int | None) -> int:
    """``max_bytes`` checked, or ``acktr_lab.expert.MAX_EXPERT_BYTES`` (read at call time,
    so that setting the package's name changes the default) when ``None``."""
    if max_bytes is None:
        import acktr_lab.expert as package

        return int(package.MAX_EXPERT_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer (bytes), got {max_bytes!r}")
    return int(max_bytes)


def load_expert_data(expert_path: PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every array (``.npy`` member) of an ``.npz`` archive, read eagerly, never unpickled.

    The work is bounded by ``max_bytes`` (default :data:`MAX_EXPERT_BYTES`): the members'
    declared sizes, and each member's ``.npy`` header (shape × itemsize), are checked
    against it before anything is decompressed or allocated, and each member is read in
    bounded chunks up to its declared size only. Members that are not ``.npy`` arrays are
    skipped (``np.savez`` writes none).

    Raises:
        ExpertDataError: the file is missing, empty, truncated, corrupt, not an ``.npz``
            archive, bigger than ``max_bytes`` once decompressed, or holds pickled
            (object), structured or otherwise unsupported arrays; the message names the
            file and the member.
        ValueError: ``max_bytes`` is not a positive integer.
    """
    cap = _byte_cap(max_bytes)
    path = resolve_expert_path(expert_path)
    where = f"expert dataset {path!r}"
    if not os.path.isfile(path):
        raise ExpertDataError(f"{where} does not exist")
    try:
        if os.path.getsize(path) == 0:
            raise ExpertDataError(f"{where} is an empty file (0 bytes); expected an .npz archive")
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as error:
        raise ExpertDataError(f"could not read {where}: {error}") from error
    if magic.startswith(b"\x93NUMPY"):
        raise ExpertDataError(f"{where} is a single .npy array, not an .npz archive; {_HINT}")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        # Neither a zip archive nor a .npy file: numpy would unpickle it, which we never do.
        raise ExpertDataError(f"{where} is not an .npz archive (unknown or pickled content); {_HINT}")
    advice = "if the file is trusted, pass a larger max_bytes (default MAX_EXPERT_BYTES, 1 GiB)"
    archive, bounded = BoundedArchive.open(path, where, cap, ExpertDataError, _HINT, advice)
    with archive:
        return bounded.read_arrays()


def _check_float32_range(array: np.ndarray, key: str, source: str) -> None:
    """``ExpertDataError`` if a float array holds NaN, ±inf, or values that overflow to ±inf
    when cast to float32 (the network's dtype): checked on the array as stored."""
    problem = float32_overflow(array)
    if problem is not None:
        raise ExpertDataError(f"{source}: {key!r} {problem}")


def _as_array(value: Any, key: str, source: str) -> np.ndarray:
    """``np.asarray(value)`` with a field-naming error; object arrays and scalars refused."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise ExpertDataError(f"{source}: {key!r} is not an array ({error})") from error
    if array.dtype.hasobject:
        raise ExpertDataError(f"{source}: {key!r} is an object array; use numeric (or, for image paths, str) arrays")
    if array.ndim == 0:
        raise ExpertDataError(f"{source}: {key!r} is a scalar; expected one entry per transition")
    if array.dtype.kind == "c":
        raise ExpertDataError(f"{source}: {key!r} holds complex numbers, got dtype {array.dtype}; expected reals")
    return array


def validate_expert_data(data: Mapping[str, Any], source: str = "expert data") -> dict[str, np.ndarray]:
    """Checked copies of the arrays; ``ExpertDataError`` naming ``source`` (the file, or
    ``traj_data``) and the array of the first problem found.

    Checks: the required keys; dtypes (numbers or booleans; ``obs`` may be image paths);
    no scalars; equal lengths of ``obs``, ``actions``, ``rewards`` and ``episode_starts``;
    at least one transition; no NaN, ±inf or values beyond the float32 range in float
    arrays; ``episode_starts`` boolean (or 0/1) and true first; one return per episode.
    """
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ExpertDataError(
            f"{source} is missing key(s) {missing}; it has {sorted(data)}, and needs "
            f"{list(REQUIRED_KEYS)} (optionally {list(OPTIONAL_KEYS)})"
        )
    arrays = {key: _as_array(data[key], key, source) for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS) if key in data}

    obs = arrays["obs"]
    if obs.dtype.kind == "S":  # bytes paths (as Python 2 would save them): decode
        try:
            obs = np.char.decode(obs, "utf-8")
        except UnicodeDecodeError as error:
            raise ExpertDataError(f"{source}: 'obs' holds image paths that are not UTF-8 ({error})") from error
    if obs.dtype.kind == "U":
        if obs.ndim != 1:
            raise ExpertDataError(
                f"{source}: image-path observations must be a 1-D string array, got shape {obs.shape}"
            )
        check_code_points(obs, f"{source}: 'obs'", ExpertDataError)
    elif obs.dtype.kind not in "biuf":
        raise ExpertDataError(f"{source}: 'obs' must be numeric (or image paths), got dtype {obs.dtype}")
    arrays["obs"] = obs
    for key in ("actions", "rewards", "episode_returns"):
        if key in arrays and arrays[key].dtype.kind not in "biuf":
            raise ExpertDataError(f"{source}: {key!r} must be numeric, got dtype {arrays[key].dtype}")

    n = len(obs)
    if n == 0:
        raise ExpertDataError(f"{source} is empty: 'obs' holds 0 transitions")
    for key in ("actions", "episode_starts", "rewards"):
        if key in arrays and len(arrays[key]) != n:
            raise ExpertDataError(
                f"{source}: lengths differ: 'obs' has {n} transitions but {key!r} has {len(arrays[key])}"
            )

    starts = arrays["episode_starts"]
    if starts.ndim > 1:
        if starts.size != n:
            raise ExpertDataError(
                f"{source}: 'episode_starts' must hold one flag per transition, got shape {starts.shape}"
            )
        starts = starts.reshape(n)
    if starts.dtype != bool:
        if starts.dtype.kind not in "iuf" or not np.all(np.isin(starts, (0, 1))):
            raise ExpertDataError(
                f"{source}: 'episode_starts' must be booleans (True at the first step of each episode), "
                f"got dtype {starts.dtype}" + ("" if starts.dtype.kind not in "iuf" else " with values other than 0/1")
            )
        starts = starts.astype(bool)
    if not starts[0]:
        raise ExpertDataError(
            f"{source}: episode_starts[0] must be True: the data must begin with the start of an episode"
        )
    arrays["episode_starts"] = starts

    for key in ("obs", "actions", "rewards", "episode_returns"):
        if key in arrays:
            _check_float32_range(arrays[key], key, source)
    if "rewards" in arrays:
        rewards = arrays["rewards"]
        if rewards.size != n:
            raise ExpertDataError(f"{source}: 'rewards' must hold one number per transition, got shape {rewards.shape}")
        arrays["rewards"] = rewards.reshape(n)
    if "episode_returns" in arrays:
        returns = arrays["episode_returns"].reshape(-1)
        n_episodes = int(np.sum(starts))
        if len(returns) != n_episodes:
            raise ExpertDataError(
                f"{source}: 'episode_returns' has {len(returns)} entries but 'episode_starts' marks "
                f"{n_episodes} episodes"
            )
        arrays["episode_returns"] = returns
    return arrays
