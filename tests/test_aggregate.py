"""rliable-style aggregates (``acktr_lab.aggregate``) against hand computations."""

from __future__ import annotations

import io

import numpy as np
import pytest
from png_checks import assert_png

from acktr_lab.aggregate import (
    aggregate_figure,
    bootstrap_interval,
    interquartile_mean,
    performance_profile,
    score_matrix,
)


def test_interquartile_mean_drops_a_quarter_from_each_end() -> None:
    assert interquartile_mean([8, 1, 7, 2, 6, 3, 5, 4]) == 4.5  # mean of 3, 4, 5, 6
    assert interquartile_mean([1, 2, 3, 1000]) == 2.5  # the outlier seed is dropped
    assert interquartile_mean([[1, 10], [2, 20], [3, 30], [4, 40]]) == pytest.approx((3 + 4 + 10 + 20) / 4)
    assert interquartile_mean([5.0]) == 5.0  # ⌊1/4⌋ = 0 dropped
    assert interquartile_mean([1, 2, 3]) == 2.0  # ⌊3/4⌋ = 0 dropped: the mean


def test_bootstrap_of_two_runs_by_hand() -> None:
    """Runs {0, 4}: a resample is {0,0}, {0,4}, {4,0} or {4,4}, each with probability 1/4,
    and its IQM (nothing dropped from two) 0, 2, 2 or 4: mean 2, range [0, 4]."""
    replicates: list[float] = []

    def recording(matrix: np.ndarray) -> float:
        value = interquartile_mean(matrix)
        replicates.append(value)
        return value

    assert bootstrap_interval([0.0, 4.0], statistic=recording, reps=4000, seed=1) == (0.0, 4.0)
    counts = {value: replicates.count(value) / len(replicates) for value in (0.0, 2.0, 4.0)}
    assert counts == pytest.approx({0.0: 0.25, 2.0: 0.5, 4.0: 0.25}, abs=0.03)
    assert sum(counts.values()) == 1.0


def test_bootstrap_resamples_within_each_task() -> None:
    """Task 0 always scores 1 and task 1 always 3: every stratified resample has mean 2."""
    matrix = [[1.0, 3.0], [1.0, 3.0], [1.0, 3.0]]
    assert bootstrap_interval(matrix, statistic=lambda m: float(m.mean()), reps=200) == (2.0, 2.0)
    assert bootstrap_interval([7.0, 7.0, 7.0]) == (7.0, 7.0)


def test_performance_profile_by_hand() -> None:
    matrix = [[1.0, 5.0], [3.0, 7.0]]  # task 0 scores {1, 3}, task 1 {5, 7}
    profile = performance_profile(matrix, [0, 2, 4, 6, 8])
    np.testing.assert_allclose(profile, [1.0, 0.75, 0.5, 0.25, 0.0])


def test_bad_scores_are_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        score_matrix([1.0, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        score_matrix([])
    with pytest.raises(ValueError, match="confidence"):
        bootstrap_interval([1.0, 2.0], confidence=1.5)


def test_aggregate_figure_draws_each_group() -> None:
    figure = aggregate_figure({"kfac_clip=0.001": [480, 500, 500], "kfac_clip=0.01": [120, 300, 210]}, reps=100)
    left, right = figure.axes
    assert [tick.get_text() for tick in left.get_yticklabels()] == ["kfac_clip=0.001", "kfac_clip=0.01"]
    assert len(right.get_lines()) == 2
    profile = right.get_lines()[0].get_ydata()
    assert profile[0] == 1.0 and profile[-1] == 0.0  # all its runs beat the lowest score of all; none the highest
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    assert_png(buffer.getvalue())
