"""The model file: a zip of JSON and NumPy arrays. Loading never executes code from it.

Layout (format version 1):

- ``acktr_lab.json``: ``{"format": "acktr_lab", "format_version": 1, "data": {...}}`` with
  the hyperparameters, the spaces (see :mod:`acktr_lab.preprocessing`) and counters;
- ``parameters.npz``: policy parameters by Stable Baselines 2 variable name;
- ``optimizer.npz``: the K-FAC state (statistics, inverse, momentum, counters);
- ``extra.npz``: anything else needed to resume (random generator state).

Arrays are read with ``allow_pickle=False``. Saving writes a temporary file in the target
directory and renames it over the target, so an interrupted save leaves the previous file
intact. Stable Baselines 2 zip files (``data`` JSON + ``parameters`` npz) are recognised
and read from their readable fields only; their cloudpickle blobs are never unpickled.
Stable Baselines 2 ``.pkl`` files are recognised by their content and read as data by
:mod:`acktr_lab.sb2_pickle`: no global they name is imported, none is called.
"""

from __future__ import annotations

import glob
import io
import json
import os
import re
import stat
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from acktr_lab import sb2_pickle
from acktr_lab.safe_archive import READ_ERRORS, BoundedArchive

FORMAT = "acktr_lab"
FORMAT_VERSION = 1
_HEADER = "acktr_lab.json"
_ARRAY_FILES = ("parameters", "optimizer", "extra")
_HINT = "expected a model saved by acktr_lab or a Stable Baselines 2 ACKTR zip or .pkl"
#: The most bytes a model file may hold, and the most its members may decompress to in all
#: (checked before anything is decompressed): a small hostile file cannot exhaust memory.
MAX_MODEL_BYTES = 1 << 30
#: The most bytes of a JSON member (our header, SB2's ``data``): text becomes Python objects
#: many times its size, so it gets a far smaller cap than the arrays.
MAX_JSON_BYTES = 16 << 20
_READ_CHUNK = 1 << 24

PathOrFile = str | os.PathLike[str] | IO[bytes]


class ModelFileError(ValueError):
    """A file that is not a readable model: corrupt, truncated, foreign or too new."""


@dataclass(frozen=True)
class ModelFile:
    """What a model file holds. ``source`` is ``"acktr_lab"`` or ``"stable_baselines2"``.

    ``positional``: the parameters are keyed ``"0"``, ``"1"``, ... in Stable Baselines 2's
    creation order (a ``.pkl`` names none); the policy the file describes names them.
    """

    data: dict[str, Any]
    parameters: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    extra: dict[str, np.ndarray]
    source: str
    where: str = "model file"
    positional: bool = False


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _read_npz(raw: bytes, what: str, where: str, budget: list[int]) -> dict[str, np.ndarray]:
    """The arrays of an ``.npz`` member, read with bounded work (:mod:`acktr_lab.safe_archive`);
    ``budget[0]``, the bytes the file may still decompress to, is charged for them."""
    archive, bounded = BoundedArchive.open(raw, f"{where}: the {what} arrays", budget[0], ModelFileError, _HINT)
    with archive:
        budget[0] -= bounded.declared_total
        return bounded.read_arrays()


