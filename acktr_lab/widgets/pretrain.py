"""The pretraining dashboard for Jupyter: behaviour cloning, evaluation, then ACKTR.

:class:`PretrainDashboard` lets you pick an expert dataset (named
:class:`~acktr_lab.expert.ExpertDataset` objects or ``.npz`` files, loaded when picked),
set the number of epochs and Adam's learning rate, and **Pretrain**: the model's policy
is cloned from the demonstrations (``model.pretrainer``, validation after every epoch)
while the train and validation losses are drawn live. **Evaluate** runs deterministic
episodes of the cloned policy and plots their mean ± std beside the expert's return.
**Continue with ACKTR** builds ``model.trainer(total_timesteps)`` and shows a
:class:`~acktr_lab.widgets.dashboard.Dashboard` below, in the same widget, whose
behaviour-cloning panel already holds the pretraining losses.

It works the way the training dashboard does (see the design notes, "Notebooks: what
works on this stack"): **Pretrain** starts an asyncio task on the kernel's event loop that
runs one epoch, hands its report to the plot and then ``await asyncio.sleep(0)``, so
**Stop** and the other widgets' callbacks run between epochs. The plot is the training
dashboard's renderer, :class:`~acktr_lab.plots.TrainingPlots`, with two panels (the losses,
:class:`~acktr_lab.panels.PretrainPanel`, and the evaluations,
:class:`~acktr_lab.panels.EvaluationPanel`), rendered to PNG into an ``ipywidgets.Image``
at most every ``redraw_interval`` seconds. The datasets are kept by a
:class:`~acktr_lab.widgets.datasets.DatasetCatalog`; evaluations are
:class:`~acktr_lab.widgets.evaluation.Evaluation` objects. Errors (a file that is not a dataset, demonstrations that
do not fit the model's spaces, a failure while training) are shown in the status line,
with the traceback in an ``Output`` area when it helps; they never pass silently.

For notebooks executed without clicks, and for tests, :meth:`PretrainDashboard.pretrain_blocking`,
:meth:`PretrainDashboard.evaluate` and :meth:`PretrainDashboard.continue_training` do the
same synchronously::

    pretraining = PretrainDashboard(model, datasets={"expert": "runs/cartpole_expert.npz"})
    pretraining.pretrain_blocking(n_epochs=20, learning_rate=1e-3)
    pretraining.evaluate()
    dashboard = pretraining.continue_training()
    dashboard.run_blocking(max_updates=100)
"""

from __future__ import annotations

import asyncio
import dataclasses
import html
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import gymnasium as gym
import ipywidgets as widgets

from acktr_lab.evaluation import evaluate
from acktr_lab.expert import ExpertDataset
from acktr_lab.panels import EvaluationPanel, PretrainPanel
from acktr_lab.plots import BoundedHistory, TrainingPlots
from acktr_lab.report import PretrainReport
from acktr_lab.widgets.dashboard import Dashboard
from acktr_lab.widgets.datasets import DatasetCatalog, DatasetSource
from acktr_lab.widgets.evaluation import Evaluation, default_eval_env, env_label, show_evaluations, stage
from acktr_lab.widgets.panel import WidgetPanel

__all__ = ["Evaluation", "PretrainDashboard"]


