"""The runbook's repair steps, one module per step (see engine.py for the step interface).

`get_step(name)` / `all_steps()` give the step objects in core.model.STEP_ORDER. Each module
exposes a module-level `STEP` object.
"""

from __future__ import annotations

import importlib
from typing import Any

from clusterfix_tui.core.model import STEP_ORDER

# step name -> module under clusterfix_tui.core.fixes
STEP_MODULES: dict[str, str] = {name: name for name in STEP_ORDER}


def get_step(name: str) -> Any:
    """The step object named `name`. KeyError for an unknown name."""
    if name not in STEP_MODULES:
        raise KeyError(f"unknown step {name!r}; steps: {', '.join(STEP_ORDER)}")
    module = importlib.import_module(f"clusterfix_tui.core.fixes.{STEP_MODULES[name]}")
    return module.STEP


def all_steps() -> list[Any]:
    return [get_step(name) for name in STEP_ORDER]
