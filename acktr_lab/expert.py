"""Expert demonstrations in the Stable Baselines 2 format: recording and loading.

A dataset is a dict of arrays, saved as an ``.npz`` archive, whose first axis is the
transition index t = 0..N-1 (episodes concatenated in order):

===================  ==================  ===============================================
key                  shape               meaning
===================  ==================  ===============================================
``obs``              ``(N, *obs_shape)``  s_t, the observation *before* the action
                     or ``(N,)`` str     (image observations: relative paths of PNGs)
``actions``          ``(N, act_dim)``    a_t; ``(N, 1)`` for ``Discrete``
``rewards``          ``(N,)``            r_t
``episode_starts``   ``(N,)`` bool       True iff t is the first step of an episode
``episode_returns``  ``(E,)``            R_e = Σ_{t ∈ episode e} r_t, one per episode
===================  ==================  ===============================================

These are the keys, shapes and meanings of Stable Baselines 2's
``generate_expert_traj`` / ``ExpertDataset`` (``stable_baselines.gail``), so files saved
by it load here unchanged, and files saved here load there.

Deliberate differences from Stable Baselines 2 (each documented where it happens):

* the train/validation split is **by trajectory**, not by transition, so that no
  episode leaks into both sets (SB2 permutes transitions);
* ``traj_limitation=k`` keeps exactly the first k episodes (SB2 drops the last
  transition of the k-th one and slices ``episode_returns`` by transition count);
* observations keep their shape (SB2 flattens arrays of rank > 2), because our policies
  take raw observations and preprocess them themselves;
* files are never unpickled: archives holding pickled object arrays are refused with an
  :class:`ExpertDataError` (a ``ValueError``), as is everything else wrong with a file or
  its arrays (corrupt or truncated archives and members, wrong dtypes, shapes or lengths,
  NaN, ±inf or values that overflow float32), the message naming the file and the array;
* the work of reading a file is bounded: members are decompressed in chunks only after
  their declared sizes and ``.npy`` headers are checked against ``max_bytes`` (default
  :data:`MAX_EXPERT_BYTES`, 1 GiB), so a small "zip bomb" cannot exhaust memory;
* images are written as lossless PNG (SB2 writes JPEG unless frames are stacked by 4);
* batches are produced in the calling thread (no preprocessing process), with a seeded
  ``numpy.random.Generator``; ``sequential_preprocessing`` is accepted and ignored;
* an env passed in (or the model's) is not closed afterwards; only an env created here
  from an id string is.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from acktr_lab.safe_archive import BoundedArchive, check_code_points, float32_overflow

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

PathLike = str | os.PathLike[str]

#: Keys every dataset must have.
REQUIRED_KEYS: tuple[str, ...] = ("obs", "actions", "episode_starts")
#: Keys Stable Baselines 2 writes in addition; used for the report when present.
OPTIONAL_KEYS: tuple[str, ...] = ("rewards", "episode_returns")


# ---------------------------------------------------------------------------------------
# images
# ---------------------------------------------------------------------------------------
def _is_recordable_image_space(space: gym.Space) -> bool:
    """SB2's rule: ``Box`` of ``uint8`` shaped ``(H, W, C)`` with ``C ∈ {1, 3, 4}``."""
    return (
        isinstance(space, gym.spaces.Box)
        and len(space.shape) == 3
        and space.shape[-1] in (1, 3, 4)
        and space.dtype == np.uint8
    )


def _save_image(path: str, image: np.ndarray) -> None:
    """Write an ``(H, W, C)`` ``uint8`` image losslessly as PNG (grey, RGB or RGBA)."""
    from PIL import Image

    array = np.ascontiguousarray(image, dtype=np.uint8)
    if array.shape[-1] == 1:
        Image.fromarray(array[:, :, 0], mode="L").save(path, format="PNG")
    else:
        Image.fromarray(array, mode="RGB" if array.shape[-1] == 3 else "RGBA").save(path, format="PNG")


