"""Reading Stable Baselines 2 pickles as data: nothing in them is imported or run.

A pickle is a program: each global it names is imported and may be called with arguments the
file chooses (``os.system``, ``builtins.exec``, ``subprocess.Popen``...). :func:`unpickle_data`
runs the pickle with Python's pure-Python unpickler whose ``find_class`` never imports anything
(and whose memo, dict keys, sets and opcode count are bounded; see :class:`_Unpickler`).
Each global the file may name maps to a stand-in defined here, and every other global is
refused with the caller's error naming it, before anything of it runs:

- NumPy arrays, dtypes and scalars (``numpy.core.multiarray._reconstruct`` and its NumPy 2
  spelling, ``numpy.ndarray``, ``numpy.dtype``, ``...multiarray.scalar``): rebuilt from their
  bytes, numeric dtypes only, the size checked against the bytes before anything is allocated;
- gym spaces, SB2's ``RunningMeanStd`` and ``VecNormalize``: recorded as a
  :class:`PickledObject` (the class's name and the state the file gives it), never built;
- SB2 policy classes and TensorFlow activations: a :class:`Reference` by name;
- a gym space's random generator state: dropped.

What the unpickler returns is then walked once (:func:`_plain`) with a budget of nodes and a
depth limit, since a pickle can share one object many times (its memo) and a naive walk of
a shared structure can take exponential time. The result holds only ``dict``, ``list``,
``tuple``, ``str``, ``bytes``, numbers, ``None``, NumPy arrays, :class:`PickledObject` and
:class:`Reference`.
"""

from __future__ import annotations

import contextvars
import io
import math
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

#: The most values a pickle's content may hold, counting a shared value each time it is
#: reached, and the deepest nesting read.
MAX_NODES = 100_000
MAX_DEPTH = 64
#: The bytes the arrays built while unpickling may hold in all: the file's size plus this
#: (each array's bytes appear once in a real pickle; a crafted one can rebuild one memoised
#: bytes object into an array per 5-byte opcode).
_ARRAY_BYTES_SLACK = 1 << 20
_ARRAY_BYTES_LEFT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("array_bytes_left", default=None)
#: What ``OrderedDict(...)`` calls may still copy, in items (at most MAX_NODES in all).
_COPIED_ITEMS_LEFT: contextvars.ContextVar[list[int] | None] = contextvars.ContextVar("copied_items_left", default=None)
#: The most opcodes a pickle may run (a value takes a few; arrays' bytes are one each).
MAX_OPCODES = 1_000_000
#: The dtypes an array or scalar in a pickle may have: booleans, integers and floats.
_DTYPE_SPEC = re.compile(r"^[?bBhHiIlLqQefdg]$|^[biuf][1248]$|^f16$|^(bool|u?int(8|16|32|64)|float(16|32|64))$")
_NUMPY_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_NUMPY_NUMERIC = ("numpy.core.numeric", "numpy._core.numeric")


@dataclass(frozen=True)
class PickledObject:
    """An object of a known class, not built: its class's full name and the state the file gives it."""

    kind: str
    state: Any


@dataclass(frozen=True)
class Reference:
    """A reference to a known class or function (a policy class, an activation), by name."""

    kind: str
    name: str

    def __setstate__(self, state: Any) -> None:  # BUILD on a shared Reference from find_class
        raise ValueError("the pickle gives state to a global it names")


class _StandIn:
    """Base of the objects the stand-ins build; :func:`_plain` turns them into data."""

    def value(self) -> Any:
        raise NotImplementedError


class _Recorded(_StandIn):
    """An instance of a recorded class: keeps the state the pickle sets."""

    kind = ""

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def value(self) -> Any:
        return PickledObject(self.kind, self.__dict__.get("_state"))


def _recorded_class(kind: str) -> type[_Recorded]:
    return type(kind.rsplit(".", 1)[-1], (_Recorded,), {"kind": kind})


class _Ignored(_StandIn):
    """A value the reader has no use for (a gym space's random generator): dropped."""

    def __setstate__(self, state: Any) -> None:
        pass

    def value(self) -> Any:
        return None


def _brief(value: Any) -> str:
    """A short description of a value from a pickle, for an error message. Never ``str()`` of a
    container (a memo-shared one expands exponentially) nor of a huge int (``ValueError``)."""
    if isinstance(value, str | bytes):
        return repr(value[:40])
    if isinstance(value, bool | float | type(None)) or (isinstance(value, int) and value.bit_length() <= 64):
        return repr(value)
    return f"a {type(value).__name__}"


