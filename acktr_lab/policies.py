"""Actor-critic policies laid out as Stable Baselines 2 builds them.

``MlpPolicy``: by default separate 64-64 tanh networks for the policy (``pi_fc0``,
``pi_fc1``) and the value (``vf_fc0``, ``vf_fc1``); heads ``vf`` (value), ``pi`` (logits
or action mean), ``pi/logstd`` (state-independent log std, Box only) and ``q`` (kept only
so that Stable Baselines 2 parameter files map one to one; ACKTR never uses it).
``CnnPolicy``: the Nature CNN (``c1``, ``c2``, ``c3``, ``fc1``) shared by both heads.

Every hidden and head layer is a K-FAC layer; :attr:`ActorCriticPolicy.kfac_layers` is
the explicit registration list handed to the optimizer. Parameters are exposed under the
Stable Baselines 2 variable names (``model/pi_fc0/w:0`` ...) in its creation order.

Every policy carries a state through an episode, with one interface (Acme's recurrent
cores): :meth:`~ActorCriticPolicy.initial_state`, :meth:`~ActorCriticPolicy.step` for one
time step of a batch of envs, and :meth:`~ActorCriticPolicy.unroll` for the ``[n_steps,
n_envs]`` rollout of an update. A policy's state ``s_t`` is what it has read up to the
observation ``o_t``; ``episode_starts[t]`` resets it to the initial state before ``o_t``
is read. Feedforward policies carry the empty state ``()``, which costs nothing, and no
caller special-cases them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.distributions import Distribution, make_distribution_factory
from acktr_lab.kfac.layers import Conv2D, Dense, KfacLayer
from acktr_lab.preprocessing import (
    check_observation_space,
    flat_observation_dim,
    image_layout,
    preprocess_observation,
)

Activation = Callable[[tf.Tensor], tf.Tensor]

ACTIVATIONS: dict[str, Activation] = {
    "tanh": tf.tanh,
    "relu": tf.nn.relu,
    "elu": tf.nn.elu,
    "selu": tf.nn.selu,
    "sigmoid": tf.sigmoid,
    "softplus": tf.nn.softplus,
    "swish": tf.nn.silu,
    "leaky_relu": tf.nn.leaky_relu,
}


def resolve_activation(act_fun: str | Activation) -> tuple[str, Activation]:
    """``(name, function)`` for an activation given by name or as one of :data:`ACTIVATIONS`."""
    if isinstance(act_fun, str):
        if act_fun not in ACTIVATIONS:
            raise ValueError(f"unknown act_fun {act_fun!r}; choose one of {sorted(ACTIVATIONS)}")
        return act_fun, ACTIVATIONS[act_fun]
    for name, fn in ACTIVATIONS.items():
        if fn is act_fun:  # the function itself: another one with the same name is not it
            return name, fn
    raise ValueError(
        f"act_fun {act_fun!r} is not one of {sorted(ACTIVATIONS)}; pass one of those (by name "
        "or as the TensorFlow function) so that the model can be saved and loaded"
    )


NetArch = Sequence[int | dict[str, Sequence[int]]]


#: A policy's state: a tuple of ``[n_envs, ...]`` tensors (``()`` for feedforward policies).
PolicyState = tuple[tf.Tensor, ...]


class PolicyStep(NamedTuple):
    """A policy's output for a batch: ``π(·|o, s)``, ``V(o, s)`` and the state after ``o``."""

    distribution: Distribution
    values: tf.Tensor
    state: PolicyState


def env_major(x: tf.Tensor) -> tf.Tensor:
    """``[n_steps, n_envs, ...]`` → ``[n_envs · n_steps, ...]``, row ``e · n_steps + t`` holding
    ``x[t, e]`` (Stable Baselines 2's batch order)."""
    rank = len(x.shape)
    x = tf.transpose(x, [1, 0, *range(2, rank)])
    return tf.reshape(x, tf.concat([[-1], tf.shape(x)[2:]], axis=0))


def layer_sizes(sizes: Any, what: str) -> list[int]:
    """Layer sizes, each a positive int (``2.7`` or ``True`` are refused, not rounded)."""
    if not isinstance(sizes, list | tuple) or not all(
        isinstance(x, int | np.integer) and not isinstance(x, bool) and x > 0 for x in sizes
    ):
        raise ValueError(f"{what} must be a list of positive integers, got {sizes!r}")
    return [int(x) for x in sizes]


