"""The panels of the training figure: each a small object that says what it needs and how it draws.

A :class:`Panel` names the per-update values it needs recorded (``fields``: an
:class:`~acktr_lab.report.UpdateReport` attribute or a ``report.metrics`` name such as
``kfac/grad_norm``), builds its artists once on its axis (:meth:`Panel.setup`) and moves
the figure's recorded data into them on every frame (:meth:`Panel.draw`). The figure
(:class:`~acktr_lab.plots.TrainingPlots`) records the data every panel shares: ``history``
(one row per update, a column per field), ``episodes``, ``spectra``, ``eigen_extremes``,
``changes``, ``lr_curve`` and ``pretrain_history``. Adding a panel is one class::

    class GradNorm(Panel):
        name, title, fields = "grad_norm", "gradient norm", ("kfac/grad_norm",)

        def setup(self, axis, plots):
            (self.lines["norm"],) = axis.plot([], [], "-")

        def draw(self, axis, plots):
            self.lines["norm"].set_data(plots.history.array("timesteps"), plots.history.array("kfac/grad_norm"))

    TrainingPlots(panels=[*default_panels(), GradNorm()])
"""

from __future__ import annotations

import math
from typing import Any, Protocol

import numpy as np
from matplotlib.axes import Axes
from matplotlib.colors import to_rgb
from matplotlib.lines import Line2D


class TrainingPlots(Protocol):
    """What a panel reads from its figure (:class:`acktr_lab.plots.TrainingPlots`; not
    imported here, it imports this module): the records every panel shares."""

    history: Any  # BoundedHistory: one row per update, a column per field
    episodes: Any  # BoundedHistory: timesteps, return, length, smoothed_return, smoothed_length
    pretrain_history: Any  # BoundedHistory: epoch, train_loss, val_loss
    spectra: dict[str, Any]  # layer → latest FactorEigenvalues
    eigen_extremes: dict[str, Any]  # layer → BoundedHistory of a_max, a_min, g_max, g_min
    lr_curve: tuple[np.ndarray, np.ndarray] | None
    kfac_start: int | None
    smoothing_window: int

    def layer_color(self, layer: str) -> str: ...


def positive(values: np.ndarray) -> np.ndarray:
    """Non-positive and non-finite values as NaN (gaps on a log axis)."""
    values = np.asarray(values, dtype=float)
    return np.where(np.isfinite(values) & (values > 0), values, np.nan)


_RAW_ALPHA = 0.35  # per-update values, drawn faintly under their moving average


def darker(color: str) -> tuple[float, float, float]:
    red, green, blue = to_rgb(color)
    return (0.7 * red, 0.7 * green, 0.7 * blue)


def moving_average(values: np.ndarray, *, log: bool = False, fraction: float = 0.025) -> np.ndarray:
    """Centred moving average over about ``fraction`` of the points, ignoring NaNs (a
    geometric mean with ``log``). Points whose window holds no finite value stay NaN."""
    values = np.asarray(values, dtype=float)
    if log:
        with np.errstate(divide="ignore", invalid="ignore"):
            values = np.log(values)
    window = max(1, round(len(values) * fraction)) | 1  # odd
    if window == 1 or len(values) == 0:
        smooth = values.copy()
    else:
        finite = np.isfinite(values)
        kernel = np.ones(window)
        sums = np.convolve(np.where(finite, values, 0.0), kernel, mode="same")
        counts = np.convolve(finite.astype(float), kernel, mode="same")
        with np.errstate(divide="ignore", invalid="ignore"):
            smooth = np.where(counts > 0, sums / counts, np.nan)
        smooth[~finite] = np.nan  # keep the gaps (e.g. the cold start) visible
    return np.exp(smooth) if log else smooth


def sorted_spectrum(eigenvalues: np.ndarray) -> np.ndarray:
    """Eigenvalues in descending order, non-positive ones as NaN (a log axis)."""
    return positive(np.sort(np.asarray(eigenvalues, dtype=float).ravel())[::-1])


