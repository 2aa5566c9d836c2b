"""Mounts (``/proc/self/mountinfo``) and filesystem allocation geometry.

mountinfo format: fs/proc_namespace.c ``show_mountinfo()``:
``id parent major:minor root mountpoint options [optional...] - fstype source superoptions``
with spaces, tabs, newlines and backslashes octal-escaped (``\\040``).

DAX mount options: ext4 and xfs accept ``dax`` (= ``dax=always``),
``dax=always``, ``dax=inode`` (per-file ``FS_XFLAG_DAX``), ``dax=never``
(fs/ext4/super.c, fs/xfs/xfs_super.c; shown in superoptions).
"""

import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from typing import Optional


def _unescape(s):
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), s)


@dataclass
class Mount:
    mount_id: int
    major: int
    minor: int
    root: str
    mountpoint: str
    options: str
    fstype: str
    source: str
    superoptions: str

    @property
    def all_options(self):
        return set(self.options.split(",")) | set(self.superoptions.split(","))

    @property
    def dax(self):
        """'always', 'inode', 'never' or None (no DAX option seen)."""
        opts = self.all_options
        for o in opts:
            if o == "dax":
                return "always"
            if o.startswith("dax="):
                return o[4:]
        return None

    @property
    def device_name(self):
        s = self.source
        return s[5:] if s.startswith("/dev/") else None

    def to_json(self):
        d = asdict(self)
        d["dax"] = self.dax
        return d


def parse_mountinfo(text):
    out = []
    for line in (text or "").splitlines():
        parts = line.split(" ")
        try:
            sep = parts.index("-")
            mid = int(parts[0])
            maj, mnr = (int(x) for x in parts[2].split(":"))
            out.append(
                Mount(
                    mid,
                    maj,
                    mnr,
                    _unescape(parts[3]),
                    _unescape(parts[4]),
                    parts[5],
                    parts[sep + 1],
                    _unescape(parts[sep + 2]),
                    parts[sep + 3] if len(parts) > sep + 3 else "",
                )
            )
        except (ValueError, IndexError):
            continue  # a line we do not understand is skipped, not fatal
    return out


def read_mounts(roots, pid="self"):
    return parse_mountinfo(roots.read(roots.proc(str(pid), "mountinfo")))


def mount_for_dev(mounts, major, minor):
    for m in mounts:
        if (m.major, m.minor) == (major, minor):
            return m
    return None


def mount_for_path(mounts, path):
    """The mount that holds *path*: the longest mount point containing it,
    and of several mounts on one mount point the last (it hides the others)."""
    best = None
    for m in mounts:
        mp = m.mountpoint.rstrip("/") or "/"
        if (path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/") and (
            best is None or len(mp) >= len(best.mountpoint.rstrip("/") or "/")
        ):
            best = m
    return best


# ---------------------------------------------------------------------------
# filesystem geometry


@dataclass
class Geometry:
    fstype: str
    block_size: Optional[int] = None
    # allocation unit the fs aligns file data to, in bytes (xfs sunit, ext4 stride)
    stripe_unit: Optional[int] = None
    stripe_width: Optional[int] = None
    extsize: Optional[int] = None  # xfs: extent size hint (rtextsize / inode extsize)
    source: str = ""  # which tool/text gave it
    raw: dict[str, str] = field(default_factory=dict)

    def to_json(self):
        d = asdict(self)
        d.pop("raw")
        return d


def parse_xfs_info(text):
    """``xfs_info`` / ``mkfs.xfs -N`` output: ``data = bsize=4096 ... sunit=512 swidth=512 blks``.
    sunit/swidth are in filesystem blocks (xfsprogs spaceman/xfs_info)."""
    g = Geometry("xfs", source="xfs_info")
    section = None
    for line in (text or "").splitlines():
        m = re.match(r"^(\S+)\s*=", line)
        if m:
            section = m.group(1)
        for k, v in re.findall(r"(\w+)=(\S+)", line):
            key = f"{section}.{k}" if section else k
            g.raw[key] = v
    try:
        g.block_size = int(g.raw.get("data.bsize"))
        su = int(g.raw.get("data.sunit", 0))
        sw = int(g.raw.get("data.swidth", 0))
        g.stripe_unit = su * g.block_size if su else 0
        g.stripe_width = sw * g.block_size if sw else 0
        ext = g.raw.get("realtime.extsz")
        if ext is not None and int(ext) > g.block_size:
            g.extsize = int(ext)
    except (TypeError, ValueError):
        pass
    return g