def parse_net_arch(net_arch: NetArch | None) -> tuple[list[int], list[int], list[int]]:
    """Stable Baselines 2 ``net_arch`` → (shared, policy-only, value-only) layer sizes.

    ``[64, dict(pi=[32], vf=[32])]``: one shared layer of 64, then separate heads.
    ``None`` is ``[dict(vf=[64, 64], pi=[64, 64])]``.
    """
    if net_arch is None:
        net_arch = [{"vf": [64, 64], "pi": [64, 64]}]
    shared: list[int] = []
    pi: list[int] = []
    vf: list[int] = []
    seen_dict = False
    if not isinstance(net_arch, list | tuple):
        raise ValueError(f"net_arch must be a list of layer sizes and at most one dict, got {net_arch!r}")
    for item in net_arch:
        if isinstance(item, dict):
            if seen_dict:
                raise ValueError("net_arch may contain only one dict(pi=[...], vf=[...])")
            unknown = set(item) - {"pi", "vf"}
            if unknown:
                raise ValueError(f"net_arch dict keys must be 'pi' and 'vf', got {sorted(unknown)}")
            pi, vf = layer_sizes(item.get("pi", []), "net_arch pi"), layer_sizes(item.get("vf", []), "net_arch vf")
            seen_dict = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and item > 0:
            if seen_dict:
                raise ValueError("shared layer sizes in net_arch must come before the dict")
            shared.append(int(item))
        else:
            raise ValueError(f"net_arch entries must be positive ints or one dict, got {item!r}")
    if any(size <= 0 for size in pi + vf):
        raise ValueError(f"net_arch layer sizes must be positive, got pi={pi} vf={vf}")
    return shared, pi, vf


