"""Behaviour cloning (supervised pre-training on expert demonstrations), as a generator.

Stable Baselines 2's ``model.pretrain(dataset, n_epochs, learning_rate, adam_epsilon,
val_interval)`` minimises, over minibatches (s, a*) of expert transitions,

* ``Box`` actions: the mean squared error between the deterministic action and the
  expert's, ``L = mean_b mean_i (μ_θ(s_b)_i - a*_{b,i})²`` (``μ`` = ``distribution.mode()``,
  the Gaussian mean, so the gradient flows through it);
* ``Discrete`` actions: the cross-entropy ``L = -mean_b log π_θ(a*_b | s_b)``.

Here ``MultiDiscrete`` and ``MultiBinary`` actions (which SB2's pretrain rejects) use the
same negative log-likelihood ``-mean_b log π_θ(a*_b | s_b)`` (a sum over the independent
components). The optimiser is Adam (``tf.keras.optimizers.Adam(learning_rate,
epsilon=adam_epsilon)``) on the policy's trainable variables that the loss reaches.

:func:`behaviour_cloning` yields a :class:`~acktr_lab.report.PretrainReport` after every
epoch, with the mean training loss over the epoch's minibatches and, every
``val_interval`` epochs (and after the last one), the mean validation loss (both
weighted by minibatch size, i.e. means over transitions).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.expert import DataLoader, ExpertDataset
from acktr_lab.report import PretrainReport


class ClonablePolicy(Protocol):
    """What behaviour cloning needs from a policy."""

    observation_space: gym.Space
    action_space: gym.Space

    def __call__(self, obs: tf.Tensor) -> tuple[Any, tf.Tensor]: ...

    @property
    def trainable_variables(self) -> tuple[tf.Variable, ...]: ...


_SUPPORTED_ACTIONS = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)


def _obs_spec(space: gym.Space) -> tuple[tuple[int, ...], tf.DType]:
    """Per-transition shape and dtype of a batch of raw observations fed to the policy."""
    shape = tuple(space.shape or ())
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        return shape, tf.int64
    return shape, tf.as_dtype(np.dtype(space.dtype))


def _action_spec(space: gym.Space) -> tuple[tuple[int, ...], tf.DType]:
    """Per-transition shape and dtype of the expert actions given to the loss."""
    if isinstance(space, gym.spaces.Discrete):
        return (), tf.int64
    if isinstance(space, gym.spaces.MultiDiscrete):
        return tuple(space.shape), tf.int64
    return tuple(space.shape), tf.float32


def prepare_observations(obs: np.ndarray, space: gym.Space) -> np.ndarray:
    """Expert observations → ``[B, *space.shape]`` in the dtype the policy is traced with.

    (``Discrete`` observations stored ``(N, 1)`` by SB2 become ``(N,)``.)
    """
    shape, dtype = _obs_spec(space)
    array = np.asarray(obs)
    return array.reshape((len(array), *shape)).astype(dtype.as_numpy_dtype, copy=False)


def prepare_actions(actions: np.ndarray, space: gym.Space) -> np.ndarray:
    """Expert actions → what ``distribution.log_prob`` / the MSE expect.

    ``Discrete``: ``(N, 1)`` or ``(N,)`` → ``(N,)`` indices ``a - start``; ``MultiDiscrete``:
    ``a - start`` per component; ``Box`` and ``MultiBinary``: ``float32`` ``[N, *shape]``.
    """
    shape, dtype = _action_spec(space)
    array = np.asarray(actions).reshape((len(actions), *shape))
    if isinstance(space, gym.spaces.Discrete | gym.spaces.MultiDiscrete):
        array = np.rint(array).astype(np.int64) - np.asarray(space.start, dtype=np.int64)
    return array.astype(dtype.as_numpy_dtype, copy=False)


def _batches(
    loader: DataLoader, obs_space: gym.Space, action_space: gym.Space
) -> Iterator[tuple[tf.Tensor, tf.Tensor]]:
    for obs, actions in loader:
        yield (
            tf.convert_to_tensor(prepare_observations(obs, obs_space)),
            tf.convert_to_tensor(prepare_actions(actions, action_space)),
        )


def behaviour_cloning(
    policy: ClonablePolicy,
    dataset: ExpertDataset,
    n_epochs: int = 10,
    learning_rate: float = 1e-4,
    adam_epsilon: float = 1e-8,
    val_interval: int | None = None,
) -> Iterator[PretrainReport]:
    """Clone the expert in ``dataset`` into ``policy``, one epoch per ``next()``.

    Args:
        policy: ``policy(obs) -> (distribution, values)`` with ``distribution.log_prob`` and
            ``distribution.mode``, ``observation_space``, ``action_space`` and
            ``trainable_variables`` (e.g. :class:`acktr_lab.policies.MlpPolicy`).
        dataset: the expert demonstrations (its ``train_loader`` and ``val_loader``).
        n_epochs: passes over the training split.
        learning_rate: Adam's step size.
        adam_epsilon: Adam's ε.
        val_interval: validate every this many epochs (and after the last one);
            default ``max(1, n_epochs // 10)`` as SB2.

    Yields:
        ``PretrainReport(epoch, n_epochs, train_loss, val_loss)``; ``val_loss`` is ``None``
        on epochs without validation or when the validation split is empty.

    Raises:
        ValueError (at the call, not at the first ``next``): bad arguments, an unsupported
        action space, or expert data that does not fit the policy's spaces.
    """
    if int(n_epochs) < 1:
        raise ValueError(f"n_epochs must be at least 1, got {n_epochs}")
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate}")
    if not adam_epsilon > 0:
        raise ValueError(f"adam_epsilon must be positive, got {adam_epsilon}")
    if val_interval is None:
        val_interval = max(1, int(n_epochs) // 10)
    if int(val_interval) < 1:
        raise ValueError(f"val_interval must be at least 1, got {val_interval}")
    obs_space, action_space = policy.observation_space, policy.action_space
    if getattr(policy, "state_shapes", ()):
        raise ValueError(
            f"behaviour cloning of a recurrent policy ({type(policy).__name__}) is not supported yet: it needs "
            "whole trajectories unrolled from their episode starts, and cloning single transitions from the "
            "initial state would teach a policy that forgets; pretrain a feedforward policy instead"
        )
    if not isinstance(action_space, _SUPPORTED_ACTIONS):
        raise ValueError(
            f"behaviour cloning supports Box, Discrete, MultiDiscrete and MultiBinary actions, got {action_space}"
        )
    try:
        dataset.check_spaces(obs_space, action_space)
    except ValueError as error:
        raise ValueError(f"the expert dataset does not fit the policy: {error}") from error
    if len(dataset.train_loader) == 0:
        raise ValueError("the expert dataset's training split is empty")
    return _clone(policy, dataset, int(n_epochs), float(learning_rate), float(adam_epsilon), int(val_interval))


def _clone(
    policy: ClonablePolicy,
    dataset: ExpertDataset,
    n_epochs: int,
    learning_rate: float,
    adam_epsilon: float,
    val_interval: int,
) -> Iterator[PretrainReport]:
    obs_space, action_space = policy.observation_space, policy.action_space
    continuous = isinstance(action_space, gym.spaces.Box)
    obs_shape, obs_dtype = _obs_spec(obs_space)
    act_shape, act_dtype = _action_spec(action_space)
    signature = (
        tf.TensorSpec([None, *obs_shape], obs_dtype),
        tf.TensorSpec([None, *act_shape], act_dtype),
    )

    def loss_fn(obs: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        distribution, _ = policy(obs)
        if continuous:
            mode = distribution.mode()
            return tf.reduce_mean(tf.square(mode - tf.cast(actions, mode.dtype)))
        return -tf.reduce_mean(distribution.log_prob(actions))

    # Only the variables the loss reaches (not the value head) are optimised.
    first_obs, first_actions = next(_batches(dataset.train_loader, obs_space, action_space))
    candidates = list(policy.trainable_variables)
    with tf.GradientTape() as tape:
        probe = loss_fn(first_obs, first_actions)
    variables = [v for v, g in zip(candidates, tape.gradient(probe, candidates)) if g is not None]
    if not variables:
        raise ValueError("the behaviour-cloning loss does not depend on any trainable variable of the policy")
    optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=adam_epsilon)
    optimizer.build(variables)

    @tf.function(input_signature=signature)
    def train_step(obs: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(obs, actions)
        gradients = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(gradients, variables))
        return loss

    @tf.function(input_signature=signature)
    def eval_step(obs: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        return loss_fn(obs, actions)

    def epoch_mean(step: Any, loader: DataLoader) -> float:
        """Σ_b |b|·L_b / Σ_b |b|: the per-transition mean (SB2's unweighted mean over
        minibatches, except that a partial last minibatch counts by its size)."""
        total, count = 0.0, 0
        for obs, actions in _batches(loader, obs_space, action_space):
            size = int(obs.shape[0])
            total += float(step(obs, actions)) * size
            count += size
        return total / count

    for epoch in range(1, n_epochs + 1):
        train_loss = epoch_mean(train_step, dataset.train_loader)
        val_loss: float | None = None
        if len(dataset.val_loader) > 0 and (epoch % val_interval == 0 or epoch == n_epochs):
            val_loss = epoch_mean(eval_step, dataset.val_loader)
        yield PretrainReport(epoch=epoch, n_epochs=n_epochs, train_loss=train_loss, val_loss=val_loss)


__all__ = ["ClonablePolicy", "behaviour_cloning", "prepare_actions", "prepare_observations"]
