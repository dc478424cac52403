"""The live training dashboard for Jupyter: plots, hyperparameter controls, Run/Pause/Step/Save.

How it stays responsive (see the design notes, "Notebooks: what works on this stack"):
**Run** starts an asyncio task on the kernel's event loop that performs one update, hands
the report to the plots and then ``await asyncio.sleep(0)``, so widget callbacks (slider
changes, Pause) run *between* updates on the same thread, with no locks and without ever
splitting an update. The plots are a plain matplotlib figure rendered to PNG into an
``ipywidgets.Image``, at most every ``redraw_interval`` seconds, which works in
JupyterLab, Notebook 7, VS Code and in executed notebooks (the last image is kept).

For notebooks executed top to bottom with no clicks (nbclient, CI) use
:meth:`Dashboard.run_blocking`, which runs the same loop synchronously.
"""

from __future__ import annotations

import asyncio
import html
import math
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import ipywidgets as widgets

from acktr_lab import hyperparameters as hp
from acktr_lab.history import HistoryWriter
from acktr_lab.hyperparameters import Control, Hyperparameter
from acktr_lab.panels import Panel
from acktr_lab.plots import LR_SETTINGS, TrainingPlots, same_value
from acktr_lab.report import Edit, PretrainReport, UpdateReport
from acktr_lab.widgets.panel import WidgetPanel

__all__ = ["LIVE_CONTROLS", "Dashboard", "TrainerLike"]


class TrainerLike(Protocol):
    """What the dashboard needs from :class:`acktr_lab.trainer.Trainer`."""

    total_timesteps: int
    model: Any

    @property
    def num_timesteps(self) -> int: ...

    @property
    def done(self) -> bool: ...

    @property
    def hyperparameters(self) -> dict[str, Any]: ...

    def step(self) -> UpdateReport: ...

    def set(self, **hyperparameters: Any) -> None: ...

    def learning_rate_curve(self, n_points: int = 200) -> tuple[Any, Any]: ...


#: The live hyperparameter controls (name → :class:`~acktr_lab.hyperparameters.Control`),
#: derived from the hyperparameters' one definition.
LIVE_CONTROLS: dict[str, Control] = hp.LIVE_CONTROLS


