"""Secret redaction (journal, report, logs) and anonymisation (`report --anonymize`).

`redact(text)` / `redact_obj(obj)` remove anything that looks like a credential: bearer tokens,
`token:` / `password:` style fields (YAML, JSON, env, flags), JWTs, kubeadm bootstrap tokens,
kubeconfig `*-data` blobs, PEM blocks (private keys and certificates), `user:pass@` in URLs and long
opaque base64 blobs. The journal calls `redact_obj` on every event, so every pattern is
precompiled and the text is scanned a handful of times at most. Redaction is idempotent, and it
must never corrupt ordinary command output: iptables rules, routes, MAC addresses, SHA256 host-key
fingerprints, container ids and image digests pass through unchanged (tests/test_redact.py).

`Anonymizer` replaces node names, IP addresses (v4 and v6), cluster / context names, API server
host names and users with stable placeholders (`node-a`, `ip-1`, `cluster-a`, ...), the same
placeholder for the same value everywhere in one report.

Standard library only.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import Any

MARK = "[REDACTED]"

# ---------------------------------------------------------------------------------------------
# redaction patterns

# A value we already redacted must not be redacted again (idempotence, and no "[REDACTED]" mangling).
_NOT_MARK = r"(?!\[REDACTED)"

# PEM blocks: private keys and certificates alike (the issue: "client keys and certificates").
# A block cut short (truncated output) is redacted to the end of the text.
_PEM = re.compile(
    r"-----BEGIN ([A-Z0-9 ]{1,40})-----.*?(?:-----END \1-----|\Z)",
    re.DOTALL,
)
# `Authorization: Bearer x`, `authorization=Basic x`, `-H 'Authorization: token x'`
_AUTH_HEADER = re.compile(
    r"(?i)(\bauthorization[\"']?[ \t]*[:=][ \t]*[\"']?)"
    r"(?:(bearer|basic|token|digest|negotiate|apikey)[ \t]+)?+" + _NOT_MARK + r"[^\s\"',;]+"
)
_BEARER = re.compile(r"(?i)(\bbearer[ \t]+)" + _NOT_MARK + r"[A-Za-z0-9._~+/\-]+=*")
# JSON Web Tokens (service-account tokens, OIDC id-tokens): three base64url parts, header `eyJ`.
_JWT = re.compile(r"\beyJ[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]{6,}\.[A-Za-z0-9_-]*")
# kubeadm bootstrap tokens: [a-z0-9]{6}.[a-z0-9]{16}
_BOOTSTRAP = re.compile(r"(?<![\w.-])[a-z0-9]{6}\.[a-z0-9]{16}(?![\w.-])")
# key: value / key=value / "key": "value" for names that hold secrets. The key may carry a prefix
# (`id-token`, `DB_PASSWORD`, `client_secret`). `passwd` is left out on purpose: `passwd: files`
# is nsswitch.conf, not a secret.
_SECRET_KEY_NAMES = (
    r"token|password|passphrase|secret|client-key-data|client-certificate-data|"
    r"certificate-authority-data|client-key|private[-_]?key|api[-_]?key|access[-_]?key|"
    r"credentials?"
)
_KEY_VALUE = re.compile(
    r"(?i)(?<![\w-])([\w-]*(?:" + _SECRET_KEY_NAMES + r")[\"']?[ \t]*[:=][ \t]*)"
    r"(\"" + _NOT_MARK + r"(?:[^\"\\\n]|\\.)+\"|'" + _NOT_MARK + r"[^'\n]+'|"
    + _NOT_MARK + r"[^\s\"',;}\]]+)"
)
# --token x, --password=x, --client-key x, --kubelet-token ...
_FLAG = re.compile(
    r"(?i)(--[\w-]*(?:token|password|passphrase|secret|api-key)(?:=|[ \t]+))"
    r"(\"" + _NOT_MARK + r"[^\"\n]+\"|'" + _NOT_MARK + r"[^'\n]+'|" + _NOT_MARK + r"[^\s\"']+)"
)
# curl -u user:pass / --user user:pass
_CURL_USER = re.compile(r"((?:^|\s)(?:-u|--user)[ \t=]+[\"']?[^\s:\"']+:)" + _NOT_MARK + r"[^\s\"']+")
# scheme://user:pass@host
_URL_USERINFO = re.compile(
    r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@\[\]]+:)" + _NOT_MARK + r"[^/\s@]+(@)"
)
# long opaque base64 (cert/key data pasted anywhere). Needs upper, lower and digit, so hex ids,
# digests and KUBE-SVC-XXXX chain names survive; paths (leading "/") and the key material of SSH
# public keys (after "ssh-ed25519 " etc.) are left alone.
_BLOB = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{64,}={0,2}(?![A-Za-z0-9+/=_-])")
_SSH_PUBKEY_PREFIX = re.compile(r"(?:ssh-(?:rsa|dss|ed25519)|ecdsa-sha2-nistp\d+|sk-[\w@.-]+)\s+$")

# cheap pre-filter: if none of these occur, only the blob/JWT/bootstrap scans can match
_TRIGGERS = re.compile(
    r"(?i)-----BEGIN|authorization|bearer|token|password|passphrase|secret|-data|key|credential|"
    r"://[^/\s@]*@|(?:-u|--user)[ \t=]"
)


def _pem_sub(m: re.Match[str]) -> str:
    return f"[REDACTED {m.group(1).strip()}]"


def _auth_sub(m: re.Match[str]) -> str:
    scheme = m.group(2)
    return m.group(1) + (scheme + " " if scheme else "") + MARK


def _keep_quotes_sub(m: re.Match[str]) -> str:
    """key + [REDACTED], keeping the value's quotes so JSON / YAML / shell stay well-formed."""
    value = m.group(2)
    quote = value[0] if value[:1] in ("'", '"') else ""
    return m.group(1) + quote + MARK + quote


