"""K-FAC natural-gradient optimizer with a KL trust region, as ACKTR runs it.

One update, given the training loss ``L``, a sampled-Fisher loss ``L_F`` (log-likelihood
of targets sampled from the model's own predictive distribution) and the recorded layer
uses of the forward pass that produced both:

1. ``∇ = ∂L/∂θ``; per layer, ``A_batch = E[ā āᵀ]`` and ``G_batch = E[g gᵀ]`` with
   ``g = ∂L_F/∂s`` (no second forward pass).
2. Statistics: a running mean for the first ``cold_iter`` updates, then
   ``A ← stats_decay·A + (1 - stats_decay)·A_batch`` (G alike).
3. Cold start (update ``k < cold_iter``): momentum SGD on ∇ clipped to global norm
   ``max_grad_norm``, learning rate ``lr``.
4. Otherwise: every ``kfac_update`` updates, eigendecompose A and G (or, with
   ``async_eigen_decomp``, use the newest decomposition finished off the critical path);
   precondition ``V = (A ⊗ G + δI)⁻¹ ∇`` per layer (plain ∇ for unregistered variables);
   trust region

       gᵀF⁻¹g = Σ_layers sum(V ⊙ ∇),   scale = min(1, √(kfac_clip / (lr² · gᵀF⁻¹g)));

   then momentum SGD on ``scale · V`` with learning rate ``lr · (1 - momentum)``.

A non-finite loss, gradient or statistic skips the whole update (parameters, statistics
and momentum untouched) and is reported; a non-finite eigendecomposition keeps the
previous one.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import numpy as np
import tensorflow as tf

from acktr_lab.kfac.blocks import KroneckerBlock, make_block
from acktr_lab.kfac.layers import Capture, KfacLayer, capture

Metrics = dict[str, tf.Tensor]

#: Hyperparameters stored in ``tf.Variable``s: changing them never retraces a step.
LIVE_HYPERPARAMETERS = ("learning_rate", "momentum", "damping", "kfac_clip", "stats_decay", "max_grad_norm")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def validate_hyperparameter(name: str, value: float) -> float:
    """Check one live hyperparameter; raise ``ValueError`` naming it when invalid."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    _check(math.isfinite(value), f"{name} must be finite, got {value}")
    limits = {
        "learning_rate": (value >= 0.0, "≥ 0"),
        "momentum": (0.0 <= value < 1.0, "in [0, 1)"),
        "damping": (value >= 0.0, "≥ 0"),
        "kfac_clip": (value > 0.0, "> 0"),
        "stats_decay": (0.0 < value <= 1.0, "in (0, 1]"),
        "max_grad_norm": (value > 0.0, "> 0"),
    }
    ok, bound = limits[name]
    _check(ok, f"{name} must be {bound}, got {value}")
    return value


