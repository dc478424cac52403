"""What every acktr_lab widget panel shares: display, a status line and an error area."""

from __future__ import annotations

import traceback
from typing import Any

import ipywidgets as widgets


class WidgetPanel:
    """Base of the dashboards: subclasses build ``_box`` and ``error_output`` and implement
    ``_redraw``, ``_update_buttons`` and ``_update_status``."""

    _box: widgets.VBox
    error_output: widgets.Output
    _rendered_version: int
    state: str
    error: BaseException | None
    _message: str
    _message_is_error: bool

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
        raise NotImplementedError

    def _update_buttons(self) -> None:
        raise NotImplementedError

    def _update_status(self) -> None:
        raise NotImplementedError
