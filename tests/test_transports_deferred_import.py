"""paramiko imports `invoke` (~80 modules, ~0.1 s of CPU) only for its own SSHConfig's `Match
exec`; transports/__init__.py defers that import until invoke is first used (defer_import). The
process that reads nodes never runs invoke's code; whoever uses it gets the real module."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from clusterfix_tui import transports as T

ROOT = Path(__file__).resolve().parents[1]


def _fresh(code: str) -> str:
    """Run `code` in a new interpreter (nothing imported yet) and return its stdout."""
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120, check=False,
                       env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_importing_the_ssh_transport_runs_no_invoke_code(tmp_path: Path) -> None:
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Host node-1\n  HostName 10.9.9.9\n")
    out = _fresh(f"""
        import sys
        import clusterfix_tui.transports.ssh as ssh
        import paramiko
        from clusterfix_tui.runtime import build_runtime
        ssh.SSHPool({str(cfg)!r}).close()  # `ssh -G` where installed, else paramiko's parser
        ssh.SSHPool(None).close()
        print(sorted(m for m in sys.modules if m == "invoke" or m.startswith("invoke.")))
        print(type(sys.modules["invoke"]).__name__)
    """)
    names, kind = out.splitlines()
    assert names == "['invoke']"  # the stand-in alone: no invoke.* module ran
    assert kind == "_Deferred"


def test_paramikos_invoke_is_the_real_module_on_first_use() -> None:
    out = _fresh("""
        import sys
        import clusterfix_tui.transports.ssh
        import paramiko.config as pc
        run = pc.invoke.run  # what paramiko's `Match exec` calls
        import invoke
        print(pc.invoke_import_error, run is invoke.run, type(sys.modules["invoke"]).__name__,
              "invoke.collection" in sys.modules, callable(run))
    """)
    assert out.split() == ["None", "True", "module", "True", "True"]


def test_paramiko_parser_fallback_still_runs_match_exec(tmp_path: Path) -> None:
    """_Config (no `ssh` binary) is paramiko's SSHConfig: a `Match exec` line runs through
    invoke as before, in a process where invoke was deferred."""
    cfg = tmp_path / "ssh_config"
    cfg.write_text("Match exec \"test 1 = 1\"\n  HostName 10.9.9.9\n  User admin\n"
                   "Host *\n  Port 2222\n")
    out = _fresh(f"""
        import sys
        from clusterfix_tui.transports import ssh
        assert type(sys.modules["invoke"]).__name__ == "_Deferred"
        spec = ssh._Config({str(cfg)!r}, 5.0).resolve("node-1", "node-1")
        print(spec.hostname, spec.user, spec.port, type(sys.modules["invoke"]).__name__)
    """)
    assert out.split() == ["10.9.9.9", "admin", "2222", "module"]


@pytest.fixture
def fake_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Path]:
    name = f"cfx_deferred_probe_{tmp_path.name.replace('-', '_')}"
    runs = tmp_path / "runs"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(f"""
        import time
        with open({str(runs)!r}, "a") as fh:
            fh.write("ran\\n")
        time.sleep(0.05)  # other threads arrive while it runs
        VALUE = 42
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name, runs
    sys.modules.pop(name, None)


def test_the_module_runs_once_whatever_the_threads(fake_module: tuple[str, Path]) -> None:
    name, runs = fake_module
    assert T.defer_import(name)
    stand_in = sys.modules[name]
    assert not runs.exists()  # deferred: nothing ran
    got: list[int] = []
    threads = [threading.Thread(target=lambda: got.append(stand_in.VALUE)) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == [42] * 8
    assert runs.read_text() == "ran\n"
    assert sys.modules[name] is not stand_in and sys.modules[name].VALUE == 42


def test_nothing_deferred_when_absent_or_already_imported(fake_module: tuple[str, Path]) -> None:
    assert not T.defer_import("cfx_no_such_module_anywhere")
    assert "cfx_no_such_module_anywhere" not in sys.modules
    assert not T.defer_import("json")
    assert type(sys.modules["json"]).__name__ == "module"
    name, runs = fake_module
    T.defer_import(name)
    T.load_deferred(name)  # imported now, in this thread
    assert runs.read_text() == "ran\n" and type(sys.modules[name]).__name__ == "module"


def test_a_failing_import_raises_at_first_use_and_again_after(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    name = f"cfx_deferred_broken_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{name}.py").write_text("raise RuntimeError('broken at import')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert T.defer_import(name)
        stand_in = sys.modules[name]
        for _ in range(2):
            with pytest.raises(RuntimeError, match="broken at import"):
                stand_in.anything  # noqa: B018
    finally:
        sys.modules.pop(name, None)
