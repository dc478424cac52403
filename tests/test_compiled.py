"""ConcreteCalls (a tf.function called through its concrete functions, one per signature) and
compile_function (retracing counted per object)."""

from __future__ import annotations

import functools
import logging
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from acktr_lab import ACKTR
from acktr_lab.compiled import ConcreteCalls, compile_function


def _scaled_sum() -> ConcreteCalls:
    def scaled_sum(x: tf.Tensor, pair: tuple[tf.Tensor, tf.Tensor], double: bool) -> tf.Tensor:
        total = tf.reduce_sum(x) + tf.reduce_sum(pair[0] * pair[1])
        return 2.0 * total if double else total

    return ConcreteCalls(tf.function(scaled_sum, autograph=False))


def test_results_equal_the_tf_function_and_one_signature_traces_once() -> None:
    calls = _scaled_sum()
    rng = np.random.default_rng(0)
    for _ in range(4):
        x, a, b = (tf.constant(rng.normal(size=(3, 2)), tf.float32) for _ in range(3))
        got = calls(x, (a, b), False)
        assert float(got) == float(calls.function(x, (a, b), False))
        np.testing.assert_allclose(float(got), np.sum(x.numpy()) + np.sum(a.numpy() * b.numpy()), rtol=1e-6)
    assert calls.experimental_get_tracing_count() == 1


def test_a_new_shape_dtype_or_python_value_gets_its_own_concrete_function() -> None:
    calls = _scaled_sum()
    ones = tf.ones((2, 2))
    assert float(calls(ones, (ones, ones), False)) == 8.0
    assert float(calls(ones, (ones, ones), True)) == 16.0  # the Python value selects the trace
    assert float(calls(tf.ones((3,)), (tf.ones((3,)), tf.ones((3,))), False)) == 6.0  # another shape
    assert float(calls(tf.ones((2, 2), tf.float64), (tf.ones((2, 2), tf.float64),) * 2, False)) == 8.0
    assert len(calls._concrete) == 4
    assert calls.get_concrete_function(ones, (ones, ones), True) is calls.get_concrete_function(
        tf.zeros((2, 2)), (ones, ones), True
    )


def test_inputs_the_function_cannot_take_are_refused_as_by_tensorflow() -> None:
    calls = _scaled_sum()
    with pytest.raises((TypeError, ValueError, tf.errors.InvalidArgumentError)):
        calls(tf.ones((2, 2)), (tf.ones((2, 2)), tf.ones((3, 3))), False)


class _RetracingRecords(logging.Handler):
    """TensorFlow's "... triggered tf.function retracing" warnings, as logged."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if "triggered tf.function retracing" in record.getMessage():
            self.messages.append(record.getMessage())

    def __enter__(self) -> _RetracingRecords:
        tf.get_logger().addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        tf.get_logger().removeHandler(self)


class _Scaler:
    def __init__(self, factor: float, compile_: Any) -> None:
        self.factor = tf.Variable(factor)
        self.step = compile_(self._graph)

    def _graph(self) -> tf.Tensor:
        return 2.0 * self.factor


@pytest.mark.parametrize("per_object", [False, True])
def test_compile_function_counts_retracing_per_object_not_per_method(per_object: bool) -> None:
    # TensorFlow counts the traces of every tf.function of one method together, so objects
    # made one after another, each traced once, are warned of; compile_function's are not.
    compile_ = compile_function if per_object else functools.partial(tf.function, autograph=False)
    with _RetracingRecords() as records:
        for factor in range(7):
            assert float(_Scaler(float(factor), compile_).step()) == 2.0 * factor
    assert bool(records.messages) is not per_object, records.messages


def test_compile_function_still_warns_of_one_function_retracing() -> None:
    with _RetracingRecords() as records:
        scale = compile_function(lambda x: 2.0 * x)
        for size in range(1, 8):  # a new shape each call: a real retrace each time
            assert scale(tf.ones([size])).shape == (size,)
    assert records.messages


def test_models_built_one_after_another_are_not_warned_of_retracing() -> None:
    # A notebook comparing agents builds several; each traces its own steps once (acting, the
    # cold-start and K-FAC plans, the eigenvalue read, the NumPy actor's weight read).
    with _RetracingRecords() as records:
        for seed in range(6):
            model = ACKTR("MlpPolicy", "CartPole-v1", n_steps=5, seed=seed)
            model.learn(60)  # 12 updates: past the 10 cold-start ones into K-FAC's
            obs = np.zeros((1, 4), np.float32)
            model.predict(obs, deterministic=True)
    assert not records.messages, records.messages[0]
