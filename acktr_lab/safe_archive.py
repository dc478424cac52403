"""Zip and ``.npz`` archives from untrusted files: read with bounded work, never unpickled.

:class:`BoundedArchive` reads the members of an open :class:`zipfile.ZipFile` under a byte
cap. Before anything is decompressed, every member's declared size is checked against the
cap (each, and their sum) and against its compressed size (stored: equal; deflated: at
most ``_DEFLATE_MAX_RATIO`` times, deflate's limit), so a small hostile file (a "zip
bomb") cannot make us allocate more than the cap. ``.npy`` members are parsed header
first: the declared shape × itemsize must fit the cap and fill the member exactly before
the array is allocated, and the data are then decompressed in chunks straight into it.
Object (pickled), structured and sub-array dtypes are refused.

Every problem is raised as the caller's error type (a ``ValueError`` subclass such as
:class:`~acktr_lab.serialization.ModelFileError`), its message naming the file and member.
"""

from __future__ import annotations

import io
import math
import reprlib
import struct
import tokenize
import zipfile
import zlib
from collections import Counter
from typing import Any

import numpy as np

try:  # zipfile reads LZMA members when the lzma module exists
    from lzma import LZMAError

    _LZMA_ERRORS: tuple[type[BaseException], ...] = (LZMAError,)
except ImportError:  # pragma: no cover - Python built without lzma
    _LZMA_ERRORS = ()

#: Bytes decompressed per read while filling an array: the most read beyond the array.
_CHUNK_BYTES = 1 << 20
#: Deflate expands at most 1032-fold (a 258-byte match coded in 2 bits); a member that
#: declares more than this (plus slack for block headers) lies about its size.
_DEFLATE_MAX_RATIO = 1032
#: dtype kinds an array member may have: bool, (unsigned) integers, floats, complex and
#: str / bytes. Callers refuse what their fields cannot hold, with clearer messages.
_LOADABLE_KINDS = "biufcUS"
#: The most members an archive may hold (a model's arrays number in the hundreds at most).
MAX_MEMBERS = 10_000
#: The most dimensions an array read from a file may have (NumPy 1's limit).
_MAX_NDIM = 32
FLOAT32_MAX = float(np.finfo(np.float32).max)
#: The smallest magnitude that becomes ±inf when cast to float32: float32's max plus half
#: an ulp (2**103); values below it round to a finite float32.
FLOAT32_OVERFLOW = float(2**128 - 2**103)
#: Whatever reading a corrupt archive can raise (all become the caller's error type).
READ_ERRORS: tuple[type[BaseException], ...] = (
    zipfile.BadZipFile,
    zlib.error,
    OSError,
    EOFError,
    ValueError,
    KeyError,
    RuntimeError,  # NotImplementedError: an unsupported compression method
    TypeError,
    SyntaxError,
    tokenize.TokenError,  # numpy's fallback parser for Python 2 headers
    RecursionError,
    OverflowError,
    MemoryError,
    UnicodeDecodeError,
    struct.error,
    *_LZMA_ERRORS,
)


