"""Helpers shared by subcommands: JSON output, tables, examples."""

import json
import sys

from tabulate import tabulate


def print_json(obj, out=None):
    out = out or sys.stdout
    json.dump(obj, out, indent=1, sort_keys=False)
    out.write("\n")


def table(rows, headers, out=None):
    out = out or sys.stdout
    out.write(tabulate(rows, headers=headers, tablefmt="simple", disable_numparse=True))
    out.write("\n")


def status(msg):
    """Status lines go to stderr so stdout stays parseable."""
    print(msg, file=sys.stderr)
