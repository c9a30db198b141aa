"""Limits every transport applies to what a node sends back."""

from __future__ import annotations

# The most one command may send us (stdout and stderr together). Past it we stop reading, close
# the channel, kill the command's process group on the node and return what was read with the
# error OUTPUT_TOO_LARGE: a hostile or broken node (a loop printing forever, a 1 GB file catted)
# cannot make us buffer without bound within the command's deadline (the channel's window lets
# it send 64 MiB/s). Far above real outputs: the facts script's whole output at 35,000-rule
# tables (iptables-save of both backends ~6 MB each, `nft -j list ruleset` ~430 bytes a rule,
# ~15 MB, `nft -a list table` text) is ~35 MB; the largest real iptables-save we know of is
# a few MB.
MAX_OUTPUT = 128 * 2**20
OUTPUT_TOO_LARGE = "output larger than {mib} MiB: not read past that (the command was stopped)"
