"""Kernel struct member offsets from the running kernel's BTF.

The BPF program (bpf/pmemtrace.bpf.c) reads a handful of kernel struct
members (``vm_fault.vma``, ``vm_area_struct.vm_start``, ``inode.i_ino``...).
Compiling it against the kernel headers that declare them (linux/mm.h
pulls in sched.h, slab.h, memremap.h...) made bcc's clang take 60 s of a
76 s start in the lab (benchmarks/bench_watch_start.py); with the offsets
passed as ``-D`` flags the program includes no kernel header and compiles
in the time of bcc's own prelude.

``/sys/kernel/btf/vmlinux`` (CONFIG_DEBUG_INFO_BTF, every Debian kernel
since 5.x) describes every type of the running kernel; this module reads
just enough of it (the type section's layout, include/uapi/linux/btf.h) to
find a struct by name and a member by name, looking through anonymous
struct/union members (``vm_fault``'s const struct, ``vm_area_struct``'s
unions).  Results are cached per kernel build in ``~/.cache/pmemtrace``.
"""

import functools
import hashlib
import json
import os
import struct
from typing import Optional

VMLINUX = "/sys/kernel/btf/vmlinux"
MAGIC = 0xEB9F

# kinds (include/uapi/linux/btf.h) and the bytes that follow struct btf_type
_STRUCT, _UNION = 4, 5
_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG = 8, 9, 10, 11, 18
_FIXED_EXTRA = {1: 4, 3: 12, 14: 4, 17: 4}  # INT, ARRAY, VAR, DECL_TAG
_PER_MEMBER = {4: 12, 5: 12, 6: 8, 13: 8, 15: 12, 19: 12}  # STRUCT, UNION, ENUM, FUNC_PROTO, DATASEC, ENUM64
_MODIFIERS = (_TYPEDEF, _VOLATILE, _CONST, _RESTRICT, _TYPE_TAG)
_FUNC, _FUNC_PROTO = 12, 13
#: arguments an fentry program sees on every x86 kernel with trampolines
#: (MAX_BPF_FUNC_ARGS grew to 12 only in 6.6)
MAX_FENTRY_ARGS = 6

#: (struct, member) pairs the BPF program reads, and the -D name of each offset
WANTED = {
    ("vm_fault", "vma"): "PMT_OFF_VMF_VMA",
    ("vm_fault", "pgoff"): "PMT_OFF_VMF_PGOFF",
    ("vm_fault", "address"): "PMT_OFF_VMF_ADDRESS",
    ("vm_fault", "flags"): "PMT_OFF_VMF_FLAGS",
    ("vm_area_struct", "vm_start"): "PMT_OFF_VMA_START",
    ("vm_area_struct", "vm_end"): "PMT_OFF_VMA_END",
    ("vm_area_struct", "vm_flags"): "PMT_OFF_VMA_FLAGS",
    ("inode", "i_ino"): "PMT_OFF_INODE_INO",
    ("inode", "i_sb"): "PMT_OFF_INODE_SB",
    ("super_block", "s_dev"): "PMT_OFF_SB_DEV",
    # the counting session's insert programs find their file themselves
    ("vm_area_struct", "vm_file"): "PMT_OFF_VMA_FILE",
    ("file", "f_inode"): "PMT_OFF_FILE_INODE",
    ("inode", "i_mode"): "PMT_OFF_INODE_MODE",
}


class BTFError(Exception):
    pass


