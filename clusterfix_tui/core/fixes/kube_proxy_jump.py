"""KUBE_PROXY_SHADOWED's actions: kube-proxy's own jump again ahead of the rule that shadows it.

A senior admin's fix, narrowest first (as for a foreign DROP ahead of pod traffic, where a narrow
ACCEPT goes ahead of it and its rollback removes exactly that ACCEPT): the foreign rule may be
someone's intent for other traffic (a "do not NAT this" for a VPN range, a port opened in the
wrong table), so it stays; a copy of kube-proxy's jump, with the exact text kube-proxy wrote on
this node, is inserted right before it. Packets that match no Service come back from
KUBE-SERVICES unchanged and meet the foreign rule as before; Service packets are DNATed as
kube-proxy intends. kube-proxy finds its jump (`-C`) and leaves both copies alone. The rollback
deletes the first copy of the jump, only while there are two (kube-proxy's own is never removed).
Deleting the foreign rule itself is an opt-in beside it (its rollback puts it back at its place,
only when the chain still reads around that place as the plan saw it).
"""

from __future__ import annotations

import shlex
from typing import Any

from clusterfix_tui.core.checks.iptables import ShadowedData
from clusterfix_tui.core.checks.nat_shadow import is_kube_proxy_jump
from clusterfix_tui.core.fixes import preconditions as pre
from clusterfix_tui.core.model import Action

BINARIES = ("iptables-legacy", "iptables-nft", "ip6tables-legacy", "ip6tables-nft", "iptables",
            "ip6tables")


def _q(v: str) -> str:
    return shlex.quote(v)


def tool_of(d: ShadowedData, wait: str) -> str | None:
    """The iptables command for the finding's backend; None when neither its binary nor its
    backend is one this tool knows (a value from a journal read back goes unquoted here)."""
    if d.binary in BINARIES:
        binary = d.binary
    elif d.backend in ("legacy", "nft") and d.ip_version in (4, 6):
        binary = f"{'ip6tables' if d.ip_version == 6 else 'iptables'}-{d.backend}"
    else:
        return None
    if wait not in ("", "-w", "-w 5"):  # iptables_wait's answers
        return None
    return " ".join(x for x in (binary, wait, "-t nat") if x)


def _lineno(spec: str) -> str:
    """Shell: the number (from 1, as `-I CHAIN N` takes it) of the first rule of $l equal to spec."""
    return (f"$(printf '%s\\n' \"$l\" | grep -e '^-A ' | grep -nxF -e {_q(spec)} | head -n 1 "
            "| cut -d: -f1)")


