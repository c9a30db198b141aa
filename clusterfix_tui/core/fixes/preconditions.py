"""Per-action preconditions: read-only checks re-run right before an action, part of its plan.

A plan is built from the diagnosis; between the moment it is shown and the moment an action runs,
the node may have changed (an earlier step restarted the pod, someone deleted the rule). Each
mutating action therefore carries a `Precondition` (core.model): a read-only shell command run
on its node, or a read through the Kubernetes API. What it answers decides what happens:

    holds         -> the action runs exactly as shown
    already-done  -> the action's goal already holds (the pod is gone, the rule is gone):
                     not run, not a failure
    changed       -> the state is neither what the plan saw nor the goal: skipped, with why
    unknown       -> the check could not run: skipped (never run blind)

Shell checks follow one convention: exit 0 = holds, exit 3 = already done, anything else =
changed (the output says how). Every value in them is shlex-quoted (q()).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from clusterfix_tui.core.model import (
    PRECHECK_CHANGED,
    PRECHECK_DONE,
    PRECHECK_HOLDS,
    PRECHECK_UNKNOWN,
    Action,
    Plan,
    Precondition,
)

EXIT_HOLDS = 0
EXIT_DONE = 3


def _q(value: Any) -> str:
    import shlex

    return shlex.quote(str(value))


@dataclass(frozen=True)
class PrecheckResult:
    state: str  # PRECHECK_*
    detail: str = ""
    exit_code: int | None = None


# ---------------------------------------------------------------------------------------------
# builders for step authors


def shell(script: str, expect: str) -> Precondition:
    """A shell precondition: `script` exits 0 when the state is as seen, 3 when the goal holds."""
    return Precondition(kind="shell", command=script, expect=expect)


def exists_else_done(test: str, expect: str, gone: str) -> Precondition:
    """Holds while `test` succeeds (the thing to remove is still there); done once it is gone."""
    return shell(f"if {test}; then exit 0; fi; echo {_q(gone)}; exit {EXIT_DONE}", expect)


def absent_else_done(test: str, expect: str, present: str) -> Precondition:
    """Holds while `test` fails (the thing to add is missing); done once it is there."""
    return shell(f"if {test}; then echo {_q(present)}; exit {EXIT_DONE}; fi; exit 0", expect)


def nft_rule_at_handle(family: str, table: str, chain: str, handle: int, text: str
                       ) -> Precondition:
    """The rule at `handle` still reads `text` (handle comment and counters aside); gone = done."""
    h = int(handle)
    script = (
        f"line=$(nft -a list chain {_q(family)} {_q(table)} {_q(chain)} 2>/dev/null "
        f"| grep -E {_q(f'# handle {h}$')}) || "
        f"{{ echo {_q(f'no rule at handle {h} in {family} {table} {chain} any more')}; "
        f"exit {EXIT_DONE}; }}; "
    )
    if text:
        script += (
            "now=$(printf '%s\\n' \"$line\" | sed -E "
            "'s/[[:space:]]*# handle [0-9]+$//; s/counter packets [0-9]+ bytes [0-9]+/counter/; "
            "s/^[[:space:]]+//; s/[[:space:]]+$//'); "
            f"[ \"$now\" = {_q(text)} ] && exit 0; "
            f"echo \"handle {h} now holds a different rule: $now\"; exit 4"
        )
    else:
        script += "exit 0"
    return shell(script, f"the rule at handle {h} of {family} {table} {chain} is still "
                 + (repr(text) if text else "there"))


def pod_uid(namespace: str, name: str, uid: str | None = None) -> Precondition:
    """The pod to delete still exists (with this uid): gone or replaced = already done."""
    what = f"pod {namespace}/{name}" + (f" uid {uid}" if uid else "")
    return Precondition(kind="api", command=f"kubectl -n {_q(namespace)} get pod {_q(name)} "
                        "-o jsonpath='{.metadata.uid}'",
                        expect=f"{what} still exists",
                        api={"check": "pod_uid", "namespace": namespace, "name": name,
                             "uid": uid})


def daemonset_exists(namespace: str, name: str) -> Precondition:
    return Precondition(kind="api", command=f"kubectl -n {_q(namespace)} get daemonset {_q(name)}",
                        expect=f"daemonset {namespace}/{name} exists",
                        api={"check": "daemonset_exists", "namespace": namespace, "name": name})


def deployment_probe(namespace: str, name: str, container: str, before: Any, after: Any
                     ) -> Precondition:
    """The container's readinessProbe is still `before` (it is `after` = already done)."""
    return Precondition(
        kind="api",
        command=f"kubectl -n {_q(namespace)} get deployment {_q(name)} -o jsonpath="
                + _q("{.spec.template.spec.containers[?(@.name==\"" + container
                     + "\")].readinessProbe}"),
        expect=f"the readiness probe of {namespace}/{name} container {container} is as shown",
        api={"check": "deployment_probe", "namespace": namespace, "name": name,
             "container": container, "before": before, "after": after})


# ---------------------------------------------------------------------------------------------
# running them


def _norm(probe: Any) -> str:
    if not isinstance(probe, dict):
        return json.dumps(probe, sort_keys=True)
    return json.dumps({k: v for k, v in probe.items() if v is not None}, sort_keys=True)


