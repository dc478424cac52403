"""acktr_lab.kfac.inspection checked against exact answers: closed forms, brute-force loops, dense solves."""

from __future__ import annotations

import gc
import logging
import weakref

import numpy as np
import pytest
import tensorflow as tf

from acktr_lab.kfac import Dense, KfacOptimizer, capture
from acktr_lab.kfac.inspection import (
    SoftmaxMlp,
    angle,
    exact_fisher,
    expected_factors,
    fisher_blocks,
    fisher_norm,
    flatten,
    gradient,
    kfac_direction,
    kfac_step,
    kronecker_fisher,
    layer_slices,
    loss_after_step,
    natural_gradient,
    relative_error,
    trust_region_scale,
    unflatten,
)

F64 = tf.float64


def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def data(n: int = 48, d: int = 3, c: int = 4, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)) * np.array([2.0, 1.0, 0.5])[:d], rng.integers(0, c, size=n)


def trained(
    steps: int = 8, *, damping: float = 0.01, **kfac: float
) -> tuple[SoftmaxMlp, KfacOptimizer, np.ndarray, np.ndarray]:
    """A float64 MLP 3 → 5 → 4 after a few K-FAC updates (eigenvalues unclipped: exact solves)."""
    x, y = data()
    model = SoftmaxMlp([3, 5, 4], seed=1)
    optimizer = KfacOptimizer(
        model.variables, model.layers, cold_iter=2, eigen_epsilon=0.0, damping=damping, learning_rate=0.1, **kfac
    )
    train = model.loss_fn(x, y)
    for _ in range(steps):
        optimizer.minimize(train)
    return model, optimizer, x, y


def brute_force_fisher(model: SoftmaxMlp, x: np.ndarray) -> np.ndarray:
    """``(1/n) Σ_i Σ_y p(y|x_i) ∇log p(y|x_i) ∇log p(y|x_i)ᵀ``, one tape per example and class."""
    variables = model.variables
    total = 0.0
    for row in x:
        for y in range(model.layers[-1].out_features):
            with tf.GradientTape() as tape:
                log_p = tf.nn.log_softmax(model(tf.constant(row[None, :])))[0, y]
            g = np.concatenate([t.numpy().ravel() for t in tape.gradient(log_p, variables)])
            total = total + np.exp(log_p.numpy()) * np.outer(g, g)
    return total / len(x)


# -- layout ---------------------------------------------------------------------------------
def test_flattened_dense_parameters_are_the_blocks_layout() -> None:
    model, optimizer, _, _ = trained(steps=0)
    rng = np.random.default_rng(3)
    grads = [rng.normal(size=v.shape) for v in model.variables]
    matrices = optimizer.gradient_matrices([tf.constant(g) for g in grads])
    np.testing.assert_array_equal(flatten(grads), flatten(m.numpy() for m in matrices))
    for part, g in zip(unflatten(flatten(grads), model.variables), grads):
        np.testing.assert_array_equal(part, g)
    with pytest.raises(ValueError, match="a vector of 44 numbers"):
        unflatten(np.zeros(43), model.variables)


def test_layer_slices_locate_each_layer_and_refuse_scattered_parameters() -> None:
    model = SoftmaxMlp([3, 5, 4])
    assert layer_slices(model.variables, model.layers) == [slice(0, 20), slice(20, 44)]
    first, second = model.layers
    # θ ordered differently: the slices follow the variables.
    assert layer_slices([*second.parameters, *first.parameters], model.layers) == [slice(24, 44), slice(0, 24)]
    with pytest.raises(ValueError, match="consecutive"):
        layer_slices([first.kernel, second.kernel, first.bias, second.bias], model.layers)
    with pytest.raises(ValueError, match="consecutive"):
        layer_slices([first.bias, first.kernel, *second.parameters], model.layers)
    with pytest.raises(ValueError, match="not all among"):
        layer_slices(first.parameters, model.layers)


# -- the exact Fisher -----------------------------------------------------------------------
def test_exact_fisher_equals_a_brute_force_sum_and_follows_the_parameters() -> None:
    model = SoftmaxMlp([3, 5, 4], seed=2)
    x, _ = data(n=6)
    fisher = exact_fisher(model, model.variables, x)
    np.testing.assert_allclose(fisher, brute_force_fisher(model, x), rtol=1e-10, atol=1e-14)
    assert np.linalg.eigvalsh(fisher).min() > -1e-12
    # New parameter values (the compiled Jacobian is reused, not stale).
    for v in model.variables:
        v.assign(v * 1.7 + 0.1)
    again = exact_fisher(model, model.variables, x)
    assert not np.allclose(again, fisher, rtol=1e-3)
    np.testing.assert_allclose(again, brute_force_fisher(model, x), rtol=1e-10, atol=1e-14)


