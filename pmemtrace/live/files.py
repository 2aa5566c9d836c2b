"""What ``watch`` knows about the files it sees: the ``--path`` filter and
(dev, ino) -> FIEMAP extents and device geometry for the attributor."""

import os
from typing import Optional

from ..errors import UsageError
from ..events import Event
from .attribute import FileInfo


def kernel_dev(st_dev: int) -> int:
    """A userspace dev_t as the kernel's (major << 20 | minor), as fs_dax prints it."""
    return (os.major(st_dev) << 20) | os.minor(st_dev)


class PathFilter:
    """Events of one file, or of the filesystem mounted at a directory."""

    def __init__(self, path: str):
        try:
            st = os.stat(path)
        except FileNotFoundError:
            raise UsageError(f"--path {path}: no such file or directory") from None
        self.dev = kernel_dev(st.st_dev)
        self.ino = st.st_ino if not os.path.isdir(path) else None

    def __call__(self, ev: Event) -> bool:
        d = ev.fields.get("dev")
        if d is None:
            return True  # probe hits without a file: joined to rows by the views
        return d == self.dev and (self.ino is None or ev.fields.get("ino") == self.ino)


class LiveFiles:
    """(dev, ino) -> FileInfo with FIEMAP extents, found via /proc/<pid>/maps
    of the processes seen in the trace (:attr:`pids`)."""

    def __init__(self, root: str = "/", proc_root: str = "/proc"):
        self.root = root  # where sysfs lives (tests point it at a fixture tree)
        self.proc_root = proc_root
        self.cache: dict[tuple, Optional[FileInfo]] = {}
        self.devices: dict[int, Optional[dict]] = {}
        self.pids: set[int] = set()

    def _path(self, dev: int, ino: int) -> Optional[str]:
        for pid in list(self.pids):
            try:
                with open(os.path.join(self.proc_root, str(pid), "maps")) as f:
                    for line in f:
                        parts = line.split(None, 5)
                        if len(parts) < 6:
                            continue
                        maj, mnr = (int(x, 16) for x in parts[3].split(":"))
                        if (maj << 20 | mnr) == dev and int(parts[4]) == ino:
                            return parts[5].strip()
            except (OSError, ValueError):
                continue
        return None

    def __call__(self, dev: int, ino: int) -> Optional[FileInfo]:
        key = (dev, ino)
        if key in self.cache:
            return self.cache[key]
        info = None
        path = self._path(dev, ino)
        if path and not path.startswith("/dev/"):
            try:
                from ..workload.engine import fiemap

                st = os.stat(path)
                if st.st_ino == ino:
                    ext = fiemap(path)
                    info = FileInfo(extents=[e.to_case() for e in ext], size=st.st_size, device=self._device(dev))
            except Exception:  # engine not built, file gone, fs without FIEMAP
                info = None
        self.cache[key] = info
        return info

    def _device(self, dev: int) -> Optional[dict]:
        """The device geometry (data start, size, map, align) of the pmem
        block device behind kernel dev_t *dev*, from sysfs (None if unknown:
        the attributor then assumes an aligned device and says so)."""
        if dev not in self.devices:
            from ..workload.target import fsdax_device

            geo, _notes = fsdax_device(os.makedev(dev >> 20, dev & 0xFFFFF), self.root)
            self.devices[dev] = geo
        return self.devices[dev]
