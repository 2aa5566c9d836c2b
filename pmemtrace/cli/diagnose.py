"""pmemtrace diagnose: the pmem checklist done for you (host, files, processes)."""

import argparse
import os
import sys
import time

from .. import host as dg
from ..errors import UsageError
from ..host.fsread import Roots
from ..host.svg import cells, terminal_legend, terminal_strip, write_svg
from ..metrics import outputs as metrics_outputs
from ..units import format_size
from ._common import out_path_arg, pid_arg, print_json, seconds_arg, status, table

EPILOG = """\
examples:
  pmemtrace diagnose                         # every namespace, dax device and DAX mount
  pmemtrace diagnose /mnt/pmem/db.data       # per 2 MiB chunk: PMD or not, and why
  pmemtrace diagnose /mnt/pmem/a /mnt/pmem/b --svg chunks.svg
  pmemtrace diagnose --pid 4242              # a process's DAX mappings, per chunk
  pmemtrace diagnose --json                  # machine-readable
  pmemtrace diagnose --textfile /var/lib/prometheus/node-exporter   # gauges for node_exporter
  pmemtrace diagnose --sysfs-root fixtures/6.12.95+deb12-amd64/fsdax-dev/sys \\
                     --procfs-root fixtures/6.12.95+deb12-amd64/fsdax-dev/proc

Verdicts: pmd / pud (huge faults possible), pte (4 KiB only), no-dax, error,
info, warn.  Each finding carries a code: a model reason ('pmemtrace reasons')
or a host code, and the remedy.  Strip glyphs, one per 2 MiB chunk: # pmd,
P pud, z huge zero page, . 4 KiB, or the fallback reason's letter: e extent-too-short,
a pfn-unaligned, c pmd-colour-mismatch, w private-write, s vma-start, v vma-end,
b beyond-eof, o pte-entry-present, t pte-table-present, n nohugepage,
d thp-disabled, m pfn-no-devmap, 4 devdax-align-smaller; ! sigbus, x error.
Works without root where files are readable (then /proc/iomem addresses and
filesystem geometry may be missing: the output says so).
"""


