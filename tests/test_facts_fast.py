"""split_sections (marker to marker) gives exactly what the line-by-line original gave.

`_reference` is the original, verbatim. Compared on every recorded node output in tests/data and
on random outputs made of markers, near-markers and content lines."""

from __future__ import annotations

import json
import random

from diag_fakes import FACTS_DATA, LAB_DATA, LAB_NONCE, SCRATCH_NONCE

from clusterfix_tui.core.facts import Section, _texts, _unhex, split_sections


def _reference(output: str, nonce: str):
    head = f"@@CFX {nonce} "
    sections: dict = {}
    errors: list = []
    complete = False
    cur_key = None
    cur_name = ""
    cur_arg = None
    buf: list = []
    out_text = None
    for line in output.split("\n"):
        if not line.startswith(head):
            if cur_key is not None:
                buf.append(line)
            continue
        words = line[len(head):].split(" ")
        kind = words[0] if words else ""
        if kind not in ("DONE", "BEGIN", "ERR", "END") or (kind == "BEGIN" and len(words) < 2):
            if cur_key is not None:
                buf.append(line)
            continue
        if kind == "DONE":
            complete = True
            continue
        if kind == "BEGIN" and len(words) >= 2:
            if cur_key is not None:
                errors.append(f"section {cur_key}: no END marker")
                sections[cur_key] = Section(cur_name, cur_arg, *_texts(out_text, buf), None)
            cur_name = words[1]
            cur_arg = _unhex(words[2]) if len(words) >= 3 else None
            cur_key = cur_name if cur_arg is None else f"{cur_name} {cur_arg}"
            buf, out_text = [], None
            continue
        if cur_key is None:
            errors.append(f"marker outside a section: {line[:120]!r}")
            continue
        if kind == "ERR":
            out_text = "\n".join(buf)
            buf = []
        elif kind == "END":
            rc = None
            last = words[-1] if words else ""
            if last.startswith("rc="):
                try:
                    rc = int(last[3:])
                except ValueError:
                    errors.append(f"section {cur_key}: bad rc {last!r}")
            if out_text is None:
                out_text, err_text = "\n".join(buf), ""
            else:
                err_text = "\n".join(buf)
            sections[cur_key] = Section(cur_name, cur_arg, out_text, err_text, rc)
            cur_key, buf, out_text = None, [], None
    if cur_key is not None:
        errors.append(f"section {cur_key}: output ends inside it")
        sections[cur_key] = Section(cur_name, cur_arg, *_texts(out_text, buf), None)
    if not complete:
        errors.append("output incomplete: no DONE marker")
    return sections, complete, errors


def _recorded():
    out = []
    for path in sorted(LAB_DATA.glob("*.json")):
        for node, text in sorted(json.loads(path.read_text())["facts"].items()):
            out.append((text, LAB_NONCE))
    for path in sorted(FACTS_DATA.glob("*.out")):
        text = path.read_text()
        out.append((text, LAB_NONCE if LAB_NONCE in text else SCRATCH_NONCE))
    return out


def test_same_sections_on_recorded_outputs():
    rec = _recorded()
    assert len(rec) >= 36
    for text, nonce in rec:
        got = split_sections(text, nonce)
        assert got == _reference(text, nonce)
        assert got[1] or "DONE" not in text  # the recordings are real, complete outputs
        # cut anywhere: still the same
        for cut in (1, len(text) // 3, len(text) // 2, len(text) - 1):
            assert split_sections(text[:cut], nonce) == _reference(text[:cut], nonce)


def test_same_sections_on_random_outputs():
    rng = random.Random(11)
    h = "@@CFX n0nce "
    pieces = [h + "BEGIN a", h + "BEGIN b 2f6574632f78", h + "BEGIN", h + "BEGIN ", h + "ERR a",
              h + "END a rc=0", h + "END a rc=x", h + "END", h + "END\r", h + "DONE", h + "DONEX",
              h + "ERRX", "@@CFX other BEGIN a", " " + h + "END a rc=1", "", "x", "y z", "\r",
              h, "@@CFX n0nce", h + "END a rc=٣"]
    for _ in range(20_000):
        lines = [rng.choice(pieces) for _ in range(rng.randint(0, 12))]
        text = "\n".join(lines) + rng.choice(["", "\n", "\n\n"])
        assert split_sections(text, "n0nce") == _reference(text, "n0nce"), repr(text)