class _Global:
    """What ``find_class`` returns for a stand-in function: calls it, and refuses state (``BUILD``),
    so that a pickle cannot change a stand-in shared by every later load."""

    __slots__ = ("_function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self._function = function

    def __call__(self, *args: Any) -> Any:
        return self._function(*args)

    def __setstate__(self, state: Any) -> None:
        raise ValueError("the pickle gives state to a global it names")


class _NdarrayClass:
    """Stands for ``numpy.ndarray`` as the first argument of ``_reconstruct``."""

    def __setstate__(self, state: Any) -> None:  # BUILD on the class calls this unbound: TypeError
        raise ValueError("the pickle gives state to a global it names")


def _checked_dtype(spec: Any) -> np.dtype:
    if isinstance(spec, _DtypeBuilder):
        return spec.dtype
    if isinstance(spec, np.dtype) and spec.kind in "biuf" and spec.names is None and spec.subdtype is None:
        return spec
    if not isinstance(spec, str) or not _DTYPE_SPEC.match(spec):
        raise ValueError(f"only numeric dtypes are read from a pickle, got {_brief(spec)}")
    return np.dtype(spec)


class _DtypeBuilder(_StandIn):
    """``numpy.dtype(spec, align, copy)`` followed by ``__setstate__`` (the byte order)."""

    def __init__(self, spec: Any, align: Any = False, copy: Any = True) -> None:
        self.dtype = _checked_dtype(spec)

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) < 2 or state[1] not in ("<", ">", "|", "="):
            raise ValueError(f"unreadable dtype state {_brief(state)}")
        if state[1] == ">":
            self.dtype = self.dtype.newbyteorder(">")
        elif state[1] == "<":
            self.dtype = self.dtype.newbyteorder("<")

    def value(self) -> Any:
        return self.dtype


def _array_from_bytes(raw: Any, dtype: np.dtype, shape: Any, fortran: bool) -> np.ndarray:
    """An array of ``shape`` from ``raw``; the sizes must agree before anything is allocated."""
    if not isinstance(raw, bytes | bytearray):
        raise ValueError(f"an array's data must be bytes, got {type(raw).__name__}")
    sizes_ok = isinstance(shape, tuple) and all(isinstance(k, int) and not isinstance(k, bool) for k in shape)
    if not sizes_ok or any(k < 0 for k in shape):
        raise ValueError(f"an array's shape must be a tuple of non-negative integers, got {_brief(shape)}")
    if len(shape) > 32 or math.prod(shape) * dtype.itemsize != len(raw):
        raise ValueError(f"an array of shape {shape[:8]} and dtype {dtype} does not fit its {len(raw):,} bytes")
    budget = _ARRAY_BYTES_LEFT.get()  # set while unpickle_data runs
    if budget is not None:
        budget[0] -= len(raw)
    if budget is not None and budget[0] < 0:  # one memoised bytes object rebuilt into many arrays
        raise ValueError(
            "the pickle's arrays would hold more bytes than the file itself (it rebuilds shared bytes into many arrays)"
        )
    flat = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
    return flat.reshape(shape, order="F" if fortran else "C")


class _ArrayBuilder(_StandIn):
    """``_reconstruct(ndarray, (0,), b'b')`` followed by ``__setstate__((version, shape, dtype, fortran, data))``."""

    def __init__(self) -> None:
        self.array: np.ndarray | None = None

    def __setstate__(self, state: Any) -> None:
        if not isinstance(state, tuple) or len(state) != 5 or state[3] not in (0, 1):
            raise ValueError(f"unreadable array state {_brief(state)}")
        _, shape, dtype, fortran, raw = state
        self.array = _array_from_bytes(raw, _checked_dtype(dtype), shape, fortran)

    def value(self) -> Any:
        if self.array is None:
            raise ValueError("an array in the pickle has no data")
        return self.array


def _reconstruct(cls: Any, shape: Any, typecode: Any) -> _ArrayBuilder:
    if cls is not _NdarrayClass:
        raise ValueError(f"_reconstruct may only build numpy.ndarray, got {type(cls).__name__}")
    return _ArrayBuilder()


def _frombuffer(raw: Any, dtype: Any, shape: Any, order: Any) -> np.ndarray:
    return _array_from_bytes(raw, _checked_dtype(dtype), shape, order == "F")


def _scalar(dtype: Any, raw: Any) -> Any:
    checked = _checked_dtype(dtype)
    return _array_from_bytes(raw, checked, (), False)[()]


