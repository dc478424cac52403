"""What every acktr_lab widget panel shares: display, a status line, an error area, a
throttled render of its plot into an image, and the runner that steps work in an asyncio
task between widget callbacks."""

from __future__ import annotations

import asyncio
import html
import math
import time
import traceback
from collections.abc import Callable, Iterable
from typing import Any, ClassVar

import ipywidgets as widgets


class WidgetPanel:
    """Base of the dashboards: subclasses build ``_box``, ``status``, ``image`` and
    ``error_output``, and implement ``_plot_png``, ``_update_buttons`` and ``_update_status``
    (which calls :meth:`_show_status`).

    Renders are throttled: at most one every ``redraw_interval`` seconds unless forced, the
    interval growing so that rendering takes at most ``render_budget`` of the time, and
    none at all when nothing new was plotted (``_version`` is bumped when the data change).
    """

    #: Most of the time rendering may take while running.
    render_budget = 0.05
    #: Colour of each state's name in the status line.
    state_colors: ClassVar[dict[str, str]] = {}

    _box: widgets.VBox
    status: widgets.HTML
    image: widgets.Image
    error_output: widgets.Output

    def __init__(self, redraw_interval: float) -> None:
        if redraw_interval < 0:
            raise ValueError(f"redraw_interval must be ≥ 0, got {redraw_interval}")
        self.redraw_interval = float(redraw_interval)
        self.state = "ready"
        self.error: BaseException | None = None
        self.renders = 0
        self.render_seconds = 0.0
        self._message = ""
        self._message_is_error = False
        self._syncing = False  # True while widgets are set from code: their observers ignore it
        self._last_draw = -math.inf
        self._version = 0  # bumped whenever the plotted data change
        self._rendered_version = -1

    @property
    def widget(self) -> widgets.VBox:
        """The top-level widget (the plots are rendered if they never were)."""
        if self._rendered_version < 0:
            self._redraw(force=True)
        return self._box

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)

    @staticmethod
    def _add_css_classes(prefix: str, hooks: Iterable[tuple[widgets.Widget, str]]) -> None:
        """Stable CSS classes ``<prefix>-<hook>``: handles for browser tests and custom CSS."""
        for widget, hook in hooks:
            widget.add_class(f"{prefix}-{hook}")

    def _show_exception(self, exc: BaseException, context: str) -> None:
        """Status line gets the message; the error area the whole traceback."""
        self.error = exc
        self._say(f"{context}: {type(exc).__name__}: {exc}", error=True)
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self.error_output.append_stderr(f"{context}:\n{text}")

    def _say(self, message: str, *, error: bool = False) -> None:
        self._message = message
        self._message_is_error = error

    def _set_state(self, state: str) -> None:
        self.state = state
        self._update_buttons()
        self._update_status()

    def _redraw(self, force: bool = False) -> None:
        """Render the plot and the status, at most every redraw interval unless forced."""
        now = time.perf_counter()
        interval = max(self.redraw_interval, self.render_seconds / self.render_budget)
        if not force and now - self._last_draw < interval:
            return
        self._before_redraw()
        if self._rendered_version != self._version:  # nothing new to plot: skip the render
            started = time.perf_counter()
            self.image.value = self._plot_png()
            self.render_seconds = time.perf_counter() - started
            self.renders += 1
            self._rendered_version = self._version
        self._last_draw = time.perf_counter()
        self._update_status()

    # -- the runner -------------------------------------------------------------------
    def _running_loop(self, blocking_name: str) -> asyncio.AbstractEventLoop | None:
        """The running asyncio event loop, or None (the status line then names
        ``blocking_name``, the synchronous alternative)."""
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            self._say(f"no running asyncio event loop here: use {blocking_name}()", error=True)
            self._update_status()
            return None

    def _start_task(
        self,
        loop: asyncio.AbstractEventLoop,
        work: Callable[[], bool],
        *,
        finished: Callable[[], None],
        interrupted: Callable[[], None],
        failed: Callable[[BaseException], None],
        running_state: str,
        stopped_state: str,
        what: str,
    ) -> asyncio.Future[None]:
        """Call ``work()`` in an asyncio task on ``loop`` until it returns False, yielding to
        the loop after every call, so widget callbacks (sliders, Pause) run *between* steps
        on the same thread, never inside one. Then ``finished()``; a KeyboardInterrupt calls
        ``interrupted()`` and an exception ``failed(exc)``. A task cancelled while in
        ``running_state`` leaves the panel in ``stopped_state``. Returns the task (also
        ``self.task``)."""

        async def run() -> None:
            try:
                while work():
                    await asyncio.sleep(0)
            except KeyboardInterrupt:
                interrupted()
                return
            except Exception as exc:
                failed(exc)
                return
            finished()

        def done(task: asyncio.Future[None]) -> None:
            if task.cancelled():
                if self.state == running_state:
                    self._say(f"the {what} task was cancelled")
                    self._set_state(stopped_state)
                    self._redraw(force=True)
                return
            exc = task.exception()
            if exc is not None and exc is not self.error:  # defensive: run() surfaces its own
                failed(exc)

        task = loop.create_task(run())
        task.add_done_callback(done)
        self.task: asyncio.Future[None] | None = task
        return task

    def _show_status(self, parts: Iterable[str]) -> None:
        """Status line: the state, then ``parts`` (HTML), then the last message below."""
        color = self.state_colors.get(self.state, "#555")
        line = " &nbsp;·&nbsp; ".join([f'<b style="color:{color}">{self.state}</b>', *parts])
        if self._message:
            style = "color:#cf222e" if self._message_is_error else "color:#555"
            line += f'<br><span style="{style}">{html.escape(self._message)}</span>'
        self.status.value = f'<div style="font-family:monospace;font-size:12px">{line}</div>'

    def _before_redraw(self) -> None:
        """Hook: bring the controls in line before a redraw (nothing by default)."""

    def _plot_png(self) -> bytes:
        raise NotImplementedError

    def _update_buttons(self) -> None:
        raise NotImplementedError

    def _update_status(self) -> None:
        raise NotImplementedError
