"""Training plots drawn with plain matplotlib: no pyplot, no ipywidgets, no kernel needed.

:class:`TrainingPlots` consumes :class:`~acktr_lab.report.UpdateReport` (and, when built
with ``pretrain=True``, :class:`~acktr_lab.report.PretrainReport`) and draws its panels
(:mod:`acktr_lab.panels`; by default the twelve of :func:`~acktr_lab.panels.default_panels`,
or any list, four to a row) on a :class:`matplotlib.figure.Figure` with an Agg canvas. The
layout is built once; every :meth:`TrainingPlots.draw` only moves data into existing artists
(``set_data``) and rescales (``relim``/``autoscale_view``). :meth:`TrainingPlots.render_png`
returns PNG bytes (what the notebook dashboard shows in an ``ipywidgets.Image``) and
:meth:`TrainingPlots.save` writes them to a file, so the same plots work in scripts::

    plots = TrainingPlots(learning_rate_curve=trainer.learning_rate_curve)
    for report in trainer:
        plots.add(report)
    plots.save("training.png")

Histories are bounded (:class:`BoundedHistory`): long runs are thinned to an even stride,
always keeping the newest point.
"""

from __future__ import annotations

import io
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, LogLocator, MaxNLocator, NullLocator

from acktr_lab import hyperparameters as hp
from acktr_lab.history import load_history
from acktr_lab.panels import Panel, PretrainPanel, RecordsOnly, default_panels, panel_field
from acktr_lab.report import SCALAR_FIELDS, FactorEigenvalues, PretrainReport, UpdateReport

__all__ = ["LR_SETTINGS", "BoundedHistory", "TrainingPlots", "figure_png", "same_value", "show_figure"]

#: Hyperparameters whose change alters the learning-rate curve.
LR_SETTINGS = frozenset({"learning_rate", "lr_schedule"})

#: How many manual-change markers are drawn (the newest ones; all stay in ``changes``).
_MAX_CHANGE_MARKERS = 25

#: Short names for the change labels on the learning-rate panel (from the hyperparameters' definitions).
_ABBREVIATIONS = {name: control.short for name, control in hp.LIVE_CONTROLS.items()}

#: Colours of compared runs (the run's own lines use C0-C4 and C7).
_COMPARISON_COLORS = ("C6", "C8", "C9", "C5", "k")

#: One column per scalar field of a report (the run's length is in ``total_timesteps``).
_UPDATE_COLUMNS = tuple(name for name in SCALAR_FIELDS if name != "total_timesteps")