class _CountingReader:
    """``read`` of a binary stream, counting the bytes read (the ``.npy`` header's size)."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.count = 0

    def read(self, size: int = -1) -> bytes:
        data = self.stream.read(size)
        self.count += len(data)
        return data


def check_code_points(array: np.ndarray, what: str, error: type[ValueError]) -> None:
    """``error`` if a ``str`` array holds code points that are not characters (above
    U+10FFFF, or surrogates): numpy fails with ``SystemError`` on converting them."""
    if array.dtype.kind != "U" or array.size == 0 or array.dtype.itemsize == 0:
        return
    order = array.dtype.byteorder if array.dtype.byteorder in "<>" else "="
    codes = np.ascontiguousarray(array).reshape(-1).view(np.dtype(np.uint32).newbyteorder(order))
    if np.any(codes > 0x10FFFF) or np.any((codes >= 0xD800) & (codes <= 0xDFFF)):
        raise error(f"{what} holds invalid Unicode code points (not characters)")


def float32_overflow(array: np.ndarray) -> str | None:
    """Why a float array cannot become float32 (NaN, ±inf, or values that overflow to
    ±inf in the cast), or None when it can. No temporary arrays are made."""
    if array.dtype.kind != "f" or array.size == 0:
        return None
    low, high = np.min(array), np.max(array)  # NaN propagates
    if not (np.isfinite(low) and np.isfinite(high)):
        return "holds NaN or infinite values"
    low, high = float(low), float(high)  # (a long double beyond float64 becomes ±inf: refused)
    if high >= FLOAT32_OVERFLOW or low <= -FLOAT32_OVERFLOW:
        worst = high if high > -low else low
        return (
            f"holds values beyond the float32 range (e.g. {worst:.6g}; float32 holds |x| ≤ {FLOAT32_MAX:.6g}); "
            "they would become infinite when cast to float32"
        )
    return None


class BoundedArchive:
    """Members of an open zip archive, read with at most ``cap`` bytes decompressed in all.

    ``where`` names the file in messages; ``error`` is the exception type raised for every
    problem with the content; ``hint`` ends messages about unreadable content.
    """

    def __init__(
        self, archive: zipfile.ZipFile, where: str, cap: int, error: type[ValueError], hint: str, cap_advice: str = ""
    ) -> None:
        self.archive = archive
        self.cap_advice = cap_advice
        self.where = where
        self.cap = int(cap)
        self.error = error
        self.hint = hint
        self._check_declared_sizes()

    @classmethod
    def open(
        cls, source: str | bytes, where: str, cap: int, error: type[ValueError], hint: str, cap_advice: str = ""
    ) -> tuple[zipfile.ZipFile, BoundedArchive]:
        """Open a zip archive from a path or from bytes: ``(zipfile, bounded reader)``."""
        try:
            archive = zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source)
        except READ_ERRORS as exc:
            raise error(
                f"could not read {where}: not a readable zip archive (corrupt or truncated file: "
                f"{type(exc).__name__}: {exc}); {hint}"
            ) from exc
        try:
            return archive, cls(archive, where, cap, error, hint, cap_advice)
        except BaseException:
            archive.close()
            raise

    def too_big(self, what: str, size: int) -> ValueError:
        return self.error(
            f"{what} is {size:,} bytes uncompressed, more than the limit of {self.cap:,} bytes"
            + (f"; {self.cap_advice}" if self.cap_advice else " (a corrupt or hostile file?)")
        )

    def _check_declared_sizes(self) -> None:
        """Each member's declared size against the cap and its compressed size; their sum."""
        infos = self.archive.infolist()
        if len(infos) > MAX_MEMBERS:
            raise self.error(f"{self.where} holds {len(infos):,} members, more than the limit of {MAX_MEMBERS:,}")
        twice = sorted(name for name, count in Counter(info.filename for info in infos).items() if count > 1)
        if twice:
            raise self.error(f"{self.where} holds the member(s) {twice} more than once; the file is corrupt")
        total = 0
        for info in infos:
            what = f"{self.where}: member {info.filename!r}"
            if info.flag_bits & 0x1:
                raise self.error(f"{what} is encrypted; {self.hint}")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                # zipfile inflates bzip2 and LZMA members a whole stream per read, past any cap
                raise self.error(
                    f"{what} is compressed with zip method {info.compress_type}; only stored and deflated "
                    f"members are read (NumPy, Stable Baselines and acktr_lab write no other); {self.hint}"
                )
            if info.file_size > self.cap:
                raise self.too_big(what, info.file_size)
            stored = info.compress_type == zipfile.ZIP_STORED and info.file_size != info.compress_size
            deflated = (
                info.compress_type == zipfile.ZIP_DEFLATED
                and info.file_size > _DEFLATE_MAX_RATIO * info.compress_size + 1024
            )
            if stored or deflated:
                raise self.error(
                    f"{what} declares {info.file_size:,} bytes uncompressed but holds {info.compress_size:,} "
                    f"{'stored' if stored else 'deflated'} bytes, which cannot expand to that; the file is corrupt"
                )
            total += info.file_size
        #: The sum of the members' declared (uncompressed) sizes, at most the cap.
        self.declared_total = total
        if total > self.cap:
            largest = max(infos, key=lambda info: info.file_size)
            raise self.too_big(
                f"{self.where}: its {len(infos)} members together (largest: {largest.filename!r}, "
                f"{largest.file_size:,} bytes)",
                total,
            )

    def names(self) -> list[str]:
        return [info.filename for info in self.archive.infolist()]

    def read_bytes(self, name: str) -> bytes:
        """A whole member, at most its declared size (already checked against the cap)."""
        what = f"{self.where}: member {name!r}"
        try:
            info = self.archive.getinfo(name)
            with self.archive.open(info) as member:
                data = member.read(info.file_size)
                if len(data) != info.file_size or member.read(1):
                    raise self.error(f"{what} does not hold the {info.file_size:,} bytes it declares; it is corrupt")
        except self.error:
            raise
        except READ_ERRORS as exc:
            raise self.error(f"could not read {what} (corrupt or truncated: {type(exc).__name__}: {exc})") from exc
        return data

    def array_members(self) -> list[tuple[str, zipfile.ZipInfo]]:
        """``(key, info)`` of the ``.npy`` members (``key`` without the suffix)."""
        return [
            (info.filename[: -len(".npy")], info) for info in self.archive.infolist() if info.filename.endswith(".npy")
        ]

    def read_arrays(self) -> dict[str, np.ndarray]:
        """Every ``.npy`` member, by key (an ``.npz`` archive's arrays)."""
        return {key: self.read_array(info, key) for key, info in self.array_members()}

    def _read_npy_header(self, stream: _CountingReader, what: str) -> tuple[tuple[int, ...], bool, np.dtype]:
        """``(shape, fortran_order, dtype)`` of a ``.npy`` header (format 1.0 or 2.0), checked:
        no negative dimensions, no object (pickled), structured, sub-array or empty dtypes."""
        try:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(stream)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(stream)
            else:
                raise self.error(f"{what} has .npy format version {version[0]}.{version[1]}; only 1.0 and 2.0 are read")
        except self.error:
            raise
        except (ValueError, TypeError, SyntaxError, tokenize.TokenError, RecursionError, struct.error) as exc:
            raise self.error(
                f"{what} is not a valid .npy array (corrupt or truncated header: {exc}); {self.hint}"
            ) from exc
        if any(isinstance(size, bool) or not isinstance(size, int) for size in shape) or len(shape) > _MAX_NDIM:
            raise self.error(
                f"{what} declares the shape {reprlib.repr(shape)}: at most {_MAX_NDIM} whole-number sizes are "
                "read; the file is corrupt"
            )
        if any(size < 0 for size in shape):
            raise self.error(f"{what} declares the negative shape {shape}; the file is corrupt")
        if dtype.hasobject:
            raise self.error(
                f"{what} contains pickled object arrays, which are never loaded (allow_pickle=False); "
                "re-save it with plain numeric or string arrays"
            )
        if (
            dtype.kind not in _LOADABLE_KINDS
            or dtype.names is not None
            or dtype.subdtype is not None
            or not dtype.itemsize
        ):
            raise self.error(f"{what} has the unsupported dtype {dtype}; arrays here hold booleans, numbers or strings")
        return shape, fortran_order, dtype

    def _fill(self, member: Any, flat: np.ndarray, what: str) -> None:
        """Decompress exactly ``flat.nbytes`` bytes into ``flat``, ``_CHUNK_BYTES`` at a time;
        the caller's error if the member ends early or holds more."""
        nbytes = flat.nbytes
        buffer = memoryview(flat.view(np.uint8)) if nbytes else memoryview(b"")
        offset = 0
        while offset < nbytes:
            read = member.readinto(buffer[offset : min(nbytes, offset + _CHUNK_BYTES)])
            if not read:
                raise self.error(
                    f"{what} ends after {offset:,} of its {nbytes:,} data bytes; the file is corrupt or truncated"
                )
            offset += read
        if member.read(1):
            raise self.error(f"{what} holds more data than it declares; the file is corrupt")

    def read_array(self, info: zipfile.ZipInfo, key: str) -> np.ndarray:
        """One ``.npy`` member, read without pickle and with bounded work.

        The header is parsed first; its shape × itemsize must fit the cap and, with the
        header, equal the member's declared size, before the array is allocated. The data
        are then decompressed in chunks of at most ``_CHUNK_BYTES`` straight into the array,
        and the member must end exactly there (``zipfile`` checks its CRC at the end).
        """
        what = f"{self.where}: member {info.filename!r} (array {key!r})"
        try:
            with self.archive.open(info) as member:
                stream = _CountingReader(member)
                shape, fortran_order, dtype = self._read_npy_header(stream, what)
                count = math.prod(shape)
                nbytes = count * dtype.itemsize
                if nbytes > self.cap:
                    raise self.too_big(f"{what}, declared with shape {shape} of {dtype},", nbytes)
                if stream.count + nbytes != info.file_size:
                    raise self.error(
                        f"{what} declares shape {shape} of {dtype}, {nbytes:,} bytes after a {stream.count}-byte "
                        f"header, but the archive says the member holds {info.file_size:,} bytes; "
                        "the file is corrupt or truncated"
                    )
                try:
                    flat = np.empty(count, dtype)
                except MemoryError as exc:
                    raise self.error(f"{what}: not enough memory for its {nbytes:,} bytes") from exc
                self._fill(member, flat, what)
        except self.error:
            raise
        except READ_ERRORS as exc:
            raise self.error(
                f"could not read {what} (corrupt or truncated file: {type(exc).__name__}: {exc}); {self.hint}"
            ) from exc
        if dtype.kind == "b":  # bytes other than 0 and 1 are not booleans: normalise them
            raw = flat.view(np.uint8)
            np.minimum(raw, 1, out=raw)
        check_code_points(flat, what, self.error)
        try:  # e.g. (0, 10**30): no data, but NumPy refuses an array of that shape
            return flat.reshape(shape[::-1]).transpose() if fortran_order else flat.reshape(shape)
        except (ValueError, TypeError) as exc:
            raise self.error(f"{what} declares the shape {reprlib.repr(shape)}, which NumPy refuses: {exc}") from exc
