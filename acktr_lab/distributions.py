"""Action distributions per action space, for TensorFlow 2 (graph-safe inside ``tf.function``).

One policy head produces ``param_size`` numbers per observation; a
:class:`DistributionFactory` turns them into a :class:`Distribution`:

==================  ============================  ==========================================
action space        distribution                  head output
==================  ============================  ==========================================
``Discrete(n)``     :class:`Categorical`          ``n`` logits
``Box((d,))``       :class:`DiagGaussian`         ``d`` means (+ a state-independent log std)
``MultiDiscrete``   :class:`MultiCategorical`     ``Σ nvec`` logits, split per dimension
``MultiBinary(n)``  :class:`Bernoulli`            ``n`` logits
==================  ============================  ==========================================

Every distribution works with batched parameters (leading batch dimension ``B``)
and returns ``[B]`` tensors from :meth:`Distribution.log_prob`,
:meth:`Distribution.entropy` and :meth:`Distribution.kl`. Dtypes follow the
parameters (float32 by default). Samples come from an explicit
``tf.random.Generator``, so a seed reproduces them. Sampled actions are indices
(``int64``, without the space's ``start`` offset) for the categorical
distributions and floats for the Gaussian and Bernoulli ones;
:meth:`DistributionFactory.to_env_actions` converts them for ``env.step``.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import tensorflow as tf

SUPPORTED_ACTION_SPACES = "Discrete, Box (1-D), MultiDiscrete (1-D nvec), MultiBinary (1-D)"


class Distribution(abc.ABC):
    """A batch of action distributions π(·|s_b), b = 1..B."""

    @abc.abstractmethod
    def sample(self, generator: tf.random.Generator) -> tf.Tensor:
        """One action per batch element drawn with ``generator``."""

    @abc.abstractmethod
    def mode(self) -> tf.Tensor:
        """The most likely action per batch element (deterministic policy)."""

    @abc.abstractmethod
    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        """``log π(a_b|s_b)``, shape ``[B]``."""

    @abc.abstractmethod
    def entropy(self) -> tf.Tensor:
        """``H[π(·|s_b)] = -E[log π]``, shape ``[B]``."""

    @abc.abstractmethod
    def kl(self, other: Distribution) -> tf.Tensor:
        """``KL(self ‖ other) = E_self[log self - log other]``, shape ``[B]``."""

    @abc.abstractmethod
    def probabilities(self) -> tf.Tensor | tuple[tf.Tensor, tf.Tensor] | list[tf.Tensor]:
        """What SB2's ``action_probability`` returns when no actions are given."""

    @abc.abstractmethod
    def parameters(self) -> tuple[tf.Tensor, ...]:
        """The tensors that define the batch: what :meth:`DistributionFactory.rebuild` takes
        (e.g. to return a distribution from a compiled function)."""

    def neglogp(self, actions: tf.Tensor) -> tf.Tensor:
        """``-log π(a_b|s_b)``, shape ``[B]`` (SB2's name for the policy-gradient term)."""
        return -self.log_prob(actions)

    def _check_other(self, other: Distribution) -> None:
        if type(other) is not type(self):
            raise TypeError(f"KL between {type(self).__name__} and {type(other).__name__} is not defined")


def _gumbel_argmax(logits: tf.Tensor, generator: tf.random.Generator) -> tf.Tensor:
    """Gumbel-max sampling: ``argmax(logits + g)``, ``g = -log(-log u)``, ``u ~ U(tiny, 1)``."""
    # bfloat16 shares float32's exponent range (NumPy's finfo does not know it).
    np_dtype = np.float32 if logits.dtype == tf.bfloat16 else logits.dtype.as_numpy_dtype
    tiny = float(np.finfo(np_dtype).tiny)
    u = generator.uniform(tf.shape(logits), minval=tiny, maxval=1.0, dtype=logits.dtype)
    return tf.argmax(logits - tf.math.log(-tf.math.log(u)), axis=-1, output_type=tf.int64)


