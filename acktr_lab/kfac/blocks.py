"""Curvature blocks, one per registered layer, found by layer type (:func:`make_block`).

A Kronecker block approximates its layer's Fisher block by a Kronecker product. Writing the
layer's gradient as a matrix ``∇`` of shape ``[d_in + 1, d_out]`` (the kernel with the bias
as a last row; ``[d_in, d_out]`` for a layer without bias) and vectorising row-major,

    F ≈ A ⊗ G,     A = E[ā āᵀ] ∈ R^{(d_in+1)²},     G = E[g gᵀ] ∈ R^{d_out²}.

A diagonal block (:class:`ScaleAndShiftBlock`, for the gains and shifts of a layer norm, as
kfac-jax's ``ScaleAndShiftDiagonal``) keeps ``F ≈ diag(E[(∂ℓ/∂θ)²])`` over the per-example
gradients of its parameters.

The public surface is small (as in kfac-jax): :meth:`~CurvatureBlock.batch_statistics`,
:meth:`~CurvatureBlock.update_statistics`, :meth:`~CurvatureBlock.refresh_inverse`,
:meth:`~CurvatureBlock.multiply_inverse` and :meth:`~CurvatureBlock.eigenvalues`, plus the
layout helpers :meth:`~CurvatureBlock.gradient_matrix` / :meth:`~CurvatureBlock.split_matrix`.
A block covers one or two variables (:attr:`~acktr_lab.kfac.layers.KfacLayer.parameters`).

With eigendecompositions ``A = Q_A diag(λ_A) Q_Aᵀ`` and ``G = Q_G diag(λ_G) Q_Gᵀ``, the
damped inverse applied to a gradient is

    (A ⊗ G + δ I)⁻¹ vec(∇) = vec( Q_A [ (Q_Aᵀ ∇ Q_G) / (λ_A λ_Gᵀ + δ) ] Q_Gᵀ ),

the damping added to the eigenvalue products as Stable Baselines 2 does.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from acktr_lab.kfac.layers import Conv2D, Dense, KfacLayer, LayerUse, ScaleAndShift, reserve_curvature

Statistics = tuple[tf.Tensor, ...]


class CurvatureBlock(tf.Module):
    """Statistics and damped inverse of one layer's Fisher block (the interface every block has)."""

    def __init__(self, layer: KfacLayer) -> None:
        super().__init__(name=f"{layer.name}_kfac")
        self.layer = layer
        self.layer_name = layer.name
        self.variables_covered: tuple[tf.Variable, ...] = layer.parameters
        self.dtype = self.variables_covered[0].dtype

    def batch_statistics(self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]) -> Statistics:
        """This batch's statistics from the recorded uses and ``∂L_fisher/∂s`` of each use.

        ``L_fisher`` is a *mean* over the batch, so per-example gradients are recovered
        by multiplying with the number of examples ``N`` (the leading dimensions of all
        uses together).
        """
        raise NotImplementedError

    def statistics(self) -> tuple[tf.Variable, ...]:
        """The running statistics, in the order :meth:`batch_statistics` returns them."""
        raise NotImplementedError

    def update_statistics(self, batch: Statistics, new_weight: tf.Tensor) -> None:
        """``S ← S + w·(S_batch − S)`` for each statistic, in place: a running mean while
        ``w = 1/(k+1)``, an exponential moving average once ``w = 1 − stats_decay``.

        ``w = 0`` leaves the statistics exactly as they are, even when the batch ones are
        not finite (``multiply_no_nan``): a skipped update needs no branch.
        """
        w = tf.cast(new_weight, self.dtype)
        for variable, value in zip(self.statistics(), batch):
            variable.assign_add(tf.math.multiply_no_nan(value - variable, w))

    def decompose(self, eigen_epsilon: float | tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """What :meth:`refresh_inverse` would install, computed from the statistics and not
        assigned: ``(values in the order of inverse_variables(), finite)``."""
        raise NotImplementedError

    def refresh_inverse(self, eigen_epsilon: float | tf.Tensor, accept: bool | tf.Tensor = True) -> tf.Tensor:
        """Recompute what :meth:`multiply_inverse` uses from the statistics (:meth:`decompose`);
        a boolean tensor, False (previous inverse kept) when ``accept`` is False or the result
        is not finite (straight-line code: new and old values chosen with ``tf.where``)."""
        new, finite = self.decompose(eigen_epsilon)
        ok = tf.logical_and(tf.convert_to_tensor(accept), finite)
        for variable, value in zip(self.inverse_variables(), new, strict=True):
            variable.assign(tf.where(ok, value, variable))
        return ok

    def inverse_variables(self) -> tuple[tf.Variable, ...]:
        """What :meth:`refresh_inverse` computes, in the order :meth:`set_inverse` takes it."""
        raise NotImplementedError

    def set_inverse(self, *values: tf.Tensor | np.ndarray) -> None:
        """Install an inverse computed elsewhere (the asynchronous path)."""
        for variable, value in zip(self.inverse_variables(), values, strict=True):
            variable.assign(tf.cast(value, self.dtype))

    def multiply_inverse(self, gradient: tf.Tensor, damping: float | tf.Tensor) -> tf.Tensor:
        """``(F̂ + δI)⁻¹`` applied to the gradient in :meth:`gradient_matrix` layout."""
        raise NotImplementedError

    def eigenvalues(self) -> tuple[np.ndarray, np.ndarray]:
        """The current (clipped) eigenvalues of the two factors, ascending."""
        first, second = self.eigenvalue_tensors()
        return first.numpy(), second.numpy()

    def eigenvalue_tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """:meth:`eigenvalues` as tensors (to read every block's in one compiled call)."""
        raise NotImplementedError

    def gradient_matrix(self, *grads: tf.Tensor) -> tf.Tensor:
        """The gradients of :attr:`variables_covered` in the block's layout."""
        raise NotImplementedError

    def split_matrix(self, matrix: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Inverse of :meth:`gradient_matrix`: one tensor per covered variable."""
        raise NotImplementedError

    def state_variables(self) -> dict[str, tf.Variable]:
        """Statistics and inverse by stable name (saved with a model)."""
        raise NotImplementedError


#: The most entries one Kronecker factor may have (1 GiB in float32): a layer wider than
#: this (e.g. a dense layer on raw 2048×2048 images) is refused before anything is allocated.
MAX_FACTOR_ELEMENTS = 1 << 28


class KroneckerBlock(CurvatureBlock):
    """Statistics and inverse of one layer's Kronecker factors ``A ⊗ G``."""

    def __init__(self, layer: KfacLayer, input_dim: int, output_dim: int) -> None:
        super().__init__(layer)
        for name, dim in (("A", input_dim), ("G", output_dim)):
            if dim * dim > MAX_FACTOR_ELEMENTS:
                raise ValueError(
                    f"layer {layer.name!r}: its Kronecker factor {name} would be {dim:,}×{dim:,} "
                    f"({dim * dim * self.dtype.size / 2**30:,.1f} GiB, twice over with its eigenvectors), "
                    f"more than K-FAC's limit of {MAX_FACTOR_ELEMENTS:,} entries; use a narrower layer "
                    "(e.g. a CNN for images)"
                )
        reserve_curvature(layer.name, 2 * (input_dim * input_dim + output_dim * output_dim) * self.dtype.size)
        self.has_bias = len(self.variables_covered) == 2
        self.input_dim = input_dim  # d_in, plus 1 for a bias column
        self.output_dim = output_dim
        dtype = self.dtype
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

    def statistics(self) -> tuple[tf.Variable, ...]:
        return self.input_factor, self.gradient_factor

    def state_variables(self) -> dict[str, tf.Variable]:
        return {
            "A": self.input_factor,
            "G": self.gradient_factor,
            "A_eigenvalues": self.input_eigenvalues,
            "A_eigenvectors": self.input_eigenvectors,
            "G_eigenvalues": self.gradient_eigenvalues,
            "G_eigenvectors": self.gradient_eigenvectors,
        }

    # -- inverse ----------------------------------------------------------------------
    def decompose(self, eigen_epsilon: float | tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        """Eigendecompose A and G; eigenvalues below ``eigen_epsilon`` become 0. ``finite`` is
        False when a factor or its decomposition is not finite."""
        eps = tf.cast(tf.convert_to_tensor(eigen_epsilon, dtype_hint=self.dtype), self.dtype)
        new: list[tf.Tensor] = []
        finite: list[tf.Tensor] = []
        for factor in (self.input_factor, self.gradient_factor):
            value = factor.read_value()
            factor_finite = tf.reduce_all(tf.math.is_finite(value))
            # tf.linalg.eigh raises (rather than returning NaN) on a non-finite input: hand it
            # zeros instead (diagonal already) and reject the result below.
            values, vectors = _symmetric_eigh(tf.where(factor_finite, value, tf.zeros_like(value)))
            finite += [factor_finite, *(tf.reduce_all(tf.math.is_finite(t)) for t in (values, vectors))]
            new += [tf.where(values > eps, values, tf.zeros_like(values)), vectors]
        return tuple(new), tf.reduce_all(finite)

    def inverse_variables(self) -> tuple[tf.Variable, ...]:
        return self.input_eigenvalues, self.input_eigenvectors, self.gradient_eigenvalues, self.gradient_eigenvectors

    def multiply_inverse(self, gradient: tf.Tensor, damping: float | tf.Tensor) -> tf.Tensor:
        """``Q_A [(Q_Aᵀ ∇ Q_G) / (λ_A λ_Gᵀ + δ)] Q_Gᵀ`` for ``∇`` of shape ``[d_in+1, d_out]``."""
        q_a, q_g = self.input_eigenvectors, self.gradient_eigenvectors
        rotated = tf.matmul(tf.matmul(q_a, gradient, transpose_a=True), q_g)
        denominator = self.input_eigenvalues[:, None] * self.gradient_eigenvalues[None, :]
        rotated = rotated / (denominator + tf.cast(tf.convert_to_tensor(damping, dtype_hint=self.dtype), self.dtype))
        return tf.matmul(tf.matmul(q_a, rotated), q_g, transpose_b=True)

    def eigenvalue_tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        """The current (clipped) eigenvalues of A and G, ascending."""
        return self.input_eigenvalues.read_value(), self.gradient_eigenvalues.read_value()

    # -- layout -----------------------------------------------------------------------
    def gradient_matrix(self, *grads: tf.Tensor) -> tf.Tensor:
        """The layer's gradient as ``[d_in + 1, d_out]``: kernel rows, then the bias row
        (``[d_in, d_out]``, the kernel alone, for a layer without bias)."""
        kernel_grad = grads[0]
        if kernel_grad.shape.rank != 2:  # a convolution's [kh, kw, cin, cout]
            kernel_grad = tf.reshape(kernel_grad, [-1, self.output_dim])
        if not self.has_bias:
            return kernel_grad
        return tf.concat([kernel_grad, grads[1][None, :]], axis=0)

    def split_matrix(self, matrix: tf.Tensor) -> tuple[tf.Tensor, ...]:
        """Inverse of :meth:`gradient_matrix`: back to kernel and bias shapes."""
        kernel_shape = self.variables_covered[0].shape
        kernel = matrix[:-1] if self.has_bias else matrix
        if kernel_shape.rank != 2:
            kernel = tf.reshape(kernel, kernel_shape)
        return (kernel, matrix[-1]) if self.has_bias else (kernel,)


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
    """Dense layer: ``A = āᵀā / N``, ``G = (N g)ᵀ(N g) / N`` over the N rows of all uses
    (``ā = [a, 1]``, or ``a`` alone for a layer without bias)."""

    def __init__(self, layer: Dense) -> None:
        super().__init__(layer, layer.in_features + (layer.bias is not None), layer.out_features)

    def batch_statistics(self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]) -> Statistics:
        inputs = tf.concat([tf.cast(u.inputs, self.dtype) for u in uses], axis=0)
        grads = tf.concat(preactivation_grads, axis=0)
        n = tf.cast(tf.shape(inputs)[0], self.dtype)
        if self.has_bias:
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

    def batch_statistics(self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]) -> Statistics:
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


class ScaleAndShiftBlock(CurvatureBlock):
    """Diagonal Fisher of an elementwise ``s = a ⊙ γ + β`` (kfac-jax's ``ScaleAndShiftDiagonal``).

    Per example (each row of every use, independent samples as in :class:`DenseBlock`) the
    gradients are ``∂ℓ/∂γ = g ⊙ a`` and ``∂ℓ/∂β = g`` with ``g = N·∂L_F/∂s``, so

        F_γ = E[(g ⊙ a)²],    F_β = E[g²],    (F + δI)⁻¹ ∇ = ∇ / (F + δ)   elementwise.

    The statistics are one vector ``[F_γ, F_β]``. Its refreshed copy, entries below
    ``eigen_epsilon`` set to 0, is what the inverse uses: refreshed when the Kronecker blocks
    are decomposed. Reported as a Kronecker pair, a diagonal is ``diag(F) ⊗ [1]``: its
    eigenvalues are the entries of ``F`` and those of a 1×1 factor ``[1]``.
    """

    def __init__(self, layer: ScaleAndShift) -> None:
        super().__init__(layer)
        self.has_scale = layer.scale is not None
        self.sizes = [int(v.shape[0]) for v in self.variables_covered]
        size = sum(self.sizes)
        with self.name_scope:
            self.diagonal = tf.Variable(tf.zeros([size], self.dtype), trainable=False, name="F")
            self.inverse_diagonal = tf.Variable(tf.zeros([size], self.dtype), trainable=False, name="F_refreshed")

    def batch_statistics(self, uses: list[LayerUse], preactivation_grads: list[tf.Tensor]) -> Statistics:
        width = self.sizes[0]
        inputs = tf.concat([tf.reshape(tf.cast(u.inputs, self.dtype), [-1, width]) for u in uses], axis=0)
        grads = tf.concat([tf.reshape(g, [-1, width]) for g in preactivation_grads], axis=0)
        n = tf.cast(tf.shape(grads)[0], self.dtype)
        per_example = grads * n
        parts = [per_example * inputs] if self.has_scale else []
        if len(parts) < len(self.sizes):
            parts.append(per_example)
        return (tf.concat([tf.reduce_mean(tf.square(p), axis=0) for p in parts], axis=0),)

    def statistics(self) -> tuple[tf.Variable, ...]:
        return (self.diagonal,)

    def decompose(self, eigen_epsilon: float | tf.Tensor) -> tuple[tuple[tf.Tensor, ...], tf.Tensor]:
        eps = tf.cast(tf.convert_to_tensor(eigen_epsilon, dtype_hint=self.dtype), self.dtype)
        values = self.diagonal.read_value()
        return (tf.where(values > eps, values, tf.zeros_like(values)),), tf.reduce_all(tf.math.is_finite(values))

    def inverse_variables(self) -> tuple[tf.Variable, ...]:
        return (self.inverse_diagonal,)

    def multiply_inverse(self, gradient: tf.Tensor, damping: float | tf.Tensor) -> tf.Tensor:
        damping = tf.cast(tf.convert_to_tensor(damping, dtype_hint=self.dtype), self.dtype)
        return gradient / (self.inverse_diagonal + damping)

    def eigenvalue_tensors(self) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.sort(self.inverse_diagonal.read_value()), tf.ones([1], self.dtype)

    def gradient_matrix(self, *grads: tf.Tensor) -> tf.Tensor:
        return tf.concat([tf.reshape(g, [-1]) for g in grads], axis=0)

    def split_matrix(self, matrix: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return tuple(tf.split(matrix, self.sizes))

    def state_variables(self) -> dict[str, tf.Variable]:
        return {"F": self.diagonal, "F_refreshed": self.inverse_diagonal}


#: Layer type → curvature block (kfac-jax's registry); :func:`make_block` looks layers up here.
BLOCKS: dict[type[KfacLayer], type[CurvatureBlock]] = {
    Dense: DenseBlock,
    Conv2D: Conv2DBlock,
    ScaleAndShift: ScaleAndShiftBlock,
}


def make_block(layer: KfacLayer, *, approx_t2: bool = False) -> CurvatureBlock:
    """The curvature block for ``layer``'s type (``approx_t2``: see :class:`Conv2DBlock`)."""
    for layer_type, block_type in BLOCKS.items():
        if isinstance(layer, layer_type):
            if block_type is Conv2DBlock:
                return Conv2DBlock(layer, approx_t2=approx_t2)  # type: ignore[arg-type]
            return block_type(layer)  # type: ignore[call-arg]
    supported = ", ".join(t.__name__ for t in BLOCKS)
    raise ValueError(f"K-FAC has no curvature block for {type(layer).__name__}; supported: {supported}")