def jump_ahead(d: ShadowedData, wait: str, id_: str, node: str) -> dict[str, Any] | None:
    """The FixAction fields (without id/target) that insert kube-proxy's jump right before the
    shadowing rule; None when the finding's texts are not usable (not planned: a note says so)."""
    chain = d.builtin
    if chain not in ("PREROUTING", "OUTPUT") or not d.rule.startswith(f"-A {chain} ") or \
            not d.jump.startswith(f"-A {chain} ") or not d.jump.rstrip().endswith("-j KUBE-SERVICES"):
        return None
    try:
        argv = shlex.split(d.jump)
    except ValueError:
        return None
    if argv[:2] != ["-A", chain] or not is_kube_proxy_jump(argv[2:]):
        return None  # only kube-proxy's own form is copied (a narrower jump repairs nothing)
    tool = tool_of(d, wait)
    if tool is None:
        return None
    body = " ".join(_q(t) for t in argv[2:])
    rule, jump = d.rule.rstrip(), d.jump.rstrip()
    read = f"l=$({tool} -S {_q(chain)}) || exit 4; n={_lineno(rule)}; j={_lineno(jump)}; "
    fam = "ip6tables" if d.ip_version == 6 else "iptables"
    where = f"{fam} {d.backend} nat {chain}"
    command = (read + "if [ -z \"$n\" ]; then echo "
               + _q(f"clusterfix: the rule is not in {where} any more: nothing inserted") + "; exit 0; fi; "
               "if [ -n \"$j\" ] && [ \"$j\" -lt \"$n\" ]; then echo "
               + _q("clusterfix: kube-proxy's jump is ahead of the rule already (not inserted)")
               + f"; exit 0; fi; {tool} -I {_q(chain)} \"$n\" {body}")
    count = f"$(printf '%s\\n' \"$l\" | grep -cxF -e {_q(jump)})"
    # the copies the chain held when the plan read it (kube-proxy's own, and any an admin's
    # restore doubled): only one more than those is the tool's to remove
    # (a journal's `true` is an int too: it would put "-gt True" in the test, a shell error)
    base = d.jump_copies if (isinstance(d.jump_copies, int) and not isinstance(d.jump_copies, bool)
                             and d.jump_copies >= 1) else 1
    rollback = Action(
        id=id_ + ":rollback", target=node, kind="shell",
        command=(f"l=$({tool} -S {_q(chain)}) || exit 4; if [ \"{count}\" -gt {base} ]; then "
                 f"{tool} -D {_q(chain)} {body}; else echo "
                 + _q("clusterfix: only the copies of kube-proxy's jump the plan saw are there: nothing to remove")
                 + "; fi"),
        why="delete the inserted copy of kube-proxy's jump (the first of the two: `-D` with a "
            "rule's text deletes the first match); kube-proxy's own stays",
        precondition=pre.exists_else_done(
            f"l=$({tool} -S {_q(chain)}) && [ \"{count}\" -gt {base} ]",
            f"{base + 1} copies of kube-proxy's jump in {where}",
            f"{base} cop{'y' if base == 1 else 'ies'} of kube-proxy's jump in {where}, as the "
            "plan saw: the inserted one is not there"),
    )
    shadowed = ", ".join(d.services[:6]) + (" ..." if len(d.services) > 6 else "")
    return dict(
        kind="shell", command=command,
        why=(f"`{rule}` in {where} comes before kube-proxy's jump and ends the nat traversal of "
             f"Service packets ({shadowed}): put kube-proxy's own jump (`{jump}`) right before "
             "it; the rule stays for every other packet"),
        risk=("Service packets that rule matched are DNATed by kube-proxy again; everything else "
              "meets the rule as before (KUBE-SERVICES returns what is not a Service)"),
        rollback=rollback,
        change={"what": where, "before": f"{rule} ahead of {jump}",
                "after": f"{jump} inserted before {rule}"},
        precondition=pre.shell(
            read + "if [ -z \"$n\" ]; then echo "
            + _q(f"the rule is not in {where} any more") + f"; exit {pre.EXIT_DONE}; fi; "
            "if [ -n \"$j\" ] && [ \"$j\" -lt \"$n\" ]; then echo "
            + _q("kube-proxy's jump is ahead of the rule already") + f"; exit {pre.EXIT_DONE}; "
            "fi; [ -n \"$j\" ] || { echo " + _q(f"kube-proxy's jump is not in {where}") + "; exit 4; }",
            f"the rule is ahead of kube-proxy's jump in {where}"),
    )


def delete_rule(d: ShadowedData, wait: str, id_: str, node: str,
                place: tuple[int, str | None, str | None] | None, by_hand: str) -> dict[str, Any] | None:
    """Opt-in: delete the shadowing rule itself (only a rule that is itself the ACCEPT/RETURN:
    a jump to a chain is someone's whole chain). Rollback: re-insert it at its place."""
    from clusterfix_tui.core.fixes.iptables import iptables_reinsert_command

    chain, rule = d.builtin, d.rule.rstrip()
    if d.via.rstrip() != rule or not rule.startswith(f"-A {chain} ") or place is None:
        return None
    try:
        argv = shlex.split(rule)
    except ValueError:
        return None
    tool = tool_of(d, wait)
    if tool is None:
        return None
    body = " ".join(_q(t) for t in argv[2:])
    fam = "ip6tables" if d.ip_version == 6 else "iptables"
    where = f"{fam} {d.backend} nat {chain}"
    return dict(
        kind="shell", opt_in=True,
        command=f"{tool} -D {_q(chain)} {body}",
        why=f"(opt-in alternative to re-inserting kube-proxy's jump) delete `{rule}` from {where}",
        risk="whatever added this rule (it is not kube-proxy's) loses it for every packet it "
             "matched, Service or not",
        rollback=Action(id=id_ + ":rollback", target=node, kind="shell",
                        command=iptables_reinsert_command(tool, chain, rule, place, by_hand),
                        why="re-insert the rule at its place in the chain"),
        change={"what": where, "before": rule, "after": "deleted"},
        precondition=pre.exists_else_done(
            f"{tool} -C {_q(chain)} {body} 2>/dev/null", f"the rule is in {where}",
            f"the rule is not in {where} any more"),
    )
