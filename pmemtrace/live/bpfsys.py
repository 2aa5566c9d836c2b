"""Load and attach an already compiled BPF program with bcc's own loader,
libbcc_bpf.so.0, without bcc's compiler (through ctypes).

bcc compiles bpf/pmemtrace.bpf.c with its embedded clang at every start,
and importing bcc maps libbcc with LLVM and clang in: together most of a
bcc watch's start.  A program bcc compiled once for this kernel is kept by
:mod:`pmemtrace.live.bpfcache` (instructions, map definitions, where each
map's fd goes).  Debian's python3-bpfcc depends on libbpfcc, which ships
libbcc_bpf.so.0: bcc's map, load and attach functions (src/cc/libbpf.c)
built without LLVM.  This module binds the few it needs, so the cached
program is created, loaded and attached by the same code bcc runs after
it compiles (bcc_create_map, bcc_prog_load -- which also finds an fentry
program's BTF id from its ``kfunc__`` name --, bpf_attach_tracepoint,
bpf_attach_kprobe through the perf kprobe PMU where there is one,
bpf_attach_raw_tracepoint, bpf_attach_kfunc).  The prototypes are bcc
0.26's src/cc/libbpf.h (Debian 12; Python bcc 0.26 declares the same in
bcc/libbcc.py); only scalars, strings and byte buffers cross, no struct.

bcc cannot load a BTF-typed tracepoint program (tp_btf: its loader sets
the attach type and BTF id from a ``kfunc__``/``kretfunc__``/``lsm__``
name only), so :func:`prog_load_tp_btf` loads those with libbpf itself
(libbpf.so.1, which libbcc_bpf.so.0 links): bpf_prog_load with the
expected attach type BPF_TRACE_RAW_TP and the BTF id of the event's
``btf_trace_<event>`` typedef from libbpf_find_vmlinux_btf_id; bcc's
bpf_attach_kfunc (BPF_RAW_TRACEPOINT_OPEN without a name) attaches it.

Ours is only what no library offers: each ``ld_imm64`` of a map fd
(BPF_PSEUDO_MAP_FD) in the cached instructions gets the new map's fd
(:func:`relocate`, :func:`map_refs`).  Every call's result is checked; a
failure raises :class:`BpfError` and the caller compiles with bcc instead.
"""

import contextlib
import ctypes
import os
import struct
import sys
from collections.abc import Iterator
from typing import Optional

# program types (include/uapi/linux/bpf.h enum bpf_prog_type)
PROG_KPROBE, PROG_TRACEPOINT, PROG_RAW_TRACEPOINT, PROG_TRACING = 2, 5, 17, 26
# map types whose values are per CPU (hash, array, LRU hash)
PERCPU_MAPS = {5, 6, 10}
PSEUDO_MAP_FD = 1
LD_IMM64 = 0x18
PROBE_ENTRY, PROBE_RETURN = 0, 1  # bcc's enum bpf_probe_attach_type
LOG_SIZE = 1 << 16  # bcc's LOG_BUF_SIZE: the verifier's log on a refusal

_c = ctypes
_PROTOTYPES = {
    # int bcc_create_map(enum bpf_map_type map_type, const char *name,
    #     int key_size, int value_size, int max_entries, int map_flags);
    "bcc_create_map": [_c.c_int, _c.c_char_p, _c.c_int, _c.c_int, _c.c_int, _c.c_int],
    # int bcc_prog_load(enum bpf_prog_type prog_type, const char *name,
    #     const struct bpf_insn *insns, int prog_len (bytes), const char *license,
    #     unsigned kern_version, int log_level, char *log_buf, unsigned log_buf_size);
    "bcc_prog_load": [
        _c.c_int,
        _c.c_char_p,
        _c.c_char_p,
        _c.c_int,
        _c.c_char_p,
        _c.c_uint,
        _c.c_int,
        _c.c_char_p,
        _c.c_uint,
    ],
    # int bpf_attach_tracepoint(int progfd, const char *tp_category, const char *tp_name);
    "bpf_attach_tracepoint": [_c.c_int, _c.c_char_p, _c.c_char_p],
    # int bpf_attach_kprobe(int progfd, enum bpf_probe_attach_type attach_type,
    #     const char *ev_name, const char *fn_name, uint64_t fn_offset, int maxactive);
    "bpf_attach_kprobe": [_c.c_int, _c.c_int, _c.c_char_p, _c.c_char_p, _c.c_uint64, _c.c_int],
    # int bpf_detach_kprobe(const char *ev_name);
    "bpf_detach_kprobe": [_c.c_char_p],
    # int bpf_attach_raw_tracepoint(int progfd, const char *tp_name);
    "bpf_attach_raw_tracepoint": [_c.c_int, _c.c_char_p],
    # int bpf_attach_kfunc(int prog_fd);
    "bpf_attach_kfunc": [_c.c_int],
    # int bpf_close_perf_event_fd(int fd);
    "bpf_close_perf_event_fd": [_c.c_int],
    # int bpf_lookup_elem(int fd, void *key, void *value);
    "bpf_lookup_elem": [_c.c_int, _c.c_void_p, _c.c_void_p],
    # int bpf_get_next_key(int fd, void *key, void *next_key);
    "bpf_get_next_key": [_c.c_int, _c.c_void_p, _c.c_void_p],
    # int bpf_delete_elem(int fd, void *key);
    "bpf_delete_elem": [_c.c_int, _c.c_void_p],
    # int bpf_obj_get_info(int prog_map_fd, void *info, uint32_t *info_len);
    "bpf_obj_get_info": [_c.c_int, _c.c_void_p, _c.POINTER(_c.c_uint32)],
}
LIBRARY = "libbcc_bpf.so.0"
_lib: Optional[ctypes.CDLL] = None
LIBBPF = "libbpf.so.1"
_libbpf: Optional[ctypes.CDLL] = None
BPF_TRACE_RAW_TP = 23  # include/uapi/linux/bpf.h enum bpf_attach_type


