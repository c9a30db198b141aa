"""Pure parsers for the node-side tools' output. No I/O; none of them raises on bad input.

Each parser returns plain data plus, where input can be partly broken, a list of errors. They are
tested on real output captured on this machine and in the lab (tests/data/) and fuzzed
(tests/test_parsers_fuzz.py).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import re
import shlex
from dataclasses import dataclass, field
from typing import Any

try:  # a faster decoder for the nodes' JSON (ip -j, nft -j, CNI confs); optional: see json_loads
    import orjson as _orjson
except ImportError:  # pragma: no cover - the standard decoder alone gives the same values
    _orjson = None  # type: ignore[assignment]


# every digit mapped to "0": a run of 19 zeros after translate() is a run of 19 digits
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_LONG_DIGITS = b"0" * 19


def json_loads(text: str) -> Any:
    """json.loads(text): the same value, or the same ValueError (its message goes into
    parse_errors). Decoded by orjson where it is installed (2-3x fewer instructions on `ip -j`
    and `nft -j` output: a large part of parsing a node's facts), else by json.

    orjson reads strict RFC 8259 JSON into the same Python values as json, except where json is
    looser or wider: NaN/Infinity, numbers beyond a double (1e400), lone surrogates, text that
    is not JSON: orjson raises there and json then decodes (or raises its own error, the one the
    callers always reported). One case where orjson does not raise but differs: an integer
    beyond 64 bits, which orjson 3.8 reads as a float. Any run of 19 or more digits in the text
    (in a number or in a string: a cheap byte scan, C code) sends the whole text to json.
    tests/test_parsers_json_loads.py compares both on the recorded outputs, generated JSON
    and the edge cases."""
    if _orjson is not None:
        try:
            raw = text.encode()
        except UnicodeEncodeError:  # a lone surrogate: json reads it
            return json.loads(text)
        if raw.translate(_DIGITS_TO_ZERO).find(_LONG_DIGITS) < 0:
            try:
                return _orjson.loads(raw)
            except _orjson.JSONDecodeError:
                pass  # json decides: the value it reads, or its error
    return json.loads(text)

# -- iptables -V / alternatives --------------------------------------------------------------------


@dataclass(frozen=True)
class IptablesVersion:
    text: str  # the line as printed
    version: str | None  # "1.8.9"
    backend: str | None  # "nft" | "legacy" | None

    def tuple(self) -> tuple[int, ...]:
        return version_tuple(self.version)


def version_tuple(v: str | None) -> tuple[int, ...]:
    out: list[int] = []
    for part in (v or "").split("."):
        m = re.match(r"\d+", part)
        if not m:
            break
        out.append(int(m.group()))
    return tuple(out)


def parse_iptables_version(text: str) -> IptablesVersion | None:
    for line in (text or "").splitlines():
        m = re.search(r"iptables v(\d+(?:\.\d+)*)\s*(?:\(([^)]*)\))?", line)
        if m:
            kind = (m.group(2) or "").strip()
            backend = "nft" if kind == "nf_tables" else "legacy" if kind in ("legacy", "") else None
            return IptablesVersion(line.strip(), m.group(1), backend)
    return None


@dataclass(frozen=True)
class Alternatives:
    name: str | None
    link: str | None
    status: str | None  # "auto" | "manual"
    best: str | None
    value: str | None  # the path `iptables` points at
    alternatives: tuple[tuple[str, int | None], ...] = ()  # (path, priority)


def parse_alternatives(text: str) -> Alternatives:
    head: dict[str, str] = {}
    alts: list[tuple[str, int | None]] = []
    cur: str | None = None
    for line in (text or "").splitlines():
        if not line or line.startswith(" "):
            continue
        key, sep, val = line.partition(":")
        if not sep:
            continue
        key, val = key.strip(), val.strip()
        if key == "Alternative":
            cur = val
            alts.append((val, None))
        elif key == "Priority" and cur is not None and alts:
            try:
                alts[-1] = (alts[-1][0], int(val))
            except ValueError:
                pass
        elif cur is None:
            head[key] = val
    return Alternatives(head.get("Name"), head.get("Link"), head.get("Status"), head.get("Best"),
                        head.get("Value"), tuple(alts))


def backend_of_path(path: str | None) -> str | None:
    p = (path or "").rsplit("/", 1)[-1]
    if "legacy" in p:
        return "legacy"
    if "nft" in p:
        return "nft"
    return None


def host_iptables_backend(version: IptablesVersion | None, alts: Alternatives | None,
                          link: str | None) -> str | None:
    """Which backend the node's `iptables` command uses: `iptables -V` says it directly; else the
    resolved binary (xtables-nft-multi / xtables-legacy-multi); else the alternatives value."""
    if version is not None and version.backend:
        return version.backend
    for cand in (link, alts.value if alts else None):
        b = backend_of_path(cand)
        if b:
            return b
    return None


# -- iptables-save ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    table: str
    chain: str
    spec: str  # the line as printed: "-A CHAIN ..."
    target: str | None  # value of -j / -g
    args: tuple[str, ...] = ()

    def opt(self, name: str) -> str | None:
        """Value following option `name` (e.g. "--to-destination"), if present."""
        a = self.args
        for i, tok in enumerate(a[:-1]):
            if tok == name:
                return a[i + 1]
        return None

    def has(self, token: str) -> bool:
        return token in self.args


def frozen_maker(cls: Any, inline: bool = False) -> Any:
    """A positional constructor for the frozen dataclass `cls` that makes the same object as
    cls(...) (same class, same fields in the same order, so ==, hash and repr are unchanged)
    without the generated __init__'s call overhead: parsers make tens of thousands of these.
    Only for classes whose __init__ does nothing else (no __post_init__, no default factories
    needed: every field is passed)."""
    import dataclasses as _dc
    import inspect as _inspect

    params = getattr(cls, "__dataclass_params__", None)
    assert params is not None and params.frozen and not hasattr(cls, "__post_init__")
    assert "__slots__" not in cls.__dict__  # the fields live in the instance's __dict__
    qualname = cls.__qualname__
    names = [f.name for f in _dc.fields(cls)]
    args = ", ".join(names)
    # each field stored in the instance's __dict__ as object.__setattr__ stores it (half the
    # instructions: no setattr call per field); a field the class holds a data descriptor for
    # (one with __set__) goes through it as before. `inline`: every field set with
    # object.__setattr__ (the values stay in the object, no dict object is made): for classes
    # holding containers (a dict holding a tuple or dict is one more object the cyclic collector
    # tracks and walks; a dict of strings and numbers is not tracked)
    body = "".join(f"    _set(o, {n!r}, {n})\n"
                   if inline or hasattr(type(_inspect.getattr_static(cls, n, None)), "__set__")
                   else f"    d[{n!r}] = {n}\n"
                   for n in names)
    dict_line = "" if inline else "    d = o.__dict__\n"
    src = f"def make({args}):\n    o = _new(cls)\n{dict_line}{body}    return o\n"
    ns: dict[str, Any] = {"_new": object.__new__, "_set": object.__setattr__, "cls": cls}
    exec(src, ns)  # noqa: S102 - built from the dataclass's own field names
    make = ns["make"]
    make.__qualname__ = f"{qualname}.make"
    return make


@dataclass(frozen=True)
class Table:
    name: str
    chains: dict[str, str | None]  # chain -> policy ("ACCEPT"/"DROP") for built-ins, None otherwise
    rules: tuple[Rule, ...] = ()

    def rules_in(self, chain: str) -> list[Rule]:
        return list(self._by_chain.get(chain, ()))

    @functools.cached_property
    def _by_chain(self) -> dict[str, list[Rule]]:
        """chain -> its rules in order, built once (callers walk every chain of 35,000-rule
        tables: one scan per chain was quadratic)."""
        out: dict[str, list[Rule]] = {}
        for r in self.rules:
            out.setdefault(r.chain, []).append(r)
        return out


@dataclass(frozen=True)
class IptablesSave:
    tables: dict[str, Table] = field(default_factory=dict)
    comments: tuple[str, ...] = ()  # "# ..." lines (warnings, incompatibility notes)
    incompatible_tables: tuple[str, ...] = ()  # from "# Table `nat' is incompatible"
    errors: tuple[str, ...] = ()

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    def has_chain(self, name: str, table: str | None = None) -> bool:
        tabs = [self.tables[table]] if table and table in self.tables else (
            [] if table else list(self.tables.values()))
        return any(name in t.chains for t in tabs)

    def kube_chains(self) -> dict[str, list[str]]:
        return {t.name: sorted(c for c in t.chains if c.startswith("KUBE-"))
                for t in self.tables.values() if any(c.startswith("KUBE-") for c in t.chains)}

    @property
    def empty(self) -> bool:
        return not self.tables


_new_rule = frozen_maker(Rule, inline=True)
_new_table = frozen_maker(Table, inline=True)
_new_save = frozen_maker(IptablesSave, inline=True)


class _LazyArgs:
    """Rule.args as a data descriptor: a Rule made by its own __init__ (or frozen_maker) stores
    its tokens as before; one made by `_new_lazy_rule` (a quoted kube-proxy line whose chain and
    target were read without tokenizing it) tokenizes its spec on the first read of `.args`
    (==, hash and repr read it too, so they are unchanged). Most rules' tokens are never read:
    the checks read a nat table's chains, targets and specs, and only the filter rules a flow's
    walk reaches."""

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return ()  # the field's default, as the dataclass saw it
        d = obj.__dict__
        got = d.get("args")
        if got is None:
            got = d["args"] = _tokens(d["spec"])[2:]
        return got

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["args"] = value


Rule.args = _LazyArgs()  # type: ignore[assignment,misc]


def _new_lazy_rule(table: str, chain: str, spec: str, target: str | None) -> Rule:
    o = object.__new__(Rule)
    d = o.__dict__
    d["table"], d["chain"], d["spec"], d["target"] = table, chain, spec, target
    return o


def _quoted_rule_head(line: str) -> tuple[str, str] | None:
    """(chain, target) of a rule line that `_tokens` reads with `_split_quoted` (one kind of
    quote, balanced, no backslash, ASCII, only shlex's whitespace): the chain is the second
    word before the first quote, the target the word after the last -j/-g after the last quote
    (tokens there are plain words). None when either is not there as a plain word (then the line
    is tokenized at once, as before)."""
    if "\\" in line or not line.isascii() or _other_ws(line):
        return None
    sq, dq = "'" in line, '"' in line
    if sq == dq:
        return None
    qc = '"' if dq else "'"
    if line.count(qc) % 2:
        return None
    q0, q1 = line.index(qc), line.rindex(qc)
    head = line[:q0].split()
    if len(head) < 2 or (len(head) == 2 and line[q0 - 1] not in _WS):
        return None  # the chain glued to the quoted text
    tail = line[q1 + 1:]
    words = tail.split()
    lo = 1 if tail and tail[0] not in _WS else 0  # the first word glued to the quoted text
    jumps = _JUMPS
    for i in range(len(words) - 2, lo - 1, -1):
        if words[i] in jumps:
            return head[1], words[i + 1]
    return None
_JUMPS = frozenset(("-j", "--jump", "-g", "--goto"))
_INCOMPAT_RE = re.compile(r"[Tt]able `([^']*)' is incompatible")


def _tokens_reference(line: str) -> tuple[str, ...]:
    """The reference tokenizer (POSIX shlex; on a quoting error, plain whitespace split). Exact but
    slow (~45 us a rule): `_tokens` gives the same result and only falls back to this for lines it
    cannot tokenize itself (an unclosed quote, a trailing backslash)."""
    try:
        return tuple(shlex.split(line))
    except ValueError:
        return tuple(line.split())


# shlex (posix, whitespace_split) splits on these four only
_WS = " \t\r\n"
# one token: runs of plain characters, backslash escapes, '...' and "..." (with \\ and \" inside)
# possessive (no backtracking): node-supplied lines that do not tokenize (an unclosed quote after a
# long word) must fail in linear time, not in exponential time
_TOKEN = rf"""(?:[^{_WS}'"\\]++|\\.|'[^']*+'|"(?:[^"\\]|\\.)*+")++"""
_TOKEN_RE = re.compile(_TOKEN, re.S)
_LINE_RE = re.compile(rf"[{_WS}]*+(?:{_TOKEN}[{_WS}]*+)*+", re.S)
_PLAIN_RE = re.compile(rf"[{_WS}]+")
_PART_RE = re.compile(r"\\(.)|'([^']*)'|\"((?:[^\"\\]|\\.)*)\"", re.S)
_DQ_ESC_RE = re.compile(r'\\([\\"])')
# ASCII whitespace str.split() knows and shlex does not
_OTHER_WS_RE = re.compile("[\x0b\x0c\x1c-\x1f]")


def _other_ws(line: str) -> bool:
    """_OTHER_WS_RE.search(line), for an ASCII line: six one-character searches (memchr) take
    about a third of the instructions of the isprintable() scan that screened for them before
    (a ~150-character kube-proxy rule: ~1,400 against ~4,200)."""
    return ("\x0b" in line or "\x0c" in line or "\x1c" in line or "\x1d" in line
            or "\x1e" in line or "\x1f" in line)


def _unquote_part(m: re.Match[str]) -> str:
    if m.group(1) is not None:
        return m.group(1)
    if m.group(2) is not None:
        return m.group(2)
    return _DQ_ESC_RE.sub(r"\1", m.group(3))


def _split_quoted(line: str, qc: str) -> tuple[str, ...]:
    """shlex.split for a line with no backslash, only `qc` quotes, balanced, and no whitespace
    but the four shlex knows: text between quote pairs is literal and glues onto its neighbours."""
    toks: list[str] = []
    cur: str | None = None  # the token still open (no whitespace after it yet)
    for i, part in enumerate(line.split(qc)):
        if i & 1:
            cur = part if cur is None else cur + part
            continue
        if not part:
            continue
        if cur is not None and part[0] in _WS:
            toks.append(cur)
            cur = None
        words = part.split()
        if not words:
            continue
        if cur is not None:
            words[0] = cur + words[0]
            cur = None
        if part[-1] not in _WS:
            cur = words.pop()
        toks.extend(words)
    if cur is not None:
        toks.append(cur)
    return tuple(toks)


def _tokens(line: str) -> tuple[str, ...]:
    """shlex.split(line) (POSIX; on a quoting error, line.split()), exactly, but fast: real
    nodes' iptables-save prints 35,000-rule tables (tests/test_parsers_fast.py compares it with
    `_tokens_reference`)."""
    # str.split() splits on more than shlex's four whitespace characters: only where none are
    if "\\" not in line and line.isascii() and not _other_ws(line):
        sq, dq = "'" in line, '"' in line
        if not sq and not dq:
            return tuple(line.split())
        # one kind of quote, balanced (kube-proxy's comments): every quote pairs with the next
        if sq != dq:
            qc = '"' if dq else "'"
            if line.count(qc) % 2 == 0:
                return _split_quoted(line, qc)
    if _LINE_RE.fullmatch(line) is None:
        return _tokens_reference(line)
    out = []
    for tok in _TOKEN_RE.findall(line):
        if "'" in tok or '"' in tok or "\\" in tok:
            tok = _PART_RE.sub(_unquote_part, tok)
        out.append(tok)
    return tuple(out)


# the counters `iptables-save -c` prints before each rule
_SAVE_COUNTERS_RE = re.compile(r"\[\d+:\d+\] +")


def parse_iptables_save(text: str) -> IptablesSave:
    tables: dict[str, Table] = {}
    comments: list[str] = []
    incompatible: list[str] = []
    errors: list[str] = []
    name: str | None = None
    chains: dict[str, str | None] = {}
    rules: list[Rule] = []

    def close() -> None:
        nonlocal name, chains, rules
        if name is not None:
            tables[name] = _new_table(name, chains, tuple(rules))
        name, chains, rules = None, {}, []

    jumps = _JUMPS
    new_rule, new_lazy_rule = _new_rule, _new_lazy_rule
    for n, raw in enumerate((text or "").splitlines(), 1):
        if name is not None:
            c0 = raw[:1]
            if c0 == "[":  # `iptables-save -c`: "[packets:bytes] -A ...": the rule without them
                m = _SAVE_COUNTERS_RE.match(raw)
                if m is not None:
                    raw = raw[m.end():]
                    c0 = raw[:1]
            if c0 == "-" and raw[:3] in ("-A ", "-I "):  # the bulk: rules, on the fast path
                if '"' in raw or "'" in raw:
                    ct = _quoted_rule_head(raw)
                    if ct is not None:  # kube-proxy's commented rules: tokens read when asked
                        if ct[0] not in chains:
                            chains[ct[0]] = None
                        rules.append(new_lazy_rule(name, ct[0], raw, ct[1]))
                        continue
                toks = _tokens(raw)
                if len(toks) < 2:
                    errors.append(f"line {n}: rule without chain")
                    continue
                chain = toks[1]
                if chain not in chains:
                    chains[chain] = None
                target = None
                for i in range(len(toks) - 2, -1, -1):  # the last -j/-g wins
                    if toks[i] in jumps:
                        target = toks[i + 1]
                        break
                rules.append(new_rule(name, chain, raw, target, toks[2:]))
                continue
            if c0 == ":":  # a chain line inside a table (the branch below, without its tests)
                parts = raw.rstrip("\r")[1:].split()
                if not parts:
                    errors.append(f"line {n}: empty chain line")
                    continue
                pol = parts[1] if len(parts) > 1 else "-"
                chains[parts[0]] = None if pol == "-" else pol
                continue
        line = raw.rstrip("\r")
        if not line.strip():
            continue
        if line.startswith("#"):
            comments.append(line)
            m = _INCOMPAT_RE.search(line)
            if m:
                incompatible.append(m.group(1))
            continue
        if line.startswith("*"):
            close()
            name = line[1:].strip()
            continue
        if line.strip() == "COMMIT":
            close()
            continue
        if name is None:
            errors.append(f"line {n}: outside a table: {line[:100]!r}")
            continue
        if line.startswith(":"):
            parts = line[1:].split()
            if not parts:
                errors.append(f"line {n}: empty chain line")
                continue
            pol = parts[1] if len(parts) > 1 else "-"
            chains[parts[0]] = None if pol == "-" else pol
            continue
        if line.startswith("-A ") or line.startswith("-I "):
            toks = _tokens(line)
            if len(toks) < 2:
                errors.append(f"line {n}: rule without chain")
                continue
            chain = toks[1]
            chains.setdefault(chain, None)
            target = None
            for i, tok in enumerate(toks[:-1]):
                if tok in ("-j", "--jump", "-g", "--goto"):
                    target = toks[i + 1]
            rules.append(Rule(name, chain, line, target, toks[2:]))
            continue
        errors.append(f"line {n}: not understood: {line[:100]!r}")
    if name is not None:
        errors.append(f"table {name}: no COMMIT")
        close()
    return _new_save(tables, tuple(comments), tuple(incompatible), tuple(errors))


# iptables-nft 1.8+ (nft_check_xt_legacy) when /proc/net/ip(6)_tables_names lists a table: the
# kernel holds iptables-legacy tables this listing does not show. Printed on stdout as a comment by
# the first 1.8 releases and on stderr later: "# Warning: iptables-legacy tables present, use
# iptables-legacy-save to see them" (`iptables -S` / `-L`: "... use iptables-legacy to see them")
_LEGACY_WARNING_RE = re.compile(r"^\s*# Warning: (ip6?tables)-legacy tables present\b.*$", re.M)


LEGACY_WARNING_MAX = 160  # the real line is ~80 characters


def legacy_tables_warning(text: str | None, family: int = 4) -> str | None:
    """The line of an iptables-nft output (stdout or stderr) saying the kernel also holds
    iptables-legacy tables of that family (4: iptables, 6: ip6tables), else None."""
    want = "ip6tables" if family == 6 else "iptables"
    if not text or "-legacy tables present" not in text:  # (a save can be megabytes: one scan)
        return None
    for m in _LEGACY_WARNING_RE.finditer(text):
        if m.group(1) == want:
            # (the line is quoted in unread_sections, the journal, the report and the wizard:
            # bounded, whatever follows the warning on a hostile node's line)
            return m.group(0).strip()[:LEGACY_WARNING_MAX]
    return None


def detect_kube_proxy_backend(nft_mangle: IptablesSave | None, ip6_nft_mangle: IptablesSave | None,
                              legacy: IptablesSave | None) -> tuple[str, str]:
    """kubernetes-sigs/iptables-wrappers' rule: KUBE-IPTABLES-HINT or KUBE-KUBELET-CANARY in
    `iptables-nft-save -t mangle` (or ip6tables) -> nft; else in the full iptables-legacy-save ->
    legacy; else nft. Returns (backend, evidence)."""
    for label, save in (("iptables-nft-save -t mangle", nft_mangle),
                        ("ip6tables-nft-save -t mangle", ip6_nft_mangle)):
        if save is None:
            continue
        for chain in ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"):
            if save.has_chain(chain, "mangle"):
                return "nft", f"{chain} in {label}"
    if legacy is not None:
        for chain in ("KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"):
            if legacy.has_chain(chain):
                return "legacy", f"{chain} in iptables-legacy-save"
    return "nft", "no KUBE-IPTABLES-HINT / KUBE-KUBELET-CANARY in either backend (default nft)"


# -- nft -j ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NftChain:
    family: str
    table: str
    name: str
    handle: int | None
    type: str | None = None
    hook: str | None = None
    prio: Any = None
    policy: str | None = None


@dataclass(frozen=True)
class NftRule:
    family: str
    table: str
    chain: str
    handle: int | None
    expr: tuple[Any, ...] = ()
    comment: str | None = None

    def statements(self) -> list[str]:
        """The top-level expression kinds, e.g. ["match", "xt", "counter", "jump"]."""
        out: list[str] = []
        for e in self.expr:
            if isinstance(e, dict):
                out.extend(str(k) for k in e.keys())
        return out

    @property
    def has_xt(self) -> bool:
        return "xt" in self.statements()

    def render(self) -> str:
        return render_nft_rule(self)


@dataclass(frozen=True)
class NftRuleset:
    tables: tuple[tuple[str, str], ...] = ()  # (family, name)
    chains: tuple[NftChain, ...] = ()
    rules: tuple[NftRule, ...] = ()  # see _LazyRules: decoded on first read when parsed lazily
    version: str | None = None
    errors: tuple[str, ...] = ()
    # named sets of addresses: (family, table, name, elements as CIDRs, or None when they are
    # not all read: an element nft -j gives in a form not understood here, a concatenation)
    sets: tuple[tuple[str, str, str, tuple[str, ...] | None], ...] = ()

    def rules_in(self, family: str, table: str, chain: str) -> list[NftRule]:
        pending = self.__dict__.get("_pending")
        if pending is not None:  # only the table asked for is decoded (the others stay text)
            return list(pending.table_index(family, table).get(chain, ()))
        return list(self._by_chain.get((family, table, chain), ()))

    def table_rules(self, family: str, table: str) -> list[NftRule]:
        """The rules of one table in order (the other tables' rule texts stay undecoded)."""
        pending = self.__dict__.get("_pending")
        if pending is not None:
            return list(pending.table_rules(family, table))
        return [r for r in self.rules if r.family == family and r.table == table]

    @functools.cached_property
    def _by_chain(self) -> dict[tuple[str, str, str], list[NftRule]]:
        out: dict[tuple[str, str, str], list[NftRule]] = {}
        for r in self.rules:
            out.setdefault((r.family, r.table, r.chain), []).append(r)
        return out


class NftRulesUnreadable(ValueError):
    """A table's rule items, kept undecoded at parse time, turned out not to be what the parse
    -time screening said (not JSON, or items other than rules of that table): raised to the
    reader (a check fails with an error), never read as "no rules"."""


class _LazyRules:
    """NftRuleset.rules as a data descriptor: a ruleset made by the dataclass's own __init__
    stores its rules as before; one made by `_parse_nft_json_lazy` holds `_pending` (the rule
    items of each table as text) and decodes them all on the first read of `.rules` (==, repr
    and hash read it too, so they are unchanged). `rules_in`/`table_rules` decode one table."""

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        if obj is None:
            return ()  # the field's default, as the dataclass saw it
        d = obj.__dict__
        got = d.get("rules")
        if got is None:
            got = d["_pending"].all_rules()
            d["rules"] = got
            d.pop("_pending", None)
        return got

    def __set__(self, obj: Any, value: Any) -> None:
        obj.__dict__["rules"] = value


NftRuleset.rules = _LazyRules()  # type: ignore[assignment,misc]


_new_nft_rule = frozen_maker(NftRule, inline=True)
_new_nft_chain = frozen_maker(NftChain)


def parse_nft_json(text: str) -> NftRuleset:
    """`nft -j list ruleset` -> NftRuleset. nft's own output (one table after the other: the
    table, its sets and chains, then its rules) is read lazily (`_parse_nft_json_lazy`): the
    tables and chains now, each table's rules on first use (most of a kube-proxy node's JSON is
    iptables-nft's rules, which the checks read from iptables-nft-save instead); any other text
    goes through the full decode below, as before."""
    text = (text or "").strip()
    if not text:
        return NftRuleset(errors=())
    if _nft_json_before_0_9_1(text):
        return _modern_rules(_parse_nft_json_full(text))
    lazy = _parse_nft_json_lazy(text)
    if lazy is not None:
        return lazy
    return _parse_nft_json_full(text)


# nft 0.9.0 (Debian 10's) wrote its JSON in an older form: a payload as {"name": "tcp", "field":
# "dport"} (0.9.1+: "protocol"), a meta key as a bare string {"meta": "iifname"} (0.9.1+: {"key":
# "iifname"}), a raw payload with "name": "raw" (0.9.1+: no name). Read as what 0.9.1+ prints, so
# that rules are matched and rendered the same (nftables@v0.9.1 src/json.c)
_NFT_HEAD_VERSION = re.compile(r'\{"nftables": \[\{"metainfo": \{"version": "(\d+)\.(\d+)\.(\d+)')
_NFT_OLD_PAYLOAD = re.compile(r'"payload": \{[^{}]*"name": ')


def _nft_json_before_0_9_1(text: str) -> bool:
    m = _NFT_HEAD_VERSION.match(text)
    if m is not None:
        return tuple(int(x) for x in m.groups()) < (0, 9, 1)
    # no metainfo first (a copy, or an early release): the old forms themselves
    return '{"meta": "' in text or _NFT_OLD_PAYLOAD.search(text) is not None


def _modern_expr(x: Any) -> Any:
    if isinstance(x, list):
        return [_modern_expr(v) for v in x]
    if not isinstance(x, dict):
        return x
    out: dict[str, Any] = {}
    for k, v in x.items():
        if k == "meta" and isinstance(v, str):
            out[k] = {"key": v}
        elif k == "payload" and isinstance(v, dict) and "name" in v and "protocol" not in v:
            out[k] = {kk: vv for kk, vv in v.items() if kk != "name"} if v.get("name") == "raw" \
                else {("protocol" if kk == "name" else kk): vv for kk, vv in v.items()}
        else:
            out[k] = _modern_expr(v)
    return out


def _modern_rules(rs: NftRuleset) -> NftRuleset:
    return NftRuleset(rs.tables, rs.chains, tuple(
        NftRule(r.family, r.table, r.chain, r.handle, tuple(_modern_expr(list(r.expr))),
                r.comment) for r in rs.rules), rs.version, rs.errors, rs.sets)


def _parse_nft_json_full(text: str) -> NftRuleset:
    errors: list[str] = []
    try:
        doc = json_loads(text)
    except ValueError as exc:
        return NftRuleset(errors=(f"not JSON: {exc}",))
    items = doc.get("nftables") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        return NftRuleset(errors=("no 'nftables' list",))
    tables: list[tuple[str, str]] = []
    chains: list[NftChain] = []
    rules: list[NftRule] = []
    sets: list[tuple[str, str, str, tuple[str, ...] | None]] = []
    version = _nft_items(items, tables, chains, rules, None, sets)
    return NftRuleset(tuple(tables), tuple(chains), tuple(rules), version, tuple(errors),
                      tuple(sets))


def _nft_set_elems(st: dict[str, Any]) -> tuple[str, ...] | None:
    """A named set's elements as CIDRs (an address, a prefix, a range summarised, an element
    with a timeout {"elem": {"val": ...}}); None when one is none of these or the set is not of
    addresses (then it is 'not read')."""
    if st.get("type") not in ("ipv4_addr", "ipv6_addr"):
        return None
    out: list[str] = []
    elems = st.get("elem", [])
    for e in elems if isinstance(elems, list) else [None]:
        if isinstance(e, dict) and isinstance(e.get("elem"), dict):
            e = e["elem"].get("val")
        if isinstance(e, str):
            out.append(e)
        elif isinstance(e, dict) and isinstance(e.get("prefix"), dict):
            out.append(f"{e['prefix'].get('addr')}/{e['prefix'].get('len')}")
        elif isinstance(e, dict) and isinstance(e.get("range"), list) and len(e["range"]) == 2:
            try:
                a, b = (ipaddress.ip_address(str(x)) for x in e["range"])
                out.extend(str(n) for n in ipaddress.summarize_address_range(a, b))  # type: ignore[arg-type]
            except (ValueError, TypeError):
                return None
        else:
            return None
    return tuple(out)


def _nft_items(items: list[Any], tables: list[tuple[str, str]], chains: list[NftChain],
               rules: list[NftRule], version: str | None,
               sets: list[tuple[str, str, str, tuple[str, ...] | None]] | None = None
               ) -> str | None:
    """Read decoded top-level items into tables/chains/rules; returns the version (the last
    metainfo's, else `version`)."""
    new_rule, new_chain = _new_nft_rule, _new_nft_chain
    for it in items:
        if not isinstance(it, dict):
            continue
        r = it.get("rule")
        if r.__class__ is dict and len(it) == 1:
            # the bulk (thousands on a kube-proxy node): the usual one-key item, the usual types
            # taken as they are, anything else through _s/_i as below (same values)
            fam, tab, cha = r.get("family"), r.get("table"), r.get("chain")
            han, expr, com = r.get("handle"), r.get("expr"), r.get("comment")
            rules.append(new_rule(fam if fam.__class__ is str else _s(fam) or "",
                                 tab if tab.__class__ is str else _s(tab) or "",
                                 cha if cha.__class__ is str else _s(cha) or "",
                                 han if han.__class__ is int else _i(han),
                                 tuple(expr) if isinstance(expr, list) else (),
                                 com if com.__class__ is str or com is None else _s(com)))
            continue
        c = it.get("chain")
        if c.__class__ is dict and len(it) == 1:
            fam, tab, nam, han = c.get("family"), c.get("table"), c.get("name"), c.get("handle")
            typ, hook, pol = c.get("type"), c.get("hook"), c.get("policy")
            chains.append(new_chain(fam if fam.__class__ is str else _s(fam) or "",
                                   tab if tab.__class__ is str else _s(tab) or "",
                                   nam if nam.__class__ is str else _s(nam) or "",
                                   han if han.__class__ is int else _i(han),
                                   typ if typ.__class__ is str or typ is None else _s(typ),
                                   hook if hook.__class__ is str or hook is None else _s(hook),
                                   c.get("prio"),
                                   pol if pol.__class__ is str or pol is None else _s(pol)))
            continue
        if isinstance(it.get("metainfo"), dict):
            version = _s(it["metainfo"].get("version"))
        t = it.get("table")
        if isinstance(t, dict):
            tables.append((_s(t.get("family")) or "", _s(t.get("name")) or ""))
        st = it.get("set")
        if sets is not None and isinstance(st, dict):
            sets.append((_s(st.get("family")) or "", _s(st.get("table")) or "",
                         _s(st.get("name")) or "", _nft_set_elems(st)))
        c = it.get("chain")
        if isinstance(c, dict):
            chains.append(NftChain(_s(c.get("family")) or "", _s(c.get("table")) or "",
                                   _s(c.get("name")) or "", _i(c.get("handle")), _s(c.get("type")),
                                   _s(c.get("hook")), c.get("prio"), _s(c.get("policy"))))
        r = it.get("rule")
        if isinstance(r, dict):
            expr = r.get("expr")
            rules.append(NftRule(_s(r.get("family")) or "", _s(r.get("table")) or "",
                                 _s(r.get("chain")) or "", _i(r.get("handle")),
                                 tuple(expr) if isinstance(expr, list) else (),
                                 _s(r.get("comment"))))
    return version


_NFT_DOC_HEAD = '{"nftables": ['
_NFT_TABLE = '{"table": {'
_NFT_RULE = '{"rule": {'


class _PendingRules:
    """The rules of a lazily parsed ruleset: per table block, in document order, the rules read
    at parse time and the text of the rule items left undecoded (screened: only rule items of
    that block's table)."""

    __slots__ = ("blocks",)

    def __init__(self, blocks: list[tuple[tuple[str, str] | None, tuple[NftRule, ...], str | None]]
                 ) -> None:
        # (the block's table (family, name), rules read now, undecoded rule items or None)
        self.blocks: list[list[Any]] = [list(b) for b in blocks]

    def _decoded(self, b: list[Any]) -> tuple[NftRule, ...]:
        key, now, text = b
        if text is None:
            return now  # type: ignore[no-any-return]
        try:
            items = json_loads("[" + text + "]")
        except ValueError as exc:
            raise NftRulesUnreadable(f"nft -j: the rules of table {key[0]} {key[1]}: not JSON: "
                                     f"{exc}") from None
        tables: list[tuple[str, str]] = []
        chains: list[NftChain] = []
        rules: list[NftRule] = list(now)
        n0 = len(rules)
        if _nft_items(items, tables, chains, rules, None) is not None or tables or chains or any(
                (r.family, r.table) != key for r in rules[n0:]):
            raise NftRulesUnreadable(f"nft -j: the rules of table {key[0]} {key[1]} hold other "
                                     "items than its rules")
        got = tuple(rules)
        b[1], b[2] = got, None
        return got

    def table_rules(self, family: str, table: str) -> list[NftRule]:
        out: list[NftRule] = []
        key = (family, table)
        for b in self.blocks:
            # a block of another table: its undecoded items are rules of that table only
            rules = self._decoded(b) if b[0] == key else b[1]
            out.extend(r for r in rules if r.family == family and r.table == table)
        return out

    def table_index(self, family: str, table: str) -> dict[str, list[NftRule]]:
        out: dict[str, list[NftRule]] = {}
        for r in self.table_rules(family, table):
            out.setdefault(r.chain, []).append(r)
        return out

    def all_rules(self) -> tuple[NftRule, ...]:
        return tuple(r for b in self.blocks for r in self._decoded(b))


def _lazy_region_ok(region: str, key: tuple[str, str]) -> bool:
    """The text after a table's first rule item holds only rule items of that table, as nft
    prints them (else it is decoded now): each rule item names the table once, in nft's key
    order; no other item names a table ("table" is a key of tables, chains, sets, ...); no
    metainfo. Whether it is valid JSON is known when it is decoded: if not, its reader gets
    NftRulesUnreadable (never "no rules")."""
    n = region.count(_NFT_RULE)
    fam, tab = json.dumps(key[0], ensure_ascii=False), json.dumps(key[1], ensure_ascii=False)
    return (region.count(f'{_NFT_RULE}"family": {fam}, "table": {tab}, "chain": ') == n
            and region.count('"table"') == n and '"metainfo"' not in region
            and '"nftables"' not in region)


def _parse_nft_json_lazy(text: str) -> NftRuleset | None:
    """parse_nft_json for nft's own layout, or None (then the full decode runs). Everything but
    the rule items after each table's first rule is decoded here, in one pass per table block;
    any decode error returns None (the full decode then reports it as before)."""
    if not text.startswith(_NFT_DOC_HEAD) or not text.endswith("]}"):
        return None
    starts: list[int] = []
    i = text.find(_NFT_TABLE, len(_NFT_DOC_HEAD))
    while i >= 0:
        starts.append(i)
        i = text.find(_NFT_TABLE, i + len(_NFT_TABLE))
    if not starts:
        return None
    end = len(text) - 2
    pieces = [(len(_NFT_DOC_HEAD), starts[0])] + [
        (a, b) for a, b in zip(starts, starts[1:] + [end], strict=True)]
    tables: list[tuple[str, str]] = []
    chains: list[NftChain] = []
    sets: list[tuple[str, str, str, tuple[str, ...] | None]] = []
    version: str | None = None
    blocks: list[tuple[tuple[str, str] | None, tuple[NftRule, ...], str | None]] = []
    for k, (a, b) in enumerate(pieces):
        if a == b and k == 0:
            continue  # no item before the first table
        block = text[a:b]
        if b != end:  # items are separated by ", " (nft's separator)
            if not block.endswith(", "):
                return None
            block = block[:-2]
        if k == 0:
            head, lazy = block, None
        else:
            r = block.find(_NFT_RULE)
            if r > 0 and block[r - 2:r] == ", ":
                head, lazy = block[:r - 2], block[r:]
            else:
                head, lazy = block, None
        try:
            items = json_loads("[" + head + "]")
        except ValueError:
            return None
        n_tab = len(tables)
        rules: list[NftRule] = []
        version = _nft_items(items, tables, chains, rules, version, sets)
        key = tables[n_tab] if k > 0 and len(tables) == n_tab + 1 else None
        if lazy is not None and (key is None or not _lazy_region_ok(lazy, key)):
            try:
                more = json_loads("[" + lazy + "]")
            except ValueError:
                return None
            n_tab = len(tables)
            version = _nft_items(more, tables, chains, rules, version, sets)
            lazy = None
            if len(tables) != n_tab:
                return None  # a table inside another's items: not nft's layout
        blocks.append((key, tuple(rules), lazy))
    rs = object.__new__(NftRuleset)
    d = rs.__dict__
    d["tables"], d["chains"], d["version"], d["errors"] = tuple(tables), tuple(chains), version, ()
    d["sets"] = tuple(sets)
    if any(bl[2] is not None for bl in blocks):
        d["_pending"] = _PendingRules(blocks)
    else:
        d["rules"] = tuple(r for bl in blocks for r in bl[1])
    return rs


def _s(v: Any) -> str | None:
    return v if isinstance(v, str) else (str(v) if isinstance(v, (int, float)) else None)


def _i(v: Any) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _render_val(v: Any) -> str:
    if isinstance(v, dict):
        if len(v) == 1:
            k, inner = next(iter(v.items()))
            if k == "payload" and isinstance(inner, dict):
                return f"{inner.get('protocol', '')} {inner.get('field', '')}".strip()
            if k == "meta" and isinstance(inner, dict):
                return f"meta {inner.get('key', '')}"
            if k == "ct" and isinstance(inner, dict):
                return f"ct {inner.get('key', '')}"
            if k == "set" and isinstance(inner, list):
                return "{ " + ", ".join(_render_val(x) for x in inner) + " }"
            if k == "prefix" and isinstance(inner, dict):
                return f"{inner.get('addr')}/{inner.get('len')}"
            return f"{k} {_render_val(inner)}"
        return json.dumps(v, sort_keys=True)
    if isinstance(v, list):
        return "{ " + ", ".join(_render_val(x) for x in v) + " }"
    return str(v)


# nft's own text for the rule statements it lists (nftables 0.9-1.1), for a rule re-added from its
# JSON form (`nft add rule FAMILY TABLE CHAIN <text>`, a rollback) and compared with `nft list`'s
# line (a precondition). Only what is rendered exactly; anything else: None (never a guess).
_NFT_UNQUALIFIED_META = {"iif", "oif", "iifname", "oifname", "iifgroup", "oifgroup"}
_NFT_NAME_KEYS = {"iifname", "oifname"}
_NFT_HEX_KEYS = {"mark"}  # meta mark / ct mark: nft lists them as 0x%08x
_NFT_FLAG_KEYS = {("ct", "state"), ("ct", "status")}  # listed as a,b (no braces)
_NFT_VERDICTS = {"accept", "drop", "return", "continue"}
_NFT_PLAIN_STMTS = {"notrack", "masquerade"}
_NFT_WORD = re.compile(r"[A-Za-z0-9_.:/-]+")
_NFT_IFNAME = re.compile(r"[A-Za-z0-9_.:@-]{1,15}\*?")


def _nft_key(left: Any) -> tuple[str, str, str] | None:
    """(text, kind, key) of a match's left side nft lists exactly, else None."""
    if not isinstance(left, dict) or len(left) != 1:
        return None
    k, v = next(iter(left.items()))
    if not isinstance(v, dict):
        return None
    if k == "payload" and set(v) == {"protocol", "field"} and \
            all(isinstance(x, str) and _NFT_WORD.fullmatch(x) for x in v.values()):
        return f"{v['protocol']} {v['field']}", "payload", str(v["field"])
    if k in ("meta", "ct") and set(v) == {"key"} and isinstance(v["key"], str) and \
            _NFT_WORD.fullmatch(v["key"]):
        key = v["key"]
        text = key if k == "meta" and key in _NFT_UNQUALIFIED_META else f"{k} {key}"
        return text, k, key
    return None


def _nft_value(v: Any, kind: str, key: str) -> str | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        if key in _NFT_HEX_KEYS and kind in ("meta", "ct") and v >= 0:
            return f"0x{v:08x}"
        return str(v) if kind == "payload" and v >= 0 else None
    if isinstance(v, str):
        if key in _NFT_NAME_KEYS:
            return f'"{v}"' if _NFT_IFNAME.fullmatch(v) else None
        if v.startswith("@"):
            return v if _NFT_WORD.fullmatch(v[1:]) else None
        return v if _NFT_WORD.fullmatch(v) else None
    if isinstance(v, dict) and set(v) == {"prefix"} and isinstance(v["prefix"], dict):
        addr, ln = v["prefix"].get("addr"), v["prefix"].get("len")
        if isinstance(addr, str) and _NFT_WORD.fullmatch(addr) and _i(ln) is not None:
            return f"{addr}/{ln}"
        return None
    if isinstance(v, dict) and set(v) == {"range"} and isinstance(v["range"], list) and \
            len(v["range"]) == 2:
        a, b = (_nft_value(x, kind, key) for x in v["range"])
        return f"{a}-{b}" if a is not None and b is not None else None
    return None


def _nft_match_text(m: Any) -> str | None:
    if not isinstance(m, dict) or set(m) - {"op", "left", "right"}:
        return None
    op, left, right = m.get("op", "=="), m.get("left"), m.get("right")
    mask = None
    if isinstance(left, dict) and set(left) == {"&"} and isinstance(left["&"], list) and \
            len(left["&"]) == 2:
        left, mask = left["&"]
    lk = _nft_key(left)
    if lk is None:
        return None
    text, kind, key = lk
    if mask is not None:
        mv = _nft_value(mask, kind, key)
        if mv is None or key not in _NFT_HEX_KEYS:
            return None
        text += f" & {mv}"
    if isinstance(right, list) or isinstance(right, dict) and set(right) == {"set"}:
        items = right if isinstance(right, list) else right["set"]
        if not isinstance(items, list) or not items:
            return None
        vals = [_nft_value(x, kind, key) for x in items]
        if any(x is None for x in vals):
            return None
        if (kind, key) in _NFT_FLAG_KEYS and op == "in" and isinstance(right, list):
            rv = ",".join(str(x) for x in vals)  # flags (a bitmask), not an anonymous set
        elif op in ("in", "==", "!="):
            rv = "{ " + ", ".join(str(x) for x in vals) + " }"
        else:
            return None
    else:
        one = _nft_value(right, kind, key)
        if one is None:
            return None
        rv = one
    if op in ("==", "in"):
        return f"{text} {'== ' if mask is not None else ''}{rv}"
    if op in ("!=", "<", ">", "<=", ">="):
        return f"{text} {op} {rv}"
    return None


def nft_rule_statement(rule: NftRule) -> str | None:
    """The rule as `nft list` prints it (counters as a bare `counter`, no handle) when every
    expression is one rendered exactly (addresses, ports, interface names, marks, ct state,
    set references, counter, verdicts, jump/goto, notrack, masquerade, comment), else None."""
    parts: list[str] = []
    for e in rule.expr:
        if not isinstance(e, dict) or len(e) != 1:
            return None
        k, v = next(iter(e.items()))
        if k == "match":
            t = _nft_match_text(v)
            if t is None:
                return None
            parts.append(t)
        elif k == "counter" and (v is None or isinstance(v, dict)
                                 and set(v) <= {"packets", "bytes"}):
            parts.append("counter")
        elif k in _NFT_VERDICTS or k in _NFT_PLAIN_STMTS:
            if v is not None:
                return None
            parts.append(k)
        elif k in ("jump", "goto") and isinstance(v, dict) and set(v) == {"target"} and \
                isinstance(v["target"], str) and _NFT_WORD.fullmatch(v["target"]):
            parts.append(f"{k} {v['target']}")
        else:
            return None
    if not parts:
        return None
    if rule.comment is not None:
        if '"' in rule.comment or "\\" in rule.comment or "\n" in rule.comment:
            return None
        parts.append(f'comment "{rule.comment}"')
    return " ".join(parts)


def render_nft_rule(rule: NftRule) -> str:
    """A readable one-liner of a rule: `nft list`'s text where nft_rule_statement knows it, else
    a readable form of its JSON expressions (not nft syntax)."""
    exact = nft_rule_statement(rule)
    if exact is not None:
        return f"{rule.family} {rule.table} {rule.chain}: {exact} # handle {rule.handle}"
    parts: list[str] = []
    for e in rule.expr:
        if not isinstance(e, dict) or not e:
            continue
        k, v = next(iter(e.items()))
        if k == "match" and isinstance(v, dict):
            op = v.get("op", "==")
            parts.append(f"{_render_val(v.get('left'))} {'' if op in ('==', 'in') else op + ' '}"
                         f"{_render_val(v.get('right'))}")
        elif k in ("jump", "goto") and isinstance(v, dict):
            parts.append(f"{k} {v.get('target')}")
        elif k in ("accept", "drop", "return", "continue"):
            parts.append(k)
        elif k == "xt" and isinstance(v, dict):
            parts.append(f"xt {v.get('type', '')} {v.get('name', '')}".strip())
        elif k == "counter":
            parts.append("counter")
        elif isinstance(v, dict):
            parts.append(k + " " + " ".join(f"{kk} {_render_val(vv)}" for kk, vv in v.items()))
        else:
            parts.append(f"{k} {_render_val(v)}" if v is not None else k)
    text = " ".join(parts)
    if rule.comment:
        text += f' comment "{rule.comment}"'
    return f"{rule.family} {rule.table} {rule.chain}: {text} # handle {rule.handle}"


# -- ip -j / bridge -j ------------------------------------------------------------------------------


# iproute2 4.17-4.20 (Debian 10: 4.20) print a route's type, when it is not unicast (blackhole,
# unreachable, prohibit, local, broadcast...) or with -d, as a bare string opening the route's
# object: `{"blackhole","dst":"10.244.1.0/24",...}`, which is not JSON (fixed in 5.0 by
# iproute2@0736617, which prints it as "type"). Read as what 5.0+ prints: `{"type":"blackhole",`
_IPROUTE_BARE_TYPE = re.compile(r'\{(\s*)"([a-z0-9_]+)"(\s*),')


def parse_json_list(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """`ip -j ...` / `bridge -j ...` output -> list of dicts (and an error, if any)."""
    text = (text or "").strip()
    if not text:
        return [], None
    try:
        doc = json_loads(text)
    except ValueError as exc:
        fixed = _IPROUTE_BARE_TYPE.sub(r'{\1"type":"\2"\3,', text)
        if fixed != text:
            try:
                json_loads(fixed)
            except ValueError:
                pass
            else:
                return parse_json_list(fixed)
        # some iproute2 versions print one JSON array per line for multi-part output
        items: list[dict[str, Any]] = []
        for line in text.splitlines():
            try:
                part = json_loads(line)
            except ValueError:
                return [], f"not JSON: {exc}"
            if isinstance(part, list):
                items.extend(x for x in part if isinstance(x, dict))
        return items, None
    if isinstance(doc, list):
        return [x for x in doc if isinstance(x, dict)], None
    if isinstance(doc, dict):
        return [doc], None
    return [], "not a JSON list"


def link_by_name(links: Any, name: str) -> dict[str, Any] | None:
    for link in links or ():
        if isinstance(link, dict) and link.get("ifname") == name:
            return link
    return None


def ipv4_addrs(addrs: Any, ifname: str) -> list[str]:
    """'a.b.c.d/len' of one interface from `ip -j addr`."""
    out = []
    for link in addrs or ():
        if not isinstance(link, dict) or link.get("ifname") != ifname:
            continue
        for a in link.get("addr_info") or ():
            if isinstance(a, dict) and a.get("family") == "inet" and a.get("local"):
                out.append(f"{a.get('local')}/{a.get('prefixlen', 32)}")
    return out


def render_route(r: dict[str, Any]) -> str:
    parts = [str(r.get("dst", "?"))]
    if r.get("type") not in (None, "", "unicast"):  # blackhole, unreachable, prohibit, ...
        parts.insert(0, str(r["type"]))
    if r.get("nhid") is not None:  # a nexthop object (`ip nexthop`): its id, as `ip route` prints
        parts += ["nhid", str(r["nhid"])]
    if r.get("gateway"):
        parts += ["via", str(r["gateway"])]
    if r.get("dev"):
        parts += ["dev", str(r["dev"])]
    for flag in r.get("flags") or ():
        parts.append(str(flag))
    if r.get("prefsrc"):
        parts += ["src", str(r["prefsrc"])]
    for nh in r.get("nexthops") or ():  # multipath: no top-level gateway/dev, one entry per path
        if isinstance(nh, dict):
            parts.append("nexthop " + render_nexthop(nh))
    return " ".join(parts)


def render_nexthop(nh: dict[str, Any]) -> str:
    """One path of a multipath route (an entry of `ip -j route`'s "nexthops"), as `ip route` shows it."""
    parts = []
    if nh.get("gateway"):
        parts += ["via", str(nh["gateway"])]
    if nh.get("dev"):
        parts += ["dev", str(nh["dev"])]
    if nh.get("weight") is not None:
        parts += ["weight", str(nh["weight"])]
    parts += [str(flag) for flag in nh.get("flags") or ()]
    return " ".join(parts)


# -- files --------------------------------------------------------------------------------------


def parse_env_file(text: str) -> dict[str, str]:
    """/run/flannel/subnet.env: KEY=VALUE lines (quotes stripped)."""
    out: dict[str, str] = {}
    for line in (text or "").splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        k, v = line.split("=", 1)
        k = k.strip()
        if k.startswith("export "):
            k = k[7:].strip()
        v = v.strip()
        if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
            v = v[1:-1]
        if k:
            out[k] = v
    return out


def parse_cni_conf(text: str) -> tuple[dict[str, Any] | None, str | None]:
    try:
        doc = json_loads(text or "")
    except ValueError as exc:
        return None, f"not JSON: {exc}"
    if not isinstance(doc, dict):
        return None, "not a JSON object"
    return doc, None


def cni_plugin_types(conf: dict[str, Any] | None) -> list[str]:
    if not isinstance(conf, dict):
        return []
    plugins = conf.get("plugins")
    if isinstance(plugins, list):
        return [str(p.get("type")) for p in plugins if isinstance(p, dict) and p.get("type")]
    return [str(conf["type"])] if conf.get("type") else []


def parse_kubeconfig_server(text: str) -> str | None:
    """The first `server:` value from the lines the node sent (only those are ever sent)."""
    for line in (text or "").splitlines():
        m = re.match(r"^\s*-?\s*server:\s*(.*?)\s*$", line)
        if m:
            v = m.group(1)
            if len(v) >= 2 and v[0] == v[-1] and v[0] in "'\"":
                v = v[1:-1]
            return v or None
    return None


def parse_sysctl_lines(text: str) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for line in (text or "").splitlines():
        if "!missing" in line and "=" not in line:
            out[line.split("!", 1)[0].strip()] = None
        elif "=" in line:
            k, v = line.split("=", 1)
            out[k.strip()] = v.strip()
    return out


@dataclass(frozen=True)
class Modules:
    loaded: frozenset[str] = frozenset()
    source: str | None = None  # "proc_modules" | "sys_module" | None (unknown)
    lib_modules: bool = False  # /lib/modules/$(uname -r) exists (modprobe can work)

    def has(self, name: str) -> bool | None:
        if self.source is None:
            return None
        return name in self.loaded

    def matching(self, prefix: str) -> list[str]:
        return sorted(m for m in self.loaded if m.startswith(prefix))


def parse_modules(proc_modules: str | None, sys_module: str | None, lib_modules: bool) -> Modules:
    """/proc/modules lists loadable modules; /sys/module also shows built-ins with parameters.
    A kernel without /proc/modules (everything built in) falls back to /sys/module."""
    names: set[str] = set()
    source = None
    if proc_modules is not None:
        source = "proc_modules"
        for line in proc_modules.splitlines():
            if line.strip():
                names.add(line.split()[0])
    if sys_module is not None:
        source = source or "sys_module"
        names.update(w for w in sys_module.split() if w)
    return Modules(frozenset(names), source, lib_modules)


def first_error_line(text: str | None) -> str | None:
    for line in (text or "").splitlines():
        if line.strip():
            return line.strip()[:300]
    return None


# -- conntrack (core/checks/conntrack.py) ----------------------------------------------------------
# The files the facts script's `conntrack` section reads with ONE `grep -H . FILES` (each line
# comes back as "FILE:LINE"; a missing file is grep's "FILE: No such file or directory" on
# stderr). The sysctls exist exactly when nf_conntrack is loaded (or built in); count is the
# reader's network namespace's, max and buckets are global (read-only in a non-initial netns).
CONNTRACK_COUNT = "/proc/sys/net/netfilter/nf_conntrack_count"
CONNTRACK_MAX = "/proc/sys/net/netfilter/nf_conntrack_max"
CONNTRACK_BUCKETS = "/proc/sys/net/netfilter/nf_conntrack_buckets"
# per-CPU statistics: a header line naming the columns (they differ between kernels), then one
# row per possible CPU of 8-digit hex values; "entries" is the same total on every row. Present
# with CONFIG_NF_CONNTRACK_PROCFS; otherwise `conntrack -S` (ctnetlink) gives the same counters
CONNTRACK_STAT = "/proc/net/stat/nf_conntrack"
CPU_ONLINE = "/sys/devices/system/cpu/online"
CONNTRACK_FILES = (CONNTRACK_COUNT, CONNTRACK_MAX, CONNTRACK_BUCKETS, CONNTRACK_STAT, CPU_ONLINE)
# the counters a full table moves (drop, early_drop) and the insert race one (insert_failed)
CONNTRACK_COUNTERS = ("drop", "early_drop", "insert_failed")


@dataclass(frozen=True)
class Conntrack:
    """What the node said about its conntrack table. `state`: "read" (count and max known),
    "not-loaded" (no nf_conntrack sysctls: the module is not loaded, nothing is tracked) or
    "not-read" (`why` says what was missing). `counters` are summed over CPUs, since boot (or
    since the module was loaded); empty when neither the stat file nor `conntrack -S` was read."""

    state: str
    count: int | None = None
    max: int | None = None
    buckets: int | None = None
    cpus: int | None = None  # online CPUs (/sys/devices/system/cpu/online), as kube-proxy counts them
    counters: dict[str, int] = field(default_factory=dict)
    counters_source: str | None = None  # CONNTRACK_STAT | "conntrack -S" | None
    why: str = ""


# the kernel's conntrack values are 32/64-bit: at most 20 decimal or 16 hex digits. More is not
# such a value, and int() of over 4,300 decimal digits raises (Python 3.11's int_max_str_digits),
# as does str()/json.dumps() of such an int (the journal): never parsed
_MAX_DEC_DIGITS, _MAX_HEX_DIGITS = 20, 16


def _digits(s: str) -> bool:
    """ASCII decimal digits only (at most 20: a 64-bit value): str.isdigit() also takes '²'
    (int() refuses it) and '١٢'."""
    return bool(s) and len(s) <= _MAX_DEC_DIGITS and s.isascii() and s.isdigit()


def parse_cpu_list(text: str) -> int | None:
    """How many CPUs a kernel cpu list names ("0-3,5,7-8" -> 7); None for anything else."""
    n = 0
    for part in text.strip().split(","):
        lo, sep, hi = part.partition("-")
        if not _digits(lo) or (sep and not _digits(hi)):
            return None
        a, b = int(lo), int(hi) if sep else int(lo)
        if b < a:
            return None
        n += b - a + 1
    return n or None


def parse_conntrack_stat(text: str) -> dict[str, int] | None:
    """/proc/net/stat/nf_conntrack -> {column: sum over the CPU rows} (hex values; "entries" is
    the first row's, it is a total). None when it is not that file's shape (no header, a row
    whose width differs from the header's, a value that is not hex)."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0][:1] != ["entries"] or len(lines) < 2:
        return None
    head = lines[0]
    out = dict.fromkeys(head, 0)
    for i, row in enumerate(lines[1:]):
        if len(row) != len(head):
            return None
        if not all(v.isascii() and v.isalnum() and len(v) <= _MAX_HEX_DIGITS for v in row):
            return None  # int(v, 16) also takes '١٢' and '1_0'; more than 64 bits is no counter
        try:
            vals = [int(v, 16) for v in row]
        except ValueError:
            return None
        for k, v in zip(head, vals, strict=True):
            if k == "entries":
                if i == 0:
                    out[k] = v
            else:
                out[k] += v
    return out


def parse_conntrack_s(text: str) -> dict[str, int] | None:
    """`conntrack -S` (conntrack-tools 1.4: one "cpu=N key=value ..." line per CPU, decimal)
    -> {key: sum over CPUs}. None when no line has that shape."""
    out: dict[str, int] = {}
    rows = 0
    for line in text.splitlines():
        words = line.split()
        if not words or not words[0].startswith("cpu="):
            continue
        pairs = [w.partition("=") for w in words[1:]]
        if any(not s or not _digits(v) for _k, s, v in pairs):
            return None
        rows += 1
        for k, _s, v in pairs:
            out[k] = out.get(k, 0) + int(v)
    return out if rows else None


def parse_conntrack(grep_out: str | None, grep_err: str = "", stats_out: str | None = None) -> Conntrack:
    """The `conntrack` section (`grep -H . CONNTRACK_FILES`: None when it was not read) and the
    `conntrack_stats` one (`conntrack -S`, run only where the stat file is missing; None when it
    did not run). Never raises."""
    if grep_out is None:
        return Conntrack("not-read", why="the conntrack facts were not read")
    lines: dict[str, list[str]] = {}
    for line in grep_out.splitlines():
        for path in CONNTRACK_FILES:
            if line.startswith(path + ":"):
                lines.setdefault(path, []).append(line[len(path) + 1:])
                break

    def missing(path: str) -> bool:
        return f"{path}: No such file or directory" in grep_err

    def one_int(path: str) -> int | None:
        got = lines.get(path, [])
        return int(got[0].strip()) if len(got) == 1 and _digits(got[0].strip()) else None

    count, cmax, buckets = one_int(CONNTRACK_COUNT), one_int(CONNTRACK_MAX), one_int(CONNTRACK_BUCKETS)
    cpu_lines = lines.get(CPU_ONLINE, [])
    cpus = parse_cpu_list(cpu_lines[0]) if len(cpu_lines) == 1 else None
    counters: dict[str, int] = {}
    source = None
    if CONNTRACK_STAT in lines:
        stat = parse_conntrack_stat("\n".join(lines[CONNTRACK_STAT]))
        if stat is not None:
            counters, source = stat, CONNTRACK_STAT
    elif stats_out is not None:
        stat = parse_conntrack_s(stats_out)
        if stat is not None:
            counters, source = stat, "conntrack -S"
    if count is None and cmax is None and missing(CONNTRACK_MAX) and missing(CONNTRACK_COUNT):
        return Conntrack("not-loaded", cpus=cpus, why="no nf_conntrack sysctls (nf_conntrack is not loaded)")
    if count is None or cmax is None:
        unread = [p.rsplit("/", 1)[-1] for p, v in ((CONNTRACK_COUNT, count), (CONNTRACK_MAX, cmax)) if v is None]
        return Conntrack("not-read", buckets=buckets, cpus=cpus, counters=counters, counters_source=source,
                         why=f"not read: {', '.join(unread)}")
    return Conntrack("read", count=count, max=cmax, buckets=buckets, cpus=cpus, counters=counters,
                     counters_source=source)
