"""What an ACKTR update costs, part by part, next to a plain gradient step.

An update is one compiled graph, so its parts cannot be timed from inside it. The probe
times each part as its own compiled function on the same batch, none of which assigns
anything (parameters, statistics, inverse, momentum and random state stay exactly as they
are; the Fisher noise is drawn statelessly):

    gradient step   forward pass, ∇L, and θ − η∇L            (what a plain gradient step costs)
    statistics      the above plus L_F's backward pass to the pre-activations, the batch
                    factors A = āᵀā/n, G = gᵀg/n and their moving averages, minus the above
    decomposition   the eigendecompositions of every factor (what ``kfac_update`` spaces out)
    preconditioning (A ⊗ G + δI)⁻¹∇ per layer, gᵀF⁻¹g and the trust-region scale

Each is the fastest of ``repeats`` calls (after one untimed call that compiles it; one call
for a part slower than ``REPEAT_BUDGET_S``), in milliseconds; decomposition and
preconditioning net of the cost of calling a compiled function at all (the real update, one
call, pays that once). :func:`attribute` then splits one real update's measured wall time
into the parts its plan ran and ``rest`` (everything else: the second forward pass for the
KL, checks, assignments and the Python around the step).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import tensorflow as tf

from acktr_lab.compiled import compile_function
from acktr_lab.kfac import KfacOptimizer
from acktr_lab.losses import acktr_losses
from acktr_lab.rollout import Batch


class ProbedLearner(Protocol):
    """What the probe reads of a :class:`~acktr_lab.learner.Learner` (which owns a probe)."""

    policy: Any
    optimizer: KfacOptimizer
    loss_coefficients: Mapping[str, tf.Variable]

    def step_inputs(self, batch: Batch) -> tuple[Any, ...]: ...


#: The probe's parts, in the order they are drawn.
PARTS = ("statistics", "decomposition", "preconditioning")
#: A part whose call takes longer than this (seconds) is timed once rather than ``repeats`` times.
REPEAT_BUDGET_S = 0.05
#: A fixed seed for the probe's stateless Fisher noise (the run's generator is never touched).
_NOISE_SEED = (20170817, 0)


class UpdateCostProbe:
    """Times the parts of ``learner``'s update on a batch; see the module docstring."""

    def __init__(self, learner: ProbedLearner, repeats: int = 3) -> None:
        if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
            raise ValueError(f"repeats must be a positive integer, got {repeats!r}")
        self.learner = learner
        self.repeats = repeats
        compile_ = functools.partial(compile_function, reduce_retracing=True)
        self._gradient_step = compile_(self._gradient_step_graph)
        self._statistics = compile_(self._statistics_graph)
        self._decomposition = compile_(self._decomposition_graph)
        self._preconditioning = compile_(self._preconditioning_graph)
        self._gradient_matrices = compile_(self._gradient_matrices_graph)
        self._empty = compile_(lambda: tf.constant(0.0, tf.float64))
        self._warm: set[int] = set()  # the functions called (and so compiled) once already

    def measure(self, batch: Batch) -> dict[str, float]:
        """Milliseconds per part: ``gradient_step``, ``statistics``, ``decomposition``,
        ``preconditioning`` (each ≥ 0)."""
        inputs = self.learner.step_inputs(batch)
        gradient_step = self._time(self._gradient_step, inputs)
        with_statistics = self._time(self._statistics, inputs)
        matrices = self._gradient_matrices(*inputs)
        call = self._time(self._empty, ())  # a call's own cost: the real update pays it once
        return {
            "gradient_step": gradient_step,
            "statistics": max(0.0, with_statistics - gradient_step),
            "decomposition": max(0.0, self._time(self._decomposition, ()) - call),
            "preconditioning": max(0.0, self._time(self._preconditioning, (matrices,)) - call),
        }

    def _time(self, function: Callable[..., tf.Tensor], inputs: tuple[Any, ...]) -> float:
        """The fastest of up to ``repeats`` calls, in ms; a part slower than ``REPEAT_BUDGET_S``
        is called once (the eigendecomposition of a large layer's factor can take seconds)."""
        if id(function) not in self._warm:
            function(*inputs).numpy()  # compiles on the first call; not timed
            self._warm.add(id(function))
        best = float("inf")
        for _ in range(self.repeats):
            started = time.perf_counter()
            function(*inputs).numpy()
            best = min(best, time.perf_counter() - started)
            if best > REPEAT_BUDGET_S:
                break
        return 1000.0 * best

    # -- the parts, each a compiled function returning one scalar -----------------------
    def _forward(self, inputs: tuple[Any, ...]) -> tuple[tf.GradientTape, Any, tf.Tensor, tf.Tensor]:
        """The learner's losses (:func:`~acktr_lab.losses.acktr_losses`), ``L_F``'s noise stateless."""
        noise = lambda shape, dtype: tf.random.stateless_normal(shape, _NOISE_SEED, dtype=dtype)  # noqa: E731
        tape, recorded, terms = acktr_losses(self.learner.policy, inputs, self.learner.loss_coefficients, noise)
        return tape, recorded, terms["loss"], terms["fisher_loss"]

    def _gradient_step_graph(self, *inputs: Any) -> tf.Tensor:
        """Forward pass, ∇L and the new parameters θ − η∇L (not assigned)."""
        tape, _, loss, _ = self._forward(inputs)
        optimizer = self.learner.optimizer
        rate = optimizer.hyperparameters["learning_rate"]
        stepped = [v - tf.cast(rate, v.dtype) * g for v, g in zip(optimizer.trainable, optimizer.gradients(tape, loss))]
        return _total(stepped)

    def _statistics_graph(self, *inputs: Any) -> tf.Tensor:
        """The gradient step's work plus the curvature statistics and their moving averages."""
        tape, recorded, loss, fisher_loss = self._forward(inputs)
        optimizer = self.learner.optimizer
        rate = optimizer.hyperparameters["learning_rate"]
        stepped = [v - tf.cast(rate, v.dtype) * g for v, g in zip(optimizer.trainable, optimizer.gradients(tape, loss))]
        decay = optimizer.hyperparameters["stats_decay"]
        averaged = [
            old + tf.cast(1.0 - decay, old.dtype) * (new - old)
            for block, batch_stats in zip(optimizer.blocks, optimizer.batch_statistics(tape, fisher_loss, recorded))
            for old, new in zip(block.statistics(), batch_stats)
        ]
        return _total(stepped) + _total(averaged)

    def _decomposition_graph(self) -> tf.Tensor:
        """Every block's decomposition of its current statistics (not installed)."""
        optimizer = self.learner.optimizer
        return _total([t for block in optimizer.blocks for t in block.decompose(optimizer.eigen_epsilon)[0]])

    def _gradient_matrices_graph(self, *inputs: Any) -> list[tf.Tensor]:
        tape, _, loss, _ = self._forward(inputs)
        return self.learner.optimizer.gradient_matrices(self.learner.optimizer.gradients(tape, loss))

    def _preconditioning_graph(self, matrices: list[tf.Tensor]) -> tf.Tensor:
        """(A ⊗ G + δI)⁻¹∇ per block, gᵀF⁻¹g and the trust-region scale."""
        optimizer = self.learner.optimizer
        hyperparameters = {name: variable.read_value() for name, variable in optimizer.hyperparameters.items()}
        naturals, _, scale = optimizer.trust_region(matrices, [], hyperparameters)
        return _total(naturals) + scale


