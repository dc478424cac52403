"""A notebook dashboard for a running sweep, fed by Ray Tune's results (the ``sweep`` extra).

:class:`SweepMonitor` keeps what the results say (each trial's learning curve, configuration
and status, and the PBT lineage trials report, see :mod:`acktr_lab.sweep.trial`).
:class:`SweepDashboard` gets every result as Tune delivers it (through its ``callback``, a
Tune ``Callback``) and shows:

- each trial's learning curve, coloured by a chosen hyperparameter (a colour bar for
  numbers, a legend otherwise);
- the leaderboard: trials by their latest ``metric``, with configuration, steps and status;
- the PBT lineage of the current best trial: whose checkpoint it continued from, and when;
- a trial picker and a **Stop trial** button: the dashboard is also a Tune ``Stopper``.

:meth:`SweepDashboard.start` runs the sweep in a background thread, so the kernel stays free
while it runs; the plot is a PNG in an ``ipywidgets.Image`` (see the design notes), redrawn at
most every ``redraw_interval`` seconds from Tune's thread.
"""

from __future__ import annotations

import html
import math
import threading
import time
import weakref
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from ray.tune import Callback, Stopper

from acktr_lab.plots import figure_png

__all__ = ["SweepDashboard", "SweepMonitor", "TrialRecord"]


@dataclass
class TrialRecord:
    """What the results say about one trial."""

    trial_id: str
    config: dict[str, Any]
    status: str = "running"
    timesteps: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    #: ``(timesteps, parent trial)`` for every restore from another trial's checkpoint (PBT's exploits).
    exploits: list[tuple[float, str]] = field(default_factory=list)

    @property
    def latest(self) -> float:
        return self.values[-1] if self.values else math.nan


class SweepMonitor:
    """Trials' curves, configurations, statuses and lineage, from Tune's results (thread-safe)."""

    def __init__(self, metric: str = "rollout/ep_return_mean", mode: str = "max") -> None:
        self.metric, self.mode = metric, mode
        self.trials: dict[str, TrialRecord] = {}
        self._lock = threading.Lock()

    def record(self, trial_id: str, config: Mapping[str, Any], result: Mapping[str, Any]) -> None:
        """One result of a trial. A result whose ``pbt/parent`` names another trial for the
        first time since its last restore marks an exploit."""
        with self._lock:
            trial = self.trials.setdefault(trial_id, TrialRecord(trial_id, dict(config)))
            trial.config = dict(config)
            steps, value = result.get("timesteps"), result.get(self.metric)
            if steps is None or value is None or not np.isfinite(value):
                return
            parent, at = str(result.get("pbt/parent", "") or ""), float(result.get("pbt/parent_timesteps", 0.0))
            if parent and parent != trial_id and (not trial.exploits or trial.exploits[-1] != (at, parent)):
                trial.exploits.append((at, parent))
                trial.timesteps.append(math.nan)  # a break in the curve where it jumps to the parent's state
                trial.values.append(math.nan)
            trial.timesteps.append(float(steps))
            trial.values.append(float(value))

    def set_status(self, trial_id: str, status: str) -> None:
        with self._lock:
            if trial_id in self.trials:
                self.trials[trial_id].status = status

    def leaderboard(self) -> list[TrialRecord]:
        """Trials by their latest value of the metric, best first (trials with none last)."""
        with self._lock:
            trials = list(self.trials.values())
        sign = -1.0 if self.mode == "max" else 1.0
        return sorted(trials, key=lambda t: (math.isnan(t.latest), sign * np.nan_to_num(t.latest)))

    def lineage(self, trial_id: str) -> list[tuple[str, float]]:
        """``[(trial, since timesteps), ...]`` back from ``trial_id``: each step names the trial
        whose checkpoint the previous one continued from, and when that checkpoint was taken."""
        chain: list[tuple[str, float]] = [(trial_id, math.inf)]
        seen = {trial_id}
        before = math.inf
        while True:
            trial = self.trials.get(chain[-1][0])
            restores = [(at, parent) for at, parent in (trial.exploits if trial else []) if at < before]
            if not restores:
                return chain
            at, parent = restores[-1]
            if parent in seen:
                return chain
            seen.add(parent)
            chain.append((parent, at))
            before = at