class Categorical(Distribution):
    """``π(a) = softmax(logits)_a`` over ``n`` actions; ``logits`` is ``[B, n]``.

    ``log π(a) = logits_a - logsumexp(logits)``; ``H = -Σ_a p_a log p_a``;
    ``KL(p‖q) = Σ_a p_a (log p_a - log q_a)`` (terms with ``p_a = 0`` count as 0).
    """

    def __init__(self, logits: tf.Tensor) -> None:
        self.logits = tf.convert_to_tensor(logits)
        if not self.logits.dtype.is_floating:
            self.logits = tf.cast(self.logits, tf.float32)

    def log_probs_all(self) -> tf.Tensor:
        """``log softmax(logits)``, shape ``[B, n]``."""
        return tf.nn.log_softmax(self.logits, axis=-1)

    def sample(self, generator: tf.random.Generator) -> tf.Tensor:
        """Gumbel-max sample, ``int64`` indices ``[B]``."""
        return _gumbel_argmax(self.logits, generator)

    def mode(self) -> tf.Tensor:
        """``argmax_a logits_a``, ``int64`` ``[B]``."""
        return tf.argmax(self.logits, axis=-1, output_type=tf.int64)

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        labels = tf.cast(actions, tf.int64)
        return -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=self.logits)

    def entropy(self) -> tf.Tensor:
        logp = self.log_probs_all()
        return -tf.reduce_sum(tf.math.multiply_no_nan(logp, tf.exp(logp)), axis=-1)

    def kl(self, other: Distribution) -> tf.Tensor:
        self._check_other(other)
        assert isinstance(other, Categorical)
        logp = self.log_probs_all()
        logq = other.log_probs_all()
        return tf.reduce_sum(tf.math.multiply_no_nan(logp - logq, tf.exp(logp)), axis=-1)

    def probabilities(self) -> tf.Tensor:
        """``softmax(logits)``, ``[B, n]``."""
        return tf.nn.softmax(self.logits, axis=-1)

    def parameters(self) -> tuple[tf.Tensor, ...]:
        return (self.logits,)


class DiagGaussian(Distribution):
    """``N(mean, diag(σ²))`` with ``σ = exp(log_std)``; ``mean`` is ``[B, d]``.

    ``log_std`` is state-independent (e.g. a ``[d]`` or ``[1, d]`` variable) and is
    broadcast to the shape of ``mean``. With ``z = (a - μ) / σ``::

        log π(a) = -½ Σ z² - Σ log σ - (d/2) log 2π
        H        = Σ (log σ + ½ log 2πe)
        KL(p‖q)  = Σ [log σ_q - log σ_p + (σ_p² + (μ_p - μ_q)²) / (2 σ_q²) - ½]
    """

    def __init__(self, mean: tf.Tensor, log_std: tf.Tensor) -> None:
        self.mean = tf.convert_to_tensor(mean)
        if not self.mean.dtype.is_floating:
            self.mean = tf.cast(self.mean, tf.float32)
        log_std = tf.cast(tf.convert_to_tensor(log_std), self.mean.dtype)
        self.log_std = tf.broadcast_to(log_std, tf.shape(self.mean))
        self.std = tf.exp(self.log_std)

    def sample(self, generator: tf.random.Generator) -> tf.Tensor:
        """``μ + σ ε``, ``ε ~ N(0, I)`` from ``generator``."""
        eps = generator.normal(tf.shape(self.mean), dtype=self.mean.dtype)
        return self.mean + self.std * eps

    def mode(self) -> tf.Tensor:
        return self.mean

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        a = tf.cast(actions, self.mean.dtype)
        z = (a - self.mean) / self.std
        d = tf.cast(tf.shape(self.mean)[-1], self.mean.dtype)
        return (
            -0.5 * tf.reduce_sum(tf.square(z), axis=-1)
            - tf.reduce_sum(self.log_std, axis=-1)
            - 0.5 * math.log(2.0 * math.pi) * d
        )

    def entropy(self) -> tf.Tensor:
        return tf.reduce_sum(self.log_std + 0.5 * math.log(2.0 * math.pi * math.e), axis=-1)

    def kl(self, other: Distribution) -> tf.Tensor:
        self._check_other(other)
        assert isinstance(other, DiagGaussian)
        return tf.reduce_sum(
            other.log_std
            - self.log_std
            + (tf.square(self.std) + tf.square(self.mean - other.mean)) / (2.0 * tf.square(other.std))
            - 0.5,
            axis=-1,
        )

    def probabilities(self) -> tuple[tf.Tensor, tf.Tensor]:
        """``(mean, std)``, each ``[B, d]``."""
        return self.mean, self.std

    def parameters(self) -> tuple[tf.Tensor, ...]:
        return self.mean, self.log_std


