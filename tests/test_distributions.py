"""Action distributions against NumPy closed forms, sampling frequencies and seeding."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import tensorflow as tf

from acktr_lab.distributions import (
    Bernoulli,
    Categorical,
    DiagGaussian,
    MultiCategorical,
    make_distribution_factory,
)

N_SAMPLES = 20_000


def np_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def np_sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


LOGITS = np.array([[0.0, 1.0, 2.0, -1.0], [3.0, 0.5, 0.5, 0.0]], dtype=np.float32)
LOGITS_Q = np.array([[1.0, 0.0, 0.0, 0.0], [-1.0, 2.0, 0.0, 1.0]], dtype=np.float32)


# ----------------------------------------------------------------------------- Categorical
def test_categorical_closed_forms() -> None:
    p, q = np_softmax(LOGITS.astype(np.float64)), np_softmax(LOGITS_Q.astype(np.float64))
    dist, other = Categorical(LOGITS), Categorical(LOGITS_Q)
    actions = np.array([2, 0])
    np.testing.assert_allclose(dist.log_prob(actions), np.log(p[[0, 1], actions]), rtol=1e-5)
    np.testing.assert_allclose(dist.neglogp(actions), -np.log(p[[0, 1], actions]), rtol=1e-5)
    np.testing.assert_allclose(dist.entropy(), -(p * np.log(p)).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(dist.kl(other), (p * (np.log(p) - np.log(q))).sum(-1), rtol=1e-5)
    np.testing.assert_allclose(dist.kl(dist), [0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(dist.probabilities(), p, rtol=1e-5)
    np.testing.assert_array_equal(dist.mode(), [2, 0])
    assert dist.log_prob(actions).shape == (2,)


def test_categorical_masked_logit_is_finite() -> None:
    dist = Categorical(np.array([[0.0, 0.0, -np.inf]], dtype=np.float32))
    np.testing.assert_allclose(dist.entropy(), [math.log(2.0)], rtol=1e-6)
    np.testing.assert_allclose(dist.kl(dist), [0.0], atol=1e-7)


def test_categorical_sample_frequencies_and_seed() -> None:
    logits = np.tile(LOGITS[:1], (N_SAMPLES, 1))
    dist = Categorical(logits)
    samples = dist.sample(tf.random.Generator.from_seed(1)).numpy()
    assert samples.dtype == np.int64 and samples.shape == (N_SAMPLES,)
    freq = np.bincount(samples, minlength=4) / N_SAMPLES
    np.testing.assert_allclose(freq, np_softmax(LOGITS[:1])[0], atol=0.015)
    again = dist.sample(tf.random.Generator.from_seed(1)).numpy()
    np.testing.assert_array_equal(samples, again)
    other = dist.sample(tf.random.Generator.from_seed(2)).numpy()
    assert not np.array_equal(samples, other)


def test_categorical_inside_tf_function() -> None:
    gen = tf.random.Generator.from_seed(0)

    @tf.function
    def step(logits: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        dist = Categorical(logits)
        a = dist.sample(gen)
        return a, dist.log_prob(a)

    a, logp = step(tf.constant(LOGITS))
    assert a.shape == (2,) and logp.shape == (2,)


# ---------------------------------------------------------------------------- DiagGaussian
MEAN = np.array([[0.0, 1.0, -2.0], [0.5, 0.0, 3.0]], dtype=np.float32)
LOG_STD = np.array([0.1, -0.5, 0.3], dtype=np.float32)


def test_gaussian_closed_forms() -> None:
    dist = DiagGaussian(MEAN, LOG_STD)
    a = np.array([[0.3, 0.7, -1.0], [0.0, 0.2, 2.5]], dtype=np.float32)
    m, s = MEAN.astype(np.float64), np.exp(LOG_STD.astype(np.float64))
    expected = (-0.5 * ((a - m) / s) ** 2 - np.log(s) - 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(dist.log_prob(a), expected, rtol=1e-5)
    ent = (np.log(s) + 0.5 * np.log(2 * np.pi * np.e)).sum() * np.ones(2)
    np.testing.assert_allclose(dist.entropy(), ent, rtol=1e-5)
    mean_q, log_std_q = MEAN + 0.4, np.array([[0.0, 0.2, -0.1]], dtype=np.float32)
    other = DiagGaussian(mean_q, log_std_q)
    sq = np.exp(log_std_q.astype(np.float64))
    kl = (np.log(sq / s) + (s**2 + (m - mean_q) ** 2) / (2 * sq**2) - 0.5).sum(-1)
    np.testing.assert_allclose(dist.kl(other), kl, rtol=1e-5)
    np.testing.assert_allclose(dist.kl(dist), [0.0, 0.0], atol=1e-6)
    mean, std = dist.probabilities()
    np.testing.assert_allclose(mean, MEAN)
    np.testing.assert_allclose(std, np.broadcast_to(s, MEAN.shape), rtol=1e-6)
    np.testing.assert_array_equal(dist.mode(), MEAN)


def test_gaussian_samples_and_seed() -> None:
    mean = np.tile(MEAN[:1], (N_SAMPLES, 1))
    dist = DiagGaussian(mean, LOG_STD[None])
    x = dist.sample(tf.random.Generator.from_seed(3)).numpy()
    np.testing.assert_allclose(x.mean(0), MEAN[0], atol=0.03)
    np.testing.assert_allclose(x.std(0), np.exp(LOG_STD), rtol=0.03)
    np.testing.assert_array_equal(x, dist.sample(tf.random.Generator.from_seed(3)).numpy())


def test_gaussian_float64() -> None:
    dist = DiagGaussian(MEAN.astype(np.float64), LOG_STD)
    assert dist.log_prob(MEAN).dtype == tf.float64
    assert dist.sample(tf.random.Generator.from_seed(0)).dtype == tf.float64


# ------------------------------------------------------------------------ MultiCategorical
def test_multicategorical_sums_independent_parts() -> None:
    nvec = [2, 3]
    logits = np.array([[0.0, 1.0, 0.5, -0.5, 2.0]], dtype=np.float32)
    logits_q = np.array([[1.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
    dist, other = MultiCategorical(logits, nvec), MultiCategorical(logits_q, nvec)
    l64, q64 = logits.astype(np.float64), logits_q.astype(np.float64)
    p0, p1 = np_softmax(l64[:, :2]), np_softmax(l64[:, 2:])
    q0, q1 = np_softmax(q64[:, :2]), np_softmax(q64[:, 2:])
    a = np.array([[1, 2]])
    np.testing.assert_allclose(dist.log_prob(a), np.log(p0[0, 1] * p1[0, 2]), rtol=1e-5)
    h = -(p0 * np.log(p0)).sum() - (p1 * np.log(p1)).sum()
    np.testing.assert_allclose(dist.entropy(), [h], rtol=1e-5)
    kl = (p0 * np.log(p0 / q0)).sum() + (p1 * np.log(p1 / q1)).sum()
    np.testing.assert_allclose(dist.kl(other), [kl], rtol=1e-5)
    np.testing.assert_allclose(dist.kl(dist), [0.0], atol=1e-6)
    np.testing.assert_array_equal(dist.mode(), [[1, 2]])
    probs = dist.probabilities()
    assert isinstance(probs, list) and len(probs) == 2
    np.testing.assert_allclose(probs[1], p1, rtol=1e-5)


def test_multicategorical_sample_frequencies() -> None:
    nvec = [2, 3]
    row = np.array([[0.0, 1.0, 0.5, -0.5, 2.0]], dtype=np.float32)
    dist = MultiCategorical(np.tile(row, (N_SAMPLES, 1)), nvec)
    s = dist.sample(tf.random.Generator.from_seed(4)).numpy()
    assert s.shape == (N_SAMPLES, 2)
    np.testing.assert_allclose(np.bincount(s[:, 0]) / N_SAMPLES, np_softmax(row[0, :2]), atol=0.015)
    np.testing.assert_allclose(np.bincount(s[:, 1]) / N_SAMPLES, np_softmax(row[0, 2:]), atol=0.015)


# ------------------------------------------------------------------------------- Bernoulli
def test_bernoulli_closed_forms() -> None:
    logits = np.array([[0.0, 2.0, -1.0]], dtype=np.float32)
    logits_q = np.array([[1.0, -1.0, 0.5]], dtype=np.float32)
    p, q = np_sigmoid(logits.astype(np.float64)), np_sigmoid(logits_q.astype(np.float64))
    dist, other = Bernoulli(logits), Bernoulli(logits_q)
    a = np.array([[1.0, 0.0, 1.0]])
    np.testing.assert_allclose(dist.log_prob(a), (a * np.log(p) + (1 - a) * np.log(1 - p)).sum(-1), rtol=1e-5)
    h = -(p * np.log(p) + (1 - p) * np.log(1 - p)).sum(-1)
    np.testing.assert_allclose(dist.entropy(), h, rtol=1e-5)
    kl = (p * np.log(p / q) + (1 - p) * np.log((1 - p) / (1 - q))).sum(-1)
    np.testing.assert_allclose(dist.kl(other), kl, rtol=1e-5)
    np.testing.assert_allclose(dist.kl(dist), [0.0], atol=1e-6)
    np.testing.assert_allclose(dist.probabilities(), p, rtol=1e-6)
    np.testing.assert_array_equal(dist.mode(), [[0.0, 1.0, 0.0]])


def test_bernoulli_sample_frequencies_and_seed() -> None:
    logits = np.tile(np.array([[0.0, 2.0, -1.0]], dtype=np.float32), (N_SAMPLES, 1))
    dist = Bernoulli(logits)
    s = dist.sample(tf.random.Generator.from_seed(5)).numpy()
    assert set(np.unique(s)) <= {0.0, 1.0}
    np.testing.assert_allclose(s.mean(0), np_sigmoid(logits[0]), atol=0.015)
    np.testing.assert_array_equal(s, dist.sample(tf.random.Generator.from_seed(5)).numpy())


def test_kl_between_different_kinds_is_an_error() -> None:
    with pytest.raises(TypeError):
        Categorical(LOGITS).kl(Bernoulli(LOGITS))


# --------------------------------------------------------------------------------- factory
def test_factory_per_space() -> None:
    f = make_distribution_factory(gym.spaces.Discrete(4, start=-1))
    assert (f.param_size, f.needs_log_std, f.action_dim, f.action_shape) == (4, False, 1, ())
    assert isinstance(f.build(LOGITS), Categorical)
    np.testing.assert_array_equal(f.to_env_actions(np.array([0, 3])), [-1, 2])
    np.testing.assert_array_equal(f.from_env_actions(np.array([-1, 2])), [0, 3])

    box = gym.spaces.Box(-1.0, 1.0, shape=(3,), dtype=np.float32)
    f = make_distribution_factory(box)
    assert (f.param_size, f.needs_log_std, f.action_dim, f.action_shape) == (3, True, 3, (3,))
    assert f.action_dtype == np.float32
    assert isinstance(f.build(MEAN, LOG_STD), DiagGaussian)
    with pytest.raises(ValueError, match="log_std"):
        f.build(MEAN)
    np.testing.assert_array_equal(f.to_env_actions(MEAN[1:]), [[0.5, 0.0, 1.0]])

    f = make_distribution_factory(gym.spaces.MultiDiscrete([2, 3]))
    assert (f.param_size, f.action_dim, f.action_shape) == (5, 2, (2,))
    assert isinstance(f.build(np.zeros((1, 5), np.float32)), MultiCategorical)

    f = make_distribution_factory(gym.spaces.MultiBinary(3))
    assert (f.param_size, f.action_dim, f.action_dtype) == (3, 3, np.int8)
    assert isinstance(f.build(np.zeros((1, 3), np.float32)), Bernoulli)
    assert f.to_env_actions(np.array([[1.0, 0.0, 1.0]])).dtype == np.int8


@pytest.mark.parametrize(
    "space",
    [
        gym.spaces.Dict({"a": gym.spaces.Discrete(2)}),
        gym.spaces.Tuple((gym.spaces.Discrete(2),)),
        gym.spaces.Text(5),
        gym.spaces.Box(-1.0, 1.0, shape=(2, 2)),
        gym.spaces.MultiDiscrete([[2, 3], [2, 2]]),
        gym.spaces.MultiBinary([2, 2]),
    ],
    ids=["dict", "tuple", "text", "box2d", "multidiscrete2d", "multibinary2d"],
)
def test_unsupported_spaces(space: gym.spaces.Space) -> None:
    with pytest.raises(ValueError, match="supported: Discrete, Box") as info:
        make_distribution_factory(space)
    assert type(space).__name__ in str(info.value)