class _StopRequests(Stopper):
    """A Tune stopper that stops the trials the dashboard was asked to stop."""

    def __init__(self) -> None:
        self.requested: set[str] = set()

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        return trial_id in self.requested

    def stop_all(self) -> bool:
        return False


#: Live dashboards by key, for :class:`_Feed` (weakly: a dashboard nobody holds goes away).
_DASHBOARDS: weakref.WeakValueDictionary[int, SweepDashboard] = weakref.WeakValueDictionary()


class _Feed(Callback):
    """The Tune callback that hands results to a dashboard of this process. Tune pickles its
    callbacks with the experiment; this one pickles as a key, and a copy in another process
    (one that resumes the experiment) feeds nothing."""

    def __init__(self, key: int) -> None:
        self.key = key

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        if (dashboard := _DASHBOARDS.get(self.key)) is not None:
            dashboard.on_trial_result(iteration, trials, trial, result)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (dashboard := _DASHBOARDS.get(self.key)) is not None:
            dashboard.on_trial_complete(iteration, trials, trial)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if (dashboard := _DASHBOARDS.get(self.key)) is not None:
            dashboard.on_trial_error(iteration, trials, trial)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if (dashboard := _DASHBOARDS.get(self.key)) is not None:
            dashboard.on_experiment_end(trials)