class Panel:
    """One plot of the training figure. Subclasses set ``name`` (unique, the key of
    ``plots.axes``), ``title``, ``fields`` (per-update values to record) and implement
    :meth:`setup` and :meth:`draw`. ``lines`` holds the panel's named artists.

    Class attributes for the figure: ``steps_axis`` (x is timesteps: engineering ticks),
    ``change_lines`` (draw the manual-change markers here), ``fixed_ylim`` (keep the y
    limits ``setup`` chose)."""

    name: str = ""
    title: str = ""
    fields: tuple[str, ...] = ()
    steps_axis: bool = True
    change_lines: bool = False
    fixed_ylim: bool = False

    def __init__(self) -> None:
        self.lines: dict[str, Line2D] = {}

    def attach(self, trainer: Any) -> None:
        """Called by a dashboard with the trainer it shows, before the first update: a panel
        that needs the run to measure something asks for it here (default: nothing)."""

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        """Create the artists (once)."""
        raise NotImplementedError

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        """Move the recorded data into the artists (every frame; no rendering)."""
        raise NotImplementedError

    def draw_comparison(self, axis: Axes, records: TrainingPlots, label: str, color: str) -> None:
        """Overlay another run's records (:meth:`TrainingPlots.compare`); panels that cannot
        compare runs draw nothing."""

    def comparison_line(self, axis: Axes, label: str, color: str) -> Line2D:
        """The (dashed) line of comparison ``label`` on this panel, made on first use."""
        lines = self.__dict__.setdefault("comparison_lines", {})
        if label not in lines:
            (lines[label],) = axis.plot([], [], "--", lw=1.3, color=color, label=label)
            main = self.lines.get("smooth") or self.lines.get("raw") or self.lines.get("lr_used")
            if main is not None and main.get_label().startswith("_"):
                main.set_label("this run")
            axis.legend(fontsize=6, loc="best", framealpha=0.6)
        return lines[label]


class ScalarPanel(Panel):
    """One per-update value over timesteps, faint per update under its moving average."""

    def __init__(
        self,
        name: str,
        title: str,
        field: str | None = None,
        *,
        color: str = "C0",
        log: bool = False,
        smooth: bool = True,
        clip: tuple[float, float] | None = None,
    ) -> None:
        super().__init__()
        self.name, self.title, self.field = name, title, field or name
        self.fields = (self.field,)
        self.color, self.log, self.smooth, self.clip = color, log, smooth, clip
        self.fixed_ylim = clip is not None

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        alpha, width = (_RAW_ALPHA, 0.8) if self.smooth else (1.0, 1.0)
        (self.lines["raw"],) = axis.plot([], [], "-", lw=width, color=self.color, alpha=alpha)
        if self.smooth:
            (self.lines["smooth"],) = axis.plot([], [], "-", lw=1.4, color=darker(self.color))
        if self.log:
            axis.set_yscale("log")
        if self.clip is not None:
            low, high = self.clip
            margin = 0.025 * (high - low)
            axis.set_ylim(low - margin, high + margin)
            axis.axhline(0.0, color="0.5", lw=0.6)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        steps = plots.history.array("timesteps")
        values = plots.history.array(self.field)
        if self.clip is not None:
            values = np.clip(values, *self.clip)
        if self.log:
            values = positive(values)
        self.lines["raw"].set_data(steps, values)
        if self.smooth:
            self.lines["smooth"].set_data(steps, moving_average(values, log=self.log))

    def draw_comparison(self, axis: Axes, records: TrainingPlots, label: str, color: str) -> None:
        if self.field not in records.history:
            return
        values = records.history.array(self.field)
        if self.clip is not None:
            values = np.clip(values, *self.clip)
        if self.log:
            values = positive(values)
        smooth = moving_average(values, log=self.log) if self.smooth else values
        self.comparison_line(axis, label, color).set_data(records.history.array("timesteps"), smooth)


