"""Stable Baselines3 A2C runs of the learning benchmark, with checkpoints that carry a run
across processes.

A2C at its zoo settings takes hours on some envs (LunarLanderContinuous-v3: ≈ 900 steps/s here
with three runs on two cores, ≈ 1.5 h for the zoo's 5M steps; ≈ 230 steps/s before its envs
stopped rendering, see :func:`make_sb3_a2c`), longer than a process may live. So a run writes a
checkpoint every ``budget / CHECKPOINTS`` steps, and ``bench --resume`` carries it on from
there instead of from step 0. A checkpoint is one zip file:

- ``state.json``: the run so far (timesteps trained, evaluation curve, seconds) and
  VecNormalize's running statistics (mean, variance and count of observations and returns);
- ``parameters.zip``: SB3's parameter archive (``save_to_zip_file`` of ``get_parameters``):
  the policy's and RMSprop's state dicts, ``policy.pth`` and ``policy.optimizer.pth``. They
  are read with ``torch.load(weights_only=True)``, so nothing in them is unpickled as code,
  after the sizes at every zip level are checked against :data:`MAX_CHECKPOINT_BYTES`; the
  loaded tensors must be finite and have the model's shapes, and RMSprop's settings must
  be the zoo's.

Carrying on calls ``learn(budget - t, reset_num_timesteps=False)`` on a model whose
``num_timesteps`` is ``t``, so SB3's progress ``1 - t / budget`` and with it the linear
learning rate continue where they stopped. The envs restart from fresh episodes, seeded from
(seed, t): a resumed run is reproducible from its checkpoint, but it is not bitwise the run
that was never stopped. SB3 and PyTorch are imported only when a run is trained; they are
never dependencies of acktr_lab (``pip install torch==2.13.0 stable-baselines3``).
"""

from __future__ import annotations

import io
import json
import math
import os
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from acktr_lab.benchmark_runs import ALGORITHMS, EVAL_SEED, EVALUATIONS, Run, eval_points
from acktr_lab.evaluation import evaluate
from acktr_lab.safe_archive import READ_ERRORS, BoundedArchive

#: rl-baselines3-zoo's tuned A2C settings for continuous control (``hyperparams/a2c.yml``).
_SB3_A2C_CONTINUOUS: dict[str, Any] = {
    "normalize": True,
    "ent_coef": 0.0,
    "max_grad_norm": 0.5,
    "n_steps": 8,
    "gae_lambda": 0.9,
    "vf_coef": 0.4,
    "gamma": 0.99,
    "use_rms_prop": True,
    "normalize_advantage": False,
    "learning_rate": "lin_7e-4",
    "use_sde": True,
    "policy_kwargs": {"log_std_init": -2, "ortho_init": False},
}

#: rl-baselines3-zoo ``hyperparams/a2c.yml`` (@02846e4), for today's ids. ``lin_x``: linear from x.
SB3_A2C_ZOO: dict[str, dict[str, Any]] = {
    "CartPole-v1": {"n_envs": 8, "ent_coef": 0.0},
    "Acrobot-v1": {"normalize": True, "n_envs": 16, "ent_coef": 0.0},
    "Pendulum-v1": {**_SB3_A2C_CONTINUOUS, "n_envs": 8},
    "LunarLander-v3": {"n_envs": 8, "gamma": 0.995, "n_steps": 5, "learning_rate": "lin_0.00083", "ent_coef": 1e-5},
    "LunarLanderContinuous-v3": {**_SB3_A2C_CONTINUOUS, "n_envs": 4},
}

#: Checkpoints per run: one every ``budget / CHECKPOINTS`` steps (100k steps, ≈ 6 min, on
#: LunarLanderContinuous-v3).
CHECKPOINTS = 50
CHECKPOINT_FORMAT = "acktr_lab-bench-checkpoint"
CHECKPOINT_VERSION = 1
#: The most bytes a checkpoint's members may decompress to (a zoo A2C's are ≈ 100 KB).
MAX_CHECKPOINT_BYTES = 64 << 20
_STATE = "state.json"
_PARAMETERS = "parameters.zip"
#: The state dicts in ``parameters.zip`` (SB3's ``_get_torch_save_params`` of A2C), and
#: the metadata SB3 writes beside them.
_STATE_DICTS = ("policy", "policy.optimizer")
_SB3_METADATA = ("_stable_baselines3_version", "system_info.txt")


