"""ConcreteCalls: a tf.function called through its concrete functions, one per signature."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from acktr_lab.compiled import ConcreteCalls


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