def save_model(
    path: PathOrFile,
    data: dict[str, Any],
    parameters: dict[str, np.ndarray],
    optimizer: dict[str, np.ndarray],
    extra: dict[str, np.ndarray] | None = None,
) -> None:
    """Write a model file atomically (or into an open binary file object)."""
    header = json.dumps({"format": FORMAT, "format_version": FORMAT_VERSION, "data": data}, indent=2)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(_HEADER, header)
        archive.writestr("parameters.npz", _npz_bytes(parameters))
        archive.writestr("optimizer.npz", _npz_bytes(optimizer))
        archive.writestr("extra.npz", _npz_bytes(extra or {}))
    payload = buffer.getvalue()
    if hasattr(path, "write"):
        path.write(payload)  # type: ignore[union-attr]
        return
    target = Path(os.fspath(path))  # type: ignore[arg-type]
    if target.suffix != ".zip":
        target = target.with_name(target.name + ".zip")
    if target.is_symlink():  # save through the link, as open(path, "w") would, keeping the link
        target = target.resolve()
    _make_parent(target)
    _remove_stale_temporaries(target)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        if target.exists():  # keep the permissions of the file saved over (e.g. 0600)
            mode = stat.S_IMODE(target.stat().st_mode)
        else:  # mkstemp makes 0600; a new saved model is an ordinary file
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp_name, mode)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _make_parent(target: Path) -> None:
    """Create ``target``'s folder; a clear error when a component of it is a file."""
    for folder in (target.parent, *target.parent.parents):
        if folder.exists():
            if not folder.is_dir():
                raise NotADirectoryError(f"cannot save to {target}: {folder} is a file, not a folder")
            break
    target.parent.mkdir(parents=True, exist_ok=True)


def _remove_stale_temporaries(target: Path) -> None:
    """Delete temporary files that saves to ``target`` left behind when killed: exactly
    ``.NAME.zip.PID.XXXXXXXX.tmp`` as :func:`tempfile.mkstemp` names them here, whose process
    no longer runs. Nothing else is touched (a user's ``.NAME.zip.backup.tmp`` stays)."""
    ours = re.compile(rf"\.{re.escape(target.name)}\.(\d+)\.[a-z0-9_]{{8}}\.tmp")
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
        match = ours.fullmatch(leftover.name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid == os.getpid() or _process_running(pid):
            continue  # this process or another one is saving there right now
        leftover.unlink(missing_ok=True)


def _process_running(pid: int) -> bool:
    if os.name == "nt":  # no signal 0 there: keep the file
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _resolve_load_path(path: str | os.PathLike[str]) -> Path:
    candidate = Path(os.fspath(path))
    for suffix in (".zip", ".pkl"):
        with_suffix = candidate.with_name(candidate.name + suffix)
        if not candidate.exists() and candidate.suffix != suffix and with_suffix.exists():
            candidate = with_suffix
    if not candidate.exists():
        raise FileNotFoundError(f"no model file at {candidate}")
    return candidate


def load_model(path: PathOrFile) -> ModelFile:
    """Read a model file (ours, or Stable Baselines 2's zip or ``.pkl``), with bounded work.

    The format is chosen by the content, not the name. At most :data:`MAX_MODEL_BYTES` are
    read from the file and decompressed from it (a pickle: at most
    :data:`~acktr_lab.sb2_pickle.MAX_PICKLE_BYTES`); every problem with its content raises
    :class:`ModelFileError` naming the file and the entry.
    """
    if hasattr(path, "read"):
        where = "model file object"
        raw = _read_capped(path, where)  # type: ignore[arg-type]
    else:
        resolved = _resolve_load_path(path)  # type: ignore[arg-type]
        where = str(resolved)
        if resolved.is_dir():
            raise ModelFileError(f"{where} is a folder, not a model file")
        with open(resolved, "rb") as handle:
            raw = _read_capped(handle, where)
    if sb2_pickle.is_pickle(raw):
        return _load_sb2_pickle(raw, where)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except (zipfile.BadZipFile, *READ_ERRORS) as error:
        raise ModelFileError(
            f"{where} is not a model file: neither a zip archive nor a pickle (corrupt or truncated?)"
        ) from error
    with archive:
        bounded = BoundedArchive(archive, where, MAX_MODEL_BYTES, ModelFileError, _HINT)
        names = set(bounded.names())
        if _HEADER in names:
            return _load_ours(bounded, names, where)
        if {"data", "parameters"} <= names:
            return _load_sb2(bounded, where)
    raise ModelFileError(
        f"{where} is a zip archive but not an acktr_lab or Stable Baselines model (entries {sorted(names)[:20]})"
    )


def _read_capped(handle: IO[bytes], where: str) -> bytes:
    """The whole file, read in chunks: ``ModelFileError`` past :data:`MAX_MODEL_BYTES`."""
    chunks, size = [], 0
    while chunk := handle.read(_READ_CHUNK):
        if not isinstance(chunk, bytes):
            raise TypeError(f"a model file object must be opened in binary mode, got {type(chunk).__name__}")
        size += len(chunk)
        if size > MAX_MODEL_BYTES:
            raise ModelFileError(f"{where} is larger than the limit of {MAX_MODEL_BYTES:,} bytes for a model file")
        chunks.append(chunk)
    return b"".join(chunks)


def _json(bounded: BoundedArchive, entry: str, where: str, what: str) -> Any:
    """A JSON member, parsed; any problem (bad UTF-8, bad JSON, nesting too deep) is a ModelFileError."""
    declared = bounded.archive.getinfo(entry).file_size
    if declared > MAX_JSON_BYTES:
        raise ModelFileError(
            f"{where}: {what} declares {declared:,} bytes of JSON, more than the limit of {MAX_JSON_BYTES:,}"
        )
    raw = bounded.read_bytes(entry)
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as error:
        raise ModelFileError(f"{where}: {what} is not valid JSON ({type(error).__name__}: {error})") from error


def _load_ours(bounded: BoundedArchive, names: set[str], where: str) -> ModelFile:
    header = _json(bounded, _HEADER, where, "the header")
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("data"), dict):
        raise ModelFileError(f"{where}: the header does not describe an acktr_lab model")
    version = header.get("format_version")
    if not isinstance(version, int) or isinstance(version, bool) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} has format version {version!r}; this acktr_lab reads versions up to {FORMAT_VERSION}"
        )
    arrays = {}
    budget = [MAX_MODEL_BYTES - bounded.declared_total]
    for name in _ARRAY_FILES:
        entry = f"{name}.npz"
        if entry not in names:
            raise ModelFileError(f"{where}: missing {entry}")
        arrays[name] = _read_npz(bounded.read_bytes(entry), name, where, budget)
    return ModelFile(header["data"], arrays["parameters"], arrays["optimizer"], arrays["extra"], FORMAT, where)