class CheckpointError(ValueError):
    """A benchmark checkpoint that cannot be carried on: corrupt, foreign, or another run's."""


@dataclass(frozen=True)
class Normalizer:
    """VecNormalize's running statistics: observations' and discounted returns' mean,
    variance and count (Welford/Chan updates)."""

    obs_mean: np.ndarray
    obs_var: np.ndarray
    obs_count: float
    return_mean: float
    return_var: float
    return_count: float

    @classmethod
    def of(cls, venv: Any) -> Normalizer:
        """The statistics of a ``VecNormalize``."""
        obs, ret = venv.obs_rms, venv.ret_rms
        return cls(
            np.array(obs.mean, np.float64),
            np.array(obs.var, np.float64),
            float(obs.count),
            float(ret.mean),
            float(ret.var),
            float(ret.count),
        )

    def apply(self, venv: Any) -> None:
        """Set a ``VecNormalize``'s statistics to these."""
        venv.obs_rms.mean, venv.obs_rms.var, venv.obs_rms.count = (
            self.obs_mean.copy(),
            self.obs_var.copy(),
            self.obs_count,
        )
        venv.ret_rms.mean, venv.ret_rms.var, venv.ret_rms.count = self.return_mean, self.return_var, self.return_count

    def to_json(self) -> dict[str, Any]:
        # Python's float repr round-trips float64 exactly.
        return {
            "obs_mean": self.obs_mean.tolist(),
            "obs_var": self.obs_var.tolist(),
            "obs_count": self.obs_count,
            "return_mean": self.return_mean,
            "return_var": self.return_var,
            "return_count": self.return_count,
        }


@dataclass(frozen=True)
class Checkpoint:
    """A run stopped after ``timesteps`` steps: what it takes to carry it on."""

    env_id: str
    seed: int
    budget: int
    timesteps: int
    curve: list[tuple[int, float]]
    seconds: float
    normalizer: Normalizer | None
    #: SB3's ``save_to_zip_file`` of the model's ``get_parameters()``.
    parameters: bytes

    def state_json(self) -> str:
        return json.dumps(
            {
                "format": CHECKPOINT_FORMAT,
                "format_version": CHECKPOINT_VERSION,
                "algorithm": ALGORITHMS["a2c"],
                "env_id": self.env_id,
                "seed": self.seed,
                "budget": self.budget,
                "timesteps": self.timesteps,
                "curve": self.curve,
                "seconds": self.seconds,
                "normalizer": None if self.normalizer is None else self.normalizer.to_json(),
            }
        )


def checkpoint_path(out: Path, env_id: str, seed: int) -> Path:
    """Where the benchmark in ``out`` keeps the checkpoint of A2C's run of ``env_id``, ``seed``."""
    return out / "checkpoints" / f"a2c_{env_id.replace('/', '_')}_seed{seed}.zip"


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write ``checkpoint`` to ``path`` through a temporary file renamed over it: a save
    that is interrupted leaves the previous checkpoint whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(temporary, 0o644)  # as a file written with open() (mkstemp makes it private)
        with os.fdopen(descriptor, "wb") as file, zipfile.ZipFile(file, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_STATE, checkpoint.state_json())
            archive.writestr(_PARAMETERS, checkpoint.parameters)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


_ADVICE = "delete it to train the run from the start"


def _fail(path: Path, problem: str) -> CheckpointError:
    return CheckpointError(f"benchmark checkpoint {path}: {problem}; {_ADVICE}")