class KfacOptimizer(tf.Module):
    """K-FAC with a KL trust region for explicitly registered layers.

    Args:
        variables: every variable to train, in a fixed order. Variables that belong to a
            registered layer are preconditioned by its block; the others (e.g. a
            state-independent log std) get the plain gradient.
        layers: the K-FAC layers (``Dense``, ``Conv2D``) whose curvature to model.
        learning_rate, momentum, damping, kfac_clip, stats_decay, cold_iter, kfac_update,
        max_grad_norm, eigen_epsilon: see the module docstring; defaults are ACKTR's.
        async_eigen_decomp: eigendecompose on a worker thread; updates use the newest
            finished decomposition and never wait for one (except the very first).
    """

    def __init__(
        self,
        variables: Sequence[tf.Variable],
        layers: Sequence[KfacLayer],
        *,
        learning_rate: float = 0.25,
        momentum: float = 0.9,
        damping: float = 0.01,
        kfac_clip: float = 0.001,
        stats_decay: float = 0.99,
        cold_iter: int = 10,
        kfac_update: int = 1,
        max_grad_norm: float = 0.5,
        eigen_epsilon: float = 1e-6,
        async_eigen_decomp: bool = False,
        name: str = "kfac",
    ) -> None:
        super().__init__(name=name)
        _check(int(cold_iter) == cold_iter and cold_iter >= 0, f"cold_iter must be an integer ≥ 0, got {cold_iter}")
        _check(
            int(kfac_update) == kfac_update and kfac_update >= 1,
            f"kfac_update must be an integer ≥ 1, got {kfac_update}",
        )
        _check(eigen_epsilon >= 0, f"eigen_epsilon must be ≥ 0, got {eigen_epsilon}")
        hyper = {
            "learning_rate": learning_rate,
            "momentum": momentum,
            "damping": damping,
            "kfac_clip": kfac_clip,
            "stats_decay": stats_decay,
            "max_grad_norm": max_grad_norm,
        }
        hyper = {k: validate_hyperparameter(k, v) for k, v in hyper.items()}
        self.trainable = list(variables)
        _check(len(self.trainable) > 0, "KfacOptimizer needs at least one variable")
        self.cold_iter = int(cold_iter)
        self.kfac_update = int(kfac_update)
        self.eigen_epsilon = float(eigen_epsilon)
        self.async_eigen_decomp = bool(async_eigen_decomp)

        position = {v.ref(): i for i, v in enumerate(self.trainable)}
        seen: set[int] = set()
        self.blocks: list[KroneckerBlock] = []
        self._block_slots: list[tuple[int, int]] = []  # (kernel index, bias index) per block
        for layer in layers:
            _check(id(layer) not in seen, f"layer {layer.name!r} registered twice")
            seen.add(id(layer))
            for var in (layer.kernel, layer.bias):
                _check(
                    var.ref() in position,
                    f"layer {layer.name!r} is registered but its variable {var.name} is not "
                    "among the optimizer's variables",
                )
            self.blocks.append(make_block(layer))
            self._block_slots.append((position[layer.kernel.ref()], position[layer.bias.ref()]))
        owned = {i for slots in self._block_slots for i in slots}
        self._unregistered = [i for i in range(len(self.trainable)) if i not in owned]

        with self.name_scope:
            self.hyperparameters = {
                k: tf.Variable(v, dtype=tf.float64, trainable=False, name=k) for k, v in hyper.items()
            }
            self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
            self.skipped_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_updates")
            self.velocities = [tf.Variable(tf.zeros_like(v), trainable=False, name="velocity") for v in self.trainable]
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kfac-eigen") if self.async_eigen_decomp else None
        self._pending: Future[list[tuple[np.ndarray, ...]]] | None = None
        self._has_inverse = False
        self._lock = threading.Lock()
        self._compiled: dict[int, tuple[Callable[..., Any], Callable[[], Metrics]]] = {}

    # -- live hyperparameters ---------------------------------------------------------
    def set_hyperparameters(self, **values: float) -> None:
        """Assign live hyperparameters (all validated before any is changed)."""
        unknown = set(values) - set(self.hyperparameters)
        _check(not unknown, f"unknown K-FAC hyperparameter(s) {sorted(unknown)}; live ones: {LIVE_HYPERPARAMETERS}")
        checked = {k: validate_hyperparameter(k, v) for k, v in values.items()}
        for k, v in checked.items():
            self.hyperparameters[k].assign(v)

    def get_hyperparameters(self) -> dict[str, float]:
        return {k: float(v.numpy()) for k, v in self.hyperparameters.items()}

    # -- the compiled update ----------------------------------------------------------
    def apply_update(
        self, tape: tf.GradientTape, loss: tf.Tensor, fisher_loss: tf.Tensor, recorded: Capture
    ) -> Metrics:
        """Compute gradients and statistics from one forward pass and apply one update.

        Call inside a ``tf.function`` with a *persistent* tape that recorded the forward
        pass, and the :func:`capture` of that pass. Returns a dict of metric tensors.
        """
        grads = [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(tape.gradient(loss, self.trainable), self.trainable)
        ]
        uses = [recorded.uses_of(block.layer) for block in self.blocks]
        preactivations = [use.preactivations for block_uses in uses for use in block_uses]
        flat_fisher_grads = tape.gradient(fisher_loss, preactivations)
        batch_stats = []
        offset = 0
        for block, block_uses in zip(self.blocks, uses):
            block_grads = [
                tf.zeros_like(s) if g is None else tf.cast(g, block.dtype)
                for g, s in zip(
                    flat_fisher_grads[offset : offset + len(block_uses)],
                    preactivations[offset : offset + len(block_uses)],
                )
            ]
            offset += len(block_uses)
            batch_stats.append(block.batch_statistics(block_uses, block_grads))

        finite = [tf.reduce_all(tf.math.is_finite(loss)), tf.reduce_all(tf.math.is_finite(fisher_loss))]
        finite += [tf.reduce_all(tf.math.is_finite(g)) for g in grads]
        finite += [tf.reduce_all(tf.math.is_finite(m)) for pair in batch_stats for m in pair]
        return tf.cond(tf.reduce_all(finite), lambda: self._update(grads, batch_stats), self._skip)

    def _update(self, grads: list[tf.Tensor], batch_stats: list[tuple[tf.Tensor, tf.Tensor]]) -> Metrics:
        k = self.iterations.read_value()
        decay = self.hyperparameters["stats_decay"]
        k_float = tf.cast(k, tf.float64)
        old_weight = tf.where(k < self.cold_iter, k_float / (k_float + 1.0), decay)
        for block, (batch_input, batch_gradient) in zip(self.blocks, batch_stats):
            block.update_statistics(batch_input, batch_gradient, old_weight)
        metrics = tf.cond(k < self.cold_iter, lambda: self._cold_step(grads), lambda: self._kfac_step(grads, k))
        with tf.control_dependencies(list(metrics.values())):
            self.iterations.assign_add(1)
        return metrics

    def _metrics(
        self,
        scale: tf.Tensor,
        gfg: tf.Tensor,
        grad_norm: tf.Tensor,
        *,
        kfac_step: bool,
        refreshed: tf.Tensor,
        skipped: bool,
    ) -> Metrics:
        return {
            "learning_rate": tf.identity(self.hyperparameters["learning_rate"]),
            "trust_region_scale": tf.cast(scale, tf.float64),
            "gfg": tf.cast(gfg, tf.float64),
            "grad_norm": tf.cast(grad_norm, tf.float64),
            "kfac_step": tf.constant(kfac_step),
            "inverse_refreshed": tf.convert_to_tensor(refreshed),
            "skipped": tf.constant(skipped),
        }

    def _skip(self) -> Metrics:
        self.skipped_updates.assign_add(1)
        nan = tf.constant(math.nan, tf.float64)
        return self._metrics(nan, nan, nan, kfac_step=False, refreshed=tf.constant(False), skipped=True)

    def _apply_momentum(self, directions: list[tf.Tensor], lr: tf.Tensor, momentum: tf.Tensor) -> None:
        for var, velocity, direction in zip(self.trainable, self.velocities, directions):
            velocity.assign(tf.cast(momentum, var.dtype) * velocity + tf.cast(direction, var.dtype))
            var.assign_sub(tf.cast(lr, var.dtype) * velocity)

    def _cold_step(self, grads: list[tf.Tensor]) -> Metrics:
        hp = self.hyperparameters
        clipped, norm = tf.clip_by_global_norm(grads, tf.cast(hp["max_grad_norm"], grads[0].dtype))
        self._apply_momentum(clipped, hp["learning_rate"], hp["momentum"])
        nan = tf.constant(math.nan, tf.float64)
        return self._metrics(nan, nan, norm, kfac_step=False, refreshed=tf.constant(False), skipped=False)

    def _kfac_step(self, grads: list[tf.Tensor], k: tf.Tensor) -> Metrics:
        hp = self.hyperparameters
        if self.async_eigen_decomp:
            refreshed = tf.constant(False)
        else:
            due = tf.equal((k - self.cold_iter) % self.kfac_update, 0)
            refreshed = tf.cond(due, self._refresh_all, lambda: tf.constant(False))
        directions = self.precondition(grads)
        gfg = tf.add_n([tf.reduce_sum(tf.cast(d * g, tf.float64)) for d, g in zip(directions, grads)])
        lr = hp["learning_rate"]
        vfv = lr * lr * gfg
        one = tf.constant(1.0, tf.float64)
        scale = tf.where(vfv > 0.0, tf.minimum(one, tf.sqrt(hp["kfac_clip"] / vfv)), one)
        scaled = [tf.cast(scale, d.dtype) * d for d in directions]
        # K-FAC momentum starts afresh after the cold start, as with SB2's separate optimizer.
        momentum = tf.where(tf.equal(k, self.cold_iter), tf.constant(0.0, tf.float64), hp["momentum"])
        self._apply_momentum(scaled, lr * (1.0 - hp["momentum"]), momentum)
        norm = tf.linalg.global_norm(grads)
        return self._metrics(scale, gfg, norm, kfac_step=True, refreshed=refreshed, skipped=False)

    def _refresh_all(self) -> tf.Tensor:
        ok = [block.refresh_inverse(self.eigen_epsilon) for block in self.blocks]
        return tf.reduce_all(ok) if ok else tf.constant(True)

    def precondition(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """``V = (A ⊗ G + δI)⁻¹ ∇`` per registered layer; the plain gradient elsewhere."""
        damping = self.hyperparameters["damping"]
        directions: list[tf.Tensor | None] = [None] * len(self.trainable)
        for block, (ki, bi) in zip(self.blocks, self._block_slots):
            matrix = block.gradient_matrix(tf.cast(grads[ki], block.dtype), tf.cast(grads[bi], block.dtype))
            kernel, bias = block.split_matrix(block.multiply_inverse(matrix, damping))
            directions[ki], directions[bi] = kernel, bias
        for i in self._unregistered:
            directions[i] = grads[i]
        return [d for d in directions if d is not None]

    # -- Python bookkeeping between updates -------------------------------------------
    def after_update(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Bookkeeping outside the compiled step; returns ``metrics`` completed.

        Warns on a skipped update; with ``async_eigen_decomp`` installs a finished
        decomposition (setting ``inverse_refreshed``) and starts the next one when due.
        """
        if bool(metrics.get("skipped", False)):
            warnings.warn(
                "K-FAC skipped an update: the loss, a gradient or a curvature statistic was "
                "not finite (parameters, statistics and momentum left unchanged)",
                RuntimeWarning,
                stacklevel=2,
            )
        if bool(metrics.get("kfac_step", False)) or bool(metrics.get("inverse_refreshed", False)):
            self._has_inverse = True
        if self.async_eigen_decomp:
            metrics["inverse_refreshed"] = self._poll_async()
        return metrics

    def _poll_async(self) -> bool:
        refreshed = False
        with self._lock:
            pending = self._pending
            if pending is not None and pending.done():
                self._pending = None
                refreshed = self._install(pending)
        k = int(self.iterations.numpy())
        if k < self.cold_iter or (k - self.cold_iter) % self.kfac_update != 0:
            return refreshed
        if not self._has_inverse:
            # Nothing to use yet: the first decomposition is computed here, once.
            for block in self.blocks:
                block.refresh_inverse(self.eigen_epsilon)
            self._has_inverse = True
            return True
        with self._lock:
            if self._pending is None:
                snapshot = [(b.input_factor.numpy(), b.gradient_factor.numpy()) for b in self.blocks]
                assert self._executor is not None
                self._pending = self._executor.submit(_eigendecompose_all, snapshot, self.eigen_epsilon)
        return refreshed

    def _install(self, future: Future[list[tuple[np.ndarray, ...]]]) -> bool:
        try:
            results = future.result()
        except Exception as error:
            warnings.warn(
                f"asynchronous eigendecomposition failed ({error}); keeping the previous one",
                RuntimeWarning,
                stacklevel=3,
            )
            return False
        installed = False
        for block, decomposition in zip(self.blocks, results):
            if all(np.all(np.isfinite(x)) for x in decomposition):
                block.set_inverse(*decomposition)
                installed = True
            else:
                warnings.warn(
                    f"eigendecomposition of {block.layer_name} was not finite; keeping the previous one",
                    RuntimeWarning,
                    stacklevel=3,
                )
        self._has_inverse = self._has_inverse or installed
        return installed

    def wait_for_inverse(self, timeout: float | None = None) -> bool:
        """Block until a pending asynchronous decomposition is installed; True if one was."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return False
        pending.result(timeout=timeout)
        with self._lock:
            if self._pending is pending:
                self._pending = None
                return self._install(pending)
        return False

    def eigenvalues(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Layer name → (eigenvalues of A, eigenvalues of G) of the current inverse."""
        return {block.layer_name: block.eigenvalues() for block in self.blocks}

    def state_variables(self) -> dict[str, tf.Variable]:
        """Every variable needed to resume optimisation exactly, by stable name."""
        state: dict[str, tf.Variable] = {"iterations": self.iterations, "skipped_updates": self.skipped_updates}
        for i, (var, velocity) in enumerate(zip(self.trainable, self.velocities)):
            state[f"velocity/{i}/{var.name}"] = velocity
        for block in self.blocks:
            prefix = f"blocks/{block.layer_name}"
            state[f"{prefix}/A"] = block.input_factor
            state[f"{prefix}/G"] = block.gradient_factor
            state[f"{prefix}/A_eigenvalues"] = block.input_eigenvalues
            state[f"{prefix}/A_eigenvectors"] = block.input_eigenvectors
            state[f"{prefix}/G_eigenvalues"] = block.gradient_eigenvalues
            state[f"{prefix}/G_eigenvectors"] = block.gradient_eigenvectors
        return state

    def mark_restored(self) -> None:
        """After restoring state: drop any in-flight decomposition, trust restored inverse."""
        with self._lock:
            self._pending = None
        self._has_inverse = int(self.iterations.numpy()) > self.cold_iter

    # -- convenience for standalone use -----------------------------------------------
    def minimize(self, loss_fn: Callable[[], tuple[tf.Tensor, tf.Tensor]]) -> dict[str, Any]:
        """One update of ``loss_fn() -> (loss, fisher_loss)``; compiled once per ``loss_fn``."""
        cached = self._compiled.get(id(loss_fn))
        if cached is not None and cached[0] is loss_fn:
            step = cached[1]
        else:

            @tf.function
            def step() -> Metrics:
                with tf.GradientTape(persistent=True) as tape, capture() as recorded:
                    loss, fisher_loss = loss_fn()
                metrics = self.apply_update(tape, loss, fisher_loss, recorded)
                metrics["loss"] = tf.cast(loss, tf.float64)
                return metrics

            self._compiled[id(loss_fn)] = (loss_fn, step)
        metrics = {k: v.numpy() for k, v in step().items()}
        return self.after_update(metrics)


def _eigendecompose_all(
    factors: list[tuple[np.ndarray, np.ndarray]], eigen_epsilon: float
) -> list[tuple[np.ndarray, ...]]:
    """Eigendecompositions of every block's (A, G), in float64 on the worker thread.

    ``tf.linalg.eigh`` runs on TensorFlow's own thread pool, which the training step
    shares; a separate BLAS pool (NumPy's) would oversubscribe the cores and starve both.
    """
    out = []
    for input_factor, gradient_factor in factors:
        decomposition: list[np.ndarray] = []
        for factor in (input_factor, gradient_factor):
            matrix = tf.constant(factor, dtype=tf.float64)
            values, vectors = tf.linalg.eigh(0.5 * (matrix + tf.transpose(matrix)))
            values = values.numpy()
            decomposition += [np.where(values > eigen_epsilon, values, 0.0), vectors.numpy()]
        out.append(tuple(decomposition))
    return out
