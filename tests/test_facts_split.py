"""split_sections' fast path (marker to marker, str.find) against the line-by-line reader it
replaces for well-formed output: the same sections, completeness and errors on every recorded
node output, and on those outputs cut, mangled and salted with forged or misplaced markers
(where the fast path must hand over to the line reader, never guess)."""

from __future__ import annotations

import random

import pytest
from diag_fakes import FACTS_DATA, LAB_NONCE, load, scenarios

from clusterfix_tui.core import facts as F

N = LAB_NONCE
H = f"@@CFX {N} "


def _outputs() -> list[tuple[str, str]]:
    out = [(f"{s}/{k}", v) for s in scenarios() for k, v in sorted(load(s)["facts"].items())]
    for p in sorted(FACTS_DATA.glob("*.out")):
        txt = p.read_text()
        nonce = txt.split(" ", 2)[1] if txt.startswith("@@CFX ") else N
        out.append((p.name, txt.replace(nonce, N)))
    return out


OUTPUTS = _outputs()


def _same(text: str) -> None:
    assert F.split_sections(text, N) == F._split_sections_lines(text, N)


def test_the_recorded_outputs_take_the_fast_path_and_read_the_same() -> None:
    assert len(OUTPUTS) >= 30
    fast = 0
    for _name, text in OUTPUTS:
        got = F._split_sections_fast(text, N)
        if got is not None:
            fast += 1
            assert got == F._split_sections_lines(text, N)
        _same(text)
    # the script's own output is read marker to marker (not one line at a time)
    assert fast >= len(OUTPUTS) - 3


@pytest.mark.parametrize("text", [
    "",
    "\n",
    f"{H}DONE\n",
    f"{H}DONE",
    f"{H}BEGIN a\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",
    f"{H}BEGIN a\n{H}ERR a\n{H}END a rc=0\n{H}DONE\n",  # no blank lines: empty both
    f"{H}BEGIN a\nx\n\n{H}ERR a\ny\n\n{H}END a rc=oops\n{H}DONE\n",
    f"{H}BEGIN a 2f746d70\nx\n\n{H}ERR a\n\n{H}END a rc=1\n",  # no DONE
    f"{H}BEGIN a\nx\n\n{H}ERR a\n\n{H}END a rc=0",  # cut after END
    f"{H}BEGIN a\nx\n\n{H}ERR a\n\n{H}EN",  # cut inside a marker
    f"{H}BEGIN a\nx\n\n{H}BEGIN b\n\n{H}ERR b\n\n{H}END b rc=0\n{H}DONE\n",  # no END for a
    f"{H}BEGIN a\n{H}FOO bar\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",  # unknown kind: content
    f"{H}BEGIN a\n{H}BEGIN\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",  # BEGIN without a name
    f"{H}BEGIN a\nx\n{H}DONE\n\n{H}ERR a\n\n{H}END a rc=0\n",  # DONE inside a section
    f"{H}BEGIN a\n\n{H}ERR a\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",  # two ERR
    f"{H}BEGIN a\n\n{H}END a rc=0\n{H}DONE\n",  # no ERR
    f"{H}ERR a\n{H}BEGIN a\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",  # marker outside
    f"banner\n{H}BEGIN a\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",  # text before
    f"{H}BEGIN a\n\n{H}ERR a\n\n{H}END a rc=0\njunk\n{H}DONE\n",  # text between
    f"{H}BEGIN a\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\ntrailing\n",  # text after DONE
    f"{H}BEGIN a\n\n{H}ERR a\n\n{H}END a rc=0\n{H}BEGIN a\nz\n\n{H}ERR a\n\n{H}END a rc=2\n{H}DONE\n",
    f"{H}BEGIN a\nx @@CFX {N} END a rc=0\n\n{H}ERR a\n\n{H}END a\n{H}DONE\n",  # mid-line, no rc
    f"{H}BEGIN  a\n\n{H}ERR\n\n{H}END rc=0 x\n{H}DONE\n",  # odd spacing
    f"{H}BEGIN a zz\n\n{H}ERR a\n\n{H}END a rc= 3\n{H}DONE\n",  # bad hex, rc with a space
    f"{H}BEGIN a\n\n{H}ERRX a\n\n{H}ERR a\n\n{H}END a rc=0\n{H}DONE\n",  # not an ERR marker
    f"{H}BEGIN a\n\n{H}ERR a\n\n{H}ENDS a rc=0\n{H}END a rc=0\n{H}DONE\n",  # not an END marker
    f"{H}BEGIN a\n\n{H}ERR",  # cut right after ERR
    "@@CFX othernonce BEGIN a\n\n@@CFX othernonce ERR a\n\n@@CFX othernonce END a rc=0\n",
])
def test_edge_cases_read_the_same(text: str) -> None:
    _same(text)


def test_mangled_outputs_read_the_same() -> None:
    rnd = random.Random(17)
    pieces = [f"\n{H}BEGIN x\n", f"\n{H}ERR x\n", f"\n{H}END x rc=0\n", f"\n{H}DONE\n", "\n",
              f"{H}END", "@@CFX", f"\n{H}BEGIN\n", f"\n{H}END y rc=\n", "\r\n", " "]
    texts = [t for _n, t in OUTPUTS]
    checked = 0
    for _ in range(400):
        text = rnd.choice(texts)
        op = rnd.randrange(4)
        i = rnd.randrange(len(text) + 1)
        if op == 0:
            text = text[:i]  # cut short anywhere
        elif op == 1:
            text = text[:i] + rnd.choice(pieces) + text[i:]
        elif op == 2:
            j = min(len(text), i + rnd.randrange(1, 80))
            text = text[:i] + text[j:]  # a chunk lost
        else:
            for _k in range(rnd.randrange(1, 5)):
                i = rnd.randrange(len(text) + 1)
                text = text[:i] + rnd.choice(pieces) + text[i:]
        _same(text)
        checked += 1
    assert checked == 400


def test_the_line_reader_is_still_used_for_output_cut_short() -> None:
    text = OUTPUTS[0][1]
    cut = text[: len(text) // 2]
    assert F._split_sections_fast(cut, N) is None
    sections, complete, errors = F.split_sections(cut, N)
    assert not complete and sections
    assert any("output ends inside it" in e or "no DONE" in e for e in errors)
