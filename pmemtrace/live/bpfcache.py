"""The compiled BPF program kept between runs, so a bcc watch starts
without clang (and without importing bcc) when nothing changed.

bcc has no object cache: every start compiles bpf/pmemtrace.bpf.c with its
embedded clang, and ``import bcc`` maps libbcc with LLVM and clang first
(benchmarks/bench_watch_start.py gives each phase).  After a start that
compiled, :func:`save` keeps what bcc loaded: each program's instructions
(bcc's ``dump_func``, what it passed to the kernel), where each map's fd
sits in them, the maps' definitions as the kernel reports them, and how
each program was attached.  :func:`load` creates the maps, relocates and
loads the programs and attaches them with bcc's own loader,
libbcc_bpf.so.0 (:mod:`pmemtrace.live.bpfsys`).

The entry's name is a hash of everything the instructions depend on (the
source and header, the compile flags -- BTF member offsets, the attached
tracepoints, filters --, the attach plan, the kernel release and build
(/proc/version), the size of its BTF, every fs_dax tracepoint format (bcc
builds TRACEPOINT_PROBE's args from them), bcc's version): any change
gives another name, so a stale entry is never loaded; it is pruned.  The
directory is ``$XDG_CACHE_HOME/pmemtrace/bpf`` (else ~/.cache/...), mode
0700; an entry (mode 0600) is loaded only if it and its directory belong
to the user and nobody else can write them, as the instructions run in
the kernel.  ``PMEMTRACE_BPF_CACHE=0`` turns the cache off.
"""

import hashlib
import importlib.util
import json
import os
import stat
from typing import Optional

from . import bpfsys

FORMAT = 1
KEEP = 16  # entries kept (the newest); older ones are removed on save


def enabled() -> bool:
    return os.environ.get("PMEMTRACE_BPF_CACHE", "1").lower() not in ("0", "no", "false", "off")


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "pmemtrace", "bpf")


def _bcc_version() -> str:
    """bcc's version.py text, found without importing bcc (the import is
    what the cache saves)."""
    try:
        spec = importlib.util.find_spec("bcc")
    except (ImportError, ValueError):
        return ""
    if spec is None or not spec.origin:
        return ""
    try:
        with open(os.path.join(os.path.dirname(spec.origin), "version.py")) as f:
            return f.read()
    except OSError:
        return ""


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError:
        return b""


def key(sources: list[str], cflags: list[str], plan: list, tracefs: Optional[str]) -> str:
    h = hashlib.sha256()

    def part(b: bytes) -> None:
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)

    part(str(FORMAT).encode())
    for s in sources:
        part(_read(s))
    part("\0".join(cflags).encode())
    part(json.dumps(plan, sort_keys=True).encode())
    part(os.uname().release.encode())
    part(_read("/proc/version"))
    try:
        part(str(os.stat("/sys/kernel/btf/vmlinux").st_size).encode())
    except OSError:
        part(b"")
    part(_bcc_version().encode())
    ev = os.path.join(tracefs, "events", "fs_dax") if tracefs else ""
    for name in sorted(os.listdir(ev)) if ev and os.path.isdir(ev) else ():
        part(name.encode() + _read(os.path.join(ev, name, "format")))
    return h.hexdigest()


def _safe_dir(d: str, create: bool) -> bool:
    """*d* exists (made 0700 if *create*), is a real directory of ours and
    writable by nobody else."""
    if create:
        try:
            os.makedirs(d, mode=0o700, exist_ok=True)
        except OSError:
            return False
    try:
        st = os.lstat(d)
    except OSError:
        return False
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def _entry_path(k: str) -> str:
    return os.path.join(cache_dir(), f"{k}.json")


def lookup(k: str) -> Optional[dict]:
    """The entry saved under key *k*, or None (absent, unsafe, corrupt)."""
    if not enabled() or not _safe_dir(cache_dir(), create=False):
        return None
    try:
        fd = os.open(_entry_path(k), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None
        with os.fdopen(fd, "rb", closefd=False) as f:
            entry = json.loads(f.read())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)
    if not isinstance(entry, dict) or entry.get("format") != FORMAT or entry.get("key") != k:
        return None
    return entry


