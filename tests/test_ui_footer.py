"""The key footer (ui/widgets/footer.py) is rebuilt only when the keys it shows change (#17 item 5:
a focus move between two tables used to rebuild it, ~1/3 of a panel switch)."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Static
from textual.widgets._footer import FooterKey

from clusterfix_tui.ui.widgets.footer import KeyFooter


class Table(Static, can_focus=True):
    BINDINGS = [Binding("x", "noop", "Same keys")]

    def action_noop(self) -> None:
        pass


class Other(Static, can_focus=True):
    BINDINGS = [Binding("y", "noop", "Other keys")]

    def action_noop(self) -> None:
        pass


class FooterApp(App[None]):
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [Binding("q", "quit", "Quit")]

    def compose(self) -> ComposeResult:
        yield Table("a", id="a")
        yield Table("b", id="b")
        yield Other("c", id="c")
        yield KeyFooter()


def _keys(app: App[None]) -> list[FooterKey]:
    return list(app.screen.query(FooterKey))


async def test_footer_rebuilt_only_when_its_keys_change() -> None:
    app = FooterApp()
    async with app.run_test(size=(80, 10)) as pilot:
        app.query_one("#a").focus()
        await pilot.pause()
        before = _keys(app)
        assert [k.description for k in before] == ["Same keys", "Quit"]
        app.query_one("#b").focus()  # same keys shown: the same widgets stay
        await pilot.pause()
        after = _keys(app)
        assert [k.description for k in after] == ["Same keys", "Quit"]
        assert all(x is y for x, y in zip(before, after, strict=True))
        app.query_one("#c").focus()  # other keys: rebuilt, and shows them
        await pilot.pause()
        assert [k.description for k in _keys(app)] == ["Other keys", "Quit"]
        app.query_one("#a").focus()
        await pilot.pause()
        assert [k.description for k in _keys(app)] == ["Same keys", "Quit"]
