"""ACKTR (Wu et al. 2017) with the Stable Baselines 2 API, on TensorFlow 2 and gymnasium.

:class:`ACKTR` is a thin facade over the parts of a run: a
:class:`~acktr_lab.learner.Learner` (the policy, ACKTR's losses, K-FAC and the compiled
steps), a :class:`~acktr_lab.rollout.Collector` (the env and everything acting keeps
between updates) and a :class:`~acktr_lab.trainer.Trainer` per run (counters, live
hyperparameters, snapshots, reports). The update's maths is in :mod:`acktr_lab.learner`.
"""

from __future__ import annotations

import collections
import math
import os
import reprlib
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import gymnasium as gym
import numpy as np
import tensorflow as tf

from acktr_lab import hyperparameters as hp
from acktr_lab.distributions import Distribution
from acktr_lab.expert import ExpertDataset
from acktr_lab.kfac import KfacOptimizer
from acktr_lab.learner import Learner
from acktr_lab.loading import load_into, name_sb2_parameters
from acktr_lab.normalization import ObservationNormalizer, ReturnNormalizer
from acktr_lab.policies import ActorCriticPolicy, resolve_policy
from acktr_lab.preprocessing import assert_valid_observation_input, space_to_json, spaces_equal
from acktr_lab.pretrain import behaviour_cloning
from acktr_lab.recurrent import MlpLstmPolicy  # noqa: F401 (registers the recurrent policy names)
from acktr_lab.report import Edit, PretrainReport
from acktr_lab.rollout import Collector, StateArrays
from acktr_lab.serialization import ModelFile, ModelFileError, PathOrFile, load_model, save_model
from acktr_lab.trainer import Trainer, check_total_timesteps
from acktr_lab.training_loop import check_learn_arguments, run_learn
from acktr_lab.vec_env import as_vector_env
from acktr_lab.vecnormalize import VecNormalizeStatistics, find_vecnormalize, load_vecnormalize

EnvLike = gym.Env | gym.vector.VectorEnv | str
#: The hyperparameters kept as the model's own settings (not live, not K-FAC constants).
_SETTINGS = (
    "n_steps",
    "verbose",
    "tensorboard_log",
    "full_tensorboard_log",
    "n_cpu_tf_sess",
    "kfac_update",
    "async_eigen_decomp",
    "normalize_returns",
    "normalize_observations",
)