class Dashboard(WidgetPanel):
    """Watch and steer a step-wise trainer from a notebook.

    Args:
        trainer: a :class:`acktr_lab.trainer.Trainer` (``ACKTR(...).trainer(n)``) or anything
            following its protocol (:class:`TrainerLike`).
        redraw_interval: the least time between two renders of the plots while running
            (the plots are always rendered on pause, on finishing and after Step). When a
            render itself is slow, the interval grows so that rendering stays under
            ``render_budget`` (5%) of the time.
        pretrain: an iterable of :class:`PretrainReport` (behaviour cloning) consumed, one
            epoch per step, before the first training update; the last panel then shows
            its loss.
        hyperparameters: the definitions to draw controls from (default: ACKTR's,
            :data:`acktr_lab.hyperparameters.HYPERPARAMETERS`): one control for each live
            hyperparameter with a ``control``, in the definitions' order.
        panels: the plots to show, in order (default: :func:`acktr_lab.panels.default_panels`;
            any :class:`acktr_lab.panels.Panel`, one of your own included).
        history: a path to write every update's report to (a run history,
            :class:`acktr_lab.history.HistoryWriter`), for :meth:`compare` later.

    Attributes for notebooks and tests: ``plots`` (:class:`TrainingPlots`), ``controls``
    (name → value widget), ``gae_enabled``, ``run_button``, ``pause_button``,
    ``step_button``, ``save_button``, ``save_path``, ``status`` (HTML; ``status_text`` is the
    same line as plain text), ``image``, ``error_output`` (``Output``), ``state``
    (``ready``/``running``/``paused``/``done``/``error``), ``error`` (the last exception, or
    ``None``), ``updates`` (training updates made through this dashboard), ``renders`` and
    ``render_seconds`` (how many renders, how long the last took), ``task`` (the asyncio
    task of the last Run), ``last_report``, ``edit_log`` (every live change seen in the
    reports, as :class:`~acktr_lab.report.Edit`) and ``edit_log_view`` (HTML: the newest
    changes as a table of update, timesteps, name, old and new value). In the page, the widgets carry stable CSS
    classes: ``acktr-dashboard``, ``acktr-status``, ``acktr-image``, ``acktr-controls``, ``acktr-errors``,
    ``acktr-run``/``-pause``/``-step``/``-save``, ``acktr-save-path``, ``acktr-edit-log`` and
    ``acktr-control-<name>`` (``acktr-control-gae_enabled`` for the GAE checkbox).
    """

    state_colors: ClassVar[dict[str, str]] = {
        "ready": "#555",
        "running": "#1a7f37",
        "paused": "#9a6700",
        "done": "#0969da",
        "error": "#cf222e",
    }

    def __init__(
        self,
        trainer: TrainerLike,
        *,
        redraw_interval: float = 0.5,
        pretrain: Iterable[PretrainReport] | None = None,
        hyperparameters: Mapping[str, Hyperparameter] | None = None,
        panels: Sequence[Panel] | None = None,
        history: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__(redraw_interval)
        self.trainer = trainer
        definitions = hp.HYPERPARAMETERS if hyperparameters is None else hyperparameters
        #: The controls shown: every live hyperparameter of the definitions that has a control.
        self.control_specs: dict[str, Control] = {
            name: h.control for name, h in definitions.items() if h.live and h.control is not None
        }
        self._pretrain: Iterator[PretrainReport] | None = iter(pretrain) if pretrain is not None else None
        self.plots = TrainingPlots(
            learning_rate_curve=trainer.learning_rate_curve, pretrain=pretrain is not None, panels=panels
        )
        for panel in self.plots.panels:
            panel.attach(trainer)
        self.history = HistoryWriter(history) if history is not None else None
        self.edit_log: list[Edit] = []
        self.updates = 0
        self.pretrain_epochs = 0
        self.task: asyncio.Future[None] | None = None
        self.last_report: UpdateReport | PretrainReport | None = None
        self._pause_requested = False
        self._build()
        self._sync_controls()
        self._update_status()  # the first render happens on display or on the first update

    def compare(
        self, other: Dashboard | TrainingPlots | Iterable[UpdateReport] | str | os.PathLike[str], label: str
    ) -> None:
        """Overlay another run on the plots, labelled: another dashboard (drawn live as it
        trains), its ``plots``, a run's reports (e.g. a snapshot branch's) or a saved run
        history (a path written by ``history=`` or :class:`~acktr_lab.history.HistoryWriter`)."""
        self.plots.compare(other.plots if isinstance(other, Dashboard) else other, label)
        self._redraw(force=True)

    # -- widgets ----------------------------------------------------------------------
    def _build(self) -> None:
        current = self.trainer.hyperparameters
        self.controls: dict[str, widgets.ValueWidget] = {}
        rows: list[widgets.Widget] = []
        style = {"description_width": "110px"}
        slider_layout = widgets.Layout(width="auto", flex="1 1 auto")  # fill the grid cell
        for name, spec in self.control_specs.items():
            value = current.get(name)
            kind = spec.kind
            if kind == "log":
                low, high = spec.min, spec.max
                if isinstance(value, (int, float)) and value > 0:
                    low, high = min(low, float(value)), max(high, float(value))
                control: widgets.ValueWidget = widgets.FloatLogSlider(
                    value=float(value) if isinstance(value, (int, float)) and value > 0 else spec.min,
                    min=math.floor(math.log10(low)),
                    max=math.ceil(math.log10(high)),
                    step=spec.step,
                    base=10,
                    readout_format=spec.format,
                    continuous_update=False,
                )
            elif kind in ("linear", "optional"):
                fallback = spec.default if spec.default is not None else spec.min
                start = value if isinstance(value, (int, float)) else fallback
                control = widgets.FloatSlider(
                    value=float(start),
                    min=min(spec.min, float(start)),
                    max=max(spec.max, float(start)),
                    step=spec.step,
                    readout_format=spec.format,
                    continuous_update=False,
                )
            elif kind == "choice":
                control = widgets.Dropdown(options=list(spec.options))
            else:
                raise ValueError(f"unknown control kind {kind!r}")
            control.description = spec.label
            control.tooltip = spec.help
            control.style = style
            control.layout = slider_layout
            control.observe(self._control_observer(name), names="value")
            control.add_class(f"acktr-control-{name}")  # stable hooks for browser tests and custom CSS
            self.controls[name] = control
            if kind == "optional":
                self.gae_enabled = widgets.Checkbox(
                    value=value is not None,
                    description="",
                    indent=False,
                    tooltip=spec.help,
                    layout=widgets.Layout(width="24px"),
                )
                self.gae_enabled.observe(self._gae_toggled, names="value")
                self.gae_enabled.add_class("acktr-control-gae_enabled")
                rows.append(widgets.HBox([self.gae_enabled, control]))
            else:
                rows.append(control)
        # as many columns as fit: fixed columns wider than the notebook would scroll sideways
        grid = widgets.Layout(grid_template_columns="repeat(auto-fill, minmax(330px, 1fr))", grid_gap="2px 8px")
        self.controls_box = widgets.GridBox(rows, layout=grid)

        def button(label: str, icon: str, tip: str, handler: Callable[[widgets.Button], None]) -> widgets.Button:
            b = widgets.Button(description=label, icon=icon, tooltip=tip, layout=widgets.Layout(width="90px"))
            b.on_click(handler)
            b.add_class(f"acktr-{label.lower()}")
            return b

        self.run_button = button("Run", "play", "train until done (or Pause)", lambda _: self.run())
        self.pause_button = button("Pause", "pause", "pause after the current update", lambda _: self.pause())
        self.step_button = button("Step", "step-forward", "exactly one update", lambda _: self.step())
        self.save_button = button("Save", "save", "model.save(path)", lambda _: self.save())
        self.save_path = widgets.Text(
            value="acktr_model.zip", placeholder="path.zip", layout=widgets.Layout(width="260px")
        )
        self.status = widgets.HTML()
        self.edit_log_view = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.error_output = widgets.Output(layout=widgets.Layout(max_height="240px", overflow="auto"))
        toolbar = widgets.HBox([self.run_button, self.pause_button, self.step_button, self.save_button, self.save_path])
        self._box = widgets.VBox(
            [toolbar, self.status, self.controls_box, self.edit_log_view, self.image, self.error_output]
        )
        self._add_css_classes(
            "acktr",
            [
                (self.save_path, "save-path"),
                (self.status, "status"),
                (self.image, "image"),
                (self.controls_box, "controls"),
                (self.edit_log_view, "edit-log"),
                (self.error_output, "errors"),
                (self._box, "dashboard"),
            ],
        )
        self._update_buttons()

    # -- hyperparameters --------------------------------------------------------------
    def _control_observer(self, name: str) -> Callable[[dict[str, Any]], None]:
        def observer(change: dict[str, Any]) -> None:
            if self._syncing:
                return
            if name == "gae_lambda" and not self.gae_enabled.value:
                return  # the slider only matters while GAE is on
            self._apply(name, change["new"])

        return observer

    def _gae_toggled(self, change: dict[str, Any]) -> None:
        if self._syncing:
            return
        self.controls["gae_lambda"].disabled = not change["new"]
        self._apply("gae_lambda", self.controls["gae_lambda"].value if change["new"] else None)

    def _apply(self, name: str, value: Any) -> None:
        """``trainer.set(name=value)``; on failure show why and put the control back."""
        try:
            self.trainer.set(**{name: value})
        except (ValueError, TypeError) as exc:
            self._say(f"{name} = {value!r} rejected: {exc}", error=True)
            self._sync_controls()
            self._update_status()
            return
        self._say(f"{name} = {value!r} from the next update")
        if name in LR_SETTINGS:
            self.plots.refresh_learning_rate_curve()
            self._version += 1
        if self.state != "running":
            self._redraw(force=True)
        else:
            self._update_status()

    def _sync_controls(self) -> None:
        """Show the trainer's live values (after a rejected change, or a change made in code)."""
        current = self.trainer.hyperparameters
        self._syncing = True
        try:
            for name, control in self.controls.items():
                value = current.get(name)
                kind = self.control_specs[name].kind
                if kind == "optional":
                    self.gae_enabled.value = value is not None
                    control.disabled = value is None
                    if value is not None and not same_value(control.value, float(value)):
                        self._widen(control, float(value))
                        control.value = float(value)
                elif kind == "choice":
                    if isinstance(value, str) and value in control.options:
                        control.disabled = False
                        control.value = value
                    else:  # a callable schedule: shown, not editable
                        label = f"custom: {value}"
                        if label not in control.options:
                            control.options = [*self.control_specs[name].options, label]
                        control.value = label
                        control.disabled = True
                elif isinstance(value, (int, float)) and not isinstance(value, bool):
                    control.disabled = False
                    if not same_value(control.value, float(value)):
                        self._widen(control, float(value))
                        control.value = float(value)
                else:  # a callable learning rate: the schedule is the callable's business
                    control.disabled = True
                    control.tooltip = f"{self.control_specs[name].help} (a callable: {value}; not editable)"
        finally:
            self._syncing = False

    @staticmethod
    def _widen(control: widgets.ValueWidget, value: float) -> None:
        """Extend a slider's range so that setting ``value`` does not clamp it."""
        if isinstance(control, widgets.FloatLogSlider):
            if value > 0:
                exponent = math.log10(value)
                control.min = min(control.min, math.floor(exponent))
                control.max = max(control.max, math.ceil(exponent))
        else:
            control.min = min(control.min, value)
            control.max = max(control.max, value)

    # -- actions ----------------------------------------------------------------------
    def run(self) -> asyncio.Future[None] | None:
        """Start training in an asyncio task on the running event loop (the Run button)."""
        if self.state == "running" or self._finished():
            return self.task
        loop = self._running_loop("dashboard.run_blocking")
        if loop is None:
            return None
        self._pause_requested = False
        self._set_state("running")
        return self._start_task(
            loop,
            lambda: not self._pause_requested and self._advance() is not None,
            finished=self._settle,
            interrupted=self._interrupted,
            failed=self._fail,
            running_state="running",
            stopped_state="paused",
            what="training",
        )

    def pause(self) -> None:
        """Stop after the current update (the Pause button)."""
        if self.state == "running":
            self._pause_requested = True
            self._say("pausing after the current update")
            self._update_status()

    def step(self) -> UpdateReport | PretrainReport | None:
        """Exactly one update (or one behaviour-cloning epoch), synchronously (the Step button)."""
        if self.state == "running" or self._finished():
            return None
        try:
            report = self._advance()
        except Exception as exc:
            self._fail(exc)
            return None
        self._settle()
        return report

    def save(self, path: str | None = None) -> None:
        """``trainer.model.save(path)`` (the Save button; the path defaults to the text box)."""
        target = path if path is not None else self.save_path.value.strip()
        if not target:
            self._say("give a path to save to", error=True)
            self._update_status()
            return
        try:
            self.trainer.model.save(target)
        except Exception as exc:
            self._show_exception(exc, f"saving to {target} failed")
            self._update_status()
            return
        self._say(f"saved to {target} at {self.trainer.num_timesteps:,} timesteps")
        self._update_status()

    def run_blocking(self, max_updates: int | None = None) -> int:
        """Train synchronously (no asyncio) for notebooks executed without clicks.

        Runs until the trainer is done or ``max_updates`` training updates were made
        (behaviour-cloning epochs, if any, come first and are not counted), re-rendering
        the plots at the usual throttle and once more at the end, so an executed
        notebook keeps the final plots. Exceptions are shown and re-raised; a
        KeyboardInterrupt pauses (after the update in progress) and is re-raised.

        Returns:
            The number of training updates made.
        """
        if self.state == "running":
            raise RuntimeError("the dashboard is already running: Pause it first")
        if max_updates is not None and max_updates < 0:
            raise ValueError(f"max_updates must be ≥ 0 or None, got {max_updates}")
        self._pause_requested = False
        self._set_state("running")
        done = 0
        try:
            while max_updates is None or done < max_updates:
                report = self._advance()
                if report is None:
                    break
                if isinstance(report, UpdateReport):
                    done += 1
        except KeyboardInterrupt:
            self._interrupted()
            raise
        except Exception as exc:
            self._fail(exc)
            raise
        self._settle()
        return done

    # -- the loop's pieces ------------------------------------------------------------
    def _finished(self) -> bool:
        return self._pretrain is None and bool(self.trainer.done)

    def _advance(self) -> UpdateReport | PretrainReport | None:
        """One behaviour-cloning epoch while any remain, else one training update; ``None``
        when there is nothing left to do."""
        if self._pretrain is not None:
            try:
                epoch = next(self._pretrain)
            except StopIteration:
                self._pretrain = None
            else:
                self.pretrain_epochs += 1
                self._on_report(epoch)
                return epoch
        if self.trainer.done:
            return None
        try:
            report = self.trainer.step()
        except StopIteration:  # never let it escape into a coroutine (it would become RuntimeError)
            return None
        self.updates += 1
        self._on_report(report)
        return report

    def _on_report(self, report: UpdateReport | PretrainReport) -> None:
        self.plots.add(report)
        if isinstance(report, UpdateReport):
            if self.history is not None:
                self.history.write(report)
            if report.edits:
                self.edit_log.extend(report.edits)
                self.edit_log_view.value = edit_log_html(self.edit_log)
        self.last_report = report
        self._version += 1
        self._redraw()

    def _settle(self) -> None:
        """After a run or a step: ``done`` or ``paused``, and the plots rendered."""
        self._set_state("done" if self._finished() else "paused")
        self._redraw(force=True)

    def _interrupted(self) -> None:
        self._say("interrupted: paused after the current update")
        self._set_state("paused")
        self._redraw(force=True)

    def _fail(self, exc: BaseException) -> None:
        self._show_exception(exc, "training stopped")
        self._set_state("error")
        self._redraw(force=True)

    # -- display ----------------------------------------------------------------------
    def _update_buttons(self) -> None:
        running = self.state == "running"
        finished = self._finished()
        self.run_button.disabled = running or finished
        self.step_button.disabled = running or finished
        self.pause_button.disabled = not running

    def _before_redraw(self) -> None:
        self._sync_controls()  # a change made in code shows on the sliders

    def _plot_png(self) -> bytes:
        return self.plots.render_png()

    @property
    def status_text(self) -> str:
        """The status line as plain text: state, progress, fps, mean return, and the last
        message (a change applied, a save, an error) on a second line."""
        text = " · ".join([self.state, *self._status_parts()])
        return f"{text}\n{self._message}" if self._message else text

    def _status_parts(self) -> list[str]:
        """The status line after the state, as plain text."""
        trainer = self.trainer
        parts: list[str] = []
        report = self.plots.last_report
        if isinstance(self.last_report, PretrainReport):
            r = self.last_report
            parts.append(f"behaviour cloning epoch {r.epoch}/{r.n_epochs}, loss {r.train_loss:.4g}")
        parts.append(f"update {report.update if report is not None else 0}")
        parts.append(f"timesteps {trainer.num_timesteps:,} / {trainer.total_timesteps:,}")
        if report is not None:
            parts.append(f"fps {report.fps:,.0f}")
        mean_return = self.plots.mean_return
        if mean_return is not None:
            parts.append(f"mean return {mean_return:.4g} (last {len(self.plots.recent_returns)} episodes)")
        return parts

    def _update_status(self) -> None:
        self._show_status(map(html.escape, self._status_parts()))


#: How many of the newest edits the dashboard's table shows (``Dashboard.edit_log`` keeps all).
EDIT_LOG_ROWS = 12


def edit_log_html(edits: Sequence[Edit]) -> str:
    """The newest edits as an HTML table: update, timesteps, name, old → new."""
    shown = edits[-EDIT_LOG_ROWS:]
    cells = "".join(
        f"<tr><td>{e.update}</td><td>{e.timesteps:,}</td><td>{html.escape(e.name)}</td>"
        f"<td>{html.escape(_value_text(e.old))} → {html.escape(_value_text(e.new))}</td></tr>"
        for e in reversed(shown)
    )
    more = f" (newest {len(shown)} of {len(edits)})" if len(edits) > len(shown) else ""
    return (
        f"<details open><summary><b>Edit log</b>: {len(edits)} change{'s' * (len(edits) != 1)}{more}, "
        "replayable with <code>edits=model.edit_log</code></summary>"
        '<table style="font-size:85%"><tr><th>update</th><th>timesteps</th><th>name</th><th>old → new</th></tr>'
        f"{cells}</table></details>"
    )


def _value_text(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(hp.describe(value))
