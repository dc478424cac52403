"""K-FAC checked against independent dense computations (float64 wherever exactness matters).

Conventions under test (see acktr_lab/kfac/blocks.py): a layer's gradient is the matrix
``∇ = [W-rows; b-row]`` of shape ``[d_in + 1, d_out]``, vectorised row-major, so the block
approximates the Fisher by ``kron(A, G)`` with ``A = E[ā āᵀ]`` (ā = [a, 1]) and
``G = E[g gᵀ]`` (g the per-example gradient with respect to the pre-activation).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pytest
import tensorflow as tf

from acktr_lab.kfac import (
    BLOCKS,
    Conv2D,
    Conv2DBlock,
    Dense,
    KfacLayer,
    KfacOptimizer,
    ScaleAndShift,
    ScaleAndShiftBlock,
    UpdatePlan,
    capture,
    layer_norm,
    make_block,
)

F64 = tf.float64
LossFn = Callable[[], tuple[tf.Tensor, tf.Tensor]]
Metrics = dict[str, tf.Tensor]


# -- helpers ---------------------------------------------------------------------------------
def softmax_np(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))


def sampled_nll(logits: tf.Tensor, generator: tf.random.Generator) -> tf.Tensor:
    """Mean NLL of targets sampled from the model's own softmax (Gumbel-max; samples carry no gradient)."""
    uniform = generator.uniform(tf.shape(logits), minval=1e-12, maxval=1.0, dtype=logits.dtype)
    samples = tf.argmax(tf.stop_gradient(logits) - tf.math.log(-tf.math.log(uniform)), axis=-1)
    return cross_entropy(logits, samples)


def variables_of(layers: Sequence[KfacLayer]) -> list[tf.Variable]:
    return [v for layer in layers for v in (layer.kernel, layer.bias)]


def numpy_params(variables: Sequence[tf.Variable]) -> list[np.ndarray]:
    return [v.numpy().copy() for v in variables]


def dense_fisher(block: object, damping: float) -> np.ndarray:
    """``kron(A, G) + damping·I`` built densely from a block's current factors."""
    a = block.input_factor.numpy()  # type: ignore[attr-defined]
    g = block.gradient_factor.numpy()  # type: ignore[attr-defined]
    return np.kron(a, g) + damping * np.eye(a.shape[0] * g.shape[0])


def gradient_vector(kernel_grad: np.ndarray, bias_grad: np.ndarray) -> np.ndarray:
    """Row-major vec of ``[kernel rows; bias row]`` computed without the block's helpers."""
    return np.concatenate([kernel_grad.reshape(-1, bias_grad.shape[0]), bias_grad[None, :]], axis=0).ravel()


