"""Host diagnostics: sysfs/procfs readers (every one rooted at an injectable
``sysfs_root``/``procfs_root``), the pmem inventory, mounts, kernel
capabilities, and the verdicts behind ``pmemtrace diagnose``.

- :mod:`.codes`: host codes, findings and advice;
- :mod:`.verdicts`: :func:`diagnose_host`, one verdict per namespace, dax
  device, DAX mount and kernel capability;
- :mod:`.cases`: sysfs -> ``case.device``, and the cases diagnose models;
- :mod:`.strips`: :func:`diagnose_file` and :func:`diagnose_pid`, per 2 MiB
  chunk verdicts.

>>> from pmemtrace.host import Roots, HostState, diagnose_host
"""

from .fsread import Roots
from .strips import diagnose_file, diagnose_pid
from .verdicts import HostState, diagnose_host

__all__ = ["Roots", "HostState", "diagnose_host", "diagnose_file", "diagnose_pid"]