class ReturnsPanel(Panel):
    """Episode returns (points, spread over each rollout) and their rolling mean."""

    name, title, change_lines = "returns", "episode return", True

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        (self.lines["raw"],) = axis.plot([], [], ".", ms=2.5, alpha=0.35, color="C0", label="episode")
        (self.lines["smooth"],) = axis.plot(
            [], [], "-", lw=1.6, color="C1", label=f"mean of last {plots.smoothing_window}"
        )
        axis.legend(fontsize=6, loc="upper left")

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        x = plots.episodes.array("timesteps")
        self.lines["raw"].set_data(x, plots.episodes.array("return"))
        self.lines["smooth"].set_data(x, plots.episodes.array("smoothed_return"))

    def draw_comparison(self, axis: Axes, records: TrainingPlots, label: str, color: str) -> None:
        line = self.comparison_line(axis, label, color)
        line.set_data(records.episodes.array("timesteps"), records.episodes.array("smoothed_return"))


class EpisodeLengthPanel(Panel):
    name, title = "episode_length", "episode length"

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        (self.lines["raw"],) = axis.plot([], [], ".", ms=2.5, alpha=0.35, color="C0")
        (self.lines["smooth"],) = axis.plot([], [], "-", lw=1.6, color="C1")

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        x = plots.episodes.array("timesteps")
        self.lines["raw"].set_data(x, plots.episodes.array("length"))
        self.lines["smooth"].set_data(x, plots.episodes.array("smoothed_length"))

    def draw_comparison(self, axis: Axes, records: TrainingPlots, label: str, color: str) -> None:
        line = self.comparison_line(axis, label, color)
        line.set_data(records.episodes.array("timesteps"), records.episodes.array("smoothed_length"))


class TrustRegionPanel(Panel):
    """KL of each update, the trust-region scale and gᵀF⁻¹g (log), and where K-FAC starts."""

    name, title = "trust_region", "KL and trust region (log)"
    fields = ("kl", "trust_region_scale", "gfg")
    _series = (
        ("kl", "KL(old ‖ new)", "C0"),
        ("trust_region_scale", "trust-region scale", "C1"),
        ("gfg", "gᵀF⁻¹g", "C2"),
    )

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        for key, label, color in self._series:
            (self.lines[key],) = axis.plot([], [], "-", lw=0.8, color=color, alpha=_RAW_ALPHA)
            (self.lines[key + "_smooth"],) = axis.plot([], [], "-", lw=1.4, color=darker(color), label=label)
        axis.set_yscale("log")
        axis.legend(fontsize=6, loc="upper right", framealpha=0.6)
        self.kfac_line = axis.axvline(0.0, color="0.4", ls=":", lw=1.0, visible=False)
        self._drawn_kfac_start: int | None = None

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        steps = plots.history.array("timesteps")
        for key, _, _ in self._series:
            values = positive(plots.history.array(key))
            self.lines[key].set_data(steps, values)
            self.lines[key + "_smooth"].set_data(steps, moving_average(values, log=True))
        start = plots.kfac_start
        if start is not None and self._drawn_kfac_start != start:
            self.kfac_line.set_xdata([start, start])
            self.kfac_line.set_visible(True)
            axis.text(start, 0.97, " K-FAC on", transform=axis.get_xaxis_transform(), fontsize=6, color="0.4", va="top")
            self._drawn_kfac_start = start

    def draw_comparison(self, axis: Axes, records: TrainingPlots, label: str, color: str) -> None:
        kl = moving_average(positive(records.history.array("kl")), log=True)
        self.comparison_line(axis, f"{label}: KL", color).set_data(records.history.array("timesteps"), kl)


class LearningRatePanel(Panel):
    """The schedule over the whole run under the current settings, the rate each update
    used, where the run is now, and the manual changes (labelled)."""

    name, title, fields, change_lines = "learning_rate", "learning rate", ("learning_rate",), True

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        (self.lines["lr_curve"],) = axis.plot([], [], "--", lw=1.0, color="0.55", label="schedule (current settings)")
        (self.lines["lr_used"],) = axis.plot([], [], "-", lw=1.4, color="C0", label="used")
        (self.lines["lr_now"],) = axis.plot([], [], "o", ms=6, color="C3", label="now")
        axis.legend(fontsize=6, loc="lower left", framealpha=0.6)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        steps = plots.history.array("timesteps")
        used = plots.history.array("learning_rate")
        self.lines["lr_used"].set_data(steps, used)
        if plots.lr_curve is not None:
            self.lines["lr_curve"].set_data(*plots.lr_curve)
        if len(steps):
            now_x = steps[-1]
            if plots.lr_curve is not None and len(plots.lr_curve[0]) > 1:
                now_y = float(np.interp(now_x, *plots.lr_curve))
            else:
                now_y = used[-1]
            self.lines["lr_now"].set_data([now_x], [now_y])

    def draw_comparison(self, axis: Axes, records: TrainingPlots, label: str, color: str) -> None:
        line = self.comparison_line(axis, label, color)
        line.set_data(records.history.array("timesteps"), records.history.array("learning_rate"))


