"""The emulated-pmem lab: Debian kernels booted under QEMU with ``memmap=`` pmem.

Python API (see docs/lab.md)::

    from pmemtrace import lab
    k = lab.get_kernel("6.12")                  # cached, or fetched from Debian
    r = lab.run(k, "ndctl list -N", prepare=["--mode", "fsdax", "--fs", "xfs"])
    print(r.returncode, r.stdout, r.elapsed)

Nothing here imports bcc; the guest side is :mod:`pmemtrace.lab.guest`.
"""

from .kernels import DEFAULT_SERIES, SERIES, Kernel, cache_dir, cached_kernels, fetch, find, resolve
from .kernels import get as get_kernel
from .vm import DAX_MOUNT, DEFAULT_MEMMAP, NODAX_MOUNT, BootError, GuestResult, Region, run

__all__ = [
    "SERIES",
    "DEFAULT_SERIES",
    "Kernel",
    "cache_dir",
    "cached_kernels",
    "fetch",
    "find",
    "resolve",
    "get_kernel",
    "DEFAULT_MEMMAP",
    "DAX_MOUNT",
    "NODAX_MOUNT",
    "BootError",
    "GuestResult",
    "Region",
    "run",
]