def test_exact_fisher_of_several_models_traces_each_once_and_keeps_none_alive() -> None:
    # a notebook looking at several models: one compiled Jacobian per model, so TensorFlow's
    # "triggered tf.function retracing" warning (5 traces of one function) is not logged
    messages: list[str] = []

    class Records(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "retracing" in record.getMessage():
                messages.append(record.getMessage())

    handler = Records(logging.WARNING)
    tf.get_logger().addHandler(handler)
    try:
        x, _ = data()
        models = [SoftmaxMlp([3, 5, 4], seed=seed) for seed in range(6)]
        for model in models:
            for _ in range(2):  # the second call of each reuses its trace
                fisher = exact_fisher(model, model.variables, x)
                np.testing.assert_allclose(fisher, brute_force_fisher(model, x), rtol=1e-4, atol=1e-6)
    finally:
        tf.get_logger().removeHandler(handler)
    assert not messages, messages
    dead = weakref.ref(models.pop(0))
    gc.collect()
    assert dead() is None


def test_fisher_norm_is_the_local_kl_divergence() -> None:
    """``KL(p_θ ‖ p_{θ−ηd}) ≈ η²·dᵀFd/2`` for small η: the Fisher is the KL's curvature."""
    model = SoftmaxMlp([3, 5, 4], seed=3)
    x, _ = data(n=16)
    fisher = exact_fisher(model, model.variables, x)
    d = np.random.default_rng(4).normal(size=fisher.shape[0])
    p = softmax_np(model(x).numpy())
    eta = 1e-3
    for v, part in zip(model.variables, unflatten(d, model.variables)):
        v.assign_sub(eta * part)
    q = softmax_np(model(x).numpy())
    kl = np.mean(np.sum(p * np.log(p / q), axis=1))
    np.testing.assert_allclose(kl, eta**2 * fisher_norm(d, fisher) ** 2 / 2, rtol=1e-2)


def test_kfac_is_exact_for_a_softmax_layer_with_one_repeated_input_and_only_then() -> None:
    rng = np.random.default_rng(5)
    d, c = 3, 4
    layer = Dense(d, c, name="softmax", rng=rng, dtype=F64)
    layer.bias.assign(rng.normal(size=c))
    optimizer = KfacOptimizer(layer.parameters, [layer])
    x = rng.normal(size=d)
    repeated = np.tile(x, (5, 1))
    fisher = exact_fisher(layer, layer.parameters, repeated)
    # Closed form: F = kron(x̄x̄ᵀ, diag(p) − ppᵀ) with x̄ = [x, 1].
    p = softmax_np(x @ layer.kernel.numpy() + layer.bias.numpy())
    x_bar = np.append(x, 1.0)
    np.testing.assert_allclose(fisher, np.kron(np.outer(x_bar, x_bar), np.diag(p) - np.outer(p, p)), atol=1e-14)
    [(a, g)] = expected_factors(optimizer, layer, repeated)
    assert relative_error(kronecker_fisher(a, g), fisher) < 1e-12
    # Different inputs: E[āāᵀ ⊗ Σ(x)] is not E[āāᵀ] ⊗ E[Σ(x)].
    varied = rng.normal(size=(5, d)) * 2.0
    [(a, g)] = expected_factors(optimizer, layer, varied)
    assert relative_error(kronecker_fisher(a, g), exact_fisher(layer, layer.parameters, varied)) > 0.05


def test_expected_factors_are_what_the_sampled_statistics_estimate() -> None:
    model, optimizer, x, _ = trained(steps=4)
    expected = expected_factors(optimizer, model, x[:4])
    many = np.tile(x[:4], (5000, 1))
    with tf.GradientTape(persistent=True) as tape, capture() as recorded:
        _, fisher_loss = model.loss_fn(many, np.zeros(len(many), np.int64))()
        sampled = optimizer.batch_statistics(tape, fisher_loss(), recorded)
    for (a, g), (sampled_a, sampled_g) in zip(expected, sampled):
        np.testing.assert_allclose(sampled_a.numpy(), a, rtol=1e-10)
        np.testing.assert_allclose(sampled_g.numpy(), g, atol=0.03 * np.abs(g).max())
        assert not np.allclose(sampled_g.numpy(), g / len(many), atol=0.03 * np.abs(g).max())


def test_fisher_blocks_are_the_exact_blocks_and_the_two_kronecker_products() -> None:
    model, optimizer, x, _ = trained(steps=4)
    fisher = exact_fisher(model, model.variables, x)
    expected = expected_factors(optimizer, model, x)
    blocks = fisher_blocks(optimizer, model, x)
    assert [b.layer for b in blocks] == ["fc0", "fc1"]
    for view, s, (a, g), block in zip(blocks, layer_slices(model.variables, model.layers), expected, optimizer.blocks):
        np.testing.assert_array_equal(view.exact, fisher[s, s])
        np.testing.assert_allclose(view.expected, np.kron(a, g), rtol=1e-12)
        np.testing.assert_allclose(view.running, np.kron(block.input_factor.numpy(), block.gradient_factor.numpy()))
        assert 0.0 < relative_error(view.expected, view.exact) < 1.0


def test_relative_error_is_the_frobenius_ratio() -> None:
    exact = np.array([[3.0, 0.0], [0.0, 4.0]])
    assert relative_error(exact + np.array([[0.0, 1.0], [0.0, 0.0]]), exact) == pytest.approx(0.2)
    assert relative_error(exact, exact) == 0.0
    np.testing.assert_array_equal(kronecker_fisher(np.eye(2), 2 * np.eye(1), damping=0.5), 2.5 * np.eye(2))


# -- directions -----------------------------------------------------------------------------
def test_natural_gradient_solves_the_damped_system_whole_or_per_block() -> None:
    rng = np.random.default_rng(6)
    m = rng.normal(size=(7, 7))
    fisher, g, damping = m @ m.T, rng.normal(size=7), 0.3
    direction = natural_gradient(fisher, g, damping)
    np.testing.assert_allclose((fisher + damping * np.eye(7)) @ direction, g, atol=1e-12)
    slices = [slice(0, 3), slice(3, 5)]
    blockwise = natural_gradient(fisher, g, damping, slices)
    for s in slices:
        np.testing.assert_allclose((fisher[s, s] + damping * np.eye(s.stop - s.start)) @ blockwise[s], g[s])
    np.testing.assert_array_equal(blockwise[5:], g[5:])  # outside every layer: the plain gradient
    assert angle(blockwise, direction) > 1.0  # the cross-layer blocks matter


@pytest.mark.parametrize("damping", [None, 0.5])
def test_kfac_direction_is_the_damped_kronecker_solve_of_each_block(damping: float | None) -> None:
    model, optimizer, x, y = trained(damping=0.01)
    g = gradient(lambda: model.loss(x, y), model.variables)
    direction = kfac_direction(optimizer, g, damping=damping)
    delta = 0.01 if damping is None else damping
    for block, s in zip(optimizer.blocks, layer_slices(model.variables, model.layers)):
        a, f = block.input_factor.numpy(), block.gradient_factor.numpy()
        np.testing.assert_allclose(direction[s], np.linalg.solve(kronecker_fisher(a, f, delta), g[s]), rtol=1e-8)
    assert optimizer.get_hyperparameters()["damping"] == 0.01  # the override was for this call only


def test_gradient_is_the_flattened_gradient_of_the_loss() -> None:
    model, _, x, y = trained(steps=0)
    g = gradient(lambda: model.loss(x, y), model.variables)
    theta, eps = flatten(model.variables), 1e-6

    def loss_at(vector: np.ndarray) -> float:
        for v, part in zip(model.variables, unflatten(vector, model.variables)):
            v.assign(part)
        return float(model.loss(x, y))

    for index in (3, 20, 43):  # a first-layer weight, the second layer's first weight, the last bias
        bump = np.zeros_like(theta)
        bump[index] = eps
        slope = (loss_at(theta + bump) - loss_at(theta - bump)) / (2 * eps)
        assert slope == pytest.approx(g[index], rel=1e-6, abs=1e-9)


def test_trust_region_scale_by_hand() -> None:
    # lr²·gᵀF⁻¹g = 0.25·4 = 1: the scale is √kfac_clip while kfac_clip < 1.
    assert trust_region_scale(4.0, 0.5, 0.25) == pytest.approx(0.5)
    assert trust_region_scale(4.0, 0.5, 2.0) == 1.0
    assert trust_region_scale(0.0, 0.5, 0.25) == 1.0
    np.testing.assert_allclose(trust_region_scale(4.0, 0.5, np.array([0.01, 0.04, 4.0])), [0.1, 0.2, 1.0])


def test_kfac_step_scale_is_the_optimizers_and_caps_the_step_in_the_damped_fisher_metric() -> None:
    model, optimizer, x, y = trained(steps=4, kfac_clip=1e-4)
    train = model.loss_fn(x, y)
    g = gradient(lambda: model.loss(x, y), model.variables)
    metrics = optimizer.minimize(train)  # refreshes the inverse, then steps with g's direction
    assert bool(metrics["kfac_step"])
    step, scale = kfac_step(optimizer, g)
    assert scale == pytest.approx(float(metrics["trust_region_scale"]), rel=1e-10)
    assert scale < 1.0
    # ΔᵀF̂Δ = min(lr²·gᵀF̂⁻¹g, kfac_clip) with F̂ = ⊕ (A ⊗ G + δI).
    slices = layer_slices(model.variables, model.layers)
    damped = [kronecker_fisher(b.input_factor.numpy(), b.gradient_factor.numpy(), 0.01) for b in optimizer.blocks]
    length = sum(step[s] @ f @ step[s] for s, f in zip(slices, damped))
    assert length == pytest.approx(1e-4, rel=1e-8)
    bigger, unclipped = kfac_step(optimizer, g, kfac_clip=1e3)
    assert unclipped == 1.0
    np.testing.assert_allclose(bigger, 0.1 * kfac_direction(optimizer, g))
    assert optimizer.get_hyperparameters()["kfac_clip"] == 1e-4


def test_angle_of_known_vectors() -> None:
    assert angle(np.array([1.0, 0.0]), np.array([0.0, 3.0])) == pytest.approx(90.0)
    assert angle(np.array([1.0, 0.0]), np.array([2.0, 2.0])) == pytest.approx(45.0)
    assert angle(np.array([1.0, 0.0]), np.array([-1.0, 0.0])) == pytest.approx(180.0)
    assert angle(np.array([1.0, 2.0, 3.0]), np.array([2.0, 4.0, 6.0])) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="zero vector"):
        angle(np.zeros(2), np.ones(2))


