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

A training step whose loss or gradient is NaN or ±inf (expert values so large that the
loss overflows float32, or divergence) is not applied: iteration stops with an
:class:`~acktr_lab.expert.ExpertDataError` and the policy keeps finite parameters.

Recurrent policies (those with a non-empty ``state_shapes``) are cloned over whole
trajectories, as they act: each epoch lays the (shuffled) episodes end to end in
``n_lanes = max(1, batch_size // sequence_length)`` parallel streams, as a vector env's
envs would see them, with the dataset's ``episode_starts`` resetting the state. The streams
are cut into chunks of ``sequence_length`` steps, unrolled by ``policy.unroll`` from the
state the previous chunk ended in (truncated backpropagation through time; the state is
carried, its gradient is not). The loss is the same per-step loss, averaged over the real
steps of each chunk (padding at the ends of the streams has weight 0).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.compiled import compile_function
from acktr_lab.expert import DataLoader, ExpertDataError, ExpertDataset
from acktr_lab.policies import env_major
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
    sequence_length: int = 16,
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
        sequence_length: recurrent policies only: the steps of each unrolled chunk (see
            the module docstring).

    Yields:
        ``PretrainReport(epoch, n_epochs, train_loss, val_loss)``; ``val_loss`` is ``None``
        on epochs without validation or when the validation split is empty.

    Raises:
        ValueError (at the call, not at the first ``next``): bad arguments, an unsupported
        action space, or (``ExpertDataError``, a ``ValueError``) expert data that does not
        fit the policy's spaces.
    """
    _check_positive_integer("n_epochs", n_epochs)
    _check_positive_float32("learning_rate", learning_rate)
    _check_positive_float32("adam_epsilon", adam_epsilon)
    if val_interval is None:
        val_interval = max(1, int(n_epochs) // 10)
    _check_positive_integer("val_interval", val_interval)
    _check_positive_integer("sequence_length", sequence_length)
    obs_space, action_space = policy.observation_space, policy.action_space
    if not isinstance(action_space, _SUPPORTED_ACTIONS):
        raise ValueError(
            f"behaviour cloning supports Box, Discrete, MultiDiscrete and MultiBinary actions, got {action_space}"
        )
    try:
        dataset.check_spaces(obs_space, action_space)
    except ValueError as error:
        raise ExpertDataError(f"the expert dataset does not fit the policy: {error}") from error
    if len(dataset.train_loader) == 0:
        raise ValueError("the expert dataset's training split is empty")
    settings = (int(n_epochs), float(learning_rate), float(adam_epsilon), int(val_interval))
    if getattr(policy, "state_shapes", ()):
        return _clone_sequences(policy, dataset, *settings, int(sequence_length))
    return _clone(policy, dataset, *settings)


def _check_positive_integer(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is an integer ≥ 1 (not a bool, float or string)."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def _check_positive_float32(name: str, value: Any) -> None:
    """``ValueError`` naming ``name`` unless ``value`` is a real number in (0, float32's max]
    (Adam runs in float32: a larger one is inf there)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not 0 < value <= float(np.finfo(np.float32).max):
        raise ValueError(f"{name} must be positive and finite in float32, got {value!r}")


def _step_loss(continuous: bool) -> Any:
    """Per-step loss: squared error of the deterministic action (Box), else −log π(a*|s)."""

    def loss(distribution: Any, actions: tf.Tensor) -> tf.Tensor:
        if continuous:
            mode = distribution.mode()
            return tf.reduce_mean(tf.square(mode - tf.cast(actions, mode.dtype)), axis=-1)
        return -distribution.log_prob(actions)

    return loss


def _finite_or_stop(loss: tf.Tensor, gradients: list[tf.Tensor]) -> list[tf.Tensor]:
    """``gradients``, made to depend on a check that ``loss`` and every gradient are finite:
    an update that uses them runs only if all are, else the step fails with
    ``InvalidArgumentError`` before any variable changes (see :func:`_stopped`)."""
    finite = [tf.reduce_all(tf.math.is_finite(loss))]
    finite += [tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(g))) for g in gradients]
    check = tf.debugging.Assert(tf.reduce_all(tf.stack(finite)), [_NON_FINITE])
    with tf.control_dependencies([check]):
        return [tf.identity(tf.convert_to_tensor(g)) for g in gradients]


def _apply_if_finite(
    optimizer: tf.keras.optimizers.Optimizer, gradients: list[tf.Tensor], variables: list[tf.Variable]
) -> None:
    """Apply the optimiser's step to ``variables`` and keep it only if every new value is
    finite; otherwise put back the values from before the step and fail with
    ``InvalidArgumentError`` (see :func:`_stopped`). Finite gradients can still give a
    non-finite step: a learning rate near float32's largest value, or parameters so large
    that adding the step overflows."""
    before = [tf.identity(v) for v in variables]
    optimizer.apply_gradients(zip(gradients, variables))
    finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.math.is_finite(v)) for v in variables]))

    def undo() -> tf.Tensor:
        for variable, value in zip(variables, before):
            variable.assign(value)
        return tf.constant(False)

    kept = tf.cond(finite, lambda: tf.constant(True), undo)
    tf.debugging.Assert(kept, [_NON_FINITE])


