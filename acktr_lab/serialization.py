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
"""

from __future__ import annotations

import io
import json
import os
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

FORMAT = "acktr_lab"
FORMAT_VERSION = 1
_HEADER = "acktr_lab.json"
_ARRAY_FILES = ("parameters", "optimizer", "extra")

PathOrFile = str | os.PathLike[str] | IO[bytes]


class ModelFileError(ValueError):
    """A file that is not a readable model: corrupt, truncated, foreign or too new."""


@dataclass(frozen=True)
class ModelFile:
    """What a model file holds. ``source`` is ``"acktr_lab"`` or ``"stable_baselines2"``."""

    data: dict[str, Any]
    parameters: dict[str, np.ndarray]
    optimizer: dict[str, np.ndarray]
    extra: dict[str, np.ndarray]
    source: str


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return buffer.getvalue()


def _read_npz(raw: bytes, what: str, where: str) -> dict[str, np.ndarray]:
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (ValueError, OSError, zipfile.BadZipFile, EOFError) as error:
        raise ModelFileError(f"{where}: the {what} arrays are corrupt ({error})") from error


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
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_name, 0o666 & ~umask)  # mkstemp makes 0600; a saved model is an ordinary file
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _resolve_load_path(path: str | os.PathLike[str]) -> Path:
    candidate = Path(os.fspath(path))
    if not candidate.exists() and candidate.suffix != ".zip" and candidate.with_name(candidate.name + ".zip").exists():
        candidate = candidate.with_name(candidate.name + ".zip")
    if not candidate.exists():
        raise FileNotFoundError(f"no model file at {candidate}")
    return candidate


def load_model(path: PathOrFile) -> ModelFile:
    """Read a model file (ours or Stable Baselines 2's zip), validating it."""
    if hasattr(path, "read"):
        raw = path.read()  # type: ignore[union-attr]
        where = "model file object"
    else:
        resolved = _resolve_load_path(path)  # type: ignore[arg-type]
        raw = resolved.read_bytes()
        where = str(resolved)
    try:
        archive = zipfile.ZipFile(io.BytesIO(raw))
    except zipfile.BadZipFile as error:
        raise ModelFileError(f"{where} is not a model file: not a zip archive (corrupt or truncated?)") from error
    with archive:
        names = set(archive.namelist())
        try:
            if _HEADER in names:
                return _load_ours(archive, names, where)
            if {"data", "parameters"} <= names:
                return _load_sb2(archive, where)
        except (zipfile.BadZipFile, KeyError, EOFError, zlib.error) as error:
            raise ModelFileError(f"{where}: the archive is corrupt or truncated ({error})") from error
    raise ModelFileError(
        f"{where} is a zip archive but not an acktr_lab or Stable Baselines model (entries {sorted(names)})"
    )


def _load_ours(archive: zipfile.ZipFile, names: set[str], where: str) -> ModelFile:
    try:
        header = json.loads(archive.read(_HEADER))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{where}: the header is not valid JSON ({error})") from error
    if not isinstance(header, dict) or header.get("format") != FORMAT or not isinstance(header.get("data"), dict):
        raise ModelFileError(f"{where}: the header does not describe an acktr_lab model")
    version = header.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{where} has format version {version!r}; this acktr_lab reads versions up to {FORMAT_VERSION}"
        )
    arrays = {}
    for name in _ARRAY_FILES:
        entry = f"{name}.npz"
        if entry not in names:
            raise ModelFileError(f"{where}: missing {entry}")
        arrays[name] = _read_npz(archive.read(entry), name, where)
    return ModelFile(header["data"], arrays["parameters"], arrays["optimizer"], arrays["extra"], FORMAT)


def _load_sb2(archive: zipfile.ZipFile, where: str) -> ModelFile:
    try:
        data = json.loads(archive.read("data"))
    except json.JSONDecodeError as error:
        raise ModelFileError(f"{where}: the Stable Baselines 'data' entry is not valid JSON ({error})") from error
    parameters = _read_npz(archive.read("parameters"), "parameters", where)
    if "parameter_list" in archive.namelist():
        order = json.loads(archive.read("parameter_list"))
        parameters = {k: parameters[k] for k in order if k in parameters}
    return ModelFile(data, parameters, {}, {}, "stable_baselines2")
