"""K-FAC natural-gradient optimizer with a KL trust region, as ACKTR runs it.

One update, given the training loss ``L``, a sampled-Fisher loss ``L_F`` (log-likelihood
of targets sampled from the model's own predictive distribution) and the recorded layer
uses of the forward pass that produced both:

1. ``∇ = ∂L/∂θ``; per layer, ``A_batch = E[ā āᵀ]`` and ``G_batch = E[g gᵀ]`` with
   ``g = ∂L_F/∂s`` (no second forward pass).
2. Statistics: a running mean for the first ``cold_iter`` updates, then
   ``A ← stats_decay·A + (1 - stats_decay)·A_batch`` (G alike). ACKTR does this every
   update; ``stats_update = N > 1`` does it (and the backward pass of ``L_F`` that it
   needs) only every N-th update after the cold start, as the ``cov_update_every`` of
   TensorFlow's K-FAC and the ``Ts`` of the PyTorch ACKTR port do. The moving average
   then advances once per statistics update.
3. Cold start (update ``k < cold_iter``): momentum SGD on ∇ clipped to global norm
   ``max_grad_norm``, learning rate ``lr``.
4. Otherwise: every ``kfac_update`` updates, eigendecompose A and G (or, with
   ``async_eigen_decomp``, use the newest decomposition finished off the critical path);
   precondition ``V = (A ⊗ G + δI)⁻¹ ∇`` per layer (plain ∇ for unregistered variables);
   trust region

       gᵀF⁻¹g = Σ_layers sum(V ⊙ ∇),   scale = min(1, √(kfac_clip / (lr² · gᵀF⁻¹g)));

   then momentum SGD on ``scale · V`` with learning rate ``lr · (1 - momentum)``.

Which of these an update does (cold or K-FAC step, statistics or not, decomposition or not)
follows from the iteration count alone, so it is decided in Python before the update
(:meth:`KfacOptimizer.plan`) and the compiled step is traced once per plan: each trace is
straight-line code holding only its own work, with no ``tf.cond`` (whose untaken branch
still costs time on every update). The step asserts that its plan matches the iteration
count before it changes anything. What every plan does alike (the finiteness checks and the
statistics update, the momentum step and its assignment) is a compiled function of its own
that each plan's step calls: traced once, and inlined when TensorFlow instantiates a step.

A non-finite loss, gradient or statistic skips the whole update (parameters, statistics
and momentum untouched) and is reported. The step itself is checked too, on what is about
to be applied (the new momentum buffer and the new parameters, in their own dtype): if any
entry is not finite (a preconditioner made singular by a damping that underflows, a value
that overflows float32) the parameters and momentum are left as they were and the update is
reported as skipped; the curvature statistics of its (finite) batch are kept. A non-finite
eigendecomposition keeps the previous one.

With ``async_eigen_decomp`` the decompositions run in LAPACK (NumPy's ``eigh``, float64,
one BLAS thread) on a worker thread: about five times less CPU time than
``tf.linalg.eigh`` for a 3137×3137 factor, so the same cores refresh the inverse more
often. The worker shares the cores with the updates; its cost is what ``kfac_update``
amortises.
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, NamedTuple

import numpy as np
import tensorflow as tf
from threadpoolctl import threadpool_limits

from acktr_lab.compiled import compile_function
from acktr_lab.kfac.blocks import CurvatureBlock, make_block
from acktr_lab.kfac.layers import Capture, KfacLayer, capture

Metrics = dict[str, tf.Tensor]
#: The sampled-Fisher loss, or a zero-argument callable that computes it when needed.
FisherLoss = tf.Tensor | Callable[[], tf.Tensor]
F64 = tf.float64

#: Hyperparameters stored in ``tf.Variable``s: changing them never retraces a step.
LIVE_HYPERPARAMETERS = ("learning_rate", "momentum", "damping", "kfac_clip", "stats_decay", "max_grad_norm")


class UpdatePlan(NamedTuple):
    """What one update does, decided in Python from the iteration count (:meth:`KfacOptimizer.plan`)."""

    cold: bool  # cold start: momentum SGD on the clipped gradient (else a K-FAC step)
    statistics: bool  # update the curvature statistics from this batch
    refresh: bool  # eigendecompose A and G inside this update (the synchronous path)


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def validate_hyperparameter(name: str, value: float) -> float:
    """Check one live hyperparameter; raise ``ValueError`` naming it when invalid."""
    if isinstance(value, bool | np.bool_ | str | bytes) or not hasattr(value, "__float__"):
        raise ValueError(f"{name} must be a number, got {value!r}")
    value = float(value)
    _check(math.isfinite(value), f"{name} must be finite, got {value}")
    limits = {
        "learning_rate": (value >= 0.0, "≥ 0"),
        "momentum": (0.0 <= value < 1.0, "in [0, 1)"),
        "damping": (value > 0.0, "> 0 (the damped curvature A ⊗ G + δI must be invertible)"),
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
        layers: the K-FAC layers (``Dense``, ``Conv2D``, ``ScaleAndShift``) whose curvature
            to model; each gets the block :data:`~acktr_lab.kfac.blocks.BLOCKS` names for its type.
        learning_rate, momentum, damping, kfac_clip, stats_decay, cold_iter, kfac_update,
        max_grad_norm, eigen_epsilon: see the module docstring; defaults are ACKTR's.
        stats_update: update the curvature statistics every this many updates once the
            cold start is over (1, ACKTR's behaviour: every update). Choose ``kfac_update``
            as a multiple of it: a decomposition between two statistics updates repeats
            the previous one.
        async_eigen_decomp: eigendecompose on a worker thread; updates use the newest
            finished decomposition and never wait for one (except the very first).
        approx_t2: convolutions' factors from each example's mean patch and summed
            pre-activation gradients (Stable Baselines 2's option; see
            :class:`~acktr_lab.kfac.blocks.Conv2DBlock`): statistics ≈ T times cheaper for
            a layer with T output positions. False (exact Grosse & Martens factors) by default.
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
        stats_update: int = 1,
        async_eigen_decomp: bool = False,
        approx_t2: bool = False,
        name: str = "kfac",
    ) -> None:
        super().__init__(name=name)
        _check(int(cold_iter) == cold_iter and cold_iter >= 0, f"cold_iter must be an integer ≥ 0, got {cold_iter}")
        _check(
            int(kfac_update) == kfac_update and kfac_update >= 1,
            f"kfac_update must be an integer ≥ 1, got {kfac_update}",
        )
        _check(
            int(stats_update) == stats_update and stats_update >= 1,
            f"stats_update must be an integer ≥ 1, got {stats_update}",
        )
        _check(eigen_epsilon >= 0, f"eigen_epsilon must be ≥ 0, got {eigen_epsilon}")
        _check(isinstance(approx_t2, bool | np.bool_), f"approx_t2 must be True or False, got {approx_t2!r}")
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
        self.stats_update = int(stats_update)
        self.eigen_epsilon = float(eigen_epsilon)
        self.async_eigen_decomp = bool(async_eigen_decomp)
        self.approx_t2 = bool(approx_t2)

        position = {v.ref(): i for i, v in enumerate(self.trainable)}
        seen: set[int] = set()
        self.blocks: list[CurvatureBlock] = []
        self._block_slots: list[tuple[int, ...]] = []  # indices of each block's variables
        for layer in layers:
            _check(id(layer) not in seen, f"layer {layer.name!r} registered twice")
            seen.add(id(layer))
            for var in layer.parameters:
                _check(
                    var.ref() in position,
                    f"layer {layer.name!r} is registered but its variable {var.name} is not "
                    "among the optimizer's variables",
                )
            self.blocks.append(make_block(layer, approx_t2=self.approx_t2))
            self._block_slots.append(tuple(position[var.ref()] for var in layer.parameters))
        owned = {i for slots in self._block_slots for i in slots}
        self._unregistered = [i for i in range(len(self.trainable)) if i not in owned]

        with self.name_scope:
            self.hyperparameters = {
                k: tf.Variable(v, dtype=tf.float64, trainable=False, name=k) for k, v in hyper.items()
            }
            self.iterations = tf.Variable(0, dtype=tf.int64, trainable=False, name="iterations")
            self.skipped_updates = tf.Variable(0, dtype=tf.int64, trainable=False, name="skipped_updates")
            self.velocities = [tf.Variable(tf.zeros_like(v), trainable=False, name="velocity") for v in self.trainable]
        # What every plan's step does alike, each compiled once and called by the plans' steps
        # (a plan then traces only its own work): checks and statistics, the momentum step.
        self._statistics_step = compile_function(self._statistics_graph)
        self._apply_step = compile_function(self._apply_graph)
        self._read_eigenvalues = compile_function(self._eigenvalue_tensors)
        #: The value each hyperparameter variable was last given (only set_hyperparameters assigns them).
        self._assigned: dict[str, float] = dict(hyper)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="kfac-eigen") if self.async_eigen_decomp else None
        self._pending: Future[list[tuple[np.ndarray, ...]]] | None = None
        self._has_inverse = False
        self._inverse_age: int | None = None  # updates since the inverse in use was decomposed
        self._lock = threading.Lock()
        self._compiled: dict[int, tuple[Callable[..., Any], dict[UpdatePlan, Callable[[], Metrics]]]] = {}

    def compiled_functions(self) -> dict[str, Any]:
        """The compiled functions the optimizer owns, by name (the checks and statistics, the
        momentum step, the eigenvalue read); the steps that call them are the caller's."""
        return {
            "kfac statistics": self._statistics_step,
            "kfac momentum step": self._apply_step,
            "kfac eigenvalues": self._read_eigenvalues,
        }

    # -- live hyperparameters ---------------------------------------------------------
    def set_hyperparameters(self, **values: float) -> None:
        """Assign live hyperparameters (all validated before any is changed)."""
        unknown = set(values) - set(self.hyperparameters)
        _check(not unknown, f"unknown K-FAC hyperparameter(s) {sorted(unknown)}; live ones: {LIVE_HYPERPARAMETERS}")
        # A value equal to the one the variable holds is neither checked again nor assigned: the
        # trainer sets every live hyperparameter before each update, mostly unchanged.
        changed = {k: v for k, v in values.items() if not _same_number(self._assigned[k], v)}
        checked = {k: validate_hyperparameter(k, v) for k, v in changed.items()}
        for k, v in checked.items():
            self.hyperparameters[k].assign(v)
            self._assigned[k] = v

    def get_hyperparameters(self) -> dict[str, float]:
        return {k: float(v.numpy()) for k, v in self.hyperparameters.items()}

    # -- the compiled update ----------------------------------------------------------
    def plan(self) -> UpdatePlan:
        """What the next update does, from the iteration count (read here, in Python).

        Pass it to :meth:`apply_update`: a compiled step traced once per plan holds only
        the work that plan needs, with no branch in the graph.
        """
        return self._plan_at(int(self.iterations.numpy()))

    def possible_plans(self) -> list[UpdatePlan]:
        """Every plan this optimizer's updates will use (to compile them all ahead of time).

        After the cold start a plan depends only on whether ``since = k - cold_iter`` is a
        multiple of ``stats_update`` (s) and of ``kfac_update`` (u); each combination that
        occurs at all first occurs at ``since`` ∈ {0, 1, s, u}, so these few iterations
        (and the first, for the cold start) show every plan, however long the periods.
        """
        firsts = sorted({0, 1, self.stats_update, self.kfac_update})
        iterations = [0] * min(self.cold_iter, 1) + [self.cold_iter + since for since in firsts]
        return list(dict.fromkeys(self._plan_at(k) for k in iterations))

    def _plan_at(self, k: int) -> UpdatePlan:
        cold = k < self.cold_iter
        since = k - self.cold_iter
        return UpdatePlan(
            cold=cold,
            statistics=cold or since % self.stats_update == 0,
            refresh=not cold and not self.async_eigen_decomp and since % self.kfac_update == 0,
        )

    def apply_update(
        self,
        tape: tf.GradientTape,
        loss: tf.Tensor,
        fisher_loss: tf.Tensor | None,
        recorded: Capture,
        plan: UpdatePlan,
        plan_check: tf.Operation | None = None,
    ) -> Metrics:
        """Compute gradients and statistics from one forward pass and apply one update.

        Call inside a ``tf.function`` with a *persistent* tape that recorded the forward
        pass, the :func:`capture` of that pass, and the :meth:`plan` taken just before
        (a Python value: the step is traced once per plan). ``fisher_loss`` may be None
        when ``plan.statistics`` is False (nothing needs it then; sampling it would be
        wasted work). ``plan_check``: the :meth:`assert_plan` op where the caller made it the
        step's first op already. Returns a dict of metric tensors.
        """
        checked = self.assert_plan(plan) if plan_check is None else plan_check
        if plan.statistics and fisher_loss is None:
            raise ValueError("this update computes curvature statistics: it needs the sampled-Fisher loss")
        grads = self.gradients(tape, loss)
        batch_stats = self.batch_statistics(tape, fisher_loss, recorded) if plan.statistics else None
        return self.apply_gradients(plan, loss, fisher_loss, grads, batch_stats, checked)

    def gradients(self, tape: tf.GradientTape, loss: tf.Tensor) -> list[tf.Tensor]:
        """``∂L/∂θ`` for every trained variable, in order (zeros where ``L`` does not depend on it)."""
        return [
            tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
            for g, v in zip(tape.gradient(loss, self.trainable), self.trainable)
        ]

    def apply_gradients(
        self,
        plan: UpdatePlan,
        loss: tf.Tensor,
        fisher_loss: tf.Tensor | None,
        grads: Sequence[tf.Tensor],
        batch_stats: Sequence[tuple[tf.Tensor, ...]] | None,
        plan_check: tf.Operation | None = None,
        learning_rate: tf.Tensor | None = None,
    ) -> Metrics:
        """:meth:`apply_update` from its parts: the :meth:`gradients` of ``loss`` and, when
        ``plan.statistics``, the :meth:`batch_statistics` of ``fisher_loss`` (else None).

        For a caller that computes the parts in a compiled function of their own, shared by
        every plan's step (each plan then traces only its own work).

        ``learning_rate``: this step's learning rate as an input of the compiled step (a
        float64 scalar, checked by the caller with :func:`validate_hyperparameter`), assigned
        to the ``learning_rate`` hyperparameter inside the step, before anything reads it: a
        schedule then costs no eager assignment per update. None: the variable's value.
        """
        checked = self.assert_plan(plan) if plan_check is None else plan_check
        if plan.statistics and batch_stats is None:
            raise ValueError("this update computes curvature statistics: it needs the batch statistics")
        with tf.control_dependencies([checked]):  # nothing is assigned unless the plan is right
            if learning_rate is not None:  # ordered before every read of it (automatic control deps)
                self.hyperparameters["learning_rate"].assign(tf.cast(learning_rate, F64))
            grads, stats = list(grads), (list(batch_stats) if batch_stats is not None else None)
            matrices, grad_norm, finite = self._statistics_step(loss, fisher_loss, grads, stats)
            return self._update(plan, grads, matrices, grad_norm, finite)

    def assert_plan(self, plan: UpdatePlan) -> tf.Operation:
        """Fail the step (rather than run the wrong one) when ``plan`` is not this iteration's.

        A step whose every op depends on this one changes nothing when it fails: a caller
        can run a step of another plan to have TensorFlow instantiate it ahead of use.
        """
        if not isinstance(plan, UpdatePlan):
            raise TypeError(f"apply_update needs the UpdatePlan from optimizer.plan(), got {plan!r}")
        k = self.iterations.read_value()
        since = k - self.cold_iter
        cold = k < self.cold_iter

        def every(period: int) -> tf.Tensor | bool:
            return True if period == 1 else tf.equal(since % period, 0)

        statistics = True if self.stats_update == 1 else tf.logical_or(cold, every(self.stats_update))
        refresh = False if self.async_eigen_decomp else tf.logical_and(tf.logical_not(cold), every(self.kfac_update))
        # String data only: a bare Assert op (assert_equal would add a guarding cond).
        return tf.debugging.Assert(
            tf.reduce_all(tf.equal(tf.stack([cold, statistics, refresh]), tf.constant(tuple(plan)))),
            [
                "K-FAC update plan does not match the iteration count: take optimizer.plan() right before each "
                f"update (got {plan})"
            ],
        )

    def batch_statistics(
        self, tape: tf.GradientTape, fisher_loss: tf.Tensor | None, recorded: Capture
    ) -> list[tuple[tf.Tensor, ...]]:
        """Every block's batch statistics (``(A_batch, G_batch)`` for a Kronecker block): one
        backward pass of ``L_F`` to the pre-activations."""
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
        return batch_stats

    def _statistics_graph(
        self,
        loss: tf.Tensor,
        fisher_loss: tf.Tensor | None,
        grads: list[tf.Tensor],
        batch_stats: list[tuple[tf.Tensor, ...]] | None,
    ) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
        """``(gradient matrices, ‖∇‖, finite)``, and the statistics updated from ``batch_stats``.

        ``finite``: the losses, ``∇`` and the batch statistics are all finite. Scalar checks
        suffice: ``Σ ∇²`` (in float64, where squares of float32 numbers cannot overflow) is
        finite iff every gradient is, and a batch factor ``XᵀX/n`` is finite iff its trace is
        (each off-diagonal ``|Σ xᵢxⱼ| ≤ (Σ xᵢ² + Σ xⱼ²)/2``). Each block's gradient is taken as
        one ``[d_in + 1, d_out]`` matrix here, once.

        Statistics weight of the new batch: ``1/(k+1)`` while cold (a running mean), then
        ``1 − stats_decay`` (the moving average); 0 when anything is not finite. The same for
        every plan, so compiled once (:attr:`_statistics_step`) and called by each plan's step.
        """
        matrices = self.gradient_matrices(grads)
        others = [grads[i] for i in self._unregistered]
        grad_norm = tf.sqrt(tf.add_n([tf.reduce_sum(tf.square(tf.cast(g, F64))) for g in matrices + others]))
        checked = [x for x in (loss, fisher_loss, grad_norm) if x is not None]
        checked += [_statistic_sum(m) for stats in batch_stats or [] for m in stats]
        finite = tf.reduce_all([tf.math.is_finite(tf.cast(x, F64)) for x in checked])
        if batch_stats is not None:
            k = self.iterations.read_value()
            cold_weight = 1.0 / (tf.cast(k, F64) + 1.0)
            new_weight = tf.where(k < self.cold_iter, cold_weight, 1.0 - self.hyperparameters["stats_decay"])
            new_weight = tf.where(finite, new_weight, tf.constant(0.0, F64))
            for block, stats in zip(self.blocks, batch_stats):
                block.update_statistics(stats, new_weight)
        return matrices, grad_norm, finite

    def _update(
        self,
        plan: UpdatePlan,
        grads: list[tf.Tensor],
        matrices: list[tf.Tensor],
        grad_norm: tf.Tensor,
        finite: tf.Tensor,
    ) -> Metrics:
        """One update as straight-line code, specialised to ``plan`` (no branch in the graph).

        Non-finite inputs make it the same update with zero statistics weight (``A ← A + 0``,
        the zero taken so that non-finite numbers cannot leak in). The new momentum buffer and
        parameters are computed first and assigned only where every entry of them is finite;
        otherwise every parameter and buffer keeps its exact value and the update is skipped.
        """
        hp = {name: variable.read_value() for name, variable in self.hyperparameters.items()}
        k = self.iterations.read_value()
        zero = tf.constant(0.0, F64)
        lr = hp["learning_rate"]
        refreshed = self._refresh_all(finite) if plan.refresh else tf.constant(False)

        if plan.cold:  # momentum SGD on the gradient clipped to global norm max_grad_norm
            directions = grads
            coefficient = hp["max_grad_norm"] / tf.maximum(grad_norm, hp["max_grad_norm"])
            step_lr, momentum = lr, hp["momentum"]
            scale = gfg = tf.constant(math.nan, F64)
        else:  # K-FAC: natural-gradient direction inside the KL trust region
            others = [grads[i] for i in self._unregistered]
            naturals, gfg, scale = self.trust_region(matrices, others, hp)
            directions = self._unflatten(naturals, grads)
            coefficient = scale
            step_lr = lr * (1.0 - hp["momentum"])
            # K-FAC momentum starts afresh after the cold start, as with SB2's separate optimizer.
            momentum = tf.where(tf.equal(k, self.cold_iter), zero, hp["momentum"])
        # What is about to be applied, in the variables' dtype: v' = μ·v + c·d and θ' = θ - η·v'.
        # It is applied only if every entry of both is finite (a finite float64 number can
        # still overflow float32, and a tiny damping can make the preconditioned step inf).
        coefficient = tf.where(finite, coefficient, zero)
        applied, step_finite = self._apply_step(directions, coefficient, step_lr, momentum, finite)

        kfac_step = tf.logical_and(applied, not plan.cold)
        nan = tf.constant(math.nan, F64)
        metrics: Metrics = {
            "learning_rate": lr,
            "trust_region_scale": tf.where(kfac_step, scale, nan),
            "gfg": tf.where(kfac_step, gfg, nan),
            "grad_norm": tf.where(finite, grad_norm, nan),
            "kfac_step": kfac_step,
            "inverse_refreshed": refreshed,
            "skipped": tf.logical_not(applied),
            "step_not_finite": tf.logical_and(finite, tf.logical_not(step_finite)),
        }
        if plan.refresh:  # the eigenvalues in use after this step (no separate read to report them)
            metrics["eigenvalues"] = [block.eigenvalue_tensors() for block in self.blocks]  # type: ignore[assignment]
        return metrics

    def _apply_graph(
        self,
        directions: list[tf.Tensor],
        coefficient: tf.Tensor,
        step_lr: tf.Tensor,
        momentum: tf.Tensor,
        finite: tf.Tensor,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``v' = μ·v + c·d``, ``θ' = θ − η·v'`` per variable, assigned only where ``finite`` and
        every entry of every ``v'`` and ``θ'`` is finite; counts the update as applied or skipped.

        The same for every plan, so compiled once (:attr:`_apply_step`) and called by each
        plan's step: a plan traces only the work that differs. Returns ``(applied, step_finite)``.
        """
        candidates = []
        as_dtype: dict[tf.DType, tuple[tf.Tensor, tf.Tensor, tf.Tensor]] = {}
        for var, velocity, direction in zip(self.trainable, self.velocities, directions):
            if var.dtype not in as_dtype:
                as_dtype[var.dtype] = tuple(tf.cast(x, var.dtype) for x in (step_lr, coefficient, momentum))
            var_lr, var_coefficient, var_momentum = as_dtype[var.dtype]
            value, velocity_value = var.read_value(), velocity.read_value()
            scaled = tf.math.multiply_no_nan(tf.cast(direction, var.dtype), var_coefficient)
            new_velocity = var_momentum * velocity_value + scaled
            new_value = value - var_lr * new_velocity
            candidates.append(((velocity, velocity_value, new_velocity), (var, value, new_value)))
        step_finite = tf.reduce_all(
            [tf.reduce_all(tf.math.is_finite(new)) for pair in candidates for _, _, new in pair]
        )
        applied = tf.logical_and(finite, step_finite)
        for pair in candidates:
            for variable, old, new in pair:
                variable.assign(tf.where(applied, new, old))
        self.iterations.assign_add(tf.where(applied, tf.constant(1, tf.int64), 0))
        self.skipped_updates.assign_add(tf.where(applied, tf.constant(0, tf.int64), 1))
        return applied, step_finite

    def _unflatten(self, naturals: Sequence[tf.Tensor], grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """Per variable: its block's preconditioned matrix split back; the gradient if unregistered."""
        directions = list(grads)
        for block, slots, natural in zip(self.blocks, self._block_slots, naturals):
            for index, direction in zip(slots, block.split_matrix(natural)):
                directions[index] = direction
        return directions

    def _refresh_all(self, accept: tf.Tensor) -> tf.Tensor:
        ok = [block.refresh_inverse(self.eigen_epsilon, accept) for block in self.blocks]
        return tf.reduce_all(ok) if ok else tf.constant(True)

    def precondition(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """``V = (A ⊗ G + δI)⁻¹ ∇`` per registered layer; the plain gradient elsewhere."""
        natural = self.natural_matrices(self.gradient_matrices(grads), self.hyperparameters["damping"])
        return self._unflatten(natural, grads)

    def natural_matrices(self, matrices: Sequence[tf.Tensor], damping: tf.Tensor | tf.Variable) -> list[tf.Tensor]:
        """Each block's ``(A ⊗ G + δI)⁻¹ vec(∇)`` as a ``[d_in + 1, d_out]`` matrix."""
        return [block.multiply_inverse(m, damping) for block, m in zip(self.blocks, matrices)]

    def trust_region(
        self, matrices: Sequence[tf.Tensor], others: Sequence[tf.Tensor], hyperparameters: Mapping[str, Any]
    ) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
        """The natural-gradient matrices ``V = (A ⊗ G + δI)⁻¹ vec(∇)`` of the registered layers
        (``matrices``: their gradient matrices), ``gᵀF⁻¹g = Σ sum(V ⊙ ∇) + Σ ‖g_other‖²`` (the
        ``others``, gradients of unregistered variables, taken with ``F = I``) and the
        trust-region scale ``min(1, √(kfac_clip / (lr² · gᵀF⁻¹g)))`` (1 where ``gᵀF⁻¹g ≤ 0``),
        with ``lr``, ``δ`` and ``kfac_clip`` from ``hyperparameters``."""
        one = tf.constant(1.0, F64)
        naturals = self.natural_matrices(matrices, hyperparameters["damping"])
        gfg = tf.add_n(
            [tf.reduce_sum(tf.cast(v * m, F64)) for v, m in zip(naturals, matrices)]
            + [tf.reduce_sum(tf.square(tf.cast(g, F64))) for g in others]
        )
        vfv = tf.square(hyperparameters["learning_rate"]) * gfg
        scale = tf.where(vfv > 0.0, tf.minimum(one, tf.sqrt(hyperparameters["kfac_clip"] / vfv)), one)
        return naturals, gfg, scale

    def gradient_matrices(self, grads: Sequence[tf.Tensor]) -> list[tf.Tensor]:
        """Each block's gradient as one ``[d_in + 1, d_out]`` matrix (kernel rows, then the bias)."""
        return [
            block.gradient_matrix(*(tf.cast(grads[i], block.dtype) for i in slots))
            for block, slots in zip(self.blocks, self._block_slots)
        ]

    # -- Python bookkeeping between updates -------------------------------------------
    def after_update(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """Bookkeeping outside the compiled step; returns ``metrics`` completed.

        Warns on a skipped update; with ``async_eigen_decomp`` installs a finished
        decomposition (setting ``inverse_refreshed``) and starts the next one when due;
        adds ``inverse_age``, the updates since the inverse in use was decomposed, and
        ``eigenvalues`` (as :meth:`eigenvalues` gives them) whenever the inverse was refreshed.
        ``metrics`` are the step's as NumPy values (``eigenvalues``: one pair per block).
        """
        if "learning_rate" in metrics:  # the value the step used (it may have assigned it)
            self._assigned["learning_rate"] = float(metrics["learning_rate"])
        if bool(metrics.get("step_not_finite", False)):
            damping = float(self.hyperparameters["damping"].numpy())
            warnings.warn(
                "K-FAC skipped an update: the step it would apply was not finite (parameters and "
                f"momentum left unchanged; is the damping {damping:g} too small for the curvature?)",
                RuntimeWarning,
                stacklevel=2,
            )
        elif bool(metrics.get("skipped", False)):
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
        # How many updates ago the inverse in use was decomposed (NaN before the first).
        if bool(metrics.get("inverse_refreshed", False)):
            self._inverse_age = 0
        elif self._inverse_age is not None:
            self._inverse_age += 1
        metrics["inverse_age"] = math.nan if self._inverse_age is None else float(self._inverse_age)
        if "eigenvalues" in metrics:  # read by the step that decomposed
            metrics["eigenvalues"] = {b.layer_name: tuple(pair) for b, pair in zip(self.blocks, metrics["eigenvalues"])}
        elif bool(metrics.get("inverse_refreshed", False)):  # installed here, from the worker thread
            metrics["eigenvalues"] = self.eigenvalues()
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
                snapshot = [tuple(s.numpy() for s in b.statistics()) for b in self.blocks]
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

    def _eigenvalue_tensors(self) -> list[tuple[tf.Tensor, tf.Tensor]]:
        return [block.eigenvalue_tensors() for block in self.blocks]

    def eigenvalues(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Layer name → (eigenvalues of A, eigenvalues of G) of the current inverse, read in
        one compiled call (the trainer reports them after every update)."""
        values = self._read_eigenvalues() if self.blocks else []
        return {block.layer_name: (a.numpy(), g.numpy()) for block, (a, g) in zip(self.blocks, values)}

    def state_variables(self) -> dict[str, tf.Variable]:
        """Every variable needed to resume optimisation exactly, by stable name."""
        state: dict[str, tf.Variable] = {"iterations": self.iterations, "skipped_updates": self.skipped_updates}
        for i, (var, velocity) in enumerate(zip(self.trainable, self.velocities)):
            state[f"velocity/{i}/{var.name}"] = velocity
        for block in self.blocks:
            for name, variable in block.state_variables().items():
                state[f"blocks/{block.layer_name}/{name}"] = variable
        return state

    def mark_restored(self) -> None:
        """After restoring state: drop any in-flight decomposition, trust restored inverse."""
        with self._lock:
            self._pending = None
        self._has_inverse = int(self.iterations.numpy()) > self.cold_iter

    # -- convenience for standalone use -----------------------------------------------
    def minimize(self, loss_fn: Callable[[], tuple[tf.Tensor, FisherLoss]]) -> dict[str, Any]:
        """One update of ``loss_fn() -> (loss, fisher_loss)``; compiled once per ``loss_fn`` and plan.

        ``fisher_loss`` may be a zero-argument callable returning it: it is then called
        (inside the tape) only by updates that compute curvature statistics.
        """
        cached = self._compiled.get(id(loss_fn))
        if cached is None or cached[0] is not loss_fn:
            cached = self._compiled[id(loss_fn)] = (loss_fn, {})
        steps = cached[1]
        plan = self.plan()
        if plan not in steps:
            # The plan is baked in and the step takes no argument: its concrete function is
            # called directly, with no per-call argument binding.
            step = compile_function(functools.partial(self._minimize_step, loss_fn, plan))
            steps[plan] = step.get_concrete_function()
        return self.after_update(tf.nest.map_structure(lambda t: t.numpy(), steps[plan]()))

    def _minimize_step(self, loss_fn: Callable[[], tuple[tf.Tensor, FisherLoss]], plan: UpdatePlan) -> Metrics:
        with tf.GradientTape(persistent=True) as tape, capture() as recorded:
            loss, fisher_loss = loss_fn()
            if callable(fisher_loss):
                fisher_loss = fisher_loss() if plan.statistics else None
        metrics = self.apply_update(tape, loss, fisher_loss, recorded, plan)
        metrics["loss"] = tf.cast(loss, tf.float64)
        return metrics


def _statistic_sum(statistic: tf.Tensor) -> tf.Tensor:
    """A scalar that is finite iff the statistic is: a factor's trace, a diagonal's sum."""
    return tf.linalg.trace(statistic) if statistic.shape.rank == 2 else tf.reduce_sum(statistic)


def _eigendecompose_all(factors: list[tuple[np.ndarray, ...]], eigen_epsilon: float) -> list[tuple[np.ndarray, ...]]:
    """Eigendecompositions of every block's factors, in float64 on the worker thread: a
    matrix gives its clipped eigenvalues and eigenvectors, a diagonal its clipped entries.

    LAPACK's divide-and-conquer ``syevd`` (``numpy.linalg.eigh``) on one BLAS thread (the
    training step keeps the other cores), several times faster than ``tf.linalg.eigh`` on
    large factors (3137×3137: ≈ 4 s against ≈ 20 s in float64 on one core).
    """
    out = []
    with threadpool_limits(limits=1, user_api="blas"):
        for block_factors in factors:
            decomposition: list[np.ndarray] = []
            for factor in block_factors:
                matrix = np.asarray(factor, dtype=np.float64)
                if matrix.ndim == 1:
                    decomposition.append(np.where(matrix > eigen_epsilon, matrix, 0.0))
                    continue
                values, vectors = np.linalg.eigh(matrix, UPLO="L")  # the lower triangle, as tf.linalg.eigh
                decomposition += [np.where(values > eigen_epsilon, values, 0.0), vectors]
            out.append(tuple(decomposition))
    return out


def _same_number(held: float, value: object) -> bool:
    """Whether ``value`` is a real number equal to ``held`` (NaN never is)."""
    return isinstance(value, int | float | np.floating | np.integer) and not isinstance(value, bool) and held == value
