"""Acting in rollouts without a TensorFlow call per step: a feedforward MLP policy in NumPy.

A rollout step needs ``π(·|o)`` and ``V(o)`` for a handful of envs. Through TensorFlow each
call costs ≈ 0.35 ms, mostly dispatch; the same 64-64 MLP in NumPy costs a few tens of
microseconds. :class:`NumpyActor` holds a copy of the policy's weights, taken by
:meth:`~NumpyActor.refresh` at the start of every rollout (parameters change only in
updates, between rollouts), and computes the same forward pass::

    x = clip((o − μ) / √(σ² + 10⁻⁸), −10, 10)     (with normalize_observations)
    h_pi = f(… f(x W + b) …),  h_vf likewise      (SB2's shared, pi and vf layers)
    head = h_pi W_pi + b_pi,   V = h_vf W_vf + b_vf

in float32, as TensorFlow does (agreement to float32 round-off; see the tests).

Sampling stays on the learner's seeded ``tf.random.Generator``: the noise of a whole
rollout is drawn in one call when it starts (:meth:`RolloutActor.begin_rollout`), and
each step applies it exactly as :mod:`acktr_lab.distributions` does:

==================  ============================================  ===========================
distribution        sample                                        noise
==================  ============================================  ===========================
Categorical         ``argmax(logits − log(−log u))``              ``u ~ U(tiny, 1)``
DiagGaussian        ``μ + exp(log σ) ε``                          ``ε ~ N(0, 1)``
MultiCategorical    a Categorical per block of logits             ``u ~ U(tiny, 1)``
Bernoulli           ``1[u < sigmoid(logits)]``                    ``u ~ U(0, 1)``
==================  ============================================  ===========================

So a seed still gives the same run, and snapshots and model files need nothing new.
Policies it cannot mirror (recurrent, CNN, other dtypes) act through TensorFlow;
:func:`numpy_acting_unsupported` says why.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.compiled import ConcreteCalls, compile_function
from acktr_lab.policies import ActorCriticPolicy
from acktr_lab.preprocessing import image_layout

NumpyActivation = Callable[[np.ndarray], np.ndarray]

#: NumPy twins of :data:`acktr_lab.policies.ACTIVATIONS` (TensorFlow's definitions).
NUMPY_ACTIVATIONS: dict[str, NumpyActivation] = {
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "elu": lambda x: np.where(x > 0, x, np.expm1(np.minimum(x, 0.0))),
    "selu": lambda x: (
        np.float32(1.0507009873554805)
        * np.where(x > 0, x, np.float32(1.6732632423543772) * np.expm1(np.minimum(x, 0.0)))
    ),
    "sigmoid": lambda x: 0.5 * (np.tanh(0.5 * x) + 1.0),
    "softplus": lambda x: np.logaddexp(x, np.float32(0.0)),
    "swish": lambda x: x * (0.5 * (np.tanh(0.5 * x) + 1.0)),
    "leaky_relu": lambda x: np.where(x > 0, x, np.float32(0.2) * x),
}


def numpy_acting_unsupported(policy: ActorCriticPolicy) -> str | None:
    """Why ``policy`` cannot act through :class:`NumpyActor`, or ``None`` if it can."""
    if policy.state_shapes:
        return "a recurrent policy"
    if type(policy).features is not ActorCriticPolicy.features or policy.feature_extraction != "mlp":
        return f"{type(policy).__name__} has its own feature extractor"
    space = policy.observation_space
    if isinstance(space, gym.spaces.Box) and image_layout(space) is not None:
        return "image observations"
    if policy.dtype != tf.float32:
        return f"the policy computes in {policy.dtype.name}"
    if policy.act_fun_name not in NUMPY_ACTIVATIONS:
        return f"no NumPy form of act_fun {policy.act_fun_name!r}"
    return None


def _preprocess(obs: np.ndarray, space: gym.Space) -> np.ndarray:
    """``[B, d]`` float32 network inputs, as :func:`acktr_lab.preprocessing.preprocess_observation`."""
    if isinstance(space, gym.spaces.Discrete):
        index = np.asarray(obs, np.int64).reshape(-1) - int(space.start)
        return np.eye(int(space.n), dtype=np.float32)[index]
    if isinstance(space, gym.spaces.MultiDiscrete):
        nvec = space.nvec.ravel()
        start = np.broadcast_to(space.start, space.nvec.shape).ravel()
        flat = np.asarray(obs, np.int64).reshape(-1, len(nvec)) - start
        return np.concatenate([np.eye(int(n), dtype=np.float32)[flat[:, i]] for i, n in enumerate(nvec)], axis=1)
    x = np.asarray(obs, np.float32)
    return x.reshape(x.shape[0], -1)


class NumpyActor:
    """A feedforward MLP policy's forward pass and action choice, in NumPy (module docstring)."""

    def __init__(self, policy: ActorCriticPolicy) -> None:
        reason = numpy_acting_unsupported(policy)
        if reason is not None:
            raise ValueError(f"NumpyActor cannot mirror this policy: {reason}")
        self.policy = policy
        self.activation = NUMPY_ACTIVATIONS[policy.act_fun_name]
        self.factory = policy.distribution_factory
        if self.factory.kind == "multi_categorical":
            assert isinstance(policy.action_space, gym.spaces.MultiDiscrete)
            self.splits = np.cumsum(policy.action_space.nvec.ravel())[:-1]
        p = policy
        self._groups = [p.shared_layers, p.pi_layers, p.vf_layers, [p.pi_head], [p.value_head]]
        extras = [p.log_std] if p.log_std is not None else []
        if p.normalize_observations:
            extras += [p.observation_mean, p.observation_var]
        self._variables = [v for group in self._groups for layer in group for v in (layer.kernel, layer.bias)] + extras
        # one compiled read of every variable: a refresh is one TensorFlow call, not two eager
        # ops per variable
        self._read = compile_function(self.weight_tensors)
        self.refresh()

    def weight_tensors(self) -> list[tf.Tensor]:
        """The values :meth:`refresh` takes, read (in a compiled function: where it is called)."""
        return [v.read_value() for v in self._variables]

    def refresh(self, weights: Sequence[np.ndarray] | None = None) -> None:
        """Copy the policy's current weights (and observation statistics), or take ``weights``,
        :meth:`weight_tensors` as read by the caller just now."""
        values = iter([t.numpy() for t in self._read()] if weights is None else weights)
        self.shared, self.pi, self.vf, (self.pi_head,), (self.value_head,) = [
            [(next(values), next(values)) for _ in group] for group in self._groups
        ]
        self.std = None if self.policy.log_std is None else np.exp(next(values)[0])
        self.observation_statistics = None
        if self.policy.normalize_observations:
            mean, var = next(values), next(values)
            self.observation_statistics = (mean, np.sqrt(var + np.float32(1e-8)))

    def forward(self, observations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(head output [B, param_size], V [B])`` for raw observations, float32."""
        x = _preprocess(observations, self.policy.observation_space)
        if self.observation_statistics is not None:
            mean, scale = self.observation_statistics
            x = np.clip((x - mean) / scale, -10.0, 10.0)
        for kernel, bias in self.shared:
            x = self.activation(x @ kernel + bias)
        pi, vf = x, x
        for kernel, bias in self.pi:
            pi = self.activation(pi @ kernel + bias)
        for kernel, bias in self.vf:
            vf = self.activation(vf @ kernel + bias)
        head = pi @ self.pi_head[0] + self.pi_head[1]
        values = (vf @ self.value_head[0] + self.value_head[1])[:, 0]
        return head, values

    def choose(self, head: np.ndarray, noise: np.ndarray | None) -> np.ndarray:
        """The action for each row of ``head``: the mode without noise, else a sample."""
        kind = self.factory.kind
        if kind == "diag_gaussian":
            return head if noise is None else head + self.std * noise
        if kind == "bernoulli":
            if noise is None:
                return (head > 0).astype(head.dtype)
            return (noise < 0.5 * (np.tanh(0.5 * head) + 1.0)).astype(head.dtype)
        scores = head if noise is None else head - np.log(-np.log(noise))
        if kind == "categorical":
            return np.argmax(scores, axis=-1).astype(np.int64)
        return np.stack([np.argmax(block, axis=-1) for block in np.split(scores, self.splits, axis=-1)], axis=-1)


class RolloutActor:
    """The collector's actor for a feedforward MLP policy: NumPy forward passes, the rollout's
    noise drawn in one call from the learner's generator, values for bootstraps likewise."""

    def __init__(self, policy: ActorCriticPolicy, generator: tf.random.Generator) -> None:
        self.numpy_actor = NumpyActor(policy)
        self.generator = generator
        self.factory = policy.distribution_factory
        # A rollout starts with one TensorFlow call: the current weights and the rollout's noise.
        self._begin = ConcreteCalls(compile_function(self._begin_graph))
        self._noise = np.zeros((0, 0, 0), np.float32)
        self._next = 0

    def _draw_noise(self, n_steps: tf.Tensor, n_envs: tf.Tensor) -> tf.Tensor:
        shape = tf.stack([n_steps, n_envs, self.factory.param_size])
        if self.factory.kind == "diag_gaussian":
            return self.generator.normal(shape, dtype=tf.float32)
        minval = float(np.finfo(np.float32).tiny) if self.factory.kind != "bernoulli" else 0.0
        return self.generator.uniform(shape, minval=minval, maxval=1.0, dtype=tf.float32)

    def _begin_graph(self, n_steps: tf.Tensor, n_envs: tf.Tensor) -> tuple[list[tf.Tensor], tf.Tensor]:
        return self.numpy_actor.weight_tensors(), self._draw_noise(n_steps, n_envs)

    def begin_rollout(self, n_steps: int, n_envs: int) -> None:
        """Take the current weights and draw the noise of ``n_steps`` steps of ``n_envs`` envs."""
        weights, noise = self._begin(tf.constant(n_steps, tf.int32), tf.constant(n_envs, tf.int32))
        self.numpy_actor.refresh([w.numpy() for w in weights])
        self._noise = noise.numpy()
        self._next = 0

    def compiled_functions(self) -> dict[str, Any]:
        """Its compiled functions, by name: a rollout's start (weights and noise), the weight read."""
        return {"rollout start": self._begin, "weight read": self.numpy_actor._read}

    def initial_state(self, n_envs: int) -> tuple[np.ndarray, ...]:
        return ()

    def act(
        self, observations: np.ndarray, state: tuple[np.ndarray, ...], episode_starts: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, ...]]:
        n_envs = len(observations)
        if self._next >= len(self._noise) or self._noise.shape[1] != n_envs:
            self.begin_rollout(1, n_envs)  # called outside a rollout: one more step of noise
        noise = self._noise[self._next]
        self._next += 1
        head, values = self.numpy_actor.forward(observations)
        return self.numpy_actor.choose(head, noise), values, state

    def value(self, observations: np.ndarray, state: tuple[np.ndarray, ...], episode_starts: np.ndarray) -> np.ndarray:
        return self.numpy_actor.forward(observations)[1]

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        return self.factory.to_env_actions(actions)