def _finite_number(value: Any, path: Path, what: str, low: float = -math.inf) -> float:
    try:  # float() of a JSON integer of hundreds of digits overflows
        number = float(value) if isinstance(value, int | float) and not isinstance(value, bool) else math.nan
    except OverflowError:
        number = math.nan
    if not math.isfinite(number) or number < low:
        raise _fail(path, f"{what} is {str(value)[:40]}, not a finite number ≥ {low}")
    return number


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def load_checkpoint(path: Path, env_id: str, seed: int, budget: int, obs_shape: tuple[int, ...] | None) -> Checkpoint:
    """The checkpoint at ``path``, checked to belong to A2C's run of ``env_id``, ``seed`` and
    ``budget`` (observations of ``obs_shape`` where the run normalises them, else None).

    Raises :class:`CheckpointError` naming the problem for anything else: not a zip, members
    missing or too big, a state that is not such JSON, another run's, non-finite or
    impossible values.
    """
    archive, members = BoundedArchive.open(
        str(path), f"benchmark checkpoint {path}", MAX_CHECKPOINT_BYTES, CheckpointError, *[_ADVICE] * 2
    )
    with archive:
        if sorted(members.names()) != sorted([_STATE, _PARAMETERS]):
            raise _fail(path, f"holds {sorted(members.names())}, not {sorted([_STATE, _PARAMETERS])}")
        try:
            state = json.loads(members.read_bytes(_STATE))
        except CheckpointError:
            raise
        except READ_ERRORS as error:
            raise _fail(path, f"{_STATE} is not JSON ({error})") from None
        parameters = members.read_bytes(_PARAMETERS)
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise _fail(path, f"{_STATE} is not a {CHECKPOINT_FORMAT}")
    if state.get("format_version") != CHECKPOINT_VERSION:
        raise _fail(path, f"format version {state.get('format_version')!r}, this code reads {CHECKPOINT_VERSION}")
    run = (state.get("algorithm"), state.get("env_id"), state.get("seed"), state.get("budget"))
    if run != (ALGORITHMS["a2c"], env_id, seed, budget) or not (_integer(run[2]) and _integer(run[3])):
        raise _fail(path, f"it is the run {run}, not {(ALGORITHMS['a2c'], env_id, seed, budget)}")
    timesteps = state.get("timesteps")
    if not _integer(timesteps) or not 0 < timesteps < budget:
        raise _fail(path, f"timesteps {timesteps!r} is not in 1 .. {budget - 1:,}")
    curve = state.get("curve")
    if not isinstance(curve, list) or not all(isinstance(point, list) and len(point) == 2 for point in curve):
        raise _fail(path, "the curve is not a list of [timesteps, score] pairs")
    if len(curve) > EVALUATIONS:
        raise _fail(path, f"the curve has {len(curve)} points, more than a run's {EVALUATIONS}")
    previous = 0
    for t, score in curve:
        if not _integer(t) or not previous < t <= timesteps:
            raise _fail(path, f"a curve point at {str(t)[:40]} steps, not in {previous + 1:,} .. {timesteps:,}")
        _finite_number(score, path, f"the curve's score at {t} steps")
        previous = t
    seconds = _finite_number(state.get("seconds"), path, "seconds", 0.0)
    normalizer = _normalizer(state.get("normalizer"), path, obs_shape)
    return Checkpoint(
        env_id, seed, budget, timesteps, [(t, float(s)) for t, s in curve], seconds, normalizer, parameters
    )


