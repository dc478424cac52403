"""Compiled functions called without ``tf.function``'s per-call dispatch.

Calling a ``tf.function`` finds its trace from the *trace types* of every argument, built
and hashed anew on each call: for the update step's nested inputs that dispatch took
≈ 0.5–0.8 ms per call on this project's 2-core machine, against ≈ 0.3 ms for the compiled
KL of a CartPole batch itself. :class:`ConcreteCalls` keys the concrete function by what
tells traces apart here, the dtypes and shapes of the tensor arguments and the values of
the Python ones, and calls it directly: the same graph, so the same results to the bit.

:func:`compile_function` makes each object's ``tf.function`` count its retracing alone.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf


def compile_function(function: Callable[..., Any], **options: Any) -> Any:
    """``tf.function(function, autograph=False, **options)``, its retracing counted alone.

    TensorFlow warns ("N out of the last N calls ... triggered tf.function retracing") when
    a function traced 5 times in its last few calls, and it counts together every
    ``tf.function`` made from the same Python code: its key is the code object, shared by a
    method's functions in every instance and by a closure's in every call that made it. A
    model makes its own compiled functions and traces each once, so a notebook that builds
    five models would be warned of retracing that is nothing of the kind. A
    ``functools.partial`` has no code object, and TensorFlow then keys its counts by the
    partial itself: one count per compiled function, which still warns if one really
    retraces.
    """
    per_object = functools.partial(function)
    # the graph's name, as tf.function would give it (a partial's is its function's)
    per_object.__name__ = getattr(getattr(function, "func", function), "__name__", "function")
    return tf.function(per_object, autograph=False, **options)


def _signature(args: tuple[Any, ...]) -> tuple[Any, ...]:
    """What selects a trace: per flattened argument, a tensor's dtype and shape, else its value."""
    return tuple(
        (x.dtype, tuple(x.shape)) if isinstance(x, (tf.Tensor, np.ndarray)) else x for x in tf.nest.flatten(args)
    )


class ConcreteCalls:
    """``function`` (a ``tf.function``) called through one concrete function per signature.

    Arguments whose tensors have one shape and dtype (a learner's batches, a rollout's
    sizes) then skip the dispatch; a new signature traces (or finds) its concrete function
    through ``function`` as a call would, and tracing counts stay ``function``'s own.
    """

    def __init__(self, function: Any) -> None:
        self.function = function
        self._concrete: dict[tuple[Any, ...], Any] = {}

    def get_concrete_function(self, *args: Any) -> Any:
        """The concrete function for ``args`` (traced now if it was not yet), kept for calls."""
        key = _signature(args)
        concrete = self._concrete.get(key)
        if concrete is None:
            concrete = self._concrete[key] = self.function.get_concrete_function(*args)
        return concrete

    def __call__(self, *args: Any) -> Any:
        return self.get_concrete_function(*args)(*args)

    def experimental_get_tracing_count(self) -> int:
        return int(self.function.experimental_get_tracing_count())