class _EigenPanel(Panel):
    """A panel of per-layer Fisher eigenvalues, with a note until the first decomposition."""

    steps_axis = False

    def _note(self, axis: Axes) -> None:
        self.note = axis.text(
            0.5,
            0.5,
            "no Fisher eigenvalues yet",
            transform=axis.transAxes,
            ha="center",
            va="center",
            fontsize=8,
            color="0.5",
        )


class SpectrumPanel(_EigenPanel):
    """The latest eigenvalues of one Kronecker factor (A or G) of every layer, by rank (log-log)."""

    def __init__(self, factor: str) -> None:
        super().__init__()
        if factor not in ("A", "G"):
            raise ValueError(f"factor must be 'A' or 'G', got {factor!r}")
        self.factor = factor
        self.name = f"spectrum_{factor.lower()}"
        what = "inputs" if factor == "A" else "gradients"
        self.title = f"eigenvalues of {factor} ({what}) by rank, latest"
        #: layer → its line
        self.layer_lines: dict[str, Line2D] = {}

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        axis.set_xscale("log")
        axis.set_yscale("log")
        self._note(axis)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        for layer, factors in plots.spectra.items():
            if layer not in self.layer_lines:
                (self.layer_lines[layer],) = axis.plot([], [], "-", lw=1.2, color=plots.layer_color(layer), label=layer)
                if self.factor == "A":
                    axis.legend(fontsize=6, loc="lower left")
                self.note.set_visible(False)
            values = factors.input_factor if self.factor == "A" else factors.gradient_factor
            spectrum = sorted_spectrum(values)
            self.layer_lines[layer].set_data(np.arange(1, spectrum.size + 1), spectrum)


class ExtremesPanel(_EigenPanel):
    """The largest and smallest nonzero eigenvalue of A (solid) and G (dashed) per layer over time."""

    name, title, steps_axis = "extremes", "max / min nonzero eigenvalue", True

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        axis.set_yscale("log")
        axis.legend(
            handles=[Line2D([], [], color="0.3", ls="-", label="A"), Line2D([], [], color="0.3", ls="--", label="G")],
            fontsize=6,
            loc="upper left",
        )
        self.layer_lines: dict[str, tuple[Line2D, ...]] = {}
        self._note(axis)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        for layer, history in plots.eigen_extremes.items():
            if layer not in self.layer_lines:
                color = plots.layer_color(layer)
                self.layer_lines[layer] = tuple(
                    axis.plot([], [], style, lw=1.0, color=color)[0] for style in ("-", "-", "--", "--")
                )
                self.note.set_visible(False)
            x = history.array("timesteps")
            for line, key in zip(self.layer_lines[layer], ("a_max", "a_min", "g_max", "g_min")):
                line.set_data(x, positive(history.array(key)))


