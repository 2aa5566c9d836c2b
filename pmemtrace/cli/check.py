"""pmemtrace check: run scenarios for real under tracing and compare every
access with the model's prediction (kernel-regression and model-fidelity
check)."""

import argparse
import os

from ..errors import PmemtraceError, UsageError
from ._common import print_json, release_arg, status, table

EPILOG = """\
examples:
  pmemtrace check --dir /mnt/pmem ndctl-dax-pmd          # one embedded scenario
  pmemtrace check --dir /mnt/pmem --all                  # every embedded fsdax scenario
  pmemtrace check --dir /mnt/pmem my-scenario.json --json
  pmemtrace check --dir /mnt/pmem --all --dio-dir /mnt/ext4   # DAX-GUP steps too
  pmemtrace check --case my.case.json --dir /mnt/pmem    # a case file (device-dax: --device /dev/dax0.0)

Each scenario runs with the workload engine (as 'pmemtrace run' does) while
the fs_dax tracepoints are recorded; the recorded case goes through the
reference model, and the model's fault events for every access are aligned
with the kernel's.  A row agrees when every predicted fault happened at the
same page with the same result class (ok, fallback, sigbus, retry) and
nothing else happened.  Exit status: 0 all agree, 1 any disagreement.
Device-dax scenarios have no tracepoints: they are reported as not
comparable (use 'pmemtrace run --device' and the bcc 'watch' for them).
Needs root (tracefs) and a filesystem mounted -o dax.
"""


def add_parser(sub):
    p = sub.add_parser(
        "check",
        help="run scenarios under tracing and compare every access with the model (root, DAX mount)",
        description="Run scenarios with the workload engine under fs_dax tracing and compare each "
        "access with the reference model's prediction; exit non-zero on any disagreement.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", nargs="*", help="embedded scenario names or scenario JSON files")
    p.add_argument("--all", action="store_true", help="every embedded fsdax scenario")
    p.add_argument(
        "--case", metavar="CASE.json", help="check a case file instead (as 'pmemtrace run --case'; fsdax or devdax)"
    )
    p.add_argument("--dir", metavar="DIR", help="a directory on a filesystem mounted -o dax")
    p.add_argument("--device", metavar="DEV", help="with --case: a device-dax device for a devdax case")
    p.add_argument("--dio-dir", metavar="DIR", help="a directory on a NON-DAX filesystem for O_DIRECT steps")
    p.add_argument("--kernel", metavar="RELEASE", type=release_arg, help="model profile (default: the running kernel)")
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument("-v", "--verbose", action="store_true", help="show the differing events")
    p.set_defaults(func=run)
    return p


def run(args):
    from ..live.compare import check_scenario
    from ..workload import scenario as S
    from ..workload import target as T

    if args.case:
        if args.scenario or args.all:
            raise UsageError("--case replaces SCENARIO and --all")
        from ._case_run import run_case

        return run_case(args.case, args.dir, args.device, as_json=args.json, dio_dir=args.dio_dir)
    names = list(args.scenario)
    if args.all:
        names += [n for n in S.embedded_names() if S.load_embedded(n).mode == "fsdax"]
    if not names:
        raise UsageError("check needs SCENARIO names or --all ('pmemtrace run --list' lists them)")
    if not args.dir:
        raise UsageError("check needs --dir DIR on a filesystem mounted -o dax")
    if os.geteuid() != 0:
        from ..errors import PrivilegeError

        raise PrivilegeError("pmemtrace check needs root to record fs_dax tracepoints: try sudo")
    tgt = T.open_dir(args.dir)
    results = []
    for n in names:
        scen = S.load_scenario(n)
        if scen.mode != "fsdax":
            results.append(
                {
                    "scenario": scen.name,
                    "comparable": False,
                    "agree": None,
                    "rows": [],
                    "trace": "device-dax has no fs_dax tracepoints",
                }
            )
            continue
        status(f"check: {scen.name}")
        try:
            results.append(check_scenario(scen, tgt, args.dio_dir, args.kernel))
        except PmemtraceError as e:
            results.append({"scenario": scen.name, "comparable": False, "agree": False, "rows": [], "error": str(e)})
    bad = [r for r in results if r.get("agree") is False]
    if args.json:
        print_json({"results": results, "agree": not bad})
    else:
        rows = []
        for r in results:
            if not r["comparable"]:
                rows.append((r["scenario"], "-", "-", "-", "not compared: " + str(r.get("error") or r.get("trace"))))
                continue
            rows.append(
                (
                    r["scenario"],
                    r["accesses"],
                    r["agreeing"],
                    r["accesses"] - r["agreeing"],
                    "agree" if r["agree"] else "DISAGREE",
                )
            )
        table(rows, ["scenario", "accesses", "agree", "differ", "verdict"])
        for r in bad:
            shown = r["rows"] if args.verbose else r["rows"][:20]
            if len(shown) < len(r["rows"]):
                print(f"{r['scenario']}: {len(r['rows'])} accesses disagree; the first 20 follow (-v: all)")
            for x in shown:
                items = (
                    x["differs"] + [f"missing {m}" for m in x["missing"]] + [f"unexpected {u}" for u in x["unexpected"]]
                )
                limit = len(items) if args.verbose else 4
                detail = "; ".join(items[:limit]) + (
                    f"; ... {len(items) - limit} more (-v)" if len(items) > limit else ""
                )
                print(
                    f"{r['scenario']} access {x['access']} ({x['op']}, model {x['model']}"
                    f"{', ' + x['reason'] if x['reason'] else ''}): "
                    f"{detail}"
                )
    return 1 if bad else 0
