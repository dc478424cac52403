"""A progress bar over a whole sweep: :class:`SweepProgress`, a Ray Tune callback.

The bar counts timesteps: its total is the number of trials times each trial's budget, its
position the sum over the trials of the ``timesteps`` each reported last (capped at the
budget). A trial that PBT restarts from an older checkpoint reports fewer timesteps than
before, so the bar moves back by as much: it shows the training still ahead, not the
training done. A trial that ends before its budget (stopped by ASHA, or failed) takes its
last timesteps as its share of the total, so that the bar ends full. The postfix shows the
best ``rollout/ep_return_mean`` (or another reported metric) so far and how many trials ended.

The number of trials comes from Tune's search (``setup``'s ``total_num_samples``), from the
trials Tune starts, or from ``trials=`` when Tune's count is not the one to show::

    progress = SweepProgress(timesteps=100_000)
    result = acktr_lab.sweep.run("CartPole-v1", space, seeds, 100_000, callbacks=[progress])
"""

from __future__ import annotations

import math
from typing import IO, Any

from ray.tune import Callback

__all__ = ["SweepProgress"]


class SweepProgress(Callback):
    """A tqdm bar over a sweep's timesteps (see the module doc); closes when the sweep ends.

    Args:
        timesteps: the budget of each trial (``acktr_lab.sweep.run``'s ``timesteps``).
        trials: how many trials the sweep runs (default: what Tune's search says).
        metric, mode: the reported value whose best the postfix shows, and which is best.
        description, file, disable, leave: the tqdm bar's ``desc``, output, whether it is
            hidden, and whether it stays on screen when closed.
    """

    def __init__(
        self,
        timesteps: int,
        trials: int | None = None,
        *,
        metric: str = "rollout/ep_return_mean",
        mode: str = "max",
        description: str = "sweep",
        file: IO[str] | None = None,
        disable: bool = False,
        leave: bool = True,
    ) -> None:
        if isinstance(timesteps, bool) or not isinstance(timesteps, int) or timesteps < 1:
            raise ValueError(f"timesteps must be a positive integer, got {timesteps!r}")
        if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
            raise ValueError(f"trials must be a positive integer or None, got {trials!r}")
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be 'max' or 'min', got {mode!r}")
        self.timesteps = timesteps
        self.metric = metric
        self.mode = mode
        self.best: float | None = None
        self.best_trial: str | None = None
        self._given_trials = trials
        self._search_trials: int | None = None
        self._listed = 0
        self._latest: dict[str, int] = {}  # trial id -> its last reported timesteps, capped at the budget
        self._ended: dict[str, int] = {}  # trial id -> its timesteps when it ended (complete or failed)
        self._failed: set[str] = set()
        self._bar_options = {"desc": description, "file": file, "disable": disable, "leave": leave}
        self.bar: Any = None  # the tqdm bar, made when the sweep starts
        self._closed = False

    # what the bar shows

    @property
    def trials(self) -> int:
        """The number of trials the bar counts: the largest of those given, searched and seen."""
        return max(self._given_trials or 0, self._search_trials or 0, self._listed, len(self._latest))

    @property
    def total(self) -> int:
        """Every trial's budget, except that an ended trial counts the timesteps it reached."""
        ended = sum(min(value, self.timesteps) for value in self._ended.values())
        return (self.trials - len(self._ended)) * self.timesteps + ended

    @property
    def position(self) -> int:
        """The sum over the trials of their last reported timesteps (each capped at the budget)."""
        return sum(self._latest.values())

    # Tune's hooks

    def setup(
        self, stop: Any = None, num_samples: int | None = None, total_num_samples: int | None = None, **info: Any
    ) -> None:
        if isinstance(total_num_samples, int) and total_num_samples > 0:
            self._search_trials = total_num_samples
        self._refresh()

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._listed = max(self._listed, len(trials))  # the trials Tune has made so far
        self._latest.setdefault(_trial_id(trial), 0)  # a restarted trial keeps its place until it reports
        self._refresh()

    def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict, **info: Any) -> None:
        trial_id = _trial_id(trial)
        self._latest.setdefault(trial_id, 0)
        timesteps = _finite(result.get("timesteps"))
        if timesteps is not None:
            self._latest[trial_id] = int(min(max(timesteps, 0.0), self.timesteps))
        value = _finite(result.get(self.metric))
        if value is not None and (
            self.best is None or (value > self.best if self.mode == "max" else value < self.best)
        ):
            self.best, self.best_trial = value, trial_id
        self._refresh()

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, failed=False)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._end(trial, failed=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.close()

    def close(self) -> None:
        """Show the final state and close the bar (again: nothing)."""
        if self._closed:
            return
        self._refresh()
        if self.bar is not None:
            self.bar.close()
        self._closed = True

    # internals

    def _end(self, trial: Any, failed: bool) -> None:
        trial_id = _trial_id(trial)
        self._ended[trial_id] = self._latest.setdefault(trial_id, 0)
        if failed:
            self._failed.add(trial_id)
        self._refresh()

    def _refresh(self) -> None:
        if self._closed:
            return
        total = self.total
        if self.bar is None:
            if not total:
                return  # no trial known yet: no bar before there is something to count
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, **self._bar_options)
        bar = self.bar
        if bar.total != total:
            bar.total = total
            container = getattr(bar, "container", None)  # tqdm.notebook's widget keeps its own maximum
            if container is not None and len(getattr(container, "children", ())) == 3:
                container.children[1].max = total
        delta = self.position - bar.n
        bar.update(delta)  # tqdm takes a negative step too (a PBT restart), but redraws only going forward
        postfix = {}
        if self.best is not None:
            postfix[_short(self.metric)] = _format(self.best)
        postfix["ended"] = f"{len(self._ended)}/{self.trials}"
        if self._failed:
            postfix["failed"] = len(self._failed)
        bar.set_postfix(postfix, refresh=False)
        if delta <= 0:
            bar.refresh()

    def __getstate__(self) -> dict[str, Any]:
        # Tune pickles its run configuration, callbacks included: the bar (a stream, a lock) stays here
        state = self.__dict__.copy()
        state["bar"] = None
        return state


def _trial_id(trial: Any) -> str:
    return str(getattr(trial, "trial_id", trial))


def _finite(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _short(metric: str) -> str:
    """``rollout/ep_return_mean`` -> ``best ep_return_mean``."""
    return "best " + metric.rsplit("/", 1)[-1]


def _format(value: float) -> str:
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3g}"
