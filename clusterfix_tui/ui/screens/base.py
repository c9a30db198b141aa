"""The frame every wizard screen shares: header (context + session time), dry-run banner, footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Header, Static
from textual.worker import Worker

from clusterfix_tui.ui.widgets.footer import KeyFooter

if TYPE_CHECKING:
    from clusterfix_tui.ui.app import ClusterfixApp


class WizardScreen(Screen[None]):
    HELP = ""
    BINDINGS = [Binding("escape", "back", "Back")]

    @property
    def wizard(self) -> ClusterfixApp:
        return cast("ClusterfixApp", self.app)

    def compose(self) -> ComposeResult:
        yield Header(icon="⛭")
        if self.wizard.dry_run:
            yield Static(
                "DRY RUN · nothing on the cluster will change (commands are recorded, not run)",
                classes="dry-run-banner",
            )
        yield from self.compose_body()
        yield KeyFooter()

    def compose_body(self) -> ComposeResult:
        yield from ()

    CAN_GO_BACK = True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "back":
            return self.CAN_GO_BACK
        return True

    def action_back(self) -> None:
        if self.CAN_GO_BACK and len(self.app.screen_stack) > 2:
            self.app.pop_screen()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        # Worker.StateChanged does not bubble: hand it to the app's one handler
        self.wizard.worker_state_changed(event)

    def worker_failed(self, worker) -> None:
        """Called by the app's one Worker.StateChanged handler when a worker of this screen fails."""
