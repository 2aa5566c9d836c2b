"""pmemtrace cleanup: remove what killed pmemtrace runs left in tracefs."""

import argparse
import json
import os

from ..errors import PrivilegeError
from ._common import status

EPILOG = """\
examples:
  sudo pmemtrace cleanup            # remove leftovers of killed runs, list them
  sudo pmemtrace cleanup --dry-run  # only list them
  pmemtrace cleanup --json

Everything pmemtrace creates in tracefs carries its pid in its name: the
private instances 'pmemtrace-<pid>-<purpose>' (watch, run, check, diagnose
--observe) and, on kernels without the perf kprobe PMU, bcc's kprobe events
'p_<function>_bcc_<pid>' on the probe table's functions.  A run killed with
SIGKILL cannot remove them; each new start removes those whose pid no longer
exists (one line on stderr), and this command does it on demand.  Processes
that are alive are never touched (a pid is judged in this pid namespace:
run it where pmemtrace ran).  Exit status: 0, also when there was nothing
to remove; 1 when something could not be removed, or removing needs root.
"""


def add_parser(sub):
    p = sub.add_parser(
        "cleanup",
        help="remove tracefs instances and kprobe events left by killed pmemtrace runs (root)",
        description="Remove the tracefs instances and kprobe events of pmemtrace processes "
        "that no longer exist, and list what was removed.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.set_defaults(func=run)
    return p


def run(args):
    from ..live.probes import probe_functions
    from ..live.tracefs import find_orphans, remove_orphans, tracefs_root

    root = tracefs_root()
    if root is None:
        found = []
    elif args.dry_run:
        found = find_orphans(root, probe_functions())
    else:
        found = find_orphans(root, probe_functions())
        if found and os.geteuid() != 0:
            raise PrivilegeError(
                f"{len(found)} leftover(s) of killed pmemtrace runs; removing them needs root: sudo pmemtrace cleanup"
            )
        found = remove_orphans(root, probe_functions())
    if args.json:
        print(
            json.dumps(
                {
                    "tracefs": root,
                    "dry_run": args.dry_run,
                    "leftovers": [
                        {"kind": o.kind, "name": o.name, "pid": o.pid, "removed": o.removed, "error": o.error}
                        for o in found
                    ],
                },
                indent=1,
            )
        )
    else:
        for o in found:
            print(f"would remove {o.kind} {o.name} (pid {o.pid} is gone)" if args.dry_run else o.describe())
        if root is None:
            status("cleanup: tracefs is not mounted: nothing pmemtrace made can be left")
        elif not found:
            status("cleanup: nothing left by killed pmemtrace runs")
    return 1 if any(o.error for o in found) else 0
