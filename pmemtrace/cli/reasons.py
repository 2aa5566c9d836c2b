"""pmemtrace reasons: the reason codes, their kernel rules and remedies."""

import argparse

from ..errors import UsageError
from ..model.reasons import REASONS
from ._common import code_arg, print_json, table


def add_parser(sub):
    p = sub.add_parser(
        "reasons",
        help="list the reason codes with their kernel rule, citation and remedy",
        epilog="examples:\n  pmemtrace reasons\n  pmemtrace reasons pmd-colour-mismatch\n  pmemtrace reasons --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("code", nargs="?", type=code_arg, help="show one code in full")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)
    return p


def run(args):
    if args.code:
        if args.code not in REASONS:
            raise UsageError(f"unknown reason code {args.code!r}; 'pmemtrace reasons' lists them")
        r = REASONS[args.code]
        if args.json:
            print_json(r.to_json())
            return 0
        print(
            f"{r.code} ({r.kind})\n  what:     {r.summary}\n  rule:     {r.rule}\n"
            f"  citation: {r.citation}\n  remedy:   {r.remedy}"
        )
        return 0
    if args.json:
        print_json([r.to_json() for r in REASONS.values()])
        return 0
    table([(r.code, r.kind, r.summary[:60]) for r in REASONS.values()], ["code", "kind", "what"])
    return 0