class MultiCategorical(Distribution):
    """Independent categoricals, one per dimension: ``π(a) = Π_i softmax(l_i)_{a_i}``.

    ``logits`` is ``[B, Σ nvec]``, split into ``[B, nvec_i]`` blocks. Log
    probabilities, entropies and KLs are sums over dimensions; actions are
    ``[B, len(nvec)]``.
    """

    def __init__(self, logits: tf.Tensor, nvec: list[int] | tuple[int, ...] | np.ndarray) -> None:
        self.nvec = [int(n) for n in np.asarray(nvec).ravel()]
        logits = tf.convert_to_tensor(logits)
        self.logits = logits
        self.categoricals = [Categorical(block) for block in tf.split(logits, self.nvec, axis=-1)]

    def sample(self, generator: tf.random.Generator) -> tf.Tensor:
        return tf.stack([c.sample(generator) for c in self.categoricals], axis=-1)

    def mode(self) -> tf.Tensor:
        return tf.stack([c.mode() for c in self.categoricals], axis=-1)

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        actions = tf.convert_to_tensor(actions)
        parts = tf.unstack(actions, num=len(self.nvec), axis=-1)
        return tf.add_n([c.log_prob(a) for c, a in zip(self.categoricals, parts)])

    def entropy(self) -> tf.Tensor:
        return tf.add_n([c.entropy() for c in self.categoricals])

    def kl(self, other: Distribution) -> tf.Tensor:
        self._check_other(other)
        assert isinstance(other, MultiCategorical)
        if other.nvec != self.nvec:
            raise ValueError(f"nvec differ: {self.nvec} vs {other.nvec}")
        return tf.add_n([p.kl(q) for p, q in zip(self.categoricals, other.categoricals)])

    def probabilities(self) -> list[tf.Tensor]:
        """One ``[B, nvec_i]`` probability tensor per dimension."""
        return [c.probabilities() for c in self.categoricals]

    def parameters(self) -> tuple[tf.Tensor, ...]:
        return (self.logits,)


class Bernoulli(Distribution):
    """Independent Bernoullis ``p = sigmoid(logits)``; ``logits`` is ``[B, n]``.

    ``log π(a) = Σ [a log p + (1 - a) log(1 - p)]``;
    ``H = -Σ [p log p + (1 - p) log(1 - p)]``;
    ``KL(p‖q) = Σ [p (log p - log q) + (1 - p)(log(1 - p) - log(1 - q))]``.
    Samples and modes are 0/1 floats of the logits' dtype (as in SB2).
    """

    def __init__(self, logits: tf.Tensor) -> None:
        self.logits = tf.convert_to_tensor(logits)
        if not self.logits.dtype.is_floating:
            self.logits = tf.cast(self.logits, tf.float32)

    def sample(self, generator: tf.random.Generator) -> tf.Tensor:
        """``1[u < p]``, ``u ~ U(0, 1)`` from ``generator``."""
        u = generator.uniform(tf.shape(self.logits), dtype=self.logits.dtype)
        return tf.cast(u < tf.sigmoid(self.logits), self.logits.dtype)

    def mode(self) -> tf.Tensor:
        """``1[p > ½]``."""
        return tf.cast(self.logits > 0, self.logits.dtype)

    def log_prob(self, actions: tf.Tensor) -> tf.Tensor:
        labels = tf.cast(actions, self.logits.dtype)
        return -tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=self.logits), axis=-1)

    def entropy(self) -> tf.Tensor:
        p = tf.sigmoid(self.logits)
        return tf.reduce_sum(tf.nn.sigmoid_cross_entropy_with_logits(labels=p, logits=self.logits), axis=-1)

    def kl(self, other: Distribution) -> tf.Tensor:
        self._check_other(other)
        assert isinstance(other, Bernoulli)
        p = tf.sigmoid(self.logits)
        log_p, log_1mp = tf.math.log_sigmoid(self.logits), tf.math.log_sigmoid(-self.logits)
        log_q, log_1mq = tf.math.log_sigmoid(other.logits), tf.math.log_sigmoid(-other.logits)
        return tf.reduce_sum(
            tf.math.multiply_no_nan(log_p - log_q, p) + tf.math.multiply_no_nan(log_1mp - log_1mq, 1.0 - p),
            axis=-1,
        )

    def probabilities(self) -> tf.Tensor:
        """``sigmoid(logits)``, ``[B, n]``."""
        return tf.sigmoid(self.logits)

    def parameters(self) -> tuple[tf.Tensor, ...]:
        return (self.logits,)


