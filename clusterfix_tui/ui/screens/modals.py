"""Modal dialogs: confirmation (y / n / escape), unknown host keys (all of them on one screen),
report export, help, raw node output."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import (
    Button,
    DataTable,
    Input,
    Label,
    Markdown,
    OptionList,
    RadioButton,
    RadioSet,
    Static,
)

from clusterfix_tui.ui.widgets.live_table import LiveTable


class ConfirmationModal(ModalScreen[bool]):
    """Ask one yes/no question; `y` / `n` / `escape`. The body names exactly what will change."""

    BINDINGS = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n", "answer(False)", "No"),
        Binding("escape", "answer(False)", "Cancel"),
    ]

    def __init__(self, title: str, body: RenderableType, *, yes: str = "Yes", no: str = "No",
                 danger: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self._title = title
        self._body = body
        self._yes = yes
        self._no = no
        self._danger = danger

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-danger" if self._danger else ""):
            yield Label(self._title, id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Static(self._body)
            with Horizontal(id="dialog-buttons"):
                yield Button(f"{self._yes} \\[y]", id="yes",
                             variant="error" if self._danger else "primary", compact=True)
                yield Button(f"{self._no} \\[n]", id="no", compact=True)

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "yes")

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


@dataclass(frozen=True)
class UnknownHostKey:
    """One unknown host key to judge: the host offering it (a node, or the jump host some nodes
    are reached through), its address, the key, and the nodes that wait on it."""

    host: str
    address: str
    key_type: str
    fingerprint: str
    nodes: tuple[str, ...]

    @property
    def row_key(self) -> str:
        return f"{self.host}\x00{self.key_type}\x00{self.fingerprint}"

    @property
    def is_jump_host(self) -> bool:
        return self.nodes != (self.host,)


class HostKeysModal(ModalScreen["list[str]"]):
    """Every unknown host key of this connect round on one screen (node, address, key type,
    SHA256 fingerprint): accept all (`a`), the ticked ones (`y`; `space`/`enter`/click ticks),
    or none (`n` / `escape`). Dismisses with the row keys accepted ([] = none). Nothing is ticked
    at first: a key is trusted only by a decision. Changed keys are never offered (they are
    refused, always); they are named below the table."""

    DEFAULT_CSS = """
    HostKeysModal #host-keys-table { height: 1fr; }
    HostKeysModal #host-keys-intro { margin-bottom: 1; }
    HostKeysModal #host-keys-changed, HostKeysModal #host-keys-status { height: auto; }
    """
    BINDINGS = [
        Binding("space", "toggle", "Tick"),
        Binding("a", "accept_all", "Accept all"),
        Binding("y", "accept_selected", "Accept ticked"),
        Binding("n,escape", "refuse_all", "Refuse all"),
    ]

    def __init__(self, keys: list[UnknownHostKey], *, changed: tuple[str, ...] = (),
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.keys = list(keys)
        self.changed = tuple(changed)
        self.selected: set[str] = set()

    def compose(self) -> ComposeResult:
        n_nodes = len({n for k in self.keys for n in k.nodes})
        with Vertical(id="dialog", classes="-wide -tall"):
            yield Label(f"Unknown host keys: {len(self.keys)} "
                        f"(for {n_nodes} node{'s' if n_nodes != 1 else ''})", id="dialog-title")
            yield Static("Not in known_hosts. Compare each fingerprint with `ssh-keygen -lf "
                         "/etc/ssh/ssh_host_*_key.pub` on the host. An accepted key is added to "
                         "the known_hosts in use; a node whose key is not accepted is left out.",
                         id="host-keys-intro")
            table: DataTable = LiveTable(id="host-keys-table", cursor_type="row",
                                         zebra_stripes=True)
            yield table
            refused = (Text("CHANGED keys, refused (fix known_hosts by hand): ",
                            style="bold red") + Text(", ".join(self.changed))
                       if self.changed else Text(""))
            yield Static(refused, id="host-keys-changed")
            yield Static("", id="host-keys-status")
            with Horizontal(id="dialog-buttons"):
                yield Button("Accept all \\[a]", id="accept-all", compact=True)
                yield Button("Accept ticked \\[y]", id="accept-selected", variant="primary",
                             compact=True)
                yield Button("Refuse all \\[n]", id="refuse-all", compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("", key="tick", width=1)
        table.add_column("node / address", key="host")
        table.add_column("key type / SHA256 fingerprint", key="key")
        for key in self.keys:
            host = Text(key.host, style="bold")
            host.append(f"\n{key.address}")
            if key.is_jump_host:
                host.append(f"\njump host of {len(key.nodes)} node"
                            f"{'s' if len(key.nodes) != 1 else ''}", style="italic")
            fp = Text(f"{key.key_type}\n")
            fp.append(key.fingerprint, style="bold yellow")
            table.add_row(self._tick(key.row_key), host, fp, key=key.row_key,
                          height=3 if key.is_jump_host else 2)
        table.focus()
        self._update_status()

    def _tick(self, row_key: str) -> Text:
        return Text("✔", style="bold green") if row_key in self.selected else Text("·")

    def _update_status(self) -> None:
        self.query_one("#host-keys-status", Static).update(Text(
            f"{len(self.selected)} of {len(self.keys)} ticked; space or enter ticks the row.",
            style="dim"))

    def toggle(self, row_key: str) -> None:
        if row_key in self.selected:
            self.selected.discard(row_key)
        else:
            self.selected.add(row_key)
        self.query_one(DataTable).update_cell(row_key, "tick", self._tick(row_key))
        self._update_status()

    def action_toggle(self) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        if row_key.value is not None:
            self.toggle(row_key.value)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:
            self.toggle(event.row_key.value)

    def action_accept_all(self) -> None:
        self.dismiss([k.row_key for k in self.keys])

    def action_accept_selected(self) -> None:
        self.dismiss([k.row_key for k in self.keys if k.row_key in self.selected])

    def action_refuse_all(self) -> None:
        self.dismiss([])

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        {"accept-all": self.action_accept_all, "accept-selected": self.action_accept_selected,
         "refuse-all": self.action_refuse_all}[str(event.button.id)]()


class ExportModal(ModalScreen["tuple[str, str] | None"]):
    """Where and in which format to write the session report (the .json is always written too)."""

    BINDINGS = [Binding("escape", "cancel", "Cancel")]
    FORMATS = ("md", "html", "json")

    def __init__(self, default_path: Path) -> None:
        super().__init__()
        self._default = default_path

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label("Export the session report", id="dialog-title")
            yield Label("Path (the .json is written beside it):")
            yield Input(str(self._default), id="export-path", select_on_focus=False)
            with RadioSet(id="export-format"):
                for fmt in self.FORMATS:
                    yield RadioButton(fmt, value=(fmt == "md"), id=f"fmt-{fmt}")
            with Horizontal(id="dialog-buttons"):
                yield Button("Export \\[enter]", id="yes", variant="primary", compact=True)
                yield Button("Cancel \\[esc]", id="no", compact=True)

    def on_mount(self) -> None:
        inp = self.query_one(Input)
        inp.cursor_blink = not self.app.is_headless  # steady in tests and screenshots
        inp.focus()

    def _format(self) -> str:
        pressed = self.query_one(RadioSet).pressed_button
        return str(pressed.label) if pressed is not None else "md"

    def on_radio_set_changed(self, event: RadioSet.Changed) -> None:
        inp = self.query_one(Input)
        path = Path(inp.value)
        fmt = str(event.pressed.label)
        if path.suffix.lstrip(".") in self.FORMATS:
            inp.value = str(path.with_suffix("." + fmt))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "yes":
            self._submit()
        else:
            self.dismiss(None)

    def _submit(self) -> None:
        value = self.query_one(Input).value.strip()
        if not value:
            self.notify("Give a path for the report", severity="warning")
            return
        self.dismiss((value, self._format()))

    def action_cancel(self) -> None:
        self.dismiss(None)


GLOBAL_HELP = """\
## Everywhere
| key | what |
|---|---|
| `?` | this help |
| `l` | the full session log |
| `ctrl+p` | command palette (go to a screen, export, theme, …) |
| `ctrl+t` | light / dark theme |
| `escape` | back |
| `q` | quit (asks first while a step runs) |

