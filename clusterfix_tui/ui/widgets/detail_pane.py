"""A scrolling text pane whose new text is a repaint of its own lines, not a layout pass.

The diagnostics screen's detail panes (a finding's explanation and evidence, a pod's log lines,
a node's routes and NAT chains) were a VerticalScroll holding a Static: every new text changed the
Static's height, which laid the whole screen out again, and the new height changed the scroll
container's virtual size and scrollbar, which laid it out a second time (two of the filter keys'
three layout passes at 1,000 nodes). This pane is one Line-API widget of a size fixed by its CSS
(like `PagedTable` and `LogPane`): `update(text)` wraps the text to the pane's width with
Textual's own text renderer (the same lines a Static draws), sets the virtual size without a
layout pass and redraws the pane. Only a vertical scrollbar that appears or goes (the text grew
past or shrank within the pane's height) still asks for one, to place the bar.

It scrolls like the VerticalScroll it replaces (the same keys, focusable, no horizontal scroll),
and `render()` gives the text shown (tests read it as they read the Static's).
"""

from __future__ import annotations

from typing import Any

from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.visual import Visual, visualize
from textual.widget import Widget

from clusterfix_tui.ui.widgets.paged_table import scrollbars_now, size_updated


class DetailPane(ScrollView, can_focus=True):
    """Wrapped text in a pane of fixed size (see the module's text)."""

    ALLOW_MAXIMIZE = False  # as the VerticalScroll it replaces
    DEFAULT_CSS = """
    DetailPane {
        width: 1fr;
        height: 1fr;
        overflow-x: hidden;
        overflow-y: auto;
    }
    """

    def __init__(self, text: Text | str = "", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._text = text if isinstance(text, Text) else Text(text)
        self._visual: Visual | None = None
        self._lines: list[Strip] = []
        self._wrapped_at: Size | None = None  # the pane's size `_lines` fit; None: wrap again

    @property
    def text(self) -> Text:
        return self._text

    def render(self) -> Text:  # type: ignore[override] - what the pane shows (tests read it)
        return self._text

    def update(self, text: Text | str) -> None:
        """Show `text` from its first line: a redraw of the pane (see the module's text)."""
        self._text = text if isinstance(text, Text) else Text(text)
        self._visual = None
        self._wrapped_at = None
        if self.is_mounted and self.outer_size.width:
            self._wrap()
        self.refresh()

    def _content_width(self, scrollbar: bool) -> int:
        width = self.outer_size.width - self.styles.gutter.width
        if scrollbar:
            width -= self.styles.scrollbar_size_vertical
        return max(0, width)

    def _wrap(self) -> None:
        """Wrap the text at the width left by the scrollbar it needs, and size the pane's
        scrolling to it (no layout pass: the pane's own size is fixed by its CSS)."""
        if self._visual is None:
            self._visual = visualize(self, self._text, markup=False)
        style = self.visual_style
        height = self.outer_size.height - self.styles.gutter.height
        scroll = self.styles.overflow_y
        bar = scroll == "scroll"
        width = self._content_width(bar)
        lines = Visual.to_strips(self, self._visual, width, None, style)
        if scroll == "auto" and len(lines) > height and not bar:
            width = self._content_width(True)
            lines = Visual.to_strips(self, self._visual, width, None, style)
        # one segment per run of one style (a NAT table's line was a segment per cell): the
        # compositor cuts every line it draws at each widget's edges, segment by segment
        self._lines = [line.simplify() for line in lines]
        self._wrapped_at = self.outer_size
        size = Size(width, len(lines))
        if size != self.virtual_size:
            self.set_reactive(Widget.virtual_size, size)
            scrollbars_now(self)  # a bar that comes or goes: one layout pass to place it

    def _size_updated(self, size: Size, virtual_size: Size, container_size: Size,
                      layout: bool = True) -> bool:
        resized = size_updated(self, size, virtual_size, container_size, layout)
        if size.width and size != self._wrapped_at:
            self._wrap()  # a new size wraps the text anew (and may show or hide the bar)
        return resized

    def render_line(self, y: int) -> Strip:
        if self._wrapped_at != self.outer_size and self.outer_size.width:
            self._wrap()
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        # the background alone past the text's end (as the Static's container filled it)
        base = Style(bgcolor=self.visual_style.rich_style.bgcolor)
        index = scroll_y + y
        if not 0 <= index < len(self._lines):
            return Strip.blank(width, base)
        return self._lines[index].crop_extend(scroll_x, scroll_x + width, base)