class SweepDashboard:
    """Live curves, leaderboard, lineage and stop buttons for a sweep (see the module doc).

    Pass it to :func:`acktr_lab.sweep.run` as ``callbacks=[dashboard.callback],
    stop=dashboard.stopper``, or let :meth:`start` do that in a background thread.
    ``color_by`` names the searched argument that colours the curves.
    """

    def __init__(
        self,
        color_by: str,
        metric: str = "rollout/ep_return_mean",
        mode: str = "max",
        redraw_interval: float = 0.5,
        leaderboard_rows: int = 8,
    ) -> None:
        self.color_by = color_by
        self.monitor = SweepMonitor(metric, mode)
        self.stopper = _StopRequests()
        self.redraw_interval = float(redraw_interval)
        self.leaderboard_rows = int(leaderboard_rows)
        self.future: Future[Any] | None = None
        self._last_draw = -math.inf
        _DASHBOARDS[id(self)] = self
        #: The Tune callback that feeds this dashboard (picklable, as Tune requires).
        self.callback = _Feed(id(self))
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.table = widgets.HTML()
        self.lineage_view = widgets.HTML()
        self.trial_picker = widgets.Dropdown(description="trial", options=[], layout=widgets.Layout(width="260px"))
        self.stop_button = widgets.Button(description="Stop trial", button_style="warning", icon="stop")
        self.stop_button.on_click(lambda _: self.stop_trial(self.trial_picker.value))
        self.status = widgets.HTML("waiting for the first results")
        self.widget = widgets.VBox(
            [
                self.status,
                self.image,
                widgets.HBox([self.trial_picker, self.stop_button]),
                widgets.HBox([self.table, self.lineage_view]),
            ]
        )

    # -- Tune's callback hooks (Tune's thread) ---------------------------------------------
    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        self.monitor.record(trial.trial_id, trial.config, result)
        self.refresh(force=False)

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.monitor.set_status(trial.trial_id, "stopped" if trial.trial_id in self.stopper.requested else "done")
        self.refresh(force=True)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.monitor.set_status(trial.trial_id, "error")
        self.refresh(force=True)

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.refresh(force=True)

    # -- the user's controls (the kernel's thread) ------------------------------------------
    def stop_trial(self, trial_id: str | None) -> None:
        """Ask Tune to stop ``trial_id`` at its next result."""
        if trial_id:
            self.stopper.requested.add(trial_id)
            self.monitor.set_status(trial_id, "stopping")
            self.refresh(force=True)

    def start(self, **run_kwargs: Any) -> Future[Any]:
        """Run :func:`acktr_lab.sweep.run` in a background thread with this dashboard attached;
        the future holds its :class:`~acktr_lab.sweep.SweepResult` (or its exception)."""
        from acktr_lab.sweep import run

        future: Future[Any] = Future()

        def target() -> None:
            try:
                future.set_result(
                    run(callbacks=[self.callback, *run_kwargs.pop("callbacks", [])], stop=self.stopper, **run_kwargs)
                )
            except BaseException as error:  # surfaced through the future, and shown
                self.status.value = f"<b>the sweep failed:</b> {html.escape(str(error))[:500]}"
                future.set_exception(error)

        threading.Thread(target=target, name="acktr_lab-sweep", daemon=True).start()
        self.future = future
        return future

    # -- drawing ----------------------------------------------------------------------------
    def refresh(self, force: bool = False) -> None:
        """Redraw (at most every ``redraw_interval`` seconds unless ``force``)."""
        now = time.monotonic()
        if not force and now - self._last_draw < self.redraw_interval:
            return
        self._last_draw = now
        board = self.monitor.leaderboard()
        running = [t.trial_id for t in board if t.status in ("running",)]
        if list(self.trial_picker.options) != running:
            self.trial_picker.options = running
        self.image.value = figure_png(self.figure(board))
        self.table.value = self.leaderboard_html(board)
        self.lineage_view.value = self.lineage_html(board[0].trial_id) if board else ""
        counts = {s: sum(t.status == s for t in board) for s in ("running", "done", "stopped", "error")}
        self.status.value = " · ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trials yet"

    def figure(self, board: list[TrialRecord]) -> Figure:
        """The learning curves, coloured by ``color_by``."""
        figure = Figure(figsize=(9, 3.6), layout="constrained")
        axes = figure.add_subplot()
        values = [t.config.get(self.color_by) for t in board]
        numeric = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if numeric and len(numeric) == len(values):
            log = min(numeric) > 0 and max(numeric) / min(numeric) > 20
            scale = (
                Normalize(math.log10(min(numeric)), math.log10(max(numeric)))
                if log
                else Normalize(min(numeric), max(numeric))
            )
            cmap = colormaps["viridis"]
            for trial, value in zip(board, numeric, strict=True):
                colour = cmap(scale(math.log10(value) if log else value))
                axes.plot(trial.timesteps, trial.values, color=colour, linewidth=1.2)
            bar = figure.colorbar(ScalarMappable(norm=scale, cmap=cmap), ax=axes)
            bar.set_label(f"log10 {self.color_by}" if log else self.color_by)
        else:
            labels = sorted({str(v) for v in values})
            for trial, value in zip(board, values, strict=True):
                axes.plot(trial.timesteps, trial.values, color=f"C{labels.index(str(value)) % 10}", linewidth=1.2)
            for index, label in enumerate(labels):
                axes.plot([], [], color=f"C{index % 10}", label=f"{self.color_by}={label}")
            if labels:
                axes.legend(fontsize="small")
        axes.set(xlabel="timesteps", ylabel=self.monitor.metric, title=f"{len(board)} trials")
        return figure

    def leaderboard_html(self, board: list[TrialRecord]) -> str:
        keys = sorted({k for t in board for k in t.config})
        head = "".join(f"<th>{html.escape(k)}</th>" for k in ("trial", *keys, "steps", self.monitor.metric, "status"))
        rows = []
        for trial in board[: self.leaderboard_rows]:
            cells = [trial.trial_id, *(_short(trial.config.get(k)) for k in keys)]
            cells += [f"{trial.timesteps[-1]:,.0f}" if trial.timesteps else "", f"{trial.latest:.1f}", trial.status]
            rows.append("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in cells) + "</tr>")
        return f"<b>Leaderboard</b><table><tr>{head}</tr>{''.join(rows)}</table>"

    def lineage_html(self, trial_id: str) -> str:
        chain = self.monitor.lineage(trial_id)
        if len(chain) == 1:
            return f"<b>Lineage of the best ({html.escape(trial_id)})</b><br>its own checkpoints only"
        steps = [html.escape(chain[0][0])]
        steps += [f"← {html.escape(parent)} (checkpoint at {at:,.0f} steps)" for parent, at in chain[1:]]
        return f"<b>Lineage of the best</b><br>{'<br>'.join(steps)}"

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)[:40]
