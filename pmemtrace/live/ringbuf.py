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

:meth:`RingReader.read_chunk` is the fast path for records of one size
(bpf/pmemtrace.bpf.c sends only ``struct pmt_event``): the committed
region is copied in one slice and its headers checked at C speed, so
emptying the ring costs little per record however far behind the
decoding is (``--record`` under load: the backend keeps the chunks and
decodes them at its own pace, see bcc_backend.BccBackend.drain).
"""

import mmap
import struct

BUSY = 1 << 31
DISCARD = 1 << 30
HDR = 8

_U64 = struct.Struct("<Q")
_U32 = struct.Struct("<I")


def stride(rec_size: int) -> int:
    """Bytes a record of *rec_size* data bytes takes in the ring."""
    return (rec_size + HDR + 7) & ~7


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

    def read_chunk(self, rec_size: int, max_bytes: int) -> tuple[bytes, int]:
        """``(chunk, n)``: the next *n* committed records, each *rec_size*
        bytes, as they sit in the ring (header and data, at
        :func:`stride` bytes each), at most *max_bytes*; the consumer
        position moves past them.  It stops before a record still being
        written, and before one of another size or discarded (``(b"", 0)``
        when that comes first: :meth:`read` takes it)."""
        step = stride(rec_size)
        cons = _U64.unpack_from(self.cons, 0)[0]
        prod = _U64.unpack_from(self.prod, 0)[0]
        n = min(prod - cons, max_bytes) // step
        if n <= 0:
            return b"", 0
        at = self.page + (cons & self.mask)
        chunk = self.prod[at : at + n * step]
        # the u32 length word of every header, compared in one go; on a
        # mismatch, a binary search for the first record that is not a
        # plain committed one (slice comparisons, C speed)
        lens = memoryview(chunk).cast("I")[:: step // 4].tobytes()
        good = _U32.pack(rec_size)
        if lens != good * n:
            lo, hi = 0, n  # lens[:lo] all good, lens[hi] bad
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if lens[: 4 * mid] == good * mid:
                    lo = mid
                else:
                    hi = mid
            n = lo
            chunk = chunk[: n * step]
        if n:
            _U64.pack_into(self.cons, 0, cons + n * step)
        return chunk, n

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
