"""The wizard's collector setting (#17 item 5): fewer young-generation collections while it runs
(each walks the survivors again: the new page's cached lines), the setting given back on exit."""

from __future__ import annotations

import gc
from pathlib import Path

from ui_fakes import make_app, settle

from clusterfix_tui.ui.app import UI_GC_THRESHOLD0


async def test_the_wizard_raises_the_first_gc_threshold_and_restores_it(tmp_path: Path) -> None:
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, before[1], before[2])  # CPython's default
        app, _ = make_app(tmp_path, host_key_nodes=())
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert gc.get_threshold() == (UI_GC_THRESHOLD0, before[1], before[2])
        assert gc.get_threshold() == (700, before[1], before[2])
        # a higher threshold already set is left as it is
        gc.set_threshold(UI_GC_THRESHOLD0 * 2, before[1], before[2])
        app, _ = make_app(tmp_path, host_key_nodes=())
        async with app.run_test(size=(80, 24)) as pilot:
            await settle(pilot)
            assert gc.get_threshold()[0] == UI_GC_THRESHOLD0 * 2
        assert gc.get_threshold()[0] == UI_GC_THRESHOLD0 * 2
    finally:
        gc.set_threshold(*before)
