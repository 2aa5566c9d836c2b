"""``pmemtrace lab``: Debian kernels booted under QEMU with emulated pmem."""

import argparse
import json
import sys
import time

from ..errors import LabError, UsageError
from ._common import positive_int_arg

EPILOG = """\
examples:
  pmemtrace lab kernels                      # what Debian offers, what is cached
  pmemtrace lab fetch 6.1 6.12 7             # download image+modules+headers
  pmemtrace lab run --kernel 6.12 -- ndctl list -RN
  pmemtrace lab run --kernel 7 --prepare --fs xfs -- \\
      sh -c 'fallocate -l 64M /tmp/pmem/f && ls -l /tmp/pmem'
  pmemtrace lab run --kernel 6.1 --prepare --mode devdax --align 2M -- daxctl list
  pmemtrace lab run --kernel 6.12 --nodax 1G --prepare --nodax-mount -- df -h
  pmemtrace lab test --kernels 6.1,6.12,7    # the live tier, one boot per kernel
  pmemtrace lab record-fixtures --kernels 6.12

A boot takes about 20-25 s here (QEMU TCG, 2 vCPUs); the guest sees the host
root read-only with /tmp private.  Cache: $PMEMTRACE_LAB_CACHE or
~/.cache/pmemtrace/lab.  See docs/lab.md.
"""


def _status(msg):
    print(f"pmemtrace lab: {msg}", file=sys.stderr, flush=True)


def _kernel_list(text):
    names = [k.strip() for k in text.split(",") if k.strip()]
    if not names:
        raise UsageError("--kernels: give a comma-separated list such as 6.1,6.12,7")
    return names


# ---------------------------------------------------------------------------
# kernels / fetch


def _cmd_kernels(args):
    from ..lab import kernels

    rows = []
    for series in kernels.SERIES:
        avail = None
        if not args.offline:
            try:
                avail = kernels.resolve(series, update=True)
            except LabError as exc:
                _status(f"{series}: {exc}")
        cached = [k for k in kernels.cached_kernels() if k.series == series]
        rows.append((series, kernels.SERIES[series][0], avail, cached))
    if args.json:
        json.dump(
            [
                {
                    "series": s,
                    "suite": suite,
                    "available": a.release if a else None,
                    "available_version": a.version if a else None,
                    "cached": [k.to_json() for k in c],
                }
                for s, suite, a, c in rows
            ],
            sys.stdout,
            indent=2,
        )
        print()
        return 0
    width = max(19, *(len(suite) for _, suite, _, _ in rows))  # 5.10/7.3 name two suites
    print(f"{'SERIES':<7} {'SUITE':<{width}} {'AVAILABLE':<24} CACHED")
    for s, suite, a, c in rows:
        print(f"{s:<7} {suite:<{width}} {(a.release if a else '?'):<24} {', '.join(k.release for k in c) or '-'}")
    print(f"cache: {kernels.cache_dir()}", file=sys.stderr)
    return 0


def _cmd_fetch(args):
    from ..lab import kernels

    names = args.kernel or list(kernels.DEFAULT_SERIES)
    out = []
    for name in names:
        t0 = time.monotonic()
        k = kernels.fetch(name, force=args.force)
        _status(f"{k.release}: ready in {time.monotonic() - t0:.1f} s ({k.vmlinuz}; modules at {k.host_modules_link})")
        out.append(k)
    if args.json:
        json.dump([k.to_json() for k in out], sys.stdout, indent=2)
        print()
    else:
        for k in out:
            print(k.release)
    return 0


# ---------------------------------------------------------------------------
# run


def _prepare_args(args):
    if not args.prepare:
        return None
    p = ["--mode", args.mode, "--map", args.map, "--align", args.align, "--fs", args.fs, "--mount", args.mount]
    if args.mkfs_options is not None:
        p += ["--mkfs-options", args.mkfs_options]
    if args.nodax_mount:
        if not args.nodax:
            raise UsageError("--nodax-mount needs a second region: add --nodax SIZE")
        p += ["--nodax", args.nodax_mount]
    return p


