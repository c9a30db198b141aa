"""Evidence bundles: everything one diagnosis read, in one file that replays it offline.

A bundle is a gzip-compressed tar (written 0600) with:
  manifest.json       schema_version, tool version, created_at, the cluster (describe/version),
                      the shape, node names, the capture's findings count, and the sha256 of every
                      other member
  api.json            every ClusterAPI read the diagnosis made, keyed by call ("list_pods(null,
                      null)"), with its answer or the error it raised
  nodes/<n>.json      per node: the facts script's raw output as it came back (sections framed
                      by the capture's nonce), stderr, exit code, timeout/transport error, the
                      netlink sections of a local node, the address used
  diagnosis.json      the diagnosis as the live run made it (Diagnosis.to_dict()), so a replay
                      can be checked against it
Everything goes through the journal's redactor before it is written (`--anonymize`: the report's
Anonymizer too, consistently across members; an anonymized bundle no longer parses back to the
same findings, since addresses become placeholders: it is for reading, the plain one for replay).

Replaying (transports/replay.py) hands the recorded answers back to the same diagnose(), so
`diagnose --bundle` runs today's parsers and checks over the evidence as it was. Pure standard
library; the core reads and writes local files only.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import io
import json
import os
import re
import tarfile
import time
from collections.abc import Iterable
from typing import Any

from clusterfix_tui.core.redact import Anonymizer, redact, redact_obj

SCHEMA_VERSION = 1
SUFFIX = ".cfxbundle.tgz"
_SAFE = re.compile(r"[^A-Za-z0-9._-]")


class BundleError(Exception):
    """The file is not a bundle this version can read (or its checksums do not match)."""


def call_key(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The key of one API read: method name and its arguments, trailing Nones dropped."""
    a = list(args)
    while a and a[-1] is None:
        a.pop()
    kw = {k: v for k, v in sorted(kwargs.items()) if v is not None}
    return f"{method}({json.dumps(a, default=str)[1:-1]}{', ' if a and kw else ''}" \
           f"{', '.join(f'{k}={json.dumps(v, default=str)}' for k, v in kw.items())})"


@dataclasses.dataclass
class NodeCapture:
    """What reading one node gave: the facts output as it came back, or the transport error."""

    node: str
    address: str | None = None
    nonce: str | None = None
    stdout: str = ""
    stderr: str = ""
    exit_code: int | None = None
    timed_out: bool = False
    error: str | None = None  # the transport's words when the command did not finish
    transport_error: dict[str, str] | None = None  # {"type": class name, "message": ...}
    extra_sections: dict[str, str] | None = None  # netlink sections of the local node
    transport: str = "ssh"
    duration: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NodeCapture:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclasses.dataclass
class Bundle:
    manifest: dict[str, Any]
    api: dict[str, dict[str, Any]]  # call key -> {"ok": answer} | {"error": {"type", "message"}}
    nodes: dict[str, NodeCapture]
    diagnosis: dict[str, Any]

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.diagnosis.get("findings") or ())


# -- writing -------------------------------------------------------------------------------------


def build(api_calls: dict[str, dict[str, Any]], nodes: dict[str, NodeCapture],
          diagnosis: dict[str, Any], *, tool_version: str, anonymize: bool = False,
          now: float | None = None) -> Bundle:
    """A Bundle from what a recorded diagnosis read, redacted (and anonymized when asked)."""
    api = redact_obj(api_calls)
    caps = {n: NodeCapture.from_dict(redact_obj(c.to_dict())) for n, c in nodes.items()}
    diag = redact_obj(diagnosis)
    cluster = {"describe": (api.get(call_key("describe", (), {})) or {}).get("ok"),
               "version": (api.get(call_key("version", (), {})) or {}).get("ok")}
    if anonymize:
        anon = Anonymizer()
        for n in caps:
            anon.add_node(n)
        desc = cluster["describe"] or {}
        if isinstance(desc, dict):
            anon.add_cluster(desc.get("context"))
            anon.add_cluster(desc.get("cluster"))
            anon.add_user(desc.get("user"))
            anon.add_server(desc.get("server"))
        api = anon.obj(api)
        diag = anon.obj(diag)
        cluster = anon.obj(cluster)
        caps = {anon.text(n): NodeCapture.from_dict(anon.obj(c.to_dict()))
                for n, c in caps.items()}
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "kind": "clusterfix-tui bundle",
        "tool_version": tool_version,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
        "anonymized": bool(anonymize),
        "cluster": cluster,
        "shape": diag.get("shape"),
        "nodes": sorted(caps),
        "findings": len(diag.get("findings") or ()),
    }
    return Bundle(manifest=manifest, api=api, nodes=caps, diagnosis=diag)