class Mlp:
    """``logits = W2 tanh(W1 x + b1) + b2`` from two K-FAC Dense layers (float64)."""

    def __init__(self, sizes: tuple[int, int, int], seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.hidden = Dense(sizes[0], sizes[1], name="hidden", rng=rng, dtype=F64)
        self.out = Dense(sizes[1], sizes[2], name="out", rng=rng, dtype=F64)
        self.hidden.bias.assign(rng.normal(0.0, 0.1, sizes[1]))
        self.out.bias.assign(rng.normal(0.0, 0.1, sizes[2]))
        self.layers: list[KfacLayer] = [self.hidden, self.out]

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return self.out(tf.tanh(self.hidden(x)))

    @property
    def variables(self) -> list[tf.Variable]:
        return variables_of(self.layers)


def classification_data(n: int, d: int, c: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    y = rng.integers(0, c, size=n)
    return x, y


def mlp_problem(seed: int, n: int = 64) -> tuple[Mlp, LossFn, tf.random.Generator]:
    """A float64 MLP classifier with a sampled-Fisher loss drawing from a seeded generator."""
    x, y = classification_data(n, 5, 3, seed)
    model = Mlp((5, 8, 3), seed)
    xt, yt = tf.constant(x), tf.constant(y)
    generator = tf.random.Generator.from_seed(seed + 1000)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(xt)
        return cross_entropy(logits, yt), sampled_nll(logits, generator)

    return model, loss_fn, generator


# -- 1. exact Fisher of a linear softmax layer -----------------------------------------------
def test_dense_factors_equal_the_exact_sampled_fisher_for_one_input() -> None:
    rng = np.random.default_rng(0)
    d, c, n = 4, 3, 64
    layer = Dense(d, c, name="softmax", rng=rng, dtype=F64)
    layer.bias.assign(rng.normal(size=c))
    x = rng.normal(size=d)
    p = softmax_np(x @ layer.kernel.numpy() + layer.bias.numpy())
    samples = rng.choice(c, size=n, p=p)  # targets from the model's own predictive distribution
    xs, ys = tf.constant(np.tile(x, (n, 1))), tf.constant(samples)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        nll = cross_entropy(layer(xs), ys)
        return nll, nll

    # cold_iter large: after one update the statistics are exactly this batch's.
    opt = KfacOptimizer([layer.kernel, layer.bias], [layer], learning_rate=0.1, cold_iter=100)
    x_bar = np.append(x, 1.0)
    per_example = [np.outer(x_bar, p - np.eye(c)[y]).ravel() for y in samples]

    # The explicit formula is the gradient TF computes, in the block's layout.
    with tf.GradientTape() as tape:
        first = cross_entropy(layer(xs[:1]), ys[:1])
    kernel_grad, bias_grad = tape.gradient(first, [layer.kernel, layer.bias])
    block = opt.blocks[0]
    np.testing.assert_allclose(
        block.gradient_matrix(kernel_grad, bias_grad).numpy().ravel(), per_example[0], atol=1e-14
    )

    opt.minimize(loss_fn)
    a, g = block.input_factor.numpy(), block.gradient_factor.numpy()
    empirical_fisher = np.mean([np.outer(v, v) for v in per_example], axis=0)
    np.testing.assert_allclose(np.kron(a, g), empirical_fisher, rtol=0, atol=1e-10)
    np.testing.assert_allclose(a, np.outer(x_bar, x_bar), atol=1e-12)

    # Exact (expected) Fisher: summing over every class weighted by p_y gives kron(āāᵀ, diag(p) - ppᵀ).
    exact_g = np.diag(p) - np.outer(p, p)
    exact_fisher = sum(p[y] * np.outer(gy, gy) for y in range(c) for gy in [np.outer(x_bar, p - np.eye(c)[y]).ravel()])
    np.testing.assert_allclose(np.kron(np.outer(x_bar, x_bar), exact_g), exact_fisher, atol=1e-12)

    # ... and the block's sampled G converges to it (many samples, one fixed seed).
    many = rng.choice(c, size=20000, p=p)
    many_x = tf.constant(np.tile(x, (many.size, 1)))
    with tf.GradientTape() as tape, capture() as recorded:
        nll = cross_entropy(layer(many_x), tf.constant(many))
    uses = recorded.uses_of(layer)
    grads = tape.gradient(nll, [u.preactivations for u in uses])
    _, big_g = block.batch_statistics(uses, grads)
    np.testing.assert_allclose(big_g.numpy(), exact_g, atol=0.02)
    assert not np.allclose(big_g.numpy(), exact_g / many.size, atol=0.02)  # scale is per example


# -- 2. preconditioning equals a dense solve -------------------------------------------------
@pytest.mark.parametrize("damping", [1e-2, 1e-4])
def test_multiply_inverse_equals_dense_damped_solve(damping: float) -> None:
    model, loss_fn, _ = mlp_problem(seed=1)
    opt = KfacOptimizer(
        model.variables, model.layers, learning_rate=0.1, cold_iter=2, eigen_epsilon=0.0, damping=damping
    )
    for _ in range(4):
        opt.minimize(loss_fn)
    rng = np.random.default_rng(2)
    for block in opt.blocks:
        assert bool(block.refresh_inverse(0.0))
        m = rng.normal(size=(block.input_dim, block.output_dim))
        got = block.multiply_inverse(tf.constant(m), damping).numpy()
        want = np.linalg.solve(dense_fisher(block, damping), m.ravel()).reshape(m.shape)
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12 * np.abs(want).max())
        # The damping matters here: the undamped-ish solve is clearly different.
        other = np.linalg.solve(dense_fisher(block, 10 * damping), m.ravel()).reshape(m.shape)
        assert not np.allclose(got, other, rtol=1e-3)


# -- 3. convolution factors from explicit patches --------------------------------------------
def explicit_patches(x: np.ndarray, k: int, stride: int, padding: str) -> np.ndarray:
    """``[B, Oh, Ow, k·k·C]`` patches built with loops, rows ordered (di, dj, channel)."""
    b, h, w, c = x.shape
    if padding == "VALID":
        oh, ow, top, left = (h - k) // stride + 1, (w - k) // stride + 1, 0, 0
    else:
        oh, ow = -(-h // stride), -(-w // stride)
        top = max((oh - 1) * stride + k - h, 0) // 2
        left = max((ow - 1) * stride + k - w, 0) // 2
    out = np.zeros((b, oh, ow, k * k * c))
    for n in range(b):
        for i in range(oh):
            for j in range(ow):
                row = []
                for di in range(k):
                    for dj in range(k):
                        for ch in range(c):
                            r, s = i * stride + di - top, j * stride + dj - left
                            inside = 0 <= r < h and 0 <= s < w
                            row.append(x[n, r, s, ch] if inside else 0.0)
                out[n, i, j] = row
    return out


@pytest.mark.parametrize("approx_t2", [False, True], ids=["exact", "approx_t2"])
@pytest.mark.parametrize("padding", ["VALID", "SAME"])
def test_conv_factors_equal_direct_computation_over_explicit_patches(padding: str, approx_t2: bool) -> None:
    rng = np.random.default_rng(3)
    batch, k, stride, cin, cout = 3, 3, 2, 2, 4
    layer = Conv2D(cin, cout, k, strides=stride, padding=padding, name="conv", rng=rng, dtype=F64)
    layer.bias.assign(rng.normal(size=cout))
    x = rng.normal(size=(batch, 7, 7, cin))
    patches = explicit_patches(x, k, stride, padding)
    oh, ow = patches.shape[1:3]
    assert (oh, ow) == ((3, 3) if padding == "VALID" else (4, 4))

    # Forward: the conv equals patches · W reshaped to [k·k·cin, cout], plus b.
    forward = layer(tf.constant(x)).numpy()
    np.testing.assert_allclose(
        forward, patches @ layer.kernel.numpy().reshape(-1, cout) + layer.bias.numpy(), atol=1e-12
    )

    # A fisher loss linear in the pre-activations: mean_b Σ_{t,c} s·R, so B·∂L/∂s = R exactly.
    r = rng.normal(size=(batch, oh, ow, cout))
    xt, rt = tf.constant(x), tf.constant(r)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        s = layer(xt)
        fisher = tf.reduce_sum(s * rt) / batch
        return tf.reduce_mean(tf.square(s)), fisher

    opt = KfacOptimizer([layer.kernel, layer.bias], [layer], learning_rate=0.01, cold_iter=100, approx_t2=approx_t2)
    assert isinstance(opt.blocks[0], Conv2DBlock)
    opt.minimize(loss_fn)
    if approx_t2:  # one row per example: its mean patch, and its gradients summed over positions
        means = np.concatenate([patches.mean(axis=(1, 2)), np.ones((batch, 1))], axis=1)
        want_a = means.T @ means / batch
        sums = r.sum(axis=(1, 2))
        want_g = sums.T @ sums / batch
    else:
        rows = np.concatenate([patches.reshape(-1, k * k * cin), np.ones((batch * oh * ow, 1))], axis=1)
        want_a = rows.T @ rows / batch  # sum over positions, mean over examples
        grads = r.reshape(-1, cout)
        want_g = grads.T @ grads / (batch * oh * ow)  # mean over positions and examples
    np.testing.assert_allclose(opt.blocks[0].input_factor.numpy(), want_a, atol=1e-12)
    np.testing.assert_allclose(opt.blocks[0].gradient_factor.numpy(), want_g, atol=1e-12)


@pytest.mark.parametrize("padding", ["VALID", "SAME"])
@pytest.mark.parametrize(("height", "k", "stride"), [(84, 8, 4), (9, 4, 2), (5, 3, 1)])
def test_patch_means_equal_the_mean_of_explicit_patches(padding: str, height: int, k: int, stride: int) -> None:
    rng = np.random.default_rng(height + k)
    layer = Conv2D(3, 2, k, strides=stride, padding=padding, name="conv", rng=rng, dtype=F64)
    x = rng.normal(size=(2, height, height + 1, 3))
    patches = explicit_patches(x, k, stride, padding) if height < 20 else layer.patches(tf.constant(x)).numpy()
    assert patches.shape[1:3] == layer.output_size(height, height + 1)
    np.testing.assert_allclose(layer.patch_means(tf.constant(x)).numpy(), patches.mean(axis=(1, 2)), atol=1e-13)


def test_approx_t2_factors_equal_the_exact_sampled_fisher_when_every_position_sees_the_same_patch() -> None:
    """K-FAC-reduce's assumption holds exactly for a spatially constant input: the per-example
    kernel gradient ``Σ_t ā g_tᵀ = ā (Σ_t g_t)ᵀ``, so ``A ⊗ G`` is the sampled Fisher block
    itself; the default (expand) factors are not."""
    rng = np.random.default_rng(21)
    n, k, cin, cout = 48, 3, 2, 2
    layer = Conv2D(cin, cout, k, name="conv", rng=rng, dtype=F64)
    layer.bias.assign(rng.normal(size=cout))
    pixel = rng.normal(size=cin)
    image = np.broadcast_to(pixel, (1, 5, 5, cin))  # 3x3 output positions, all the same patch
    s = layer(tf.constant(image)).numpy().reshape(-1)
    p = softmax_np(s)  # one softmax over every position and channel: 18 classes
    samples = rng.choice(p.size, size=n, p=p)
    xs, ys = tf.constant(np.repeat(image, n, axis=0)), tf.constant(samples)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        nll = cross_entropy(tf.reshape(layer(xs), [n, -1]), ys)
        return nll, nll

    patch = np.append(np.tile(pixel, k * k), 1.0)  # (di, dj, channel) order, then the bias 1
    per_example = [np.outer(patch, (p - np.eye(p.size)[y]).reshape(-1, cout).sum(axis=0)).ravel() for y in samples]
    sampled_fisher = np.mean([np.outer(v, v) for v in per_example], axis=0)
    products = {}
    for approx_t2 in (False, True):
        opt = KfacOptimizer([layer.kernel, layer.bias], [layer], cold_iter=100, approx_t2=approx_t2)
        with tf.GradientTape() as tape:
            first = cross_entropy(tf.reshape(layer(xs[:1]), [1, -1]), ys[:1])
        block = opt.blocks[0]
        gradient = block.gradient_matrix(*tape.gradient(first, [layer.kernel, layer.bias])).numpy().ravel()
        np.testing.assert_allclose(gradient, per_example[0], atol=1e-14)  # the layout of the formula
        weights = [v.numpy().copy() for v in (layer.kernel, layer.bias)]
        opt.minimize(loss_fn)
        for v, w in zip((layer.kernel, layer.bias), weights):
            v.assign(w)  # the same weights for both variants
        products[approx_t2] = np.kron(block.input_factor.numpy(), block.gradient_factor.numpy())
    np.testing.assert_allclose(products[True], sampled_fisher, rtol=0, atol=1e-12)
    assert not np.allclose(products[False], sampled_fisher, atol=1e-3)


def test_approx_t2_must_be_a_boolean() -> None:
    layer = Conv2D(1, 1, 2, name="conv")
    with pytest.raises(ValueError, match="approx_t2"):
        KfacOptimizer([layer.kernel, layer.bias], [layer], approx_t2="yes")  # type: ignore[arg-type]


# -- 4. trust region ---------------------------------------------------------------------------
@pytest.mark.parametrize(("learning_rate", "clipped"), [(2.0, True), (1e-4, False)])
def test_trust_region_bounds_the_step_in_the_damped_fisher_norm(learning_rate: float, clipped: bool) -> None:
    model, _, _ = mlp_problem(seed=4)
    x, y = classification_data(64, 5, 3, seed=4)
    xt, yt = tf.constant(x), tf.constant(y)
    shift = tf.Variable(tf.constant([0.1, -0.2, 0.05], F64), name="unregistered_shift")
    generator = tf.random.Generator.from_seed(5)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(xt) + shift
        return cross_entropy(logits, yt), sampled_nll(logits, generator)

    variables = [*model.variables, shift]
    damping, clip, momentum, cold = 0.01, 0.001, 0.9, 2
    opt = KfacOptimizer(
        variables,
        model.layers,
        learning_rate=learning_rate,
        momentum=momentum,
        damping=damping,
        kfac_clip=clip,
        cold_iter=cold,
        eigen_epsilon=0.0,
    )
    opt.set_hyperparameters(learning_rate=1e-3)  # gentle cold start, same for both cases
    for _ in range(cold):
        assert not opt.minimize(loss_fn)["kfac_step"]
    opt.set_hyperparameters(learning_rate=learning_rate)

    with tf.GradientTape() as tape:
        loss = loss_fn()[0]
    grads = [g.numpy() for g in tape.gradient(loss, variables)]
    before = numpy_params(variables)
    metrics = opt.minimize(loss_fn)  # first K-FAC step: momentum restarts at zero
    assert metrics["kfac_step"] and metrics["inverse_refreshed"]

    # V = F̂⁻¹∇ per block with F̂ = kron(A, G) + δI from the block's (just updated) factors; identity elsewhere.
    directions: list[np.ndarray] = []
    fisher_norm = 0.0
    gfg = 0.0
    for block, (kernel_grad, bias_grad) in zip(opt.blocks, [grads[0:2], grads[2:4]]):
        fisher = dense_fisher(block, damping)
        v = np.linalg.solve(fisher, gradient_vector(kernel_grad, bias_grad)).reshape(block.input_dim, -1)
        directions += [v[:-1].reshape(kernel_grad.shape), v[-1]]
        fisher_norm += v.ravel() @ fisher @ v.ravel()
        gfg += v.ravel() @ gradient_vector(kernel_grad, bias_grad)
    directions.append(grads[4])
    fisher_norm += grads[4] @ grads[4]
    gfg += grads[4] @ grads[4]
    np.testing.assert_allclose(metrics["gfg"], gfg, rtol=1e-8)

    precondition = opt.precondition([tf.constant(g) for g in grads])
    for got, want in zip(precondition, directions):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-7, atol=1e-12)

    scale = min(1.0, np.sqrt(clip / (learning_rate**2 * fisher_norm)))
    np.testing.assert_allclose(metrics["trust_region_scale"], scale, rtol=1e-8)
    step_norm = learning_rate**2 * scale**2 * fisher_norm  # lr² uᵀF̂u with u = scale·V
    assert step_norm <= clip * (1 + 1e-9)
    if clipped:
        assert metrics["trust_region_scale"] < 0.5
        np.testing.assert_allclose(step_norm, clip, rtol=1e-8)  # the region's boundary
    else:
        assert metrics["trust_region_scale"] == 1.0
        assert step_norm < clip

    # The parameters moved by exactly lr·(1 - momentum)·scale·V.
    for old, new, v in zip(before, numpy_params(variables), directions):
        np.testing.assert_allclose(new, old - learning_rate * (1 - momentum) * scale * v, rtol=1e-9, atol=1e-13)


# -- 5. cold start -----------------------------------------------------------------------------
def test_cold_start_is_clipped_momentum_sgd() -> None:
    rng = np.random.default_rng(6)
    n, d, c = 32, 4, 3
    x, y = classification_data(n, d, c, seed=6)
    layer = Dense(d, c, name="softmax", rng=rng, dtype=F64)
    xt, yt = tf.constant(x), tf.constant(y)
    generator = tf.random.Generator.from_seed(7)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        logits = layer(xt)
        return cross_entropy(logits, yt), sampled_nll(logits, generator)

    lr, momentum, max_norm = 0.5, 0.9, 0.05
    opt = KfacOptimizer(
        [layer.kernel, layer.bias], [layer], learning_rate=lr, momentum=momentum, max_grad_norm=max_norm, cold_iter=3
    )
    w, b = layer.kernel.numpy().copy(), layer.bias.numpy().copy()
    vel_w, vel_b = np.zeros_like(w), np.zeros_like(b)
    onehot = np.eye(c)[y]
    for _ in range(2):
        residual = (softmax_np(x @ w + b) - onehot) / n
        grad_w, grad_b = x.T @ residual, residual.sum(axis=0)
        norm = np.sqrt(np.sum(grad_w**2) + np.sum(grad_b**2))
        assert norm > max_norm  # the clipping is exercised
        factor = max_norm / max(norm, max_norm)
        vel_w, vel_b = momentum * vel_w + factor * grad_w, momentum * vel_b + factor * grad_b
        w, b = w - lr * vel_w, b - lr * vel_b
        metrics = opt.minimize(loss_fn)
        assert not metrics["kfac_step"]
        np.testing.assert_allclose(metrics["grad_norm"], norm, rtol=1e-10)
        np.testing.assert_allclose(layer.kernel.numpy(), w, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(layer.bias.numpy(), b, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("stats_update", [1, 3])
def test_statistics_are_a_running_mean_then_an_exponential_average(stats_update: int) -> None:
    """Every update during the cold start, then every ``stats_update``-th update (EMA weight per statistics update)."""
    model, loss_fn, generator = mlp_problem(seed=8)
    cold, decay, steps = 3, 0.8, 10
    opt = KfacOptimizer(
        model.variables, model.layers, learning_rate=0.05, cold_iter=cold, stats_decay=decay, stats_update=stats_update
    )
    expected = [(np.zeros((b.input_dim,) * 2), np.zeros((b.output_dim,) * 2)) for b in opt.blocks]
    kfac_steps, statistics_updates = [], []
    for k in range(steps):
        due = k < cold or (k - cold) % stats_update == 0
        if due:
            # This step's batch statistics at the current parameters, from the samples the update will draw.
            saved = generator.state.numpy().copy()
            with tf.GradientTape(persistent=True) as tape, capture() as recorded:
                _, fisher = loss_fn()
            generator.state.assign(saved)
            batch = []
            for block in opt.blocks:
                uses = recorded.uses_of(block.layer)
                grads = tape.gradient(fisher, [u.preactivations for u in uses])
                batch.append(tuple(m.numpy() for m in block.batch_statistics(uses, grads)))
            weight = k / (k + 1) if k < cold else decay
            expected = [
                (weight * ea + (1 - weight) * ba, weight * eg + (1 - weight) * bg)
                for (ea, eg), (ba, bg) in zip(expected, batch)
            ]
        before = opt.blocks[1].gradient_factor.numpy().copy()
        kfac_steps.append(bool(opt.minimize(loss_fn)["kfac_step"]))
        statistics_updates.append(not np.array_equal(before, opt.blocks[1].gradient_factor.numpy()))
        for block, (ea, eg) in zip(opt.blocks, expected):
            np.testing.assert_allclose(block.input_factor.numpy(), ea, rtol=1e-10, atol=1e-13)
            np.testing.assert_allclose(block.gradient_factor.numpy(), eg, rtol=1e-10, atol=1e-13)
    assert kfac_steps == [False] * cold + [True] * (steps - cold)
    assert statistics_updates == [k < cold or (k - cold) % stats_update == 0 for k in range(steps)]
    # The samples differ from step to step, so a wrong weighting would show.
    assert not np.allclose(expected[1][1], batch[1][1], rtol=1e-3)


# -- 6. K-FAC beats tuned SGD on an ill-conditioned classifier ---------------------------------
def test_kfac_reaches_a_target_loss_in_far_fewer_steps_than_tuned_sgd() -> None:
    rng = np.random.default_rng(9)
    n, d, c, hidden = 512, 8, 4, 16
    scales = np.logspace(-1, 1, d)  # feature scales 0.1 … 10: curvature spread over 10⁴
    x = rng.normal(size=(n, d)) * scales
    y = np.argmax(x @ (rng.normal(size=(d, c)) / scales[:, None]) + 0.5 * rng.gumbel(size=(n, c)), axis=1)
    xt, yt = tf.constant(x), tf.constant(y)
    target = 0.3  # from ≈ 1.4 at the (shared) initialisation

    model = Mlp((d, hidden, c), seed=10)
    initial = numpy_params(model.variables)
    generator = tf.random.Generator.from_seed(11)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(xt)
        return cross_entropy(logits, yt), sampled_nll(logits, generator)

    opt = KfacOptimizer(
        model.variables, model.layers, learning_rate=0.5, kfac_clip=0.01, damping=1e-3, max_grad_norm=10.0, cold_iter=5
    )
    kfac_steps = None
    for step in range(1, 301):
        if opt.minimize(loss_fn)["loss"] < target:  # loss before the update
            kfac_steps = step - 1
            break
    assert kfac_steps is not None, "K-FAC did not reach the target loss in 300 updates"

    # Plain (momentum) SGD from the same initialisation, best of a grid; budget: twice K-FAC's count.
    learning_rate = tf.Variable(0.0, dtype=F64)
    momentum = tf.Variable(0.0, dtype=F64)
    velocities = [tf.Variable(tf.zeros_like(v)) for v in model.variables]

    @tf.function
    def sgd_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = cross_entropy(model(xt), yt)
        for var, vel, grad in zip(model.variables, velocities, tape.gradient(loss, model.variables)):
            vel.assign(momentum * vel + grad)
            var.assign_sub(learning_rate * vel)
        return loss

    best: dict[tuple[float, float], float] = {}
    for mom in (0.0, 0.9):
        for lr in (0.01, 0.03, 0.1, 0.3, 1.0, 3.0):
            for var, value in zip(model.variables, initial):
                var.assign(value)
            for vel in velocities:
                vel.assign(tf.zeros_like(vel))
            learning_rate.assign(lr)
            momentum.assign(mom)
            losses = [float(sgd_step()) for _ in range(2 * kfac_steps + 1)]
            best[(lr, mom)] = min(losses)
            sgd_steps = next((i for i, loss in enumerate(losses) if loss < target), None)
            assert sgd_steps is None or sgd_steps >= 2 * kfac_steps, (kfac_steps, lr, mom, sgd_steps)
    print(f"K-FAC reached loss {target} after {kfac_steps} updates; best SGD loss in {2 * kfac_steps + 1}: {best}")
    # SGD did make progress at its best setting (the grid is not uniformly hopeless).
    assert min(best.values()) < 0.8, best


# -- 7. asynchronous eigendecomposition --------------------------------------------------------
def test_async_with_frozen_statistics_matches_sync() -> None:
    params = []
    for async_eigen in (False, True):
        model, loss_fn, _ = mlp_problem(seed=12)
        opt = KfacOptimizer(
            model.variables,
            model.layers,
            learning_rate=0.3,
            kfac_clip=0.01,
            cold_iter=3,
            stats_decay=1.0,  # statistics frozen after the cold start
            eigen_epsilon=0.0,
            async_eigen_decomp=async_eigen,
        )
        refreshed = []
        for _ in range(10):
            metrics = opt.minimize(loss_fn)
            waited = opt.wait_for_inverse(timeout=30)  # no-op (False) for the sync optimizer
            refreshed.append(bool(metrics["inverse_refreshed"]) or waited)
        assert refreshed[3:] == [True] * 7, refreshed
        params.append(numpy_params(model.variables))
    moved = max(np.abs(a - b).max() for a, b in zip(params[0], numpy_params(Mlp((5, 8, 3), 12).variables)))
    assert moved > 1e-2  # the K-FAC steps did something
    for sync_param, async_param in zip(*params):
        np.testing.assert_allclose(async_param, sync_param, rtol=1e-8, atol=1e-10)


@pytest.mark.timeout(120)
def test_async_does_not_hang_and_refreshes() -> None:
    model, loss_fn, _ = mlp_problem(seed=13, n=256)
    opt = KfacOptimizer(
        model.variables, model.layers, learning_rate=0.1, kfac_update=1, cold_iter=10, async_eigen_decomp=True
    )
    start = time.perf_counter()
    refreshes = sum(bool(opt.minimize(loss_fn)["inverse_refreshed"]) for _ in range(150))
    elapsed = time.perf_counter() - start
    assert refreshes >= 2, refreshes  # the synchronous first one, then at least one from the worker
    assert int(opt.iterations.numpy()) == 150
    assert all(np.all(np.isfinite(p)) for p in numpy_params(model.variables))
    assert elapsed < 100


# -- 7b. update plans: one straight-line step per plan ------------------------------------------
def _apply_update_step(
    opt: KfacOptimizer, loss_fn: LossFn, *, with_fisher: bool = True
) -> Callable[[UpdatePlan], Metrics]:
    """A compiled step calling ``apply_update`` with the plan given (its Fisher loss, or None)."""

    @tf.function
    def step(plan: UpdatePlan) -> Metrics:
        with tf.GradientTape(persistent=True) as tape, capture() as recorded:
            loss, fisher_loss = loss_fn()
        return opt.apply_update(tape, loss, fisher_loss if with_fisher else None, recorded, plan)

    return step


def _six_updates_with_scheduled_rates(as_input: bool) -> tuple[KfacOptimizer, list[np.ndarray], list[float]]:
    """Six updates (cold start, then K-FAC) at rates 0.05/k, told by ``set_hyperparameters``
    (an eager assignment) or, ``as_input``, passed to the compiled step."""
    model, loss_fn, _ = mlp_problem(seed=23)
    opt = KfacOptimizer(model.variables, model.layers, learning_rate=0.5, cold_iter=2, kfac_update=2)

    @tf.function(autograph=False)
    def step(plan: UpdatePlan, learning_rate: tf.Tensor) -> Metrics:
        with tf.GradientTape(persistent=True) as tape, capture() as recorded:
            loss, fisher_loss = loss_fn()
        grads = opt.gradients(tape, loss)
        stats = opt.batch_statistics(tape, fisher_loss, recorded) if plan.statistics else None
        return opt.apply_gradients(
            plan, loss, fisher_loss, grads, stats, learning_rate=learning_rate if as_input else None
        )

    used = []
    for k in range(6):
        rate = 0.05 / (k + 1)
        if not as_input:
            opt.set_hyperparameters(learning_rate=rate)
        metrics = step(opt.plan(), tf.constant(rate, tf.float64))
        used.append(opt.after_update(tf.nest.map_structure(lambda t: t.numpy(), metrics))["learning_rate"])
        assert opt.get_hyperparameters()["learning_rate"] == rate
    return opt, [v.numpy() for v in model.variables], used


def test_a_learning_rate_passed_to_the_step_is_assigned_inside_it_before_it_is_used() -> None:
    # the same updates, to the bit, as with the eager assignment; the variable then holds it
    _, plain, plain_rates = _six_updates_with_scheduled_rates(as_input=False)
    opt, given, given_rates = _six_updates_with_scheduled_rates(as_input=True)
    assert given_rates == plain_rates == [0.05 / (k + 1) for k in range(6)]
    for a, b in zip(plain, given):
        np.testing.assert_array_equal(a, b)
    # the optimizer knows the value it holds: telling it again is no change, another is
    opt.set_hyperparameters(learning_rate=0.05 / 6)
    assert opt.get_hyperparameters()["learning_rate"] == 0.05 / 6
    opt.set_hyperparameters(learning_rate=0.5)
    assert opt.get_hyperparameters()["learning_rate"] == 0.5


def _op_types(concrete: Any) -> list[str]:
    """The op types of a compiled step, the compiled functions it calls included (the parts
    every plan shares are functions of their own, inlined when TensorFlow instantiates it)."""
    graph_def = concrete.graph.as_graph_def()
    return [node.op for node in graph_def.node] + [
        node.op for function in graph_def.library.function for node in function.node_def
    ]


def test_update_plans_follow_the_iteration_count_and_compile_without_branches() -> None:
    model, loss_fn, _ = mlp_problem(seed=17)
    opt = KfacOptimizer(model.variables, model.layers, learning_rate=0.05, cold_iter=2, kfac_update=4, stats_update=2)
    plans = []
    for _ in range(9):
        plans.append(tuple(opt.plan()))
        opt.minimize(loss_fn)
    cold, stats, refresh, neither = (True, True, False), (False, True, False), (False, True, True), (False,) * 3
    #                  k: 0     1     2        3        4      5        6        7        8
    assert plans == [cold, cold, refresh, neither, stats, neither, refresh, neither, stats]
    assert opt.possible_plans() == [cold, refresh, neither, stats]  # what to compile ahead of time

    # Each plan's graph holds only its own work, and no branch at all.
    step = _apply_update_step(opt, loss_fn)
    for plan, has_eigh, has_statistics in [(refresh, True, True), (stats, False, True), (neither, False, False)]:
        ops = _op_types(step.get_concrete_function(UpdatePlan(*plan)))
        assert not set(ops) & {"If", "StatelessIf", "While", "StatelessWhile"}, plan
        assert ops.count("SelfAdjointEigV2") == (2 * len(opt.blocks) if has_eigh else 0), plan
        # In place: the iteration and skip counters, plus A and G of every block when statistics are due.
        assert ops.count("AssignAddVariableOp") == 2 + (2 * len(opt.blocks) if has_statistics else 0), plan

    async_opt = KfacOptimizer(model.variables, model.layers, cold_iter=0, async_eigen_decomp=True)
    assert not async_opt.plan().refresh  # decompositions happen on the worker, never in the step


@pytest.mark.parametrize("async_eigen", [False, True])
@pytest.mark.parametrize(("cold_iter", "stats_update", "kfac_update"), [(0, 1, 1), (3, 1, 5), (2, 4, 6), (1, 6, 4)])
def test_possible_plans_are_exactly_the_plans_updates_use(
    cold_iter: int, stats_update: int, kfac_update: int, async_eigen: bool
) -> None:
    model = Mlp((5, 8, 3), seed=20)
    opt = KfacOptimizer(
        model.variables,
        model.layers,
        cold_iter=cold_iter,
        stats_update=stats_update,
        kfac_update=kfac_update,
        async_eigen_decomp=async_eigen,
    )
    used = {opt._plan_at(k) for k in range(cold_iter + 3 * stats_update * kfac_update)}
    assert sorted(opt.possible_plans()) == sorted(used)
    huge = KfacOptimizer(model.variables, model.layers, kfac_update=10**9, stats_update=10**9 - 1)
    assert len(huge.possible_plans()) == 5  # found without walking the periods


def test_a_lazy_fisher_loss_is_computed_only_by_updates_that_take_statistics() -> None:
    model, loss_fn, _ = mlp_problem(seed=19)
    traced_with_fisher = []

    def lazy_loss_fn() -> tuple[tf.Tensor, Callable[[], tf.Tensor]]:
        loss, fisher_loss = loss_fn()

        def fisher() -> tf.Tensor:
            traced_with_fisher.append(True)  # runs when a step is traced, not per update
            return fisher_loss

        return loss, fisher

    opt = KfacOptimizer(model.variables, model.layers, learning_rate=0.05, cold_iter=1, kfac_update=3, stats_update=3)
    for _ in range(7):
        opt.minimize(lazy_loss_fn)
    assert len(traced_with_fisher) == sum(plan.statistics for plan in opt.possible_plans()) == 2
    assert int(opt.iterations.numpy()) == 7

    step = _apply_update_step(opt, loss_fn, with_fisher=False)
    with pytest.raises(ValueError, match="sampled-Fisher loss"):
        step(UpdatePlan(cold=False, statistics=True, refresh=False))


def test_a_stale_update_plan_is_refused_before_anything_changes() -> None:
    model, loss_fn, _ = mlp_problem(seed=18)
    opt = KfacOptimizer(model.variables, model.layers, learning_rate=0.05, cold_iter=1)
    opt.minimize(loss_fn)
    stale = opt.plan()._replace(cold=True)  # the cold start is over
    state = {name: v.numpy().copy() for name, v in opt.state_variables().items()}
    params = numpy_params(model.variables)
    step = _apply_update_step(opt, loss_fn)
    with pytest.raises(tf.errors.InvalidArgumentError, match="plan does not match the iteration count"):
        step(stale)
    for before, after in zip(params, numpy_params(model.variables)):
        np.testing.assert_array_equal(after, before)
    for name, variable in opt.state_variables().items():
        np.testing.assert_array_equal(variable.numpy(), state[name], err_msg=name)
    with pytest.raises(TypeError, match="UpdatePlan"):
        step((False, True, True))
    assert bool(step(opt.plan())["kfac_step"])  # the right plan works


# -- 8. bad numbers and bad arguments ----------------------------------------------------------
@pytest.mark.parametrize("where", ["input", "loss_only", "gradient_only"])
@pytest.mark.parametrize(
    ("warm", "kfac_update"),
    [(1, 1), (3, 1), (3, 2)],
    ids=["cold-start", "kfac-with-decomposition", "kfac-without-decomposition"],
)
def test_non_finite_batch_skips_the_update_and_training_continues(where: str, warm: int, kfac_update: int) -> None:
    model, _, generator = mlp_problem(seed=14)
    x, y = classification_data(64, 5, 3, seed=14)
    inputs = tf.Variable(x)
    yt = tf.constant(y)
    offset = tf.Variable(1.0, dtype=F64)  # log(offset) = -inf poisons the loss only, not gradients or statistics
    # √(gate·‖W‖²) with gate = 0 is 0, but its gradient gate·W/√0 is NaN: one kernel's
    # gradient only, with a finite loss and finite statistics.
    gate = tf.Variable(1.0, dtype=F64)

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        logits = model(inputs)
        kernel_term = tf.sqrt(gate * tf.reduce_sum(tf.square(model.layers[0].kernel))) * (1.0 - gate)
        loss = cross_entropy(logits, yt) + tf.math.log(offset) + kernel_term
        return loss, sampled_nll(logits, generator)

    opt = KfacOptimizer(model.variables, model.layers, learning_rate=0.1, cold_iter=2, kfac_update=kfac_update)
    for _ in range(warm):
        opt.minimize(loss_fn)
    plan = opt.plan()
    assert (plan.cold, plan.refresh) == (warm < 2, warm >= 2 and kfac_update == 1)
    state = {name: v.numpy().copy() for name, v in opt.state_variables().items()}
    params = numpy_params(model.variables)

    if where == "input":
        bad = x.copy()
        bad[5, 2] = np.nan
        inputs.assign(bad)
    elif where == "loss_only":
        offset.assign(0.0)
    else:
        gate.assign(0.0)
    with pytest.warns(RuntimeWarning, match="skipped"):
        metrics = opt.minimize(loss_fn)
    assert metrics["skipped"] and not metrics["kfac_step"]
    assert int(opt.skipped_updates.numpy()) == 1
    for before, after in zip(params, numpy_params(model.variables)):
        np.testing.assert_array_equal(after, before)
    for name, variable in opt.state_variables().items():
        if name != "skipped_updates":
            np.testing.assert_array_equal(variable.numpy(), state[name], err_msg=name)
        assert np.all(np.isfinite(variable.numpy())), name

    inputs.assign(x)
    offset.assign(1.0)
    gate.assign(1.0)
    metrics = opt.minimize(loss_fn)
    assert not metrics["skipped"] and metrics["kfac_step"] == (not plan.cold)
    assert int(opt.iterations.numpy()) == warm + 1
    assert any(not np.array_equal(a, b) for a, b in zip(params, numpy_params(model.variables)))
    assert all(np.all(np.isfinite(p)) for p in numpy_params(model.variables))


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"kfac_update": 0}, "kfac_update"),
        ({"stats_update": 0}, "stats_update"),
        ({"stats_update": 2.5}, "stats_update"),
        ({"momentum": 1.0}, "momentum"),
        ({"damping": -0.1}, "damping"),
        ({"kfac_clip": 0.0}, "kfac_clip"),
        ({"stats_decay": 0.0}, "stats_decay"),
        ({"learning_rate": float("nan")}, "learning_rate"),
    ],
)
def test_invalid_hyperparameters_are_rejected_by_name(kwargs: dict[str, float], name: str) -> None:
    layer = Dense(2, 2, name="d", rng=np.random.default_rng(0), dtype=F64)
    with pytest.raises(ValueError, match=name):
        KfacOptimizer([layer.kernel, layer.bias], [layer], **kwargs)  # type: ignore[arg-type]


