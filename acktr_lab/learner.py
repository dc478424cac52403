"""The learner: the policy, ACKTR's losses, the K-FAC optimizer and the compiled steps.

:meth:`Learner.update` takes one :class:`~acktr_lab.rollout.Batch` of ``T`` steps of ``N``
envs (``n = N·T`` transitions, advantages ``Â = R − V``) and applies one ACKTR update::

    L_pg  = mean(Â · −log π(a|s)) − ent_coef · mean(H[π(·|s)])
    L_vf  = mean((V(s) − R)²)
    L     = L_pg + vf_coef · L_vf
    L_F   = mean(log π(a|s)) − vf_fisher_coef · mean((V(s) − sg(V(s) + ε))²),  ε ~ N(0, 1)

``L_F`` (:mod:`acktr_lab.losses`) is the sampled-Fisher loss (the rollout's actions are samples of the current
policy; the value head has a unit-variance Gaussian predictive distribution). K-FAC takes
∇L, builds its curvature statistics from ∇L_F of the same forward pass and steps inside
the KL trust region (see :mod:`acktr_lab.kfac.optimizer`). For Box actions the
advantages are standardised first.

The learner also acts (:meth:`act`, :meth:`value`): both are compiled once, and sampling
draws from the learner's seeded generator, as the Fisher noise does. For rollouts of a
feedforward MLP policy the collector acts through :attr:`Learner.rollout_actor`, the same
policy in NumPy with the rollout's noise drawn from that generator in one call
(:mod:`acktr_lab.numpy_actor`): no TensorFlow call per step.
Python bookkeeping stays outside the compiled steps, which return a metrics dict.
"""

from __future__ import annotations

import functools
import gc
import uuid
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab.compiled import ConcreteCalls, compile_function
from acktr_lab.kfac import KfacOptimizer, UpdatePlan, validate_hyperparameter
from acktr_lab.losses import acktr_losses
from acktr_lab.numpy_actor import RolloutActor, numpy_acting_unsupported
from acktr_lab.policies import ActorCriticPolicy, PolicyState
from acktr_lab.rollout import Batch, StateArrays
from acktr_lab.update_cost import UpdateCostProbe

#: The loss coefficients the learner holds in variables (changing them never retraces).
LOSS_COEFFICIENTS = ("ent_coef", "vf_coef", "vf_fisher_coef")
#: The K-FAC values that change between updates without retracing.
OPTIMIZER_SETTINGS = ("kfac_clip", "max_grad_norm")
#: Why a compiled update step refuses to run: its plan is not this iteration's, or a dry run.
#: TensorFlow logs a refused dry run (a C++ warning, shown where TensorFlow was imported before
#: acktr_lab), so its message says what it is.
_REFUSALS = (
    "update plan does not match",
    "acktr_lab: a dry run that compiles a K-FAC update step ahead of use, refused on purpose "
    "(nothing changed; not an error)",
)
#: The update's own metrics (reported as ``train/<name>``); the optimizer's are ``kfac/<name>``.
TRAIN_METRICS = ("policy_loss", "value_loss", "entropy", "kl")


class StepInputs(NamedTuple):
    """One batch as the compiled update takes it (:meth:`Learner.step_inputs`): ``[T, N, ...]``
    observations and episode starts, the policy state before them, and the ``N·T`` actions,
    advantages and returns flattened env-major."""

    observations: tf.Tensor
    initial_state: PolicyState
    episode_starts: tf.Tensor
    actions: tf.Tensor
    advantages: tf.Tensor
    returns: tf.Tensor


@dataclass(frozen=True)
class LearnerState:
    """Everything the learner learns or draws from: see :meth:`Learner.state`."""

    owner: str
    parameters: dict[str, np.ndarray]
    optimizer_state: dict[str, np.ndarray]
    generator_state: np.ndarray