def parse_dumpe2fs(text):
    """``dumpe2fs -h``: ``Block size:``, ``RAID stride:``, ``RAID stripe width:``
    (blocks)."""
    g = Geometry("ext4", source="dumpe2fs -h")
    for line in (text or "").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            g.raw[k.strip()] = v.strip()
    try:
        g.block_size = int(g.raw.get("Block size"))
    except (TypeError, ValueError):
        return g
    for key, attr in (("RAID stride", "stripe_unit"), ("RAID stripe width", "stripe_width")):
        v = g.raw.get(key)
        setattr(g, attr, int(v) * g.block_size if v and v.isdigit() else 0)
    return g


def geometry_from_options(mount):
    """Geometry from the mount's own options, readable without root and in
    fixtures: xfs prints ``sunit=``/``swidth=`` in 512-byte units when set
    (fs/xfs/xfs_super.c xfs_fs_show_options()); ext4 prints ``stripe=`` in
    blocks when s_stripe is non-zero, so its absence means no stripe
    alignment (fs/ext4/super.c _ext4_show_options())."""
    opts = {}
    for o in mount.superoptions.split(",") + mount.options.split(","):
        k, _, v = o.partition("=")
        opts.setdefault(k, v)
    if mount.fstype == "xfs":
        g = Geometry("xfs", source="mount options")
        try:
            g.stripe_unit = int(opts.get("sunit") or 0) * 512
            g.stripe_width = int(opts.get("swidth") or 0) * 512
        except ValueError:
            return None
        return g
    if mount.fstype == "ext4":
        g = Geometry("ext4", source="mount options", block_size=None)
        try:
            g.stripe_unit = int(opts.get("stripe") or 0) * 4096  # DAX needs 4 KiB blocks
        except ValueError:
            return None
        return g
    return None


def _run(argv):
    exe = shutil.which(argv[0]) or next(
        (p for p in (f"/usr/sbin/{argv[0]}", f"/sbin/{argv[0]}") if shutil.os.path.exists(p)), None
    )
    if exe is None:
        return None, f"{argv[0]} not installed"
    try:
        p = subprocess.run([exe] + argv[1:], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, str(exc)
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or [f"exit {p.returncode}"])[-1]
    return p.stdout, None


def read_geometry(mount, roots):
    """Allocation geometry of a mounted fs, or (None, why-not).  Live hosts
    only (runs xfs_info / dumpe2fs -h); fixture trees may carry the tool's
    text in ``fs/<device>.xfs_info`` or ``fs/<device>.dumpe2fs``."""
    dev = mount.device_name
    if dev:
        for suffix, parser in (("xfs_info", parse_xfs_info), ("dumpe2fs", parse_dumpe2fs)):
            txt = roots.read(roots.sys("..", "fs", f"{dev.replace('/', '_')}.{suffix}"), note=False)
            if txt:
                return parser(txt), None
    err = "fixture tree carries no filesystem geometry"
    if roots.live and mount.fstype == "xfs":
        out, err = _run(["xfs_info", mount.mountpoint])
        if out:
            return parse_xfs_info(out), None
    elif roots.live and mount.fstype in ("ext4", "ext2", "ext3"):
        out, err = _run(["dumpe2fs", "-h", mount.source])
        if out:
            return parse_dumpe2fs(out), None
    g = geometry_from_options(mount)
    if g is not None:
        return g, None
    return None, err if mount.fstype in ("xfs", "ext4", "ext2", "ext3") else f"no geometry reader for {mount.fstype}"