def _blob_sub(m: re.Match[str]) -> str:
    s = m.group(0)
    if s.startswith("/"):
        return s  # a path, not base64
    if not (re.search(r"[A-Z]", s) and re.search(r"[a-z]", s) and re.search(r"[0-9]", s)):
        return s
    start = m.start()
    before = m.string[max(0, start - 40) : start]
    if _SSH_PUBKEY_PREFIX.search(before):
        return s  # public key material (known_hosts, authorized_keys): not a secret
    return MARK


def redact(text: str) -> str:
    """Return `text` with every secret-looking value replaced by [REDACTED]."""
    if not text or not isinstance(text, str):
        return text
    if _TRIGGERS.search(text):
        if "-----BEGIN" in text:
            text = _PEM.sub(_pem_sub, text)
        text = _AUTH_HEADER.sub(_auth_sub, text)
        text = _BEARER.sub(lambda m: m.group(1) + MARK, text)
        text = _KEY_VALUE.sub(_keep_quotes_sub, text)
        text = _FLAG.sub(_keep_quotes_sub, text)
        text = _CURL_USER.sub(lambda m: m.group(1) + MARK, text)
        text = _URL_USERINFO.sub(lambda m: m.group(1) + MARK + m.group(2), text)
    if "eyJ" in text:
        text = _JWT.sub(MARK, text)
    text = _BOOTSTRAP.sub(MARK, text)
    if len(text) >= 64:
        text = _BLOB.sub(_blob_sub, text)
    return text


# dict keys whose whole value is a secret (compared lower-case with "_" read as "-")
_SECRET_KEYS = frozenset(
    {
        "token", "id-token", "refresh-token", "access-token", "bearer-token", "auth-token",
        "password", "passphrase", "secret", "client-secret", "client-key", "client-key-data",
        "client-certificate-data", "certificate-authority-data", "private-key", "api-key",
        "apikey", "authorization", "credentials", "sudo-password", "ssh-password",
    }
)


def is_secret_key(key: str) -> bool:
    k = key.lower().replace("_", "-")
    return k in _SECRET_KEYS or k.endswith(("-token", "-password", "-secret", "-key-data"))


def redact_obj(obj: Any) -> Any:
    """Redact every string in a JSON-like structure (dicts, lists, tuples); new objects returned.

    A value stored under a secret-named key (token, password, client-key-data, ...) is replaced
    whole when it is a non-empty string or a container; booleans, numbers and None are kept (a
    `"token": null` says nothing)."""
    if isinstance(obj, str):
        return redact(obj)
    if isinstance(obj, dict):
        out: dict[Any, Any] = {}
        for k, v in obj.items():
            key = redact(k) if isinstance(k, str) else k
            if isinstance(k, str) and is_secret_key(k) and (
                (isinstance(v, str) and v) or isinstance(v, (dict, list, tuple, bytes))
            ):
                out[key] = MARK
            else:
                out[key] = redact_obj(v)
        return out
    if isinstance(obj, (list, tuple)):
        return [redact_obj(v) for v in obj]
    if isinstance(obj, bytes):
        return MARK if obj else obj
    return obj


# ---------------------------------------------------------------------------------------------
# anonymisation

