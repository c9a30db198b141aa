"""The key footer (ui/widgets/footer.py) is one widget that draws its keys (#17 item 5): new keys
are a repaint, never a recompose (Textual's Footer mounted a widget per key and laid the screen
out twice whenever the keys changed: on every focus move into or out of a text box). It shows
and does what Textual's Footer does: the keys of the focused widget and its ancestors, a click
on a key presses it, a disabled key is dimmed, the key under the mouse shows its tooltip."""

from __future__ import annotations

from test_ui_panels import _count_layouts
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from clusterfix_tui.ui.widgets.footer import KeyFooter


class Table(Static, can_focus=True):
    BINDINGS = [Binding("x", "hit", "Same keys")]

    def action_hit(self) -> None:
        self.app.hits.append(self.id)  # type: ignore[attr-defined]


class Other(Static, can_focus=True):
    BINDINGS = [Binding("y", "noop", "Other keys"),
                Binding("z", "off", "Disabled", tooltip="not now")]

    def action_noop(self) -> None:
        pass

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return None if action == "off" else True


class FooterApp(App[None]):
    BINDINGS = [Binding("q", "quit", "Quit")]

    def __init__(self) -> None:
        super().__init__()
        self.hits: list[str | None] = []

    def compose(self) -> ComposeResult:
        yield Table("a", id="a")
        yield Table("b", id="b")
        yield Other("c", id="c")
        yield Input(id="box")
        yield KeyFooter()


def _line(app: App[None]) -> str:
    """The footer's line as on the screen (the screen's last line)."""
    return "".join(seg.text for seg in app.screen._compositor.render_strips()[-1])


async def test_footer_shows_the_focused_keys_without_a_layout_pass() -> None:
    app = FooterApp()
    async with app.run_test(size=(80, 10)) as pilot:
        app.query_one("#a").focus()
        await pilot.pause()
        footer = app.screen.query_one(KeyFooter)
        assert " x Same keys  q Quit " in _line(app)
        assert "^p palette" in _line(app)  # the command palette's key, at the right
        assert _line(app).rstrip().endswith("^p palette") and len(_line(app)) == 80
        for widget, shown, hidden in (
                ("#b", ["x Same keys", "q Quit"], ["Other keys"]),
                ("#c", ["y Other keys", "z Disabled", "q Quit"], ["Same keys"]),
                # a text box takes the printable keys: they leave the footer while it has focus
                ("#box", ["^p palette"], ["Quit", "Same keys", "Other keys"]),
                ("#a", ["x Same keys", "q Quit"], ["Other keys"])):
            layouts = _count_layouts(app.screen)
            app.query_one(widget).focus()
            await pilot.pause()
            line = _line(app)
            assert all(s in line for s in shown) and not any(s in line for s in hidden), line
            # the screen not laid out again for the footer: the same widget, no child mounted
            assert layouts[0] == 0, (widget, layouts[0])
            assert app.screen.query_one(KeyFooter) is footer and not footer.children
            del app.screen._refresh_layout


async def test_footer_keys_click_dim_and_tooltip() -> None:
    app = FooterApp()
    async with app.run_test(size=(80, 10)) as pilot:
        app.query_one("#a").focus()
        await pilot.pause()
        x = _line(app).index("Same keys")
        await pilot.click(KeyFooter, offset=(x, 0))
        await pilot.pause()
        assert app.hits == ["a"]  # the click pressed `x` for the focused table
        app.query_one("#c").focus()
        await pilot.pause()
        bottom = app.screen._compositor.render_strips()[-1]
        segments = {seg.text.strip(): seg.style for seg in bottom}
        # disabled: dimmed (drawn in colours faded towards the background)
        assert segments["z"].color != segments["y"].color
        assert segments["Disabled"].color != segments["Other keys"].color
        y = app.screen.size.height - 1
        for label, tooltip in (("Disabled", "not now"), ("Other keys", None)):
            x = _line(app).index(label)
            await pilot.hover(KeyFooter, offset=(x, 0))
            await pilot.pause()
            widget, _ = app.screen.get_widget_at(x, y)
            assert widget.tooltip == tooltip, label
