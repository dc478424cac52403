"""Kronecker-factored curvature blocks, one per registered layer.

A block approximates its layer's Fisher block by a Kronecker product. Writing the layer's
gradient as a matrix ``∇`` of shape ``[d_in + 1, d_out]`` (the kernel with the bias as a
last row) and vectorising row-major,

    F ≈ A ⊗ G,     A = E[ā āᵀ] ∈ R^{(d_in+1)²},     G = E[g gᵀ] ∈ R^{d_out²}.

The public surface is small (as in kfac-jax): :meth:`~KroneckerBlock.batch_statistics`,
:meth:`~KroneckerBlock.update_statistics`, :meth:`~KroneckerBlock.refresh_inverse`,
:meth:`~KroneckerBlock.multiply_inverse` and :meth:`~KroneckerBlock.eigenvalues`.

With eigendecompositions ``A = Q_A diag(λ_A) Q_Aᵀ`` and ``G = Q_G diag(λ_G) Q_Gᵀ``, the
damped inverse applied to a gradient is

    (A ⊗ G + δ I)⁻¹ vec(∇) = vec( Q_A [ (Q_Aᵀ ∇ Q_G) / (λ_A λ_Gᵀ + δ) ] Q_Gᵀ ),

the damping added to the eigenvalue products as Stable Baselines 2 does.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from acktr_lab.kfac.layers import Conv2D, Dense, KfacLayer, LayerUse


class KroneckerBlock(tf.Module):
    """Statistics and inverse of one layer's Kronecker factors."""

    def __init__(self, layer: KfacLayer, input_dim: int, output_dim: int) -> None:
        super().__init__(name=f"{layer.name}_kfac")
        self.layer = layer
        self.layer_name = layer.name
        self.input_dim = input_dim  # d_in + 1 (bias column)
        self.output_dim = output_dim
        dtype = layer.kernel.dtype
        self.dtype = dtype
        with self.name_scope:
            self.input_factor = tf.Variable(tf.zeros([input_dim, input_dim], dtype), trainable=False, name="A")
            self.gradient_factor = tf.Variable(tf.zeros([output_dim, output_dim], dtype), trainable=False, name="G")
            self.input_eigenvalues = tf.Variable(tf.zeros([input_dim], dtype), trainable=False, name="A_eigenvalues")
            self.input_eigenvectors = tf.Variable(
                tf.eye(input_dim, dtype=dtype), trainable=False, name="A_eigenvectors"
            )
            self.gradient_eigenvalues = tf.Variable(
                tf.zeros([output_dim], dtype), trainable=False, name="G_eigenvalues"
            )
            self.gradient_eigenvectors = tf.Variable(
                tf.eye(output_dim, dtype=dtype), trainable=False, name="G_eigenvectors"
            )

    # -- statistics -------------------------------------------------------------------
    def batch_statistics(
        self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """This batch's ``(A, G)`` from the recorded uses and ``∂L_fisher/∂s`` of each use.

        ``L_fisher`` is a *mean* over the batch, so per-example gradients are recovered
        by multiplying with the number of examples ``N`` (the leading dimensions of all
        uses together).
        """
        raise NotImplementedError

    def update_statistics(self, batch_input: tf.Tensor, batch_gradient: tf.Tensor, new_weight: tf.Tensor) -> None:
        """``A ← A + w·(A_batch - A)`` (G alike), in place: a running mean while ``w = 1/(k+1)``,
        an exponential moving average once ``w = 1 - stats_decay``.

        ``w = 0`` leaves the factors exactly as they are, even when the batch factors are
        not finite (``multiply_no_nan``): a skipped update needs no branch.
        """
        w = tf.cast(new_weight, self.dtype)
        self.input_factor.assign_add(tf.math.multiply_no_nan(batch_input - self.input_factor, w))
        self.gradient_factor.assign_add(tf.math.multiply_no_nan(batch_gradient - self.gradient_factor, w))

    # -- inverse ----------------------------------------------------------------------
    def refresh_inverse(self, eigen_epsilon: float | tf.Tensor, accept: bool | tf.Tensor = True) -> tf.Tensor:
        """Eigendecompose A and G; eigenvalues below ``eigen_epsilon`` become 0.

        Returns a boolean tensor: False when ``accept`` is False or the decomposition was
        not finite, in which case the previous decomposition is kept (straight-line code:
        the new and the old values are chosen with ``tf.where``, no branch).
        """
        eps = tf.cast(tf.convert_to_tensor(eigen_epsilon, dtype_hint=self.dtype), self.dtype)
        # tf.linalg.eigh raises (rather than returning NaN) on a non-finite input: hand it an
        # identity instead and reject the result below.
        factors_finite = tf.logical_and(
            tf.reduce_all(tf.math.is_finite(self.input_factor)), tf.reduce_all(tf.math.is_finite(self.gradient_factor))
        )
        values_a, vectors_a = _symmetric_eigh(
            tf.where(factors_finite, self.input_factor, tf.eye(self.input_dim, dtype=self.dtype))
        )
        values_g, vectors_g = _symmetric_eigh(
            tf.where(factors_finite, self.gradient_factor, tf.eye(self.output_dim, dtype=self.dtype))
        )
        outputs = (values_a, vectors_a, values_g, vectors_g)
        ok = tf.reduce_all(
            [tf.convert_to_tensor(accept), factors_finite, *[tf.reduce_all(tf.math.is_finite(t)) for t in outputs]]
        )
        new = (
            tf.where(values_a > eps, values_a, tf.zeros_like(values_a)),
            vectors_a,
            tf.where(values_g > eps, values_g, tf.zeros_like(values_g)),
            vectors_g,
        )
        for variable, value in zip(self._inverse_variables(), new):
            variable.assign(tf.where(ok, value, variable))
        return ok

    def _inverse_variables(self) -> tuple[tf.Variable, tf.Variable, tf.Variable, tf.Variable]:
        return self.input_eigenvalues, self.input_eigenvectors, self.gradient_eigenvalues, self.gradient_eigenvectors

    def set_inverse(
        self,
        input_eigenvalues: tf.Tensor | np.ndarray,
        input_eigenvectors: tf.Tensor | np.ndarray,
        gradient_eigenvalues: tf.Tensor | np.ndarray,
        gradient_eigenvectors: tf.Tensor | np.ndarray,
    ) -> None:
        """Install a decomposition computed elsewhere (the asynchronous path)."""
        values = (input_eigenvalues, input_eigenvectors, gradient_eigenvalues, gradient_eigenvectors)
        for variable, value in zip(self._inverse_variables(), values):
            variable.assign(tf.cast(value, self.dtype))

    def multiply_inverse(self, gradient: tf.Tensor, damping: float | tf.Tensor) -> tf.Tensor:
        """``Q_A [(Q_Aᵀ ∇ Q_G) / (λ_A λ_Gᵀ + δ)] Q_Gᵀ`` for ``∇`` of shape ``[d_in+1, d_out]``."""
        q_a, q_g = self.input_eigenvectors, self.gradient_eigenvectors
        rotated = tf.matmul(tf.matmul(q_a, gradient, transpose_a=True), q_g)
        denominator = self.input_eigenvalues[:, None] * self.gradient_eigenvalues[None, :]
        rotated = rotated / (denominator + tf.cast(tf.convert_to_tensor(damping, dtype_hint=self.dtype), self.dtype))
        return tf.matmul(tf.matmul(q_a, rotated), q_g, transpose_b=True)

    def eigenvalues(self) -> tuple[np.ndarray, np.ndarray]:
        """The current (clipped) eigenvalues of A and G, ascending."""
        return self.input_eigenvalues.numpy(), self.gradient_eigenvalues.numpy()

    # -- layout -----------------------------------------------------------------------
    def gradient_matrix(self, kernel_grad: tf.Tensor, bias_grad: tf.Tensor) -> tf.Tensor:
        """The layer's gradient as ``[d_in + 1, d_out]``: kernel rows, then the bias row."""
        if kernel_grad.shape.rank != 2:  # a convolution's [kh, kw, cin, cout]
            kernel_grad = tf.reshape(kernel_grad, [self.input_dim - 1, self.output_dim])
        return tf.concat([kernel_grad, bias_grad[None, :]], axis=0)

    def split_matrix(self, matrix: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Inverse of :meth:`gradient_matrix`: back to kernel and bias shapes."""
        kernel = matrix[:-1]
        if self.layer.kernel.shape.rank != 2:
            kernel = tf.reshape(kernel, self.layer.kernel.shape)
        return kernel, matrix[-1]


def _symmetric_eigh(matrix: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Eigendecomposition of the symmetric matrix whose lower triangle ``matrix`` holds.

    ``tf.linalg.eigh`` references only the lower triangle, so the round-off asymmetry of a
    factor ``XᵀX/n`` is ignored without symmetrising it first (dropping ``(M + Mᵀ)/2`` made
    the MLP benchmark's updates with decompositions ≈ 15% faster: small transposes are slow).
    """
    return tf.linalg.eigh(matrix)


def _with_ones(rows: tf.Tensor) -> tf.Tensor:
    return tf.concat([rows, tf.ones_like(rows[:, :1])], axis=1)


class DenseBlock(KroneckerBlock):
    """Dense layer: ``A = āᵀā / N``, ``G = (N g)ᵀ(N g) / N`` over the N rows of all uses."""

    def __init__(self, layer: Dense) -> None:
        super().__init__(layer, layer.in_features + 1, layer.out_features)

    def batch_statistics(
        self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        inputs = tf.concat([tf.cast(u.inputs, self.dtype) for u in uses], axis=0)
        grads = tf.concat(preactivation_grads, axis=0)
        n = tf.cast(tf.shape(inputs)[0], self.dtype)
        inputs = _with_ones(inputs)
        per_example_grads = grads * n
        input_factor = tf.matmul(inputs, inputs, transpose_a=True) / n
        gradient_factor = tf.matmul(per_example_grads, per_example_grads, transpose_a=True) / n
        return input_factor, gradient_factor


class Conv2DBlock(KroneckerBlock):
    """2-D convolution, Kronecker factors for convolution (Grosse & Martens, 2016).

    With patches ``ā_{b,t}`` at the T output positions and per-example pre-activation
    gradients ``g_{b,t} = B·∂L/∂s_{b,t}``:

        A = Ω = (1/B) Σ_b Σ_t ā_{b,t} ā_{b,t}ᵀ      (sum over positions, mean over examples)
        G = Γ = (1/(B·T)) Σ_b Σ_t g_{b,t} g_{b,t}ᵀ  (mean over positions and examples)

    so that ``A ⊗ G`` approximates ``E[vec(Σ_t ā_t g_tᵀ) vec(·)ᵀ]`` under spatial
    homogeneity and spatially uncorrelated derivatives.

    ``approx_t2=True`` (Stable Baselines 2's ``KfacOptimizer`` option of that name; the
    "K-FAC-reduce" of Eschenhagen et al., 2023) approximates the per-example gradient
    ``Σ_t ā_t g_tᵀ`` by ``ā̄ (Σ_t g_t)ᵀ`` with the mean patch ``ā̄ = (1/T) Σ_t ā_t``:

        A = (1/B) Σ_b ā̄_b ā̄_bᵀ,        G = (1/B) Σ_b (Σ_t g_{b,t}) (Σ_t g_{b,t})ᵀ,

    exact when every position sees the same patch, and B rows instead of B·T: for the
    Nature CNN's three convolutions at batch 640, ≈ 1 GFLOP of statistics instead of ≈ 80.
    """

    def __init__(self, layer: Conv2D, *, approx_t2: bool = False) -> None:
        kh, kw = layer.kernel_size
        super().__init__(layer, kh * kw * layer.in_channels + 1, layer.filters)
        self.approx_t2 = bool(approx_t2)

    def batch_statistics(
        self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]
    ) -> tuple[tf.Tensor, tf.Tensor]:
        layer = self.layer
        assert isinstance(layer, Conv2D)
        inputs = [tf.cast(u.inputs, self.dtype) for u in uses]
        n_examples = tf.cast(sum(tf.shape(x)[0] for x in inputs), self.dtype)
        if self.approx_t2:
            rows = tf.concat([layer.patch_means(x) for x in inputs], axis=0)
            grads = tf.concat([tf.reduce_sum(g, axis=[1, 2]) for g in preactivation_grads], axis=0)
        else:
            rows = tf.concat([tf.reshape(layer.patches(x), [-1, self.input_dim - 1]) for x in inputs], axis=0)
            grads = tf.concat([tf.reshape(g, [-1, self.output_dim]) for g in preactivation_grads], axis=0)
        rows = _with_ones(rows)
        n_rows = tf.cast(tf.shape(grads)[0], self.dtype)  # B·T, or B with approx_t2
        per_example_grads = grads * n_examples
        input_factor = tf.matmul(rows, rows, transpose_a=True) / n_examples
        gradient_factor = tf.matmul(per_example_grads, per_example_grads, transpose_a=True) / n_rows
        return input_factor, gradient_factor


def make_block(layer: KfacLayer, *, approx_t2: bool = False) -> KroneckerBlock:
    """The curvature block for ``layer``'s type (``approx_t2``: see :class:`Conv2DBlock`)."""
    if isinstance(layer, Conv2D):
        return Conv2DBlock(layer, approx_t2=approx_t2)
    if isinstance(layer, Dense):
        return DenseBlock(layer)
    raise ValueError(f"K-FAC has no curvature block for {type(layer).__name__}; supported: Dense, Conv2D")