def store(k: str, entry: dict) -> bool:
    """Write *entry* under *k* (atomically, 0600) and prune old entries."""
    if not enabled():
        return False
    d = cache_dir()
    if not _safe_dir(d, create=True):
        return False
    path = _entry_path(k)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(dict(entry, format=FORMAT, key=k), f)
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        return False
    try:
        old = sorted(
            (os.path.join(d, n) for n in os.listdir(d) if n.endswith(".json")),
            key=lambda p: os.stat(p).st_mtime,
            reverse=True,
        )
        for p in old[KEEP:]:
            os.unlink(p)
        _remove_dead_tmp(d)
    except OSError:
        pass
    return True


def _remove_dead_tmp(d: str) -> None:
    """Remove ``<entry>.<pid>.tmp`` files whose writer is gone (a store()
    killed between writing and renaming): the next store cleans up."""
    from .tracefs import pid_alive

    for n in os.listdir(d):
        parts = n.rsplit(".", 2)
        if len(parts) == 3 and parts[2] == "tmp" and parts[1].isdigit() and not pid_alive(int(parts[1])):
            try:
                os.unlink(os.path.join(d, n))
            except OSError:
                pass


def describe(bcc_bpf, programs: list[dict], tables: list[str]) -> Optional[dict]:
    """The entry for what *bcc_bpf* (a bcc.BPF) loaded: *programs* as
    [{"name", "type", "attach": [kind, target]}], *tables* the map names
    the source declares.  None when a program cannot be relocated here."""
    from bcc import lib

    fds = {}
    for t in tables:
        fd = lib.bpf_table_fd(bcc_bpf.module, t.encode())
        if fd >= 0:
            fds[t] = fd
    by_fd = {fd: t for t, fd in fds.items()}
    progs = []
    for p in programs:
        insns = bcc_bpf.dump_func(p["name"].encode())
        refs = bpfsys.map_refs(insns)
        if refs is None or any(fd not in by_fd for _i, fd in refs):
            return None
        progs.append(dict(p, insns=insns.hex(), relocs=[[i, by_fd[fd]] for i, fd in refs]))
    return {
        "license": lib.bpf_module_license(bcc_bpf.module).decode(),
        "kern_version": int(lib.bpf_module_kern_version(bcc_bpf.module)),
        "maps": {t: bpfsys.map_info(fd) for t, fd in fds.items()},
        "programs": progs,
    }


class Loaded:
    """A cached entry loaded and attached: ``maps`` {name: fd}; close()
    detaches (as bcc does) and closes everything."""

    def __init__(self) -> None:
        self.maps: dict[str, int] = {}
        self.progs: list[int] = []
        self.links: list[bpfsys.Attachment] = []

    def close(self) -> None:
        for link in reversed(self.links):
            link.close()
        self.links = []
        for fd in self.progs + list(self.maps.values()):
            try:
                os.close(fd)
            except OSError:
                pass
        self.progs, self.maps = [], {}


def load(entry: dict) -> Loaded:
    """Create, load and attach *entry* with bcc's loader (bpfsys); on any
    failure everything made so far is closed and :class:`bpfsys.BpfError`
    raised (the caller compiles with bcc instead)."""
    out = Loaded()
    try:
        with bpfsys.quiet():
            _load_into(out, entry)
    except (bpfsys.BpfError, OSError, KeyError, ValueError, TypeError) as e:
        out.close()
        if isinstance(e, bpfsys.BpfError):
            raise
        raise bpfsys.BpfError(0, f"cached BPF entry unusable: {e}") from None
    return out


def _load_into(out: Loaded, entry: dict) -> None:
    for name, m in entry["maps"].items():
        out.maps[name] = bpfsys.map_create(
            m["type"], m["key_size"], m["value_size"], m["max_entries"], m["flags"], name
        )
    lic = entry["license"].encode()
    for p in entry["programs"]:
        insns = bpfsys.relocate(bytes.fromhex(p["insns"]), [tuple(r) for r in p["relocs"]], out.maps)
        kind, target = p["attach"]
        if kind == "tp_btf":
            fd = bpfsys.prog_load_tp_btf(insns, target, lic)
        else:
            fd = bpfsys.prog_load(p["type"], insns, p["name"], lic, entry["kern_version"])
        out.progs.append(fd)
        out.links.append(bpfsys.attach(fd, kind, target))
