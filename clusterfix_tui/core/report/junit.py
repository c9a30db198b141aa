"""The report as JUnit XML: validation results, one testsuite per phase (like popeye or
cilium's connectivity test), plus the session itself so an interrupted one never looks green."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from typing import Any

from clusterfix_tui.core.record import _s

_XML_BAD = re.compile("[^\u0009\u000a\u000d\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _x(value: Any) -> str:
    """Text XML 1.0 can carry: characters it forbids become visible escapes."""
    return _XML_BAD.sub(lambda m: "\\x%02x" % ord(m.group(0)), _s(value))


def render_junit(report: dict[str, Any]) -> str:
    r = report
    root = ET.Element("testsuites", name="clusterfix-tui")
    total = failures = 0
    ctx = r["cluster"]["context"] or "cluster"
    for phase in ("before", "after"):
        results = r["validation"][phase]
        if results is None:
            continue
        suite = ET.SubElement(root, "testsuite", name=_x(f"validation-{phase}"))
        n_fail = 0
        for c in results:
            tc = ET.SubElement(suite, "testcase", classname=_x(f"clusterfix.validation.{phase}"),
                               name=_x(f"{c['name']} [{c['target']}]"), time="0")
            if not c["passed"]:
                n_fail += 1
                detail = c["detail"] or "failed"
                msg = detail.splitlines()[0] if detail.strip() else "failed"
                body = detail + (f"\nlikely fix: clusterfix-tui fix --step {c['fix_step']}"
                                 if c["fix_step"] else "")
                fe = ET.SubElement(tc, "failure", message=_x(msg[:500]), type=_x(c["name"]))
                fe.text = _x(body)
        suite.set("tests", str(len(results)))
        suite.set("failures", str(n_fail))
        suite.set("errors", "0")
        suite.set("skipped", "0")
        suite.set("hostname", _x(ctx))
        total += len(results)
        failures += n_fail
    # the session itself: an interrupted or never-validated session must not look green in CI
    suite = ET.SubElement(root, "testsuite", name="session")
    tc = ET.SubElement(suite, "testcase", classname="clusterfix.session", name="session completed",
                       time="0")
    s_fail = 0
    if r["verdict"]["value"] in ("interrupted", "aborted", "unknown"):
        s_fail = 1
        ET.SubElement(tc, "failure", message=_x(r["verdict"]["headline"]), type="session")
    suite.set("tests", "1")
    suite.set("failures", str(s_fail))
    suite.set("errors", "0")
    suite.set("skipped", "0")
    root.set("tests", str(total + 1))
    root.set("failures", str(failures + s_fail))
    root.set("errors", "0")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
