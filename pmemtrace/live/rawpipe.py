"""fs_dax records read in binary from a tracefs instance's per-CPU
``per_cpu/cpuN/trace_pipe_raw``, as trace-cmd reads them.

The all-CPU ``trace_pipe`` makes the kernel format every event as text in
the reader's context, and user space then parses the text back; here each
CPU's ring-buffer pages are read whole (one ``read()`` returns one
sub-buffer page) and decoded by :mod:`pmemtrace.live.ftrace_binary`, and
:mod:`pmemtrace.live.fsdax_binary` turns them into the text parser's
records, field for field, so the views see what the text gave them.

Command names come from tracefs's ``saved_cmdlines`` (what ``trace_pipe``
prints from too), re-read when a pid it did not have appears; a pid it
never had is ``<...>``, as in the text.
"""

from __future__ import annotations

import bisect
import collections
import errno
import mmap
import os
from operator import itemgetter

from .fsdax_binary import converters
from .ftrace_binary import (
    FormatError,
    PageDecoder,
    check_header_event,
    parse_event_format,
    parse_header_page,
)

#: pages read from one CPU per round at most: a drain decodes one round
MAX_PAGES_PER_CPU = 256
#: pages read and not yet decoded, at most (bytes); beyond it the kernel's
#: buffers fill, and it drops and counts
BACKLOG_BYTES = 512 << 20


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def saved_cmdlines(root: str) -> dict[int, str]:
    """``{pid: comm}`` from tracefs's ``saved_cmdlines``."""
    out: dict[int, str] = {}
    try:
        text = _read(os.path.join(root, "saved_cmdlines"))
    except OSError:
        return out
    for line in text.splitlines():
        pid, _, comm = line.partition(" ")
        if pid.isdigit():
            out[int(pid)] = comm
    return out