class CurvatureHealthPanel(_EigenPanel):
    """How well conditioned each layer's curvature is: the condition number (largest over
    smallest nonzero eigenvalue) of A (solid) and G (dashed) per layer over time, the
    updates K-FAC skipped marked on the time axis (red: the step was not finite, e.g. a
    damping too small; grey: a non-finite loss, gradient or statistic), and the age of the
    inverse in use (updates since its decomposition)."""

    name, title, steps_axis = "curvature_health", "condition numbers, skipped updates", True
    fields = ("kfac/inverse_age", "kfac/step_not_finite")

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        axis.set_yscale("log")
        self.layer_lines: dict[str, tuple[Line2D, Line2D]] = {}
        self._note(axis)
        self.age = axis.text(0.99, 0.02, "", transform=axis.transAxes, ha="right", va="bottom", fontsize=7)
        self._skip_marks: list[Any] = []
        self._drawn_skips = -1

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        for layer, history in plots.eigen_extremes.items():
            if layer not in self.layer_lines:
                color = plots.layer_color(layer)
                self.layer_lines[layer] = (
                    axis.plot([], [], "-", lw=1.0, color=color, label=layer)[0],
                    axis.plot([], [], "--", lw=1.0, color=color)[0],
                )
                self.note.set_visible(False)
            x = history.array("timesteps")
            with np.errstate(divide="ignore", invalid="ignore"):
                self.layer_lines[layer][0].set_data(x, positive(history.array("a_max") / history.array("a_min")))
                self.layer_lines[layer][1].set_data(x, positive(history.array("g_max") / history.array("g_min")))
        skipped = plots.history.array("skipped") > 0
        if int(skipped.sum()) != self._drawn_skips:
            for mark in self._skip_marks:
                mark.remove()
            steps = plots.history.array("timesteps")[skipped]
            step_problem = plots.history.array("kfac/step_not_finite")[skipped] > 0
            self._skip_marks = [
                axis.axvline(x, color="C3" if bad_step else "0.5", lw=0.8, alpha=0.8)
                for x, bad_step in zip(steps[-50:], step_problem[-50:])
            ]
            self._drawn_skips = int(skipped.sum())
        ages = plots.history.array("kfac/inverse_age")
        if len(ages) and np.isfinite(ages[-1]):
            self.age.set_text(f"inverse age: {ages[-1]:.0f} updates · skipped: {int(skipped.sum())}")


class UpdateCostPanel(Panel):
    """What an update costs, part by part (:mod:`acktr_lab.update_cost`): milliseconds per
    update spent on curvature statistics, decompositions, preconditioning and the rest,
    stacked (each line is the running total up to that part; moving averages, so a part that
    runs every ``kfac_update``-th update shows its cost per update), next to a plain gradient
    step on the same network (dashed). Shown on the dashboard, it asks the trainer to time
    the parts every ``every`` updates (``trainer.cost_every``)."""

    name, title, steps_axis = "update_cost", "update cost (ms per update)", True
    fields = (
        "cost/statistics_ms",
        "cost/decomposition_ms",
        "cost/preconditioning_ms",
        "cost/rest_ms",
        "cost/gradient_step_ms",
    )
    _STACK = (("statistics", "C0"), ("decomposition", "C1"), ("preconditioning", "C2"), ("rest", "C7"))

    def __init__(self, every: int = 20) -> None:
        super().__init__()
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be a positive integer, got {every!r}")
        self.every = every

    def attach(self, trainer: Any) -> None:
        if getattr(trainer, "cost_every", None) == 0:
            trainer.cost_every = self.every

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        for part, color in self._STACK:
            label = "+ rest = update" if part == "rest" else ("" if part == "statistics" else "+ ") + part
            (self.lines[part],) = axis.plot([], [], "-", lw=1.3, color=color, label=label)
        (self.lines["gradient_step"],) = axis.plot([], [], "--", lw=1.3, color="k", label="plain gradient step")
        axis.legend(fontsize=6, loc="upper left", framealpha=0.6)
        self.ratio = axis.text(0.99, 0.02, "", transform=axis.transAxes, ha="right", va="bottom", fontsize=7)
        self.note = axis.text(
            0.5, 0.5, "parts not timed yet\n(trainer.cost_every)", transform=axis.transAxes,
            ha="center", va="center", fontsize=7, color="0.5",
        )  # fmt: skip

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        steps = plots.history.array("timesteps")
        total = np.zeros(len(steps))
        for part, _ in self._STACK:
            total = total + moving_average(plots.history.array(f"cost/{part}_ms"))
            self.lines[part].set_data(steps, total)
        gradient_step = moving_average(plots.history.array("cost/gradient_step_ms"))
        self.lines["gradient_step"].set_data(steps, gradient_step)
        timed = np.isfinite(total) & np.isfinite(gradient_step) & (gradient_step > 0)
        self.note.set_visible(not timed.any())
        if timed.any():
            update, step = total[timed][-1], gradient_step[timed][-1]
            self.ratio.set_text(f"update {update:.3g} ms = {update / step:.1f}× a gradient step")