def test_set_hyperparameters_validates_before_assigning() -> None:
    layer = Dense(2, 2, name="d", rng=np.random.default_rng(0), dtype=F64)
    opt = KfacOptimizer([layer.kernel, layer.bias], [layer], damping=0.01)
    with pytest.raises(ValueError, match="warp_speed"):
        opt.set_hyperparameters(warp_speed=9.0)
    with pytest.raises(ValueError, match="momentum"):
        opt.set_hyperparameters(damping=0.5, momentum=1.0)
    assert opt.get_hyperparameters()["damping"] == 0.01  # nothing half-applied
    opt.set_hyperparameters(damping=0.5)
    assert opt.hyperparameters["damping"].numpy() == 0.5


def test_registering_a_layer_whose_variables_are_not_trained_is_an_error() -> None:
    rng = np.random.default_rng(0)
    trained = Dense(2, 3, name="trained", rng=rng, dtype=F64)
    stranger = Dense(3, 2, name="stranger", rng=rng, dtype=F64)
    with pytest.raises(ValueError, match="stranger"):
        KfacOptimizer([trained.kernel, trained.bias, stranger.kernel], [trained, stranger])


def test_non_finite_factor_keeps_the_previous_eigendecomposition() -> None:
    model, loss_fn, _ = mlp_problem(seed=15)
    opt = KfacOptimizer(model.variables, model.layers, learning_rate=0.1, cold_iter=1)
    for _ in range(3):
        opt.minimize(loss_fn)
    block = opt.blocks[0]
    previous = [v.numpy().copy() for v in (block.input_eigenvalues, block.input_eigenvectors)]
    previous += [v.numpy().copy() for v in (block.gradient_eigenvalues, block.gradient_eigenvectors)]
    assert not np.allclose(previous[1], np.eye(block.input_dim))  # a real decomposition is installed
    poisoned = block.input_factor.numpy()
    poisoned[0, 1] = poisoned[1, 0] = np.nan
    block.input_factor.assign(poisoned)
    assert not bool(block.refresh_inverse(1e-6))
    assert not bool(tf.function(lambda: block.refresh_inverse(1e-6))())  # compiled path too
    current = [block.input_eigenvalues, block.input_eigenvectors, block.gradient_eigenvalues]
    for before, after in zip(previous, [*current, block.gradient_eigenvectors]):
        np.testing.assert_array_equal(after.numpy(), before)


