"""A BPF ring buffer read directly through its memory mapping.

bcc's ``open_ring_buffer()`` calls back into Python (ctypes) once per
record.  The ring buffer map can instead be mmap'ed (kernel/bpf/ringbuf.c,
the layout libbpf's ring_buffer__consume() reads): one page holding the
consumer position (ours to write), then one page holding the producer
position, then the data pages mapped twice in a row so that a record that
wraps is contiguous.  Each record is an 8-byte header (``u32 len`` with
BUSY bit 31 and DISCARD bit 30, ``u32 pg_off``) and ``len`` bytes of data,
rounded up to 8 bytes.  :meth:`RingReader.read` copies out every committed
record's bytes in one pass and advances the consumer position once.
"""

import mmap
import struct

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


class RingReader:
    """Records of the ring buffer map *map_fd* of *size* data bytes (a
    power of two pages, as the map was created)."""

    def __init__(self, map_fd: int, size: int):
        page = mmap.PAGESIZE
        self.size = size
        self.mask = size - 1
        self.cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self.prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        self.page = page

    def read(self, limit: int = 1 << 20) -> list[bytes]:
        """The committed records (their data, without the header), at most
        *limit* of them; a record still being written ends the pass."""
        out: list[bytes] = []
        prod_map, page = self.prod, self.page
        cons = _U64.unpack_from(self.cons, 0)[0]
        prod = _U64.unpack_from(prod_map, 0)[0]
        start = cons
        while cons < prod and len(out) < limit:
            at = page + (cons & self.mask)
            ln = _U32.unpack_from(prod_map, at)[0]
            if ln & BUSY:
                break
            n = ln & ~(BUSY | DISCARD)
            if not ln & DISCARD:
                out.append(prod_map[at + HDR : at + HDR + n])
            cons += (n + HDR + 7) & ~7
        if cons != start:
            _U64.pack_into(self.cons, 0, cons)  # x86: a plain store is a release
        return out

    def unread(self) -> int:
        """Committed records not read yet (counted, not copied)."""
        prod_map, page = self.prod, self.page
        cons = _U64.unpack_from(self.cons, 0)[0]
        prod = _U64.unpack_from(prod_map, 0)[0]
        n = 0
        while cons < prod:
            ln = _U32.unpack_from(prod_map, page + (cons & self.mask))[0]
            if ln & BUSY:
                break
            if not ln & DISCARD:
                n += 1
            cons += ((ln & ~(BUSY | DISCARD)) + HDR + 7) & ~7
        return n

    def close(self) -> None:
        for m in (self.cons, self.prod):
            try:
                m.close()
            except (BufferError, ValueError):
                pass