class PretrainPanel(Panel):
    """Behaviour cloning's training and validation loss by epoch (integer ticks), and a
    dashed grey line between consecutive pretraining runs: ``run_starts`` holds the epochs
    (counted over all runs) done before each run; a start after epoch 0 is drawn at
    ``start + 0.5``. ``xlabel`` labels the epoch axis (none by default)."""

    name, title, steps_axis = "pretrain", "behaviour cloning loss by epoch", False

    def __init__(self, *, xlabel: str = "") -> None:
        super().__init__()
        self.xlabel = xlabel
        #: Epochs done before each pretraining run (append one when a run begins).
        self.run_starts: list[int] = []
        #: The dashed lines between runs.
        self.separators: list[Line2D] = []
        self._drawn_starts: tuple[int, ...] = ()

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        (self.lines["bc_train"],) = axis.plot([], [], ".-", lw=1.2, ms=3, color="C0", label="train")
        (self.lines["bc_val"],) = axis.plot([], [], ".-", lw=1.2, ms=3, color="C1", label="validation")
        axis.legend(fontsize=6, loc="upper right")
        axis.locator_params(axis="x", integer=True)
        if self.xlabel:
            axis.set_xlabel(self.xlabel, fontsize=7)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        epochs = plots.pretrain_history.array("epoch")
        self.lines["bc_train"].set_data(epochs, plots.pretrain_history.array("train_loss"))
        val_loss = plots.pretrain_history.array("val_loss")
        validated = np.isfinite(val_loss)  # validation may run only every few epochs
        self.lines["bc_val"].set_data(epochs[validated], val_loss[validated])
        starts = tuple(dict.fromkeys(start for start in self.run_starts if start > 0))  # the first run needs none
        if starts != self._drawn_starts:
            for line in self.separators:
                line.remove()
            self.separators = [axis.axvline(start + 0.5, color="0.6", lw=0.8, ls="--") for start in starts]
            self._drawn_starts = starts


