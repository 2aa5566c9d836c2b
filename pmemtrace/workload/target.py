"""Where a scenario runs: a directory on a DAX filesystem or a devdax
character device, and the geometry the case file needs, read from sysfs.

All paths go through ``root`` (default ``/``) so tests can point at a fake
sysfs tree.
"""

import os
import stat
from dataclasses import dataclass, field
from typing import Optional

from ..errors import NoDaxMapping, UsageError

MiB = 1 << 20


def _read(path, default=None):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return default


def _int(path, default=None):
    v = _read(path)
    if v is None or v == "":
        return default
    try:
        return int(v, 0)
    except ValueError:
        return default


@dataclass
class Target:
    mode: str  # fsdax | devdax
    path: str  # the directory or the device node
    device: dict  # the case's "device" object
    dax: bool = True
    fs: Optional[str] = None
    mount: Optional[str] = None
    mount_options: str = ""
    notes: list = field(default_factory=list)


def mount_of(path, root="/"):
    """(mount point, fstype, options, source) for the mount holding path."""
    path = os.path.realpath(path)
    best = None
    try:
        with open(os.path.join(root, "proc/self/mountinfo")) as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        pre, _, post = line.partition(" - ")
        parts = pre.split()
        if len(parts) < 6:
            continue
        mnt = parts[4].replace("\\040", " ")
        opts = parts[5]
        fstype, source, sopts = (post.split() + ["", "", ""])[:3]
        if path == mnt or path.startswith(mnt.rstrip("/") + "/"):
            if best is None or len(mnt) >= len(best[0]):
                best = (mnt, fstype, opts + "," + sopts, source)
    return best


def _is_dax_mount(opts):
    return any(o == "dax" or o == "dax=always" for o in opts.split(","))


def fsdax_device(st_dev, root="/"):
    """The case's device object for the block device st_dev, from sysfs."""
    major, minor = os.major(st_dev), os.minor(st_dev)
    sysdev = os.path.join(root, "sys/dev/block", f"{major}:{minor}")
    if not os.path.exists(sysdev):
        return None, [f"no sysfs entry for block device {major}:{minor}"]
    real = os.path.realpath(sysdev)
    part_start = 0
    if os.path.exists(os.path.join(real, "partition")):
        part_start = (_int(os.path.join(real, "start"), 0) or 0) * 512
        real = os.path.dirname(real)
    disk = os.path.basename(real)
    devlink = os.path.join(real, "device")
    notes = []
    dev = {"mode": "fsdax", "dev": f"{major}:{minor}"}
    if not os.path.exists(devlink):
        return None, [f"{disk} has no device link (not a pmem disk)"]
    nd = os.path.realpath(devlink)
    name = os.path.basename(nd)
    if name.startswith("pfn"):
        loc = _read(os.path.join(nd, "mode"), "ram")
        dev["map"] = "dev" if loc == "pmem" else "mem"
        dev["align"] = _int(os.path.join(nd, "align"), 2 * MiB)
        start = _int(os.path.join(nd, "resource"))
        size = _int(os.path.join(nd, "size"))
    elif name.startswith("namespace"):
        dev["map"] = "mem"
        dev["align"] = 2 * MiB
        start = _int(os.path.join(nd, "resource"))
        size = _int(os.path.join(nd, "size"))
        notes.append(f"{name} has no pfn device (memmap= namespace in memory mode: data offset 0)")
    else:
        return None, [f"{disk} sits on {name}, not an nvdimm namespace or pfn device"]
    if size is None:
        size = (_int(os.path.join(real, "size"), 0) or 0) * 512
    if start is None:
        notes.append("namespace resource unreadable (not root?): data_start 0 assumed")
        start = 0
    dev["data_start"] = hex(start + part_start)
    dev["size"] = size - part_start if part_start else size
    if part_start:
        notes.append(f"partition starts {part_start:#x} into {disk}")
    return dev, notes


