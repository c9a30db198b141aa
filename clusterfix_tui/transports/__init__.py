"""The transports: what the core's ports (core/ports.py) are implemented over (SSH, the
Kubernetes API, this machine, recordings).

Importing any of them first runs this package, which defers one import of paramiko's (below)."""

from __future__ import annotations

import importlib
import importlib.util
import sys
import threading
import types
from typing import Any


class _Deferred(types.ModuleType):
    """Stands in sys.modules for a module not run yet; the first attribute it does not have
    imports the real module (which then replaces it in sys.modules) and every attribute read
    through it from then on is the real module's. `import name` finds this one without running
    anything (its __spec__ is the real module's spec, not initialising)."""

    def __init__(self, name: str, spec: Any):
        super().__init__(name)
        self.__spec__ = spec
        self.__loader__ = spec.loader
        object.__setattr__(self, "_cfx_lock", threading.Lock())
        object.__setattr__(self, "_cfx_real", None)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("_cfx_"):
            raise AttributeError(attr)
        return getattr(_real(self), attr)


def load_deferred(name: str) -> None:
    """Import now a module defer_import deferred (nothing if it did not): in one thread,
    before code that may first use it from several at once."""
    module = sys.modules.get(name)
    if isinstance(module, _Deferred):
        _real(module)


def _real(module: _Deferred) -> types.ModuleType:
    with module._cfx_lock:
        real = module._cfx_real
        if real is None:
            name = module.__name__
            if sys.modules.get(name) is module:
                del sys.modules[name]
            try:
                real = importlib.import_module(name)
            except BaseException:
                sys.modules.setdefault(name, module)
                raise
            object.__setattr__(module, "_cfx_real", real)
        return real


def defer_import(name: str) -> bool:
    """Put a stand-in for module `name` in sys.modules that imports it on first use (the first
    attribute read), unless it is imported already or not installed (then nothing changes).
    True if deferred.

    For `invoke`: paramiko.config imports it when paramiko is imported, only to run the `Match
    exec` lines of paramiko's own SSHConfig (invoke.run). That import is ~80 modules, ~0.1 s of
    CPU in every process that imports paramiko; a diagnosis never uses it (transports/ssh.py
    resolves the ssh config with `ssh -G`; its paramiko-parser fallback, _Config, imports it
    when it is made). The first `invoke.<attribute>` anywhere imports the real module, as the
    import would have."""
    if name in sys.modules or "." in name:
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None or spec.loader is None:
        return False  # not installed: the importer keeps its ImportError
    sys.modules[name] = _Deferred(name, spec)
    return True


if "paramiko" not in sys.modules:
    defer_import("invoke")