def load_image(path: str) -> np.ndarray:
    """Read an image file as an ``(H, W, C)`` ``uint8`` array (grey images get ``C = 1``).

    Raises ``ExpertDataError`` (a ``ValueError``) naming the path for a missing,
    unreadable or oversized (decompression bomb) image, or a path with a NUL character.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "RGB", "RGBA"):
                converted = image.convert("RGBA" if "A" in image.getbands() else "RGB")
                array = np.asarray(converted, dtype=np.uint8)
            else:
                array = np.asarray(image, dtype=np.uint8)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError) as error:
        raise ExpertDataError(f"could not read the expert image {path!r}: {error}") from error
    if array.ndim == 2:
        array = array[:, :, np.newaxis]
    return array


# ---------------------------------------------------------------------------------------
# recording
# ---------------------------------------------------------------------------------------
def _npz_path(save_path: PathLike) -> str:
    """The file ``np.savez`` writes for ``save_path`` (it appends ``.npz`` when missing)."""
    path = os.fspath(save_path)
    return path if path.endswith(".npz") else path + ".npz"


def save_expert_data(save_path: PathLike, data: Mapping[str, np.ndarray]) -> str:
    """``np.savez(save_path, **data)`` written atomically; returns the ``.npz`` path.

    The archive is written to a temporary file in the target directory and moved into
    place with ``os.replace``, so a reader never sees a half-written file.
    """
    final = _npz_path(save_path)
    directory = os.path.dirname(os.path.abspath(final))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".expert-", suffix=".npz.tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as handle:
            np.savez(handle, **{k: np.asarray(v) for k, v in data.items()})
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return final


def _resolve_env(model: Any, env: gym.Env | gym.vector.VectorEnv | str | None) -> tuple[Any, bool]:
    """``(env, created_here)``; an id string is made with ``gymnasium.make``."""
    if isinstance(env, str):
        return gym.make(env), True
    if env is None and hasattr(model, "get_env"):
        env = model.get_env()
    if env is None:
        raise ValueError("no env to record from: pass env=(a gymnasium Env or an env id), or give the model an env")
    return env, False


def _check_recordable_space(space: gym.Space, what: str) -> None:
    supported = (gym.spaces.Box, gym.spaces.Discrete, gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)
    if not isinstance(space, supported):
        raise ValueError(f"cannot record {what} space {space}; supported: Box, Discrete, MultiDiscrete, MultiBinary")


def _recordable_spaces(env: Any) -> tuple[bool, gym.Space, gym.Space]:
    """``(is_vector_env, observation_space, action_space)`` of one env; ``ValueError`` for
    vector envs with more than one env and for unsupported spaces."""
    is_vec_env = isinstance(env, gym.vector.VectorEnv) or hasattr(env, "num_envs")
    if is_vec_env:
        if int(env.num_envs) != 1:
            raise ValueError(
                f"generate_expert_traj records from a single environment, but the vector env has "
                f"{env.num_envs} envs; pass env=<one gymnasium Env> or a vector env with num_envs=1"
            )
        obs_space = getattr(env, "single_observation_space", env.observation_space)
        action_space = getattr(env, "single_action_space", env.action_space)
    else:
        obs_space, action_space = env.observation_space, env.action_space
    _check_recordable_space(obs_space, "observation")
    _check_recordable_space(action_space, "action")
    return is_vec_env, obs_space, action_space


def _env_action(action: Any, space: gym.Space) -> Any:
    """An action as ``env.step`` of a single env expects it."""
    array = np.asarray(action)
    if isinstance(space, gym.spaces.Discrete):
        if array.size != 1:
            raise ValueError(f"the expert returned an action of shape {array.shape} for {space}")
        return int(array.reshape(-1)[0])
    return array.reshape(space.shape).astype(space.dtype, copy=False)


def generate_expert_traj(
    model: Any,
    save_path: PathLike | None = None,
    env: gym.Env | gym.vector.VectorEnv | str | None = None,
    n_timesteps: int = 0,
    n_episodes: int = 100,
    image_folder: str = "recorded_images",
    seed: int | None = None,
    *,
    deterministic: bool = False,
    progress_bar: bool = False,
    verbose: int = 1,
) -> dict[str, np.ndarray]:
    """Train the expert (if asked) and record ``n_episodes`` episodes of it.

    Args:
        model: an RL model (anything with ``predict(obs, deterministic=...) -> (action,
            state)``; if ``n_timesteps > 0`` and it has ``learn``, ``model.learn(n_timesteps)``
            runs first) or any callable ``obs -> action`` (a hand-written controller).
        save_path: where to save (``'expert_cartpole'`` → ``expert_cartpole.npz``); nothing
            is saved when ``None``. Needed to record image observations as files.
        env: a gymnasium ``Env``, a vector env with ``num_envs == 1`` or an env id; ``None``
            uses ``model.get_env()``.
        n_timesteps: training steps before recording (models only).
        n_episodes: episodes to record; an episode ends on ``terminated or truncated``.
        image_folder: for image observations (``Box`` ``uint8`` ``(H, W, C)``, ``C ∈ {1,3,4}``),
            the folder, relative to ``save_path``'s directory, for the PNG files; ``obs`` then
            holds their paths (``<dirname(save_path)>/<image_folder>/<t>.png``, as SB2).
        seed: seed of the first ``env.reset``.
        deterministic: passed to ``model.predict`` (SB2 records with its default, ``False``).
        progress_bar: show a tqdm bar over episodes.
        verbose: 1 prints the shapes of the recorded arrays, as SB2 does.

    Returns:
        ``{'actions', 'obs', 'rewards', 'episode_returns', 'episode_starts'}`` where
        ``episode_starts[t]`` is True iff step t opens an episode and
        ``episode_returns[e] = Σ_t r_t`` over episode e.
    """
    if int(n_episodes) < 1:
        raise ValueError(f"n_episodes must be at least 1, got {n_episodes}")
    is_model = hasattr(model, "predict")
    if not is_model and not callable(model):
        raise TypeError(f"model must have a predict() method or be a callable obs -> action, got {model!r}")

    env, created_here = _resolve_env(model, env)
    try:
        is_vec_env, obs_space, action_space = _recordable_spaces(env)
    except BaseException:
        if created_here:
            env.close()
        raise

    record_images = _is_recordable_image_space(obs_space)
    if record_images and save_path is None:
        warnings.warn(
            "Observations are images but no save_path was given, so they are kept in the arrays; "
            "this can use a lot of memory.",
            stacklevel=2,
        )
        record_images = False
    image_dir = ""
    if record_images:
        assert save_path is not None
        image_dir = os.path.join(os.path.dirname(os.fspath(save_path)), image_folder)
        os.makedirs(image_dir or ".", exist_ok=True)
        if verbose >= 1:
            print(f"Images will be recorded to {image_dir}/ (image shape {obs_space.shape})")

    if n_timesteps > 0 and is_model and hasattr(model, "learn"):
        model.learn(int(n_timesteps))

    observations: list[Any] = []
    actions: list[np.ndarray] = []
    rewards: list[float] = []
    episode_starts: list[bool] = []
    episode_returns = np.zeros((int(n_episodes),))

    progress = None
    if progress_bar:
        from tqdm.auto import tqdm

        progress = tqdm(total=int(n_episodes), desc="recording", unit="episode")

    try:
        obs, _ = env.reset(seed=seed)
        for episode in range(int(n_episodes)):
            if episode > 0:
                # Explicit reset for every autoreset mode of vector envs, too.
                obs, _ = env.reset()
            state = None
            reward_sum = 0.0
            start = True
            while True:
                single_obs = np.asarray(obs[0] if is_vec_env else obs)
                if record_images:
                    image_path = os.path.join(image_dir, f"{len(observations)}.png")
                    _save_image(image_path, single_obs)
                    observations.append(image_path)
                else:
                    observations.append(single_obs.copy())

                if is_model:
                    kwargs: dict[str, Any] = {"deterministic": deterministic}
                    if state is not None:  # recurrent models only
                        kwargs["state"] = state
                    action, state = model.predict(obs, **kwargs)
                else:
                    action = model(obs)
                single_action = np.asarray(action)
                if is_vec_env:
                    single_action = single_action.reshape((1, -1))[0] if single_action.ndim > 0 else single_action
                    step_action = np.asarray(_env_action(single_action, action_space))[None]
                else:
                    step_action = _env_action(single_action, action_space)
                obs, reward, terminated, truncated, _ = env.step(step_action)
                if is_vec_env:
                    reward, terminated, truncated = reward[0], terminated[0], truncated[0]

                actions.append(np.asarray(_env_action(single_action, action_space)).reshape(-1))
                rewards.append(float(reward))
                episode_starts.append(start)
                start = False
                reward_sum += float(reward)
                if terminated or truncated:
                    break
            episode_returns[episode] = reward_sum
            if progress is not None:
                progress.update(1)
    finally:
        if progress is not None:
            progress.close()
        if created_here:
            env.close()
        elif env is getattr(model, "env", None) and hasattr(model, "set_env"):
            # Recording reset the model's own env: let the model start its next rollout afresh.
            model.set_env(env)

    if record_images:
        obs_array = np.array(observations)
    elif isinstance(obs_space, gym.spaces.Discrete):
        obs_array = np.array(observations).reshape((-1, 1))
    else:
        obs_array = np.stack(observations).reshape((-1, *obs_space.shape))

    if isinstance(action_space, gym.spaces.Discrete):
        actions_array = np.array(actions, dtype=np.int64).reshape((-1, 1))
    else:
        actions_array = np.stack(actions).reshape((-1, *action_space.shape))

    data = {
        "actions": actions_array,
        "obs": obs_array,
        "rewards": np.array(rewards),
        "episode_returns": episode_returns,
        "episode_starts": np.array(episode_starts, dtype=bool),
    }
    if verbose >= 1:
        for key, value in data.items():
            print(key, value.shape)
    if save_path is not None:
        save_expert_data(save_path, data)
    return data


# ---------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------
#: Default cap, in bytes, on what one expert archive may decompress to: the sum of the
#: declared (uncompressed) sizes of its ``.npy`` members, headers included, and so also on
#: any single array. Archives over it are refused before any array is read or allocated,
#: so a small hostile file (a "zip bomb") cannot exhaust memory. 1 GiB holds about 30
#: million CartPole transitions (float32 observations, int64 actions, float64 rewards,
#: bool starts: 33 bytes each). Pass ``max_bytes`` to :func:`load_expert_data` or
#: :class:`ExpertDataset` to read a bigger archive.
MAX_EXPERT_BYTES: int = 1 << 30

_HINT = "expected an .npz archive written by generate_expert_traj or Stable Baselines 2"


class ExpertDataError(ValueError):
    """Expert data that cannot be used, with a message naming the file (or ``traj_data``)
    and the array at fault: a missing, corrupt, truncated, oversized or foreign file, or
    arrays with missing keys or wrong dtypes, shapes, lengths or values. A ``ValueError``."""


def _resolve_expert_path(expert_path: PathLike) -> str:
    """``expert_path``, or ``expert_path + '.npz'`` when only that exists (as SB2)."""
    path = os.fspath(expert_path)
    if not os.path.exists(path) and os.path.exists(path + ".npz"):
        path += ".npz"
    return path


def _byte_cap(max_bytes: int | None) -> int:
    """``max_bytes`` checked, or :data:`MAX_EXPERT_BYTES` (read at call time) when ``None``."""
    if max_bytes is None:
        return int(MAX_EXPERT_BYTES)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive integer (bytes), got {max_bytes!r}")
    return int(max_bytes)


def load_expert_data(expert_path: PathLike, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Every array (``.npy`` member) of an ``.npz`` archive, read eagerly, never unpickled.

    The work is bounded by ``max_bytes`` (default :data:`MAX_EXPERT_BYTES`): the members'
    declared sizes, and each member's ``.npy`` header (shape × itemsize), are checked
    against it before anything is decompressed or allocated, and each member is read in
    bounded chunks up to its declared size only. Members that are not ``.npy`` arrays are
    skipped (``np.savez`` writes none).

    Raises:
        ExpertDataError: the file is missing, empty, truncated, corrupt, not an ``.npz``
            archive, bigger than ``max_bytes`` once decompressed, or holds pickled
            (object), structured or otherwise unsupported arrays; the message names the
            file and the member.
        ValueError: ``max_bytes`` is not a positive integer.
    """
    cap = _byte_cap(max_bytes)
    path = _resolve_expert_path(expert_path)
    where = f"expert dataset {path!r}"
    if not os.path.isfile(path):
        raise ExpertDataError(f"{where} does not exist")
    try:
        if os.path.getsize(path) == 0:
            raise ExpertDataError(f"{where} is an empty file (0 bytes); expected an .npz archive")
        with open(path, "rb") as handle:
            magic = handle.read(6)
    except OSError as error:
        raise ExpertDataError(f"could not read {where}: {error}") from error
    if magic.startswith(b"\x93NUMPY"):
        raise ExpertDataError(f"{where} is a single .npy array, not an .npz archive; {_HINT}")
    if not magic.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        # Neither a zip archive nor a .npy file: numpy would unpickle it, which we never do.
        raise ExpertDataError(f"{where} is not an .npz archive (unknown or pickled content); {_HINT}")
    advice = "if the file is trusted, pass a larger max_bytes (default acktr_lab.expert.MAX_EXPERT_BYTES)"
    archive, bounded = BoundedArchive.open(path, where, cap, ExpertDataError, _HINT, advice)
    with archive:
        return bounded.read_arrays()


