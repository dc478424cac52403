"""Expert demonstrations as a dataset for behaviour cloning: :class:`ExpertDataset` and its
minibatch :class:`DataLoader` (Stable Baselines 2's API; the split is by trajectory)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import gymnasium as gym
import numpy as np

from acktr_lab.expert.data import (
    MAX_EXPERT_BYTES,  # noqa: F401  (named in the docstrings)
    ExpertDataError,
    PathLike,
    load_expert_data,
    load_image,
    resolve_expert_path,
    validate_expert_data,
)

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure


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
            images = [load_image(paths[0])] if paths else []
            images += [load_image(path, size=images[0].shape[:2]) for path in paths[1:]]
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
        expert_path: an ``.npz`` archive (the format: :mod:`acktr_lab.expert`). Mutually exclusive
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
            self.source = f"expert dataset {resolve_expert_path(expert_path)!r}"
            traj_data = load_expert_data(expert_path, max_bytes=max_bytes)
        if not isinstance(traj_data, Mapping) and not hasattr(traj_data, "keys"):
            raise ExpertDataError(f"traj_data must be a dict of arrays, got {type(traj_data).__name__}")
        arrays = validate_expert_data({key: traj_data[key] for key in traj_data}, self.source)
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