class BTF:
    """The type section of one BTF blob, indexed by type id."""

    def __init__(self, data: bytes):
        if len(data) < 24:
            raise BTFError("BTF too short")
        magic, _ver, _flags, hdr_len = struct.unpack_from("<HBBI", data)
        if magic != MAGIC:
            raise BTFError("not BTF (bad magic)")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", data, 8)
        self.data = data
        self.strings = hdr_len + str_off
        self.str_end = self.strings + str_len
        self.offsets = [0]  # type id -> byte offset of its struct btf_type (id 0 is void)
        pos, end = hdr_len + type_off, hdr_len + type_off + type_len
        unpack = struct.Struct("<I").unpack_from
        while pos < end:
            self.offsets.append(pos)
            info = unpack(data, pos + 4)[0]
            kind, vlen = (info >> 24) & 0x1F, info & 0xFFFF
            pos += 12 + _FIXED_EXTRA.get(kind, 0) + _PER_MEMBER.get(kind, 0) * vlen

    def name(self, name_off: int) -> str:
        start = self.strings + name_off
        return self.data[start : self.data.index(b"\0", start)].decode()

    def _type(self, tid: int) -> tuple[int, int, int, int]:
        """(name_off, kind, vlen, size_or_type) of type *tid*, and its offset."""
        pos = self.offsets[tid]
        name_off, info, size_type = struct.unpack_from("<III", self.data, pos)
        return name_off, (info >> 24) & 0x1F, info & 0xFFFF, size_type

    def find_structs(self, names: set[str]) -> dict[str, int]:
        """{name: type id} of the structs called *names* (the first with
        members, not a forward declaration)."""
        want = {n.encode() + b"\0" for n in names}
        out: dict[str, int] = {}
        data, strings = self.data, self.strings
        for tid in range(1, len(self.offsets)):
            pos = self.offsets[tid]
            name_off, info = struct.unpack_from("<II", data, pos)
            if (info >> 24) & 0x1F != _STRUCT or not info & 0xFFFF or not name_off:
                continue
            start = strings + name_off
            for w in want:
                if data.startswith(w, start):
                    out.setdefault(w[:-1].decode(), tid)
            if len(out) == len(names):
                break
        return out

    def _strip(self, tid: int) -> int:
        while True:
            _n, kind, _v, nxt = self._type(tid)
            if kind not in _MODIFIERS:
                return tid
            tid = nxt

    def member_offset(self, tid: int, member: str) -> Optional[int]:
        """Byte offset of *member* in struct/union *tid*, searching
        anonymous members too; None when absent."""
        _n, kind, vlen, _s = self._type(tid)
        if kind not in (_STRUCT, _UNION):
            return None
        kflag = struct.unpack_from("<I", self.data, self.offsets[tid] + 4)[0] >> 31
        base = self.offsets[tid] + 12
        for i in range(vlen):
            name_off, mtype, off = struct.unpack_from("<III", self.data, base + 12 * i)
            bits = off & 0xFFFFFF if kflag else off
            if name_off and self.name(name_off) == member:
                return bits // 8
            if not name_off:
                inner = self.member_offset(self._strip(mtype), member)
                if inner is not None:
                    return bits // 8 + inner
        return None

    def find_funcs(self, names: set[str]) -> dict[str, int]:
        """{name: FUNC_PROTO type id} of the functions called *names*."""
        return {n: self._type(tid)[3] for n, tid in self.func_ids(names).items()}

    def func_ids(self, names: set[str]) -> dict[str, int]:
        """{name: FUNC type id} of the functions called *names* (an fentry
        program's attach_btf_id)."""
        return self._ids_of_kind(_FUNC, names)

    def typedef_ids(self, names: set[str]) -> dict[str, int]:
        """{name: TYPEDEF type id} of the typedefs called *names* (a
        tracepoint's ``btf_trace_<event>``: what a tp_btf program attaches
        to)."""
        return self._ids_of_kind(_TYPEDEF, names)

    def _ids_of_kind(self, want_kind: int, names: set[str]) -> dict[str, int]:
        want = {n.encode() + b"\0" for n in names}
        out: dict[str, int] = {}
        data, strings = self.data, self.strings
        for tid in range(1, len(self.offsets)):
            name_off, info = struct.unpack_from("<II", data, self.offsets[tid])
            if (info >> 24) & 0x1F != want_kind or not name_off:
                continue
            start = strings + name_off
            for w in want:
                if data.startswith(w, start):
                    out.setdefault(w[:-1].decode(), tid)
        return out

    def fentry_ok(self, proto: int, struct_args: bool = False) -> bool:
        """Whether a function of FUNC_PROTO *proto* can take an fentry
        program here: at most 6 argument registers and no struct or union
        passed by value, unless *struct_args* (the trampolines take those
        of at most 16 bytes, one register per 8, :meth:`trampoline_struct_args`)."""
        _n, kind, vlen, _s = self._type(proto)
        if kind != _FUNC_PROTO:
            return False
        base = self.offsets[proto] + 12
        regs = 0  # argument registers: a struct of 9-16 bytes takes two
        for i in range(vlen):
            _name_off, ptype = struct.unpack_from("<II", self.data, base + 8 * i)
            _an, akind, _av, size = self._type(self._strip(ptype)) if ptype else (0, 0, 0, 0)
            if akind in (_STRUCT, _UNION):
                if not (struct_args and size <= 16):
                    return False
                regs += 2 if size > 8 else 1
            else:
                regs += 1
        return regs <= MAX_FENTRY_ARGS

    def trampoline_struct_args(self) -> bool:
        """Whether this kernel's trampolines take struct arguments by value
        (of up to 16 bytes): Linux kernel commit 720e6a435194 ("bpf: Allow
        struct argument in trampoline based programs") (in v6.1) added
        them, with the member ``arg_flags`` of struct btf_func_model that
        says which arguments are structs; its BTF shows it."""
        tid = self.find_structs({"btf_func_model"}).get("btf_func_model")
        return tid is not None and self.member_offset(tid, "arg_flags") is not None