def _check_float32_range(array: np.ndarray, key: str, source: str) -> None:
    """``ExpertDataError`` if a float array holds NaN, ±inf, or values that overflow to ±inf
    when cast to float32 (the network's dtype): checked on the array as stored."""
    problem = float32_overflow(array)
    if problem is not None:
        raise ExpertDataError(f"{source}: {key!r} {problem}")


def _as_array(value: Any, key: str, source: str) -> np.ndarray:
    """``np.asarray(value)`` with a field-naming error; object arrays and scalars refused."""
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise ExpertDataError(f"{source}: {key!r} is not an array ({error})") from error
    if array.dtype.hasobject:
        raise ExpertDataError(f"{source}: {key!r} is an object array; use numeric (or, for image paths, str) arrays")
    if array.ndim == 0:
        raise ExpertDataError(f"{source}: {key!r} is a scalar; expected one entry per transition")
    if array.dtype.kind == "c":
        raise ExpertDataError(f"{source}: {key!r} holds complex numbers, got dtype {array.dtype}; expected reals")
    return array


def _validate(data: Mapping[str, Any], source: str = "expert data") -> dict[str, np.ndarray]:
    """Checked copies of the arrays; ``ExpertDataError`` naming ``source`` (the file, or
    ``traj_data``) and the array of the first problem found.

    Checks: the required keys; dtypes (numbers or booleans; ``obs`` may be image paths);
    no scalars; equal lengths of ``obs``, ``actions``, ``rewards`` and ``episode_starts``;
    at least one transition; no NaN, ±inf or values beyond the float32 range in float
    arrays; ``episode_starts`` boolean (or 0/1) and true first; one return per episode.
    """
    missing = [key for key in REQUIRED_KEYS if key not in data]
    if missing:
        raise ExpertDataError(
            f"{source} is missing key(s) {missing}; it has {sorted(data)}, and needs "
            f"{list(REQUIRED_KEYS)} (optionally {list(OPTIONAL_KEYS)})"
        )
    arrays = {key: _as_array(data[key], key, source) for key in (*REQUIRED_KEYS, *OPTIONAL_KEYS) if key in data}

    obs = arrays["obs"]
    if obs.dtype.kind == "S":  # bytes paths (as Python 2 would save them): decode
        try:
            obs = np.char.decode(obs, "utf-8")
        except UnicodeDecodeError as error:
            raise ExpertDataError(f"{source}: 'obs' holds image paths that are not UTF-8 ({error})") from error
    if obs.dtype.kind == "U":
        if obs.ndim != 1:
            raise ExpertDataError(
                f"{source}: image-path observations must be a 1-D string array, got shape {obs.shape}"
            )
        check_code_points(obs, f"{source}: 'obs'", ExpertDataError)
    elif obs.dtype.kind not in "biuf":
        raise ExpertDataError(f"{source}: 'obs' must be numeric (or image paths), got dtype {obs.dtype}")
    arrays["obs"] = obs
    for key in ("actions", "rewards", "episode_returns"):
        if key in arrays and arrays[key].dtype.kind not in "biuf":
            raise ExpertDataError(f"{source}: {key!r} must be numeric, got dtype {arrays[key].dtype}")

    n = len(obs)
    if n == 0:
        raise ExpertDataError(f"{source} is empty: 'obs' holds 0 transitions")
    for key in ("actions", "episode_starts", "rewards"):
        if key in arrays and len(arrays[key]) != n:
            raise ExpertDataError(
                f"{source}: lengths differ: 'obs' has {n} transitions but {key!r} has {len(arrays[key])}"
            )

    starts = arrays["episode_starts"]
    if starts.ndim > 1:
        if starts.size != n:
            raise ExpertDataError(
                f"{source}: 'episode_starts' must hold one flag per transition, got shape {starts.shape}"
            )
        starts = starts.reshape(n)
    if starts.dtype != bool:
        if starts.dtype.kind not in "iuf" or not np.all(np.isin(starts, (0, 1))):
            raise ExpertDataError(
                f"{source}: 'episode_starts' must be booleans (True at the first step of each episode), "
                f"got dtype {starts.dtype}" + ("" if starts.dtype.kind not in "iuf" else " with values other than 0/1")
            )
        starts = starts.astype(bool)
    if not starts[0]:
        raise ExpertDataError(
            f"{source}: episode_starts[0] must be True: the data must begin with the start of an episode"
        )
    arrays["episode_starts"] = starts

    for key in ("obs", "actions", "rewards", "episode_returns"):
        if key in arrays:
            _check_float32_range(arrays[key], key, source)
    if "rewards" in arrays:
        rewards = arrays["rewards"]
        if rewards.size != n:
            raise ExpertDataError(f"{source}: 'rewards' must hold one number per transition, got shape {rewards.shape}")
        arrays["rewards"] = rewards.reshape(n)
    if "episode_returns" in arrays:
        returns = arrays["episode_returns"].reshape(-1)
        n_episodes = int(np.sum(starts))
        if len(returns) != n_episodes:
            raise ExpertDataError(
                f"{source}: 'episode_returns' has {len(returns)} entries but 'episode_starts' marks "
                f"{n_episodes} episodes"
            )
        arrays["episode_returns"] = returns
    return arrays


