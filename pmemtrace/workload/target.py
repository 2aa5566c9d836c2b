"""Where a scenario runs: a directory on a DAX filesystem or a devdax
character device, and the geometry the case file needs.

Every read of /sys and /proc goes through :class:`pmemtrace.host.fsread.Roots`
(mounts through :mod:`pmemtrace.host.mounts`, the device through
:mod:`pmemtrace.host.cases`), so tests point it at a fake tree.
"""

import os
import stat
from dataclasses import dataclass, field
from typing import Optional

from ..errors import NoDaxMapping, UsageError
from ..host import cases as host_cases
from ..host import mounts as mounts_mod
from ..host.fsread import Roots
from ..model.build import case_to_json, dev_t
from ..model.build import fsdax_device as _fsdax_device
from ..model.case import Device

MiB = 1 << 20


@dataclass
class Target:
    mode: str  # fsdax | devdax
    path: str  # the directory or the device node
    device: Device  # the case's device
    dax: bool = True
    fs: Optional[str] = None
    mount: Optional[str] = None
    mount_options: str = ""
    notes: list = field(default_factory=list)


def _roots(root: Optional[str]) -> Roots:
    """Roots for a tree whose sysfs is ROOT/sys and procfs ROOT/proc."""
    if root in (None, "/"):
        return Roots()
    return Roots(os.path.join(root, "sys"), os.path.join(root, "proc"))


def mount_of(path: str, root: str = "/") -> Optional[tuple[str, str, str, str]]:
    """(mount point, fstype, options, source) for the mount holding path."""
    m = mounts_mod.mount_for_path(mounts_mod.read_mounts(_roots(root)), os.path.realpath(path))
    if m is None:
        return None
    return m.mountpoint, m.fstype, m.options + "," + m.superoptions, m.source


def _is_dax_mount(opts: str) -> bool:
    return any(o == "dax" or o == "dax=always" for o in opts.split(","))


def fsdax_device(st_dev: int, root: str = "/") -> tuple[Optional[dict], list[str]]:
    """The case's device object (JSON) for the block device st_dev, from
    sysfs under *root*; for callers that want the dict (watch's attribution).
    :func:`pmemtrace.host.cases.block_device` gives the typed device."""
    dev, notes = host_cases.block_device(_roots(root), os.major(st_dev), os.minor(st_dev))
    if dev is None:
        return None, notes
    return _device_json(dev), notes


def _device_json(dev: Device) -> dict:
    from ..model.case import Case

    return case_to_json(Case(kernel=None, device=dev, file=None, mappings=[], accesses=[]))["device"]


def open_dir(path: str, allow_non_dax: bool = False, root: str = "/") -> Target:
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
            "page-cache files: nothing DAX will happen)"
        )
    st = os.stat(path)
    dev, notes = host_cases.block_device(_roots(root), os.major(st.st_dev), os.minor(st.st_dev))
    if dev is None:
        if dax:
            raise NoDaxMapping(f"--dir {path}: cannot find the pmem device behind it: {'; '.join(notes)}")
        total = _block_device_bytes(_roots(root), st.st_dev) or _filesystem_bytes(path)
        dev = _fsdax_device(
            data_start=0,
            size=(total + 2 * MiB - 1) & ~(2 * MiB - 1),
            map="mem",
            align=2 * MiB,
            dev=dev_t(os.major(st.st_dev), os.minor(st.st_dev)),
        )
        notes.append(f"{mnt} is not DAX: device geometry is a stand-in (size of the block device, data_start 0)")
    return Target("fsdax", os.path.realpath(path), dev, dax=dax, fs=fstype, mount=mnt, mount_options=opts, notes=notes)


def _block_device_bytes(roots: Roots, st_dev: int) -> Optional[int]:
    """Size of the block device (or partition) st_dev from sysfs. FIEMAP's
    physical offsets are relative to it and reach past the filesystem's
    statvfs size, which leaves out the filesystem's own metadata."""
    sectors = roots.read_int(roots.sys("dev", "block", f"{os.major(st_dev)}:{os.minor(st_dev)}", "size"), 10)
    return sectors * 512 if sectors else None


def _filesystem_bytes(path: str) -> int:
    sv = os.statvfs(path)
    return sv.f_blocks * sv.f_frsize


def open_device(path: str, root: str = "/") -> Target:
    try:
        st = os.stat(path)
    except OSError as exc:
        raise UsageError(f"--device {path}: {exc.strerror}") from None
    if not stat.S_ISCHR(st.st_mode):
        raise NoDaxMapping(
            f"--device {path}: not a character device; pmemtrace run --device takes a devdax "
            "device such as /dev/dax0.0 (use --dir for an fsdax filesystem)"
        )
    major, minor = os.major(st.st_rdev), os.minor(st.st_rdev)
    roots = _roots(root)
    subsys = host_cases.char_device_subsystem(roots, major, minor)
    if subsys != "dax":
        raise NoDaxMapping(
            f"--device {path}: {major}:{minor} is a {subsys or 'unknown'} device, not device-dax "
            "(ndctl create-namespace -m devdax makes one)"
        )
    dev, notes = host_cases.dax_device(roots, major, minor)
    if dev is None:
        raise NoDaxMapping(f"--device {path}: {notes[0]}")
    return Target("devdax", path, dev, notes=notes)