def _load(path: str) -> Optional[BTF]:
    """The BTF of *path*, parsed once per process and file version (offsets
    and fentry functions both read it where the cache cannot be written:
    the lab guest's read-only home)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return _load_version(path, st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=2)
def _load_version(path: str, _size: int, _mtime_ns: int) -> Optional[BTF]:
    try:
        with open(path, "rb") as f:
            return BTF(f.read())
    except (OSError, BTFError):
        return None


def _cache_path(path: str) -> Optional[str]:
    try:
        st = os.stat(path)
        build = os.uname().release + os.uname().version + f"{st.st_size}"
    except OSError:
        return None
    d = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(d, "pmemtrace", f"btf-offsets-{hashlib.sha1(build.encode()).hexdigest()[:16]}.json")


def offsets(path: str = VMLINUX, cache: bool = True) -> dict[str, int]:
    """{-D name: byte offset} of :data:`WANTED` in the running kernel (a
    member missing from this kernel is left out); {} without BTF."""
    cp = _cache_path(path) if cache and path == VMLINUX else None
    if cp:
        try:
            with open(cp) as f:
                got = json.load(f)
            if isinstance(got, dict) and all(isinstance(v, int) for v in got.values()):
                return got
        except (OSError, ValueError):
            pass
    btf = _load(path)
    if btf is None:
        return {}
    ids = btf.find_structs({s for s, _ in WANTED})
    out = {}
    for (s, m), flag in WANTED.items():
        if s in ids:
            off = btf.member_offset(ids[s], m)
            if off is not None:
                out[flag] = off
    if cp:
        try:
            os.makedirs(os.path.dirname(cp), exist_ok=True)
            tmp = f"{cp}.{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(out, f)
            os.replace(tmp, cp)
        except OSError:
            pass  # a read-only home (the lab guest): parse again next time
    return out


def _cached_names(tag: str, names, compute, path: str, cache: bool) -> set[str]:
    """compute(btf, names) -> the subset of *names* this kernel's BTF
    allows, cached beside the offsets per kernel build, *tag* and name set;
    empty without BTF."""
    names = set(names)
    cp = _cache_path(path) if cache and path == VMLINUX else None
    if cp:
        cp = cp.replace(
            "btf-offsets-", f"btf-{tag}-" + hashlib.sha1(" ".join(sorted(names)).encode()).hexdigest()[:8] + "-"
        )
        try:
            with open(cp) as f:
                got = json.load(f)
            if isinstance(got, list) and all(isinstance(v, str) for v in got):
                return set(got)
        except (OSError, ValueError):
            pass
    btf = _load(path)
    if btf is None:
        return set()
    out = set(compute(btf, names))
    if cp:
        try:
            os.makedirs(os.path.dirname(cp), exist_ok=True)
            tmp = f"{cp}.{os.getpid()}"
            with open(tmp, "w") as f:
                json.dump(sorted(out), f)
            os.replace(tmp, cp)
        except OSError:
            pass
    return out


def fentry_functions(names, path: str = VMLINUX, cache: bool = True) -> set[str]:
    """Those of *names* that this kernel's BTF describes as functions an
    fentry program can attach to (:meth:`BTF.fentry_ok`, struct arguments
    where :meth:`BTF.trampoline_struct_args`); empty without BTF."""

    def compute(btf, want):
        structs = btf.trampoline_struct_args()
        return {n for n, proto in btf.find_funcs(want).items() if btf.fentry_ok(proto, structs)}

    return _cached_names("fentry2", names, compute, path, cache)


def tp_btf_events(events, path: str = VMLINUX, cache: bool = True) -> set[str]:
    """Those tracepoints of *events* a BTF-typed tracepoint program
    (tp_btf) can attach to here: the kernel's BTF has their
    ``btf_trace_<event>`` typedef (v5.5+ with CONFIG_DEBUG_INFO_BTF).  Such
    a program gets the tracepoint's arguments typed, so it reads their
    members with plain loads where a raw tracepoint program calls
    bpf_probe_read_kernel for each (bpf/pmemtrace.bpf.c PMT_LD)."""

    def compute(btf, want):
        got = btf.typedef_ids({f"btf_trace_{e}" for e in want})
        return {e for e in want if f"btf_trace_{e}" in got}

    return _cached_names("tpbtf", events, compute, path, cache)
