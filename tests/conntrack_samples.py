"""Conntrack facts as nodes print them, for tests/test_conntrack*.py.

/proc/net/stat/nf_conntrack: the header names the columns, which changed between kernels (read
from the kernel's ct_cpu_seq_show, net/netfilter/nf_conntrack_standalone.c): 16 columns before
search_restart was added; then 17; 5.x replaced `searched` (printed 0 since 4.10) by `clashres`,
later `delete_list` by `chainlength` (what this machine's 6.18 prints). Values are %08x, one row
per possible CPU, `entries` the same total on each row. `conntrack -S` (conntrack-tools): 1.4.4
(CentOS 7) prints the old counters, 1.4.6+ the new ones (clash_resolve, chaintoolong), decimal,
one `cpu=N` line per CPU. The values below are made up; the shapes are the kernels' and tools'.
"""

from __future__ import annotations

from clusterfix_tui.core import parsers as P

HEADERS = {
    "2.6-3.x (16 columns)": "entries  searched found new invalid ignore delete delete_list insert "
                            "insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete",
    "3.10-4.x": "entries  searched found new invalid ignore delete delete_list insert insert_failed drop "
                "early_drop icmp_error  expect_new expect_create expect_delete search_restart",
    "5.x": "entries  clashres found new invalid ignore delete delete_list insert insert_failed drop "
           "early_drop icmp_error  expect_new expect_create expect_delete search_restart",
    "6.x": "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop "
           "early_drop icmp_error  expect_new expect_create expect_delete search_restart",
}


def stat_file(header: str, entries: int, per_cpu: list[dict[str, int]]) -> str:
    """The file as the kernel prints it: `entries` then two spaces, the rest %08x, two spaces
    before expect_new; a 16-column row ends with a space (the old format string's)."""
    cols = header.split()
    rows = [header]
    for vals in per_cpu:
        cells = [f"{(entries if c == 'entries' else vals.get(c, 0)):08x}" for c in cols]
        i = cols.index("expect_new")
        row = f"{cells[0]}  {' '.join(cells[1:i])}  {' '.join(cells[i:])}"
        rows.append(row + (" " if len(cols) == 16 else ""))
    return "\n".join(rows) + "\n"


CONNTRACK_S_144 = (  # conntrack-tools 1.4.4
    "cpu=0   \tsearched=4213 found=8831829 new=1180 invalid=1352 ignore=71 delete=2 delete_list=2 "
    "insert=1180 insert_failed=3 drop=17 early_drop=250 error=0 search_restart=0 \n"
    "cpu=1   \tsearched=3120 found=8011215 new=1022 invalid=988 ignore=40 delete=1 delete_list=1 "
    "insert=1022 insert_failed=1 drop=5 early_drop=190 error=0 search_restart=0 \n")
CONNTRACK_S_147 = (  # conntrack-tools 1.4.6/1.4.7 (as on this machine)
    "cpu=0   \tfound=0 invalid=12 insert=0 insert_failed=0 drop=0 early_drop=0 error=0 "
    "search_restart=0 clash_resolve=4 chaintoolong=0 \n"
    "cpu=1   \tfound=0 invalid=3 insert=0 insert_failed=2 drop=0 early_drop=0 error=0 "
    "search_restart=0 clash_resolve=1 chaintoolong=0 \n")


def grep_output(count: int | None, cmax: int | None, buckets: int | None = 65536,
                stat: str | None = None, cpus: str | None = "0-3") -> tuple[str, str]:
    """(stdout, stderr) of the facts script's `grep -H . FILES`: each file's lines as
    "FILE:LINE"; a file that is not there is grep's "No such file or directory"."""
    out, err = [], []
    for path, val in ((P.CONNTRACK_COUNT, count), (P.CONNTRACK_MAX, cmax), (P.CONNTRACK_BUCKETS, buckets),
                      (P.CONNTRACK_STAT, stat), (P.CPU_ONLINE, cpus)):
        if val is None:
            err.append(f"grep: {path}: No such file or directory")
        else:
            out.extend(f"{path}:{ln}" for ln in str(val).splitlines() if ln)
    return "".join(ln + "\n" for ln in out), "\n".join(err)


def framed(nonce: str, name: str, stdout: str, stderr: str = "", rc: int = 0) -> str:
    """A section as the facts script frames it."""
    return f"@@CFX {nonce} BEGIN {name}\n{stdout}\n@@CFX {nonce} ERR {name}\n{stderr}\n@@CFX {nonce} END {name} rc={rc}\n"


def with_sections(output: str, nonce: str, *sections: str) -> str:
    """A recorded facts output with sections added before its DONE marker."""
    done = f"@@CFX {nonce} DONE"
    head, sep, tail = output.rpartition(done)
    assert sep, "no DONE marker"
    return head + "".join(sections) + sep + tail


def full_table_output(output: str, nonce: str) -> str:
    """A recorded node's output whose conntrack table is full (6.x kernel, 4 CPUs)."""
    rows = [{"drop": 40, "early_drop": 1200, "insert_failed": 2}, {"drop": 12, "early_drop": 800},
            {}, {"early_drop": 5}]
    out, err = grep_output(262144, 262144, 65536, stat_file(HEADERS["6.x"], 262144, rows))
    return with_sections(output, nonce, framed(nonce, "conntrack", out, err, 0))