class _ProgLoadOpts(ctypes.Structure):
    """libbpf's struct bpf_prog_load_opts (libbpf 1.0, tools/lib/bpf/bpf.h)
    up to log_buf: libbpf reads the first *sz* bytes, so a shorter struct
    is valid on every later libbpf."""

    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("attempts", ctypes.c_int),
        ("expected_attach_type", ctypes.c_int),
        ("prog_btf_fd", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_ifindex", ctypes.c_uint32),
        ("kern_version", ctypes.c_uint32),
        ("attach_btf_id", ctypes.c_uint32),
        ("attach_prog_fd", ctypes.c_uint32),
        ("attach_btf_obj_fd", ctypes.c_uint32),
        ("fd_array", ctypes.c_void_p),
        ("func_info", ctypes.c_void_p),
        ("func_info_cnt", ctypes.c_uint32),
        ("func_info_rec_size", ctypes.c_uint32),
        ("line_info", ctypes.c_void_p),
        ("line_info_cnt", ctypes.c_uint32),
        ("line_info_rec_size", ctypes.c_uint32),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_char_p),
    ]


class BpfError(OSError):
    pass


def lib() -> ctypes.CDLL:
    """libbcc_bpf.so.0 with its prototypes set, opened once;
    :class:`BpfError` when it is not installed (apt install libbpfcc)."""
    global _lib
    if _lib is None:
        try:
            handle = ctypes.CDLL(LIBRARY, use_errno=True)
            for name, args in _PROTOTYPES.items():
                f = getattr(handle, name)
                f.argtypes, f.restype = args, ctypes.c_int
        except (OSError, AttributeError) as e:
            raise BpfError(0, f"{LIBRARY}: {e}") from None
        _lib = handle
    return _lib


def libbpf() -> ctypes.CDLL:
    """libbpf.so.1 with the two functions tp_btf loading needs."""
    global _libbpf
    if _libbpf is None:
        try:
            handle = ctypes.CDLL(LIBBPF, use_errno=True)
            handle.libbpf_find_vmlinux_btf_id.argtypes = [ctypes.c_char_p, ctypes.c_int]
            handle.libbpf_find_vmlinux_btf_id.restype = ctypes.c_int
            handle.bpf_prog_load.argtypes = [
                ctypes.c_int,
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.c_size_t,
                ctypes.POINTER(_ProgLoadOpts),
            ]
            handle.bpf_prog_load.restype = ctypes.c_int
        except (OSError, AttributeError) as e:
            raise BpfError(0, f"{LIBBPF}: {e}") from None
        _libbpf = handle
    return _libbpf