def _total(tensors: list[tf.Tensor]) -> tf.Tensor:
    """One float64 scalar that depends on every tensor (so that no part is pruned away)."""
    if not tensors:
        return tf.constant(0.0, tf.float64)
    return tf.add_n([tf.reduce_sum(tf.cast(t, tf.float64)) for t in tensors])


def attribute(update_ms: float, parts: Mapping[str, float], metrics: Mapping[str, float]) -> dict[str, float]:
    """One update's measured ``update_ms`` split into the parts its plan ran (per the
    learner's ``kfac/took_statistics``, ``kfac/decomposed``, ``kfac/preconditioned`` metrics)
    and ``rest``; with the plain ``gradient_step`` next to them. Milliseconds, under ``cost/``."""
    ran = {
        "statistics": bool(metrics.get("kfac/took_statistics", 0.0)),
        "decomposition": bool(metrics.get("kfac/decomposed", 0.0)),
        "preconditioning": bool(metrics.get("kfac/preconditioned", 0.0)),
    }
    spent = {part: parts[part] if ran[part] else 0.0 for part in PARTS}
    return {
        **{f"cost/{part}_ms": ms for part, ms in spent.items()},
        "cost/rest_ms": max(0.0, update_ms - sum(spent.values())),
        "cost/gradient_step_ms": parts["gradient_step"],
    }
