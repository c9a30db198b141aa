"""CONNTRACK_TABLE_FULL: raise nf_conntrack_max on the node (planned by the host_network step).

One action per node whose table is full NOW (the warning on since-boot counters plans nothing):
`sysctl -w net.netfilter.nf_conntrack_max=N`, where N = the larger of
- kube-proxy's own default for the node's CPUs, max(32768 x CPUs, 131072) (131072 when the CPU
  count was not read), and
- twice the current count (the table half full after the change),
rounded up to a multiple of 1024. The same command first saves the value it replaces (read on
the node, once, into the plan's backup dir) and then reads the limit back: a kernel that refuses
the write (a network namespace other than the host's, where the sysctl is read-only; procps'
sysctl then still exits 0) fails the action instead of passing silently. The rollback writes the
saved value back exactly. Runtime only: kube-proxy writes nf_conntrack_max again at its start
(its conntrack.maxPerCore/min), and a reboot resets it; nothing persistent is written.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.checks.conntrack import CODE, ConntrackData, kube_proxy_default_max
from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.fixes.step import FixAction, q
from clusterfix_tui.core.model import Action, Finding

CODES = (CODE,)
KEY = "net.netfilter.nf_conntrack_max"
ROUND = 1024
# what one tracked connection costs the kernel, roughly (struct nf_conn with its extensions): the
# limit costs nothing until entries exist; a table filled to N costs about N x this
ENTRY_BYTES = 320
# nf_conntrack_max is an int sysctl (proc_dointvec_minmax, 0..INT_MAX): more is refused
SYSCTL_INT_MAX = 2**31 - 1


def target_max(count: int, cpus: int | None) -> int:
    """The new nf_conntrack_max: max(kube-proxy's default for `cpus`, 2 x count), rounded up."""
    n = max(kube_proxy_default_max(cpus), 2 * count)
    return -(-n // ROUND) * ROUND


def saved_path(bdir: str) -> str:
    return f"{bdir}/nf_conntrack_max"


def raise_command(new: int, bdir: str) -> str:
    """Save the current limit once (the rollback's value), write the new one, read it back."""
    saved = saved_path(bdir)
    return (f"mkdir -p -m 700 {q(bdir)} && {{ [ -e {q(saved)} ] || {{ cat {P.CONNTRACK_MAX} > "
            f"{q(saved + '.tmp')} && mv -f -- {q(saved + '.tmp')} {q(saved)}; }}; }} && "
            f"sysctl -w {q(f'{KEY}={new}')} && {{ [ \"$(cat {P.CONNTRACK_MAX})\" = {new} ] || "
            f"{{ echo {q(f'clusterfix: {KEY} is not {new} after the write: the kernel refused it')} >&2; "
            "exit 1; }; }")


def restore_command(bdir: str, new: int) -> str:
    """Put the saved limit back exactly (nothing saved: the action changed nothing), only while
    the limit is still the `new` the action wrote: a value written since by someone else
    (kube-proxy sets its own at its start) is theirs, never lowered back."""
    saved = saved_path(bdir)
    changed = (f"clusterfix: {KEY} is not the {new} this session wrote (changed since, e.g. by "
               "kube-proxy at its start): left as it is, not restored to ")
    return (f"if [ -e {q(saved)} ]; then v=$(cat {q(saved)}) && case $v in ''|*[!0-9]*) "
            f"echo {q('clusterfix: the saved nf_conntrack_max is not a number: not restored')} >&2; "
            f"exit 1;; esac && cur=$(cat {P.CONNTRACK_MAX}) && {{ [ \"$cur\" = {new} ] || "
            f"{{ echo {q(changed)}\"$v (now $cur)\" >&2; exit 1; }}; }} && sysctl -w \"{KEY}=$v\"; "
            f"else echo {q('nothing saved: nf_conntrack_max was not changed')}; fi")


def restore_precondition(bdir: str, new: int) -> Any:
    """The rollback's: holds while the limit is the `new` the action wrote; done when it is the
    saved value again (or nothing was saved); changed otherwise (someone else wrote it)."""
    saved = saved_path(bdir)
    return pre.shell(
        f"[ -e {q(saved)} ] || {{ echo 'nothing saved: not changed'; exit {pre.EXIT_DONE}; }}; "
        f"v=$(cat {q(saved)}); cur=$(cat {P.CONNTRACK_MAX} 2>/dev/null) || {{ echo "
        "'nf_conntrack_max cannot be read'; exit 1; }; "
        f"if [ \"$cur\" = \"$v\" ]; then echo \"nf_conntrack_max is $v already\"; exit {pre.EXIT_DONE}; fi; "
        f"if [ \"$cur\" = {new} ]; then exit 0; fi; echo \"nf_conntrack_max is $cur now, not the "
        f"{new} written: changed since by someone else (kube-proxy at its start?): not restored\"; exit 1",
        f"nf_conntrack_max still the {new} written")


def precondition(new: int) -> Any:
    """Holds while the limit is below `new` and writable here; done once it is `new` or more."""
    return pre.shell(
        f"v=$(cat {P.CONNTRACK_MAX} 2>/dev/null) || {{ echo 'nf_conntrack_max cannot be read "
        "(nf_conntrack unloaded?)'; exit 1; }; case $v in ''|*[!0-9]*) echo \"nf_conntrack_max "
        f"reads $v\"; exit 1;; esac; if [ \"$v\" -ge {new} ]; then echo \"nf_conntrack_max is $v "
        f"already\"; exit {pre.EXIT_DONE}; fi; [ -w {P.CONNTRACK_MAX} ] || {{ echo 'nf_conntrack_max "
        "is read-only here (not the initial network namespace: the limit is global, raise it on the "
        "host)'; exit 1; }; exit 0",
        f"nf_conntrack_max below {new} and writable")


def plan_finding(node: str, f: Finding, bdir: str, nid: Any, rb: Any) -> tuple[list[Action], list[str]]:
    """The node's action for one CONNTRACK_TABLE_FULL finding (none for the counters warning).
    `nid()` gives the next action id, `rb(suffix, command, why)` its rollback (host_network's)."""
    d = f.data_as(ConntrackData)
    if not d.full:
        return [], []
    new = target_max(d.count, d.cpus)
    if new > SYSCTL_INT_MAX:  # the kernel refuses it (proc_dointvec_minmax): values not real
        return [], [f"{node}: nf_conntrack_max would be {new}, more than the kernel takes "
                    f"({SYSCTL_INT_MAX}): the values read are not plausible; not changed"]
    if new <= d.max:  # cannot happen for a full table (2 x count > max); never lower it
        return [], [f"{node}: nf_conntrack_max is {d.max} already; not changed"]
    cpus = f"{d.cpus} CPUs" if d.cpus else "CPUs not read: its minimum"
    rule = (f"N = max(kube-proxy's default for the node, max(32768 x CPUs, 131072) = "
            f"{kube_proxy_default_max(d.cpus)} ({cpus}); 2 x the current count = {2 * d.count}), "
            f"rounded up to a multiple of {ROUND}")
    mib = new * ENTRY_BYTES // (1024 * 1024)
    action = FixAction(
        id=nid(), target=node, kind="shell", command=raise_command(new, bdir),
        why=(f"the conntrack table is full ({d.count} of {d.max}): new connections are dropped; "
             f"raise nf_conntrack_max to {new} ({rule})"),
        finding_codes=(f.code,),
        risk=(f"the kernel may keep up to {new} connections (~{mib} MiB of kernel memory if the "
              "table fills again); what fills it is not changed. Runtime only: kube-proxy writes "
              "nf_conntrack_max again when it starts (its conntrack.maxPerCore x CPUs, at least "
              "conntrack.min) and a reboot resets it: the lasting fix is kube-proxy's "
              f"conntrack.maxPerCore/min, or a {KEY} line in /etc/sysctl.d where kube-proxy does "
              "not manage it (nothing is written there)"),
        rollback=dataclasses.replace(
            rb("", restore_command(bdir, new), f"put {KEY} back to the value saved before the "
               f"change, only while it is still the {new} written"),
            precondition=restore_precondition(bdir, new)),
        change={"what": KEY, "before": str(d.max), "after": str(new)},
        precondition=precondition(new),
    )
    note = (f"{node}: nf_conntrack_max is raised at runtime only; kube-proxy sets it again at its "
            "start and a reboot resets it (make it last with kube-proxy's conntrack.maxPerCore/min "
            f"or a {KEY} line in /etc/sysctl.d)")
    return [action], [note]
