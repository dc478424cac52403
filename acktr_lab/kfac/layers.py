"""Layers whose curvature K-FAC can see: explicit weights, recorded inputs and pre-activations.

A layer computes its pre-activation ``s = a W + b``. While a :func:`capture` context is
active, every call records the pair ``(a, s)``; the optimizer later takes the gradient of
the sampled-Fisher loss with respect to the recorded ``s`` and forms the Kronecker factors

    A = E[ā āᵀ]   (ā = [a, 1], the bias folded into the input by a column of ones)
    G = E[g gᵀ]   (g = ∂ℓ/∂s for a sampled target)

from the *same* forward pass that produced the training loss. A layer called several
times inside one capture (weights shared across time steps, as in an LSTM) records every
use; its statistics are taken over all uses as independent samples.

Nothing here matches op names: the optimizer is handed the layers explicitly.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorflow as tf

_parameter_budget = threading.local()


@contextlib.contextmanager
def parameter_budget(max_parameters: int, max_curvature_bytes: int | None = None) -> Iterator[None]:
    """Layers created inside (in this thread) may hold at most ``max_parameters`` numbers in
    all: a layer that would pass the budget raises ``ValueError`` *before* allocating
    anything. For building a network described by an untrusted source (a file), whose
    parameters are known to number at most ``max_parameters``.

    Inside, layers start from zeros rather than their orthogonal initialisation (the source
    supplies every parameter, and an orthogonal initialisation of a k×k layer costs O(k³)),
    and the curvature blocks made for them may hold at most ``max_curvature_bytes`` of
    Kronecker factors and eigenvectors in all (None: no limit)."""
    previous = (getattr(_parameter_budget, "left", None), getattr(_parameter_budget, "curvature_left", None))
    _parameter_budget.left = int(max_parameters)
    _parameter_budget.curvature_left = None if max_curvature_bytes is None else int(max_curvature_bytes)
    try:
        yield
    finally:
        _parameter_budget.left, _parameter_budget.curvature_left = previous


def _take(allowance: str, amount: int, refusal: Callable[[int], str]) -> None:
    """Take ``amount`` from the current budget's ``allowance`` (an attribute of the
    thread-local budget; None: no budget), or ``ValueError(refusal(left))``."""
    left = getattr(_parameter_budget, allowance, None)
    if left is None:
        return
    if amount > left:
        raise ValueError(refusal(left))
    setattr(_parameter_budget, allowance, left - amount)


def _reserve(layer: str, count: int) -> None:
    _take(
        "left",
        count,
        lambda left: f"layer {layer!r} needs {count:,} parameters, more than the {left:,} left of its parameter budget",
    )


def reserve_curvature(block: str, nbytes: int) -> None:
    """Take ``nbytes`` of curvature (factors, eigenvectors) for ``block`` from the current
    :func:`parameter_budget`'s allowance, or ``ValueError`` before anything is allocated."""
    _take(
        "curvature_left",
        nbytes,
        lambda left: (
            f"layer {block!r}: its K-FAC factors and eigenvectors would take {nbytes / 2**20:,.1f} MiB, more than "
            f"the {left / 2**20:,.1f} MiB left of the curvature budget for a network built from a file"
        ),
    )


