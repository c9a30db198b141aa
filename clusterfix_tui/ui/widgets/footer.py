"""The key footer: one widget that draws the keys itself, so that new keys are a repaint.

Textual's Footer is a container of one FooterKey widget per key, recomposed whenever the keys
shown change: the old keys removed, new ones mounted and styled, and, as their sizes are new, the
whole screen laid out twice. The keys change on every focus move into or out of a text box (an
Input takes the printable keys: `p`, `r`, `q`… leave the footer while it has the focus), i.e. on
the diagnostics screen's filter keys `/` and `enter`: with 1,000 nodes that was ~1/3 of those
keys (#17 item 5). This footer is one line of fixed size (docked at the bottom): it keeps what it
shows (key, label, enabled, tooltip of every shown binding) and, when that changes, draws the new
line (a repaint of one line, no widget mounted, no layout pass).

It looks as Textual's Footer does (the same theme variables: a key in `$footer-key-foreground`,
bold, padded by a space either side, its label after it; a disabled key dimmed; the key under the
mouse in `$block-hover-background`; the command palette's key at the right, after a `▏` bar), and
acts the same: a click on a key presses it (a disabled one rings the bell), the mouse over a key
shows its tooltip. Binding groups are drawn as separate keys.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from rich.cells import cell_len
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.screen import Screen
from textual.strip import Strip
from textual.widget import Widget


class _Key(NamedTuple):
    key: str
    action: str
    description: str
    shown: str  # the key as drawn (App.get_key_display)
    enabled: bool
    tooltip: str
    group: Any


def shown_bindings(screen: Screen[Any]) -> tuple[_Key, ...]:
    """What a footer on `screen` shows: one entry per shown binding's action, in order."""
    seen: set[str] = set()
    keys = []
    for (_node, binding, enabled, tooltip) in screen.active_bindings.values():
        if not binding.show or binding.action in seen:  # Footer: one key per action
            continue
        seen.add(binding.action)
        keys.append(_Key(binding.key, binding.action, binding.description,
                         screen.app.get_key_display(binding), enabled, tooltip or "",
                         binding.group))
    return tuple(keys)


class KeyFooter(Widget, can_focus=False):
    ALLOW_SELECT = False
    COMPONENT_CLASSES = {
        "footer-key--key",
        "footer-key--description",
        "footer-key--item",
        "footer-key--hover",
        "footer-key--palette-bar",
    }
    DEFAULT_CSS = """
    KeyFooter {
        dock: bottom;
        height: 1;
        width: 1fr;
        color: $footer-foreground;
        background: $footer-background;
        & > .footer-key--item {
            color: $footer-foreground;
            background: $footer-item-background;
        }
        & > .footer-key--key {
            color: $footer-key-foreground;
            background: $footer-key-background;
            text-style: bold;
        }
        & > .footer-key--description {
            color: $footer-description-foreground;
            background: $footer-description-background;
        }
        & > .footer-key--hover {
            color: $footer-key-foreground;
            background: $block-hover-background;
        }
        & > .footer-key--palette-bar {
            color: $foreground 20%;
        }
    }
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._keys: tuple[_Key, ...] = ()
        self._palette: _Key | None = None
        self._spans: list[tuple[int, int, _Key]] = []  # (x0, x1, key) as drawn last
        self._hover: str | None = None  # the action of the key under the mouse

    # -- what it shows ---------------------------------------------------------------------------
    def on_mount(self) -> None:
        self.screen.bindings_updated_signal.subscribe(self, self.bindings_changed)

    def on_unmount(self) -> None:
        self.screen.bindings_updated_signal.unsubscribe(self)

    def bindings_changed(self, screen: Screen[Any]) -> None:
        if not screen.app.app_focus or not self.is_attached or screen is not self.screen:
            return
        keys = shown_bindings(screen)
        palette = self._palette_key(screen)
        if (keys, palette) == (self._keys, self._palette):
            return
        self._keys, self._palette = keys, palette
        self.refresh()

    def _palette_key(self, screen: Screen[Any]) -> _Key | None:
        app = self.app
        if not app.ENABLE_COMMAND_PALETTE:
            return None
        got = screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
        if got is None:
            return None
        _node, binding, enabled, _tooltip = got
        return _Key(binding.key, binding.action, binding.description,
                    app.get_key_display(binding), enabled, binding.tooltip or binding.description,
                    None)

    # -- drawing ---------------------------------------------------------------------------------
    def _key_segments(self, key: _Key, compact: bool = False) -> list[Segment]:
        """One key as Textual's FooterKey draws it (compact: no space around the key, one before
        its label; Footer draws the command palette's key so)."""
        item = self.get_component_rich_style("footer-key--item")
        if self._hover == key.action and key.enabled:
            item = item + self.get_component_rich_style("footer-key--hover")
        if not key.enabled:
            item = item + Style(dim=True)
        key_style = item + self.get_component_rich_style("footer-key--key")
        if not key.description:
            return [Segment(key.shown, key_style)]
        described = item + self.get_component_rich_style("footer-key--description")
        if compact:
            return [Segment(key.shown, key_style), Segment(f" {key.description}", described)]
        return [Segment(f" {key.shown} ", key_style), Segment(f"{key.description} ", described)]

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        # the footer's own background where no key is: no foreground, as where Textual's Footer
        # has no FooterKey (a segment apart from the keys' also on a screen drawn dimmed behind a
        # modal one)
        blank = Style(bgcolor=self.rich_style.bgcolor)
        if y:
            return Strip.blank(width, blank)
        segments: list[Segment] = []
        spans = []
        x = 0
        for key in self._keys:
            parts = self._key_segments(key)
            n = sum(cell_len(part.text) for part in parts)
            spans.append((x, x + n, key))
            segments += parts
            x += n
        end = width
        palette: list[Segment] = []
        if self._palette is not None:
            # docked at the right after a bar, padded by a space (Footer's -command-palette):
            # the keys before it are cut where it starts
            palette = self._key_segments(self._palette, compact=True)
            n = sum(cell_len(part.text) for part in palette)
            end = max(0, width - n - 2)
            spans = [(x0, min(x1, end), key) for x0, x1, key in spans if x0 < end]
            bar_style = self.get_component_rich_style("footer-key--palette-bar")
            palette = [Segment("▏", bar_style), *palette, Segment(" ", blank)]
            spans.append((end + 1, end + 1 + n, self._palette))
        self._spans = spans
        keys = Strip(segments).crop_extend(0, end, blank)
        return Strip.join([keys, Strip(palette)]).crop_extend(0, width, blank)

    # -- mouse -----------------------------------------------------------------------------------
    def _key_at(self, x: int) -> _Key | None:
        for x0, x1, key in self._spans:
            if x0 <= x < x1:
                return key
        return None

    def on_mouse_move(self, event: events.MouseMove) -> None:
        key = self._key_at(event.x)
        action = key.action if key is not None else None
        if action != self._hover:
            self._hover = action
            self.tooltip = (key.tooltip or None) if key is not None else None
            self.refresh()

    def on_leave(self, event: events.Leave) -> None:
        if self._hover is not None:
            self._hover = None
            self.tooltip = None
            self.refresh()

    def on_mouse_down(self, event: events.MouseDown) -> None:
        key = self._key_at(event.x)
        if key is None:
            return
        if key.enabled:
            self.app.simulate_key(key.key)
        else:
            self.app.bell()
