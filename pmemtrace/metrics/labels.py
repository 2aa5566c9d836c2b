"""Label values for a device number: the mount and filesystem type from
mountinfo, or ``devdax`` for a /dev/daxX.Y character device."""

import os
from typing import Optional


class DeviceLabels:
    """``"major:minor"`` -> (device, mount, fs), read from
    ``PROCFS/self/mountinfo`` once, and again when a device not seen in it
    appears (a mount made after watch started)."""

    def __init__(self, procfs: str = "/proc", sysfs: str = "/sys"):
        self.procfs, self.sysfs = procfs, sysfs
        self._mounts: dict[str, tuple[str, str]] = {}
        self._known: dict[Optional[str], tuple[str, str, str]] = {}
        self._read()

    def _read(self) -> None:
        from ..host.mounts import parse_mountinfo

        try:
            with open(os.path.join(self.procfs, "self", "mountinfo"), encoding="utf-8", errors="replace") as f:
                mounts = parse_mountinfo(f.read())
        except OSError:
            mounts = []
        found: dict[str, tuple[str, str]] = {}
        for m in mounts:
            found.setdefault(f"{m.major}:{m.minor}", (m.mountpoint, m.fstype))
        self._mounts = found

    def __call__(self, dev: Optional[str]) -> tuple[str, str, str]:
        got = self._known.get(dev)
        if got is not None:
            return got
        if dev is None:
            got = ("other", "", "")
        else:
            if dev not in self._mounts:
                self._read()
            if dev in self._mounts:
                mount, fs = self._mounts[dev]
                got = (dev, mount, fs)
            else:
                name = os.path.basename(os.path.realpath(os.path.join(self.sysfs, "dev", "char", dev)))
                got = (dev, f"/dev/{name}", "devdax") if name.startswith("dax") else (dev, "", "")
        self._known[dev] = got
        return got
