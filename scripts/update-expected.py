#!/usr/bin/env python3
"""Regenerate tests/expected/ from the installed pmemtrace and show what changed.

tests/expected/<example>.json is the byte-exact stdout of
``pmemtrace explain --json --indent 1 --example <example>``; tests/test_cli_model.py
compares every example against it.  When a change to the model is intended,
run this script, read the diff it prints against the kernel rule that the
change follows, and commit the new files with the change (the commit message
names the intended behaviour change).

    .venv/bin/python scripts/update-expected.py          # rewrite, print a unified diff
    .venv/bin/python scripts/update-expected.py --check  # only compare; exit 1 on a difference
"""

import argparse
import difflib
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPECTED = os.path.join(ROOT, "tests", "expected")


def example_names() -> list:
    from pmemtrace.cli.explain import example_names as names

    return list(names())


def explain_json(name: str) -> str:
    """The command's stdout, exactly as a user gets it."""
    p = subprocess.run(
        [sys.executable, "-m", "pmemtrace", "explain", "--json", "--indent", "1", "--example", name],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return p.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a file differs")
    args = ap.parse_args()
    os.makedirs(EXPECTED, exist_ok=True)
    names = example_names()
    changed = 0
    for name in names:
        path = os.path.join(EXPECTED, name + ".json")
        new = explain_json(name)
        old = ""
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
        if new == old:
            continue
        changed += 1
        sys.stdout.writelines(
            difflib.unified_diff(
                old.splitlines(True),
                new.splitlines(True),
                f"a/tests/expected/{name}.json",
                f"b/tests/expected/{name}.json",
            )
        )
        if not args.check:
            with open(path, "w") as f:
                f.write(new)
    stale = sorted({f[:-5] for f in os.listdir(EXPECTED) if f.endswith(".json")} - set(names))
    for name in stale:
        changed += 1
        print(f"tests/expected/{name}.json: no such example any more" + ("" if args.check else " (removed)"))
        if not args.check:
            os.remove(os.path.join(EXPECTED, name + ".json"))
    verb = "differ" if args.check else "rewritten"
    print(f"update-expected: {len(names)} examples, {changed} {verb}", file=sys.stderr)
    return 1 if (changed and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
