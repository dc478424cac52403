"""Recurrent policies: an LSTM between the feature extractor and the heads (SB2's ``LstmPolicy``).

The LSTM cell computes its four gates from one pre-activation::

    z_t = [x_t, h_{t−1}, 1] · W          (W: [d_in + n_lstm + 1, 4·n_lstm])
    i, f, o = σ(z_i), σ(z_f), σ(z_o);  u = tanh(z_u)          (SB2's gate order)
    c_t = f ⊙ c_{t−1} + i ⊙ u;  h_t = o ⊙ tanh(c_t)

``W`` is one K-FAC :class:`~acktr_lab.kfac.layers.Dense` layer over the concatenation
``[x_t, h_{t−1}]``, called once per time step: its Kronecker block is exactly
``[x_t, h_{t−1}, 1] → 4·n_lstm``, with statistics pooled over the time steps of the batch
(the independent-time-steps approximation of Martens, Ba & Johnson 2018). Stable
Baselines 2 stores ``W`` as ``wx`` (the ``x_t`` rows), ``wh`` (the ``h_{t−1}`` rows) and
``b``; :meth:`LstmPolicy.parameters_from_sb2` joins them.

With layer norm (SB2's ``lnlstm``, ``LN(v) = (v − mean v)/√(var v + 10⁻⁵)``)::

    z_t = LN(x_t W_x) ⊙ g_x + b_x + LN(h_{t−1} W_h) ⊙ g_h + b_h + b
    h_t = o ⊙ tanh(LN(c_t) ⊙ g_c + b_c)

Layer norm separates ``W_x`` and ``W_h`` from any bias, so each gets a Kronecker block
without a bias column (``x_t → 4·n_lstm`` and ``h_{t−1} → 4·n_lstm``); the gains and shifts
``(g_x, b_x)``, ``(g_h, b_h)``, ``(g_c, b_c)`` and ``b`` get diagonal blocks
(:class:`~acktr_lab.kfac.blocks.ScaleAndShiftBlock`). Parameter names are SB2's
(``model/lstm1/wx:0``, ``gx``, ``bx``, ...).

The state is SB2's ``[c, h]`` concatenated, ``[n_envs, 2·n_lstm]``, reset to zeros at
episode starts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.kfac.layers import Dense, KfacLayer, ScaleAndShift, layer_norm, orthogonal_initializer
from acktr_lab.policies import POLICIES, ActorCriticPolicy, PolicyState, PolicyStep, env_major, layer_sizes
from acktr_lab.preprocessing import flat_observation_dim

LstmNetArch = Sequence[int | str | dict[str, Sequence[int]]]


SharedLayers = list[tuple[int, int]]


def parse_lstm_net_arch(net_arch: LstmNetArch) -> tuple[SharedLayers, SharedLayers, list[int], list[int]]:
    """Stable Baselines 2's recurrent ``net_arch`` → (shared layers before the LSTM, shared
    layers after it, policy-only sizes, value-only sizes); shared layers as ``(index, size)``
    (SB2 names them ``shared_fc{index}`` by their position in the list).

    ``[64, 'lstm', dict(pi=[32], vf=[32])]``: a shared layer of 64, the LSTM, then separate
    layers of 32 for the policy and the value. Exactly one ``'lstm'``, and only in the
    shared part, as SB2 requires.
    """
    if isinstance(net_arch, (str, bytes)) or not isinstance(net_arch, Sequence):
        raise ValueError(f"net_arch must be a list such as [64, 'lstm', dict(pi=[64], vf=[64])], got {net_arch!r}")
    before: list[tuple[int, int]] = []
    after: list[tuple[int, int]] = []
    pi: list[int] = []
    vf: list[int] = []
    seen_lstm = False
    for index, item in enumerate(net_arch):
        if isinstance(item, str):
            if item != "lstm":
                raise ValueError(f"net_arch entries must be positive ints, 'lstm' or one dict, got {item!r}")
            if seen_lstm:
                raise ValueError("net_arch must contain 'lstm' only once")
            seen_lstm = True
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool) and item > 0:
            (after if seen_lstm else before).append((index, int(item)))
        elif isinstance(item, Mapping):
            unknown = set(item) - {"pi", "vf"}
            if unknown:
                raise ValueError(f"net_arch dict keys must be 'pi' and 'vf', got {sorted(unknown)}")
            for key, sizes in (("pi", pi), ("vf", vf)):
                for size in item.get(key, []):
                    if size == "lstm":
                        raise ValueError("an LSTM is supported only in the shared part of net_arch, as in SB2")
                    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size <= 0:
                        raise ValueError(f"net_arch {key} sizes must be positive ints, got {size!r}")
                    sizes.append(int(size))
            if index != len(net_arch) - 1:
                raise ValueError("the dict(pi=[...], vf=[...]) must be the last entry of net_arch")
        else:
            raise ValueError(f"net_arch entries must be positive ints, 'lstm' or one dict, got {item!r}")
    if not seen_lstm:
        raise ValueError("a recurrent policy's net_arch must contain 'lstm' once, e.g. [64, 'lstm', dict(pi=[64])]")
    return before, after, pi, vf


class LstmPolicy(ActorCriticPolicy):
    """Stable Baselines 2's ``LstmPolicy``: features (an MLP or the Nature CNN), an LSTM of
    ``n_lstm`` units, then the policy and value heads on the LSTM's output.

    Legacy layout (``net_arch=None``): MLP layers ``layers`` (64, 64 by default), named
    ``pi_fc{i}``, then the LSTM, and both heads on its output. With ``net_arch`` (MLP only,
    as in SB2): shared layers, ``'lstm'``, more shared layers, then a dict of policy-only
    and value-only layers.
    """

    layer_norm = False

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        *,
        n_lstm: int = 256,
        layers: list[int] | None = None,
        net_arch: LstmNetArch | None = None,
        **kwargs: Any,
    ) -> None:
        if isinstance(n_lstm, bool) or not isinstance(n_lstm, (int, np.integer)) or n_lstm < 1:
            raise ValueError(f"n_lstm must be a positive integer, got {n_lstm!r}")
        if layers is not None and net_arch is not None:
            raise ValueError("pass either `layers` (SB2's legacy layout) or `net_arch`, not both")
        if net_arch is not None and self.feature_extraction == "cnn":
            raise ValueError(f"{type(self).__name__} has a fixed Nature CNN; net_arch is only for Mlp LSTM policies")
        self.n_lstm = int(n_lstm)
        self.layers = [64, 64] if layers is None else layer_sizes(layers, "layers")
        self.lstm_net_arch = parse_lstm_net_arch(net_arch) if net_arch is not None else None
        super().__init__(observation_space, action_space, net_arch=net_arch, **kwargs)  # type: ignore[arg-type]

    # -- construction -----------------------------------------------------------------
    def _build(self, rng: np.random.Generator) -> None:
        if self.feature_extraction == "cnn":
            self.before_lstm: list[Dense] = []
            in_dim = self._build_nature_cnn(rng)
            after: list[tuple[int, int]] = []
            pi_sizes: list[int] = []
            vf_sizes: list[int] = []
        elif self.lstm_net_arch is None:
            in_dim = flat_observation_dim(self.observation_space)
            self.before_lstm = []
            for i, size in enumerate(self.layers):
                self.before_lstm.append(self._dense(in_dim, size, f"pi_fc{i}", np.sqrt(2), rng))
                in_dim = size
            after, pi_sizes, vf_sizes = [], [], []
        else:
            before, after, pi_sizes, vf_sizes = self.lstm_net_arch
            in_dim = flat_observation_dim(self.observation_space)
            self.before_lstm = []
            for index, size in before:
                self.before_lstm.append(self._dense(in_dim, size, f"shared_fc{index}", np.sqrt(2), rng))
                in_dim = size
        lstm_layers = self._build_lstm(in_dim, rng)
        dim = self.n_lstm
        self.after_lstm: list[Dense] = []
        for index, size in after:
            self.after_lstm.append(self._dense(dim, size, f"shared_fc{index}", np.sqrt(2), rng))
            dim = size
        self.pi_layers, self.vf_layers = [], []
        pi_dim = vf_dim = dim
        for i, size in enumerate(pi_sizes):
            self.pi_layers.append(self._dense(pi_dim, size, f"pi_fc{i}", np.sqrt(2), rng))
            pi_dim = size
        for i, size in enumerate(vf_sizes):
            self.vf_layers.append(self._dense(vf_dim, size, f"vf_fc{i}", np.sqrt(2), rng))
            vf_dim = size
        self._build_heads(pi_dim, vf_dim, rng)
        extractor = [*self.conv_layers, self.fc] if self.feature_extraction == "cnn" else []
        self.kfac_layers = [
            *extractor,
            *self.before_lstm,
            *lstm_layers,
            *self.after_lstm,
            *self.pi_layers,
            *self.vf_layers,
            self.value_head,
            self.pi_head,
        ]

    def _build_lstm(self, in_dim: int, rng: np.random.Generator) -> list[KfacLayer]:
        """The LSTM's K-FAC layers; ``W_x`` and ``W_h`` initialised orthogonally apart, as SB2 does."""
        n = self.n_lstm
        if not self.layer_norm:
            self.lstm = self._dense(in_dim + n, 4 * n, "lstm1", 1.0, rng)
            w_x, w_h = orthogonal_initializer((in_dim, 4 * n), 1.0, rng), orthogonal_initializer((n, 4 * n), 1.0, rng)
            self.lstm.kernel.assign(np.concatenate([w_x, w_h]))
            return [self.lstm]
        self.lstm_wx = Dense(in_dim, 4 * n, name="lstm1_wx", rng=rng, dtype=self.dtype, use_bias=False)
        self.lstm_wh = Dense(n, 4 * n, name="lstm1_wh", rng=rng, dtype=self.dtype, use_bias=False)
        self.lstm_ln_x = ScaleAndShift(4 * n, name="lstm1_ln_x", dtype=self.dtype)
        self.lstm_ln_h = ScaleAndShift(4 * n, name="lstm1_ln_h", dtype=self.dtype)
        self.lstm_bias = ScaleAndShift(4 * n, name="lstm1_b", scale=False, dtype=self.dtype)
        self.lstm_ln_c = ScaleAndShift(n, name="lstm1_ln_c", dtype=self.dtype)
        named = {
            "wx": self.lstm_wx.kernel,
            "gx": self.lstm_ln_x.scale,
            "bx": self.lstm_ln_x.shift,
            "wh": self.lstm_wh.kernel,
            "gh": self.lstm_ln_h.scale,
            "bh": self.lstm_ln_h.shift,
            "b": self.lstm_bias.shift,
            "gc": self.lstm_ln_c.scale,
            "bc": self.lstm_ln_c.shift,
        }
        for key, variable in named.items():
            assert variable is not None
            self.parameters[f"model/lstm1/{key}:0"] = variable
        return [self.lstm_wx, self.lstm_ln_x, self.lstm_wh, self.lstm_ln_h, self.lstm_bias, self.lstm_ln_c]

    # -- the recurrent core -----------------------------------------------------------
    @property
    def state_shapes(self) -> tuple[tuple[int, ...], ...]:
        return ((2 * self.n_lstm,),)

    def _encode(self, observations: tf.Tensor) -> tf.Tensor:
        """``x_t``: the LSTM's input for a batch of raw observations."""
        if self.feature_extraction == "cnn":
            return self._nature_cnn(observations, tf.nn.relu)  # SB2's nature_cnn is ReLU whatever act_fun is
        x = self.flat_inputs(observations)
        for layer in self.before_lstm:
            x = self.act_fun(layer(x))
        return x

    def _cell(self, x: tf.Tensor, state: tf.Tensor, starts: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """One LSTM step for a batch: ``(h_t, [c_t, h_t])``; the state is zeroed where ``starts``."""
        keep = 1.0 - tf.cast(starts, self.dtype)[:, None]
        cell, hidden = tf.split(tf.convert_to_tensor(state, self.dtype) * keep, 2, axis=1)
        if self.layer_norm:
            z = self.lstm_ln_x(layer_norm(self.lstm_wx(x))) + self.lstm_ln_h(layer_norm(self.lstm_wh(hidden)))
            z = self.lstm_bias(z)
        else:
            z = self.lstm(tf.concat([x, hidden], axis=1))
        i, f, o, u = tf.split(z, 4, axis=1)
        cell = tf.sigmoid(f) * cell + tf.sigmoid(i) * tf.tanh(u)
        squashed = tf.tanh(self.lstm_ln_c(layer_norm(cell))) if self.layer_norm else tf.tanh(cell)
        hidden = tf.sigmoid(o) * squashed
        return hidden, tf.concat([cell, hidden], axis=1)

    def _outputs(self, hidden: tf.Tensor) -> tuple[Any, tf.Tensor]:
        """``(π, V)`` from the LSTM's outputs through the layers after it."""
        for layer in self.after_lstm:
            hidden = self.act_fun(layer(hidden))
        return self.heads(*self.split_latent(hidden))

    def step(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> PolicyStep:
        hidden, new_state = self._cell(self._encode(observations), state[0], episode_starts)
        distribution, values = self._outputs(hidden)
        return PolicyStep(distribution, values, (new_state,))

    def unroll(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> PolicyStep:
        n_steps = observations.shape[0]
        if n_steps is None:
            raise ValueError("unrolling an LSTM needs a static number of time steps")
        n_envs = tf.shape(observations)[1]
        flat = tf.reshape(observations, tf.concat([[-1], tf.shape(observations)[2:]], axis=0))
        features = tf.reshape(self._encode(flat), [n_steps, n_envs, -1])
        current, outputs = state[0], []
        for t in range(n_steps):  # one K-FAC use of each LSTM layer per time step
            hidden, current = self._cell(features[t], current, episode_starts[t])
            outputs.append(hidden)
        distribution, values = self._outputs(env_major(tf.stack(outputs)))
        return PolicyStep(distribution, values, (current,))

    # -- description ------------------------------------------------------------------
    def constructor_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"act_fun": self.act_fun_name, "n_lstm": self.n_lstm}
        if self.net_arch is not None:
            kwargs["net_arch"] = [dict(x) if isinstance(x, Mapping) else x for x in self.net_arch]
        elif self.feature_extraction == "mlp":
            kwargs["layers"] = list(self.layers)
        return kwargs

    def sb2_parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """As the base class, with the joined kernel split back into SB2's ``lstm1/wx``, ``lstm1/wh``."""
        shapes = super().sb2_parameter_shapes()
        if self.layer_norm or "model/lstm1/w:0" not in shapes:
            return shapes
        out: dict[str, tuple[int, ...]] = {}
        for name, shape in shapes.items():
            if name == "model/lstm1/w:0":
                out["model/lstm1/wx:0"] = (shape[0] - self.n_lstm, shape[1])
                out["model/lstm1/wh:0"] = (self.n_lstm, shape[1])
            else:
                out[name] = shape
        return out

    def parameters_from_sb2(self, parameters: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """SB2's ``lstm1/wx`` and ``lstm1/wh`` joined into this policy's ``[x_t, h_{t−1}]`` kernel."""
        out = dict(parameters)
        if not self.layer_norm and "model/lstm1/wx:0" in out and "model/lstm1/wh:0" in out:
            w_x, w_h = np.asarray(out.pop("model/lstm1/wx:0")), np.asarray(out.pop("model/lstm1/wh:0"))
            if w_x.ndim != 2 or w_h.ndim != 2 or w_x.shape[1] != w_h.shape[1]:
                raise ValueError(
                    f"SB2's LSTM matrices do not fit together: wx {w_x.shape}, wh {w_h.shape} (both [rows, 4·n_lstm])"
                )
            out["model/lstm1/w:0"] = np.concatenate([w_x, w_h])
        return out


class MlpLstmPolicy(LstmPolicy):
    """Stable Baselines 2's ``MlpLstmPolicy``: an MLP (tanh 64-64), then an LSTM."""


class MlpLnLstmPolicy(LstmPolicy):
    """Stable Baselines 2's ``MlpLnLstmPolicy``: an MLP, then a layer-normalised LSTM."""

    layer_norm = True


class CnnLstmPolicy(LstmPolicy):
    """Stable Baselines 2's ``CnnLstmPolicy``: the Nature CNN, then an LSTM."""

    feature_extraction = "cnn"


class CnnLnLstmPolicy(LstmPolicy):
    """Stable Baselines 2's ``CnnLnLstmPolicy``: the Nature CNN, then a layer-normalised LSTM."""

    feature_extraction = "cnn"
    layer_norm = True


for _policy in (MlpLstmPolicy, MlpLnLstmPolicy, CnnLstmPolicy, CnnLnLstmPolicy):
    POLICIES[_policy.__name__] = _policy