_IPV4 = r"(?<![\w.])(?:\d{1,3}\.){3}\d{1,3}(?![\w]|\.\d)"
_IPV6 = r"(?<![\w:.])(?=[0-9A-Fa-f:]*:[0-9A-Fa-f:]*:)(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:.])"
# addresses that identify nobody and make rules readable: kept as they are
_IP_ANY = re.compile(_IPV4 + "|" + _IPV6)
_KEEP_IPS = frozenset({"0.0.0.0", "127.0.0.1", "255.255.255.255", "::", "::1"})
_SAFE_HOSTS = frozenset({"localhost", "kubernetes", "kubernetes.default", "default", "root", ""})


def _natural(value: str) -> list[Any]:
    """Sort key: node-2 before node-10."""
    return [(0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", value)]


def _letters(n: int) -> str:
    """0 -> a, 25 -> z, 26 -> aa, ... (spreadsheet columns)."""
    s = ""
    n += 1
    while n:
        n, r = divmod(n - 1, 26)
        s = chr(ord("a") + r) + s
    return s


class Anonymizer:
    """Stable placeholders for identifying values, consistent across one report.

    Learn names first (`add_node`, `add_cluster`, `add_host`, `add_user`, or `learn_events`),
    then `text()` / `obj()` replace them, and every IPv4/IPv6 address, in one pass: a placeholder
    is never itself replaced again. Names match as whole tokens (`node-1` does not touch
    `node-10`). Loopback and unspecified addresses are kept.
    """

    KINDS = {"node": "node", "cluster": "cluster", "host": "host", "user": "user"}

    def __init__(self) -> None:
        self._names: dict[str, str] = {}  # original -> placeholder
        self._counts: dict[str, int] = {}
        self._ips: dict[str, str] = {}
        self._regex: re.Pattern[str] | None = None

    # -- learning
    def _add(self, kind: str, value: Any) -> str | None:
        if not isinstance(value, str):
            return None
        value = value.strip()
        if not value or value in _SAFE_HOSTS or value == "cluster":
            return None
        if value in self._names:
            return self._names[value]
        if self._is_ip(value):
            return self._ip_placeholder(value)
        n = self._counts.get(kind, 0)
        self._counts[kind] = n + 1
        placeholder = f"{self.KINDS[kind]}-{_letters(n)}"
        self._names[value] = placeholder
        self._regex = None
        return placeholder

    def add_node(self, name: Any) -> str | None:
        return self._add("node", name)

    def add_cluster(self, name: Any) -> str | None:
        return self._add("cluster", name)

    def add_host(self, name: Any) -> str | None:
        return self._add("host", name)

    def add_user(self, name: Any) -> str | None:
        return self._add("user", name)

    def add_server(self, url: Any) -> None:
        """An API server URL: its host name (not an IP: those are always replaced) is learned."""
        if not isinstance(url, str):
            return
        m = re.match(r"^[a-zA-Z][\w+.-]*://(?:[^@/]*@)?(\[[^\]]*\]|[^:/]+)", url.strip())
        if m:
            host = m.group(1).strip("[]")
            if not self._is_ip(host):
                self.add_host(host)

    def learn_events(self, events: Iterable[dict[str, Any]]) -> None:
        """Learn node, cluster, context, server, user and host names, and every IP address, from
        journal events. Each kind is numbered in sorted order (node-1 -> node-a, node-2 -> node-b,
        addresses in numeric order), so two reports of the same cluster use the same placeholders."""
        found: dict[str, set[str]] = {"node": set(), "cluster": set(), "host": set(), "user": set()}
        servers: set[str] = set()
        ips: set[str] = set()

        def add(kind: str, value: Any) -> None:
            if isinstance(value, str) and value.strip():
                found[kind].add(value.strip())

        def walk(value: Any) -> None:
            if isinstance(value, str):
                for m in _IP_ANY.finditer(value):
                    if self._is_ip(m.group(0)):
                        ips.add(str(ipaddress.ip_address(m.group(0))))
            elif isinstance(value, dict):
                for k, v in value.items():
                    walk(k)
                    walk(v)
            elif isinstance(value, (list, tuple)):
                for v in value:
                    walk(v)

        for ev in events:
            if not isinstance(ev, dict):
                continue
            walk(ev)
            t = ev.get("type")
            if t == "session_start":
                cl = ev.get("cluster") or {}
                if isinstance(cl, dict):
                    add("cluster", cl.get("context"))
                    add("cluster", cl.get("cluster") or cl.get("name"))
                    if isinstance(cl.get("server"), str):
                        servers.add(cl["server"])
                add("user", ev.get("user"))
                add("host", ev.get("host"))
            for key in ("node", "target"):
                add("node", ev.get(key))
            if t == "diagnosis":
                nodes = ev.get("nodes")
                if isinstance(nodes, dict):
                    for name in nodes:
                        add("node", name)
                for f in ev.get("findings") or ():
                    if isinstance(f, dict):
                        add("node", f.get("node"))
            elif t == "plan":
                plan = ev.get("plan") or {}
                if isinstance(plan, dict):
                    for a in plan.get("actions") or ():
                        if isinstance(a, dict):
                            add("node", a.get("target"))
                    for f in plan.get("findings") or ():
                        if isinstance(f, dict):
                            add("node", f.get("node"))
            elif t == "validation":
                for r in ev.get("results") or ():
                    # targets are node names, services ("default/jellyfin") or "cluster"
                    if isinstance(r, dict) and isinstance(r.get("target"), str) and "/" not in r["target"]:
                        add("node", r["target"])
        for kind in ("cluster", "node", "host", "user"):
            for value in sorted(found[kind], key=_natural):
                self._add(kind, value)
        for url in sorted(servers):
            self.add_server(url)
        for ip in sorted(ips, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a))):
            if ip not in _KEEP_IPS:
                self._ip_placeholder(ip)

    # -- replacing
    @staticmethod
    def _is_ip(value: str) -> bool:
        try:
            ipaddress.ip_address(value)
            return True
        except ValueError:
            return False

    def _ip_placeholder(self, ip: str) -> str:
        if ip not in self._ips:
            self._ips[ip] = f"ip-{len(self._ips) + 1}"
        return self._ips[ip]

    def _compiled(self) -> re.Pattern[str]:
        if self._regex is None:
            names = sorted(self._names, key=len, reverse=True)
            alts = []
            for name in names:
                # whole tokens: "node-1" never touches "node-10", but is found in "cfx-lab-node-1"
                left = r"(?<![A-Za-z0-9])" if re.match(r"[A-Za-z0-9]", name) else ""
                right = r"(?![A-Za-z0-9])" if re.search(r"[A-Za-z0-9]$", name) else ""
                alts.append(left + re.escape(name) + right)
            parts = []
            if alts:
                parts.append("(?P<name>" + "|".join(alts) + ")")
            parts.append("(?P<v4>" + _IPV4 + ")")
            parts.append("(?P<v6>" + _IPV6 + ")")
            self._regex = re.compile("|".join(parts))
        return self._regex

    def _sub(self, m: re.Match[str]) -> str:
        if m.lastgroup == "name":
            return self._names[m.group(0)]
        ip = m.group(0)
        if ip in _KEEP_IPS or not self._is_ip(ip):
            return ip  # not an address (a version string, a MAC, a time) or a harmless one
        try:
            canon = str(ipaddress.ip_address(ip))
        except ValueError:
            return ip
        if canon in _KEEP_IPS:
            return ip
        return self._ip_placeholder(canon)

    def text(self, value: str) -> str:
        if not value or not isinstance(value, str):
            return value
        return self._compiled().sub(self._sub, value)

    def obj(self, value: Any) -> Any:
        """Anonymise every string (dict keys included) in a JSON-like structure."""
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {(self.text(k) if isinstance(k, str) else k): self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value

    def mapping(self) -> dict[str, str]:
        """original -> placeholder (kept private: never put this in a shared report)."""
        out = dict(self._names)
        out.update(self._ips)
        return out


def anonymize_events(events: Iterable[dict[str, Any]]) -> list[Any]:
    """Convenience: learn from and anonymise a list of events with one fresh Anonymizer."""
    evs = list(events)
    anon = Anonymizer()
    anon.learn_events(evs)
    return [anon.obj(e) for e in evs]



class LineRedactor:
    """Redacts output shown line by line (a command's stdout streamed to a terminal or log pane).

    `redact(line)` alone cannot see a PEM block's BEGIN/END around a body line, so the body
    lines after a BEGIN line would pass (a short last line is not a "long blob"). This keeps, per
    stream key (e.g. (node, stream)), whether a block is open and blanks every line until its END.
    """

    _BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]{1,40})-----")

    def __init__(self) -> None:
        import threading

        self._open: dict[Any, str] = {}
        self._lock = threading.Lock()

    def __call__(self, line: str, key: Any = None) -> str:
        with self._lock:
            end = self._open.get(key)
            if end is not None:
                if end in line:
                    del self._open[key]
                return MARK
            m = self._BEGIN.search(line)
            if m is not None:
                end = f"-----END {m.group(1)}-----"
                if end not in line[m.end():]:
                    self._open[key] = end
        return redact(line)

Redactor = Callable[[Any], Any]
