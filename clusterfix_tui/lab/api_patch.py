"""The three PATCH flavours of the Kubernetes API, applied to plain dicts.

kmock only merges dicts; the real server also understands JSON Patch (what the Python client sends
for a list body) and strategic merge patch (what kubectl and the client send for a dict body), whose
lists of containers, env, ports... merge by key instead of being replaced.
"""

from __future__ import annotations

import copy
from typing import Any

from kmock import KubernetesError

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"

# Lists that strategic merge patch merges by a key field (from the Kubernetes Go types' tags).
# A tuple lists candidates: "ports" is keyed by containerPort in pods and by port in services.
_MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "volumes": ("name",),
    "env": ("name",),
    "volumeMounts": ("mountPath",),
    "volumeDevices": ("devicePath",),
    "ports": ("containerPort", "port"),
    "imagePullSecrets": ("name",),
    "conditions": ("type",),
    "addresses": ("type",),
    "hostAliases": ("ip",),
    "topologySpreadConstraints": ("topologyKey",),
    "ownerReferences": ("uid",),
}


def bad_request(message: str) -> KubernetesError:
    return KubernetesError(status=400, reason="BadRequest", message=message, details={})


def apply_patch(target: dict[str, Any], patch: Any, content_type: str) -> dict[str, Any]:
    """Return a patched copy of target; raise a 400/415 KubernetesError for a patch we refuse."""
    media = content_type.split(";", 1)[0].strip().lower()
    if media == JSON_PATCH:
        if not isinstance(patch, list):
            raise bad_request("json patch must be a list of operations")
        return json_patch(target, patch)
    if not isinstance(patch, dict):
        raise bad_request("merge patch must be a JSON object")
    if media == MERGE_PATCH:
        return dict(merge_patch(target, patch))
    if media == STRATEGIC_MERGE_PATCH:
        return dict(strategic_merge_patch(target, patch))
    raise KubernetesError(
        status=415, reason="UnsupportedMediaType",
        message=f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE_PATCH}, {STRATEGIC_MERGE_PATCH}", details={},
    )


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: dicts merge recursively, null deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch plus keyed list merging and the `$patch` directives kubectl emits."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    body = {k: v for k, v in patch.items() if not _is_directive(k)}
    if directive == "replace":
        return copy.deepcopy(body)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in body.items():
        if value is None:
            result.pop(key, None)
        elif isinstance(value, list) and isinstance(result.get(key), list):
            result[key] = _merge_list(key, result[key], value)
        else:
            result[key] = strategic_merge_patch(result.get(key), value)
    return result


def _is_directive(key: str) -> bool:
    return key.startswith("$")


def _merge_list(field: str, current: list[Any], patch: list[Any]) -> list[Any]:
    key = _merge_key(field, patch)
    if key is None:
        return copy.deepcopy([item for item in patch if not _is_delete(item)])
    merged = copy.deepcopy(current)
    for item in patch:
        index = next(
            (i for i, old in enumerate(merged) if isinstance(old, dict) and old.get(key) == item[key]),
            None,
        )
        if _is_delete(item):
            if index is not None:
                del merged[index]
        elif index is None:
            merged.append(strategic_merge_patch({}, item))
        else:
            merged[index] = strategic_merge_patch(merged[index], item)
    return merged


def _merge_key(field: str, patch: list[Any]) -> str | None:
    if not patch or not all(isinstance(item, dict) for item in patch):
        return None
    for key in _MERGE_KEYS.get(field, ()):
        if all(key in item for item in patch):
            return key
    return None


def _is_delete(item: Any) -> bool:
    return isinstance(item, dict) and item.get("$patch") == "delete"


def json_patch(target: dict[str, Any], operations: list[Any]) -> dict[str, Any]:
    """RFC 6902 add/remove/replace/move/copy/test on a copy of target."""
    doc: Any = copy.deepcopy(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _pointer_set(doc, path, copy.deepcopy(op.get("value")), insert=True)
        elif kind == "replace":
            _pointer_get(doc, path)
            doc = _pointer_set(doc, path, copy.deepcopy(op.get("value")), insert=False)
        elif kind == "remove":
            doc = _pointer_remove(doc, path)
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_pointer_get(doc, op.get("from", "")))
            if kind == "move":
                doc = _pointer_remove(doc, op["from"])
            doc = _pointer_set(doc, path, value, insert=True)
        elif kind == "test":
            if _pointer_get(doc, path) != op.get("value"):
                raise KubernetesError(
                    status=422, reason="Invalid", message=f"test operation failed at {path}",
                    details={},
                )
        else:
            raise bad_request(f"unknown json patch operation {kind!r}")
    if not isinstance(doc, dict):
        raise bad_request("json patch replaced the whole object with a non-object")
    return doc


def _tokens(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"json pointer must start with '/': {path!r}")
    return [t.replace("~1", "/").replace("~0", "~") for t in path[1:].split("/")]


def _pointer_get(doc: Any, path: str) -> Any:
    return _walk(doc, _tokens(path), path)


def _walk(doc: Any, tokens: list[str], path: str) -> Any:
    for token in tokens:
        doc = _child(doc, token, path)
    return doc


def _child(doc: Any, token: str, path: str) -> Any:
    try:
        if isinstance(doc, list):
            return doc[int(token)]
        return doc[token]
    except (KeyError, IndexError, ValueError, TypeError):
        raise KubernetesError(
            status=422, reason="Invalid", message=f"json patch path not found: {path}", details={},
        ) from None


def _pointer_set(doc: Any, path: str, value: Any, *, insert: bool) -> Any:
    tokens = _tokens(path)
    if not tokens:
        return value
    parent = _walk(doc, tokens[:-1], path)
    last = tokens[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if insert:
            parent.insert(index, value)
        else:
            parent[index] = value
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise bad_request(f"json patch path does not lead into an object or list: {path}")
    return doc


def _pointer_remove(doc: Any, path: str) -> Any:
    tokens = _tokens(path)
    if not tokens:
        raise bad_request("json patch cannot remove the whole object")
    parent = _walk(doc, tokens[:-1], path)
    _child(parent, tokens[-1], path)
    if isinstance(parent, list):
        del parent[int(tokens[-1])]
    else:
        del parent[tokens[-1]]
    return doc
