"""Inside K-FAC: the exact Fisher of a small classifier, natural gradients, and K-FAC's view of both.

For a network of K-FAC layers whose output is a categorical distribution ``p(y|x) = softmax(s(x))``,
the Fisher of its parameters θ over inputs ``x_1 … x_n`` is

    F = (1/n) Σ_i Σ_y p(y|x_i) ∇_θ log p(y|x_i) ∇_θ log p(y|x_i)ᵀ

(an expectation over the model's own predictions, not over the labels). K-FAC replaces each
layer's diagonal block of F by ``A ⊗ G`` and ignores the blocks between layers; the helpers
here compute both sides exactly (float64 NumPy) so the approximation can be looked at.

Layout. θ is every variable flattened row-major and concatenated in the given order
(:func:`flatten`). For a dense layer listed as ``(kernel, bias)`` this is exactly its curvature
block's layout, the row-major ``vec([W; b])`` of the ``[d_in + 1, d_out]`` gradient matrix
(:meth:`~acktr_lab.kfac.blocks.KroneckerBlock.gradient_matrix`): the bias is the last row, so
``vec([W; b]) = [vec(W), b]``. A layer's Fisher block is then the diagonal block of F at
:func:`layer_slices`, directly comparable with ``kron(A, G)``.

Directions are descent directions: a step of size η along ``d`` moves θ to ``θ - η·d``.
"""

from __future__ import annotations

import contextlib
import itertools
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from acktr_lab.compiled import compile_function
from acktr_lab.kfac.blocks import KroneckerBlock
from acktr_lab.kfac.layers import Dense, KfacLayer, capture
from acktr_lab.kfac.optimizer import KfacOptimizer

#: A classifier: inputs ``[n, d]`` → logits ``[n, C]``.
Model = Callable[[tf.Tensor], tf.Tensor]
Tensors = Iterable[tf.Tensor | tf.Variable | np.ndarray]


# -- layout ---------------------------------------------------------------------------------
def flatten(tensors: Tensors) -> np.ndarray:
    """``θ = [vec(t_1), vec(t_2), …]``: each tensor flattened row-major, concatenated (float64)."""
    return np.concatenate([np.asarray(t, dtype=np.float64).ravel() for t in tensors])


def unflatten(vector: np.ndarray, variables: Sequence[tf.Variable]) -> list[np.ndarray]:
    """Inverse of :func:`flatten`: ``vector`` cut into arrays of the variables' shapes (float64)."""
    vector = np.asarray(vector, dtype=np.float64)
    sizes = [int(np.prod(v.shape)) for v in variables]
    if vector.shape != (sum(sizes),):
        raise ValueError(f"a vector of {sum(sizes)} numbers is needed for these variables, got shape {vector.shape}")
    parts = np.split(vector, np.cumsum(sizes)[:-1])
    return [part.reshape(v.shape) for part, v in zip(parts, variables)]


def layer_slices(variables: Sequence[tf.Variable], layers: Sequence[KfacLayer]) -> list[slice]:
    """Where each layer's parameters sit in ``flatten(variables)``: one contiguous slice per layer.

    Raises ``ValueError`` unless each layer's :attr:`~acktr_lab.kfac.layers.KfacLayer.parameters`
    are among ``variables``, consecutive and in the block's order (kernel, then bias).
    """
    starts, offset = {}, 0
    for variable in variables:
        starts[variable.ref()] = offset
        offset += int(np.prod(variable.shape))
    slices = []
    for layer in layers:
        parameters = layer.parameters
        if any(p.ref() not in starts for p in parameters):
            raise ValueError(f"layer {layer.name!r}: its parameters are not all among the variables")
        start = end = starts[parameters[0].ref()]
        for parameter in parameters:
            if starts[parameter.ref()] != end:
                raise ValueError(f"layer {layer.name!r}: its parameters must be consecutive, kernel then bias")
            end += int(np.prod(parameter.shape))
        slices.append(slice(start, end))
    return slices