class Learner:
    """Owns ``policy`` and ``optimizer`` (built over the policy's K-FAC layers)."""

    def __init__(
        self, policy: ActorCriticPolicy, optimizer: KfacOptimizer, seed: int, numpy_acting: bool = True
    ) -> None:
        self.policy = policy
        self.optimizer = optimizer
        #: Identifies this learner's snapshots (a snapshot restores only into its own model).
        self.identity = uuid.uuid4().hex
        self.generator = tf.random.Generator.from_seed(seed)
        self.standardise_advantages = isinstance(policy.action_space, gym.spaces.Box)
        self.loss_coefficients = {
            name: tf.Variable(0.0, dtype=tf.float32, trainable=False, name=name) for name in LOSS_COEFFICIENTS
        }
        self._coefficients_assigned: dict[str, float] = {}  # what set_hyperparameters last assigned
        self._act = ConcreteCalls(compile_function(self._act_graph, reduce_retracing=True))
        self._value = ConcreteCalls(compile_function(self._value_graph, reduce_retracing=True))
        self._update_steps: dict[UpdatePlan, Any] = {}  # one compiled step per K-FAC update plan
        self._gradient_steps: dict[bool, Any] = {}  # what the plans share, by whether it takes statistics
        self._kl_step = compile_function(self._kl_graph, reduce_retracing=True)
        self._not_a_dry_run, self._dry_run = tf.constant(False), tf.constant(True)
        #: What the collector acts through: the NumPy actor where the policy allows it, else this learner.
        self.rollout_actor: Any = self
        if numpy_acting and numpy_acting_unsupported(policy) is None:
            self.rollout_actor = RolloutActor(policy, self.generator)
        #: Times the parts of an update on a batch, changing nothing (compiled on first use).
        self.cost_probe = UpdateCostProbe(self)

    # -- acting (the collector's Actor) -----------------------------------------------
    def initial_state(self, n_envs: int) -> StateArrays:
        return tuple(s.numpy() for s in self.policy.initial_state(n_envs))

    def act(
        self, observations: np.ndarray, state: StateArrays, episode_starts: np.ndarray, deterministic: bool = False
    ) -> tuple[np.ndarray, np.ndarray, StateArrays]:
        """``(actions, values, next_state)`` for a batch of observations as the env gives them."""
        actions, values, next_state = self._act(
            tf.convert_to_tensor(observations), _tensors(state), tf.convert_to_tensor(episode_starts), deterministic
        )
        return actions.numpy(), values.numpy(), tuple(s.numpy() for s in next_state)

    def value(self, observations: np.ndarray, state: StateArrays, episode_starts: np.ndarray) -> np.ndarray:
        """``V(o, s)``, compiled: the collector calls it every rollout (bootstrap values)."""
        return self._value(
            tf.convert_to_tensor(observations), _tensors(state), tf.convert_to_tensor(episode_starts)
        ).numpy()

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        return self.policy.distribution_factory.to_env_actions(actions)

    def _act_graph(
        self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor, deterministic: bool
    ) -> tuple[tf.Tensor, tf.Tensor, PolicyState]:
        step = self.policy.step(observations, state, episode_starts)
        actions = step.distribution.mode() if deterministic else step.distribution.sample(self.generator)
        return actions, step.values, step.state

    def _value_graph(self, observations: tf.Tensor, state: PolicyState, episode_starts: tf.Tensor) -> tf.Tensor:
        return self.policy.step(observations, state, episode_starts).values

    # -- learning ---------------------------------------------------------------------
    def set_hyperparameters(self, **values: float) -> None:
        """The live loss coefficients and K-FAC settings for the next updates."""
        unknown = set(values) - set(LOSS_COEFFICIENTS) - set(OPTIMIZER_SETTINGS)
        if unknown:
            raise ValueError(f"the learner has no hyperparameter(s) {sorted(unknown)}")
        for name, value in values.items():
            # assigned only when changed: the trainer sets them all before every update
            if name in self.loss_coefficients and self._coefficients_assigned.get(name) != value:
                self.loss_coefficients[name].assign(value)
                self._coefficients_assigned[name] = value
        settings = {k: v for k, v in values.items() if k in OPTIMIZER_SETTINGS}
        if settings:
            self.optimizer.set_hyperparameters(**settings)

    def update(self, batch: Batch, learning_rate: float) -> dict[str, Any]:
        """One ACKTR update on ``batch`` with step size ``learning_rate``; its metrics by name:
        ``train/…`` (losses, entropy, KL of the change, learning rate, and for a Gaussian
        policy ``log_std``, the mean over action dimensions of its log standard deviation) and ``kfac/…``
        (everything the optimizer reports: trust-region scale, gᵀF⁻¹g, gradient norm, ...,
        and which parts the update ran: ``took_statistics``, ``decomposed``, ``preconditioned``;
        after a decomposition ``kfac/eigenvalues``, layer name → eigenvalues of A and of G)."""
        # an input of the step, assigned inside it (an eager assignment per update cost ≈ 0.3 ms)
        step_learning_rate = tf.constant(validate_hyperparameter("learning_rate", learning_rate), tf.float64)
        inputs = self.step_inputs(batch)
        plan = self.optimizer.plan()
        prepared = self._prepare_every_plan(plan, inputs) if not self._update_steps else None
        step = self._update_step(plan)
        metrics = tf.nest.map_structure(lambda t: t.numpy(), step(inputs, step_learning_rate, self._not_a_dry_run))
        if prepared is not None:
            prepared.result()  # the other plans, instantiated meanwhile on a worker thread
        losses = {name: metrics.pop(name) for name in TRAIN_METRICS}
        optimizer_metrics = self.optimizer.after_update(metrics)
        losses["learning_rate"] = optimizer_metrics.pop("learning_rate")
        # which parts of an update this plan ran (what the update-cost panel attributes)
        optimizer_metrics["took_statistics"] = float(plan.statistics)
        optimizer_metrics["decomposed"] = float(plan.refresh)
        optimizer_metrics["preconditioned"] = float(not plan.cold)
        log_std = getattr(self.policy, "log_std", None)
        if log_std is not None:  # a Gaussian policy: its exploration noise after this update
            losses["log_std"] = float(np.mean(log_std.numpy()))
        return {
            **{f"train/{name}": value for name, value in losses.items()},
            **{f"kfac/{name}": value for name, value in optimizer_metrics.items()},
        }

    def step_inputs(self, batch: Batch) -> StepInputs:
        """The compiled update's inputs for ``batch`` (Box actions: advantages standardised)."""
        advantages = batch.advantages
        if self.standardise_advantages:
            advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
        return StepInputs(
            tf.convert_to_tensor(batch.observations),
            _tensors(batch.initial_state),
            tf.convert_to_tensor(batch.episode_starts),
            tf.convert_to_tensor(_flatten(batch.actions)),
            tf.convert_to_tensor(_flatten(advantages), tf.float32),
            tf.convert_to_tensor(_flatten(batch.returns), tf.float32),
        )

    def _prepare_every_plan(self, current: UpdatePlan, inputs: StepInputs) -> Future[None]:
        """Trace every plan now, and have TensorFlow instantiate the ones not due yet, so that
        no later update (the first K-FAC step, say) pauses to trace or instantiate.

        A plan not due is run as a dry run: its first ops, the dry-run and plan assertions, on
        which every other op of the step depends, fail, so the call changes nothing (no
        parameter, statistic or random draw) but leaves the function ready. The dry runs go
        on a worker thread, while this thread runs the current plan's first update:
        TensorFlow releases the GIL while it instantiates a function (graph optimisation), so
        the two instantiations overlap. The returned future is done when they all are; its
        ``result()`` raises what a dry run raised unexpectedly.
        """
        steps = {plan: self._update_step(plan) for plan in self.optimizer.possible_plans()}
        learning_rate = self.optimizer.hyperparameters["learning_rate"].read_value()
        for step in steps.values():
            step.get_concrete_function(inputs, learning_rate, self._not_a_dry_run)
        not_due = [step for plan, step in steps.items() if plan != current]

        def instantiate() -> None:
            for step in not_due:
                try:
                    step(inputs, learning_rate, self._dry_run)
                except tf.errors.InvalidArgumentError as error:
                    if not any(reason in str(error) for reason in _REFUSALS):
                        raise
                else:  # pragma: no cover - a dry run must be refused
                    raise RuntimeError("a dry run of a K-FAC update step was not refused")
            # then the eigenvalue read (reports of asynchronous decompositions), traced in
            # Python: after the dry runs, whose instantiation needs no GIL, so that it does not
            # wait behind the calling thread's garbage collection (a 0.1-0.2 s wait at the first
            # update before, measured on CartPole)
            self.optimizer.eigenvalues()

        executor = ThreadPoolExecutor(1, thread_name_prefix="acktr-compile")
        prepared = executor.submit(instantiate)
        executor.shutdown(wait=False)  # its thread ends when the dry runs have
        # Tracing leaves many new long-lived Python objects, and they would trigger a full
        # garbage collection some updates later: a ≈ 0.2 s pause mid-run (measured, CartPole
        # MlpPolicy). Collect now instead, while the worker instantiates (GIL released).
        gc.collect()
        return prepared

    def _update_step(self, plan: UpdatePlan) -> Any:
        """The compiled update for ``plan`` (the plan is baked in: no per-call argument for it).

        Traced without AutoGraph: the update is straight-line Python over static structures,
        and AutoGraph's conversion made the first trace about six times slower (measured
        2.8 s against 0.45 s for the cold-start plan of a CartPole MlpPolicy).
        """
        step = self._update_steps.get(plan)
        if step is None:

            def update_graph(inputs: StepInputs, learning_rate: tf.Tensor, dry_run: tf.Tensor) -> dict[str, tf.Tensor]:
                return self._update_graph(inputs, learning_rate, dry_run, plan)

            # (a closure rather than a partial: a concrete function binds only positional inputs)
            step = ConcreteCalls(compile_function(update_graph, reduce_retracing=True))
            self._update_steps[plan] = step
        return step

    def update_traces(self) -> int:
        """How many times the update has been traced (compiled) so far: every plan's step and
        the compiled stages they share."""
        return sum(self.compiled_functions(acting=False).values())

    def compiled_functions(self, acting: bool = True) -> dict[str, int]:
        """Every compiled function of the update (and with ``acting``, of acting) traced so
        far, by name → how many times it was traced (1 each, unless something retraced)."""
        functions: dict[str, Any] = {f"update {tuple(plan)}": step for plan, step in self._update_steps.items()}
        functions.update({f"gradients (statistics={s})": step for s, step in self._gradient_steps.items()})
        functions.update({"kl": self._kl_step, **self.optimizer.compiled_functions()})
        if acting:
            functions.update({"act": self._act, "value": self._value})
            if isinstance(self.rollout_actor, RolloutActor):
                functions.update(self.rollout_actor.compiled_functions())
        traces = {name: f.experimental_get_tracing_count() for name, f in functions.items()}
        return {name: count for name, count in traces.items() if count}

    def _update_graph(
        self, inputs: StepInputs, learning_rate: tf.Tensor, dry_run: tf.Tensor, plan: UpdatePlan
    ) -> dict[str, tf.Tensor]:
        """One ACKTR update: losses, sampled-Fisher loss, K-FAC step, KL of the change.

        Traced once per K-FAC ``plan`` (cold start, with or without statistics, with or
        without an eigendecomposition): each trace holds only the work it needs. The losses,
        gradients and curvature statistics, the same in every plan that takes statistics,
        are one compiled function (:meth:`_gradients_graph`) that the plans call: traced once.
        """
        # first: every op below waits for these (a dry run compiles the step and changes nothing)
        # (the dry-run check first, so that a dry run is refused with its own message)
        with tf.control_dependencies([tf.debugging.Assert(tf.logical_not(dry_run), [_REFUSALS[1]])]):
            plan_check = self.optimizer.assert_plan(plan)
        with tf.control_dependencies([plan_check]):
            parts = self._gradients_step(plan.statistics)(inputs)
            metrics = self.optimizer.apply_gradients(
                plan,
                parts["loss"],
                parts.get("fisher_loss"),
                parts["grads"],
                parts.get("batch_stats"),
                plan_check,
                learning_rate,
            )
            metrics["kl"] = self._kl_step(inputs, tuple(parts["distribution"]))
            for name in ("policy_loss", "value_loss", "entropy"):
                metrics[name] = tf.cast(parts[name], tf.float64)
            return metrics

    def _kl_graph(self, inputs: StepInputs, old_parameters: tuple[tf.Tensor, ...]) -> tf.Tensor:
        """``mean KL(π_old ‖ π_new)`` over the batch: the policy before the update (its
        distribution's parameters) against the policy as it is now. Compiled once
        (:attr:`_kl_step`) and called by every plan's step after its update."""
        old = self.policy.distribution_factory.rebuild(old_parameters)
        new = self.policy.unroll(inputs.observations, inputs.initial_state, inputs.episode_starts).distribution
        return tf.cast(tf.reduce_mean(old.kl(new)), tf.float64)

    def _gradients_step(self, statistics: bool) -> Any:
        """The compiled :meth:`_gradients_graph` (with or without statistics), shared by the plans."""
        step = self._gradient_steps.get(statistics)
        if step is None:
            graph = functools.partial(self._gradients_graph, statistics=statistics)
            step = compile_function(graph, reduce_retracing=True)
            self._gradient_steps[statistics] = step
        return step

    def _gradients_graph(self, inputs: StepInputs, statistics: bool) -> dict[str, Any]:
        """The forward pass, ACKTR's losses, ``∇L`` and (``statistics``) the batch curvature
        statistics from ``∇L_F``; changes nothing but the generator (the value noise of ``L_F``).

        Returns ``loss``, the loss terms, ``grads``, ``fisher_loss`` and ``batch_stats`` (with
        statistics) and the policy's ``distribution`` parameters (for the KL of the change).
        """
        noise = (lambda shape, dtype: self.generator.normal(shape, dtype=dtype)) if statistics else None
        tape, recorded, terms = acktr_losses(self.policy, inputs, self.loss_coefficients, noise)
        parts: dict[str, Any] = {
            **{name: terms[name] for name in ("loss", "policy_loss", "value_loss", "entropy")},
            "grads": self.optimizer.gradients(tape, terms["loss"]),
            "distribution": terms["distribution"].parameters(),
        }
        if statistics:  # only updates that take statistics need L_F (and draw its value noise)
            parts["fisher_loss"] = terms["fisher_loss"]
            parts["batch_stats"] = self.optimizer.batch_statistics(tape, terms["fisher_loss"], recorded)
        return parts

    # -- state ------------------------------------------------------------------------
    def get_parameters(self) -> dict[str, np.ndarray]:
        return {name: variable.numpy() for name, variable in self.policy.parameters.items()}

    def state(self) -> LearnerState:
        """A copy of the parameters, the K-FAC state and the random generator's state."""
        return LearnerState(
            owner=self.identity,
            parameters={k: v.copy() for k, v in self.get_parameters().items()},
            optimizer_state={k: v.numpy().copy() for k, v in self.optimizer.state_variables().items()},
            generator_state=self.generator.state.numpy().copy(),
        )

    def restore(self, state: LearnerState) -> None:
        """Go back to ``state``, which must come from this learner (``ValueError`` otherwise)."""
        if state.owner != self.identity:
            raise ValueError(
                "this snapshot was taken from another model; a snapshot restores only into the model it came from "
                "(to move weights between models use load_parameters)"
            )
        for name, value in state.parameters.items():
            self.policy.parameters[name].assign(value)
        self.restore_optimizer(state.optimizer_state)
        self.generator.reset(state.generator_state)

    def restore_optimizer(self, state: Mapping[str, np.ndarray]) -> None:
        """Assign the K-FAC state (statistics, inverses, momentum, iteration), shapes checked first."""
        variables = self.optimizer.state_variables()
        if set(state) != set(variables):
            missing, unknown = sorted(set(variables) - set(state)), sorted(set(state) - set(variables))
            raise ValueError(
                f"the saved optimizer state does not match this model's K-FAC layers "
                f"(missing {missing[:5]}, unknown {unknown[:5]})"
            )
        values = {name: _checked_state(name, state[name], variable) for name, variable in variables.items()}
        for name, variable in variables.items():
            variable.assign(values[name])
        self.optimizer.mark_restored()


