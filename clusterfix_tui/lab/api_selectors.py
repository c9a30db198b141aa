"""labelSelector and fieldSelector as the API server evaluates them (kmock 0.8 ignores both)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from clusterfix_tui.lab.api_patch import bad_request

Predicate = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*([^\s!=,()]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas that are not inside `in (a,b)` parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(selector):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(selector[start:i])
            start = i + 1
    terms.append(selector[start:])
    return [t.strip() for t in terms if t.strip()]


def label_selector(selector: str | None) -> Predicate:
    """k=v, k==v, k!=v, k in (a,b), k notin (a,b), k, !k -- ANDed."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector or ""):
        checks.append(_label_term(term))

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return matches


def _label_term(term: str) -> Callable[[dict[str, str]], bool]:
    if m := _SET_TERM.match(term):
        key, op, raw = m.groups()
        values = {v.strip() for v in raw.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in values
        return lambda labels: labels.get(key) not in values
    for op in ("!=", "==", "="):
        if op in term:
            key, value = (part.strip() for part in term.split(op, 1))
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    if term.startswith("!"):
        key = term[1:].strip()
        return lambda labels: key not in labels
    if re.fullmatch(r"[^\s!=,()]+", term):
        return lambda labels: term in labels
    raise bad_request(f"unable to parse requirement: {term!r}")


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string the API server compares a field selector against ("" when absent)."""
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def field_selector(selector: str | None) -> Predicate:
    """path=v, path==v, path!=v on any dotted field, e.g. spec.nodeName, metadata.name."""
    checks: list[Predicate] = []
    for term in _split_terms(selector or ""):
        for op in ("!=", "==", "="):
            if op in term:
                path, value = (part.strip() for part in term.split(op, 1))
                checks.append(_field_term(path, value, negate=op == "!="))
                break
        else:
            raise bad_request(f"invalid selector: {term!r}; can't understand {term!r}")

    def matches(obj: dict[str, Any]) -> bool:
        return all(check(obj) for check in checks)

    return matches


def _field_term(path: str, value: str, *, negate: bool) -> Predicate:
    return lambda obj: (field_value(obj, path) == value) != negate


def name_equals(selector: str | None) -> str | None:
    """X when the field selector is exactly `metadata.name=X` (or `==`): the one object named X
    is the only candidate (what every node's kubectl asks for its own Node); None otherwise."""
    terms = _split_terms(selector or "")
    if len(terms) != 1:
        return None
    for op in ("!=", "==", "="):
        if op in terms[0]:
            path, value = (part.strip() for part in terms[0].split(op, 1))
            return value if op != "!=" and path == "metadata.name" else None
    return None