_NON_FINITE = "non-finite behaviour-cloning loss, gradient or step"


def _stopped(dataset: ExpertDataset, epoch: int, error: Exception) -> ExpertDataError:
    """The error for a training step whose loss or gradient was NaN or ±inf."""
    magnitudes = []
    for name, values in (("observation", dataset.observations), ("action", dataset.actions)):
        if values.dtype.kind in "biuf" and values.size:
            magnitudes.append(f"largest |{name}| {float(np.max(np.abs(values))):.3g}")
    return ExpertDataError(
        f"{getattr(dataset, 'source', 'the expert dataset')}: behaviour cloning stopped at epoch {epoch}: "
        f"the loss, a gradient or the step became NaN or infinite, so that step was not applied (the policy "
        f"keeps its last finite parameters). Expert values of very large magnitude overflow float32 "
        f"in the loss ({', '.join(magnitudes) or 'no numeric arrays'}); if they are sane, lower the "
        f"learning rate"
    )


def _reached_variables(policy: ClonablePolicy, loss: Any) -> list[tf.Variable]:
    """The policy's trainable variables that ``loss()`` depends on (not the value head)."""
    candidates = list(policy.trainable_variables)
    with tf.GradientTape() as tape:
        probe = loss()
    variables = [v for v, g in zip(candidates, tape.gradient(probe, candidates)) if g is not None]
    if not variables:
        raise ValueError("the behaviour-cloning loss does not depend on any trainable variable of the policy")
    return variables


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

    step_loss = _step_loss(continuous)

    def loss_fn(obs: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        distribution, _ = policy(obs)
        return tf.reduce_mean(step_loss(distribution, actions))

    first_obs, first_actions = next(_batches(dataset.train_loader, obs_space, action_space))
    variables = _reached_variables(policy, lambda: loss_fn(first_obs, first_actions))
    optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=adam_epsilon)
    optimizer.build(variables)

    def train_graph(obs: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            loss = loss_fn(obs, actions)
        gradients = _finite_or_stop(loss, tape.gradient(loss, variables))
        _apply_if_finite(optimizer, gradients, variables)
        return loss

    def eval_graph(obs: tf.Tensor, actions: tf.Tensor) -> tf.Tensor:
        return loss_fn(obs, actions)

    train_step = compile_function(train_graph, input_signature=signature)
    eval_step = compile_function(eval_graph, input_signature=signature)

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
        try:
            train_loss = epoch_mean(train_step, dataset.train_loader)
        except tf.errors.InvalidArgumentError as error:
            if _NON_FINITE not in str(error):
                raise
            raise _stopped(dataset, epoch, error) from error
        val_loss: float | None = None
        if len(dataset.val_loader) > 0 and (epoch % val_interval == 0 or epoch == n_epochs):
            val_loss = epoch_mean(eval_step, dataset.val_loader)
        yield PretrainReport(epoch=epoch, n_epochs=n_epochs, train_loss=train_loss, val_loss=val_loss)


def episode_lanes(
    bounds: np.ndarray, episodes: np.ndarray, n_lanes: int, multiple: int
) -> tuple[np.ndarray, np.ndarray]:
    """Whole episodes laid end to end in ``n_lanes`` parallel streams, each next episode in
    the shortest stream so far: ``(indices, starts)``, both ``[T, n_lanes]`` with ``T`` the
    longest stream rounded up to a multiple of ``multiple``.

    ``indices[t, lane]`` is a transition index, ``-1`` for padding after a stream's last
    episode; ``starts`` is true at each episode's first step (and on padding).
    Episode ``e`` covers transitions ``bounds[e] … bounds[e + 1] − 1``.
    """
    streams: list[list[int]] = [[] for _ in range(n_lanes)]
    stream_starts: list[list[bool]] = [[] for _ in range(n_lanes)]
    for episode in episodes:
        lane = int(np.argmin([len(stream) for stream in streams]))
        length = int(bounds[episode + 1] - bounds[episode])
        streams[lane].extend(range(int(bounds[episode]), int(bounds[episode + 1])))
        stream_starts[lane].extend([True] + [False] * (length - 1))
    longest = max(len(stream) for stream in streams)
    n_steps = -(-longest // multiple) * multiple
    indices = np.full((n_steps, n_lanes), -1, np.int64)
    starts = np.ones((n_steps, n_lanes), bool)
    for lane, (stream, flags) in enumerate(zip(streams, stream_starts)):
        indices[: len(stream), lane] = stream
        starts[: len(stream), lane] = flags
    return indices, starts


def _clone_sequences(
    policy: Any,
    dataset: ExpertDataset,
    n_epochs: int,
    learning_rate: float,
    adam_epsilon: float,
    val_interval: int,
    sequence_length: int,
) -> Iterator[PretrainReport]:
    """Behaviour cloning of a recurrent policy over whole trajectories (module docstring)."""
    obs_space, action_space = policy.observation_space, policy.action_space
    step_loss = _step_loss(isinstance(action_space, gym.spaces.Box))
    bounds = np.append(np.flatnonzero(dataset.episode_starts), dataset.n_transitions)
    loader = dataset.train_loader  # reads observations (and image paths) by index
    length = sequence_length

    def chunks(episodes: np.ndarray) -> Iterator[tuple[tf.Tensor, ...]]:
        """``(obs [L, B, ...], actions [L, B, ...], starts [L, B], weights [L, B])`` in stream order."""
        n_lanes = max(1, min(len(episodes), dataset.batch_size // length))
        indices, starts = episode_lanes(bounds, episodes, n_lanes, length)
        for begin in range(0, len(indices), length):
            chunk = indices[begin : begin + length]
            rows = np.where(chunk >= 0, chunk, 0).reshape(-1)
            obs = prepare_observations(loader.load_observations(rows), obs_space)
            actions = prepare_actions(dataset.actions[rows], action_space)
            yield (
                tf.convert_to_tensor(obs.reshape(length, n_lanes, *obs.shape[1:])),
                tf.convert_to_tensor(actions.reshape(length, n_lanes, *actions.shape[1:])),
                tf.convert_to_tensor(starts[begin : begin + length]),
                tf.convert_to_tensor((chunk >= 0).astype(np.float64)),
            )

    def chunk_loss(obs: tf.Tensor, actions: tf.Tensor, starts: tf.Tensor, weights: tf.Tensor, state: Any) -> Any:
        """``(Σ w·ℓ / Σ w, Σ w, final state)`` of one chunk unrolled from ``state``."""
        output = policy.unroll(obs, state, starts)
        losses = tf.cast(step_loss(output.distribution, env_major(actions)), tf.float64)
        weights = env_major(weights)
        total = tf.reduce_sum(weights)
        return tf.reduce_sum(losses * weights) / tf.maximum(total, 1.0), total, output.state

    first = next(chunks(dataset.train_episodes[:1]))
    first_state = policy.initial_state(int(first[0].shape[1]))
    variables = _reached_variables(policy, lambda: chunk_loss(*first, first_state)[0])
    optimizer = tf.keras.optimizers.Adam(learning_rate=learning_rate, epsilon=adam_epsilon)
    optimizer.build(variables)

    def train_graph(obs: tf.Tensor, actions: tf.Tensor, starts: tf.Tensor, weights: tf.Tensor, state: Any) -> Any:
        with tf.GradientTape() as tape:
            loss, total, new_state = chunk_loss(obs, actions, starts, weights, state)
        gradients = _finite_or_stop(loss, tape.gradient(loss, variables))
        _apply_if_finite(optimizer, gradients, variables)
        return loss, total, tuple(tf.stop_gradient(s) for s in new_state)

    train_step = compile_function(train_graph, reduce_retracing=True)
    eval_step = compile_function(chunk_loss, reduce_retracing=True)

    def epoch_mean(step: Any, episodes: np.ndarray) -> float:
        """The per-transition mean loss over ``episodes``, streamed in chunks."""
        state, loss_sum, count = None, 0.0, 0.0
        for obs, actions, starts, weights in chunks(episodes):
            if state is None:
                state = policy.initial_state(int(obs.shape[1]))
            loss, total, state = step(obs, actions, starts, weights, state)
            loss_sum += float(loss) * float(total)
            count += float(total)
        return loss_sum / count

    for epoch in range(1, n_epochs + 1):
        order = dataset.rng.permutation(dataset.train_episodes) if dataset.randomize else dataset.train_episodes
        try:
            train_loss = epoch_mean(train_step, order)
        except tf.errors.InvalidArgumentError as error:
            if _NON_FINITE not in str(error):
                raise
            raise _stopped(dataset, epoch, error) from error
        val_loss: float | None = None
        if len(dataset.val_episodes) > 0 and (epoch % val_interval == 0 or epoch == n_epochs):
            val_loss = epoch_mean(eval_step, dataset.val_episodes)
        yield PretrainReport(epoch=epoch, n_epochs=n_epochs, train_loss=train_loss, val_loss=val_loss)


__all__ = ["ClonablePolicy", "behaviour_cloning", "episode_lanes", "prepare_actions", "prepare_observations"]