Nothing changes on the cluster without a confirmation dialog that names the change.
Everything that runs is journaled; the report is exported from the journal.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark", "dismiss_help", "Close")]

    def __init__(self, screen_help: str) -> None:
        super().__init__()
        self._screen_help = screen_help

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-wide"):
            yield Label("Help", id="dialog-title")
            with VerticalScroll(id="dialog-body"):
                yield Markdown(self._screen_help + "\n\n" + GLOBAL_HELP)
            with Horizontal(id="dialog-buttons"):
                yield Button("Close \\[esc]", id="no", compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class RawOutputScreen(ModalScreen[None]):
    """Every raw command output gathered from one node: pick a command on the left."""

    BINDINGS = [Binding("escape", "close", "Close")]

    def __init__(self, node: str, outputs: dict[str, str]) -> None:
        super().__init__()
        self._node = node
        self._outputs = outputs

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="-wide -tall"):
            yield Label(f"Raw output from {self._node}", id="dialog-title")
            if not self._outputs:
                yield Static("No facts were gathered from this node.")
            else:
                with Horizontal(id="raw-body"):
                    yield OptionList(*self._outputs, id="raw-commands")
                    with VerticalScroll(id="raw-view"):
                        yield Static("", id="raw-text")
            with Horizontal(id="dialog-buttons"):
                yield Button("Close \\[esc]", id="no", compact=True)

    def on_mount(self) -> None:
        if self._outputs:
            options = self.query_one(OptionList)
            options.highlighted = 0
            options.focus()
            self._show(next(iter(self._outputs)))

    def _show(self, command: str) -> None:
        text = Text(f"$ {command}\n", style="bold")
        text.append(self._outputs.get(command, ""))
        self.query_one("#raw-text", Static).update(text)

    def on_option_list_option_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self._show(str(event.option.prompt))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(None)

    def action_close(self) -> None:
        self.dismiss(None)