class RawPipes:
    """Non-blocking ``trace_pipe_raw`` of every CPU of *instance* (a path),
    decoding the *events* of ``fs_dax`` whose formats the instance has.

    Raises :class:`FormatError` or OSError at construction when the
    binary layout cannot be read (the caller falls back to ``trace_pipe``).
    """

    def __init__(self, root: str, instance: str, events, stats):
        self.root = root
        self.instance = instance
        self.events = list(events)  # fs_dax events whose formats are read
        self.stats = stats  # a parse.ParseStats: events, lost (per-page counts)
        check_header_event(_read(os.path.join(root, "events", "header_event")))
        header = parse_header_page(_read(os.path.join(root, "events", "header_page")))
        formats = {}
        for ev in events:
            f = parse_event_format(_read(os.path.join(instance, "events", "fs_dax", ev, "format")), "fs_dax")
            formats[f.id] = f
        self.comms = saved_cmdlines(root)
        self.conv = converters(formats, self.comms)
        self.decoder = PageDecoder(header, {i: formats[i] for i in self.conv})
        self.page_size = self._subbuf_size(instance)
        self._rounds: collections.deque = collections.deque()  # [(cpu, page)] per round, read not decoded
        # per round: the CPUs whose read stopped at MAX_PAGES_PER_CPU (more pages wait)
        self._cut: collections.deque = collections.deque()
        self._last_cut: frozenset = frozenset()  # those of the round next_round() returned
        # decoded raw records newer than a cut CPU's last one: out with a later round
        self._held: list = []
        self._backlog_bytes = 0
        #: the last pull stopped with a CPU cut at MAX_PAGES_PER_CPU (the
        #: backlog full): more pages wait in the kernel
        self.more_in_kernel = False
        self.fds: list[tuple[int, int]] = []  # (cpu, fd)
        d = os.path.join(instance, "per_cpu")
        try:
            for name in sorted(os.listdir(d), key=lambda n: int(n[3:]) if n[3:].isdigit() else -1):
                if name.startswith("cpu") and name[3:].isdigit():
                    fd = os.open(os.path.join(d, name, "trace_pipe_raw"), os.O_RDONLY | os.O_NONBLOCK)
                    self.fds.append((int(name[3:]), fd))
        except BaseException:
            self.close()
            raise
        if not self.fds:
            raise FormatError(f"no per_cpu/cpuN/trace_pipe_raw in {instance}")
        # one CPU's read lands here, a page per buffer (_read_run)
        self._buf = bytearray(self.page_size * MAX_PAGES_PER_CPU)
        mv = memoryview(self._buf)
        self._views = [mv[i : i + self.page_size] for i in range(0, len(mv), self.page_size)]

    @staticmethod
    def _subbuf_size(instance: str) -> int:
        """The ring buffer's sub-buffer (page) size: ``buffer_subbuf_size_kb``
        (6.8+), else the system page size."""
        try:
            return int(_read(os.path.join(instance, "buffer_subbuf_size_kb")).split()[0]) * 1024
        except (OSError, ValueError, IndexError):
            return mmap.PAGESIZE

    def pull(self) -> int:
        """Read whole pages from every CPU into the backlog, round after
        round (at most :data:`MAX_PAGES_PER_CPU` per CPU a round), until
        the CPUs have none or the backlog holds :data:`BACKLOG_BYTES`; the
        pages read.  A read is one copy: the kernel's buffer is emptied
        however far behind the decoding is (a --record reader decoding
        4,096 pages per CPU at a time lost 21,247 events in a quiet 6.12
        lab boot, its buffer full while Python decoded)."""
        total = 0
        while self._backlog_bytes < BACKLOG_BYTES:
            rnd = []
            cut = []
            pages = 0
            for cpu, fd in self.fds:
                run, n = self._read_run(fd)
                if run:
                    rnd.append((cpu, run))
                    pages += n
                if n == MAX_PAGES_PER_CPU:
                    cut.append(cpu)
            if rnd:
                self._rounds.append(rnd)
                self._cut.append(frozenset(cut))
                self._backlog_bytes += sum(len(p) for _c, p in rnd)
                total += pages
            if not cut:
                break
        self.more_in_kernel = bool(cut)
        return total

    def _read_run(self, fd: int) -> tuple[bytes, int]:
        """Up to :data:`MAX_PAGES_PER_CPU` pages of one CPU in one readv(2)
        (the kernel calls the pipe's read once per page-sized buffer and
        stops at the first that comes back short or empty), as one bytes:
        ``(pages, how many)``; a last page shorter than a page (a file, not
        the pipe) ends it.  One system call and one copy a CPU a round, not
        one Python read per 4 KiB page (--record reads one each 50 events)."""
        ps, buf, views = self.page_size, self._buf, self._views
        try:
            got = os.readv(fd, views)
        except OSError as e:
            if e.errno in (errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR):
                return b"", 0
            raise
        n, rest = divmod(got, ps)
        if rest > self.decoder.header.data_offset:
            return bytes(buf[:got]), n + 1
        return bytes(buf[: n * ps]), n

    def more_waiting(self) -> bool:
        """Pages read and not decoded, or left in the kernel by a cut read:
        the next drain should not wait (records held back for their
        order are not: they come out with the next round)."""
        return bool(self._rounds) or self.more_in_kernel

    def pending(self) -> bool:
        """Pages read but not decoded yet, or records held back."""
        return bool(self._rounds) or bool(self._held)

    def backlog_events(self) -> int:
        """Events in the pages read but not decoded, and those held back
        (counted by decoding them: what a final drain cut short leaves)."""
        dec, n = self.decoder, len(self._held)
        lost_unknown = dec.lost_unknown  # counted when the pages are decoded for real
        for rnd in self._rounds:
            for cpu, pages in rnd:
                tmp: list = []
                dec.decode_pages(pages, self.page_size, cpu, tmp)
                n += len(tmp)
        dec.lost_unknown = lost_unknown
        return n

    def next_round(self) -> list[tuple[int, bytes]]:
        """The oldest round of pages read (:meth:`pull` first): ``[(cpu,
        pages)]`` in CPU order, *pages* one CPU's pages in the order read,
        whole pages but maybe the last (:meth:`_read_run`); [] when none
        waits."""
        self.pull()
        if not self._rounds:
            self._last_cut = frozenset()
            return []
        rnd = self._rounds.popleft()
        self._last_cut = self._cut.popleft()
        self._backlog_bytes -= sum(len(p) for _c, p in rnd)
        return rnd

    def read(self, hold: bool = False) -> list[tuple]:
        """The text parser's ``(name, fields, ts, pid, comm, cpu)`` of the
        records of the oldest round of pages read (:meth:`pull`), by
        timestamp (the lower CPU first on a tie, as the all-CPU pipe
        merges them).  *hold*: in time order from one read to the next
        too, for readers that keep the events (run, check, ``--record``):
        a round's records newer than the last one read from a CPU whose
        read was cut (more of its pages wait) are held back for a later
        read, as that CPU's next pages may be older.  Counting needs no
        order, and the C side counts a round as it comes."""
        return self.records(self.next_round(), hold=hold)

    def records(self, rnd: list[tuple[int, bytes]], hold: bool = False) -> list[tuple]:
        """The records of the round *rnd* (:meth:`next_round`), with those
        held back before, by timestamp; its losses and records counted into
        the stats.  *hold*: keep back what a cut CPU's next pages may
        precede (:meth:`read`); else everything held comes out now."""
        raw: list = self._held
        self._held = []
        dec = self.decoder
        lost = 0
        for cpu, pages in rnd:
            lost += dec.decode_pages(pages, self.page_size, cpu, raw)
        self.stats.lost += lost
        self.stats.lost_unknown = dec.lost_unknown
        if not raw:
            return []
        raw.sort(key=itemgetter(0))
        if hold and rnd and self._last_cut:
            # each CPU's records are in time order: a cut CPU's next pages
            # start after its last record read
            last: dict[int, int] = {}
            for r in raw:
                if r[1] in self._last_cut:
                    last[r[1]] = r[0]
            if last:
                mark = min(last.values())
                keep = bisect.bisect_right(raw, mark, key=itemgetter(0))
                raw, self._held = raw[:keep], raw[keep:]
                if not raw:
                    return []
        conv = self.conv
        out = [conv[eid](ts, cpu, v) for ts, cpu, eid, v in raw]
        if any(r[4] == "<...>" for r in out):
            # a pid first seen since the last read: its name is in
            # saved_cmdlines now (recorded when its event was)
            self.refresh_comms()
            out = [r if r[4] != "<...>" else (*r[:4], self.comms.get(r[3], "<...>"), r[5]) for r in out]
        self.stats.lines += len(out)
        self.stats.events += len(out)
        return out

    def refresh_comms(self) -> None:
        """Re-read ``saved_cmdlines`` (the converters name pids from :attr:`comms`)."""
        self.comms.update(saved_cmdlines(self.root))

    def close(self) -> None:
        for _cpu, fd in self.fds:
            try:
                os.close(fd)
            except OSError:
                pass
        self.fds = []