def _normalizer(fields: Any, path: Path, obs_shape: tuple[int, ...] | None) -> Normalizer | None:
    if obs_shape is None or fields is None:
        if (obs_shape is None) != (fields is None):
            problem = "for a run that does not normalise" if obs_shape is None else "missing for a run that normalises"
            raise _fail(path, f"normalisation statistics {problem}")
        return None
    if not isinstance(fields, dict):
        raise _fail(path, "the normalisation statistics are not a JSON object")
    arrays = {}
    for name in ("obs_mean", "obs_var"):
        values = fields.get(name)
        if not isinstance(values, list) or len(values) != math.prod(obs_shape):
            raise _fail(path, f"{name} is not a list of {math.prod(obs_shape)} numbers")
        low = 0.0 if name == "obs_var" else -math.inf
        arrays[name] = np.array([_finite_number(v, path, name, low) for v in values], np.float64).reshape(obs_shape)
    return Normalizer(
        arrays["obs_mean"],
        arrays["obs_var"],
        _finite_number(fields.get("obs_count"), path, "obs_count", 0.0),
        _finite_number(fields.get("return_mean"), path, "return_mean"),
        _finite_number(fields.get("return_var"), path, "return_var", 0.0),
        _finite_number(fields.get("return_count"), path, "return_count", 0.0),
    )


def make_sb3_a2c(env_id: str, seed: int) -> tuple[Any, Any, bool]:  # pragma: no cover - needs torch and SB3
    """SB3 A2C with its zoo settings for ``env_id``: ``(model, venv, normalize)``.

    PyTorch runs on one thread: the networks are tiny, and with a second intra-op thread
    waiting for a core that another run keeps busy, A2C's LunarLanderContinuous-v3 run
    ran at ≈ 43 steps/s here, against ≈ 260 on one thread. The thread count is set before
    the model is built because it can change the run: Acrobot-v1 seed 0 ends at
    −77.35 built on one thread and −79.95 on PyTorch's default (two threads on this project's
    2-core machine; 2026-12-02).
    """
    import torch
    from stable_baselines3 import A2C
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    settings = dict(SB3_A2C_ZOO[env_id])
    normalize = settings.pop("normalize", False)
    n_envs = settings.pop("n_envs")
    if isinstance(settings.get("learning_rate"), str):
        initial = float(settings["learning_rate"].removeprefix("lin_"))
        settings["learning_rate"] = lambda remaining: remaining * initial
    torch.set_num_threads(1)
    # SB3's make_vec_env makes its envs with render_mode="rgb_array" unless told otherwise.
    # Nothing renders them here, and gymnasium's LunarLander then adds a Box2D body per
    # engine puff that only render() ever removes: ≈ 1,400 in an episode of a hovering
    # policy, ≈ 4x slower steps. The trajectories are bitwise the same without them.
    venv = make_vec_env(env_id, n_envs=n_envs, seed=seed, env_kwargs={"render_mode": None})
    if normalize:
        venv = VecNormalize(venv, gamma=settings.get("gamma", 0.99))
    return A2C("MlpPolicy", venv, seed=seed, device="cpu", **settings), venv, normalize


def checkpoint_of(model: Any, venv: Any, run: Run, seconds: float, normalize: bool) -> Checkpoint:  # pragma: no cover
    """The state of an SB3 A2C run between two rollouts (after an update, before collecting)."""
    from stable_baselines3.common.save_util import save_to_zip_file

    buffer = io.BytesIO()
    save_to_zip_file(buffer, params=model.get_parameters())
    normalizer = Normalizer.of(venv) if normalize else None
    return Checkpoint(
        run.env_id,
        run.seed,
        run.budget,
        int(model.num_timesteps),
        list(run.curve),
        seconds,
        normalizer,
        buffer.getvalue(),
    )