# -- 9. weights shared across uses -------------------------------------------------------------
def test_shared_layer_statistics_pool_the_rows_of_every_use() -> None:
    rng = np.random.default_rng(16)
    batch, d_in, d_out = 4, 3, 2
    layer = Dense(d_in, d_out, name="shared", rng=rng, dtype=F64)
    x1, x2 = rng.normal(size=(batch, d_in)), rng.normal(loc=2.0, size=(batch, d_in))
    r1, r2 = rng.normal(size=(batch, d_out)), rng.normal(size=(batch, d_out))
    inputs = [tf.constant(x1), tf.constant(x2)]
    weights = [tf.constant(r1), tf.constant(r2)]

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        # Two "time steps"; the Fisher loss is a mean over all 2·batch rows, linear in s.
        outputs = [layer(x) for x in inputs]
        fisher = tf.add_n([tf.reduce_sum(s * w) for s, w in zip(outputs, weights)]) / (2 * batch)
        return tf.add_n([tf.reduce_mean(tf.square(s)) for s in outputs]), fisher

    opt = KfacOptimizer([layer.kernel, layer.bias], [layer], learning_rate=0.01, cold_iter=100)
    opt.minimize(loss_fn)
    rows = np.concatenate([np.concatenate([x1, x2]), np.ones((2 * batch, 1))], axis=1)
    want_a = sum(np.outer(r, r) for r in rows) / (2 * batch)
    per_row_grads = np.concatenate([r1, r2])  # N·∂L/∂s with N = 2·batch
    want_g = sum(np.outer(g, g) for g in per_row_grads) / (2 * batch)
    block = opt.blocks[0]
    np.testing.assert_allclose(block.input_factor.numpy(), want_a, atol=1e-12)
    np.testing.assert_allclose(block.gradient_factor.numpy(), want_g, atol=1e-12)
    # Not just the statistics of the last (or first) use.
    only_first = np.concatenate([x1, np.ones((batch, 1))], axis=1)
    assert not np.allclose(block.input_factor.numpy(), only_first.T @ only_first / batch, atol=1e-3)