class ActorCriticPolicy(tf.Module):
    """Policy and value networks carrying a state (empty here: feedforward).

    Observations are raw, as the environment gives them; preprocessing (one-hot, image
    scaling) happens inside. ``policy(obs) -> (distribution, values)`` is one step from
    the initial state, for batches of unrelated observations (behaviour cloning).
    """

    feature_extraction = "mlp"
    default_act_fun = "tanh"

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        net_arch: NetArch | None = None,
        act_fun: str | Activation | None = None,
        seed: int | None = None,
        dtype: tf.DType = tf.float32,
        normalize_observations: bool = False,
    ) -> None:
        super().__init__(name="model")
        check_observation_space(observation_space)
        self.normalize_observations = bool(normalize_observations)
        if self.normalize_observations:
            if not isinstance(observation_space, gym.spaces.Box) or image_layout(observation_space) is not None:
                raise ValueError(
                    f"normalize_observations needs a non-image Box observation space, got {observation_space}"
                )
            size = flat_observation_dim(observation_space)
            #: Running statistics of the observations (see acktr_lab.normalization); not trained.
            self.observation_mean = tf.Variable(tf.zeros([size], dtype), trainable=False, name="obs_mean")
            self.observation_var = tf.Variable(tf.ones([size], dtype), trainable=False, name="obs_var")
        self.observation_space = observation_space
        self.action_space = action_space
        self.distribution_factory = make_distribution_factory(action_space)
        self.act_fun_name, self.act_fun = resolve_activation(act_fun or self.default_act_fun)
        self.net_arch = net_arch
        self.dtype = dtype
        rng = np.random.default_rng(seed)
        self.parameters: dict[str, tf.Variable] = {}
        self.kfac_layers: list[KfacLayer] = []
        self._build(rng)

    # -- construction -----------------------------------------------------------------
    def _dense(self, in_dim: int, out_dim: int, name: str, scale: float, rng: np.random.Generator) -> Dense:
        layer = Dense(in_dim, out_dim, name=name, init_scale=scale, rng=rng, dtype=self.dtype)
        self.parameters[f"model/{name}/w:0"] = layer.kernel
        self.parameters[f"model/{name}/b:0"] = layer.bias
        return layer

    def _build(self, rng: np.random.Generator) -> None:
        shared_sizes, pi_sizes, vf_sizes = parse_net_arch(self.net_arch)
        in_dim = flat_observation_dim(self.observation_space)
        self.shared_layers = []
        for i, size in enumerate(shared_sizes):
            self.shared_layers.append(self._dense(in_dim, size, f"shared_fc{i}", np.sqrt(2), rng))
            in_dim = size
        self.pi_layers: list[Dense] = []
        self.vf_layers: list[Dense] = []
        pi_dim = vf_dim = in_dim
        for i in range(max(len(pi_sizes), len(vf_sizes))):
            if i < len(pi_sizes):
                self.pi_layers.append(self._dense(pi_dim, pi_sizes[i], f"pi_fc{i}", np.sqrt(2), rng))
                pi_dim = pi_sizes[i]
            if i < len(vf_sizes):
                self.vf_layers.append(self._dense(vf_dim, vf_sizes[i], f"vf_fc{i}", np.sqrt(2), rng))
                vf_dim = vf_sizes[i]
        self._build_heads(pi_dim, vf_dim, rng)
        self.kfac_layers = [*self.shared_layers, *self.pi_layers, *self.vf_layers, self.value_head, self.pi_head]

    def _build_heads(self, pi_dim: int, vf_dim: int, rng: np.random.Generator) -> None:
        factory = self.distribution_factory
        self.value_head = self._dense(vf_dim, 1, "vf", 1.0, rng)
        self.pi_head = self._dense(pi_dim, factory.param_size, "pi", 0.01, rng)
        self.log_std: tf.Variable | None = None
        if factory.needs_log_std:
            self.log_std = tf.Variable(tf.zeros([1, factory.param_size], self.dtype), name="logstd")
            self.parameters["model/pi/logstd:0"] = self.log_std
        # Unused by ACKTR; present so that Stable Baselines 2 parameter files map one to one.
        self.q_head = self._dense(vf_dim, factory.param_size, "q", 1.0, rng)

    def _conv(self, cin: int, filters: int, size: int, stride: int, name: str, rng: np.random.Generator) -> Conv2D:
        layer = Conv2D(cin, filters, size, strides=stride, name=name, init_scale=np.sqrt(2), rng=rng, dtype=self.dtype)
        self.parameters[f"model/{name}/w:0"] = layer.kernel
        self.parameters[f"model/{name}/b:0"] = layer.bias
        return layer

    def _build_nature_cnn(self, rng: np.random.Generator) -> int:
        """The Nature CNN (``c1``, ``c2``, ``c3``, ``fc1``) for image observations; its output size (512)."""
        layout = image_layout(self.observation_space)
        if layout is None:
            raise ValueError(
                f"{type(self).__name__} needs image observations (Box of uint8, shape HxWxC or CxHxW), got "
                f"{self.observation_space}; use an Mlp policy"
            )
        # Channel-first images (gymnasium's Atari stacks) are transposed to the layout the
        # convolutions and Stable Baselines 2's weights use.
        self.channels_first = layout == "channels_first"
        shape = self.observation_space.shape
        height, width, channels = (shape[1], shape[2], shape[0]) if self.channels_first else shape
        self.conv_layers = [
            self._conv(channels, 32, 8, 4, "c1", rng),
            self._conv(32, 64, 4, 2, "c2", rng),
            self._conv(64, 64, 3, 1, "c3", rng),
        ]
        for size, stride in ((8, 4), (4, 2), (3, 1)):
            height, width = (height - size) // stride + 1, (width - size) // stride + 1
            if height <= 0 or width <= 0:
                raise ValueError(f"image {self.observation_space.shape} is too small for the Nature CNN")
        self.fc = self._dense(height * width * 64, 512, "fc1", np.sqrt(2), rng)
        return 512

    def _nature_cnn(self, obs: tf.Tensor, activation: Activation) -> tf.Tensor:
        """``[B, 512]`` Nature CNN features of raw images (scaled to [0, 1] first)."""
        x = tf.cast(preprocess_observation(obs, self.observation_space), self.dtype)
        if self.channels_first:
            x = tf.transpose(x, [0, 2, 3, 1])
        for layer in self.conv_layers:
            x = activation(layer(x))
        x = tf.reshape(x, [tf.shape(x)[0], -1])
        return activation(self.fc(x))

    # -- forward ----------------------------------------------------------------------
    def flat_inputs(self, obs: tf.Tensor) -> tf.Tensor:
        """``[B, d]`` network inputs: preprocessed, flattened and, with ``normalize_observations``,
        standardised ``x̃ = clip((x − μ) / √(σ² + ε), −10, 10)``."""
        x = preprocess_observation(obs, self.observation_space)
        x = tf.reshape(tf.cast(x, self.dtype), [tf.shape(x)[0], -1])
        if self.normalize_observations:
            x = tf.clip_by_value((x - self.observation_mean) / tf.sqrt(self.observation_var + 1e-8), -10.0, 10.0)
        return x

    def features(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Latent vectors (policy, value) for a batch of raw observations."""
        x = self.flat_inputs(obs)
        for layer in self.shared_layers:
            x = self.act_fun(layer(x))
        return self.split_latent(x)

    def split_latent(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """The shared latent ``x`` through the policy-only and the value-only layers."""
        pi, vf = x, x
        for layer in self.pi_layers:
            pi = self.act_fun(layer(pi))
        for layer in self.vf_layers:
            vf = self.act_fun(layer(vf))
        return pi, vf

    def heads(self, pi_latent: tf.Tensor, vf_latent: tf.Tensor) -> tuple[Distribution, tf.Tensor]:
        """``(π(·|latent), V(latent))`` with values shaped ``[B]``."""
        values = self.value_head(vf_latent)[:, 0]
        distribution = self.distribution_factory.build(self.pi_head(pi_latent), self.log_std)
        return distribution, values

    # -- the state-carrying interface -------------------------------------------------
    @property
    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        """Per-env shape of each state tensor (``()``: this policy carries no state)."""
        return ()

    def initial_state(self, n_envs: int) -> PolicyState:
        """The state before the first observation of an episode, for ``n_envs`` envs."""
        return tuple(tf.zeros([n_envs, *shape], self.dtype) for shape in self.state_shapes)

    def step(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> PolicyStep:
        """One time step of ``B`` envs: ``π(·|o_t, s_t)``, ``V(o_t, s_t)`` and ``s_{t+1}``.

        ``episode_starts[b]`` (bool ``[B]``) resets env ``b``'s state before ``o_t`` is read.
        A feedforward policy ignores both and returns the empty state.
        """
        distribution, values = self.heads(*self.features(observations))
        return PolicyStep(distribution, values, state)

    def unroll(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> PolicyStep:
        """A rollout of ``T`` steps of ``N`` envs, ``observations`` shaped ``[T, N, ...]``,
        from ``state`` (``s_0``), resetting where ``episode_starts`` (``[T, N]``) is true.

        Outputs are flat over ``N · T`` in env-major order (see :func:`env_major`); the
        returned state is ``s_T``. Equals :meth:`step` applied ``T`` times.
        """
        distribution, values = self.heads(*self.features(env_major(observations)))
        return PolicyStep(distribution, values, state)

    def __call__(self, obs: tf.Tensor) -> tuple[Distribution, tf.Tensor]:
        batch = tf.shape(obs)[0]
        output = self.step(obs, self.initial_state(batch), tf.ones([batch], tf.bool))
        return output.distribution, output.values

    # -- description ------------------------------------------------------------------
    @property
    def trainable(self) -> list[tf.Variable]:
        """Every parameter, in Stable Baselines 2 creation order."""
        return list(self.parameters.values())

    def parameters_from_sb2(self, parameters: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Stable Baselines 2's parameters (name → array) under this policy's names (the same
        names here; a policy that joins SB2 variables into one layer overrides this)."""
        return dict(parameters)

    def sb2_parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The SB2 variables this policy corresponds to, name → shape, in SB2's creation order
        (what a ``.pkl``'s unnamed parameter list follows)."""
        return {name: tuple(int(d) for d in variable.shape) for name, variable in self.parameters.items()}

    def constructor_kwargs(self) -> dict[str, Any]:
        """JSON-able ``policy_kwargs`` that rebuild this architecture."""
        kwargs: dict[str, Any] = {"act_fun": self.act_fun_name}
        if self.net_arch is not None:
            kwargs["net_arch"] = [dict(x) if isinstance(x, dict) else int(x) for x in self.net_arch]
        return kwargs


class MlpPolicy(ActorCriticPolicy):
    """Separate 64-64 tanh networks for policy and value (Stable Baselines 2's MlpPolicy)."""


class CnnPolicy(ActorCriticPolicy):
    """Nature CNN (Mnih et al. 2015) shared by the policy and value heads, for images
    (uint8, channel-last ``(H, W, C)`` or channel-first ``(C, H, W)``)."""

    feature_extraction = "cnn"
    default_act_fun = "relu"

    def _build(self, rng: np.random.Generator) -> None:
        if self.net_arch is not None:
            raise ValueError("CnnPolicy has a fixed Nature CNN; net_arch is not supported")
        features = self._build_nature_cnn(rng)
        self._build_heads(features, features, rng)
        self.kfac_layers = [*self.conv_layers, self.fc, self.value_head, self.pi_head]

    def features(self, obs: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        x = self._nature_cnn(obs, self.act_fun)
        return x, x


#: Policy names → classes; other modules add theirs (``acktr_lab.recurrent``).
POLICIES: dict[str, type[ActorCriticPolicy]] = {"MlpPolicy": MlpPolicy, "CnnPolicy": CnnPolicy}


def resolve_policy(policy: str | type[ActorCriticPolicy]) -> type[ActorCriticPolicy]:
    """A policy class from its name or the class itself."""
    if isinstance(policy, str):
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; available: {sorted(POLICIES)}")
        return POLICIES[policy]
    if isinstance(policy, type) and issubclass(policy, ActorCriticPolicy):
        return policy
    raise ValueError(f"policy must be a policy class or one of {sorted(POLICIES)}, got {policy!r}")