def test_loss_after_step_evaluates_the_line_and_restores_the_variables() -> None:
    rng = np.random.default_rng(7)
    variables = [tf.Variable(rng.normal(size=(2, 3))), tf.Variable(rng.normal(size=3), dtype=tf.float32)]
    target = rng.normal(size=9)
    before = [v.numpy().copy() for v in variables]

    def loss() -> tf.Tensor:
        theta = tf.concat([tf.reshape(tf.cast(v, F64), [-1]) for v in variables], axis=0)
        return tf.reduce_sum(tf.square(theta - target))

    theta, d = flatten(variables), rng.normal(size=9)
    etas = np.array([0.0, 0.5, 2.0])
    got = loss_after_step(loss, variables, d, etas)
    want = [np.sum((np.concatenate([theta[:6], theta[6:].astype(np.float32)]) - eta * d - target) ** 2) for eta in etas]
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for v, b in zip(variables, before):
        np.testing.assert_array_equal(v.numpy(), b)

    def failing() -> tf.Tensor:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        loss_after_step(failing, variables, d, 1.0)
    for v, b in zip(variables, before):
        np.testing.assert_array_equal(v.numpy(), b)


def test_the_exact_natural_gradient_decreases_the_loss_faster_than_the_gradient_per_unit_of_kl() -> None:
    """On badly scaled inputs, per unit of Fisher length the natural gradient and K-FAC beat the gradient."""
    model, _, x, y = trained(steps=6)
    loss = lambda: model.loss(x, y)  # noqa: E731
    fisher, g = exact_fisher(model, model.variables, x), gradient(loss, model.variables)
    best = {}
    for name, d in {"gradient": g, "natural": natural_gradient(fisher, g, 1e-3)}.items():
        best[name] = loss_after_step(loss, model.variables, d / fisher_norm(d, fisher), np.linspace(0, 0.3, 7)).min()
    assert best["natural"] < best["gradient"]


def test_softmax_mlp_layers_variables_and_validation() -> None:
    model = SoftmaxMlp([3, 5, 4])
    assert [layer.name for layer in model.layers] == ["fc0", "fc1"]
    assert [tuple(v.shape) for v in model.variables] == [(3, 5), (5,), (5, 4), (4,)]
    assert all(v.dtype == F64 for v in model.variables)
    with pytest.raises(ValueError, match="input and an output"):
        SoftmaxMlp([3])
