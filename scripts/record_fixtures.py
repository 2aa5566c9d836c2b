#!/usr/bin/env python3
"""Regenerate fixtures/<release>/<config>/ from the lab kernels.

Boots each kernel once under QEMU with memmap= pmem and records the sysfs,
procfs, ndctl/daxctl and tracefs state pmemtrace reads, for every namespace
configuration in pmemtrace.lab.fixtures.CONFIGS (fsdax map=mem/dev, devdax;
4K/2M/1G align).  Same as ``pmemtrace lab record-fixtures``; see docs/lab.md.

    .venv/bin/python scripts/record_fixtures.py [--kernels 6.1,6.12,7]
"""

import sys

from pmemtrace.cli import main

if __name__ == "__main__":
    sys.exit(main(["lab", "record-fixtures"] + sys.argv[1:]))
