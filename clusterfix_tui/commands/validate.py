"""`clusterfix-tui validate [--json] [--junit FILE]`: validate_cluster_communication, headless.

Exit code: 0 every check passed, 1 some check failed, 2 could not validate.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from clusterfix_tui.commands._common import add_connection_flags, print_checks


def configure(parser: argparse.ArgumentParser) -> None:
    add_connection_flags(parser)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--junit", metavar="FILE", help="also write a JUnit XML file")
    parser.add_argument("--journal", metavar="PATH", help="append a validation event to this journal")
    parser.add_argument("--timeout", type=float, default=3.0, help="per-probe timeout (s)")
    parser.add_argument("--verbose", "-v", action="store_true",
                        help="one line per check (by default the passing checks of one kind are "
                             "one line, their targets counted; every failing check has its own)")


def junit_xml(results: list[Any]) -> str:
    import xml.etree.ElementTree as ET

    failures = sum(1 for r in results if not r.passed)
    suite = ET.Element("testsuite", name="clusterfix-validate", tests=str(len(results)),
                       failures=str(failures), errors="0")
    for r in results:
        case = ET.SubElement(suite, "testcase", classname=f"validate.{r.name}", name=r.target)
        if not r.passed:
            fail = ET.SubElement(case, "failure", message=r.detail[:500])
            fail.text = r.detail + (f"\nlikely fix: clusterfix-tui fix --step {r.fix_step}"
                                    if r.fix_step else "")
        else:
            out = ET.SubElement(case, "system-out")
            out.text = r.detail
    return ET.tostring(suite, encoding="unicode", xml_declaration=True)


def run(args: argparse.Namespace) -> int:
    from clusterfix_tui.core.journal import Journal
    from clusterfix_tui.core.validate import validate

    try:
        from clusterfix_tui.runtime import build_runtime, local_flags

        rt = build_runtime(kubeconfig=args.kubeconfig, context=args.context,
                           ssh_config=args.ssh_config, lab_dir=args.lab_dir, dry_run=False,
                           **local_flags(args))
    except Exception as exc:  # noqa: BLE001
        print(f"clusterfix-tui validate: cannot connect: {exc}", file=sys.stderr)
        return 2
    try:
        def progress(r: Any) -> None:
            print(f"  {'ok' if r.passed else 'FAILED'}: {r.name} {r.target}", file=sys.stderr)

        try:
            results = validate(rt.api, rt.shells, None, on_check=progress,
                               prober=rt.prober, timeout=args.timeout)
        except Exception as exc:  # noqa: BLE001
            print(f"clusterfix-tui validate: {exc}", file=sys.stderr)
            return 2
    finally:
        rt.close()
    if args.journal:
        with Journal(args.journal) as j:
            j.write("validation", phase="after", results=[r.to_dict() for r in results])
    from clusterfix_tui.core.redact import redact, redact_obj
    from clusterfix_tui.core.report import write_private

    if args.json:  # node output can carry a secret: the same redactor as the journal
        json.dump(redact_obj({"passed": all(r.passed for r in results),
                              "results": [r.to_dict() for r in results]}), sys.stdout, indent=2)
        print()
    else:
        print_checks(results, verbose=bool(getattr(args, "verbose", False)))
    if args.junit:
        try:
            write_private(args.junit, redact(junit_xml(results)))
        except OSError as exc:
            print(f"clusterfix-tui validate: cannot write {args.junit}: {exc.strerror or exc}",
                  file=sys.stderr)
            return 2
    if not results:
        print("clusterfix-tui validate: could not validate: no checks ran (the cluster has no "
              "nodes)", file=sys.stderr)
        return 2
    if all(r.name == "api" and not r.passed for r in results):
        print(f"clusterfix-tui validate: could not validate: {results[0].detail}", file=sys.stderr)
        return 2
    return 0 if all(r.passed for r in results) else 1
