"""Print, as JSON, the probe-map facts of the running kernel: which of the
kernel functions pmemtrace's probe table and profiles name exist as text
symbols (/proc/kallsyms, with their module) and which fs_dax tracepoints
exist (tracefs available_events).  Run in a lab guest as root, with the
device-dax module loaded (``--prepare --mode devdax``), and save the output
as fixtures/probe-maps/<release>.json (tests/test_probe_map.py and, in
the guest, tests/live/test_probe_map.py read it):

    pmemtrace lab run --kernel 5.10 --json --prepare --mode devdax --fs none -- \\
        /work/main/.venv/bin/python scripts/record_probe_map.py
"""

import json
import os
import sys

from pmemtrace.live.probes import PROBES, kernel_functions
from pmemtrace.model.profiles import PROFILES

TRACEFS = "/sys/kernel/tracing"


def names_asked() -> set[str]:
    """Every function the probe table or a profile names."""
    names = {t for p in PROBES if p.kind == "kprobe" for t, _ in p.candidates}
    for prof in PROFILES:
        names |= {prof.pmd_insert_function, prof.pud_insert_function, *prof.pte_insert_function}
    return names


def main() -> int:
    funcs = kernel_functions()
    if funcs is None:
        print("cannot read /proc/kallsyms", file=sys.stderr)
        return 1
    with open(os.path.join(TRACEFS, "available_events")) as f:
        events = sorted(line.split(":", 1)[1].strip() for line in f if line.startswith("fs_dax:"))
    asked = sorted(names_asked())
    out = {
        "release": os.uname().release,
        "series": os.environ.get("PMEMTRACE_LAB_SERIES"),
        "functions": {n: funcs[n] for n in asked if n in funcs},
        "absent": [n for n in asked if n not in funcs],
        "fs_dax_events": events,
    }
    json.dump(out, sys.stdout, indent=1, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