def _add_boot_options(p):
    p.add_argument(
        "--memmap", action="append", metavar="SIZE!START", help="emulated pmem region (repeatable; default 1G!4G)"
    )
    p.add_argument(
        "--nodax",
        metavar="SIZE",
        default=None,
        help="add a second region of SIZE (namespace1.0, /dev/pmem1) for a non-DAX filesystem, e.g. an O_DIRECT target",
    )
    p.add_argument(
        "--soft-reserved",
        metavar="SIZE[@START]",
        default=None,
        help="boot SIZE of RAM at START (default 4G) as E820 Soft Reserved: dax_hmem makes it a device-dax "
        "(dax0.0) with no NVDIMM; without --memmap no pmem region is booted (prepare it with --mode hmem)",
    )
    p.add_argument(
        "--memory", metavar="SIZE", default=None, help="guest RAM (default: enough to back the regions, at least 4G)"
    )
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument(
        "--timeout", type=int, default=None, metavar="SECONDS", help="limit for boot + command (default 900)"
    )
    p.add_argument(
        "--kvm",
        action="store_true",
        help="use KVM after a short probe boot shows it works (it hangs "
        "Debian kernels on some hosts); default is QEMU TCG",
    )
    p.add_argument(
        "--rwdir", action="append", default=[], metavar="DIR", help="host directory the guest may write to (repeatable)"
    )
    p.add_argument(
        "--icount",
        type=int,
        default=None,
        metavar="SHIFT",
        help="QEMU -icount shift=SHIFT (TCG only): the guest's clock counts instructions, 2^SHIFT ns each, "
        "so timings in the guest are free of the host's load (benchmarks)",
    )


def _memmap(args):
    from ..lab import vm

    # a soft-reserved boot has no pmem region unless one is asked for
    return args.memmap or (() if getattr(args, "soft_reserved", None) else vm.DEFAULT_MEMMAP)


def _boot_kwargs(args):
    from .. import units
    from ..lab import vm

    kw = {"memmap": _memmap(args), "nodax": args.nodax, "cpus": args.cpus, "rwdirs": args.rwdir}
    if args.soft_reserved:
        kw["soft_reserved"] = vm.SoftReserved.parse(args.soft_reserved)
    if args.memory:
        kw["memory"] = units.parse_int(args.memory)
    if args.timeout:
        kw["timeout"] = args.timeout
    if getattr(args, "icount", None) is not None:
        if not 0 <= args.icount <= 10:
            raise UsageError("--icount: SHIFT is 0 to 10 (one instruction takes 2^SHIFT ns of guest time)")
        kw["icount"] = args.icount
    return kw


def _use_kvm(args, kernel):
    if not args.kvm:
        return False
    if getattr(args, "icount", None) is not None:
        raise UsageError("--icount counts TCG's instructions: drop --kvm")
    from ..lab import vm

    _status("probing KVM with a short boot (45 s limit)")
    if vm.kvm_works(kernel):
        return True
    raise LabError(
        "--kvm: a probe boot under KVM did not finish in 45 s (Debian kernels hang "
        "under this host's KVM); drop --kvm to use QEMU TCG"
    )


def _cmd_run(args):
    from ..lab import kernels, vm

    cmd = list(args.command)
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        cmd = ["true"]
    prepare = _prepare_args(args)  # usage errors before any download or boot
    k = kernels.get(args.kernel)
    kvm = _use_kvm(args, k)
    _status(
        f"booting {k.release} (memmap {','.join(_memmap(args)) or 'none'}"
        f"{', nodax ' + args.nodax if args.nodax else ''}"
        f"{', soft-reserved ' + args.soft_reserved if args.soft_reserved else ''}, {'KVM' if kvm else 'TCG'})"
    )
    res = vm.run(k, cmd, prepare=prepare, kvm=kvm, capture=args.json, stream=not args.json, **_boot_kwargs(args))
    _status(
        f"{k.release}: exit {res.returncode}, {res.elapsed:.1f} s "
        f"(command started after {res.boot_seconds or 0:.1f} s of guest time)"
    )
    if res.returncode == 255:
        # vng lost the guest (it crashed or powered off without reporting
        # the command's status): the kernel console says why
        _status(f"{k.release}: vng lost the guest (exit 255); console tail:\n{res.console_tail(60)}")
    if args.json:
        json.dump(res.to_json(), sys.stdout, indent=2)
        print()
    if res.returncode == 124 and args.prepare:
        raise LabError(f"guest preparation failed on {k.release}: {res.stderr.strip()[-300:]}")
    return res.returncode


# ---------------------------------------------------------------------------
# test


