"""Facts the shell reads itself (issue #17's node CPU): `id -u`, `hostname`, `uname -r`,
`ls -d /lib/modules/REL` and `ls /sys/module` come from /proc, /sys and the shell's glob with no
process when that gives exactly what the tool prints, and the names of CNI files and kubeconfigs
are hex-encoded with builtins when they hold only plain characters. Each must give the same
section (stdout, stderr, exit status) as the tool run under its deadline, as before, on this
machine; a name with any other byte still goes through `od`."""

from __future__ import annotations

import subprocess

import pytest

from clusterfix_tui.core import facts as F

NONCE = "builtin0001"
DONE = f"printf '{F.MARK} %s DONE\\n' \"$N\""


def _prelude() -> str:
    return F.script_parts([], NONCE)[0][1]


def _sections(body: list[str], trace: bool = False) -> tuple[dict[str, F.Section], str]:
    script = "\n".join([_prelude(), *body, DONE])
    r = subprocess.run(["sh", "-x", "-c", script] if trace else ["sh", "-c", script],
                       capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    secs, complete, errors = F.split_sections(r.stdout, NONCE)
    assert complete and not errors, (errors, r.stderr[-500:])
    return secs, r.stderr


def _calls() -> dict[str, tuple[str, str]]:
    """name -> (the builtin call with its fallback, the tool's call as before)."""
    cmds = dict(F._SECTIONS)
    out = {}
    for name in ("id_u", "hostname", "uname_r", "lib_modules", "sys_module"):
        old = F._section_call(name, cmds[name].split()[0], cmds[name])
        out[name] = (F._SPECIAL_CALLS[name].replace("{old}", old), old)
    return out


def test_builtin_facts_are_what_the_tools_print() -> None:
    calls = _calls()
    new, _ = _sections([c for c, _ in calls.values()])
    old, _ = _sections([o for _, o in calls.values()])
    for name in calls:
        a, b = old[name], new[name]
        assert (b.stdout, b.stderr, b.rc) == (a.stdout, a.stderr, a.rc), name
    assert old["id_u"].rc == 0 and old["id_u"].stdout.strip().isdigit()
    assert old["sys_module"].rc == 0 and old["sys_module"].stdout.count("\n") > 3


def test_builtin_facts_start_no_process() -> None:
    """Where /proc and /sys are there (here), the shell reads them: no `timeout`, no tool."""
    calls = _calls()
    _, trace = _sections([c for c, _ in calls.values()], trace=True)
    for name in ("id_u", "hostname", "uname_r", "sys_module"):
        assert f"cfx_put {name} " in trace or f"cfx_lsdir {name} " in trace, name
    for tool in ("id -u", "hostname", "uname -r", "ls /sys/module"):
        assert f"timeout -s KILL {F.SECTION_TIMEOUT} {tool}" not in trace, tool


def test_a_missing_tool_is_still_command_not_found(tmp_path) -> None:
    """The builtin read is used only where the tool is on PATH: without it, rc 127 as before."""
    calls = _calls()
    # (the script puts the system dirs first on PATH: the tool's name is made one none has)
    body = [c.replace("command -v id ", "command -v cfx-no-such-id ")
            .replace("cfx_x id_u id ", "cfx_x id_u cfx-no-such-id ")
            for c in [calls["id_u"][0]]]
    secs, _ = _sections(body)
    assert (secs["id_u"].rc, secs["id_u"].stderr) == (127, "cfx: cfx-no-such-id: command not found\n")


@pytest.mark.parametrize("names", [
    ["/etc/cni/net.d/10-flannel.conflist", "/etc/kubernetes/kubelet.conf", "/root/.kube/config"],
    ["/etc/cni/net.d/05 we;ird $(x).conf", "/etc/kubernetes/admin.conf"],  # od for all
    ["/etc/cni/net.d/caf\u00e9.conf"],
    ["/a+b_c-d.E9", "/x"],
])
def test_names_hex_with_builtins_as_with_od(names) -> None:
    q = " ".join("'" + n.replace("'", "'\\''") + "'" for n in names)
    for fn in ("cfx_hexs", "cfx_hexs_od"):
        script = "\n".join([_prelude(), f"{fn} {q}", 'printf "%s" "$cfx_hx"'])
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert r.stdout == "".join(n.encode().hex() + "|" for n in names), (fn, r.stdout)
    script = "\n".join([_prelude(), f"cfx_hexs {q}"])
    trace = subprocess.run(["sh", "-x", "-c", script], capture_output=True, text=True, timeout=30).stderr
    plain = all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/+-")
                for n in names)
    assert ("od -An" in trace) != plain, trace[-300:]