class EvaluationPanel(Panel):
    """Deterministic evaluations of a policy, side by side in the order they were made:
    each one's episode returns as faint dots, their mean ± std as an error bar, the
    expert's mean return as a dashed green line, and the evaluations' labels as x ticks
    (at most ``max_labels``, evenly picked, so they do not overlap). Before the first
    evaluation it shows ``empty_note``.

    The panel holds its data (:meth:`show`, plain labels and numbers) and redraws only
    when they changed."""

    name, title, steps_axis = "evaluation", "evaluation (deterministic)", False
    max_labels = 5

    def __init__(self, *, empty_note: str = "no evaluation yet") -> None:
        super().__init__()
        self.empty_note = empty_note
        #: Each evaluation's label, and its episode returns.
        self.labels: tuple[str, ...] = ()
        self.returns: tuple[tuple[float, ...], ...] = ()
        #: The expert's mean return (``None``: no line).
        self.expert_mean: float | None = None
        #: The ``ErrorbarContainer`` of mean ± std (``None`` before the first evaluation).
        self.errorbars: Any = None
        self.note: Any = None
        self._artists: list[Any] = []
        self._version = 0
        self._drawn_version = -1

    def show(
        self,
        evaluations: list[tuple[str, tuple[float, ...] | list[float]]],
        expert_mean: float | None = None,
        env_label: str | None = None,
    ) -> None:
        """Set what is drawn: ``(label, episode returns)`` of each evaluation, the expert's
        mean return, and the env evaluated on (in the title). Nothing is redrawn when
        they are what the panel already holds."""
        labels = tuple(str(label) for label, _ in evaluations)
        returns = tuple(tuple(float(value) for value in values) for _, values in evaluations)
        expert = None if expert_mean is None else float(expert_mean)
        title = f"evaluation on {env_label} (deterministic)" if env_label else type(self).title
        if (labels, returns, expert, title) != (self.labels, self.returns, self.expert_mean, self.title):
            self.labels, self.returns, self.expert_mean, self.title = labels, returns, expert, title
            self._version += 1

    @property
    def means(self) -> np.ndarray:
        """Mean return of each evaluation."""
        return np.array([np.mean(values) if values else np.nan for values in self.returns], dtype=float)

    @property
    def stds(self) -> np.ndarray:
        """Standard deviation of the returns of each evaluation."""
        return np.array([np.std(values) if values else np.nan for values in self.returns], dtype=float)

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        axis.set_ylabel("episode return", fontsize=7)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        if self._drawn_version == self._version:
            return
        for artist in self._artists:
            artist.remove()
        self._artists, self.lines, self.errorbars, self.note = [], {}, None, None
        axis.set_title(self.title, fontsize=9, y=1.0, pad=3)
        if self.expert_mean is not None:
            self.lines["expert"] = axis.axhline(
                self.expert_mean, color="C2", lw=1.2, ls="--", label=f"expert {self.expert_mean:.1f}"
            )
            self._artists.append(self.lines["expert"])
        if self.returns:
            x = np.arange(len(self.returns))
            dots_x = [i for i, values in enumerate(self.returns) for _ in values]
            dots_y = [value for values in self.returns for value in values]
            (self.lines["episodes"],) = axis.plot(dots_x, dots_y, ".", color="C0", alpha=0.35, ms=4)
            self.errorbars = axis.errorbar(
                x, self.means, yerr=self.stds, fmt="o", color="C3", capsize=4, label="mean ± std"
            )
            self.lines["mean"] = self.errorbars.lines[0]
            self._artists += [self.lines["episodes"], self.errorbars]
            every = max(1, math.ceil(len(x) / self.max_labels))
            axis.set_xticks(x[::every], self.labels[::every], fontsize=7)
            axis.set_xlim(-0.5, len(x) - 0.5)
        else:
            axis.set_xticks([])
            axis.set_xlim(-0.5, 0.5)
            self.note = axis.text(
                0.5, 0.5, self.empty_note, transform=axis.transAxes, ha="center", va="center", color="0.5"
            )
            self._artists.append(self.note)
        if "expert" in self.lines or self.returns:
            axis.legend(fontsize=6, loc="best")
        elif axis.get_legend() is not None:
            axis.get_legend().remove()
        self._drawn_version = self._version


class RecordsOnly(Panel):
    """No drawing: records ``fields`` (a comparison run's records, say)."""

    name, title = "records", ""

    def __init__(self, fields: tuple[str, ...] = ()) -> None:
        super().__init__()
        self.fields = tuple(fields)

    def setup(self, axis: Axes, plots: TrainingPlots) -> None:
        axis.set_visible(False)

    def draw(self, axis: Axes, plots: TrainingPlots) -> None:
        pass


def default_panels(pretrain: bool = False) -> list[Panel]:
    """The dashboard's twelve panels: returns, policy loss, value loss, entropy; explained
    variance, KL and trust region, learning rate, fps; the spectra of A and G, the extreme
    eigenvalues, and episode length (behaviour-cloning loss with ``pretrain``)."""
    return [
        ReturnsPanel(),
        ScalarPanel("policy_loss", "policy loss", color="C0"),
        ScalarPanel("value_loss", "value loss (log)", color="C3", log=True),
        ScalarPanel("entropy", "policy entropy", color="C2"),
        ScalarPanel("explained_variance", "explained variance (clipped to [-1, 1])", color="C4", clip=(-1.0, 1.0)),
        TrustRegionPanel(),
        LearningRatePanel(),
        ScalarPanel("fps", "throughput (fps)", color="C7", smooth=False),
        SpectrumPanel("A"),
        SpectrumPanel("G"),
        ExtremesPanel(),
        PretrainPanel() if pretrain else EpisodeLengthPanel(),
    ]


def panel_field(report: Any, field: str) -> float:
    """A panel field of a report: an attribute, or a ``report.metrics`` name (NaN if absent)."""
    value = getattr(report, field, None) if "/" not in field else None
    if value is None:
        value = report.metrics.get(field, math.nan)
    return float(value)