def _member_name(node: str) -> str:
    safe = _SAFE.sub("_", node) or "_"
    return f"nodes/{safe}-{hashlib.sha256(node.encode()).hexdigest()[:8]}.json"


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, indent=1, sort_keys=True, default=str).encode()


def write(bundle: Bundle, path: str | os.PathLike[str]) -> str:
    """Write the bundle as one compressed file, mode 0600 (created that way, never widened)."""
    members: dict[str, bytes] = {"api.json": _dumps(bundle.api),
                                 "diagnosis.json": _dumps(bundle.diagnosis)}
    index = {}
    for name, cap in sorted(bundle.nodes.items()):
        member = _member_name(name)
        index[name] = member
        members[member] = _dumps(cap.to_dict())
    manifest = dict(bundle.manifest)
    manifest["node_members"] = index
    manifest["checksums"] = {k: hashlib.sha256(v).hexdigest() for k, v in sorted(members.items())}
    members = {"manifest.json": _dumps(manifest), **members}
    path = os.fspath(path)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        os.fchmod(fh.fileno(), 0o600)
        with tarfile.open(fileobj=fh, mode="w:gz") as tar:
            for name, data in members.items():
                info = tarfile.TarInfo(name)
                info.size = len(data)
                info.mode = 0o600
                info.mtime = int(time.time())
                tar.addfile(info, io.BytesIO(data))
    return path


# -- reading -------------------------------------------------------------------------------------

_MAX_MEMBER = 512 * 1024 * 1024


def read(path: str | os.PathLike[str]) -> Bundle:
    """Read and verify a bundle. Raises BundleError with a message for humans."""
    try:
        tar = tarfile.open(os.fspath(path), mode="r:gz")
    except (OSError, tarfile.TarError) as exc:
        raise BundleError(f"{os.fspath(path)} is not a readable bundle: {exc}") from exc
    data: dict[str, bytes] = {}
    with tar:
        for info in tar:
            if not info.isfile() or info.size > _MAX_MEMBER:
                continue
            fh = tar.extractfile(info)  # read into memory: nothing is extracted to disk
            if fh is not None:
                data[info.name] = fh.read()
    if "manifest.json" not in data:
        raise BundleError(f"{os.fspath(path)}: no manifest.json (not a clusterfix-tui bundle)")
    try:
        manifest = json.loads(data["manifest.json"])
    except ValueError as exc:
        raise BundleError(f"{os.fspath(path)}: manifest.json is not JSON: {exc}") from exc
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise BundleError(f"{os.fspath(path)}: bundle schema {version!r}; this version reads "
                          f"{SCHEMA_VERSION}")
    for name, digest in (manifest.get("checksums") or {}).items():
        if name not in data:
            raise BundleError(f"{os.fspath(path)}: {name} is missing")
        if hashlib.sha256(data[name]).hexdigest() != digest:
            raise BundleError(f"{os.fspath(path)}: {name} does not match its checksum")
    try:
        api = json.loads(data.get("api.json", b"{}"))
        diagnosis = json.loads(data.get("diagnosis.json", b"{}"))
        nodes = {name: NodeCapture.from_dict(json.loads(data[member]))
                 for name, member in (manifest.get("node_members") or {}).items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise BundleError(f"{os.fspath(path)}: damaged member: {exc}") from exc
    return Bundle(manifest=manifest, api=api, nodes=nodes, diagnosis=diagnosis)


# -- comparing -----------------------------------------------------------------------------------


def finding_key(f: dict[str, Any]) -> tuple[str, str, str]:
    return (str(f.get("code")), str(f.get("node")), str(f.get("title")))


def same_findings(a: Iterable[dict[str, Any]], b: Iterable[dict[str, Any]]) -> list[str]:
    """Differences between two finding lists in code, node, severity, title and evidence
    ([] = the same)."""
    def index(fs: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str], dict[str, Any]]:
        return {finding_key(f): f for f in fs}

    ia, ib = index(a), index(b)
    out = [f"only in the first: {k[0]} on {k[1]}: {k[2]}" for k in sorted(set(ia) - set(ib))]
    out += [f"only in the second: {k[0]} on {k[1]}: {k[2]}" for k in sorted(set(ib) - set(ia))]
    for k in sorted(set(ia) & set(ib)):
        fa, fb = ia[k], ib[k]
        for field in ("severity", "evidence", "step"):
            if fa.get(field) != fb.get(field):
                out.append(f"{k[0]} on {k[1]}: {field} differs")
    return out