class _LiveHyperparameter:
    """A live hyperparameter of the model: read from and written to the current run's
    trainer while there is one (so ``model.ent_coef = x`` and ``trainer.set(ent_coef=x)``
    are the same change), else to the model's own values, which the next run starts from."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model: ACKTR | None, owner: type | None = None) -> Any:
        if model is None:
            return self
        return model._live_values()[self.name]

    def __set__(self, model: ACKTR, value: Any) -> None:
        if model._trainer is not None:
            model._trainer.set(**{self.name: value})
        else:
            model._live[self.name] = hp.validate(self.name, value)


class _Setting:
    """A hyperparameter that is not live, checked against its one definition whenever it is
    set: ``model.n_steps = 0`` raises ``ValueError`` as ``ACKTR(..., n_steps=0)`` does, so
    that :meth:`ACKTR.save` never writes what :meth:`ACKTR.load` refuses. A ``built_in`` one
    (read when the policy and optimizer are built) is refused once the model is built: it
    would change what the model reports and saves, not what it trains."""

    def __init__(self, built_in: bool = False) -> None:
        self.built_in = built_in

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, model: ACKTR | None, owner: type | None = None) -> Any:
        if model is None:
            return self
        return model._settings[self.name]

    def __set__(self, model: ACKTR, value: Any) -> None:
        if self.built_in and hasattr(model, "learner"):
            raise ValueError(
                f"{self.name} is built into the policy and optimizer and cannot change once the model is "
                f"built: pass it to ACKTR(...) or ACKTR.load(..., {self.name}=...)"
            )
        model._settings[self.name] = hp.validate(self.name, value)


class ACKTR:
    """The ACKTR (Actor Critic using Kronecker-Factored Trust Region) model.

    Arguments and defaults are Stable Baselines 2's. ``env`` may be a gymnasium env, a
    gymnasium vector env (``DummyVecEnv``/``SubprocVecEnv``) or an env id (then ``n_envs``
    copies are made). TensorFlow 1 arguments: ``n_cpu_tf_sess`` (and its deprecated alias
    ``nprocs``) sets TensorFlow's thread pools when still possible; ``full_tensorboard_log``
    adds parameter histograms to TensorBoard. Extra keyword-only arguments expose the K-FAC
    constants ACKTR fixes (``momentum``, ``damping``, ``stats_decay``, ``cold_iter``,
    ``eigen_epsilon``) with ACKTR's values as defaults, and ``stats_update``: update the
    curvature statistics every this many updates (1, ACKTR's behaviour; with 10 and
    ``kfac_update=10`` an update costs about half as much, see ``benchmarks/kfac_overhead.py``),
    and ``approx_t2`` (Stable Baselines 2's ``KfacOptimizer`` option: convolution factors from
    mean patches, far cheaper statistics for ``CnnPolicy``; False, the exact factors, by default).

    ``normalize_returns`` (False by default, as in Stable Baselines 2) scales the rewards
    by the running std of the return (:mod:`acktr_lab.normalization`); its statistics are
    saved with the model. It keeps the critic within reach of the returns under ACKTR's
    joint trust region. ``normalize_observations`` (False) feeds the policy observations
    standardised by their running statistics, saved with the model and applied by
    ``predict`` (non-image Box observations only).

    Any gymnasium vector env works, in any autoreset mode (see :mod:`acktr_lab.rollout`).

    Every argument is checked against its definition (:mod:`acktr_lab.hyperparameters`):
    a value of the wrong type or out of bounds raises ``ValueError`` naming the argument;
    nothing is coerced.

    ``seed`` makes a run reproducible: the same seed gives the same parameters, actions and
    episodes, except with ``async_eigen_decomp=True``, where which decomposition an update
    uses depends on when the worker thread finishes, so runs are not bit-identical.
    """

    gamma = _LiveHyperparameter()
    ent_coef = _LiveHyperparameter()
    vf_coef = _LiveHyperparameter()
    vf_fisher_coef = _LiveHyperparameter()
    learning_rate = _LiveHyperparameter()
    max_grad_norm = _LiveHyperparameter()
    kfac_clip = _LiveHyperparameter()
    lr_schedule = _LiveHyperparameter()
    gae_lambda = _LiveHyperparameter()
    n_steps = _Setting()
    verbose = _Setting()
    tensorboard_log = _Setting()
    full_tensorboard_log = _Setting()
    n_cpu_tf_sess = _Setting()
    kfac_update = _Setting(built_in=True)
    async_eigen_decomp = _Setting(built_in=True)
    normalize_returns = _Setting(built_in=True)
    normalize_observations = _Setting(built_in=True)

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: EnvLike | None,
        gamma: float = 0.99,
        nprocs: int | None = None,
        n_steps: int = 20,
        ent_coef: float = 0.01,
        vf_coef: float = 0.25,
        vf_fisher_coef: float = 1.0,
        learning_rate: float | Callable[[float], float] = 0.25,
        max_grad_norm: float = 0.5,
        kfac_clip: float = 0.001,
        lr_schedule: str | Callable[[float], float] = "linear",
        verbose: int = 0,
        tensorboard_log: str | None = None,
        _init_setup_model: bool = True,
        async_eigen_decomp: bool = False,
        kfac_update: int = 1,
        gae_lambda: float | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        full_tensorboard_log: bool = False,
        seed: int | None = None,
        n_cpu_tf_sess: int | None = 1,
        *,
        n_envs: int = 1,
        momentum: float = 0.9,
        damping: float = 0.01,
        stats_decay: float = 0.99,
        cold_iter: int = 10,
        eigen_epsilon: float = 1e-6,
        stats_update: int = 1,
        approx_t2: bool = False,
        normalize_returns: bool = False,
        normalize_observations: bool = False,
    ) -> None:
        if nprocs is not None:
            warnings.warn(
                "nprocs is deprecated (as in Stable Baselines 2.9); use n_cpu_tf_sess", DeprecationWarning, stacklevel=2
            )
            n_cpu_tf_sess = nprocs
        arguments = locals()
        checked = {name: hp.validate(name, arguments[name]) for name in hp.HYPERPARAMETERS}
        if policy_kwargs is not None and not isinstance(policy_kwargs, Mapping):
            raise ValueError(f"policy_kwargs must be a dict of policy arguments or None, got {policy_kwargs!r}")
        self.policy_class = resolve_policy(policy)
        self._trainer: Trainer | None = None
        self._live: dict[str, Any] = {name: checked[name] for name in hp.LIVE_HYPERPARAMETERS}
        self._settings: dict[str, Any] = {name: checked[name] for name in _SETTINGS}
        self.policy_kwargs = dict(policy_kwargs or {})
        self.kfac_kwargs = {name: checked[name] for name in hp.KFAC_CONSTANTS}
        _configure_threads(self.n_cpu_tf_sess)
        seed = checked["seed"]
        self._settings["seed"] = int(seed) if seed is not None else int(np.random.SeedSequence().entropy % (2**31))
        self._num_timesteps = 0
        self._edit_log: tuple[Edit, ...] = ()
        self._episodes: tuple[tuple[float, ...], tuple[int, ...]] = ((), ())
        self.collector: Collector | None = None
        self._env: gym.vector.VectorEnv | None = None
        #: The gymnasium id of the env it trains on, where known; saved, so that ``acktr-lab
        #: enjoy`` can rebuild the env.
        self.env_id: str | None = env if isinstance(env, str) else _env_id(env)
        if env is not None:
            self._env = as_vector_env(env, n_envs=checked["n_envs"])
            self.observation_space = self._env.single_observation_space
            self.action_space = self._env.single_action_space
            self._check_rollout_memory(self._env)
        if _init_setup_model:
            self.setup_model()

    # -- construction -----------------------------------------------------------------
    def setup_model(self) -> None:
        """Build the policy, the optimizer, the learner and the collector (Stable Baselines 2 name)."""
        if not hasattr(self, "observation_space"):
            raise ValueError("ACKTR needs an env (or spaces from a saved model) before setup_model()")
        self.policy = self.policy_class(
            self.observation_space,
            self.action_space,
            seed=self.seed,
            normalize_observations=self.normalize_observations,
            **self.policy_kwargs,
        )
        optimizer = KfacOptimizer(
            self.policy.trainable,
            self.policy.kfac_layers,
            learning_rate=self.learning_rate if not callable(self.learning_rate) else 1.0,
            kfac_clip=self.kfac_clip,
            max_grad_norm=self.max_grad_norm,
            kfac_update=self.kfac_update,
            async_eigen_decomp=self.async_eigen_decomp,
            **self.kfac_kwargs,
        )
        self.learner = Learner(self.policy, optimizer, seed=self.seed)
        self.return_normalizer = ReturnNormalizer(n_envs=1) if self.normalize_returns else None
        self.observation_normalizer = (
            ObservationNormalizer(self.policy.observation_mean, self.policy.observation_var)
            if self.normalize_observations
            else None
        )
        self.collector = self._collector(self._env) if self._env is not None else None

    def _check_rollout_memory(self, env: gym.vector.VectorEnv) -> None:
        space = env.single_observation_space
        if space.shape is not None:
            observation_bytes = math.prod(space.shape) * np.dtype(space.dtype).itemsize
            hp.check_rollout_memory(self.n_steps, env.num_envs, observation_bytes)

    def _collector(self, env: gym.vector.VectorEnv) -> Collector:
        self._check_rollout_memory(env)
        return Collector(
            env,
            self.learner.rollout_actor,
            self.seed,
            return_normalizer=self.return_normalizer,
            observation_normalizer=self.observation_normalizer,
        )

    @property
    def optimizer(self) -> KfacOptimizer:
        return self.learner.optimizer

    def train_step_traces(self) -> int:
        """How many times the update has been traced (compiled) so far, over all plans."""
        return self.learner.update_traces()

    # -- the current run ---------------------------------------------------------------
    def _live_values(self) -> dict[str, Any]:
        return self._trainer.hyperparameters if self._trainer is not None else self._live

    @property
    def num_timesteps(self) -> int:
        """Steps taken so far (the current run's count)."""
        return self._trainer.num_timesteps if self._trainer is not None else self._num_timesteps

    @num_timesteps.setter
    def num_timesteps(self, value: int) -> None:
        """The count the next run starts from with ``reset_num_timesteps=False``. The current
        run, if any, stops being the model's (it keeps its own counters)."""
        if isinstance(value, bool) or int(value) != value or value < 0:
            raise ValueError(f"num_timesteps must be a non-negative integer, got {value!r}")
        self._detach_trainer()
        self._num_timesteps = int(value)

    def _detach_trainer(self) -> None:
        """Take over the current run's live values, episode window and count; it is no
        longer the model's current run."""
        if self._trainer is None:
            return
        self._live = self._trainer.hyperparameters
        self._episodes = (tuple(self._trainer.episode_returns), tuple(self._trainer.episode_lengths))
        self._num_timesteps = self._trainer.num_timesteps
        self._edit_log = tuple(self._trainer.edit_log)
        self._trainer = None

    @property
    def episode_returns(self) -> collections.deque[float] | tuple[float, ...]:
        """Returns of the last (up to 100) finished training episodes."""
        return self._trainer.episode_returns if self._trainer is not None else self._episodes[0]

    @property
    def episode_lengths(self) -> collections.deque[int] | tuple[int, ...]:
        return self._trainer.episode_lengths if self._trainer is not None else self._episodes[1]

    def trainer(
        self,
        total_timesteps: int,
        reset_num_timesteps: bool = True,
        edits: Iterable[Edit] = (),
        cost_every: int = 0,
    ) -> Trainer:
        """A new run, the model's current one: each ``next()`` is one rollout and one update.

        It starts from the previous run's live hyperparameters, episode window and (with
        ``reset_num_timesteps=False``) step count; the previous run keeps its own counters.
        ``edits`` replays live changes at their updates (an earlier run's :attr:`edit_log`).
        ``cost_every``: time an update's parts every so many updates (see :class:`Trainer`).
        """
        if self.collector is None:
            raise ValueError("this model has no env to train on; pass one with set_env(env)")
        check_total_timesteps(total_timesteps)
        self._detach_trainer()
        trainer = Trainer(
            self.learner,
            self.collector,
            total_timesteps,
            hyperparameters=self._live,
            n_steps=self.n_steps,
            num_timesteps=0 if reset_num_timesteps else self._num_timesteps,
            episodes=self._episodes,
            seed=self.seed,
            model=self,
            edits=edits,
            cost_every=cost_every,
        )
        self._trainer = trainer
        return trainer

    @property
    def edit_log(self) -> tuple[Edit, ...]:
        """The live changes of the current (or last) run, or of the run a loaded file saved:
        ``model.learn(n, edits=model.edit_log)`` on a model with the same seed replays them."""
        return tuple(self._trainer.edit_log) if self._trainer is not None else self._edit_log

    def learn(
        self,
        total_timesteps: int,
        callback: Any = None,
        log_interval: int = 100,
        tb_log_name: str = "ACKTR",
        reset_num_timesteps: bool = True,
        progress_bar: bool | None = None,
        edits: Iterable[Edit] = (),
    ) -> ACKTR:
        """Train for ``total_timesteps``: a loop over :meth:`trainer`, nothing else.

        ``callback`` is a Stable Baselines style ``callback(locals, globals) -> bool``, an
        object with ``on_update(report) -> bool`` (:mod:`acktr_lab.callbacks`;
        :class:`~acktr_lab.history.HistoryWriter` saves the run's history), or a list of
        them; any one returning ``False`` stops training.
        """
        check_learn_arguments(callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)
        trainer = self.trainer(total_timesteps, reset_num_timesteps=reset_num_timesteps, edits=edits)
        run_learn(
            trainer,
            callback=callback,
            log_interval=log_interval,
            verbose=self.verbose,
            progress_bar=progress_bar,
            tensorboard_log=self.tensorboard_log,
            tb_log_name=tb_log_name,
            full_tensorboard_log=self.full_tensorboard_log,
        )
        return self

    def pretrainer(
        self,
        dataset: ExpertDataset,
        n_epochs: int = 10,
        learning_rate: float = 1e-4,
        adam_epsilon: float = 1e-8,
        val_interval: int | None = None,
        sequence_length: int = 16,
    ) -> Iterator[PretrainReport]:
        """Behaviour cloning as an iterator of per-epoch reports (for dashboards).

        Recurrent policies are cloned over whole trajectories, unrolled in chunks of
        ``sequence_length`` steps (see :mod:`acktr_lab.pretrain`).
        """
        return behaviour_cloning(
            self.policy, dataset, n_epochs, learning_rate, adam_epsilon, val_interval, sequence_length
        )

    def pretrain(
        self,
        dataset: ExpertDataset,
        n_epochs: int = 10,
        learning_rate: float = 1e-4,
        adam_epsilon: float = 1e-8,
        val_interval: int | None = None,
        sequence_length: int = 16,
    ) -> ACKTR:
        """Pretrain the policy by behaviour cloning on ``dataset`` (Stable Baselines 2 API).

        Box actions: mean squared error of the deterministic action; other action spaces:
        negative log-likelihood of the expert's action. Recurrent policies learn over whole
        trajectories from the dataset's episode starts, unrolled ``sequence_length`` steps at
        a time. Returns the model, ready to ``learn``.
        """
        reports = self.pretrainer(dataset, n_epochs, learning_rate, adam_epsilon, val_interval, sequence_length)
        for report in reports:
            if self.verbose >= 1 and report.val_loss is not None:
                print(
                    f"==== Training progress {100 * report.epoch / report.n_epochs:.0f}% ====\n"
                    f"Epoch {report.epoch}\nTraining loss: {report.train_loss:.6f}, "
                    f"Validation loss: {report.val_loss:.6f}\n"
                )
        return self

    # -- Stable Baselines API -----------------------------------------------------------
    @property
    def env(self) -> gym.vector.VectorEnv | None:
        """The vector env being stepped (a restored snapshot's copy, after a restore)."""
        return self.collector.env if self.collector is not None else self._env

    def get_env(self) -> gym.vector.VectorEnv | None:
        return self.env

    def set_env(self, env: EnvLike) -> None:
        """Use ``env`` from now on; its spaces must equal the model's.

        A model made without spaces (Stable Baselines 2's ``ACKTR(policy, None,
        _init_setup_model=False)``) takes the env's, for :meth:`setup_model` to build on. The
        next run (:meth:`learn`, :meth:`trainer`) steps the new env; a run still in progress
        stops being the model's current run (as when a new run starts): its counters become
        the model's, and its trainer, if still stepped, keeps stepping the env it was made with.
        """
        vec_env = as_vector_env(env)
        if not hasattr(self, "observation_space"):
            self.observation_space = vec_env.single_observation_space
            self.action_space = vec_env.single_action_space
        for what, mine, theirs in (
            ("observation", self.observation_space, vec_env.single_observation_space),
            ("action", self.action_space, vec_env.single_action_space),
        ):
            if not spaces_equal(mine, theirs):
                raise ValueError(f"the env's {what} space {theirs} differs from the model's {mine}")
        self._check_rollout_memory(vec_env)
        self._detach_trainer()
        self._env = vec_env
        self.collector = self._collector(vec_env) if hasattr(self, "learner") else None

    @property
    def seed(self) -> int:
        """The seed of the run's randomness; setting it is :meth:`set_random_seed`."""
        return self._settings["seed"]

    @seed.setter
    def seed(self, seed: int | None) -> None:
        self.set_random_seed(seed)

    def set_random_seed(self, seed: int | None) -> None:
        """Reseed action sampling, the Fisher noise and the env (None: leave as is).

        ``seed`` is checked first (``ValueError`` naming it; nothing changes)."""
        if seed is None:
            return
        self._settings["seed"] = int(hp.validate("seed", seed))
        if not hasattr(self, "learner"):  # not built yet: the policy and learner will use it
            return
        self.learner.generator.reset_from_seed(self.seed)
        if self.collector is not None:
            env = self.collector.env
            env.action_space.seed(self.seed)
            self.collector = self._collector(env)

    def get_parameter_list(self) -> list[tf.Variable]:
        return self.policy.trainable

    def get_parameters(self) -> collections.OrderedDict[str, np.ndarray]:
        return collections.OrderedDict((k, v.numpy()) for k, v in self.policy.parameters.items())

    def load_parameters(
        self, load_path_or_dict: PathOrFile | Mapping[str, np.ndarray], exact_match: bool = True
    ) -> None:
        """Load policy parameters from a dict (name → array) or a model file (ours or SB2's).

        With ``exact_match`` every parameter must be present (``RuntimeError`` otherwise).
        Optimizer state is untouched, as in Stable Baselines.
        """
        if isinstance(load_path_or_dict, Mapping):
            self._assign_parameters(dict(load_path_or_dict), exact_match)
            return
        file = load_model(load_path_or_dict)
        try:
            values = file.parameters
            if file.positional:
                values = name_sb2_parameters(self.policy, list(values.values()))
            if file.source == "stable_baselines2":
                values = self.policy.parameters_from_sb2(values)
            self._assign_parameters(values, exact_match)
        except (ValueError, RuntimeError) as error:
            raise ModelFileError(f"{file.where}: its parameters do not fit this model: {error}") from error

    def _assign_parameters(self, values: dict[str, Any], exact_match: bool) -> None:
        """Check every value (names, shapes, dtype, finite after the cast), then assign them all."""
        params = self.policy.parameters
        missing = [k for k in params if k not in values]
        if exact_match and missing:
            raise RuntimeError(f"load dictionary did not contain all parameters; missing: {missing}")
        unknown = [k for k in values if k not in params]
        if unknown:
            raise ValueError(f"unknown parameter names {unknown}; this model has {list(params)}")
        converted = {}
        for name, value in values.items():
            variable = params[name]
            array = np.asarray(value)
            # Only size-1 axes may differ (Stable Baselines 2 stores some biases as [1, n, 1, 1]);
            # a same-size array of another layout (e.g. a transposed kernel) is an error.
            if _squeezed(array.shape) != _squeezed(tuple(variable.shape)):
                raise ValueError(f"parameter {name} has shape {array.shape}, the model expects {tuple(variable.shape)}")
            if array.dtype.kind not in "biuf":
                raise ValueError(f"parameter {name} must hold real numbers, got dtype {array.dtype}")
            with np.errstate(over="ignore", invalid="ignore"):  # overflow is checked next
                cast = array.reshape(variable.shape).astype(variable.dtype.as_numpy_dtype)
            if not np.all(np.isfinite(cast)):  # after the cast: finite float64 can overflow float32
                raise ValueError(
                    f"parameter {name} holds values that are not finite as {variable.dtype.name} "
                    "(NaN, ±inf, or beyond its range)"
                )
            converted[name] = cast
        for name, array in converted.items():
            params[name].assign(array)

    @property
    def initial_state(self) -> np.ndarray | tuple[np.ndarray, ...] | None:
        """The policy state before an episode, for the model's ``n_envs`` (Stable Baselines 2:
        ``None`` for feedforward policies)."""
        n_envs = self.env.num_envs if self.env is not None else 1
        return _public_state(self.learner.initial_state(n_envs))

    def predict(
        self, observation: Any, state: Any = None, mask: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, Any]:
        """``(action(s), next state)`` for one observation or a batch, as in Stable Baselines 2.

        ``state`` is the state :meth:`predict` returned last (``None``: the initial state);
        ``mask[i]`` true marks an observation that starts an episode (its state is reset).
        Feedforward policies return ``None`` as the state. Box actions are clipped to the bounds.
        """
        if not isinstance(deterministic, bool | np.bool_):
            raise ValueError(f"deterministic must be True or False, got {deterministic!r}")
        obs, vectorized = self._batched(observation)
        state_arrays, starts = self._state_inputs(state, mask, len(obs))
        actions, _, next_state = self.learner.act(obs, state_arrays, starts, bool(deterministic))
        actions = self.learner.to_env_actions(actions)
        return (actions if vectorized else actions[0]), _public_state(next_state)

    def action_probability(
        self, observation: Any, state: Any = None, mask: Any = None, actions: Any = None, logp: bool = False
    ) -> Any:
        """Stable Baselines semantics: the distribution's parameters, or (log) p(actions)."""
        obs, vectorized = self._batched(observation)
        state_arrays, starts = self._state_inputs(state, mask, len(obs))
        distribution = self.policy.step(
            tf.convert_to_tensor(obs), tuple(tf.convert_to_tensor(s) for s in state_arrays), tf.constant(starts)
        ).distribution
        if actions is None:
            probabilities = _to_numpy(distribution.probabilities())
            return probabilities if vectorized else _first(probabilities)
        _check_actions(actions, self.action_space)
        actions = self.policy.distribution_factory.from_env_actions(np.asarray(actions))
        action_shape = self.action_space.shape or ()
        if actions.shape == action_shape:
            actions = actions[None]
        actions = actions.reshape((-1, *action_shape))
        if actions.shape[0] != obs.shape[0]:
            raise ValueError(f"got {actions.shape[0]} actions for {obs.shape[0]} observations")
        log_prob = _log_prob(distribution, actions)
        result = (log_prob if logp else np.exp(log_prob)).reshape(-1, 1)
        return result if vectorized else result[0]

    def _state_inputs(self, state: Any, mask: Any, n_obs: int) -> tuple[StateArrays, np.ndarray]:
        """The policy state and episode starts for ``n_obs`` observations from SB2's ``state``/``mask``."""
        if mask is None:
            starts = np.zeros(n_obs, dtype=bool)
        else:
            values = np.asarray(mask)
            if values.dtype.kind not in "biuf" or np.any((values != 0) & (values != 1)):
                raise ValueError(f"mask must hold True/False (or 1/0) per observation, got {reprlib.repr(mask)}")
            starts = values.astype(bool).reshape(-1)
            if starts.shape != (n_obs,):
                raise ValueError(f"mask has {starts.size} entries for {n_obs} observation(s)")
        shapes = self.policy.state_shapes
        if state is None or not shapes:  # feedforward policies ignore any state, as in SB2
            return self.learner.initial_state(n_obs), starts
        parts = (state,) if len(shapes) == 1 else tuple(state)
        if len(parts) != len(shapes):
            raise ValueError(f"the policy's state has {len(shapes)} parts, got {len(parts)}")
        arrays = []
        for part, shape in zip(parts, shapes):
            array = np.asarray(part, dtype=self.policy.dtype.as_numpy_dtype)
            if array.shape != (n_obs, *shape):
                raise ValueError(
                    f"state of shape {array.shape} does not fit {n_obs} observation(s): expected {(n_obs, *shape)}"
                )
            if not np.isfinite(array).all():
                raise ValueError("state holds NaN or infinite values; pass the state predict returned, or None")
            arrays.append(array)
        return tuple(arrays), starts

    def _batched(self, observation: Any) -> tuple[np.ndarray, bool]:
        try:
            obs = np.asarray(observation)
        except ValueError as error:  # ragged, e.g. env.reset()'s (obs, info) pair
            raise ValueError(
                f"the observation is not an array ({error}); pass the observation alone, not env.reset()'s "
                "(obs, info) pair"
            ) from error
        shape = self.observation_space.shape or ()
        if obs.shape == shape:
            assert_valid_observation_input(obs, self.observation_space)
            return obs[None], False
        if obs.shape[1:] == shape:
            assert_valid_observation_input(obs, self.observation_space)
            return obs, True
        raise ValueError(
            f"observation shape {obs.shape} does not fit the observation space {self.observation_space} "
            f"(expected {shape} or (batch, *{shape}))"
        )

    # -- saving -----------------------------------------------------------------------
    def get_hyperparameters(self) -> dict[str, Any]:
        """Every hyperparameter's current value, by the names of their one definition
        (:data:`~acktr_lab.hyperparameters.HYPERPARAMETERS`; ``n_envs`` is the env's)."""
        values = {**self._live_values(), **self.kfac_kwargs}
        return {
            name: values[name] if name in values else getattr(self, name)
            for name in hp.HYPERPARAMETERS
            if name != "n_envs"
        }

    def save(self, save_path: PathOrFile, cloudpickle: bool = False) -> None:
        """Save to a zip of JSON and NumPy arrays (atomic; ``.zip`` appended if missing)."""
        if cloudpickle:
            raise ValueError("acktr_lab never writes pickles; save() always writes the safe zip format")
        hyper = self.get_hyperparameters()
        for name, value in hyper.items():  # what load() would refuse is not written
            hp.validate(name, value)
        callables = sorted(k for k, v in hyper.items() if callable(v))
        data = {
            "algorithm": "ACKTR",
            "policy": self.policy_class.__name__,
            "policy_kwargs": self.policy.constructor_kwargs(),
            "hyperparameters": {k: ({"callable": hp.describe(v)} if callable(v) else v) for k, v in hyper.items()},
            "callables": callables,
            "observation_space": space_to_json(self.observation_space),
            "action_space": space_to_json(self.action_space),
            "n_envs": self.env.num_envs if self.env is not None else 1,
            "num_timesteps": self.num_timesteps,
            "versions": _versions(),
            "env_id": self.env_id,
            "edit_log": [edit.to_dict() for edit in self.edit_log],
        }
        optimizer_state = {k: v.numpy() for k, v in self.optimizer.state_variables().items()}
        parameters = self.get_parameters()
        for kind, arrays in (("parameter", parameters), ("optimizer state", optimizer_state)):
            for name, array in arrays.items():
                if array.dtype.kind == "f" and not np.isfinite(array).all():
                    raise ValueError(
                        f"nothing was saved: the model's {kind} {name} holds NaN or infinite values, and a file "
                        "holding it would be refused on load"
                    )
        extra = {"generator_state": self.learner.generator.state.numpy()}
        for prefix, normalizer in (
            ("return_normalizer/", self.return_normalizer),
            ("observation_normalizer/", self.observation_normalizer),
        ):
            if normalizer is not None:
                state = normalizer.state()
                try:
                    normalizer.check_state(state)
                except ValueError as error:
                    raise ValueError(
                        f"nothing was saved: the model's {prefix[:-1].replace('_', ' ')} cannot be saved as it is, "
                        f"and a file holding it would be refused on load: {error}"
                    ) from error
                extra.update({prefix + k: v for k, v in state.items()})
        save_model(save_path, data, parameters, optimizer_state, extra)

    @classmethod
    def load(
        cls,
        load_path: PathOrFile,
        env: EnvLike | None = None,
        custom_objects: dict[str, Any] | None = None,
        *,
        vecnormalize: bool | str | os.PathLike[str] = True,
        **kwargs: Any,
    ) -> ACKTR:
        """Load a model saved by :meth:`save`, or a Stable Baselines 2 ACKTR ``.zip`` or ``.pkl``
        (told apart by their content, not their names).

        ``custom_objects`` replaces stored values (needed for callables, which are stored by
        name only); ``kwargs`` change hyperparameters of the loaded model.

        ``vecnormalize`` (Stable Baselines 2 files only): the ``VecNormalize`` statistics the
        agent was trained with become the policy's observation normalisation (and the
        return normalisation, for further training). ``True`` looks for them beside the file
        as the rl-baselines-zoo laid them out (:func:`acktr_lab.vecnormalize.find_vecnormalize`);
        a path names the folder or file; ``False`` ignores them. Every problem with
        the file's content raises :class:`~acktr_lab.serialization.ModelFileError` naming the
        file and the field (:mod:`acktr_lab.loading`); loading never runs code from the file
        and its work is bounded by what the file holds. Machine settings (``tensorboard_log``,
        ``full_tensorboard_log``, ``n_cpu_tf_sess``) are not taken from the file: pass them
        again to use them.
        """
        file = load_model(load_path)
        statistics = _vecnormalize_statistics(load_path, file, vecnormalize)
        model = load_into(cls, file, custom_objects, kwargs, statistics)
        if env is not None:
            model.set_env(env)
        return model


def _check_actions(actions: Any, space: gym.spaces.Space) -> None:
    """``ValueError`` for actions ``action_probability`` cannot score under ``space``: not real
    numbers, non-finite, or (Discrete, MultiDiscrete, MultiBinary) not whole numbers in range."""
    a = np.asarray(actions)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"actions must be real numbers for {space}, got dtype {a.dtype}")
    if not np.isfinite(a).all():
        raise ValueError(f"actions hold NaN or infinite values: {reprlib.repr(a.tolist())}")
    if isinstance(space, gym.spaces.Box):
        return
    if isinstance(space, gym.spaces.Discrete):
        low, high = int(space.start), int(space.start) + int(space.n)
    elif isinstance(space, gym.spaces.MultiDiscrete):
        low, high = space.start, space.start + space.nvec
    else:  # MultiBinary
        low, high = 0, 2
    if np.any(a != np.floor(a)) or np.any(a < low) or np.any(a >= high):
        raise ValueError(f"actions {reprlib.repr(a.tolist())} are not actions of {space}")