def figure_png(figure: Figure) -> bytes:
    """A matplotlib figure as PNG bytes (tight bounding box)."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    return buffer.getvalue()


def show_figure(figure: Figure) -> None:
    """Display a figure in a notebook as a static PNG: a plain ``Figure`` (no pyplot) has no
    notebook display of its own, and a PNG stays in the saved notebook."""
    from IPython.display import Image, display

    display(Image(figure_png(figure)))


class BoundedHistory:
    """Equal-length columns of floats holding at most ``max_points`` rows.

    Rows are kept on an even stride (every ``stride``-th row appended, starting with the
    first); the newest row is always kept too, so ``history[name][-1]`` is the latest
    value. When the kept rows exceed ``max_points`` the stride doubles and every other
    kept row is dropped.
    """

    def __init__(self, columns: Sequence[str], max_points: int = 2000) -> None:
        if max_points < 4:
            raise ValueError(f"max_points must be at least 4, got {max_points}")
        self.max_points = int(max_points)
        self.stride = 1
        self.total = 0  # rows ever appended
        self._columns: dict[str, list[float]] = {name: [] for name in columns}
        self._index: list[int] = []  # the append count of each kept row

    def append(self, **values: float) -> None:
        """Append one row; every column must be given."""
        if set(values) != set(self._columns):
            missing = sorted(set(self._columns) - set(values))
            extra = sorted(set(values) - set(self._columns))
            raise ValueError(f"row does not match the columns (missing {missing}, unknown {extra})")
        if self._index and self._index[-1] % self.stride:
            self._drop_last()  # the previous newest row was off the stride
        for name, value in values.items():
            self._columns[name].append(value)
        self._index.append(self.total)
        self.total += 1
        if len(self._index) > self.max_points:
            self._thin()

    def _drop_last(self) -> None:
        self._index.pop()
        for column in self._columns.values():
            column.pop()

    def _thin(self) -> None:
        self.stride *= 2
        last = len(self._index) - 1
        keep = [i for i, n in enumerate(self._index) if n % self.stride == 0 or i == last]
        self._index = [self._index[i] for i in keep]
        for name, column in self._columns.items():
            self._columns[name] = [column[i] for i in keep]

    def __getitem__(self, name: str) -> list[float]:
        return self._columns[name]

    def __contains__(self, name: object) -> bool:
        return name in self._columns

    def __len__(self) -> int:
        return len(self._index)

    def keys(self) -> list[str]:
        """The column names."""
        return list(self._columns)

    def array(self, name: str) -> np.ndarray:
        """A column as a float array."""
        return np.asarray(self._columns[name], dtype=float)


def same_value(old: Any, new: Any) -> bool:
    """Equal hyperparameter values (NaN equals NaN; uncomparable values by identity)."""
    if isinstance(old, float) and isinstance(new, float) and math.isnan(old) and math.isnan(new):
        return True
    try:
        return bool(old == new)
    except Exception:  # e.g. arrays: compare by identity
        return old is new


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _extremes(eigenvalues: np.ndarray) -> tuple[float, float]:
    """(max, smallest nonzero) eigenvalue; NaN when there is none."""
    values = np.asarray(eigenvalues, dtype=float).ravel()
    values = values[np.isfinite(values) & (values > 0)]
    if values.size == 0:
        return math.nan, math.nan
    return float(values.max()), float(values.min())


class TrainingPlots:
    """The dashboard's figure: panels updated from reports, laid out four to a row.

    By default (:func:`~acktr_lab.panels.default_panels`): episode return (raw points +
    rolling mean), policy loss, value loss (log), entropy; explained variance, KL with the
    trust region (scale and gᵀF⁻¹g, log), learning rate (the schedule over the whole run
    under the current settings, the rate each update used, the current position and the
    manual changes), fps; Fisher-factor spectra of A and of G per layer (latest, sorted
    descending, log-log), the extreme eigenvalues (max and smallest nonzero) over
    updates, and episode length, or the behaviour-cloning loss when ``pretrain=True``.
    ``panels=[...]`` chooses and orders them (a :class:`~acktr_lab.panels.Panel` of your
    own included); each panel's ``fields`` become columns of ``history``.

    Args:
        learning_rate_curve: ``trainer.learning_rate_curve`` (or any callable returning
            ``(timesteps, learning_rate)`` arrays). Called at construction and whenever a
            report shows that ``learning_rate`` or ``lr_schedule`` changed.
        pretrain: give the last panel to behaviour cloning (:class:`PretrainReport`).
        max_points: bound of each history (see :class:`BoundedHistory`).
        smoothing_window: episodes in the rolling mean of the returns.
        figsize, dpi: the figure's size in inches (default: 3.5 × 3 per panel) and its resolution.
        panels: the panels to draw, in order (default: :func:`~acktr_lab.panels.default_panels`).
        headline: what the figure's title says, asked on every :meth:`draw` (default: the
            latest update's progress, or behaviour cloning's).
        gridspec_kw: keyword arguments of the panels' :class:`~matplotlib.gridspec.GridSpec`
            (margins such as ``bottom``, ``top``, ``wspace``; ``width_ratios``).

    Data for tests and notebooks: ``history`` (one row per update, columns as the
    report's scalar fields), ``episodes`` (``timesteps``, ``return``, ``length``,
    ``smoothed_return``, ``smoothed_length``), ``spectra`` (latest
    :class:`FactorEigenvalues` per layer), ``eigen_extremes`` (per layer: ``timesteps``,
    ``a_max``, ``a_min``, ``g_max``, ``g_min``), ``pretrain_history``, ``changes``
    (``(timesteps, {name: (old, new)})`` per manual change, at the update boundary where
    it took effect), ``lr_curve`` and ``last_report``.
    """

    def __init__(
        self,
        *,
        learning_rate_curve: Callable[[], tuple[np.ndarray, np.ndarray]] | None = None,
        pretrain: bool = False,
        max_points: int = 2000,
        smoothing_window: int = 20,
        figsize: tuple[float, float] | None = None,
        dpi: float = 80.0,
        panels: Sequence[Panel] | None = None,
        headline: Callable[[], str] | None = None,
        gridspec_kw: Mapping[str, Any] | None = None,
    ) -> None:
        self.max_points = int(max_points)
        self.smoothing_window = int(smoothing_window)
        self.panels: list[Panel] = list(panels) if panels is not None else default_panels(pretrain)
        names = [panel.name for panel in self.panels]
        if not self.panels or len(set(names)) != len(names) or not all(names):
            raise ValueError(f"panels need distinct, non-empty names; got {names}")
        self.pretrain = bool(pretrain) or any(isinstance(panel, PretrainPanel) for panel in self.panels)
        self._lr_curve_source = learning_rate_curve
        self._headline_source = headline
        fields = [f for panel in self.panels for f in panel.fields if f not in _UPDATE_COLUMNS]
        self._recorded_fields = (*_UPDATE_COLUMNS, *dict.fromkeys(fields))
        self.history = BoundedHistory(self._recorded_fields, max_points)
        self.episodes = BoundedHistory(
            ("timesteps", "return", "length", "smoothed_return", "smoothed_length"), max_points
        )
        self.pretrain_history = BoundedHistory(("epoch", "train_loss", "val_loss"), max_points)
        self.spectra: dict[str, FactorEigenvalues] = {}
        self.eigen_extremes: dict[str, BoundedHistory] = {}
        self.changes: list[tuple[int, dict[str, tuple[Any, Any]]]] = []
        self.lr_curve: tuple[np.ndarray, np.ndarray] | None = None
        self.last_report: UpdateReport | None = None
        self.last_pretrain_report: PretrainReport | None = None
        self.kfac_start: int | None = None  # timesteps of the first K-FAC update
        self.total_timesteps: int | None = None
        self._recent_returns: deque[float] = deque(maxlen=self.smoothing_window)
        self._recent_lengths: deque[float] = deque(maxlen=self.smoothing_window)
        self._layer_colors: dict[str, str] = {}
        #: Other runs overlaid on the panels, by label (:meth:`compare`).
        self.comparisons: dict[str, TrainingPlots] = {}
        self._change_artists: list[Any] = []
        self._drawn_changes = -1
        self._build(figsize, dpi, gridspec_kw or {})
        if learning_rate_curve is not None:
            self.refresh_learning_rate_curve()

    # -- data -------------------------------------------------------------------------
    def add(self, report: UpdateReport | PretrainReport) -> None:
        """Record one report (no drawing; see :meth:`draw` and :meth:`render_png`)."""
        if isinstance(report, PretrainReport):
            self._add_pretrain(report)
            return
        if not isinstance(report, UpdateReport):
            raise TypeError(f"expected an UpdateReport or PretrainReport, got {type(report).__name__}")
        previous = self.last_report
        # where this update's rollout began (unknown for the first report: a resumed run
        # may not start at 0)
        start = previous.timesteps if previous is not None else report.timesteps
        if previous is not None:
            changed = {
                name: (previous.hyperparameters.get(name), report.hyperparameters.get(name))
                for name in sorted(set(previous.hyperparameters) | set(report.hyperparameters))
                if not same_value(previous.hyperparameters.get(name), report.hyperparameters.get(name))
            }
            if changed:
                self.changes.append((previous.timesteps, changed))
                if LR_SETTINGS & set(changed) and self._lr_curve_source is not None:
                    self.refresh_learning_rate_curve()
        self.history.append(**{name: panel_field(report, name) for name in self._recorded_fields})
        if report.kfac_step and self.kfac_start is None:
            self.kfac_start = start
        n_episodes = len(report.episode_returns)
        lengths = list(report.episode_lengths) + [math.nan] * (n_episodes - len(report.episode_lengths))
        for i, (episode_return, length) in enumerate(zip(report.episode_returns, lengths)):
            self._recent_returns.append(float(episode_return))
            if math.isfinite(length):
                self._recent_lengths.append(float(length))
            self.episodes.append(
                # spread the episodes that ended in this rollout over its timesteps
                timesteps=start + (i + 1) / n_episodes * (report.timesteps - start),
                **{"return": float(episode_return)},
                length=float(length),
                smoothed_return=float(np.mean(self._recent_returns)),
                smoothed_length=float(np.mean(self._recent_lengths)) if self._recent_lengths else math.nan,
            )
        if report.fisher_eigenvalues is not None:
            for layer, factors in report.fisher_eigenvalues.items():
                self.spectra[layer] = factors
                a_max, a_min = _extremes(factors.input_factor)
                g_max, g_min = _extremes(factors.gradient_factor)
                if layer not in self.eigen_extremes:
                    self.eigen_extremes[layer] = BoundedHistory(
                        ("timesteps", "a_max", "a_min", "g_max", "g_min"), self.max_points
                    )
                self.eigen_extremes[layer].append(
                    timesteps=float(report.timesteps), a_max=a_max, a_min=a_min, g_max=g_max, g_min=g_min
                )
        self.total_timesteps = report.total_timesteps
        self.last_report = report

    def extend(self, reports: Iterable[UpdateReport | PretrainReport]) -> None:
        """:meth:`add` each report."""
        for report in reports:
            self.add(report)

    def _add_pretrain(self, report: PretrainReport) -> None:
        if not self.pretrain:
            raise ValueError("this TrainingPlots has no behaviour-cloning panel: build it with pretrain=True")
        self.pretrain_history.append(
            epoch=float(report.epoch),
            train_loss=float(report.train_loss),
            val_loss=math.nan if report.val_loss is None else float(report.val_loss),
        )
        self.last_pretrain_report = report

    def set_learning_rate_curve(self, timesteps: np.ndarray, learning_rate: np.ndarray) -> None:
        """Set the learning-rate schedule drawn over the whole run."""
        x = np.asarray(timesteps, dtype=float)
        y = np.asarray(learning_rate, dtype=float)
        if x.shape != y.shape or x.ndim != 1:
            raise ValueError(f"timesteps and learning_rate must be 1-D of one length, got {x.shape} and {y.shape}")
        self.lr_curve = (x, y)

    def refresh_learning_rate_curve(self) -> None:
        """Ask the ``learning_rate_curve`` callable again (after a settings change)."""
        if self._lr_curve_source is not None:
            self.set_learning_rate_curve(*self._lr_curve_source())

    # -- layout -----------------------------------------------------------------------
    def _build(self, figsize: tuple[float, float] | None, dpi: float, gridspec_kw: Mapping[str, Any]) -> None:
        n_cols = min(4, len(self.panels))
        n_rows = math.ceil(len(self.panels) / n_cols)
        self.figure = Figure(figsize=figsize or (3.5 * n_cols, 3.0 * n_rows), dpi=dpi)
        self.canvas = FigureCanvasAgg(self.figure)
        height = self.figure.get_figheight()  # margins in inches: room for the headline over one row too
        self.figure.subplots_adjust(
            left=0.045, right=0.99, bottom=0.36 / height, top=1.0 - 0.63 / height, wspace=0.27, hspace=0.3
        )
        grid = self.figure.subplots(n_rows, n_cols, squeeze=False, gridspec_kw=dict(gridspec_kw))
        self.axes: dict[str, Axes] = {}
        for index, panel in enumerate(self.panels):
            self.axes[panel.name] = grid[index // n_cols][index % n_cols]
        for index in range(len(self.panels), n_rows * n_cols):
            grid[index // n_cols][index % n_cols].set_visible(False)
        self.title = self.figure.suptitle("waiting for the first update", fontsize=11, x=0.01, ha="left")
        steps = EngFormatter(sep="")
        for panel in self.panels:
            axis = self.axes[panel.name]
            axis.tick_params(labelsize=7)
            axis.grid(True, alpha=0.3, linewidth=0.5)
            if panel.steps_axis:
                axis.xaxis.set_major_formatter(steps)
            # an explicit y turns off matplotlib's per-draw title placement (slow)
            axis.set_title(panel.title, fontsize=9, y=1.0, pad=3)
            # fewer ticks render markedly faster (text dominates the cost of a frame); set
            # before setup, so a panel may still choose its own (e.g. integer ticks)
            axis.xaxis.set_major_locator(MaxNLocator(nbins=5))
            axis.yaxis.set_major_locator(MaxNLocator(nbins=5))
            panel.setup(axis, self)
            for which, scale in ((axis.xaxis, axis.get_xscale()), (axis.yaxis, axis.get_yscale())):
                if scale == "log":
                    which.set_major_locator(LogLocator(base=10, subs=(1.0,), numticks=6))
                    which.set_minor_locator(NullLocator())

    def compare(self, other: TrainingPlots | Iterable[UpdateReport] | str | PathLike[str], label: str) -> None:
        """Overlay another run on the panels that can show it (dashed, labelled ``label``):
        another :class:`TrainingPlots` (drawn as it grows: a live dashboard's plots, a
        snapshot branch's), a run's reports, or a saved run history (a path to a
        :class:`~acktr_lab.history.HistoryWriter` file). The same ``label`` again replaces it."""
        if not isinstance(label, str) or not label:
            raise ValueError(f"a comparison needs a non-empty label, got {label!r}")
        if isinstance(other, str | PathLike):
            other = load_history(other)
        if not isinstance(other, TrainingPlots):
            fields = tuple(name for name in self._recorded_fields if name not in _UPDATE_COLUMNS)
            records = TrainingPlots(panels=[RecordsOnly(fields)], max_points=self.max_points, figsize=(1.0, 1.0))
            records.extend(report for report in other if isinstance(report, UpdateReport))
            other = records
        self.comparisons[label] = other
        self._drawn_changes = -1  # redraw the markers over the new lines

    def panel(self, name: str) -> Panel:
        """The panel called ``name``."""
        for panel in self.panels:
            if panel.name == name:
                return panel
        raise KeyError(f"no panel {name!r}; panels: {[p.name for p in self.panels]}")

    def layer_color(self, layer: str) -> str:
        """One colour per layer, shared by every panel."""
        if layer not in self._layer_colors:
            self._layer_colors[layer] = f"C{len(self._layer_colors) % 10}"
        return self._layer_colors[layer]

    # -- drawing ----------------------------------------------------------------------
    @staticmethod
    def _autoscale(axis: Axes) -> None:
        axis.relim()
        limits = axis.dataLim
        if np.all(np.isfinite(limits.get_points())) and limits.width >= 0 and limits.height >= 0:
            axis.autoscale_view()

    @staticmethod
    def _log_ticks(which: Any, limits: tuple[float, float]) -> None:
        """Decades only on a wide log axis; 1-2-5 ticks on a narrow one (no minor ticks,
        which make a frame markedly slower to render)."""
        low, high = sorted(limits)
        narrow = low > 0 and math.log10(high / low) < 2.0
        subs = (1.0, 2.0, 5.0) if narrow else (1.0,)
        locator = which.get_major_locator()
        if not isinstance(locator, LogLocator) or tuple(getattr(locator, "_subs", ())) != subs:
            which.set_major_locator(LogLocator(base=10, subs=subs, numticks=6))

    def draw(self) -> None:
        """Move the recorded data into every panel's artists and rescale (no rendering)."""
        for panel in self.panels:
            panel.draw(self.axes[panel.name], self)
            for index, (label, records) in enumerate(self.comparisons.items()):
                color = _COMPARISON_COLORS[index % len(_COMPARISON_COLORS)]
                panel.draw_comparison(self.axes[panel.name], records, label, color)
        self._draw_changes()
        for panel in self.panels:
            axis = self.axes[panel.name]
            if panel.fixed_ylim:
                axis.relim()
                axis.autoscale_view(scaley=False)
            else:
                self._autoscale(axis)
            for which, limits, scale in (
                (axis.xaxis, axis.get_xlim(), axis.get_xscale()),
                (axis.yaxis, axis.get_ylim(), axis.get_yscale()),
            ):
                if scale == "log":
                    self._log_ticks(which, limits)
        self.title.set_text(self._headline_source() if self._headline_source is not None else self._headline())

    def _draw_changes(self) -> None:
        if self._drawn_changes == len(self.changes):
            return
        for artist in self._change_artists:
            artist.remove()
        self._change_artists = []
        marked = [self.axes[panel.name] for panel in self.panels if panel.change_lines]
        lr_axis = self.axes.get("learning_rate")
        for k, (timesteps, changed) in enumerate(self.changes[-_MAX_CHANGE_MARKERS:]):
            for axis in marked:
                self._change_artists.append(axis.axvline(timesteps, color="C3", ls=":", lw=0.9, alpha=0.8))
            if lr_axis is None:
                continue
            label = "\n".join(
                f"{_ABBREVIATIONS.get(name, name)} {_short(old)}→{_short(new)}" for name, (old, new) in changed.items()
            )
            self._change_artists.append(
                lr_axis.text(
                    timesteps,
                    0.97 - 0.16 * (k % 4),
                    label,
                    transform=lr_axis.get_xaxis_transform(),
                    fontsize=6,
                    color="C3",
                    ha="left",
                    va="top",
                    clip_on=True,
                    linespacing=1.0,
                )
            )
        self._drawn_changes = len(self.changes)

    def _headline(self) -> str:
        report = self.last_report
        if report is None:
            if self.last_pretrain_report is not None:
                r = self.last_pretrain_report
                return f"behaviour cloning: epoch {r.epoch}/{r.n_epochs}, train loss {r.train_loss:.4g}"
            return "waiting for the first update"
        parts = [
            f"update {report.update}",
            f"timesteps {report.timesteps:,} / {report.total_timesteps:,}",
            f"fps {report.fps:,.0f}",
            f"lr {report.learning_rate:.3g}",
        ]
        if self._recent_returns:
            parts.append(f"mean return (last {len(self._recent_returns)}) {np.mean(self._recent_returns):.4g}")
        if not report.kfac_step:
            parts.append("cold start (clipped SGD)")
        return "   ·   ".join(parts)

    @property
    def recent_returns(self) -> tuple[float, ...]:
        """The last ``smoothing_window`` episode returns."""
        return tuple(self._recent_returns)

    @property
    def mean_return(self) -> float | None:
        """Mean of the last ``smoothing_window`` episode returns (``None`` before any)."""
        return float(np.mean(self._recent_returns)) if self._recent_returns else None

    def render_png(self) -> bytes:
        """Draw and render the figure; PNG bytes."""
        self.draw()
        buffer = io.BytesIO()
        self.canvas.print_png(buffer, pil_kwargs={"compress_level": 1})
        return buffer.getvalue()

    def save(self, path: str | PathLike[str]) -> Path:
        """Write the current plots to ``path`` as a PNG; returns the path."""
        target = Path(path)
        target.write_bytes(self.render_png())
        return target

    def _repr_png_(self) -> bytes:
        return self.render_png()

    def summary(self) -> Mapping[str, Any]:
        """Latest values, for a status line."""
        report = self.last_report
        return {
            "update": None if report is None else report.update,
            "timesteps": None if report is None else report.timesteps,
            "fps": None if report is None else report.fps,
            "mean_return": self.mean_return,
        }