def _checked_state(name: str, value: np.ndarray, variable: tf.Variable) -> np.ndarray:
    """One optimizer state array, checked as strictly as the parameters: its shape; counters
    are non-negative integers; everything else real numbers, finite in the variable's dtype;
    eigenvalues and diagonal curvatures non-negative."""
    value = np.asarray(value)
    if tuple(value.shape) != tuple(variable.shape):
        raise ValueError(f"{name} has shape {value.shape}, expected {tuple(variable.shape)}")
    if variable.dtype.is_integer:
        if value.dtype.kind not in "iu" or np.any(value < 0) or np.any(value > 2**62):
            raise ValueError(f"{name} must be a non-negative integer count, got {value!r} ({value.dtype})")
        return value.astype(variable.dtype.as_numpy_dtype)
    if value.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {value.dtype}")
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked next
        cast = value.astype(variable.dtype.as_numpy_dtype)
    if not np.all(np.isfinite(cast)):
        raise ValueError(f"{name} holds values that are not finite as {variable.dtype.name} (NaN, ±inf, or too large)")
    leaf = name.rsplit("/", 1)[-1]
    if (leaf.endswith("eigenvalues") or leaf in ("F", "F_refreshed")) and np.any(cast < 0):
        raise ValueError(f"{name} holds negative values; a curvature's eigenvalues and diagonal are ≥ 0")
    return cast


def _tensors(state: StateArrays) -> PolicyState:
    return tuple(tf.convert_to_tensor(s) for s in state)


def _flatten(array: np.ndarray) -> np.ndarray:
    """``[n_steps, n_envs, ...]`` → ``[n_envs · n_steps, ...]`` (env-major, as :func:`env_major`)."""
    return array.swapaxes(0, 1).reshape(-1, *array.shape[2:])