def state_dicts(parameters: bytes, path: Path) -> dict[str, Any]:
    """The state dicts in a checkpoint's ``parameters.zip``, by name: the sizes of both zip
    levels (SB3's archive, then each ``torch.save`` file, itself a zip) are checked against
    :data:`MAX_CHECKPOINT_BYTES` before anything is decompressed, then each is read with
    ``torch.load(weights_only=True)``. :class:`CheckpointError` for anything else."""
    where, advice = f"benchmark checkpoint {path}: {_PARAMETERS}", _ADVICE
    archive, members = BoundedArchive.open(parameters, where, MAX_CHECKPOINT_BYTES, CheckpointError, advice, advice)
    with archive:
        expected = sorted([*(f"{name}.pth" for name in _STATE_DICTS), *_SB3_METADATA])
        if sorted(members.names()) != expected:
            raise _fail(path, f"{_PARAMETERS} holds {sorted(members.names())}, not {expected}")
        files = {name: members.read_bytes(f"{name}.pth") for name in _STATE_DICTS}
    for name, data in files.items():
        inner, _ = BoundedArchive.open(
            data, f"{where}: {name}.pth", MAX_CHECKPOINT_BYTES, CheckpointError, advice, advice
        )
        inner.close()
    import torch

    loaded = {}
    for name, data in files.items():
        try:
            loaded[name] = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as error:  # torch raises UnpicklingError, RuntimeError, ...
            raise _fail(path, f"{name}.pth does not load ({type(error).__name__}: {str(error)[:200]})") from None
    return loaded


def check_state_dicts(model: Any, loaded: dict[str, Any], path: Path) -> None:  # pragma: no cover - needs SB3
    """:class:`CheckpointError` unless ``loaded`` fits ``model`` (a fresh zoo A2C): the
    policy's tensors with its names, shapes and dtypes, all finite; RMSprop's settings
    (all but the learning rate, which the schedule sets) the zoo's; its state per parameter
    finite and of the parameter's shape."""
    import torch

    def tensor_like(value: Any, shape: torch.Size | tuple[int, ...], what: str) -> None:
        if not isinstance(value, torch.Tensor) or value.shape != shape or value.dtype != torch.float32:
            described = (
                f"{value.dtype} {tuple(value.shape)}" if isinstance(value, torch.Tensor) else type(value).__name__
            )
            raise _fail(path, f"{what} is {described}, not float32 {tuple(shape)}")
        if not torch.isfinite(value).all():
            raise _fail(path, f"{what} holds non-finite values")

    policy, saved_policy = model.policy.state_dict(), loaded["policy"]
    if not isinstance(saved_policy, dict) or set(saved_policy) != set(policy):
        raise _fail(path, "the policy's state dict does not name the zoo A2C policy's tensors")
    for name, tensor in policy.items():
        tensor_like(saved_policy[name], tensor.shape, f"the policy's {name}")
    fresh, saved = model.policy.optimizer.state_dict(), loaded["policy.optimizer"]
    if not isinstance(saved, dict) or set(saved) != {"state", "param_groups"}:
        raise _fail(path, "the optimizer's state dict is not RMSprop's")
    groups = saved["param_groups"]
    if not isinstance(groups, list) or len(groups) != len(fresh["param_groups"]):
        raise _fail(path, "the optimizer's parameter groups are not the zoo A2C's")
    shapes: dict[int, torch.Size] = {}
    for group, fresh_group, live in zip(groups, fresh["param_groups"], model.policy.optimizer.param_groups):
        if not isinstance(group, dict) or set(group) != set(fresh_group):
            raise _fail(path, "the optimizer's parameter groups are not the zoo A2C's")
        changed = sorted(key for key in group if key != "lr" and group[key] != fresh_group[key])
        if changed:
            raise _fail(path, f"RMSprop's {changed} are not the zoo's")
        _finite_number(group["lr"], path, "RMSprop's learning rate", 0.0)
        shapes.update({index: parameter.shape for index, parameter in zip(fresh_group["params"], live["params"])})
    state = saved["state"]
    if not isinstance(state, dict) or not set(state) <= set(shapes):
        raise _fail(path, "the optimizer's state is not per parameter of the policy")
    for index, entry in state.items():
        if not isinstance(entry, dict) or set(entry) != {"step", "square_avg"}:
            raise _fail(path, f"RMSprop's state of parameter {index} is not its step and square_avg")
        tensor_like(entry["step"], (), f"RMSprop's step of parameter {index}")
        tensor_like(entry["square_avg"], shapes[index], f"RMSprop's square_avg of parameter {index}")