class PretrainDashboard(WidgetPanel):
    """Pretrain a model by behaviour cloning from a notebook, evaluate it, then train it with ACKTR.

    Args:
        model: an :class:`acktr_lab.acktr.ACKTR` (anything with ``pretrainer``, ``predict``,
            ``trainer``, ``observation_space`` and ``action_space``).
        datasets: name → :class:`ExpertDataset` or path of an ``.npz`` archive; paths are
            loaded when picked (with ``dataset_kwargs``). The first one is picked at once.
            More can be added with the path box and **Load** (:meth:`load_path`).
        eval_env: env id or gymnasium ``Env`` for **Evaluate**; default: the id of the
            model's env, when it has one.
        total_timesteps: the length of the ACKTR run that **Continue with ACKTR** starts.
        redraw_interval: least time in seconds between two renders of the plot while
            pretraining (it is always rendered at the end of a run and after an evaluation).
        n_epochs, learning_rate: the initial values of the epochs and learning-rate controls.
        n_eval_episodes: the initial number of episodes of an evaluation.
        eval_seed: seed of the first evaluation episode's reset (episode i: ``eval_seed + i``).
        dataset_kwargs: keyword arguments of ``ExpertDataset`` for the files loaded here
            (default ``verbose=0, seed=0``).

    Attributes for notebooks and tests: ``model``, ``catalog`` (the
    :class:`~acktr_lab.widgets.datasets.DatasetCatalog`), ``datasets`` (its name → source),
    ``dataset`` / ``dataset_name`` (the picked one, or ``None``), ``reports`` (every
    :class:`PretrainReport`, in order), ``plots`` (the
    :class:`~acktr_lab.plots.TrainingPlots` drawn: panels ``pretrain`` and ``evaluation``),
    ``history`` (its ``pretrain_history``: ``epoch`` counted over all runs, ``train_loss``
    and ``val_loss``), ``run_starts`` (epochs done before each run), ``evaluations`` and
    ``last_evaluation`` (:class:`Evaluation`), ``state`` (``ready``/``pretraining``/
    ``stopped``/``done``/``error``/``training``), ``error`` (the last exception, or
    ``None``), ``task`` (the asyncio task of the last **Pretrain**), ``trainer`` and
    ``dashboard`` (after :meth:`continue_training`), ``renders``, and the widgets:
    ``dataset_dropdown``, ``path_text``, ``load_button``, ``dataset_info``,
    ``epochs_input``, ``learning_rate_slider``, ``eval_episodes_input``,
    ``pretrain_button``, ``stop_button``, ``evaluate_button``, ``continue_button``,
    ``status``, ``image``, ``error_output`` and ``training_area`` (the box that receives
    the training dashboard).
    """

    render_budget = 0.1
    state_colors: ClassVar[dict[str, str]] = {
        "ready": "#555",
        "pretraining": "#1a7f37",
        "stopped": "#9a6700",
        "done": "#0969da",
        "error": "#cf222e",
        "training": "#8250df",
    }

    def __init__(
        self,
        model: Any,
        *,
        datasets: Mapping[str, DatasetSource] | None = None,
        eval_env: str | gym.Env | None = None,
        total_timesteps: int = 100_000,
        redraw_interval: float = 0.5,
        n_epochs: int = 10,
        learning_rate: float = 1e-3,
        n_eval_episodes: int = 5,
        eval_seed: int = 0,
        dataset_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(redraw_interval)
        if int(total_timesteps) < 1:
            raise ValueError(f"total_timesteps must be at least 1, got {total_timesteps}")
        if not learning_rate > 0:
            raise ValueError(f"learning_rate must be positive, got {learning_rate}")
        self.model = model
        self.catalog = DatasetCatalog(
            datasets or {},
            model.observation_space,
            model.action_space,
            {"verbose": 0, "seed": 0, **dict(dataset_kwargs or {})},
        )
        self.eval_env: str | gym.Env | None = eval_env if eval_env is not None else default_eval_env(model)
        self.total_timesteps = int(total_timesteps)
        self.eval_seed = int(eval_seed)
        self.dataset: ExpertDataset | None = None
        self.dataset_name: str | None = None
        self.reports: list[PretrainReport] = []
        self.evaluations: list[Evaluation] = []
        self.last_evaluation: Evaluation | None = None
        self.task: asyncio.Future[None] | None = None
        self.trainer: Any = None
        self.dashboard: Dashboard | None = None
        self._stop_requested = False
        self._loss_panel = PretrainPanel(xlabel="epoch (over all runs)")
        self._evaluation_panel = EvaluationPanel(empty_note="press Evaluate")
        self.plots = TrainingPlots(
            panels=[self._loss_panel, self._evaluation_panel],
            pretrain=True,
            figsize=(11.0, 3.4),
            headline=self._headline,
            gridspec_kw={"left": 0.06, "bottom": 0.14, "top": 0.84, "wspace": 0.22, "width_ratios": (3, 2)},
        )
        self._build_widgets(int(n_epochs), float(learning_rate), int(n_eval_episodes))
        if self.datasets:
            self.select_dataset(next(iter(self.datasets)))
        else:
            self._say("no dataset yet: give the path of an .npz archive and press Load")
        self._update_buttons()
        self._update_status()

    @property
    def datasets(self) -> dict[str, DatasetSource]:
        """Name → source of every dataset offered (the catalog's; adding one offers it)."""
        return self.catalog.sources

    @property
    def history(self) -> BoundedHistory:
        """The losses drawn: ``epoch`` (counted over all runs), ``train_loss``, ``val_loss``."""
        return self.plots.pretrain_history

    @property
    def run_starts(self) -> list[int]:
        """Epochs done before each pretraining run (a dashed line on the plot between runs)."""
        return self._loss_panel.run_starts

    # -- widgets ----------------------------------------------------------------------
    def _build_widgets(self, n_epochs: int, learning_rate: float, n_eval_episodes: int) -> None:
        style = {"description_width": "90px"}
        self.dataset_dropdown = widgets.Dropdown(
            options=list(self.datasets),
            value=None,
            description="dataset",
            style=style,
            layout=widgets.Layout(width="320px"),
        )
        self.dataset_dropdown.observe(self._dropdown_changed, names="value")
        self.path_text = widgets.Text(placeholder="path/to/expert.npz", layout=widgets.Layout(width="300px"))
        self.load_button = self._button(
            "Load", "folder-open", "load the .npz archive at this path", lambda: self.load_path(self.path_text.value)
        )
        self.dataset_info = widgets.HTML()
        self.epochs_input = widgets.BoundedIntText(
            value=max(1, n_epochs),
            min=1,
            max=100_000,
            description="epochs",
            style=style,
            layout=widgets.Layout(width="180px"),
        )
        low = min(-5, math.floor(math.log10(learning_rate)))
        high = max(-1, math.ceil(math.log10(learning_rate)))
        self.learning_rate_slider = widgets.FloatLogSlider(
            value=learning_rate,
            base=10,
            min=low,
            max=high,
            step=0.1,
            description="learning rate",
            readout_format=".1e",
            continuous_update=False,
            style=style,
            layout=widgets.Layout(width="340px"),
        )
        self.eval_episodes_input = widgets.BoundedIntText(
            value=max(1, n_eval_episodes),
            min=1,
            max=10_000,
            description="eval episodes",
            style=style,
            layout=widgets.Layout(width="180px"),
        )
        self.pretrain_button = self._button(
            "Pretrain", "graduation-cap", "behaviour cloning on the dataset", self.start_pretraining
        )
        self.stop_button = self._button("Stop", "stop", "stop after the current epoch", self.stop)
        self.evaluate_button = self._button(
            "Evaluate", "check", "deterministic episodes of the policy", lambda: self.evaluate()
        )
        self.continue_button = self._button(
            "Continue with ACKTR",
            "forward",
            "train the model with ACKTR in a dashboard below",
            lambda: self.continue_training(),
            width="170px",
        )
        self.status = widgets.HTML()
        self.image = widgets.Image(format="png", layout=widgets.Layout(max_width="100%", height="auto"))
        self.error_output = widgets.Output(layout=widgets.Layout(max_height="240px", overflow="auto"))
        self.training_area = widgets.VBox()
        self._box = widgets.VBox(
            [
                widgets.HTML("<b>Behaviour cloning</b>"),
                widgets.HBox([self.dataset_dropdown, self.path_text, self.load_button]),
                self.dataset_info,
                widgets.HBox([self.epochs_input, self.learning_rate_slider, self.eval_episodes_input]),
                widgets.HBox([self.pretrain_button, self.stop_button, self.evaluate_button, self.continue_button]),
                self.status,
                self.image,
                self.error_output,
                self.training_area,
            ]
        )
        self._add_css_classes(
            "acktr-pretrain",
            [
                (self.dataset_dropdown, "dataset"),
                (self.path_text, "dataset-path"),
                (self.dataset_info, "dataset-info"),
                (self.status, "status"),
                (self.image, "image"),
                (self.error_output, "errors"),
                (self.training_area, "training-area"),
                (self._box, "dashboard"),
            ],
        )

    def _button(
        self, label: str, icon: str, tip: str, action: Callable[[], Any], width: str = "100px"
    ) -> widgets.Button:
        button = widgets.Button(description=label, icon=icon, tooltip=tip, layout=widgets.Layout(width=width))

        def clicked(_: widgets.Button) -> None:
            try:
                action()
            except Exception as exc:
                if exc is not self.error:  # the actions show their own errors; never drop one
                    self._show_exception(exc, f"{label} failed")
                    self._update_status()

        button.on_click(clicked)
        return button

    # -- datasets ---------------------------------------------------------------------
    def _dropdown_changed(self, change: dict[str, Any]) -> None:
        if self._syncing or change["new"] is None or change["new"] == self.dataset_name:
            return
        self.select_dataset(change["new"])

    def select_dataset(self, name: str) -> ExpertDataset | None:
        """Pick the dataset ``name`` (loading it if it is a path) for the next pretraining.

        A dataset that cannot be read or does not fit the model's spaces is refused: the
        status line says why, and the previous dataset stays picked. Returns the dataset,
        or ``None`` when refused.
        """
        if self.state == "pretraining":
            self._say("wait for the pretraining to finish (or Stop it) before changing the dataset", error=True)
            self._show_selection()
            return None
        if name not in self.datasets:
            self._say(f"unknown dataset {name!r}; known: {sorted(self.datasets)}", error=True)
            self._show_selection()
            return None
        try:
            dataset = self.catalog.open(name)
        except Exception as exc:
            self._refuse(name, exc)
            return None
        self.dataset, self.dataset_name = dataset, name
        self._say(f"dataset {name!r} picked")
        self._show_selection()
        self._version += 1
        self._redraw(force=True)
        return dataset

    def load_path(self, path: str | os.PathLike[str], name: str | None = None) -> ExpertDataset | None:
        """Load the ``.npz`` archive at ``path``, add it to the datasets and pick it.

        ``name`` defaults to the file name. A file that cannot be read, or whose
        demonstrations do not fit the model, is refused with the reason in the status
        line, and the previous dataset stays picked. Returns the dataset or ``None``.
        """
        text = os.fspath(path).strip()
        if not text:
            self._say("give the path of an .npz archive to load", error=True)
            self._update_status()
            return None
        known = self.catalog.name_of(text)
        if known is not None:
            return self.select_dataset(known)
        try:
            added = self.catalog.add(text, name)
        except Exception as exc:
            self._refuse(text, exc)
            return None
        return self.select_dataset(added)

    def _refuse(self, name: str, exc: BaseException) -> None:
        """Show why a dataset was refused; keep the previous one."""
        if isinstance(exc, ValueError):
            message = str(exc)
            if name not in message and not message.startswith("dataset "):
                message = f"could not use dataset {name!r}: {message}"
            self.error = exc
            self._say(message + (f" (still using {self.dataset_name!r})" if self.dataset_name else ""), error=True)
        else:
            self._show_exception(exc, f"could not load dataset {name!r}")
        self._show_selection()

    def _show_selection(self) -> None:
        """Put the dropdown and the dataset line in line with the picked dataset."""
        self._syncing = True
        try:
            options = list(self.datasets)
            if list(self.dataset_dropdown.options) != options:
                self.dataset_dropdown.options = options
            self.dataset_dropdown.value = self.dataset_name
        finally:
            self._syncing = False
        self.dataset_info.value = self._dataset_html()
        self._update_buttons()
        self._update_status()

    def _dataset_html(self) -> str:
        if self.dataset is None or self.dataset_name is None:
            return '<span style="color:#555;font-size:12px">no dataset picked</span>'
        text = self.catalog.describe(self.dataset_name)
        return f'<span style="font-family:monospace;font-size:12px">{html.escape(text)}</span>'

    # -- pretraining ------------------------------------------------------------------
    def _begin(self) -> Iterator[PretrainReport]:
        """Check the settings and start a behaviour-cloning run (``model.pretrainer``)."""
        if self.dashboard is not None:
            raise RuntimeError("training has been handed over to ACKTR; pretraining is over")
        if self.dataset is None:
            raise ValueError("pick a dataset first (or load an .npz archive)")
        n_epochs = int(self.epochs_input.value)
        learning_rate = float(self.learning_rate_slider.value)
        if n_epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {n_epochs}")
        if not learning_rate > 0:
            raise ValueError(f"the learning rate must be positive, got {learning_rate}")
        iterator = self.model.pretrainer(self.dataset, n_epochs=n_epochs, learning_rate=learning_rate, val_interval=1)
        self.run_starts.append(len(self.reports))
        self._stop_requested = False
        self._say(f"behaviour cloning on {self.dataset_name!r}: {n_epochs} epochs, learning rate {learning_rate:.3g}")
        self._version += 1
        self._set_state("pretraining")
        return iterator

    def _on_report(self, report: PretrainReport) -> None:
        self.reports.append(report)
        total = len(self.reports)  # the plot counts epochs over all runs
        self.plots.add(dataclasses.replace(report, epoch=total, n_epochs=total))
        self._version += 1
        self._redraw()

    def _finish(self, iterator: Iterator[PretrainReport], completed: bool) -> None:
        close = getattr(iterator, "close", None)
        if callable(close):
            close()
        last = self.reports[-1] if self.reports else None
        if completed:
            self._say(f"pretraining done: {self._losses_text(last)}" if last else "pretraining done")
            self._set_state("done")
        else:
            self._say(f"stopped after epoch {last.epoch}: {self._losses_text(last)}" if last else "stopped")
            self._set_state("stopped")
        self._redraw(force=True)

    @staticmethod
    def _losses_text(report: PretrainReport | None) -> str:
        if report is None:
            return ""
        text = f"train loss {report.train_loss:.4g}"
        if report.val_loss is not None:
            text += f", validation loss {report.val_loss:.4g}"
        return text

    def start_pretraining(self) -> asyncio.Future[None] | None:
        """Start behaviour cloning in an asyncio task on the running event loop (the Pretrain button).

        Returns the task (also kept as ``task``), or ``None`` when it could not start; the
        reason is then in the status line.
        """
        if self.state == "pretraining":
            return self.task
        loop = self._running_loop("pretrain_blocking")
        if loop is None:
            return None
        try:
            iterator = self._begin()
        except Exception as exc:
            self._fail(exc, "pretraining could not start")
            return None
        completed = [False]

        def work() -> bool:
            if self._stop_requested:
                return False
            report = next(iterator, None)
            if report is None:
                completed[0] = True
                return False
            self._on_report(report)
            return True

        return self._start_task(
            loop,
            work,
            finished=lambda: self._finish(iterator, completed=completed[0]),
            interrupted=lambda: self._finish(iterator, completed=False),
            failed=lambda exc: self._fail(exc, "pretraining stopped", keep_state=False),
            running_state="pretraining",
            stopped_state="stopped",
            what="pretraining",
        )

    def stop(self) -> None:
        """Stop pretraining after the current epoch (the Stop button)."""
        if self.state == "pretraining":
            self._stop_requested = True
            self._say("stopping after the current epoch")
            self._update_status()

    def pretrain_blocking(
        self, n_epochs: int | None = None, learning_rate: float | None = None
    ) -> list[PretrainReport]:
        """Behaviour cloning, synchronously (for notebooks run without clicks, and tests).

        ``n_epochs`` and ``learning_rate`` set the controls first (default: their
        current values). The plot is re-rendered at the usual throttle and at the end.
        Errors are shown in the status line and re-raised; a KeyboardInterrupt ends the
        run (the epoch in progress is cut short; the minibatch steps already taken stay)
        and is re-raised.

        Returns:
            This run's reports, one per epoch.
        """
        if self.state == "pretraining":
            raise RuntimeError("pretraining is already running: Stop it first")
        if n_epochs is not None:
            if int(n_epochs) < 1:
                error = ValueError(f"n_epochs must be at least 1, got {n_epochs}")
                self._fail(error, "pretraining could not start")
                raise error
            self.epochs_input.max = max(self.epochs_input.max, int(n_epochs))
            self.epochs_input.value = int(n_epochs)
        if learning_rate is not None:
            if not learning_rate > 0:
                error = ValueError(f"learning_rate must be positive, got {learning_rate}")
                self._fail(error, "pretraining could not start")
                raise error
            exponent = math.log10(float(learning_rate))
            slider = self.learning_rate_slider
            slider.min, slider.max = min(slider.min, math.floor(exponent)), max(slider.max, math.ceil(exponent))
            slider.value = float(learning_rate)
        try:
            iterator = self._begin()
        except Exception as exc:
            self._fail(exc, "pretraining could not start")
            raise
        first = len(self.reports)
        try:
            for report in iterator:
                self._on_report(report)
        except KeyboardInterrupt:
            self._finish(iterator, completed=False)
            raise
        except Exception as exc:
            self._fail(exc, "pretraining stopped", keep_state=False)
            raise
        self._finish(iterator, completed=True)
        return self.reports[first:]

    # -- evaluation -------------------------------------------------------------------
    def evaluate(self, n_episodes: int | None = None, seed: int | None = None) -> Evaluation:
        """Run deterministic episodes of the policy on ``eval_env`` (the Evaluate button).

        The result is shown (status line and plot), appended to ``evaluations`` and kept
        as ``last_evaluation``. Errors are shown and re-raised.
        """
        try:
            if self.state == "pretraining":
                raise RuntimeError("wait for the pretraining to finish (or Stop it) before evaluating")
            if self.eval_env is None:
                raise ValueError("no env to evaluate on: pass eval_env= (an env id or a gymnasium Env)")
            episodes = int(n_episodes) if n_episodes is not None else int(self.eval_episodes_input.value)
            first_seed = int(seed) if seed is not None else self.eval_seed
            returns = evaluate(self.model, self.eval_env, episodes, first_seed)
        except Exception as exc:
            self._fail(exc, "evaluation failed")
            raise
        handed_over = self.dashboard is not None and self.trainer is not None
        label, short_label = stage(len(self.reports), int(self.trainer.num_timesteps) if handed_over else None)
        evaluation = Evaluation(returns=tuple(returns), label=label, seed=first_seed, short_label=short_label)
        self.evaluations.append(evaluation)
        self.last_evaluation = evaluation
        self._say(f"evaluation on {env_label(self.eval_env)}, {evaluation}")
        self._version += 1
        self._redraw(force=True)
        return evaluation

    # -- hand-over to ACKTR -----------------------------------------------------------
    def continue_training(self, total_timesteps: int | None = None) -> Dashboard:
        """Build ``model.trainer(total_timesteps)`` and a training :class:`Dashboard` for it,
        shown below the pretraining plot (the Continue with ACKTR button).

        The dashboard's behaviour-cloning panel holds the pretraining losses (epochs
        counted over all runs). Pretraining is over afterwards; Evaluate still works.
        Calling it again returns the same dashboard. Errors are shown and re-raised.
        """
        if self.dashboard is not None:
            return self.dashboard
        try:
            if self.state == "pretraining":
                raise RuntimeError("wait for the pretraining to finish (or Stop it) before training with ACKTR")
            steps = int(total_timesteps) if total_timesteps is not None else self.total_timesteps
            trainer = self.model.trainer(steps)
            dashboard = Dashboard(trainer, redraw_interval=self.redraw_interval, pretrain=())
            total = len(self.reports)
            dashboard.plots.extend(
                dataclasses.replace(report, epoch=i, n_epochs=total) for i, report in enumerate(self.reports, 1)
            )
            for panel in dashboard.plots.panels:
                if isinstance(panel, PretrainPanel):
                    panel.run_starts.extend(self.run_starts)
        except Exception as exc:
            self._fail(exc, "could not start ACKTR training")
            raise
        self.trainer, self.dashboard = trainer, dashboard
        self.training_area.children = (
            widgets.HTML(f"<b>ACKTR training</b> ({steps:,} timesteps, after {total} behaviour-cloning epochs)"),
            dashboard.widget,
        )
        self._say("handed over to ACKTR: train with Run or Step in the dashboard below")
        self._set_state("training")
        return dashboard

    # -- errors -----------------------------------------------------------------------
    def _fail(self, exc: BaseException, context: str, *, keep_state: bool = True) -> None:
        """Show ``exc`` (status line; traceback in the error area unless it is a refusal
        whose message says it all). ``keep_state=False``: a pretraining run died, the state
        becomes ``error``."""
        if isinstance(exc, ValueError | RuntimeError) and "could not" in context:
            self.error = exc  # a refused setting, dataset or action
            self._say(f"{context}: {exc}", error=True)
        else:
            self._show_exception(exc, context)
        if keep_state:
            self._update_buttons()
            self._update_status()
        else:
            self._set_state("error")
        self._redraw(force=True)

    # -- display ----------------------------------------------------------------------
    def _update_buttons(self) -> None:
        running = self.state == "pretraining"
        handed_over = self.dashboard is not None
        self.pretrain_button.disabled = running or handed_over or self.dataset is None
        self.stop_button.disabled = not running
        self.evaluate_button.disabled = running or self.eval_env is None
        self.continue_button.disabled = running or handed_over
        for control in (
            self.dataset_dropdown,
            self.path_text,
            self.load_button,
            self.epochs_input,
            self.learning_rate_slider,
        ):
            control.disabled = running or handed_over

    def _update_status(self) -> None:
        parts = [f"dataset {html.escape(repr(self.dataset_name)) if self.dataset_name else 'none'}"]
        if self.reports:
            last = self.reports[-1]
            parts.append(f"epoch {last.epoch}/{last.n_epochs} ({len(self.reports)} in all)")
            parts.append(html.escape(self._losses_text(last)))
        if self.last_evaluation is not None:
            parts.append(html.escape(str(self.last_evaluation)))
        self._show_status(parts)

    @property
    def status_text(self) -> str:
        """The status line as plain text."""
        return _strip_tags(self.status.value)

    # -- the plot ---------------------------------------------------------------------
    def _headline(self) -> str:
        """The figure's title: the dataset, the epoch of the last run and its losses."""
        if not self.reports:
            return f"behaviour cloning on {self.dataset_name!r}: no epoch yet" if self.dataset_name else ""
        last = self.reports[-1]
        return f"{self.dataset_name!r}: epoch {last.epoch}/{last.n_epochs}   ·   {self._losses_text(last)}"

    def render_png(self) -> bytes:
        """Draw the plot (the losses, and the evaluations beside the expert's return) and
        render it; PNG bytes."""
        expert_mean = self.dataset.mean_return if self.dataset is not None else None
        show_evaluations(self._evaluation_panel, self.evaluations, expert_mean, self.eval_env)
        return self.plots.render_png()

    def _repr_png_(self) -> bytes:
        return self.render_png()

    def _plot_png(self) -> bytes:
        return self.render_png()


def _strip_tags(markup: str) -> str:
    """Plain text of the status HTML."""
    text = re.sub(r"<br\s*/?>", "\n", markup)
    text = re.sub(r"<[^>]+>", "", text)
    return html.unescape(text).replace("\xa0", " ")
