"""The expert datasets a pretraining dashboard offers: named sources (an
:class:`~acktr_lab.expert.ExpertDataset` or the path of an ``.npz`` archive), loaded when
first opened and checked against the model's spaces. No widgets here: the dashboard shows
what this refuses."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from acktr_lab.expert import ExpertDataset

__all__ = ["DatasetCatalog", "DatasetSource"]

DatasetSource = ExpertDataset | str | os.PathLike[str]


class DatasetCatalog:
    """Named expert datasets for one model.

    Args:
        sources: name → :class:`ExpertDataset` or path of an ``.npz`` archive.
        observation_space, action_space: the model's spaces every dataset must fit.
        dataset_kwargs: keyword arguments of ``ExpertDataset`` for the files loaded here.

    ``sources`` is the (growing) mapping of names to sources; a dataset is loaded and
    checked once, on its first :meth:`open`, then kept.
    """

    def __init__(
        self,
        sources: Mapping[str, DatasetSource],
        observation_space: Any,
        action_space: Any,
        dataset_kwargs: Mapping[str, Any],
    ) -> None:
        self.sources: dict[str, DatasetSource] = dict(sources)
        self.observation_space = observation_space
        self.action_space = action_space
        self.dataset_kwargs = dict(dataset_kwargs)
        self._loaded: dict[str, ExpertDataset] = {}

    def __contains__(self, name: object) -> bool:
        return name in self.sources

    def open(self, name: str) -> ExpertDataset:
        """The dataset ``name``, loaded if it is a path. Raises what loading raises, and
        ``ValueError`` when its demonstrations do not fit the model's spaces."""
        if name not in self._loaded:
            self._loaded[name] = self._load(name, self.sources[name])
        return self._loaded[name]

    def add(self, path: str, name: str | None = None) -> str:
        """Load the ``.npz`` archive at ``path`` and add it as ``name`` (default: the file
        name; made unique with a number). Returns the name; on an error nothing is added."""
        label = name or os.path.basename(path) or path
        candidate, n = label, 2
        while candidate in self.sources:
            candidate, n = f"{label} ({n})", n + 1
        dataset = self._load(candidate, path)
        self.sources[candidate] = path
        self._loaded[candidate] = dataset
        return candidate

    def name_of(self, path: str | os.PathLike[str]) -> str | None:
        """The name of the file source at ``path``, if one is known."""
        target = os.path.abspath(os.fspath(path))
        for name, source in self.sources.items():
            if isinstance(source, str | os.PathLike) and os.path.abspath(os.fspath(source)) == target:
                return name
        return None

    def describe(self, name: str) -> str:
        """Episodes (train and validation), transitions, the expert's return and, for a
        file, where it came from, of the (opened) dataset ``name``."""
        dataset = self.open(name)
        source = self.sources[name]
        where = f" from {os.fspath(source)}" if isinstance(source, str | os.PathLike) else ""
        return (
            f"{dataset.n_episodes} episodes ({len(dataset.train_episodes)} train, {len(dataset.val_episodes)} "
            f"validation), {dataset.n_transitions:,} transitions, mean return {dataset.mean_return:.1f} "
            f"± {dataset.std_return:.1f}{where}"
        )

    def _load(self, name: str, source: DatasetSource) -> ExpertDataset:
        if isinstance(source, ExpertDataset):
            dataset = source
        elif isinstance(source, str | os.PathLike):
            dataset = ExpertDataset(expert_path=source, **self.dataset_kwargs)
        else:
            raise TypeError(f"a dataset must be an ExpertDataset or the path of an .npz archive, got {source!r}")
        try:
            dataset.check_spaces(self.observation_space, self.action_space)
        except ValueError as error:
            raise ValueError(f"dataset {name!r} does not fit the model: {error}") from error
        return dataset