def orthogonal_initializer(shape: Sequence[int], scale: float, rng: np.random.Generator) -> np.ndarray:
    """Orthogonal initialisation as Stable Baselines 2's ``ortho_init`` (2-D or HWIO 4-D)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) == 2:
        flat_shape = shape
    elif len(shape) == 4:
        flat_shape = (int(np.prod(shape[:-1])), shape[-1])
    else:
        raise ValueError(f"orthogonal init needs a 2-D or 4-D shape, got {shape}")
    if getattr(_parameter_budget, "left", None) is not None:  # built from a file: it supplies the weights
        return np.zeros(shape, np.float64)
    noise = rng.normal(0.0, 1.0, flat_shape)
    u, _, v = np.linalg.svd(noise, full_matrices=False)
    weights = u if u.shape == flat_shape else v
    return (scale * weights.reshape(shape)).astype(np.float64)


@dataclass
class LayerUse:
    """One call of a layer: its input and pre-activation tensors."""

    inputs: tf.Tensor
    preactivations: tf.Tensor


@dataclass
class Capture:
    """The uses of every K-FAC layer recorded during one forward pass."""

    uses: dict[int, list[LayerUse]] = field(default_factory=dict)

    def record(self, layer: KfacLayer, inputs: tf.Tensor, preactivations: tf.Tensor) -> None:
        self.uses.setdefault(id(layer), []).append(LayerUse(inputs, preactivations))

    def uses_of(self, layer: KfacLayer) -> list[LayerUse]:
        try:
            return self.uses[id(layer)]
        except KeyError:
            raise ValueError(
                f"layer {layer.name!r} is registered with K-FAC but was not called inside the capture() of this step"
            ) from None


_ACTIVE = threading.local()


@contextlib.contextmanager
def capture() -> Iterator[Capture]:
    """Record the inputs and pre-activations of every K-FAC layer called in this block."""
    stack: list[Capture] = getattr(_ACTIVE, "stack", [])
    _ACTIVE.stack = stack
    recorded = Capture()
    stack.append(recorded)
    try:
        yield recorded
    finally:
        stack.pop()


def _active_capture() -> Capture | None:
    stack = getattr(_ACTIVE, "stack", None)
    return stack[-1] if stack else None


class KfacLayer(tf.Module):
    """A layer whose calls can be captured for K-FAC; :attr:`parameters` are its 1 or 2 variables."""

    @property
    def parameters(self) -> tuple[tf.Variable, ...]:
        """The variables this layer's curvature block covers, in the block's order."""
        raise NotImplementedError

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        preactivations = self.forward(inputs)
        recorder = _active_capture()
        if recorder is not None:
            recorder.record(self, inputs, preactivations)
        return preactivations

    def forward(self, inputs: tf.Tensor) -> tf.Tensor:
        raise NotImplementedError


class Dense(KfacLayer):
    """Fully connected layer ``s = a W + b`` with ``W`` of shape ``[in, out]`` (``s = a W``
    with ``use_bias=False``, for a matrix whose shift is applied after a normalisation).

    Variables are named ``w`` and ``b`` inside the module's name scope, so a layer named
    ``pi_fc0`` under ``model`` owns ``model/pi_fc0/w:0`` and ``model/pi_fc0/b:0``, the names
    Stable Baselines 2 uses.
    """

    bias: tf.Variable | None

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        name: str,
        init_scale: float = 1.0,
        rng: np.random.Generator | None = None,
        dtype: tf.DType = tf.float32,
        use_bias: bool = True,
    ) -> None:
        super().__init__(name=name)
        if in_features <= 0 or out_features <= 0:
            raise ValueError(f"Dense {name!r} needs positive sizes, got {in_features}->{out_features}")
        _reserve(name, int(in_features) * int(out_features) + (int(out_features) if use_bias else 0))
        rng = rng if rng is not None else np.random.default_rng()
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        with self.name_scope:
            self.kernel = tf.Variable(
                orthogonal_initializer((in_features, out_features), init_scale, rng),
                dtype=dtype,
                name="w",
            )
            self.bias = tf.Variable(tf.zeros([out_features], dtype=dtype), name="b") if use_bias else None

    @property
    def parameters(self) -> tuple[tf.Variable, ...]:
        return (self.kernel,) if self.bias is None else (self.kernel, self.bias)

    def forward(self, inputs: tf.Tensor) -> tf.Tensor:
        outputs = tf.matmul(inputs, self.kernel)
        return outputs if self.bias is None else outputs + self.bias


class Conv2D(KfacLayer):
    """2-D convolution (NHWC) ``s = conv(a, W) + b`` with ``W`` of shape ``[kh, kw, cin, cout]``."""

    def __init__(
        self,
        in_channels: int,
        filters: int,
        kernel_size: int | tuple[int, int],
        *,
        strides: int | tuple[int, int] = 1,
        padding: str = "VALID",
        name: str,
        init_scale: float = 1.0,
        rng: np.random.Generator | None = None,
        dtype: tf.DType = tf.float32,
    ) -> None:
        super().__init__(name=name)
        kh, kw = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
        sh, sw = (strides, strides) if isinstance(strides, int) else strides
        padding = padding.upper()
        if padding not in ("VALID", "SAME"):
            raise ValueError(f"Conv2D {name!r}: padding must be 'VALID' or 'SAME', got {padding!r}")
        _reserve(name, int(kh) * int(kw) * int(in_channels) * int(filters) + int(filters))
        rng = rng if rng is not None else np.random.default_rng()
        self.kernel_size = (int(kh), int(kw))
        self.strides = (int(sh), int(sw))
        self.padding = padding
        self.in_channels = int(in_channels)
        self.filters = int(filters)
        with self.name_scope:
            self.kernel = tf.Variable(
                orthogonal_initializer((kh, kw, in_channels, filters), init_scale, rng),
                dtype=dtype,
                name="w",
            )
            self.bias = tf.Variable(tf.zeros([filters], dtype=dtype), name="b")

    @property
    def parameters(self) -> tuple[tf.Variable, ...]:
        return (self.kernel, self.bias)

    def forward(self, inputs: tf.Tensor) -> tf.Tensor:
        return tf.nn.conv2d(inputs, self.kernel, strides=(1, *self.strides, 1), padding=self.padding) + self.bias

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Output height and width for an input of ``height × width`` (TensorFlow's padding rules)."""
        (kh, kw), (sh, sw) = self.kernel_size, self.strides
        if self.padding == "VALID":
            return (height - kh) // sh + 1, (width - kw) // sw + 1
        return -(-height // sh), -(-width // sw)

    def patch_means(self, inputs: tf.Tensor) -> tf.Tensor:
        """Each example's patch averaged over the T output positions, ``[B, kh·kw·cin]``.

        ``(1/T) Σ_t a_t`` without materialising the patches: the entry of kernel offset
        ``(i, j)`` and channel ``c`` is ``Σ_{h,w} R[i,h] C[j,w] x[h,w,c]``, where
        ``R[i,h] = 1/Oh`` when input row ``h`` lies under offset ``i`` at some output row
        (``h = s·y + i - pad_top``), else 0, and ``C`` likewise for columns: two small
        contractions instead of a ``[B, Oh, Ow, kh·kw·cin]`` tensor. Needs the input's
        height and width to be known when the step is traced.
        """
        height, width = inputs.shape[1], inputs.shape[2]
        if height is None or width is None:
            raise ValueError(f"Conv2D {self.name!r}: patch means need a static input height and width")
        out_h, out_w = self.output_size(height, width)
        rows = self._offset_selection(height, out_h, self.kernel_size[0], self.strides[0])
        cols = self._offset_selection(width, out_w, self.kernel_size[1], self.strides[1])
        summed_rows = tf.einsum("ih,bhwc->biwc", tf.constant(rows, inputs.dtype), inputs)
        means = tf.einsum("jw,biwc->bijc", tf.constant(cols, inputs.dtype), summed_rows)
        return tf.reshape(means, [tf.shape(inputs)[0], -1])

    def _offset_selection(self, size: int, out_size: int, kernel: int, stride: int) -> np.ndarray:
        """``[kernel, size]``: 1/out_size where input index ``h`` is under kernel offset ``i``."""
        top = 0 if self.padding == "VALID" else max((out_size - 1) * stride + kernel - size, 0) // 2
        selection = np.zeros((kernel, size))
        for i in range(kernel):
            for y in range(out_size):
                h = y * stride + i - top
                if 0 <= h < size:
                    selection[i, h] = 1.0 / out_size
        return selection

    def patches(self, inputs: tf.Tensor) -> tf.Tensor:
        """Image patches ``[B, Oh, Ow, kh·kw·cin]`` in the row order of ``W`` reshaped to 2-D."""
        kh, kw = self.kernel_size
        sh, sw = self.strides
        return tf.image.extract_patches(
            inputs,
            sizes=[1, kh, kw, 1],
            strides=[1, sh, sw, 1],
            rates=[1, 1, 1, 1],
            padding=self.padding,
        )


class ScaleAndShift(KfacLayer):
    """Elementwise ``s = a ⊙ γ + β`` over the last axis (the gains and shifts of a layer
    norm); ``scale=False`` gives a pure shift ``s = a + β``.

    Variables ``g`` (γ, initialised to ones) and ``b`` (β, zeros), each ``[size]``.
    """

    def __init__(
        self, size: int, *, name: str, scale: bool = True, shift: bool = True, dtype: tf.DType = tf.float32
    ) -> None:
        super().__init__(name=name)
        if size <= 0:
            raise ValueError(f"ScaleAndShift {name!r} needs a positive size, got {size}")
        if not (scale or shift):
            raise ValueError(f"ScaleAndShift {name!r} needs a scale, a shift or both")
        _reserve(name, int(size) * (int(scale) + int(shift)))
        self.size = int(size)
        with self.name_scope:
            self.scale = tf.Variable(tf.ones([size], dtype=dtype), name="g") if scale else None
            self.shift = tf.Variable(tf.zeros([size], dtype=dtype), name="b") if shift else None

    @property
    def parameters(self) -> tuple[tf.Variable, ...]:
        return tuple(v for v in (self.scale, self.shift) if v is not None)

    def forward(self, inputs: tf.Tensor) -> tf.Tensor:
        outputs = inputs if self.scale is None else inputs * self.scale
        return outputs if self.shift is None else outputs + self.shift


def layer_norm(x: tf.Tensor, epsilon: float = 1e-5) -> tf.Tensor:
    """``(x − mean(x)) / √(var(x) + ε)`` over the last axis, without gain or shift
    (Stable Baselines 2's ``_ln`` before its gain and bias)."""
    mean, variance = tf.nn.moments(x, axes=[-1], keepdims=True)
    return (x - mean) / tf.sqrt(variance + epsilon)