def _sections(cap: NodeCapture) -> dict[str, str]:
    """A node's facts output cut into its sections (name [arg] -> stdout), nonce-free."""
    from clusterfix_tui.core.facts import split_sections

    if not cap.nonce:
        return {}
    secs, _, _ = split_sections(cap.stdout, cap.nonce)
    out = {k: s.stdout for k, s in secs.items()}
    out.update(cap.extra_sections or {})
    return out


# sections whose text changes on every read without saying anything about the node's state
_VOLATILE = ("date", "uptime", "kubectl_get_nodes")


def diff(a: Bundle, b: Bundle, *, context: int = 1, max_lines: int = 400) -> dict[str, Any]:
    """What changed from bundle a to bundle b: findings appeared and gone, and per node the facts
    sections that differ (unified diffs, counters in iptables-save ignored)."""
    fa = {finding_key(f): f for f in a.findings}
    fb = {finding_key(f): f for f in b.findings}
    nodes: dict[str, Any] = {}
    for node in sorted(set(a.nodes) | set(b.nodes)):
        ca, cb = a.nodes.get(node), b.nodes.get(node)
        if ca is None or cb is None:
            nodes[node] = {"only_in": "second" if ca is None else "first"}
            continue
        sa, sb = _sections(ca), _sections(cb)
        changed: dict[str, list[str]] = {}
        for sec in sorted(set(sa) | set(sb)):
            if sec.split(" ")[0] in _VOLATILE:
                continue
            la = _stable(sa.get(sec, "")).splitlines()
            lb = _stable(sb.get(sec, "")).splitlines()
            if la == lb:
                continue
            lines = list(difflib.unified_diff(la, lb, f"a/{sec}", f"b/{sec}", n=context,
                                              lineterm=""))
            changed[sec] = lines[:max_lines] + (["... (cut)"] if len(lines) > max_lines else [])
        if changed:
            nodes[node] = {"sections": changed}
    return {
        "a": {"created_at": a.manifest.get("created_at"), "findings": len(fa)},
        "b": {"created_at": b.manifest.get("created_at"), "findings": len(fb)},
        "findings_appeared": [fb[k] for k in sorted(set(fb) - set(fa))],
        "findings_gone": [fa[k] for k in sorted(set(fa) - set(fb))],
        "nodes": nodes,
    }


def _stable(text: str) -> str:
    from clusterfix_tui.core.nodestate import stable

    return stable(text)


def render_diff(d: dict[str, Any]) -> str:
    out = [f"bundle A: {d['a']['created_at']} ({d['a']['findings']} findings)",
           f"bundle B: {d['b']['created_at']} ({d['b']['findings']} findings)", ""]
    out.append(f"findings appeared: {len(d['findings_appeared'])}")
    out += [f"  + {f.get('code')} on {f.get('node')}: {f.get('title')}"
            for f in d["findings_appeared"]]
    out.append(f"findings gone: {len(d['findings_gone'])}")
    out += [f"  - {f.get('code')} on {f.get('node')}: {f.get('title')}" for f in d["findings_gone"]]
    out.append("")
    if not d["nodes"]:
        out.append("node state: no differences")
    for node, what in d["nodes"].items():
        if "only_in" in what:
            out.append(f"node {node}: only in the {what['only_in']} bundle")
            continue
        out.append(f"node {node}: {len(what['sections'])} section(s) differ")
        for sec, lines in what["sections"].items():
            out.append(f"  [{sec}]")
            out += [f"    {ln}" for ln in lines if not ln.startswith(("---", "+++"))]
    return redact("\n".join(out) + "\n")
