"""pmemtrace model: the model's building blocks on their own (namespace
geometry, kernel profiles)."""

import argparse

from ..model.geometry import layout_from_args
from ..model.profiles import PROFILES, select_profile
from ..units import format_size
from ._common import print_json, release_arg, table

EPILOG = """\
examples:
  pmemtrace model namespace --size 16G --start 0x100000000 --mode fsdax --map dev --align 2M
  pmemtrace model namespace --size 1G --start 4G --map mem           # memmap=1G!4G, ndctl --map=mem
  pmemtrace model namespace --size 1G --start 4G --align 1G --json   # refused: error key
  pmemtrace model profiles
"""


def add_parser(sub):
    p = sub.add_parser(
        "model",
        help="namespace geometry and kernel profiles of the reference model",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    s = p.add_subparsers(dest="what", metavar="WHAT")
    n = s.add_parser("namespace", help="the layout the kernel gives a namespace (nd_pfn_init)")
    n.add_argument("--size", required=True, help="namespace size (e.g. 16G)")
    n.add_argument("--start", required=True, help="physical start (e.g. 0x100000000 or 4G)")
    n.add_argument("--mode", default="fsdax", choices=("fsdax", "devdax", "raw"))
    n.add_argument("--map", default="dev", choices=("dev", "mem"))
    n.add_argument("--align", default="2M", help="4K, 2M or 1G")
    n.add_argument(
        "--bus", default="e820", choices=("e820", "nfit"), help="e820 (memmap=, legacy pmem) or nfit (ACPI NVDIMM)"
    )
    n.add_argument("--kernel", metavar="RELEASE", type=release_arg)
    n.add_argument("--json", action="store_true")
    n.set_defaults(func=run_namespace)
    pr = s.add_parser("profiles", help="the kernel behaviour profiles")
    pr.add_argument("--kernel", metavar="RELEASE", type=release_arg, help="show the profile selected for this release")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=run_profiles)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])
    return p


def run_namespace(args):
    lay = layout_from_args(args.size, args.start, args.mode, args.map, args.align, args.kernel, args.bus)
    if args.json:
        print_json(lay.to_json())
        return 1 if lay.error else 0
    print(
        f"namespace {format_size(lay.size)} at {lay.start:#x}, {args.mode} map={args.map} "
        f"align={args.align} ({args.bus}), profile {lay.profile}"
    )
    if lay.error:
        print(f"  refused: {lay.error}")
        return 1
    print(f"  data offset   {lay.data_offset:#x} ({format_size(lay.data_offset)})")
    print(f"  data start    {lay.data_start:#x} (physical)")
    print(f"  data size     {lay.data_size:#x} ({format_size(lay.data_size)}), {lay.npfns} pages")
    if lay.end_trunc:
        print(f"  end truncated {format_size(lay.end_trunc)}")
    where = {"device": "on the device (vmem_altmap)", "ram": "in System RAM", "none": "none"}
    print(
        f"  memmap        {format_size(lay.memmap_bytes)} {where[lay.memmap_location]}"
        + (f", pfn mode {lay.pfn_mode}" if lay.pfn_mode else ", no pfn device (raw)")
    )
    for n in lay.notes:
        print(f"  note: {n}")
    return 0


def run_profiles(args):
    profs = [select_profile(args.kernel)] if args.kernel else PROFILES
    if args.json:
        print_json([p.to_json() for p in profs])
        return 0
    table(
        [
            (
                p.name,
                p.pmd_insert_function,
                "yes" if p.has_pfn_t else "no",
                "yes" if p.gup_uses_get_dev_pagemap else "no",
                "insert fn" if p.zero_pmd_via_insert else "set_pmd_at",
                "yes" if p.vma_lock_faults else "no",
                p.verified_on or "source only",
            )
            for p in profs
        ],
        [
            "profile",
            "PMD insert",
            "pfn_t",
            "GUP get_dev_pagemap",
            "huge zero via",
            "VMA-lock faults",
            "verified in the lab on",
        ],
    )
    if args.kernel and profs[0].release_note:
        print(f"note: {profs[0].release_note}")
    return 0