def _cmd_test(args):
    from ..lab import tier

    names = _kernel_list(args.kernels)
    extra = list(args.pytest_args)
    if extra and extra[0] == "--":
        extra = extra[1:]
    if args.plan:
        tier.check_assignments(tier.repo_root())
        plans = tier.plan(names)
        if args.json:
            json.dump({"kernels": [p.to_json() for p in plans]}, sys.stdout, indent=2)
            print()
        else:
            print(tier.render_plan(plans))
        return 0
    total0 = time.monotonic()
    results = tier.run_tier(
        names,
        extra,
        require=args.require,
        nodax=args.nodax,
        timeout=args.timeout,
        cpus=args.cpus,
        status=_status,
        whole=args.whole,
        only=_kernel_list(args.only) if args.only else None,
        jobs=args.jobs,
    )
    total = time.monotonic() - total0
    print("\nlive tier summary:", file=sys.stderr)
    for r in results:
        rc = r.returncode
        verdict = "ok" if rc == 0 else ("no tests" if rc == 5 else f"FAILED ({'boot' if rc == -1 else rc})")
        print(
            f"  {r.release:<24} {r.seconds:7.1f} s  {verdict}{'; ' + r.note.splitlines()[0] if r.note else ''}",
            file=sys.stderr,
        )
    print(f"  {'total':<24} {total:7.1f} s", file=sys.stderr)
    if args.json:
        json.dump({"kernels": [r.to_json() for r in results], "seconds": round(total, 1)}, sys.stdout, indent=2)
        print()
    return 0 if all(r.returncode == 0 for r in results) else 1


# ---------------------------------------------------------------------------
# fuzz (differential fidelity: pmemtrace.fuzz.campaign in one guest)


def nonneg_int(text):
    """0 or a positive integer (argparse type)."""
    return 0 if text.strip() == "0" else positive_int_arg(text)


def _cmd_fuzz(args):
    import os

    from ..lab import kernels, vm

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    k = kernels.get(args.kernel)
    cmd = [
        sys.executable,
        "-m",
        "pmemtrace.fuzz.campaign",
        "--cases",
        str(args.cases),
        "--seed",
        str(args.seed),
        "--kinds",
        args.kinds,
        "--out",
        out,
        "--minimise",
        str(args.minimise),
    ] + (["--no-gup"] if args.no_gup else [])
    _status(f"booting {k.release} for {args.cases} generated cases (seed {args.seed})")
    # about 3 s a case under TCG, plus minimisation: a generous default limit
    timeout = args.timeout or max(900, 600 + 10 * args.cases)
    # the second region: the non-DAX ext4 the O_DIRECT GUPs read and write
    res = vm.run(k, cmd, capture=False, stream=True, rwdirs=[out], cpus=args.cpus, timeout=timeout, nodax="1G")
    report = os.path.join(out, f"fuzz-{k.release}-{args.seed}-{args.cases}.json")
    _status(f"{k.release}: exit {res.returncode}, {res.elapsed:.1f} s; report {report}")
    if res.returncode not in (0, 1) or not os.path.exists(report):
        raise LabError(f"the fuzz run on {k.release} did not finish (exit {res.returncode}): {res.console_tail(5)}")
    return res.returncode


# ---------------------------------------------------------------------------
# record-fixtures


def _cmd_record(args):
    from ..lab import fixtures

    return fixtures.record_all(_kernel_list(args.kernels), args.output, configs=args.config)


# ---------------------------------------------------------------------------