def _check(r: int, what: str) -> int:
    """*r* when it is a descriptor or success (>= 0), else :class:`BpfError`
    with its errno (libbpf 1.x under bcc returns -errno; else -1 and errno)."""
    if r < 0:
        e = -r if r < -1 else ctypes.get_errno()
        raise BpfError(e, f"{what}: {os.strerror(e)}")
    return r


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """bcc's loader prints a refused program's verifier log and its
    failures on stderr (fd 2); where a failure only means bcc compiles
    instead, the reason is in :class:`BpfError` and stderr stays clean."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 2)
        os.close(null)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def map_info(fd: int) -> dict:
    """The kernel's description of map *fd*: the first six u32 of struct
    bpf_map_info (include/uapi/linux/bpf.h), the kernel writes at most
    the *info_len* we give."""
    info = ctypes.create_string_buffer(80)
    size = ctypes.c_uint32(len(info))
    _check(lib().bpf_obj_get_info(fd, info, ctypes.byref(size)), "bpf_obj_get_info")
    if size.value < 24:
        raise BpfError(0, f"bpf_obj_get_info: {size.value} bytes of map info")
    mtype, _id, key, value, entries, flags = struct.unpack_from("<6I", info, 0)
    return {"type": mtype, "key_size": key, "value_size": value, "max_entries": entries, "flags": flags}


def map_create(mtype: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str) -> int:
    r = lib().bcc_create_map(mtype, name.encode(), key_size, value_size, max_entries, flags)
    return _check(r, f"creating map {name}")


def prog_load(ptype: int, insns: bytes, name: str, license: bytes, kern_version: int) -> int:
    """Load *insns* as bcc does (*name* as bcc named the function: a
    ``kfunc__`` name is an fentry program on that kernel function); on a
    verifier refusal the error carries the log's tail (bcc also prints it
    on stderr: see :func:`quiet`)."""
    log = ctypes.create_string_buffer(LOG_SIZE)
    r = lib().bcc_prog_load(ptype, name.encode(), insns, len(insns), license, kern_version, 0, log, LOG_SIZE)
    if r < 0:
        e = -r if r < -1 else ctypes.get_errno()
        tail = log.value.decode(errors="replace").strip().splitlines()[-2:]
        raise BpfError(e, f"loading {name}: {os.strerror(e)}: {' '.join(tail)}")
    return r


def prog_load_tp_btf(insns: bytes, event: str, license: bytes) -> int:
    """Load *insns* as a tp_btf program on tracepoint *event* (its
    arguments typed by the kernel's BTF); the verifier's refusal comes
    back in the error, as :func:`prog_load` gives it."""
    lb = libbpf()
    btf_id = lb.libbpf_find_vmlinux_btf_id(event.encode(), BPF_TRACE_RAW_TP)
    if btf_id <= 0:
        raise BpfError(-btf_id if btf_id < 0 else 0, f"no BTF for tracepoint {event}")
    log = ctypes.create_string_buffer(LOG_SIZE)
    opts = _ProgLoadOpts(
        sz=ctypes.sizeof(_ProgLoadOpts),
        expected_attach_type=BPF_TRACE_RAW_TP,
        attach_btf_id=btf_id,
        log_level=0,
        log_size=LOG_SIZE,
        log_buf=ctypes.cast(log, ctypes.c_char_p),
    )
    name = f"pmt_{event}"[:15].encode()  # the kernel keeps 15 characters
    r = lb.bpf_prog_load(PROG_TRACING, name, license, insns, len(insns) // 8, ctypes.byref(opts))
    if r < 0:
        e = -r if r < -1 else ctypes.get_errno()
        tail = log.value.decode(errors="replace").strip().splitlines()[-2:]
        raise BpfError(e, f"loading tp_btf {event}: {os.strerror(e)}: {' '.join(tail)}")
    return r


def relocate(insns: bytes, relocs: list[tuple[int, str]], fds: dict[str, int]) -> bytes:
    """*insns* with the map fd of each (instruction index, map name) set."""
    out = bytearray(insns)
    for idx, name in relocs:
        off = idx * 8
        if out[off] != LD_IMM64 or out[off + 1] >> 4 != PSEUDO_MAP_FD:
            raise BpfError(0, f"instruction {idx} is not a map load")
        struct.pack_into("<i", out, off + 4, fds[name])
    return bytes(out)


def map_refs(insns: bytes) -> Optional[list[tuple[int, int]]]:
    """[(instruction index, map fd)] of each ``ld_imm64`` of a map fd, or
    None when the program loads any other pseudo value (map values, BTF
    ids, functions: not relocatable here)."""
    out = []
    for i in range(len(insns) // 8):
        op, regs = insns[8 * i], insns[8 * i + 1]
        if op != LD_IMM64:
            continue
        src = regs >> 4
        if src == PSEUDO_MAP_FD:
            out.append((i, struct.unpack_from("<i", insns, 8 * i + 4)[0]))
        elif src:
            return None
    return out


class Attachment:
    """One attached program's link (a perf event or BPF link fd) and how
    bcc detaches it (bcc's BPF.cleanup)."""

    def __init__(self, fd: int, kind: str, ev_name: bytes = b"") -> None:
        self.fd, self.kind, self.ev_name = fd, kind, ev_name

    def close(self) -> None:
        if self.kind in ("tracepoint", "kprobe"):
            lib().bpf_close_perf_event_fd(self.fd)
            if self.kind == "kprobe":
                lib().bpf_detach_kprobe(self.ev_name)  # a no-op unless it went through kprobe_events
        else:
            try:
                os.close(self.fd)
            except OSError:
                pass


def attach(prog_fd: int, kind: str, target: str) -> Attachment:
    """Attach *prog_fd* as bcc attaches its programs: *kind* is
    tracepoint (target "category:event"), raw_tracepoint, fentry or
    tp_btf (the program's own BTF target), kprobe or kretprobe (target
    the function)."""
    b = lib()
    if kind == "tracepoint":
        cat, _, ev = target.partition(":")
        return Attachment(_check(b.bpf_attach_tracepoint(prog_fd, cat.encode(), ev.encode()), target), kind)
    if kind == "raw_tracepoint":
        return Attachment(_check(b.bpf_attach_raw_tracepoint(prog_fd, target.encode()), target), kind)
    if kind in ("fentry", "tp_btf"):
        # BPF_RAW_TRACEPOINT_OPEN without a name: the target is the BTF id it was loaded with
        return Attachment(_check(b.bpf_attach_kfunc(prog_fd), target), kind)
    if kind in ("kprobe", "kretprobe"):
        # bcc's event name (BPF.attach_kprobe: "p_"/"r_" + the function, '+' and '.' as '_')
        ret = kind == "kretprobe"
        ev = ("r_" if ret else "p_") + target.replace("+", "_").replace(".", "_")
        how = PROBE_RETURN if ret else PROBE_ENTRY
        fd = _check(b.bpf_attach_kprobe(prog_fd, how, ev.encode(), target.encode(), 0, 0), f"{kind} {target}")
        return Attachment(fd, "kprobe", ev.encode())
    raise BpfError(0, f"unknown attach {kind}")


def possible_cpus() -> int:
    """The number of possible CPUs: per-CPU map values come one per
    possible CPU (kernel/bpf/syscall.c bpf_map_value_size)."""
    with open("/sys/devices/system/cpu/possible") as f:
        n = 0
        for part in f.read().strip().split(","):
            lo, _, hi = part.partition("-")
            n = max(n, int(hi or lo) + 1)
        return n


class Map:
    """Access to a map by fd: what the backend reads once per interval
    (counts, comms, kinds, lost) and the entries it gives back, for bcc's
    maps and ours alike."""

    def __init__(self, fd: int, info: Optional[dict] = None):
        self.fd = fd
        info = info or map_info(fd)
        self.key_size = info["key_size"]
        self.value_size = info["value_size"]
        self.ncpus = possible_cpus() if info["type"] in PERCPU_MAPS else 0
        self._stride = (self.value_size + 7) & ~7
        self._vbuf = ctypes.create_string_buffer(self._stride * max(self.ncpus, 1))
        self._kbuf = ctypes.create_string_buffer(max(self.key_size, 1))
        self._nbuf = ctypes.create_string_buffer(max(self.key_size, 1))
        self._lib = lib()

    def get(self, key: bytes) -> Optional[bytes]:
        """The value of *key* (per-CPU maps: every CPU's, concatenated at
        8-byte strides), None when absent."""
        ctypes.memmove(self._kbuf, key, min(len(key), self.key_size))
        r = self._lib.bpf_lookup_elem(self.fd, self._kbuf, self._vbuf)
        if r < 0:
            e = -r if r < -1 else ctypes.get_errno()
            if e == 2:  # ENOENT
                return None
            raise BpfError(e, f"bpf_lookup_elem: {os.strerror(e)}")
        return self._vbuf.raw

    def delete(self, key: bytes) -> bool:
        """Remove *key*; False when it was not there."""
        ctypes.memmove(self._kbuf, key, min(len(key), self.key_size))
        r = self._lib.bpf_delete_elem(self.fd, self._kbuf)
        if r < 0:
            e = -r if r < -1 else ctypes.get_errno()
            if e == 2:  # ENOENT
                return False
            raise BpfError(e, f"bpf_delete_elem: {os.strerror(e)}")
        return True

    def per_cpu(self, value: bytes) -> list[bytes]:
        s = self._stride
        return [value[i * s : i * s + self.value_size] for i in range(max(self.ncpus, 1))]

    def all_keys(self) -> list[bytes]:
        out: list[bytes] = []
        prev = None  # NULL: the first key
        while True:
            r = self._lib.bpf_get_next_key(self.fd, prev, self._nbuf)
            if r < 0:
                e = -r if r < -1 else ctypes.get_errno()
                if e == 2:  # ENOENT: no more
                    return out
                raise BpfError(e, f"bpf_get_next_key: {os.strerror(e)}")
            out.append(self._nbuf.raw[: self.key_size])
            ctypes.memmove(self._kbuf, self._nbuf, self.key_size)
            prev = self._kbuf