class DataLoader:
    """Minibatches ``(obs_batch, actions_batch)`` over a fixed set of transition indices.

    An iterator, as Stable Baselines 2's: ``iter(loader)`` starts an epoch (a fresh
    permutation of the indices when ``shuffle``, drawn from a seeded
    ``numpy.random.Generator``); ``next`` gives ``ceil(len(indices) / batch_size)``
    batches, the last one possibly partial, then ``StopIteration``. Image paths are read
    into ``uint8`` arrays batch by batch.
    """

    def __init__(
        self,
        indices: np.ndarray,
        observations: np.ndarray,
        actions: np.ndarray,
        batch_size: int,
        shuffle: bool = False,
        rng: np.random.Generator | None = None,
        image_resolver: Callable[[str], str] | None = None,
    ) -> None:
        self.indices = np.asarray(indices, dtype=np.int64)
        self.original_indices = self.indices.copy()
        self.batch_size = int(batch_size)
        self.n_minibatches = -(-len(self.indices) // self.batch_size)
        self.observations = observations
        self.actions = actions
        self.shuffle = shuffle
        self.rng = rng if rng is not None else np.random.default_rng()
        self.load_images = observations.dtype.kind in "US"
        self.image_resolver = image_resolver or (lambda path: path)
        self.start_idx = 0

    def __len__(self) -> int:
        return self.n_minibatches

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        self.start_idx = 0
        self.indices = self.original_indices.copy()
        return self

    def __next__(self) -> tuple[np.ndarray, np.ndarray]:
        if self.start_idx >= len(self.indices):
            raise StopIteration
        if self.start_idx == 0 and self.shuffle:
            self.indices = self.rng.permutation(self.original_indices)
        batch = self.indices[self.start_idx : self.start_idx + self.batch_size]
        self.start_idx += self.batch_size
        return self.load_observations(batch), self.actions[batch]

    def load_observations(self, batch: np.ndarray) -> np.ndarray:
        """Observations at ``batch``; image paths become a ``(B, H, W, C)`` ``uint8`` array."""
        obs = self.observations[batch]
        if self.load_images:
            paths = [self.image_resolver(str(path)) for path in obs]
            images = [load_image(path) for path in paths]
            for path, image in zip(paths, images):
                if image.shape != images[0].shape:
                    raise ExpertDataError(
                        f"the expert image {path!r} has shape {image.shape}, but {paths[0]!r} has "
                        f"{images[0].shape}; all images of a dataset must have one shape"
                    )
            return np.stack(images)
        return obs


class ExpertDataset:
    """Expert demonstrations for behaviour cloning (and GAIL), Stable Baselines 2's API.

    Args:
        expert_path: an ``.npz`` archive (see the module docstring). Mutually exclusive
            with ``traj_data``.
        traj_data: the same data as a dict of arrays.
        train_fraction: fraction of the *episodes* used for training; the others are for
            validation. ``1.0`` means no validation set.
        batch_size: minibatch size of the loaders.
        traj_limitation: keep only the first k episodes (``-1`` or any k ≤ 0: all).
        randomize: shuffle the episode order before splitting and the minibatches each epoch.
        verbose: 1 prints the arrays' shapes and :meth:`log_info`.
        sequential_preprocessing: accepted for compatibility; batches are always made in
            the calling thread.
        seed: seed of the split and of the minibatch shuffling.
        max_bytes: the most bytes ``expert_path`` may decompress to (default
            :data:`MAX_EXPERT_BYTES`; see :func:`load_expert_data`).

    Raises:
        ExpertDataError: (a ``ValueError``) the file or the arrays are unusable; the message
            names the file (or ``traj_data``) and the array.
        ValueError: bad arguments.

    Unlike Stable Baselines 2, which permutes *transitions* before splitting, the split
    is by trajectory: with E ≥ 2 episodes the first ``max(1, min(E-1, ⌊f·E⌋))`` episodes
    (after an optional seeded shuffle of their order) train and the rest validate, so
    the validation loss measures generalisation to unseen episodes rather than to
    neighbouring, highly correlated time steps of the same episodes.

    Attributes (SB2 names in brackets): ``n_episodes`` [``num_traj``], ``n_transitions``
    [``num_transition``], ``mean_return`` [``avg_ret``], ``std_return`` [``std_ret``],
    ``returns`` (per-episode returns), ``observations``, ``actions``, ``episode_ids``
    (episode index of every transition), ``train_episodes`` / ``val_episodes``,
    ``train_loader`` / ``val_loader``.
    """

    def __init__(
        self,
        expert_path: PathLike | None = None,
        traj_data: Mapping[str, Any] | None = None,
        train_fraction: float = 0.7,
        batch_size: int = 64,
        traj_limitation: int = -1,
        randomize: bool = True,
        verbose: int = 1,
        sequential_preprocessing: bool = False,
        seed: int | None = None,
        *,
        max_bytes: int | None = None,
    ) -> None:
        if traj_data is not None and expert_path is not None:
            raise ValueError("Cannot specify both 'traj_data' and 'expert_path'")
        if traj_data is None and expert_path is None:
            raise ValueError("Must specify one of 'traj_data' or 'expert_path'")
        if not 0.0 < float(train_fraction) <= 1.0:
            raise ValueError(f"train_fraction must be in (0, 1], got {train_fraction}")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.expert_path = None if expert_path is None else os.fspath(expert_path)
        #: What error messages call the data: the file, or ``traj_data``.
        self.source = "expert data (traj_data)"
        if traj_data is None:
            assert expert_path is not None
            self.source = f"expert dataset {_resolve_expert_path(expert_path)!r}"
            traj_data = load_expert_data(expert_path, max_bytes=max_bytes)
        if not isinstance(traj_data, Mapping) and not hasattr(traj_data, "keys"):
            raise ExpertDataError(f"traj_data must be a dict of arrays, got {type(traj_data).__name__}")
        arrays = _validate({key: traj_data[key] for key in traj_data}, self.source)
        if verbose >= 1:
            for key, value in arrays.items():
                print(key, value.shape)

        starts = arrays["episode_starts"]
        episode_ids = np.cumsum(starts) - 1
        total_episodes = int(episode_ids[-1]) + 1
        n_keep = total_episodes if traj_limitation <= 0 else min(int(traj_limitation), total_episodes)
        limit = len(starts) if n_keep == total_episodes else int(np.flatnonzero(starts)[n_keep])

        self.observations: np.ndarray = arrays["obs"][:limit]
        self.actions: np.ndarray = arrays["actions"][:limit]
        self.episode_starts: np.ndarray = starts[:limit]
        self.episode_ids: np.ndarray = episode_ids[:limit]
        self.rewards: np.ndarray | None = arrays["rewards"][:limit] if "rewards" in arrays else None
        if "episode_returns" in arrays:
            self.returns: np.ndarray = arrays["episode_returns"][:n_keep].astype(np.float64)
        elif self.rewards is not None:
            self.returns = np.bincount(
                self.episode_ids, weights=self.rewards.reshape(limit).astype(np.float64), minlength=n_keep
            )
        else:
            self.returns = np.full(n_keep, np.nan)

        self.n_episodes = n_keep
        self.n_transitions = limit
        self.mean_return = float(np.mean(self.returns))
        self.std_return = float(np.std(self.returns))
        self.batch_size = int(batch_size)
        self.train_fraction = float(train_fraction)
        self.randomize = bool(randomize)
        self.verbose = int(verbose)
        self.sequential_preprocessing = sequential_preprocessing
        self.seed = seed
        self.rng = np.random.default_rng(seed)

        order = self.rng.permutation(n_keep) if self.randomize else np.arange(n_keep)
        if self.train_fraction >= 1.0 or n_keep < 2:
            n_train = n_keep
            if n_keep < 2 and self.train_fraction < 1.0:
                warnings.warn("the expert data holds a single episode: no validation set", stacklevel=2)
        else:
            n_train = min(n_keep - 1, max(1, int(self.train_fraction * n_keep)))
        self.train_episodes = np.sort(order[:n_train])
        self.val_episodes = np.sort(order[n_train:])
        # Transitions grouped by episode, in the (possibly shuffled) episode order.
        bounds = np.append(np.flatnonzero(self.episode_starts), limit)

        def transitions(episodes: np.ndarray) -> np.ndarray:
            parts = [np.arange(bounds[e], bounds[e + 1]) for e in episodes]
            return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

        train_indices = transitions(order[:n_train])
        val_indices = transitions(order[n_train:])

        self.dataloader: DataLoader | None = None
        self.train_loader = self._loader(train_indices)
        self.val_loader = self._loader(val_indices)
        if self.verbose >= 1:
            self.log_info()

    # -- SB2 names --------------------------------------------------------------------
    @property
    def num_traj(self) -> int:
        return self.n_episodes

    @property
    def num_transition(self) -> int:
        return self.n_transitions

    @property
    def avg_ret(self) -> float:
        return self.mean_return

    @property
    def std_ret(self) -> float:
        return self.std_return

    @property
    def has_images(self) -> bool:
        """Whether ``obs`` holds image paths."""
        return self.observations.dtype.kind in "US"

    # -- loaders ----------------------------------------------------------------------
    def _loader(self, indices: np.ndarray) -> DataLoader:
        return DataLoader(
            indices.astype(np.int64),
            self.observations,
            self.actions,
            self.batch_size,
            shuffle=self.randomize,
            rng=self.rng,
            image_resolver=self.resolve_image_path,
        )

    def resolve_image_path(self, path: str) -> str:
        """An image path as stored, or, if that does not exist, relative to the archive's folder.

        SB2 stores paths relative to the working directory at recording time
        (``<dirname(save_path)>/<image_folder>/<t>.png``); this also finds the images when
        the archive is opened from another working directory.
        """
        if os.path.exists(path) or self.expert_path is None:
            return path
        base = os.path.dirname(os.path.abspath(self.expert_path))
        candidates = [
            os.path.join(base, path),
            os.path.join(base, os.path.basename(os.path.dirname(path)), os.path.basename(path)),
        ]
        for candidate in candidates:
            if os.path.exists(candidate):
                return candidate
        return path

    def init_dataloader(self, batch_size: int) -> None:
        """The loader over all transitions used by GAIL (``get_next_batch()``)."""
        indices = self.rng.permutation(self.n_transitions).astype(np.int64)
        self.dataloader = DataLoader(
            indices,
            self.observations,
            self.actions,
            int(batch_size),
            shuffle=self.randomize,
            rng=self.rng,
            image_resolver=self.resolve_image_path,
        )

    def get_next_batch(self, split: str | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Next ``(obs, actions)`` minibatch of ``split`` (``None``: all, ``'train'``, ``'val'``);
        a new epoch starts when the previous one is exhausted."""
        if split not in (None, "train", "val"):
            raise ValueError(f"split must be None, 'train' or 'val', got {split!r}")
        if split is None and self.dataloader is None:
            self.init_dataloader(self.batch_size)
        loader = {None: self.dataloader, "train": self.train_loader, "val": self.val_loader}[split]
        assert loader is not None
        if len(loader) == 0:
            raise ValueError(f"the {split!r} split is empty")
        try:
            return next(loader)
        except StopIteration:
            return next(iter(loader))

    # -- reporting --------------------------------------------------------------------
    def log_info(self) -> None:
        """Print the number of trajectories and transitions and the return statistics."""
        print(f"Total trajectories: {self.n_episodes}")
        print(f"Total transitions: {self.n_transitions}")
        print(f"Average returns: {self.mean_return}")
        print(f"Std for returns: {self.std_return}")

    def plot(self, ax: Axes | None = None, bins: int | str = "auto") -> Figure:
        """Histogram of the episode returns; returns the Figure (not shown)."""
        from matplotlib.figure import Figure

        if ax is None:
            figure = Figure(figsize=(5, 3.2))
            ax = figure.add_subplot()
        else:
            figure = ax.get_figure()
        returns = self.returns[np.isfinite(self.returns)]
        ax.hist(returns, bins=bins)
        ax.set_xlabel("episode return")
        ax.set_ylabel("episodes")
        ax.set_title(f"{self.n_episodes} expert episodes, mean return {self.mean_return:.1f}")
        return figure

    # -- checks -----------------------------------------------------------------------
    def check_spaces(self, observation_space: gym.Space, action_space: gym.Space) -> None:
        """Raise ``ExpertDataError`` (a ``ValueError``, its message starting with
        :attr:`source`) if the observations or actions do not fit the spaces.

        Observations: per-transition shape equal to the space's (``(1,)`` or ``()`` for
        ``Discrete``; a loaded image for image paths); for ``Discrete`` and
        ``MultiDiscrete``, integers in range; for ``MultiBinary``, values in {0, 1}; for
        ``Box``, values representable in the space's dtype (no wrap-around or overflow
        when cast to it). Actions: ``Discrete(n, start)`` →
        integers a with ``start ≤ a < start + n``, stored ``(N,)`` or ``(N, 1)``;
        ``MultiDiscrete(nvec, start)`` → integers with ``start_i ≤ a_i < start_i + nvec_i``;
        ``MultiBinary(n)`` → values in {0, 1}; ``Box(shape)`` → numeric, per-transition shape
        equal to ``shape`` (``(N,)`` accepted for ``shape == (1,)``).
        """
        try:
            self._check_observations(observation_space)
            self._check_actions(action_space)
        except ExpertDataError:
            raise
        except ValueError as error:
            raise ExpertDataError(f"{self.source}: {error}") from error

    def _check_observations(self, space: gym.Space) -> None:
        if self.has_images:
            sample = load_image(self.resolve_image_path(str(self.observations[0])))
            if tuple(space.shape or ()) != sample.shape:
                raise ValueError(
                    f"expert images have shape {sample.shape} but the observation space {space} expects {space.shape}"
                )
            return
        per_step = self.observations.shape[1:]
        if isinstance(space, gym.spaces.Discrete):
            if per_step not in ((), (1,)):
                raise ValueError(
                    f"expert observations have shape {per_step} per transition but the observation space "
                    f"{space} expects one integer"
                )
            _check_integers(self.observations, space.start, space.start + space.n, "observations", space)
            return
        expected = tuple(space.shape or ())
        if per_step != expected:
            raise ValueError(
                f"expert observations have shape {per_step} per transition but the observation space "
                f"{space} expects {expected}"
            )
        if isinstance(space, gym.spaces.MultiDiscrete):
            _check_integers(self.observations, space.start, space.start + space.nvec, "observations", space)
        elif isinstance(space, gym.spaces.MultiBinary):
            _check_integers(self.observations, 0, 2, "observations", space)
        elif isinstance(space, gym.spaces.Box):
            _check_representable(self.observations, np.dtype(space.dtype), "observations", space)

    def _check_actions(self, space: gym.Space) -> None:
        actions = self.actions
        per_step = actions.shape[1:]
        if isinstance(space, gym.spaces.Discrete):
            if per_step not in ((), (1,)):
                raise ValueError(
                    f"expert actions have shape {per_step} per transition but the action space {space} "
                    f"expects one integer (stored as (N,) or (N, 1))"
                )
            _check_integers(actions, space.start, space.start + space.n, "actions", space)
        elif isinstance(space, gym.spaces.MultiDiscrete):
            if per_step != space.shape:
                raise ValueError(
                    f"expert actions have shape {per_step} per transition but the action space {space} "
                    f"expects {space.shape}"
                )
            _check_integers(actions, space.start, space.start + space.nvec, "actions", space)
        elif isinstance(space, gym.spaces.MultiBinary):
            if per_step != tuple(space.shape):
                raise ValueError(
                    f"expert actions have shape {per_step} per transition but the action space {space} "
                    f"expects {tuple(space.shape)}"
                )
            if not np.all(np.isin(actions, (0, 1))):
                raise ValueError(f"expert actions for {space} must be 0 or 1")
        elif isinstance(space, gym.spaces.Box):
            if per_step != space.shape and not (space.shape == (1,) and per_step == ()):
                raise ValueError(
                    f"expert actions have shape {per_step} per transition but the action space {space} "
                    f"expects {space.shape}"
                )
            if not (np.issubdtype(actions.dtype, np.number)):
                raise ValueError(f"expert actions for {space} must be numeric, got dtype {actions.dtype}")
        else:
            raise ValueError(
                f"unsupported action space {space}; expert data supports Box, Discrete, MultiDiscrete, MultiBinary"
            )


def _check_representable(values: np.ndarray, dtype: np.dtype, what: str, space: gym.Space) -> None:
    """``ValueError`` if casting ``values`` to ``dtype`` would wrap around (integers) or
    overflow to ±inf (floats)."""
    if values.size == 0 or dtype.kind not in "iuf":
        return
    low, high = np.min(values), np.max(values)
    limits = np.iinfo(dtype) if dtype.kind in "iu" else np.finfo(dtype)
    if low < limits.min or high > limits.max:
        effect = "wrap around" if dtype.kind in "iu" else "become infinite"
        raise ValueError(
            f"expert {what} range over [{low}, {high}], beyond what {space}'s dtype {dtype} holds "
            f"([{limits.min}, {limits.max}]); they would {effect} when cast to it"
        )


def _check_integers(values: np.ndarray, low: Any, high: Any, what: str, space: gym.Space) -> None:
    """``ValueError`` unless ``values`` are integers with ``low ≤ v < high`` (broadcast)."""
    if values.dtype == bool or not np.issubdtype(values.dtype, np.number):
        raise ValueError(f"expert {what} for {space} must be integers, got dtype {values.dtype}")
    if not np.issubdtype(values.dtype, np.integer) and not np.all(values == np.round(values)):
        raise ValueError(f"expert {what} for {space} must be integers, got non-integer values")
    shaped = values.reshape(len(values), -1)
    low_b = np.broadcast_to(np.asarray(low).reshape(-1), shaped.shape[1:])
    high_b = np.broadcast_to(np.asarray(high).reshape(-1), shaped.shape[1:])
    bad = (shaped < low_b) | (shaped >= high_b)
    if np.any(bad):
        first = int(np.argwhere(bad)[0][0])
        raise ValueError(f"expert {what} out of range for {space}: transition {first} has {values[first].tolist()}")
