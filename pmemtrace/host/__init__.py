"""Host diagnostics: sysfs/procfs readers (every one rooted at an injectable
``sysfs_root``/``procfs_root``), the pmem inventory, mounts, kernel
capabilities, and the verdicts behind ``pmemtrace diagnose``.

>>> from pmemtrace.host import Roots, HostState, diagnose_host
"""

from .diagnose import HostState, diagnose_file, diagnose_host, diagnose_pid
from .fsread import Roots

__all__ = ["Roots", "HostState", "diagnose_host", "diagnose_file", "diagnose_pid"]