def open_dir(path, allow_non_dax=False, root="/"):
    if not os.path.isdir(path):
        raise UsageError(f"--dir {path}: not a directory")
    if not os.access(path, os.W_OK):
        raise UsageError(f"--dir {path}: not writable")
    m = mount_of(path, root)
    mnt, fstype, opts = (m[0], m[1], m[2]) if m else (None, None, "")
    dax = bool(m) and _is_dax_mount(opts)
    if not dax and not allow_non_dax:
        raise NoDaxMapping(
            f"--dir {path}: {mnt or '?'} ({fstype or '?'}) is not mounted with -o dax; mount an fsdax "
            "namespace's filesystem with '-o dax' (or pass --allow-non-dax to exercise the engine on "
            "page-cache files: nothing DAX will happen)")
    st = os.stat(path)
    dev, notes = fsdax_device(st.st_dev, root)
    if dev is None:
        if dax:
            raise NoDaxMapping(f"--dir {path}: cannot find the pmem device behind it: {'; '.join(notes)}")
        sv = os.statvfs(path)
        total = sv.f_blocks * sv.f_frsize
        dev = {"mode": "fsdax", "map": "mem", "align": 2 * MiB, "data_start": "0x0",
               "size": (total + 2 * MiB - 1) & ~(2 * MiB - 1), "dev": f"{os.major(st.st_dev)}:{os.minor(st.st_dev)}"}
        notes.append(f"{mnt} is not DAX: device geometry is a stand-in (size of the filesystem, data_start 0)")
    return Target("fsdax", os.path.realpath(path), dev, dax=dax, fs=fstype, mount=mnt, mount_options=opts,
                  notes=notes)


def open_device(path, root="/"):
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"--device {path}: {exc.strerror}") from None
    if not stat.S_ISCHR(st.st_mode):
        raise NoDaxMapping(f"--device {path}: not a character device; pmemtrace run --device takes a devdax "
                           "device such as /dev/dax0.0 (use --dir for an fsdax filesystem)")
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    sysdev = os.path.realpath(os.path.join(root, "sys/dev/char", f"{major}:{minor}"))
    subsys = os.path.basename(os.path.realpath(os.path.join(sysdev, "subsystem")))
    if subsys != "dax":
        raise NoDaxMapping(f"--device {path}: {major}:{minor} is a {subsys or 'unknown'} device, not device-dax "
                           "(ndctl create-namespace -m devdax makes one)")
    # attributes live on the dax bus device (sysfs class dax -> device)
    base = sysdev
    if not os.path.exists(os.path.join(base, "size")) and os.path.exists(os.path.join(base, "device")):
        base = os.path.realpath(os.path.join(base, "device"))
    align = _int(os.path.join(base, "align"), 2 * MiB)
    size = _int(os.path.join(base, "size"))
    start = _int(os.path.join(base, "resource"))
    ranges = []
    i = 0
    while os.path.isdir(os.path.join(base, f"mapping{i}")):
        mp = os.path.join(base, f"mapping{i}")
        s, e, pg = _int(os.path.join(mp, "start")), _int(os.path.join(mp, "end")), _int(os.path.join(mp, "page_offset"))
        if s is not None and e is not None:
            ranges.append({"start": hex(s), "length": e - s + 1, "pgoff": pg or 0})
        i += 1
    notes = []
    dev = {"mode": "devdax", "align": align, "size": size, "dev": f"{major}:{minor}"}
    if start is None and ranges:
        start = int(ranges[0]["start"], 16)
    if start is None:
        notes.append("device resource unreadable: data_start 0 assumed")
        start = 0
    dev["data_start"] = hex(start)
    if len(ranges) > 1:
        dev["ranges"] = ranges
    if size is None:
        raise NoDaxMapping(f"--device {path}: cannot read its size from {base}")
    return Target("devdax", path, dev, notes=notes)
