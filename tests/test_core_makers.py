"""#17 (seventh pass): `parsers.frozen_maker` stores each field in the new instance's __dict__
(no object.__setattr__ call per field: about half the instructions of a Section, Rule, NftRule or
NftChain, ~60 of them per node), except a field the class holds a data descriptor for, which goes
through the descriptor as object.__setattr__ did. The objects are the dataclass's own (==, hash,
repr, fields, vars): tests/test_core_scale_exact.py compares them; this file covers the
descriptor and slots cases."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from clusterfix_tui.core import parsers as P
from clusterfix_tui.core.facts import Section, _new_section


class _Seen:
    """A data descriptor that records what was set through it."""

    def __init__(self) -> None:
        self.sets: list[Any] = []

    def __get__(self, obj: Any, owner: Any = None) -> Any:
        return () if obj is None else obj.__dict__["b"]

    def __set__(self, obj: Any, value: Any) -> None:
        self.sets.append(value)
        obj.__dict__["b"] = value


def test_a_field_with_a_data_descriptor_is_set_through_it() -> None:
    @dataclasses.dataclass(frozen=True)
    class C:
        a: str
        b: tuple[str, ...] = ()

    seen = _Seen()
    C.b = seen  # type: ignore[assignment]
    made = P.frozen_maker(C)("x", ("y",))
    assert seen.sets == [("y",)]
    assert made == C("x", ("y",)) and made.b == ("y",) and vars(made) == {"a": "x", "b": ("y",)}


def test_plain_fields_land_in_the_instance_dict_as_setattr_put_them() -> None:
    made = _new_section("route_get", "10.244.1.2", "[]", "", 0)
    ref = Section("route_get", "10.244.1.2", "[]", "", 0)
    assert vars(made) == vars(ref) and list(vars(made)) == list(vars(ref))
    with pytest.raises(dataclasses.FrozenInstanceError):
        made.rc = 1  # type: ignore[misc]


def test_a_slots_dataclass_is_refused() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class S:
        a: str

    with pytest.raises(AssertionError):
        P.frozen_maker(S)


def test_other_ws_is_the_regex_on_ascii_lines() -> None:
    import random

    for c in range(128):
        line = f"-A X -m comment --comment \"a{chr(c)}b\" -j ACCEPT"
        assert P._other_ws(line) == bool(P._OTHER_WS_RE.search(line)), c
    rnd = random.Random(7)
    for _ in range(5000):
        line = "".join(chr(rnd.randrange(128)) for _ in range(rnd.randint(0, 40)))
        assert P._other_ws(line) == bool(P._OTHER_WS_RE.search(line))


def test_tables_and_saves_are_the_dataclasses_own() -> None:
    from diag_fakes import LAB_NONCE, load, scenarios

    from clusterfix_tui.core.facts import split_sections

    n = 0
    for sc in scenarios():
        for out in load(sc)["facts"].values():
            for k, s in split_sections(out, LAB_NONCE)[0].items():
                if "save" not in k:
                    continue
                got = P.parse_iptables_save(s.stdout)
                ref = P.IptablesSave({t: P.Table(v.name, v.chains, v.rules) for t, v in got.tables.items()},
                                     got.comments, got.incompatible_tables, got.errors)
                assert type(got) is P.IptablesSave and got == ref and repr(got) == repr(ref)
                assert vars(got) == vars(ref)
                for t in got.tables.values():
                    assert type(t) is P.Table and vars(t) == vars(ref.tables[t.name])
                    n += 1
    assert n > 50


def test_containers_stay_inline_so_no_tracked_dict_is_made() -> None:
    """Table, IptablesSave, Rule and NftRule hold containers: made `inline` (no __dict__ object,
    which would be one more object for the cyclic collector per instance, ~10 per node);
    Section and NftChain hold strings and numbers only: their __dict__ is not tracked."""
    import gc

    t = P._new_table("filter", {"INPUT": "ACCEPT"}, ())
    s = P._new_save({"filter": t}, (), (), ())
    r = P._new_nft_rule("ip", "filter", "INPUT", 1, ({"accept": None},), None)
    for obj, field in ((t, "chains"), (s, "tables"), (r, "expr")):
        assert not any(isinstance(x, dict) and field in x for x in gc.get_referents(obj)), obj
    sec = _new_section("a", None, "x", "", 0)
    dicts = [x for x in gc.get_referents(sec) if isinstance(x, dict)]
    assert dicts and not gc.is_tracked(dicts[0])