def add_parser(subparsers):
    p = subparsers.add_parser(
        "lab",
        help="emulated-pmem lab: fetch Debian kernels, boot them with memmap= pmem",
        description="Fetch Debian kernels (6.1, 6.12, newest 7.x) and boot them under QEMU "
        "with emulated persistent memory (memmap=SIZE!START), sharing the host root "
        "read-only, to run commands and the live test tier.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="lab_command", metavar="ACTION")

    k = sub.add_parser("kernels", help="list the kernels Debian offers and those cached")
    k.add_argument("--offline", action="store_true", help="do not refresh package lists")
    k.add_argument("-j", "--json", action="store_true")
    k.set_defaults(func=_cmd_kernels)

    f = sub.add_parser("fetch", help="download kernels into the cache")
    f.add_argument("kernel", nargs="*", help="6.1, 6.12, 7 (default: all three)")
    f.add_argument("--force", action="store_true", help="download again even if cached")
    f.add_argument("-j", "--json", action="store_true")
    f.set_defaults(func=_cmd_fetch)

    r = sub.add_parser(
        "run",
        help="boot a kernel and run a command in it",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    r.add_argument("--kernel", "-k", default="6.12", help="6.1, 6.12, 7 or a cached release")
    _add_boot_options(r)
    g = r.add_argument_group("guest preparation (--prepare)")
    g.add_argument(
        "--prepare", action="store_true", help="load modules, configure namespace0.0, mkfs and mount with -o dax"
    )
    g.add_argument("--mode", default="fsdax", choices=["fsdax", "devdax", "raw", "none", "hmem"])
    g.add_argument("--map", default="mem", choices=["mem", "dev"])
    g.add_argument("--align", default="2M")
    g.add_argument("--fs", default="xfs", choices=["xfs", "ext4", "none"])
    g.add_argument("--mkfs-options", default=None, help="default xfs: '-d su=2m,sw=1 -m reflink=0'; ext4: none")
    g.add_argument("--mount", default="/tmp/pmem", help="DAX mount point in the guest")
    g.add_argument(
        "--nodax-mount",
        nargs="?",
        const="/tmp/nodax",
        default=None,
        metavar="DIR",
        help="mount ext4 without DAX from the --nodax region (default /tmp/nodax)",
    )
    r.add_argument("-j", "--json", action="store_true", help="capture output and print one JSON object")
    r.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    r.set_defaults(func=_cmd_run)

    t = sub.add_parser(
        "test",
        help="run the live tier inside each kernel (one boot each): the files the plan gives it (--plan shows them)",
    )
    t.add_argument("--kernels", default="6.1,6.12,7")
    t.add_argument(
        "--plan",
        action="store_true",
        help="print which tests/live files run on which kernel of --kernels, and exit (no boot)",
    )
    t.add_argument(
        "--whole", action="store_true", help="run all of tests/live on every kernel instead of the plan's files"
    )
    t.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="boot N kernels at once (each guest uses one host core; CI: 2 on 2 cores); "
        "each kernel's output is printed whole when it ends",
    )
    t.add_argument(
        "--only",
        metavar="K[,K]",
        default=None,
        help="boot only these kernels of --kernels, each with its share of the plan for the whole list",
    )
    t.add_argument(
        "--require", action="store_true", help="set PMEMTRACE_RUN_LIVE_TESTS=1 in the guest: skips become failures"
    )
    t.add_argument(
        "--nodax", default="1G", metavar="SIZE", help="size of the non-DAX region booted alongside (default 1G)"
    )
    t.add_argument("--cpus", type=int, default=2)
    t.add_argument("--timeout", type=int, default=None, metavar="SECONDS", help="per kernel (default 2400)")
    t.add_argument("-j", "--json", action="store_true")
    t.add_argument("pytest_args", nargs=argparse.REMAINDER, help="-- extra pytest arguments")
    t.set_defaults(func=_cmd_test)

    z = sub.add_parser(
        "fuzz",
        help="boot once and compare N generated cases with the model, access by access",
        description="Boot a kernel, run N generated cases (pmemtrace.fuzz) on fsdax xfs/ext4 and device-dax, "
        "print the per-access agreement per feature and write a JSON report with minimised disagreements.",
    )
    z.add_argument("--kernel", "-k", default="6.12", help="6.1, 6.12, 7 or a cached release")
    z.add_argument("--cases", type=positive_int_arg, default=200, help="generated cases (default 200)")
    z.add_argument("--seed", type=int, default=1)
    z.add_argument(
        "--kinds", default="fsdax-xfs,fsdax-ext4,devdax-4K,devdax-2M", help="targets (devdax-1G where the lab has it)"
    )
    z.add_argument(
        "--minimise", type=nonneg_int, default=40, metavar="TRIES", help="shrink tries per disagreement (0: off)"
    )
    z.add_argument(
        "--no-gup", action="store_true", help="no GUP accesses (O_DIRECT, io_uring): the cases of a seed as before"
    )
    z.add_argument("--out", default="fuzz-reports", help="host directory for the JSON report (default ./fuzz-reports)")
    z.add_argument("--cpus", type=int, default=2)
    z.add_argument(
        "--timeout", type=int, default=None, metavar="SECONDS", help="boot + run limit (default 600 + 10 per case)"
    )
    z.set_defaults(func=_cmd_fuzz)

    x = sub.add_parser(
        "record-fixtures", help="record sysfs/procfs trees from each kernel into fixtures/<release>/<config>/"
    )
    x.add_argument("--kernels", default="6.1,6.12,7")
    x.add_argument("--output", default=None, help="default: fixtures/ of the source tree")
    x.add_argument("--config", action="append", default=None, help="only these configs (e.g. fsdax-mem-2M); repeatable")
    x.set_defaults(func=_cmd_record)

    p.set_defaults(func=lambda args: (p.print_help(sys.stderr), 2)[1])
