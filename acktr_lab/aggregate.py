"""Aggregate scores across seeds, as rliable (Agarwal et al. 2021) reports them.

rliable was archived in 2025; these are its estimators, on NumPy. A score matrix is
``[runs, tasks]``: one row per seed, one column per env (a single env: one column).

- **IQM**, the interquartile mean: the mean of the middle half of all ``N = runs·tasks``
  scores, after dropping ``⌊N/4⌋`` from each end of the sorted scores (SciPy's
  ``trim_mean(scores, 0.25)``, which rliable calls). Robust to an outlier seed, and uses
  more of the data than the median.
- **Stratified bootstrap confidence interval** of any statistic: resample the runs of each
  task with replacement (tasks stay fixed), recompute the statistic, and take the
  ``(1 − c)/2`` and ``(1 + c)/2`` percentiles of the ``reps`` replicates.
- **Performance profile**: for each threshold τ, the fraction of runs scoring above τ,
  averaged over tasks, ``P(τ) = 1/T Σ_t 1/R Σ_r [x_{r,t} > τ]``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

Statistic = Callable[[np.ndarray], float]


def score_matrix(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """``scores`` as a ``[runs, tasks]`` float matrix (a flat list is one task); finite values only."""
    matrix = np.asarray(scores, dtype=np.float64)
    if matrix.ndim == 1:
        matrix = matrix[:, None]
    if matrix.ndim != 2 or matrix.size == 0:
        raise ValueError(f"scores must be a non-empty [runs, tasks] matrix or a list, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise ValueError("scores must be finite")
    return matrix


def interquartile_mean(scores: Sequence[float] | np.ndarray) -> float:
    """The mean of the scores left after dropping ``⌊N/4⌋`` of the lowest and of the highest."""
    flat = np.sort(score_matrix(scores).ravel())
    cut = int(0.25 * flat.size)
    return float(flat[cut : flat.size - cut].mean())


def bootstrap_interval(
    scores: Sequence[float] | np.ndarray,
    statistic: Statistic = interquartile_mean,
    reps: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """The stratified-bootstrap percentile interval of ``statistic`` (runs resampled per task)."""
    matrix = score_matrix(scores)
    if not 0 < confidence < 1 or reps < 1:
        raise ValueError(f"need 0 < confidence < 1 and reps ≥ 1, got {confidence}, {reps}")
    rng = np.random.default_rng(seed)
    runs, tasks = matrix.shape
    replicates = np.empty(reps)
    for k in range(reps):
        rows = rng.integers(0, runs, size=(runs, tasks))
        replicates[k] = statistic(np.take_along_axis(matrix, rows, axis=0))
    low, high = np.percentile(replicates, [100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2])
    return float(low), float(high)


def performance_profile(scores: Sequence[float] | np.ndarray, thresholds: Sequence[float] | np.ndarray) -> np.ndarray:
    """``P(τ)`` for each τ: the fraction of runs scoring above τ, averaged over tasks."""
    matrix = score_matrix(scores)
    taus = np.asarray(thresholds, dtype=np.float64)
    return (matrix[None, :, :] > taus[:, None, None]).mean(axis=1).mean(axis=1)


def aggregate_figure(
    groups: Mapping[str, Sequence[float] | np.ndarray],
    thresholds: Sequence[float] | np.ndarray | None = None,
    title: str = "final evaluation across seeds",
    reps: int = 2000,
) -> Figure:
    """IQM with its 95% bootstrap interval per group (left) and the groups' performance
    profiles (right), in the style of rliable's plots."""
    if not groups:
        raise ValueError("nothing to plot: no groups of scores")
    matrices = {name: score_matrix(values) for name, values in groups.items()}
    every = np.concatenate([m.ravel() for m in matrices.values()])
    taus = np.linspace(every.min(), every.max(), 101) if thresholds is None else np.asarray(thresholds, float)
    figure = Figure(figsize=(11, 0.6 + 0.45 * len(matrices) + 2.4), layout="constrained")
    left, right = figure.subplots(1, 2, width_ratios=(1, 1.3))
    for row, (name, matrix) in enumerate(matrices.items()):
        centre = interquartile_mean(matrix)
        low, high = bootstrap_interval(matrix, reps=reps)
        left.barh(row, high - low, left=low, height=0.6, color=f"C{row}", alpha=0.4)
        left.plot([centre, centre], [row - 0.3, row + 0.3], color=f"C{row}", linewidth=2)
        left.plot(matrix.ravel(), np.full(matrix.size, row), "k.", markersize=3)
        profile = performance_profile(matrix, taus)
        right.plot(taus, profile, color=f"C{row}", label=f"{name} ({matrix.shape[0]} runs)")
    left.set_yticks(range(len(matrices)), list(matrices))
    left.invert_yaxis()
    left.set(xlabel="score: IQM (line), 95% CI (bar), runs (dots)", title=title)
    right.set(xlabel="threshold τ", ylabel="fraction of runs with score > τ", ylim=(-0.02, 1.02))
    right.set_title("performance profile")
    right.legend(fontsize="small")
    return figure
