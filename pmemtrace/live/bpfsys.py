"""The few bpf(2) and perf_event_open(2) calls that load and attach an
already compiled BPF program, through ctypes on libc (x86-64).

bcc compiles bpf/pmemtrace.bpf.c with its embedded clang at every start,
and importing bcc maps libbcc with LLVM and clang in: together most of a
bcc watch's start.  A program bcc compiled once for this kernel is kept by
:mod:`pmemtrace.live.bpfcache` (instructions, map definitions, where each
map's fd goes); this module loads it again without bcc: the maps are
created, each ``ld_imm64`` of a map fd (BPF_PSEUDO_MAP_FD) gets the new
fd, the programs are loaded and attached as bcc attaches them
(bcc src/cc/libbpf.c: a tracepoint or kprobe perf event with
PERF_EVENT_IOC_SET_BPF, BPF_RAW_TRACEPOINT_OPEN for raw tracepoints and
fentry).  The layouts are include/uapi/linux/bpf.h and perf_event.h.
"""

import ctypes
import os
import struct
from typing import Optional

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

NR_BPF = 321  # x86-64
NR_PERF_EVENT_OPEN = 298

# bpf commands
MAP_CREATE, MAP_LOOKUP_ELEM, MAP_GET_NEXT_KEY, PROG_LOAD = 0, 1, 4, 5
OBJ_GET_INFO_BY_FD, RAW_TRACEPOINT_OPEN = 15, 17
# program types and the fentry attach type
PROG_KPROBE, PROG_TRACEPOINT, PROG_RAW_TRACEPOINT, PROG_TRACING = 2, 5, 17, 26
TRACE_FENTRY = 24
# map types whose values are per CPU (hash, array, LRU hash)
PERCPU_MAPS = {5, 6, 10}
PSEUDO_MAP_FD = 1
LD_IMM64 = 0x18

PERF_TYPE_TRACEPOINT = 2
PERF_SAMPLE_RAW = 1 << 10
PERF_FLAG_FD_CLOEXEC = 1 << 3
PERF_EVENT_IOC_ENABLE = 0x2400
PERF_EVENT_IOC_SET_BPF = 0x40042408

_ATTR = 128  # bytes of union bpf_attr passed (the kernel wants the rest zero)


class BpfError(OSError):
    pass


def _bpf(cmd: int, attr: ctypes.Array) -> int:
    r = _libc.syscall(NR_BPF, cmd, attr, ctypes.sizeof(attr))
    if r < 0:
        e = ctypes.get_errno()
        raise BpfError(e, f"bpf({cmd}): {os.strerror(e)}")
    return int(r)


def _ptr(buf) -> int:
    return ctypes.addressof(buf) if buf is not None else 0


def map_info(fd: int) -> dict:
    """The kernel's description of map *fd* (struct bpf_map_info)."""
    info = ctypes.create_string_buffer(80)
    attr = ctypes.create_string_buffer(_ATTR)
    struct.pack_into("<IIQ", attr, 0, fd, len(info), _ptr(info))
    _bpf(OBJ_GET_INFO_BY_FD, attr)
    mtype, _id, key, value, entries, flags = struct.unpack_from("<6I", info, 0)
    return {"type": mtype, "key_size": key, "value_size": value, "max_entries": entries, "flags": flags}


def map_create(mtype: int, key_size: int, value_size: int, max_entries: int, flags: int, name: str) -> int:
    attr = ctypes.create_string_buffer(_ATTR)
    struct.pack_into("<5I", attr, 0, mtype, key_size, value_size, max_entries, flags)
    struct.pack_into("16s", attr, 28, name.encode()[:15])
    return _bpf(MAP_CREATE, attr)