def add_parser(sub):
    p = sub.add_parser(
        "diagnose",
        help="check this host's pmem setup, files and processes for 2 MiB (PMD) DAX mappings",
        description="Read sysfs/procfs (namespaces, dax devices, mounts, kernel) and explain, with the "
        "kernel rule and the remedy, what can and cannot get 2 MiB DAX mappings: per device, per DAX "
        "mount, per 2 MiB chunk of a file (from its FIEMAP extents) or of a process's mapping.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="files on a DAX filesystem to check per 2 MiB chunk")
    p.add_argument("--pid", type=pid_arg, metavar="PID", help="check the DAX mappings of process PID")
    p.add_argument(
        "--observe",
        type=seconds_arg,
        metavar="SECONDS",
        help="with --pid: also record the process's fs_dax events for SECONDS (root) and show "
        "what the kernel did per chunk beside the prediction",
    )
    p.add_argument(
        "--op",
        choices=("read", "write"),
        default="write",
        help="access assumed for the first touch of each file chunk (default write)",
    )
    p.add_argument("--json", action="store_true", help="JSON output")
    p.add_argument(
        "--svg", metavar="PATH", type=out_path_arg, help="write an SVG strip per file/mapping (2 MiB chunks by outcome)"
    )
    p.add_argument(
        "--no-colour", "--no-color", dest="colour", action="store_false", default=None, help="plain terminal strips"
    )
    p.add_argument("--sysfs-root", metavar="DIR", help="read sysfs from DIR instead of /sys (a fixture tree)")
    p.add_argument("--procfs-root", metavar="DIR", help="read procfs from DIR instead of /proc")
    p.add_argument("--no-host", action="store_true", help="with FILE or --pid: skip the host table")
    metrics_outputs.add_args(p, watch=False)
    p.set_defaults(func=run)
    return p


def _roots(args):
    for name in ("sysfs_root", "procfs_root"):
        d = getattr(args, name)
        if d is not None and not os.path.isdir(d):
            raise UsageError(f"--{name.replace('_', '-')} {d}: not a directory")
    return Roots(args.sysfs_root, args.procfs_root)


def _verdict_rows(findings):
    return [[f.kind, f.subject, f.verdict, f.code, f.message, f.remedy] for f in findings]


def _print_strip(s, colour, out):
    cnt = s.counts()
    total = s.blocks()
    out.write(
        f"\n{s.subject}: {total} chunk(s) of 2 MiB: " + ", ".join(f"{v} {k}" for k, v in sorted(cnt.items())) + "\n"
    )
    for f in s.findings:
        out.write(f"  [{f.verdict}] {f.code}: {f.message}" + (f" -> {f.remedy}" if f.remedy else "") + "\n")
    if s.chunks:
        lines = terminal_strip(s, colour)
        if len(cells(s)) != total:
            out.write(f"  (one glyph per run of like chunks: {len(s.chunks)} runs)\n")
        for line in lines:
            out.write("  " + line + "\n")
        rows = []
        for ch in s.chunks:
            ext = "; ".join(
                f"{format_size(e['length'])}@{e['physical']:#x}" + (" unwritten" if e.get("unwritten") else "")
                for e in ch.extents[:3]
            ) + (" ..." if len(ch.extents) > 3 else "")
            index = ch.index if ch.count == 1 else f"{ch.index}-{ch.index + ch.count - 1}"
            rows.append(
                [index, f"{ch.offset:#x}", ch.outcome, ch.reason or "", ch.layout, ext, ch.count]
                + ([f"{ch.observed} ({ch.observed_events} ev)"] if ch.observed is not None else [])
            )
        if len(rows) > 40:
            # long files: show the non-PMD chunks and a count of the rest
            bad = [r for r in rows if r[2] not in ("pmd", "pud")]
            out.write(f"  ({sum(r[6] for r in rows) - sum(r[6] for r in bad)} PMD chunks not listed)\n")
            rows = bad[:200]
        if rows:
            heads = ["chunk", "offset", "outcome", "reason", "extents", "extent detail"]
            if any(ch.count > 1 for ch in s.chunks):
                heads.append("chunks")
            else:
                rows = [r[:6] + r[7:] for r in rows]
            if s.chunks[0].observed is not None:
                heads.append("observed")
            table(rows, heads, out)
    for a in s.advice:
        out.write(f"  how to fix: {a}\n")


def _diagnosis(args):
    """One diagnosis for the metrics (fresh roots: unreadable paths are per run)."""
    from ..metrics.diagnose_exporter import Diagnosis

    started, t0 = time.time(), time.monotonic()
    state = dg.HostState(_roots(args))
    strips = [dg.diagnose_file(state, path, op=args.op) for path in args.files]
    if args.pid is not None:
        strips.extend(dg.diagnose_pid(state, args.pid))
    return Diagnosis(state, dg.diagnose_host(state), strips, started, time.monotonic() - t0)


def run(args):
    roots = _roots(args)
    if args.prometheus is not None or args.textfile is not None:
        if args.observe or args.svg or args.json:
            raise UsageError("--prometheus/--textfile go without --observe, --svg and --json")
        return metrics_outputs.diagnose_metrics(args, lambda: _diagnosis(args), None)
    if args.colour is None:
        args.colour = sys.stdout.isatty() and not args.json
    state = dg.HostState(roots)
    host = [] if (args.no_host and (args.files or args.pid)) else dg.diagnose_host(state)
    strips = []
    for path in args.files:
        strips.append(dg.diagnose_file(state, path, op=args.op))
    if args.pid is not None:
        pstrips = dg.diagnose_pid(state, args.pid)
        if args.observe:
            from ..host import observe

            status(f"pmemtrace diagnose: recording fs_dax events of {args.pid} for {args.observe:g} s")
            events, lost = observe.collect(roots, args.pid, args.observe)
            observe.annotate(pstrips, events)
            if lost:
                status(f"pmemtrace diagnose: {lost} fs_dax events were lost: the observed column may miss faults")
        if not pstrips:
            status(f"pmemtrace diagnose: process {args.pid} has no DAX mappings")
        strips.extend(pstrips)
    if args.observe and args.pid is None:
        raise UsageError("--observe goes with --pid PID")
    if args.svg:
        if not strips:
            raise UsageError("--svg draws files or mappings: give FILE... or --pid")
        try:
            write_svg(args.svg, strips)
        except OSError as exc:
            raise UsageError(f"--svg {args.svg}: {exc.strerror}") from None
        status(f"pmemtrace diagnose: wrote {args.svg}")
    if args.json:
        print_json(
            {
                "kernel": state.kernel.to_json(),
                "inventory": state.inv.to_json(),
                "mounts": [m.to_json() for m in state.mounts if m.dax is not None],
                "findings": [f.to_json() for f in host],
                "strips": [s.to_json() for s in strips],
                "unreadable": roots.unreadable_json(),
                "roots": {"sysfs": roots.sysfs, "procfs": roots.procfs},
            }
        )
        return 0
    out = sys.stdout
    if host:
        out.write(f"kernel {state.kernel.release or '?'}\n")
        table(_verdict_rows(host), ["kind", "subject", "verdict", "code", "finding", "remedy"], out)
    for s in strips:
        _print_strip(s, args.colour, out)
    if strips and any(s.chunks for s in strips):
        out.write("\nlegend: " + terminal_legend(strips) + "\n")
    return 0