def resume_sb3_a2c(checkpoint: Checkpoint, path: Path) -> tuple[Any, Any, bool]:  # pragma: no cover - needs SB3
    """A model and venv in the state ``checkpoint`` holds, with envs and random generators
    seeded from (seed, timesteps): ``(model, venv, normalize)``."""
    resumed_seed = int(np.random.SeedSequence([checkpoint.seed, checkpoint.timesteps]).generate_state(1)[0] >> 1)
    model, venv, normalize = make_sb3_a2c(checkpoint.env_id, resumed_seed)
    loaded = state_dicts(checkpoint.parameters, path)
    check_state_dicts(model, loaded, path)
    try:
        model.set_parameters(loaded, exact_match=True, device="cpu")
    except Exception as error:  # what the checks above did not foresee: SB3 and torch raise many types
        raise _fail(path, f"its parameters do not load into the zoo's A2C ({type(error).__name__}: {error})") from None
    if checkpoint.normalizer is not None:
        checkpoint.normalizer.apply(venv)
    model.num_timesteps = checkpoint.timesteps
    return model, venv, normalize


def run_sb3_a2c(
    env_id: str, seed: int, budget: int, checkpoint: Path | None = None, resume: bool = False
) -> Run:  # pragma: no cover - needs torch and SB3
    """Train SB3 A2C with its zoo settings, evaluating as :func:`acktr_lab.benchmark.run_acktr`.

    With ``checkpoint``, the run is saved there every ``budget / CHECKPOINTS`` steps; the
    caller removes the file once the finished run is recorded. With ``resume`` too, a
    checkpoint found there is carried on (see the module docstring); without, it is deleted
    and the run starts from step 0.
    """
    from stable_baselines3.common.callbacks import BaseCallback

    run = Run(ALGORITHMS["a2c"], env_id, seed, budget)
    earlier = 0.0
    if checkpoint is not None and not resume:
        checkpoint.unlink(missing_ok=True)  # another benchmark's: this one starts afresh
    if checkpoint is not None and resume and checkpoint.exists():
        obs_shape = None
        if SB3_A2C_ZOO[env_id].get("normalize"):
            with gym.make(env_id) as env:  # only its observation space: closed at once
                obs_shape = env.observation_space.shape
        saved = load_checkpoint(checkpoint, env_id, seed, budget, obs_shape)
        model, venv, normalize = resume_sb3_a2c(saved, checkpoint)
        run.curve, earlier = list(saved.curve), saved.seconds
    else:
        model, venv, normalize = make_sb3_a2c(env_id, seed)
    started = time.perf_counter()

    class Predictor:  # what evaluate() calls: raw observations in, normalised where trained so
        def predict(self, obs: Any, state: Any = None, mask: Any = None, deterministic: bool = True) -> Any:
            if normalize:
                obs = venv.normalize_obs(obs)
            return model.predict(obs, deterministic=deterministic)

    points = [point for point in eval_points(budget) if point > model.num_timesteps]
    every = max(1, budget // CHECKPOINTS)
    next_checkpoint = (model.num_timesteps // every + 1) * every

    class Evaluations(BaseCallback):
        def _on_step(self) -> bool:
            while points and self.num_timesteps >= points[0]:
                points.pop(0)
                score = float(np.mean(evaluate(Predictor(), gym.make(env_id), 10, EVAL_SEED)))
                run.curve.append((self.num_timesteps, score))
            return True

        def _on_rollout_start(self) -> None:  # after an update: nothing collected is lost
            nonlocal next_checkpoint
            if checkpoint is not None and next_checkpoint <= self.num_timesteps < budget:
                seconds = earlier + time.perf_counter() - started
                save_checkpoint(checkpoint, checkpoint_of(model, venv, run, seconds, normalize))
                next_checkpoint = (self.num_timesteps // every + 1) * every

    model.learn(budget - model.num_timesteps, callback=Evaluations(), reset_num_timesteps=model.num_timesteps == 0)
    run.final = evaluate(Predictor(), gym.make(env_id), 20, EVAL_SEED)
    run.stamp(started)
    run.seconds += earlier
    return run