@dataclass(frozen=True)
class DistributionFactory:
    """Builds the :class:`Distribution` for one action space from a policy head's output.

    Attributes:
        action_space: the (single-env) action space.
        kind: ``"categorical"``, ``"diag_gaussian"``, ``"multi_categorical"`` or
            ``"bernoulli"``.
        param_size: policy-head outputs per observation (``n``, ``d``, ``Σ nvec``, ``n``).
        needs_log_std: whether :meth:`build` needs a state-independent ``log_std``
            (Box only).
        action_dim: components per action (1 for Discrete).
        action_shape: shape of one action as the distribution returns it
            (``()`` for Discrete).
        action_dtype: the action space's NumPy dtype (what ``env.step`` expects).
    """

    action_space: gym.spaces.Space
    kind: str
    param_size: int
    needs_log_std: bool
    action_dim: int
    action_shape: tuple[int, ...]
    action_dtype: np.dtype

    def build(self, head_output: tf.Tensor, log_std: tf.Tensor | None = None) -> Distribution:
        """The distribution for a ``[B, param_size]`` head output (and ``log_std`` for Box)."""
        if self.kind == "categorical":
            return Categorical(head_output)
        if self.kind == "diag_gaussian":
            if log_std is None:
                raise ValueError("a Box action space needs log_std to build a DiagGaussian")
            return DiagGaussian(head_output, log_std)
        if self.kind == "multi_categorical":
            assert isinstance(self.action_space, gym.spaces.MultiDiscrete)
            return MultiCategorical(head_output, self.action_space.nvec)
        return Bernoulli(head_output)

    def rebuild(self, parameters: tuple[tf.Tensor, ...]) -> Distribution:
        """The distribution whose :meth:`Distribution.parameters` are ``parameters``."""
        return self.build(*parameters)

    def to_env_actions(self, actions: np.ndarray | tf.Tensor, clip: bool = True) -> np.ndarray:
        """Distribution actions → actions for ``env.step`` (NumPy, ``action_dtype``).

        Adds ``start`` for Discrete/MultiDiscrete; for Box clips to ``[low, high]``
        when ``clip`` (SB2 clips the action it sends, and trains on the unclipped one).
        """
        a = np.asarray(actions)
        space = self.action_space
        if isinstance(space, gym.spaces.Box):
            if clip:
                a = np.clip(a, space.low, space.high)
        elif isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            a = a.astype(np.int64) + np.asarray(space.start, dtype=np.int64)
        return a.astype(self.action_dtype, copy=False)

    def from_env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`to_env_actions` (without clipping): subtracts ``start``."""
        a = np.asarray(actions)
        space = self.action_space
        if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
            return a.astype(np.int64) - np.asarray(space.start, dtype=np.int64)
        return a


def _unsupported(space: object, why: str = "") -> ValueError:
    extra = f" ({why})" if why else ""
    return ValueError(f"unsupported action space {space!r}{extra}; supported: {SUPPORTED_ACTION_SPACES}")


def make_distribution_factory(action_space: gym.spaces.Space) -> DistributionFactory:
    """The :class:`DistributionFactory` for ``action_space``.

    Raises:
        ValueError: for Dict, Tuple, Text, Graph, ... and for non-1-D Box,
            MultiDiscrete or MultiBinary spaces (the message names the space and
            lists the supported ones).
    """
    space = action_space
    if isinstance(space, gym.spaces.Discrete):
        return DistributionFactory(space, "categorical", int(space.n), False, 1, (), np.dtype(space.dtype))
    if isinstance(space, gym.spaces.Box):
        if len(space.shape) != 1:
            raise _unsupported(space, f"Box actions must be 1-D, got shape {space.shape}")
        if not np.issubdtype(space.dtype, np.floating):
            raise _unsupported(space, f"Box actions must be floating point, got {space.dtype}")
        d = int(space.shape[0])
        return DistributionFactory(space, "diag_gaussian", d, True, d, (d,), np.dtype(space.dtype))
    if isinstance(space, gym.spaces.MultiDiscrete):
        if space.nvec.ndim != 1:
            raise _unsupported(space, f"nvec must be 1-D, got shape {space.nvec.shape}")
        k = len(space.nvec)
        return DistributionFactory(
            space,
            "multi_categorical",
            int(np.sum(space.nvec)),
            False,
            k,
            (k,),
            np.dtype(space.dtype),
        )
    if isinstance(space, gym.spaces.MultiBinary):
        if len(space.shape) != 1:
            raise _unsupported(space, f"MultiBinary must be 1-D, got shape {space.shape}")
        n = int(space.shape[0])
        return DistributionFactory(space, "bernoulli", n, False, n, (n,), np.dtype(space.dtype))
    raise _unsupported(space)