def _vecnormalize_statistics(
    load_path: PathOrFile, file: ModelFile, vecnormalize: bool | str | os.PathLike[str]
) -> VecNormalizeStatistics | None:
    """The SB2 ``VecNormalize`` statistics ``load`` applies: found beside the file, given, or none."""
    if vecnormalize is False:
        return None
    if file.source != "stable_baselines2":
        if vecnormalize is not True:
            raise ValueError(
                "vecnormalize applies to Stable Baselines 2 files; acktr_lab files keep their own statistics"
            )
        return None
    if vecnormalize is True:
        if hasattr(load_path, "read"):
            return None
        folder = find_vecnormalize(file.where)
        return load_vecnormalize(folder) if folder is not None else None
    if not isinstance(vecnormalize, str | os.PathLike):
        raise ValueError(f"vecnormalize must be True, False or a path, got {vecnormalize!r}")
    return load_vecnormalize(vecnormalize)


def _env_id(env: Any) -> str | None:
    """The gymnasium id of an env or of a vector env's first sub-env, where it has one."""
    for candidate in (env, getattr(env, "unwrapped", None), *(getattr(env, "envs", None) or [])[:1]):
        spec = getattr(candidate, "spec", None)
        if spec is not None and isinstance(getattr(spec, "id", None), str):
            return spec.id
    return None


def _configure_threads(n_threads: int | None) -> None:
    if not n_threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(n_threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(n_threads))
    except RuntimeError:
        pass  # TensorFlow already started: thread pools are fixed for this process


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {"tensorflow": tf.__version__, "gymnasium": gym.__version__, "numpy": np.__version__}
    try:
        out["acktr_lab"] = version("acktr_lab")
    except PackageNotFoundError:
        out["acktr_lab"] = "unknown"
    out["python"] = os.sys.version.split()[0]
    return out


def _public_state(state: StateArrays) -> np.ndarray | tuple[np.ndarray, ...] | None:
    """A policy state as Stable Baselines 2 hands it out: None (stateless), an array or a tuple."""
    if not state:
        return None
    return state[0] if len(state) == 1 else tuple(state)


def _to_numpy(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_to_numpy(v) for v in value)
    return value.numpy() if hasattr(value, "numpy") else np.asarray(value)


def _first(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return type(value)(_first(v) for v in value)
    return value[0]


def _log_prob(distribution: Distribution, actions: np.ndarray) -> np.ndarray:
    return distribution.log_prob(tf.convert_to_tensor(actions)).numpy().astype(np.float64)


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(d) for d in shape if d != 1)