# -- the exact Fisher and K-FAC's blocks ----------------------------------------------------
def _log_prob_jacobians_graph(
    model: Model, variables: Sequence[tf.Variable], inputs: tf.Tensor
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """``log p(y|x_i)`` ``[n, C]`` and its Jacobians ``[n, C, *shape]``."""
    with tf.GradientTape() as tape:
        log_probs = tf.nn.log_softmax(model(inputs))
    jacobians = tape.jacobian(log_probs, list(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return log_probs, jacobians


#: One compiled Jacobian function per model (kept while the model lives), so that a notebook
#: looking at several models traces each once and is not warned of retracing: one shared
#: ``tf.function`` would retrace for every model and count the traces together.
_jacobian_functions: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()


def _log_prob_jacobians(
    model: Model, variables: Sequence[tf.Variable], inputs: tf.Tensor
) -> tuple[tf.Tensor, list[tf.Tensor]]:
    """:func:`_log_prob_jacobians_graph`, compiled once per model: the compiled function
    holds the model weakly, so it does not keep the model (its dictionary's key) alive."""
    try:
        model_ref = weakref.ref(model)
        function = _jacobian_functions.get(model)
    except TypeError:  # not weakly referable (or unhashable): compiled for this call only
        model_ref, function = (lambda: model), None
    if function is None:

        def log_prob_jacobians(variables: Sequence[tf.Variable], inputs: tf.Tensor) -> tuple[tf.Tensor, Any]:
            return _log_prob_jacobians_graph(model_ref(), variables, inputs)

        function = compile_function(log_prob_jacobians)
        with contextlib.suppress(TypeError):
            _jacobian_functions[model] = function
    return function(list(variables), inputs)


def exact_fisher(model: Model, variables: Sequence[tf.Variable], inputs: np.ndarray | tf.Tensor) -> np.ndarray:
    """The exact Fisher ``F = (1/n) Σ_i Σ_y p(y|x_i) ∇log p(y|x_i) ∇log p(y|x_i)ᵀ``, ``[P, P]``.

    ``∇`` is with respect to ``θ = flatten(variables)``, from per-example Jacobians of the
    log-probabilities (no sampling; float64 when the model is). Writing ``J_i = ∂log p(·|x_i)/∂θ``
    (``[C, P]``) this is ``F = (1/n) Σ_i J_iᵀ diag(p_i) J_i``.
    """
    log_probs, jacobians = _log_prob_jacobians(model, list(variables), tf.convert_to_tensor(inputs))
    n, classes = log_probs.shape
    jacobian = np.concatenate([np.reshape(j.numpy(), (n, classes, -1)) for j in jacobians], axis=-1)
    weighted = np.sqrt(np.exp(log_probs.numpy(), dtype=np.float64))[:, :, None] * jacobian
    rows = weighted.reshape(n * classes, -1)
    return rows.T @ rows / n


def expected_factors(
    optimizer: KfacOptimizer, model: Model, inputs: np.ndarray | tf.Tensor
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each Kronecker block's factors at the current θ, with the expectation over ``y`` taken exactly:

        A = (1/n) Σ_i ā_i ā_iᵀ,      G = (1/n) Σ_i Σ_y p(y|x_i) g_iy g_iyᵀ,   g_iy = ∂log p(y|x_i)/∂s_i.

    The optimizer estimates G from one sampled ``y`` per example and averages both factors over
    past updates (:attr:`~acktr_lab.kfac.blocks.KroneckerBlock.gradient_factor`); these are what
    those estimates estimate, so ``kron(A, G)`` against the exact Fisher block shows the error of
    the Kronecker structure alone. Computed by the blocks' own code
    (:meth:`KfacOptimizer.batch_statistics`), once per class with the weighted loss
    ``-(1/n) Σ_i sg(√p(y|x_i)) log p(y|x_i)`` (``sg``: no gradient), whose G is the y-th term.
    """
    if not all(isinstance(block, KroneckerBlock) for block in optimizer.blocks):
        raise ValueError("expected_factors needs Kronecker blocks only (Dense or Conv2D layers)")
    with tf.GradientTape(persistent=True) as tape, capture() as recorded:
        log_probs = tf.nn.log_softmax(model(tf.convert_to_tensor(inputs)))
        weights = tf.stop_gradient(tf.sqrt(tf.exp(log_probs)))
        class_losses = [-tf.reduce_mean(weights[:, y] * log_probs[:, y]) for y in range(log_probs.shape[-1])]
    per_class = [optimizer.batch_statistics(tape, loss, recorded) for loss in class_losses]
    return [
        (per_class[0][b][0].numpy(), sum(stats[b][1].numpy() for stats in per_class))
        for b in range(len(optimizer.blocks))
    ]


def kronecker_fisher(input_factor: np.ndarray, gradient_factor: np.ndarray, damping: float = 0.0) -> np.ndarray:
    """K-FAC's (damped) Fisher block ``A ⊗ G + δI`` in the block's row-major layout.

    Dense, so only for small layers; :meth:`~acktr_lab.kfac.blocks.KroneckerBlock.multiply_inverse`
    applies its inverse without ever forming it.
    """
    a, g = np.asarray(input_factor, np.float64), np.asarray(gradient_factor, np.float64)
    return np.kron(a, g) + damping * np.eye(a.shape[0] * g.shape[0])


def relative_error(approximation: np.ndarray, exact: np.ndarray) -> float:
    """``‖approximation − exact‖_F / ‖exact‖_F`` (Frobenius norms)."""
    return float(np.linalg.norm(approximation - exact) / np.linalg.norm(exact))


@dataclass(frozen=True)
class FisherBlock:
    """One layer's diagonal block of the Fisher three ways, each ``[P_l, P_l]`` in the block's layout."""

    layer: str
    exact: np.ndarray  #: the layer's block of :func:`exact_fisher`
    expected: np.ndarray  #: ``A ⊗ G`` from :func:`expected_factors`: the Kronecker structure's error alone
    running: np.ndarray  #: ``A ⊗ G`` from the optimizer's running statistics: what its updates use (undamped)


def fisher_blocks(optimizer: KfacOptimizer, model: Model, inputs: np.ndarray | tf.Tensor) -> list[FisherBlock]:
    """Every registered layer's :class:`FisherBlock` at the current θ (``model``'s variables are the
    optimizer's, each layer's listed kernel then bias: :func:`layer_slices`)."""
    variables = optimizer.trainable
    fisher = exact_fisher(model, variables, inputs)
    slices = layer_slices(variables, [block.layer for block in optimizer.blocks])
    expected = expected_factors(optimizer, model, inputs)
    return [
        FisherBlock(
            layer=block.layer_name,
            exact=fisher[s, s],
            expected=kronecker_fisher(*factors),
            running=kronecker_fisher(block.input_factor.numpy(), block.gradient_factor.numpy()),
        )
        for block, s, factors in zip(optimizer.blocks, slices, expected)
    ]


# -- directions -----------------------------------------------------------------------------
def gradient(loss_fn: Callable[[], tf.Tensor], variables: Sequence[tf.Variable]) -> np.ndarray:
    """``g = ∇_θ L``, flattened as :func:`flatten` (zeros for variables the loss does not use)."""
    with tf.GradientTape() as tape:
        loss = loss_fn()
    grads = tape.gradient(loss, list(variables), unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return flatten(g.numpy() for g in grads)


def natural_gradient(
    fisher: np.ndarray, gradient: np.ndarray, damping: float, slices: Sequence[slice] | None = None
) -> np.ndarray:
    """The exact damped natural gradient ``(F + δI)⁻¹ g``.

    With ``slices`` (from :func:`layer_slices`), the block-diagonal one: ``(F_ll + δI)⁻¹ g_l`` per
    layer, the cross-layer blocks dropped as K-FAC drops them; entries outside every slice keep
    ``g`` (as the optimizer does for variables of no registered layer).
    """
    g = np.asarray(gradient, dtype=np.float64)
    if slices is None:
        return np.linalg.solve(fisher + damping * np.eye(g.size), g)
    direction = g.copy()
    for s in slices:
        block = fisher[s, s]
        direction[s] = np.linalg.solve(block + damping * np.eye(block.shape[0]), g[s])
    return direction


@contextlib.contextmanager
def _hyperparameters(optimizer: KfacOptimizer, **values: float | None) -> Iterator[dict[str, float]]:
    """The optimizer's live hyperparameters with the given (not None) values, restored on exit."""
    previous = optimizer.get_hyperparameters()
    changed = {k: v for k, v in values.items() if v is not None}
    optimizer.set_hyperparameters(**changed)
    try:
        yield {**previous, **{k: float(v) for k, v in changed.items()}}
    finally:
        optimizer.set_hyperparameters(**{k: previous[k] for k in changed})


def kfac_direction(optimizer: KfacOptimizer, gradient: np.ndarray, damping: float | None = None) -> np.ndarray:
    """K-FAC's direction ``V = (A ⊗ G + δI)⁻¹ g`` per layer from the optimizer's current inverse
    (:meth:`KfacOptimizer.precondition`; the plain ``g`` for unregistered variables).

    ``g`` is flattened as ``optimizer.trainable``; ``damping`` overrides δ for this call only.
    """
    variables = optimizer.trainable
    grads = [tf.constant(part, dtype=v.dtype) for part, v in zip(unflatten(gradient, variables), variables)]
    with _hyperparameters(optimizer, damping=damping):
        return flatten(d.numpy() for d in optimizer.precondition(grads))


def trust_region_scale(gfg: float | np.ndarray, learning_rate: float, kfac_clip: float | np.ndarray) -> np.ndarray:
    """ACKTR's trust-region scale ``min(1, √(kfac_clip / (lr² · gᵀF̂⁻¹g)))`` (1 where ``gᵀF̂⁻¹g ≤ 0``).

    The step ``Δ = lr · scale · V`` (``V = F̂⁻¹g``) then has ``ΔᵀF̂Δ = min(lr² · gᵀF̂⁻¹g, kfac_clip)``:
    its squared length in the Fisher metric, about twice the KL divergence it causes, is capped
    at ``kfac_clip``. Broadcasts over array arguments.
    """
    vfv = learning_rate**2 * np.asarray(gfg, dtype=np.float64)
    positive = vfv > 0.0
    scale = np.minimum(1.0, np.sqrt(np.asarray(kfac_clip, np.float64) / np.where(positive, vfv, 1.0)))
    return np.where(positive, scale, 1.0)


def kfac_step(
    optimizer: KfacOptimizer,
    gradient: np.ndarray,
    *,
    damping: float | None = None,
    kfac_clip: float | None = None,
    learning_rate: float | None = None,
) -> tuple[np.ndarray, float]:
    """The K-FAC step ``Δ = lr · scale · V`` and its trust-region ``scale`` (:func:`trust_region_scale`),
    with ``V`` from :func:`kfac_direction` and ``gᵀF̂⁻¹g = gᵀV``.

    The optimizer applies it through momentum (``v ← μv + scale·V``, ``θ ← θ − lr(1 − μ)·v``), so
    ``Δ`` is its step once the momentum buffer has settled on ``V``. The optimizer's live
    hyperparameters are used, each given one overriding it for this call only.
    """
    with _hyperparameters(optimizer, damping=damping, kfac_clip=kfac_clip, learning_rate=learning_rate) as hp:
        direction = kfac_direction(optimizer, gradient)
    scale = float(trust_region_scale(float(np.dot(gradient, direction)), hp["learning_rate"], hp["kfac_clip"]))
    return hp["learning_rate"] * scale * direction, scale


def fisher_norm(direction: np.ndarray, fisher: np.ndarray) -> float:
    """``√(dᵀFd)``, the length of ``d`` in the Fisher metric: a step ``θ − η·d`` changes the model's
    predictions by ``KL ≈ η²·dᵀFd / 2``."""
    return float(np.sqrt(direction @ fisher @ direction))


def angle(u: np.ndarray, v: np.ndarray) -> float:
    """The angle between two directions in degrees, ``arccos(uᵀv / (‖u‖‖v‖))``."""
    norms = float(np.linalg.norm(u) * np.linalg.norm(v))
    if norms == 0.0:
        raise ValueError("the angle to a zero vector is undefined")
    return float(np.degrees(np.arccos(np.clip(np.dot(u, v) / norms, -1.0, 1.0))))


def loss_after_step(
    loss_fn: Callable[[], tf.Tensor],
    variables: Sequence[tf.Variable],
    direction: np.ndarray,
    step_sizes: float | Sequence[float] | np.ndarray,
) -> np.ndarray:
    """``L(θ − η·d)`` for each step size η, ``d`` flattened as ``variables``; the variables are
    restored to their exact values afterwards (also when ``loss_fn`` raises)."""
    saved = [v.numpy() for v in variables]
    parts = unflatten(direction, variables)
    losses = []
    try:
        for eta in np.atleast_1d(np.asarray(step_sizes, dtype=np.float64)):
            for variable, start, part in zip(variables, saved, parts):
                variable.assign((start - eta * part).astype(start.dtype))
            losses.append(float(loss_fn()))
    finally:
        for variable, start in zip(variables, saved):
            variable.assign(start)
    return np.array(losses)


# -- a small classifier ---------------------------------------------------------------------
class SoftmaxMlp:
    """``p(y|x) = softmax(s(x))``, ``s = φ(…φ(x W_1 + b_1)…) W_L + b_L``: float64 K-FAC Dense layers
    of the given sizes (``[d, hidden…, C]``), activation φ (tanh by default) between them."""

    def __init__(
        self, sizes: Sequence[int], *, seed: int = 0, activation: Callable[[tf.Tensor], tf.Tensor] = tf.tanh
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"SoftmaxMlp needs an input and an output size, got {list(sizes)}")
        rng = np.random.default_rng(seed)
        self.layers = [
            Dense(d_in, d_out, name=f"fc{k}", rng=rng, dtype=tf.float64)
            for k, (d_in, d_out) in enumerate(itertools.pairwise(sizes))
        ]
        self.activation = activation
        self.generator = tf.random.Generator.from_seed(seed)

    @property
    def variables(self) -> list[tf.Variable]:
        """Every layer's kernel and bias, layer by layer (θ's order; see :func:`layer_slices`)."""
        return [v for layer in self.layers for v in layer.parameters]

    def __call__(self, inputs: tf.Tensor) -> tf.Tensor:
        """The logits ``s(x)``, ``[n, C]``."""
        hidden = tf.convert_to_tensor(inputs, tf.float64)
        for layer in self.layers[:-1]:
            hidden = self.activation(layer(hidden))
        return self.layers[-1](hidden)

    def loss(self, inputs: tf.Tensor | np.ndarray, labels: tf.Tensor | np.ndarray) -> tf.Tensor:
        """The mean cross-entropy ``-(1/n) Σ_i log p(y_i|x_i)``."""
        return _cross_entropy(self(inputs), tf.convert_to_tensor(labels))

    def loss_fn(
        self, inputs: np.ndarray, labels: np.ndarray
    ) -> Callable[[], tuple[tf.Tensor, Callable[[], tf.Tensor]]]:
        """What :meth:`KfacOptimizer.minimize` takes: the loss on this data set, and the sampled-Fisher
        loss ``-(1/n) Σ_i log p(ỹ_i|x_i)`` with ``ỹ_i ~ p(·|x_i)`` (from :attr:`generator`), lazily.

        Make it once and reuse it: ``minimize`` compiles once per function object.
        """
        x, y = tf.constant(inputs, tf.float64), tf.constant(labels)

        def losses() -> tuple[tf.Tensor, Callable[[], tf.Tensor]]:
            logits = self(x)
            return _cross_entropy(logits, y), lambda: _cross_entropy(logits, self._sample(logits))

        return losses

    def _sample(self, logits: tf.Tensor) -> tf.Tensor:
        """``ỹ ~ softmax(logits)`` by the Gumbel-max trick, without gradient."""
        uniform = self.generator.uniform(tf.shape(logits), minval=1e-12, maxval=1.0, dtype=logits.dtype)
        return tf.argmax(tf.stop_gradient(logits) - tf.math.log(-tf.math.log(uniform)), axis=-1)


def _cross_entropy(logits: tf.Tensor, labels: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits))
