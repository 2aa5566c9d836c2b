"""pmemtrace run: run a scenario on this host and record it as a case."""

import argparse
import json
import os
import subprocess

from ..errors import DataCorruption, PmemtraceError, UsageError
from ._common import out_path_arg, print_json, release_arg, status, table

EPILOG = """\
examples:
  pmemtrace run --list                                   # the embedded scenarios
  pmemtrace run --show ndctl-dax-pmd                     # a scenario's JSON (a template for your own)
  pmemtrace run ndctl-dax-pmd --dir /mnt/pmem --out dax-pmd.case.json
  pmemtrace run ndctl-dax-pmd --dir /mnt/pmem --dio-dir /var/tmp   # GUP via O_DIRECT, as ndctl
  pmemtrace run ndctl-device-dax-2m --device /dev/dax0.0
  pmemtrace run my-scenario.json --dir /mnt/pmem --json
  pmemtrace run reason-vma-end --dry-run --out c.json    # the case it would record, no I/O
  pmemtrace explain dax-pmd.case.json                    # what the model predicts for the run
  pmemtrace run --case my.case.json --dir /mnt/pmem      # carry a case out, compare each access with the model

Safety: pmemtrace writes only its own scratch file inside --dir (removed
afterwards, also on Ctrl-C) or the named --device (its data is overwritten);
it refuses a --dir that is not mounted -o dax (unless --allow-non-dax) and a
--device that is not device-dax, and reconfigures a namespace only when
--reconfigure names it.  Every byte written is read back; a mismatch is
reported as data corruption (exit status 3).  Beside --out CASE.json it
writes CASE.run.json (observed outcome of every step) and, when tracefs
has fs_dax, CASE.trace.txt.  Exit status: 0 all steps as the peer suite
expects, 1 a difference, 2 usage, 3 data corruption.
"""