# -- 10. a matrix without bias and a diagonal scale-and-shift block (layer norm) --------------
def _per_example_gradients(loss_of_row: Callable[[int], tf.Tensor], n: int, variables: list[tf.Variable]) -> np.ndarray:
    """Row ``i``: the gradient of example ``i``'s loss with respect to ``variables``, flattened."""
    rows = []
    for i in range(n):
        with tf.GradientTape() as tape:
            loss = loss_of_row(i)
        rows.append(np.concatenate([g.numpy().ravel() for g in tape.gradient(loss, variables)]))
    return np.stack(rows)


def test_a_dense_layer_without_bias_gets_a_block_without_the_bias_column() -> None:
    """``s = a W``: ``A = E[a aᵀ]`` (no column of ones) and ``kron(A, G)`` is the empirical
    Fisher of one input, as for a layer with bias."""
    rng = np.random.default_rng(20)
    d, c, n = 4, 3, 32
    layer = Dense(d, c, name="nobias", rng=rng, dtype=F64, use_bias=False)
    assert layer.bias is None and layer.parameters == (layer.kernel,)
    x = rng.normal(size=d)
    labels = tf.constant(rng.integers(0, c, n))
    xs = tf.constant(np.tile(x, (n, 1)))

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        nll = cross_entropy(layer(xs), labels)
        return nll, nll

    per_example = _per_example_gradients(
        lambda i: cross_entropy(layer(xs[i : i + 1]), labels[i : i + 1]), n, [layer.kernel]
    )  # at the parameters the statistics are taken at, before the update moves them
    opt = KfacOptimizer([layer.kernel], [layer], learning_rate=0.1, cold_iter=100)
    opt.minimize(loss_fn)
    block = opt.blocks[0]
    assert block.input_factor.shape == (d, d)
    np.testing.assert_allclose(block.input_factor.numpy(), np.outer(x, x), atol=1e-12)
    np.testing.assert_allclose(
        np.kron(block.input_factor.numpy(), block.gradient_factor.numpy()),
        per_example.T @ per_example / n,
        atol=1e-10,
    )
    (natural,) = opt.precondition([tf.ones_like(layer.kernel)])
    assert natural.shape == layer.kernel.shape