def _ordered_dict(*args: Any) -> dict[Any, Any]:
    """``collections.OrderedDict(...)`` as a dict. Each call's items count against
    :data:`MAX_NODES` for the whole pickle: one memoised dict or list of pairs passed to many
    calls would otherwise be copied once per 5-byte opcode."""
    if len(args) > 1:
        raise ValueError(f"OrderedDict takes at most one argument, got {len(args)}")
    items = args[0] if args else ()
    if not isinstance(items, dict | list | tuple):
        raise ValueError(f"OrderedDict's argument must be a dict or a list of pairs, got {type(items).__name__}")
    budget = _COPIED_ITEMS_LEFT.get()
    if budget is not None:
        budget[0] -= len(items)
        if budget[0] < 0:
            raise ValueError(f"the pickle copies more than {MAX_NODES:,} items into OrderedDicts")
    for key in items if isinstance(items, dict) else (pair[0] for pair in items if isinstance(pair, list | tuple)):
        _check_key(key)
    return dict(items)


def standard_globals(policies: Mapping[str, str], activations: tuple[str, ...]) -> dict[str, Any]:
    """The globals a Stable Baselines 2 pickle may name, each mapped to its stand-in.

    Args:
        policies: SB2 policy class name → our policy's name (``"MlpPolicy"`` → ``"MlpPolicy"``).
        activations: activation names a ``policy_kwargs['act_fun']`` may refer to.
    """
    table: dict[str, Any] = {"numpy.ndarray": _NdarrayClass, "numpy.dtype": _DtypeBuilder}
    for module in _NUMPY_MULTIARRAY:
        table[f"{module}._reconstruct"] = _Global(_reconstruct)
        table[f"{module}.scalar"] = _Global(_scalar)
    for module in _NUMPY_NUMERIC:
        table[f"{module}._frombuffer"] = _Global(_frombuffer)
    for ctor in ("numpy.random.__RandomState_ctor", "numpy.random._pickle.__randomstate_ctor"):
        table[ctor] = _Global(lambda *args: _Ignored())
    table["collections.OrderedDict"] = _Global(_ordered_dict)
    for module, name in (
        ("box", "Box"),
        ("discrete", "Discrete"),
        ("multi_discrete", "MultiDiscrete"),
        ("multi_binary", "MultiBinary"),
    ):
        recorded = _recorded_class(f"gym.spaces.{name}")
        table[f"gym.spaces.{module}.{name}"] = recorded
        table[f"gym.spaces.{name}"] = recorded
    for module in ("stable_baselines", "baselines"):
        table[f"{module}.common.running_mean_std.RunningMeanStd"] = _recorded_class("RunningMeanStd")
    table["stable_baselines.common.vec_env.vec_normalize.VecNormalize"] = _recorded_class("VecNormalize")
    for sb2_name, ours in policies.items():
        table[f"stable_baselines.common.policies.{sb2_name}"] = Reference("policy", ours)
    for name in activations:
        for module in ("gen_nn_ops", "nn_ops", "nn_impl", "math_ops", "gen_math_ops", "nn"):
            table[f"tensorflow.python.ops.{module}.{name}"] = Reference("activation", name)
    return table


def _check_key(key: Any) -> None:
    """Refuse a dict key that is not a string or a number before it is hashed: a tuple that
    shares itself through the memo costs 2^depth to hash (247 bytes can take hours)."""
    if not isinstance(key, str | int | float | bool | type(None)):
        raise pickle.UnpicklingError(f"a dict key in the pickle is a {type(key).__name__}; only strings and numbers")


def _load_setitem(self: pickle._Unpickler) -> None:
    _check_key(self.stack[-2])
    pickle._Unpickler.load_setitem(self)


def _load_setitems(self: pickle._Unpickler) -> None:
    for key in self.stack[::2]:  # the items above the mark: key, value, key, value, ...
        _check_key(key)
    pickle._Unpickler.load_setitems(self)


def _load_dict(self: pickle._Unpickler) -> None:
    for key in self.stack[::2]:
        _check_key(key)
    pickle._Unpickler.load_dict(self)


def _refuse_sets(self: pickle._Unpickler) -> None:
    raise pickle.UnpicklingError("the pickle builds a set, which is not read (its items would be hashed)")


def _counted(load: Callable[[Any], None]) -> Callable[[Any], None]:
    """``load`` (one opcode's handler), counted against :data:`MAX_OPCODES`."""

    def run(self: _Unpickler) -> None:
        self.opcodes += 1
        if self.opcodes > MAX_OPCODES:
            raise pickle.UnpicklingError(f"the pickle runs more than {MAX_OPCODES:,} opcodes")
        load(self)

    return run