def add_parser(sub):
    p = sub.add_parser(
        "run",
        help="run a scenario (ndctl/fstests/pmem-csi peers, one per reason) on real pmem and record a case",
        description="Run a scenario with pmemtrace's C workload engine on a DAX filesystem (--dir) or a "
        "device-dax device (--device), compare each step with what the peer test suite expects, and write "
        "a case file that 'pmemtrace explain' reproduces anywhere.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("scenario", nargs="?", help="embedded scenario name or path to a scenario JSON file")
    p.add_argument(
        "--case",
        metavar="CASE.json",
        help="carry out a case file (docs/case-format.md) instead of a scenario: lay the file out as its "
        "extents say, make its mappings and accesses, and compare every access with the model (root)",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument("--dir", metavar="DIR", help="a directory on a filesystem mounted -o dax (fsdax scenarios)")
    where.add_argument(
        "--device", metavar="DEV", help="a device-dax character device, e.g. /dev/dax0.0 (devdax scenarios)"
    )
    p.add_argument(
        "--out",
        metavar="CASE.json",
        type=out_path_arg,
        help="write the recorded case here (plus CASE.run.json, CASE.trace.txt)",
    )
    p.add_argument(
        "--dio-dir",
        metavar="DIR",
        help="directory on a NON-DAX filesystem for the O_DIRECT partner file "
        "of GUP steps (as ndctl does); without it GUP steps use process_vm_readv/writev",
    )
    p.add_argument("--allow-non-dax", action="store_true", help="accept a --dir that is not DAX (engine tests)")
    p.add_argument(
        "--reconfigure",
        metavar="NAMESPACE",
        help="allow 'ndctl create-namespace -f -e NAMESPACE' to give "
        "a devdax scenario the align it needs (destroys the namespace's data)",
    )
    p.add_argument("--no-trace", action="store_true", help="do not record fs_dax events")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="do nothing on the host: write the case the scenario "
        "would record on an ideal device (synthetic addresses and extents)",
    )
    p.add_argument(
        "--kernel", metavar="RELEASE", type=release_arg, help="with --dry-run: the kernel release to put in the case"
    )
    p.add_argument("--list", action="store_true", help="list the embedded scenarios")
    p.add_argument("--show", metavar="NAME", help="print an embedded scenario's JSON")
    p.add_argument("--json", action="store_true", help="print the run record as JSON on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="print each step on stderr as it starts")
    p.set_defaults(func=run)
    return p


def _list(args):
    from ..workload.scenario import embedded_names, load_embedded

    rows = []
    out = []
    for n in embedded_names():
        s = load_embedded(n)
        rows.append((n, s.mode, (s.peer or (f"reason {s.reason}" if s.reason else ""))[:60]))
        out.append({"name": n, "mode": s.mode, "peer": s.peer, "reason": s.reason, "expect": s.expect})
    if args.json:
        print_json(out)
    else:
        table(rows, ["scenario", "mode", "peer / reason"])
    return 0


def _reconfigure(ns, align):
    cmd = ["ndctl", "create-namespace", "-f", "-e", ns, "-m", "devdax", "-a", str(align)]
    status("pmemtrace run: " + " ".join(cmd))
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    except FileNotFoundError:
        raise UsageError("--reconfigure needs ndctl (apt-get install ndctl)") from None
    if r.returncode != 0:
        raise UsageError(f"ndctl create-namespace failed: {r.stderr.strip().splitlines()[-1:] or r.returncode}")
    try:
        return json.loads(r.stdout).get("daxregion", {}).get("devices", [{}])[0].get("chardev")
    except (ValueError, IndexError, AttributeError):
        return None


def run(args):
    from ..workload import scenario as S

    if args.list:
        return _list(args)
    if args.show:
        s = S.load_embedded(args.show)
        print_json(s.raw)
        return 0
    if args.case:
        if args.scenario or args.dry_run:
            raise UsageError("--case replaces SCENARIO (and has no --dry-run: 'pmemtrace explain CASE' is that)")
        from ._case_run import run_case

        return run_case(args.case, args.dir, args.device, args.out, args.json, args.allow_non_dax, args.dio_dir)
    if not args.scenario:
        raise UsageError("run needs a SCENARIO (name or file; 'pmemtrace run --list' lists them)")
    scen = S.load_scenario(args.scenario)

    if args.dry_run:
        from ..workload.dryrun import dry_case

        case = dry_case(scen, kernel=args.kernel)
        if args.out:
            _write_json(args.out, case)
            status(f"pmemtrace run: dry-run case written to {args.out}")
        else:
            print_json(case)
        return 0

    from ..workload import target as T
    from ..workload.runner import run_scenario

    if scen.mode == "fsdax":
        if not args.dir:
            raise UsageError(f"{scen.name} is an fsdax scenario: give --dir DIR on a filesystem mounted -o dax")
        tgt = T.open_dir(args.dir, allow_non_dax=args.allow_non_dax)
    else:
        if not args.device:
            raise UsageError(f"{scen.name} is a devdax scenario: give --device /dev/daxX.Y")
        tgt = T.open_device(args.device)
        have = tgt.device.align
        if scen.device_align and have != scen.device_align and args.reconfigure:
            dev = _reconfigure(args.reconfigure, scen.device_align)
            tgt = T.open_device(f"/dev/{dev}" if dev else args.device)
    if args.dio_dir:
        if not os.path.isdir(args.dio_dir):
            raise UsageError(f"--dio-dir {args.dio_dir}: not a directory")
        if args.dir and os.stat(args.dio_dir).st_dev == os.stat(args.dir).st_dev and tgt.dax:
            raise UsageError(
                "--dio-dir must be on a non-DAX filesystem: O_DIRECT on a DAX file copies "
                "without get_user_pages, so it would not exercise DAX-GUP"
            )

    status(f"pmemtrace run: {scen.name} on {tgt.path} ({tgt.mode}{'' if tgt.dax else ', NOT DAX'})")
    res = run_scenario(
        scen,
        tgt,
        dio_dir=args.dio_dir,
        trace=not args.no_trace,
        progress=(lambda m: status(f"pmemtrace run: {m}")) if args.verbose else None,
    )
    rec = res.record()
    if args.out:
        _write_json(args.out, res.case)
        base = args.out[:-5] if args.out.endswith(".json") else args.out
        _write_json(base + ".run.json", rec)
        if res.trace_text:
            with open(base + ".trace.txt", "w") as f:
                f.write(res.trace_text)
        status(f"pmemtrace run: case written to {args.out} (run record {base}.run.json)")
    if args.json:
        print_json(rec)
    else:
        rows = [
            (
                s["index"],
                s["op"],
                s["mapping"] or "-",
                s["outcome"],
                "|".join(s["expect"]),
                "yes" if s["match"] else "NO",
                s.get("pages", s.get("bytes", "")),
                s.get("detail", ""),
            )
            for s in res.steps
        ]
        table(rows, ["#", "op", "mapping", "outcome", "peer expects", "match", "pages/bytes", "detail"])
        status(
            f"pmemtrace run: {len(res.events)} fs_dax events"
            if res.trace_text
            else f"pmemtrace run: no fs_dax events recorded ({res.trace_reason})"
        )
        for n in res.notes:
            status(f"note: {n}")
    if res.corrupt:
        raise DataCorruption("data corruption: " + "; ".join(res.corrupt[:4]))
    if res.error:
        raise PmemtraceError(f"run {scen.name}: {res.error}")
    if not res.matches:
        bad = [str(s["index"]) for s in res.steps if not s["match"]]
        status(
            f"pmemtrace run: steps {', '.join(bad)} differ from what the peer suite expects"
            + (f" (see the scenario notes: pmemtrace run --show {scen.name})" if scen.notes else "")
        )
        return 1
    status(f"pmemtrace run: all {len(res.steps)} steps as expected; {res.verified_pages} pages verified")
    return 0


def _write_json(path, obj):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
        f.write("\n")
    os.replace(tmp, path)
