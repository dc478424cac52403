"""Recurrent policies: an LSTM between the feature extractor and the heads (SB2's ``LstmPolicy``).

The LSTM cell computes its four gates from one pre-activation::

    z_t = [x_t, h_{t−1}, 1] · W          (W: [d_in + n_lstm + 1, 4·n_lstm])
    i, f, o = σ(z_i), σ(z_f), σ(z_o);  u = tanh(z_u)          (SB2's gate order)
    c_t = f ⊙ c_{t−1} + i ⊙ u;  h_t = o ⊙ tanh(c_t)

``W`` is one K-FAC :class:`~acktr_lab.kfac.layers.Dense` layer over the concatenation
``[x_t, h_{t−1}]``, called once per time step: its Kronecker block is exactly
``[x_t, h_{t−1}, 1] → 4·n_lstm``, with statistics pooled over the time steps of the batch
(the independent-time-steps approximation of Martens, Ba & Johnson 2018). The state is
SB2's ``[c, h]`` concatenated, ``[n_envs, 2·n_lstm]``, reset to zeros at episode starts.

Layer-normalised variants (``MlpLnLstmPolicy``, ``CnnLnLstmPolicy``) and ``CnnLstmPolicy``
are not built yet (issue #13).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.policies import POLICIES, ActorCriticPolicy, PolicyState, PolicyStep, env_major
from acktr_lab.preprocessing import flat_observation_dim


class MlpLstmPolicy(ActorCriticPolicy):
    """Stable Baselines 2's ``MlpLstmPolicy``: tanh layers (64, 64 by default), an LSTM of
    ``n_lstm`` units, then the policy and value heads on the LSTM's output."""

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        n_lstm: int = 256,
        layers: list[int] | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(n_lstm, bool) or not isinstance(n_lstm, (int, np.integer)) or n_lstm < 1:
            raise ValueError(f"n_lstm must be a positive integer, got {n_lstm!r}")
        if kwargs.get("net_arch") is not None:
            raise ValueError("MlpLstmPolicy takes `layers` (SB2's legacy LstmPolicy layout); net_arch is not supported")
        self.n_lstm = int(n_lstm)
        self.layers = [64, 64] if layers is None else [int(x) for x in layers]
        if any(size < 1 for size in self.layers):
            raise ValueError(f"layers must be positive sizes, got {layers!r}")
        super().__init__(observation_space, action_space, **kwargs)

    def _build(self, rng: np.random.Generator) -> None:
        in_dim = flat_observation_dim(self.observation_space)
        self.trunk = []
        for i, size in enumerate(self.layers):
            self.trunk.append(self._dense(in_dim, size, f"pi_fc{i}", np.sqrt(2), rng))
            in_dim = size
        self.lstm = self._dense(in_dim + self.n_lstm, 4 * self.n_lstm, "lstm1", 1.0, rng)
        self._build_heads(self.n_lstm, self.n_lstm, rng)
        self.kfac_layers = [*self.trunk, self.lstm, self.value_head, self.pi_head]

    # -- the recurrent core -----------------------------------------------------------
    @property
    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((2 * self.n_lstm,),)

    def _encode(self, observations: tf.Tensor) -> tf.Tensor:
        x = self.flat_inputs(observations)
        for layer in self.trunk:
            x = self.act_fun(layer(x))
        return x

    def _cell(self, x: tf.Tensor, state: tf.Tensor, starts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One LSTM step for a batch: ``(h_t, [c_t, h_t])``; the state is zeroed where ``starts``."""
        keep = 1.0 - tf.cast(starts, self.dtype)[:, None]
        cell, hidden = tf.split(tf.convert_to_tensor(state, self.dtype) * keep, 2, axis=1)
        z = self.lstm(tf.concat([x, hidden], axis=1))
        i, f, o, u = tf.split(z, 4, axis=1)
        cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(u)
        hidden = tf.sigmoid(o) * tf.tanh(cell)
        return hidden, tf.concat([cell, hidden], axis=1)

    def step(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> PolicyStep:
        hidden, new_state = self._cell(self._encode(observations), state[0], episode_starts)
        distribution, values = self.heads(hidden, hidden)
        return PolicyStep(distribution, values, (new_state,))

    def unroll(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> PolicyStep:
        n_steps = observations.shape[0]
        if n_steps is None:
            raise ValueError("unrolling an LSTM needs a static number of time steps")
        n_envs = tf.shape(observations)[1]
        flat = tf.reshape(observations, tf.concat([[-1], tf.shape(observations)[2:]], axis=0))
        features = tf.reshape(self._encode(flat), [n_steps, n_envs, -1])
        current, outputs = state[0], []
        for t in range(n_steps):  # one K-FAC use of the LSTM layer per time step
            hidden, current = self._cell(features[t], current, episode_starts[t])
            outputs.append(hidden)
        hidden = env_major(tf.stack(outputs))
        distribution, values = self.heads(hidden, hidden)
        return PolicyStep(distribution, values, (current,))

    def constructor_kwargs(self) -> dict[str, Any]:
        return {"act_fun": self.act_fun_name, "n_lstm": self.n_lstm, "layers": list(self.layers)}


POLICIES["MlpLstmPolicy"] = MlpLstmPolicy