def check_api(api: Any, pre: Precondition) -> PrecheckResult:
    spec = dict(pre.api or {})
    check, ns, name = spec.get("check"), spec.get("namespace"), spec.get("name")
    if check == "pod_uid":
        pods = api.list_pods(ns)
        pod = next((p for p in pods if (p.get("metadata") or {}).get("name") == name), None)
        if pod is None:
            return PrecheckResult(PRECHECK_DONE, f"pod {ns}/{name} is gone already")
        meta = pod.get("metadata") or {}
        if meta.get("deletionTimestamp"):
            return PrecheckResult(PRECHECK_DONE, f"pod {ns}/{name} is being deleted already")
        want = spec.get("uid")
        if want and meta.get("uid") and meta.get("uid") != want:
            return PrecheckResult(PRECHECK_DONE, f"pod {ns}/{name} was replaced already "
                                  f"(uid {meta.get('uid')}, the plan saw {want})")
        return PrecheckResult(PRECHECK_HOLDS, f"pod {ns}/{name} uid {meta.get('uid')}")
    if check == "daemonset_exists":
        names = {(d.get("metadata") or {}).get("name") for d in api.list_daemonsets(ns)}
        if name in names:
            return PrecheckResult(PRECHECK_HOLDS, f"daemonset {ns}/{name} exists")
        return PrecheckResult(PRECHECK_CHANGED, f"daemonset {ns}/{name} does not exist any more")
    if check == "deployment_probe":
        dep = api.get_deployment(ns, name)
        if not dep:
            return PrecheckResult(PRECHECK_CHANGED, f"deployment {ns}/{name} does not exist")
        containers = (((dep.get("spec") or {}).get("template") or {}).get("spec") or {}).get(
            "containers") or []
        c = next((c for c in containers if c.get("name") == spec.get("container")), None)
        if c is None:
            return PrecheckResult(PRECHECK_CHANGED, f"container {spec.get('container')} is not "
                                  f"in {ns}/{name} any more")
        now = _norm(c.get("readinessProbe"))
        if now == _norm(spec.get("after")):
            return PrecheckResult(PRECHECK_DONE, "the probe is already the exec check")
        if now == _norm(spec.get("before")):
            return PrecheckResult(PRECHECK_HOLDS, "the probe is as shown")
        return PrecheckResult(PRECHECK_CHANGED, f"the probe changed since the plan: {now}")
    return PrecheckResult(PRECHECK_UNKNOWN, f"unknown API check {check!r}")


def check_shell(shells: Any, action: Action, pre: Precondition) -> PrecheckResult:
    res = shells(action.target).run(pre.command, timeout=pre.timeout)
    said = (res.stdout.strip() or res.stderr.strip()).splitlines()
    detail = said[-1] if said else ""
    if res.exit_code == EXIT_HOLDS and not res.timed_out and res.error is None:
        return PrecheckResult(PRECHECK_HOLDS, detail or pre.expect, 0)
    if res.exit_code == EXIT_DONE:
        return PrecheckResult(PRECHECK_DONE, detail or "the goal already holds", EXIT_DONE)
    if res.exit_code is None:
        return PrecheckResult(PRECHECK_UNKNOWN, res.error or ("timed out" if res.timed_out
                                                              else "no answer"))
    return PrecheckResult(PRECHECK_CHANGED, detail or f"not as the plan saw it (exit "
                          f"{res.exit_code}): expected {pre.expect}", res.exit_code)


def make_prechecker(api: Any, shells: Any) -> Callable[[Action], PrecheckResult]:
    """The engine's `precheck(action)`: reads through the session's real API and shells (also
    in a dry run: they are reads)."""

    def precheck(action: Action) -> PrecheckResult:
        pre = action.precondition
        if pre is None:
            return PrecheckResult(PRECHECK_HOLDS)
        if pre.kind == "api":
            if api is None:
                return PrecheckResult(PRECHECK_UNKNOWN, "no Kubernetes API in this session")
            return check_api(api, pre)
        if shells is None:
            return PrecheckResult(PRECHECK_UNKNOWN, "no node shells in this session")
        return check_shell(shells, action, pre)

    return precheck


def pin_pod_uids(plan: Plan, api: Any) -> Plan:
    """Give every delete-pod action the uid of the pod as the API shows it now, so the plan
    shown for approval names exactly which pod it deletes (a recreated pod is not deleted)."""
    out = []
    changed = False
    cache: dict[str, list[dict[str, Any]]] = {}
    for a in plan.actions:
        spec = a.api or {}
        if a.kind == "api" and spec.get("verb") == "delete_pod":
            ns, name = str(spec.get("namespace")), str(spec.get("name"))
            uid = None
            try:
                if ns not in cache:
                    cache[ns] = api.list_pods(ns)
                pod = next((p for p in cache[ns]
                            if (p.get("metadata") or {}).get("name") == name), None)
                uid = ((pod or {}).get("metadata") or {}).get("uid")
            except Exception:  # noqa: BLE001 - the check at run time still guards it
                uid = None
            out.append(dataclasses.replace(a, precondition=pod_uid(ns, name, uid)))
            changed = True
        else:
            out.append(a)
    return dataclasses.replace(plan, actions=tuple(out)) if changed else plan


def missing_preconditions(plan: Plan) -> list[str]:
    """Ids of mutating actions without a precondition (backups and snapshots may have none)."""
    return [a.id for a in plan.actions if a.mutating and a.precondition is None]
