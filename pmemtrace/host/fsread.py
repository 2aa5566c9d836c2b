"""The OS boundary for host diagnostics: every read of /sys and /proc goes
through a :class:`Roots` object, so the same code runs on a live host and on
a recorded or hand-made fixture tree (``fixtures/<release>/<config>/sys/...``).

Readers never raise for a missing or unreadable file: they return ``None``
and note the path in :attr:`Roots.unreadable`, so the diagnosis can say what
it could not see instead of failing.  (psutil's ``PROCFS_PATH`` idea, style.md
point 10.)
"""

import errno
import os
import re

SYSFS_PATH = "/sys"
_HUGE_NUMBER = re.compile(r"[0-9a-fA-F]{33}")
PROCFS_PATH = "/proc"
BOOT_PATH = "/boot"


class Roots:
    def __init__(self, sysfs_root=None, procfs_root=None, boot_root=None, live=None):
        self.sysfs = sysfs_root or SYSFS_PATH
        self.procfs = procfs_root or PROCFS_PATH
        self.boot = boot_root or BOOT_PATH
        # live: the roots are the running system's, so commands such as
        # xfs_info and FIEMAP on real files make sense.
        self.live = (self.sysfs == SYSFS_PATH and self.procfs == PROCFS_PATH) if live is None else live
        self.unreadable = []  # [(path, reason)]

    # -- paths ---------------------------------------------------------------
    def sys(self, *parts):
        return os.path.join(self.sysfs, *[p.lstrip("/") for p in parts])

    def proc(self, *parts):
        return os.path.join(self.procfs, *[p.lstrip("/") for p in parts])

    # -- reads ---------------------------------------------------------------
    def read(self, path, note=True):
        """Text of *path* stripped, or None if it is missing/unreadable."""
        try:
            with open(path, "rb") as f:
                data = f.read(1 << 20)
        except FileNotFoundError:
            return None
        except (PermissionError, IsADirectoryError, OSError, ValueError) as exc:
            # ValueError: a path built from a file holding a NUL byte
            if note:
                why = (
                    "permission denied"
                    if getattr(exc, "errno", None) in (errno.EACCES, errno.EPERM)
                    else (getattr(exc, "strerror", None) or str(exc))
                )
                self.unreadable.append((path, why))
            return None
        text = data.decode("utf-8", "replace").strip()
        if _HUGE_NUMBER.search(text):
            # no sysfs/procfs file holds a number beyond 128 bits: a damaged
            # or hand-edited fixture; say so rather than carry it on
            if note:
                self.unreadable.append((path, "holds a number of more than 128 bits"))
            return None
        return text

    def lines(self, path, note=True):
        """An iterator over the lines of *path* (read as it goes, so a file
        of any size costs one line of memory), or None if it is missing or
        unreadable (noted as for :meth:`read`)."""
        try:
            f = open(path, "rb")
        except FileNotFoundError:
            return None
        except OSError as exc:
            if note:
                why = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else (exc.strerror or str(exc))
                self.unreadable.append((path, why))
            return None
        return _decoded_lines(f)

    def read_int(self, path, base=0):
        s = self.read(path)
        if s is None or s == "":
            return None
        try:
            v = int(s.split()[0], base)
        except ValueError:
            self.unreadable.append((path, f"not a number: {s[:40]!r}"))
            return None
        if not -(1 << 64) < v < 1 << 64:  # sysfs numbers are 64-bit at most
            self.unreadable.append((path, f"number out of range: {s[:40]!r}..."))
            return None
        return v

    def listdir(self, path):
        try:
            return sorted(os.listdir(path))
        except FileNotFoundError:
            return []
        except OSError as exc:
            self.unreadable.append((path, exc.strerror or str(exc)))
            return []

    def realpath(self, path):
        return os.path.realpath(path)

    def link_name(self, path):
        """Basename of a symlink's target (e.g. a ``driver`` link), or None."""
        try:
            return os.path.basename(os.readlink(path))
        except OSError:
            return None

    def exists(self, path):
        return os.path.exists(path)

    def unreadable_json(self):
        return [{"path": p, "reason": r} for p, r in self.unreadable]


def _decoded_lines(f):
    with f:
        for raw in f:
            yield raw.decode("utf-8", "replace").rstrip("\n")