@pytest.mark.parametrize("scale", [True, False])
def test_scale_and_shift_block_is_the_diagonal_of_the_empirical_fisher(scale: bool) -> None:
    """``s = LN(a W) ⊙ γ + β``: the block holds ``diag(E[∇ℓ_i ∇ℓ_iᵀ])`` over γ and β exactly
    (float64, per-example gradients taken one example at a time), and preconditions by
    ``∇ / (diag + δ)``."""
    rng = np.random.default_rng(21)
    d, c, n = 4, 5, 16
    matrix = Dense(d, c, name="matrix", rng=rng, dtype=F64, use_bias=False)
    gain = ScaleAndShift(c, name="gain", scale=scale, dtype=F64)
    if scale:
        gain.scale.assign(rng.normal(1.0, 0.3, c))
    gain.shift.assign(rng.normal(0.0, 0.3, c))
    xs = tf.constant(rng.normal(size=(n, d)))
    labels = tf.constant(rng.integers(0, c, n))

    def logits(x: tf.Tensor) -> tf.Tensor:
        return gain(layer_norm(matrix(x)))

    def loss_fn() -> tuple[tf.Tensor, tf.Tensor]:
        nll = cross_entropy(logits(xs), labels)
        return nll, nll

    variables = [matrix.kernel, *gain.parameters]
    per_example = _per_example_gradients(
        lambda i: cross_entropy(logits(xs[i : i + 1]), labels[i : i + 1]), n, list(gain.parameters)
    )
    opt = KfacOptimizer(variables, [matrix, gain], learning_rate=0.1, cold_iter=100, eigen_epsilon=0.0)
    opt.minimize(loss_fn)
    block = opt.blocks[1]
    assert isinstance(block, ScaleAndShiftBlock)
    want = np.mean(per_example**2, axis=0)
    np.testing.assert_allclose(block.diagonal.numpy(), want, rtol=1e-10, atol=1e-14)
    assert np.all(want > 0) and want.size == c * (1 + scale)

    block.refresh_inverse(0.0)
    damping = 0.01
    gradient = [tf.constant(rng.normal(size=v.shape)) for v in variables]
    natural = opt.precondition(gradient)
    flat_gradient = np.concatenate([g.numpy().ravel() for g in gradient[1:]])
    np.testing.assert_allclose(
        np.concatenate([v.numpy().ravel() for v in natural[1:]]), flat_gradient / (want + damping), rtol=1e-10
    )
    values_a, values_g = block.eigenvalues()
    np.testing.assert_allclose(values_a, np.sort(want), rtol=1e-10)
    np.testing.assert_array_equal(values_g, [1.0])


def test_every_layer_type_has_a_block_and_others_are_refused() -> None:
    class Custom(KfacLayer):
        @property
        def parameters(self) -> tuple[tf.Variable, ...]:
            return ()

    assert {Dense, Conv2D, ScaleAndShift} <= set(BLOCKS)
    with pytest.raises(ValueError, match="no curvature block for Custom; supported: Dense, Conv2D, ScaleAndShift"):
        make_block(Custom(name="custom"))
