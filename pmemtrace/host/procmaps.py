"""A process's mappings from ``/proc/PID/smaps`` (or ``maps``).

Line format: fs/proc/task_mmu.c ``show_map_vma()``:
``start-end perms offset major:minor inode   path``; smaps adds ``Key: value``
lines and ``VmFlags:`` with two-letter codes (``show_smap_vma_flags()``):
``sh`` VM_SHARED, ``ms`` VM_MAYSHARE, ``wr`` VM_WRITE, ``hg`` VM_HUGEPAGE,
``nh`` VM_NOHUGEPAGE, ``sf`` VM_SYNC (MAP_SYNC), ``dd`` VM_DONTDUMP.
"""

import itertools
import re
from dataclasses import asdict, dataclass, field
from typing import Optional

_LINE = re.compile(r"^([0-9a-f]+)-([0-9a-f]+)\s+(\S{4})\s+([0-9a-f]+)\s+([0-9a-f]+):([0-9a-f]+)\s+(\d+)\s*(.*)$")


@dataclass
class ProcMapping:
    start: int
    end: int
    perms: str
    offset: int
    major: int
    minor: int
    inode: int
    path: str
    vmflags: list[str] = field(default_factory=list)
    fields: dict = field(default_factory=dict)

    @property
    def length(self):
        return self.end - self.start

    @property
    def shared(self):
        return self.perms[3] == "s"

    @property
    def writable(self):
        return self.perms[1] == "w"

    @property
    def nohugepage(self):
        return "nh" in self.vmflags

    @property
    def sync(self):
        return "sf" in self.vmflags

    def to_json(self):
        return asdict(self)


def iter_maps(lines):
    """Mappings from maps or smaps lines, each yielded once its smaps lines
    are read (so a process with many mappings is parsed in constant memory)."""
    cur = None
    for line in lines:
        m = _LINE.match(line)
        if m:
            if cur is not None:
                yield cur
            cur = ProcMapping(
                int(m.group(1), 16),
                int(m.group(2), 16),
                m.group(3),
                int(m.group(4), 16),
                int(m.group(5), 16),
                int(m.group(6), 16),
                int(m.group(7)),
                m.group(8).strip(),
            )
            continue
        if cur is None:
            continue
        k, sep, v = line.partition(":")
        if not sep:
            continue
        if k == "VmFlags":
            cur.vmflags = v.split()
        else:
            cur.fields[k.strip()] = v.strip()
    if cur is not None:
        yield cur


def parse_maps(text):
    return list(iter_maps((text or "").splitlines()))


def read_status(roots, pid):
    out = {}
    for line in (roots.read(roots.proc(str(pid), "status")) or "").splitlines():
        k, sep, v = line.partition(":")
        if sep:
            out[k.strip()] = v.strip()
    return out


def read_process_maps(roots, pid, names=("smaps", "maps")):
    """(mappings, source) where source is the first of *names* ('smaps' or
    'maps') that is readable; mappings is None when none is."""
    for name in names:
        text = roots.read(roots.proc(str(pid), name))
        if text:
            return parse_maps(text), name
    return None, None


def iter_process_maps(roots, pid, names=("smaps", "maps")):
    """(iterator of mappings, source) as :func:`read_process_maps`, read line
    by line; (None, None) when no file of *names* is readable and non-empty."""
    for name in names:
        lines = roots.lines(roots.proc(str(pid), name))
        if lines is None:
            continue
        first = next(lines, None)
        if first is None:
            continue
        return iter_maps(itertools.chain((first,), lines)), name
    return None, None


def thp_disabled(status) -> Optional[bool]:
    """``THP_enabled:`` in /proc/PID/status (v5.0+, fs/proc/array.c): 0 when
    prctl(PR_SET_THP_DISABLE) is in effect."""
    v = status.get("THP_enabled")
    if v is None:
        return None
    return v.strip() == "0"


def find_mapped_file(roots, pids, dev, ino):
    """The path of the file with kernel dev_t *dev* (``MAJOR << 20 | MINOR``,
    as fs_dax events carry it) and inode *ino* that one of *pids* maps, from
    their /proc/PID/maps, or None (for ``watch``'s attribution)."""
    major, minor = dev >> 20, dev & 0xFFFFF
    for pid in pids:
        maps, _source = iter_process_maps(roots, pid, names=("maps",))
        for pm in maps or ():
            if (pm.major, pm.minor, pm.inode) == (major, minor, ino) and pm.path.startswith("/"):
                return pm.path
    return None