class _Unpickler(pickle._Unpickler):
    """Python's own pure-Python unpickler (``pickle._Unpickler``), with ``find_class`` that never
    imports and three bounds the C unpickler lacks: its memo is a dict, so an index of 2^31
    costs one entry (the C memo is an array grown to the index: 11 bytes asked for 32 GiB);
    dict keys are checked before they are hashed; sets are refused; and at most
    :data:`MAX_OPCODES` opcodes run."""

    dispatch: ClassVar[dict[int, Callable[[Any], None]]] = {
        code: _counted(load) for code, load in pickle._Unpickler.dispatch.items()
    }
    dispatch[pickle.SETITEM[0]] = _counted(_load_setitem)
    dispatch[pickle.SETITEMS[0]] = _counted(_load_setitems)
    dispatch[pickle.DICT[0]] = _counted(_load_dict)
    for _code in (pickle.ADDITEMS, pickle.FROZENSET, pickle.EMPTY_SET):
        dispatch[_code[0]] = _refuse_sets
    del _code

    def __init__(self, raw: bytes, allowed: Mapping[str, Any], refuse: Callable[[str], Exception]) -> None:
        super().__init__(io.BytesIO(raw))
        self._allowed, self._refuse = allowed, refuse
        self.opcodes = 0

    def find_class(self, module: str, name: str) -> Any:
        full = f"{module}.{name}"
        if full not in self._allowed:
            raise self._refuse(full)
        return self._allowed[full]

    def persistent_load(self, pid: Any) -> Any:
        raise self._refuse(f"persistent id {_brief(pid)}")


def unpickle_data(raw: bytes, allowed: Mapping[str, Any], error: type[ValueError], where: str) -> Any:
    """The data a pickle holds, read with only the stand-ins in ``allowed`` (see the module doc).

    Raises:
        error: naming ``where`` and the problem: a global not in ``allowed`` ("refused ..."),
            a malformed pickle, a non-numeric array, or content past :data:`MAX_NODES` /
            :data:`MAX_DEPTH`.
    """

    def refuse(full: str) -> Exception:
        return error(
            f"{where}: refused {full!r}: the pickle asks to import it, and only plain data, NumPy "
            "arrays, gym spaces and Stable Baselines 2 policy references are read (nothing was run)"
        )

    budget = _ARRAY_BYTES_LEFT.set([len(raw) + _ARRAY_BYTES_SLACK])
    copied = _COPIED_ITEMS_LEFT.set([MAX_NODES])
    try:
        loaded = _Unpickler(raw, allowed, refuse).load()
    except error:
        raise
    except Exception as problem:  # no foreign code runs here: any failure is the file's
        raise error(f"{where}: not a readable pickle ({type(problem).__name__}: {str(problem)[:200]})") from problem
    finally:
        _ARRAY_BYTES_LEFT.reset(budget)
        _COPIED_ITEMS_LEFT.reset(copied)
    try:
        return _plain(loaded, 0, [MAX_NODES])
    except (ValueError, TypeError, RecursionError) as problem:
        raise error(f"{where}: {problem}") from problem


_SCALARS = (str, bytes, int, float, bool, complex, type(None))


def _plain(value: Any, depth: int, budget: list[int]) -> Any:
    """``value`` with every stand-in replaced by what it stands for, within the budget."""
    budget[0] -= 1
    if budget[0] < 0:
        raise ValueError(f"the pickle holds more than {MAX_NODES:,} values (counting shared ones each time)")
    if depth > MAX_DEPTH:
        raise ValueError(f"the pickle nests deeper than {MAX_DEPTH} levels")
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 64:
        raise ValueError(f"the pickle holds an integer of {value.bit_length():,} bits; at most 64 are read")
    if isinstance(value, (*_SCALARS, np.ndarray, np.generic, np.dtype, Reference)):
        return value
    if isinstance(value, _StandIn):
        return _plain(value.value(), depth + 1, budget)
    if isinstance(value, PickledObject):
        return PickledObject(value.kind, _plain(value.state, depth + 1, budget))
    if isinstance(value, list):
        return [_plain(item, depth + 1, budget) for item in value]
    if isinstance(value, tuple):
        return tuple(_plain(item, depth + 1, budget) for item in value)
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if not isinstance(key, str | int | float | bool | type(None)):
                raise ValueError(f"a dict key in the pickle is a {type(key).__name__}")
            key = _plain(key, depth + 1, budget)  # (an int key is bounded as any int)
            out[key] = _plain(item, depth + 1, budget)
        return out
    raise ValueError(f"the pickle holds a {type(value).__name__}, which is not read")