def prog_load(ptype: int, insns: bytes, name: str, license: bytes, kern_version: int, attach_btf_id: int = 0) -> int:
    """Load *insns*; on a verifier refusal the error carries the log's tail."""
    code = ctypes.create_string_buffer(insns, len(insns))
    lic = ctypes.create_string_buffer(license)
    log = ctypes.create_string_buffer(1 << 16)
    attr = ctypes.create_string_buffer(_ATTR)
    struct.pack_into("<IIQQ", attr, 0, ptype, len(insns) // 8, _ptr(code), _ptr(lic))
    struct.pack_into("<I", attr, 40, kern_version)
    struct.pack_into("16s", attr, 48, "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:15].encode())
    if ptype == PROG_TRACING:
        struct.pack_into("<I", attr, 68, TRACE_FENTRY)
        struct.pack_into("<I", attr, 108, attach_btf_id)
    try:
        return _bpf(PROG_LOAD, attr)
    except BpfError:
        pass
    # again with the verifier's log, to say why
    struct.pack_into("<IIQ", attr, 24, 1, len(log), _ptr(log))
    try:
        return _bpf(PROG_LOAD, attr)
    except BpfError as e:
        tail = log.value.decode(errors="replace").strip().splitlines()[-2:]
        raise BpfError(e.errno, f"loading {name}: {e.strerror}: {' '.join(tail)}") from None


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


def _perf_event_open(ptype: int, config: int, config1: int = 0) -> int:
    attr = ctypes.create_string_buffer(120)
    # type, size, config, sample_period, sample_type; wakeup_events; config1
    struct.pack_into("<IIQQQ", attr, 0, ptype, 112, config, 1, PERF_SAMPLE_RAW)
    struct.pack_into("<I", attr, 48, 1)
    struct.pack_into("<Q", attr, 56, config1)
    fd = _libc.syscall(NR_PERF_EVENT_OPEN, attr, -1, 0, -1, PERF_FLAG_FD_CLOEXEC)
    if fd < 0:
        e = ctypes.get_errno()
        raise BpfError(e, f"perf_event_open: {os.strerror(e)}")
    return int(fd)


def _set_bpf(pfd: int, prog_fd: int) -> int:
    import fcntl

    try:
        fcntl.ioctl(pfd, PERF_EVENT_IOC_SET_BPF, prog_fd)
        fcntl.ioctl(pfd, PERF_EVENT_IOC_ENABLE, 0)
    except OSError:
        os.close(pfd)
        raise
    return pfd


def attach_tracepoint(prog_fd: int, tracefs: str, category: str, event: str) -> int:
    with open(os.path.join(tracefs, "events", category, event, "id")) as f:
        tp_id = int(f.read())
    return _set_bpf(_perf_event_open(PERF_TYPE_TRACEPOINT, tp_id), prog_fd)


def attach_kprobe(prog_fd: int, function: str, retprobe: bool = False) -> int:
    """Through the perf kprobe PMU (4.17+), as bcc does where it exists;
    without it :class:`BpfError` (the caller lets bcc attach instead)."""
    base = "/sys/bus/event_source/devices/kprobe"
    try:
        with open(f"{base}/type") as f:
            ptype = int(f.read())
        config = 0
        if retprobe:
            with open(f"{base}/format/retprobe") as f:  # "config:0"
                config = 1 << int(f.read().strip().rpartition(":")[2])
    except (OSError, ValueError) as e:
        raise BpfError(0, f"no perf kprobe PMU: {e}") from None
    name = ctypes.create_string_buffer(function.encode())
    return _set_bpf(_perf_event_open(ptype, config, _ptr(name)), prog_fd)


def raw_tracepoint_open(prog_fd: int, name: Optional[str]) -> int:
    """A raw tracepoint by *name*, or (None) a tracing program's own
    target: fentry."""
    buf = ctypes.create_string_buffer(name.encode()) if name else None
    attr = ctypes.create_string_buffer(_ATTR)
    struct.pack_into("<QI", attr, 0, _ptr(buf), prog_fd)
    return _bpf(RAW_TRACEPOINT_OPEN, attr)


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
    """Read access to a map by fd: what the backend reads once per
    interval (counts, comms, kinds, lost), for bcc's maps and ours alike."""

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
        self._attr = ctypes.create_string_buffer(_ATTR)

    def get(self, key: bytes) -> Optional[bytes]:
        """The value of *key* (per-CPU maps: every CPU's, concatenated at
        8-byte strides), None when absent."""
        ctypes.memmove(self._kbuf, key, self.key_size)
        struct.pack_into("<IIQQQ", self._attr, 0, self.fd, 0, _ptr(self._kbuf), _ptr(self._vbuf), 0)
        try:
            _bpf(MAP_LOOKUP_ELEM, self._attr)
        except BpfError as e:
            if e.errno == 2:  # ENOENT
                return None
            raise
        return self._vbuf.raw

    def per_cpu(self, value: bytes) -> list[bytes]:
        s = self._stride
        return [value[i * s : i * s + self.value_size] for i in range(max(self.ncpus, 1))]

    def all_keys(self) -> list[bytes]:
        out: list[bytes] = []
        prev = None
        while True:
            if prev is not None:
                ctypes.memmove(self._kbuf, prev, self.key_size)
            struct.pack_into(
                "<IIQQ", self._attr, 0, self.fd, 0, _ptr(self._kbuf) if prev is not None else 0, _ptr(self._nbuf)
            )
            try:
                _bpf(MAP_GET_NEXT_KEY, self._attr)
            except BpfError as e:
                if e.errno == 2:
                    return out
                raise
            prev = self._nbuf.raw[: self.key_size]
            out.append(prev)