def _load_sb2(bounded: BoundedArchive, where: str) -> ModelFile:
    data = _json(bounded, "data", where, "the Stable Baselines 'data' entry")
    if not isinstance(data, dict):
        raise ModelFileError(f"{where}: the Stable Baselines 'data' entry is a {type(data).__name__}, not a dict")
    budget = [MAX_MODEL_BYTES - bounded.declared_total]
    parameters = _read_npz(bounded.read_bytes("parameters"), "parameters", where, budget)
    if "parameter_list" in bounded.names():
        order = _json(bounded, "parameter_list", where, "the 'parameter_list' entry")
        if not isinstance(order, list) or not all(isinstance(k, str) for k in order):
            raise ModelFileError(f"{where}: 'parameter_list' must be a list of parameter names")
        missing = [k for k in order if k not in parameters]
        if missing:
            raise ModelFileError(f"{where}: 'parameter_list' names {missing[:5]}, which the parameters do not hold")
        parameters = {k: parameters[k] for k in order}
    return ModelFile(data, parameters, {}, {}, "stable_baselines2", where)


def _load_sb2_pickle(raw: bytes, where: str) -> ModelFile:
    if len(raw) > sb2_pickle.MAX_PICKLE_BYTES:
        raise ModelFileError(f"{where} is larger than the limit of {sb2_pickle.MAX_PICKLE_BYTES:,} bytes for a pickle")
    data, arrays = sb2_pickle.read_model(raw, where, ModelFileError)
    parameters = {str(index): array for index, array in enumerate(arrays)}
    return ModelFile(data, parameters, {}, {}, "stable_baselines2", where, positional=True)
