"""`clusterfix-tui validate` (placeholder until its issue lands)."""

from __future__ import annotations

import argparse
import sys


def configure(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    print("clusterfix-tui validate: not implemented yet", file=sys.stderr)
    return 2
