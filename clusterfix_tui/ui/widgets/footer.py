"""The key footer, rebuilt only when the keys it shows change.

Textual's Footer recomposes (removes and mounts a FooterKey per binding, restyles them, lays the
screen out again) on every focus change, though moving between two tables shows the same keys:
on the diagnostics screen that was ~1/3 of a panel switch's CPU and most of `tab`'s (#17 item 5).
This one compares what it would show (key, label, enabled, tooltip of every shown binding) with
what it shows, and recomposes only when that differs.
"""

from __future__ import annotations

from typing import Any

from textual.screen import Screen
from textual.widgets import Footer


def shown_bindings(screen: Screen[Any]) -> tuple[tuple[Any, ...], ...]:
    """What a footer on `screen` shows: one entry per shown binding, in order."""
    return tuple(
        (binding.key, binding.action, binding.description, binding.key_display, enabled, tooltip,
         binding.group)
        for (_node, binding, enabled, tooltip) in screen.active_bindings.values()
        if binding.show
    )


class KeyFooter(Footer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._shown: tuple[tuple[Any, ...], ...] | None = None

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if screen.app.app_focus and self.is_attached and screen is self.screen:
            shown = shown_bindings(screen)
            if self._bindings_ready and shown == self._shown:
                return
            self._shown = shown
            # Textual's Footer recomposes after the next refresh: a frame of the old keys and a
            # layout pass of its own; recomposed before it, the new keys come with the layout
            # pass the focus change asks for anyway (a filter key: 3 passes -> 2)
            self._bindings_ready = True
            self.call_later(self.recompose)
            return
        super().bindings_changed(screen)
