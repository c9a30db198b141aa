"""The session journal: append-only JSON lines, one flushed and fsync'd write per event.

It is the source of the report and of `clusterfix-tui rollback`, and the record of what ran when a
session dies: `command_start` is written (and synced) before a command runs, `command_end` after,
so a `command_start` without its `command_end` means the process died while the command ran.
Every event passes through redaction before it reaches the disk: secrets never enter the file.
The file is created with mode 0600 (it names hosts and commands; it must not be world-readable).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import threading
from typing import Any

from clusterfix_tui.core.redact import redact_obj

EVENT_TYPES: tuple[str, ...] = (
    "session_start",
    "cluster_identity",
    "node_identity",
    "node_left_out",
    "diagnosis",
    "plan",
    "decision",
    "precheck",
    "command_start",
    "command_end",
    "step_end",
    "validation",
    "note",
    "trace",
    "error",
    "session_end",
)


def now_rfc3339() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def _plain(obj: Any) -> Any:
    to_dict = getattr(obj, "to_dict", None)
    if callable(to_dict):
        return to_dict()
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


class Journal:
    """Append events to `path`. Thread-safe: the UI's workers and streaming callbacks may share it.

    `Journal(None)` keeps events in memory only (tests, `validate` without --journal).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self._lock = threading.Lock()
        self._seq = 0
        self.events: list[dict[str, Any]] = []
        self._redact = redact_obj
        self._fd: int | None = None
        if self.path is not None:
            parent = os.path.dirname(os.path.abspath(self.path))
            os.makedirs(parent, exist_ok=True)
            existed = os.path.exists(self.path)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            if not existed:
                os.fchmod(self._fd, 0o600)  # umask must not widen it; chmod to be exact
            else:
                # continuing a journal: keep numbering monotonic
                for ev in Journal.read(self.path):
                    self._seq = max(self._seq, int(ev.get("seq", 0)))

    def write(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Record one event and return it as written (redacted)."""
        with self._lock:
            self._seq += 1
            event: dict[str, Any] = {"seq": self._seq, "ts": now_rfc3339(), "type": type_}
            event.update(_plain(fields))
            event = self._redact(event)
            line = json.dumps(event, ensure_ascii=False, sort_keys=False, default=str) + "\n"
            if self._fd is not None:
                data = line.encode("utf-8")
                # one write() per event with O_APPEND: a killed process leaves at most a torn
                # last line, never an interleaved one.
                written = 0
                while written < len(data):
                    written += os.write(self._fd, data[written:])
                os.fsync(self._fd)
            self.events.append(event)
            return event

    # convenience for callers that say `journal.event(...)`
    event = write

    def close(self) -> None:
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def __enter__(self) -> Journal:  # noqa: PYI034
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def read(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
        """All complete events of a journal. A torn or garbled line (a process killed mid-write)
        is skipped, never fatal."""
        events: list[dict[str, Any]] = []
        with open(path, "rb") as fh:
            for raw in fh:
                raw = raw.strip()
                if not raw:
                    continue
                try:
                    ev = json.loads(raw.decode("utf-8", errors="replace"))
                except ValueError:
                    continue
                if isinstance(ev, dict) and "type" in ev:
                    events.append(ev)
        return events
