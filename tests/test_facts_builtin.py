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
def test_names_hex_with_builtins_as_with_od(names, tmp_path) -> None:
    import shutil

    q = " ".join("'" + n.replace("'", "'\\''") + "'" for n in names)
    for fn in ("cfx_hexs", "cfx_hexs_od"):
        script = "\n".join([_prelude(), f"{fn} {q}", 'printf "%s" "$cfx_hx"'])
        r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
        assert r.stdout == "".join(n.encode().hex() + "|" for n in names), (fn, r.stdout)
    # whether cfx_hexs started `od`: a counting `od` first on PATH (an `sh -x` trace of a pipeline
    # interleaves its processes' words, so "od -An" may not appear there in one piece)
    count = tmp_path / "count"
    (tmp_path / "od").write_text(f'#!/bin/sh\necho x >>{count}\nexec {shutil.which("od")} "$@"\n')
    (tmp_path / "od").chmod(0o755)
    script = "\n".join([_prelude().replace("PATH=/usr/local/sbin:", f"PATH={tmp_path}:/usr/local/sbin:", 1),
                        f"cfx_hexs {q}", 'printf "%s" "$cfx_hx"'])
    assert f"PATH={tmp_path}:" in script
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.stdout == "".join(n.encode().hex() + "|" for n in names)
    plain = all(set(n) <= set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._/+-")
                for n in names)
    assert count.exists() != plain, r.stderr


# -- alternatives_link and iptables_link from one readlink ----------------------------------------

def _link_sections(tmp_path, readlink: str | None, with_alternatives: bool = True) -> tuple[dict, int]:
    """The two sections of today's script and how many readlink processes it started, on this
    machine with a PATH of its own: an `iptables` symlink chain, a counting `readlink` (GNU's,
    or busybox's one-argument applet), and /etc/alternatives/iptables as this machine has it."""
    import shutil

    tag = F.new_nonce()
    d = tmp_path / tag
    d.mkdir()
    (d / "real-iptables").write_text("#!/bin/sh\n")
    (d / "real-iptables").chmod(0o755)
    (d / "mid").symlink_to(d / "real-iptables")
    (d / "iptables").symlink_to(d / "mid")
    count = d / "count"
    if readlink:
        (d / "readlink").write_text(f'#!/bin/sh\necho x >>{count}\nexec {readlink} "$@"\n')
        (d / "readlink").chmod(0o755)
    parts = dict(F.script_parts([], NONCE))
    body = [parts["iptables_link"]] if "alternatives_link" not in parts else \
        [parts["alternatives_link"], parts["iptables_link"]]
    script = "\n".join([_prelude().replace("PATH=/usr/local/sbin:", f"PATH={d}:/usr/local/sbin:", 1), *body, DONE])
    if not with_alternatives:
        script = script.replace("/etc/alternatives/iptables", str(d / "no-such-dir" / "iptables"))
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    secs, complete, errors = F.split_sections(r.stdout, NONCE)
    assert complete and not errors
    got = {k: (v.stdout, v.stderr, v.rc) for k, v in secs.items() if k in ("alternatives_link", "iptables_link")}
    assert shutil.which("sh")
    return got, len(count.read_text().split()) if count.exists() else 0


def test_both_links_from_one_readlink_are_what_each_prints_alone(tmp_path) -> None:
    import shutil

    gnu = shutil.which("readlink")
    assert gnu
    new, n = _link_sections(tmp_path, gnu)
    assert n == 1  # one readlink for both (before: one each)
    assert sorted(new) == ["alternatives_link", "iptables_link"]
    cmds = dict(F._SECTIONS)
    old_calls = [F._section_call("alternatives_link", "readlink", cmds["alternatives_link"]),
                 F._SPECIAL_CALLS["iptables_link"].replace(
                     "{old}", F._section_call("iptables_link", "iptables", cmds["iptables_link"]))]
    assert "alternatives_link" not in dict(F.script_parts([], NONCE))  # printed with iptables_link
    # each alone (as before), on the same PATH: the same sections
    d = [p for p in tmp_path.iterdir()][0]
    script = "\n".join([_prelude().replace("PATH=/usr/local/sbin:", f"PATH={d}:/usr/local/sbin:", 1),
                        *old_calls, DONE])
    r = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    secs, _c, _e = F.split_sections(r.stdout, NONCE)
    assert new == {k: (v.stdout, v.stderr, v.rc) for k, v in secs.items()}
    assert new["iptables_link"] == (str(d / "real-iptables") + "\n", "", 0)
    # a readlink that fails for one argument (a missing directory): each alone, its own error
    new2, n2 = _link_sections(tmp_path, gnu, with_alternatives=False)
    assert n2 == 3 and new2["alternatives_link"][2] == 1 and new2["iptables_link"][2] == 0


def test_a_one_argument_readlink_runs_each_alone(tmp_path) -> None:
    import shutil

    bb = shutil.which("busybox")
    if not bb:
        pytest.skip("no busybox here")
    d = tmp_path / "bb"
    d.mkdir()
    (d / "rl").write_text(f'#!/bin/sh\nexec {bb} readlink "$@"\n')
    (d / "rl").chmod(0o755)
    new, n = _link_sections(tmp_path, str(d / "rl"))
    assert n == 3  # the two-argument try, then each alone
    assert new["iptables_link"][0].endswith("/real-iptables\n") and new["iptables_link"][2] == 0
