"""One tracing session: a source of Events feeding the views.

``watch`` (live, bcc or tracefs) and ``replay`` (a file) differ only in
their source; both run :class:`Session`, which filters, records and feeds
:class:`pmemtrace.live.views.Aggregator`.  A source is a :class:`Backend`:

* ``start()``: attach (live) or open (file); raises PmemtraceError;
* ``drain(timeout)``: the :class:`Record` s available within *timeout* seconds;
* ``lost()``: events lost so far (ring buffer, [LOST] markers, recorded);
* ``stop()``: stop producing; what is buffered can still be drained;
* ``close()``: release everything (idempotent, never raises);
* optionally ``counts()``: what the kernel counted since the last call
  (``(rows, by_name)``: :class:`pmemtrace.live.decode.CountedRow` s and
  {event name: n}); the bcc backend aggregates in the kernel, and the
  session folds these in before each view and at the end;
* optionally ``count_into(views, feed) -> bool``: count into the views
  itself from now on (the tracefs backend, in C), handing the records it
  does not count to ``feed`` (:meth:`Session.feed`) as it meets them;
  asked by :meth:`Session.run` when no recorder or ``--events`` wants
  every event.

Every source yields the one record type, :class:`Record`; an
:class:`~pmemtrace.events.Event` is made from it only where one is wanted
(``--events``, ``--record``).  The session keeps no per-event state: each
record goes to the views (and the recorder) and is dropped, so memory
follows the views' rows (``--max-rows``), not the length of the trace.
"""

import logging
import os
import signal
import time
from typing import Any, Callable, NamedTuple, Optional, Protocol

from ..errors import DataCorruption, KernelFeatureMissing
from ..events import Event
from .pagerecord import FORMAT as PAGES_FORMAT
from .pagerecord import RECORDS_FORMAT

log = logging.getLogger(__name__)

#: Fault-start events the views do not need: a PTE fault is counted from its
#: "done" event.  Left out unless every event is wanted (--events, --record),
#: which halves the event rate of a 4 KiB-fault-heavy workload.
START_EVENTS = ("dax_pte_fault",)

#: What tracefs's counting session leaves out besides: the PMD fault's start.
#: Its done event carries the same fields (fs/dax.c: both are
#: DAX_PMD_FAULT_CLASS events, and dax_iomap_pmd_fault() traces the done
#: event on every path out), and the start only made the row early for
#: bcc's PMD-insert probe, which tracefs has not: one event a PMD fault
#: instead of two.  (bcc decides this per kernel: probes.COUNTED_BY_DONE.)
TRACEFS_COUNTING_SKIPS = (*START_EVENTS, "dax_pmd_fault")

#: the format names of binary recordings
BINARY_RECORDINGS = (PAGES_FORMAT, RECORDS_FORMAT)

#: how long the final drain may take when the probes keep firing
FINAL_DRAIN_SECONDS = 120


class Record(NamedTuple):
    """One event as every source yields it: what the views read (the first
    six fields are the tuple :meth:`Aggregator.add_record` takes), plus the
    thread and source an :class:`Event` keeps."""

    name: str
    fields: dict
    ts: Optional[float]
    pid: Optional[int]
    comm: Optional[str]
    cpu: Optional[int]
    tid: Optional[int] = None
    source: str = "replay"

    @classmethod
    def of(cls, ev: Event) -> "Record":
        return cls(ev.name, ev.fields, ev.ts, ev.pid, ev.comm, ev.cpu, ev.tid, ev.source)

    def event(self) -> Event:
        return Event(
            name=self.name,
            fields=self.fields,
            ts=self.ts,
            pid=self.pid,
            tid=self.tid if self.tid is not None else self.pid,
            comm=self.comm,
            cpu=self.cpu,
            source=self.source,
        )


def records_of(events) -> list[Record]:
    """Events (a backend that decodes to Events) as the session's records."""
    return [Record(e.name, e.fields, e.ts, e.pid, e.comm, e.cpu, e.tid, e.source) for e in events]


class Backend(Protocol):
    name: str

    def start(self) -> None: ...

    def drain(self, timeout: float) -> list[Record]: ...

    def lost(self) -> int: ...

    def stop(self) -> None: ...

    def close(self) -> None: ...


# ---------------------------------------------------------------------------
# Live backends


def ringbuf_pages(mb: float) -> int:
    """BPF ring buffers are a power of two pages: the largest not above *mb*."""
    pages = max(1, int(mb * 256))
    return 1 << (pages.bit_length() - 1)


def choose_backend(
    name: str,
    pid: Optional[int],
    buffer_mb: int = 64,
    all_events: bool = True,
    reasons: bool = True,
    file_filter: Optional[tuple] = None,
    record_only: bool = False,
):
    """(backend, why bcc cannot run or None) for ``--backend`` *name*
    (auto, bcc, tracefs); nothing is attached yet.  Unless *all_events*
    (``--events``, ``--record``), bcc counts in the kernel; *reasons*: it
    also sends what fallback attribution replays; *file_filter*: (kernel
    dev, inode or None) of ``--path``, applied in the kernel; *record_only*:
    every event is wanted for a binary recording only (``--record``
    without ``--events``), so bcc counts for the views and records with a
    second program (:class:`~pmemtrace.live.bcc_backend.RecordingBcc`)."""
    from .bcc_backend import BccBackend, RecordingBcc, why_not_bcc
    from .tracefs import TracefsBackend

    if name in ("auto", "bcc"):
        why = why_not_bcc()
        if why is None:

            def bcc(aggregate):
                return BccBackend(
                    pid=pid,
                    ringbuf_pages=ringbuf_pages(buffer_mb),
                    skip=START_EVENTS if aggregate else (),
                    aggregate=aggregate,
                    observe=reasons,
                    file_filter=file_filter,
                )

            if all_events and record_only:
                return RecordingBcc(bcc(True), bcc(False)), None
            return bcc(not all_events), None
        if name == "bcc":
            raise KernelFeatureMissing(f"bcc backend cannot run here: missing {why}")
    tracefs_skip = () if all_events else TRACEFS_COUNTING_SKIPS
    tracefs = TracefsBackend(pid=pid, buffer_kb=buffer_mb * 1024, skip=tracefs_skip, file_filter=file_filter)
    return tracefs, (why if name in ("auto", "bcc") else None)


# ---------------------------------------------------------------------------
# A file as a source (replay)


class FileSource:
    """A recording or a text trace read as a backend: ``replay`` is a
    session whose source is a file.

    After :meth:`start`, :attr:`header` (a recording's first line) and
    :attr:`fmt` are known.  A recording without its end line was cut short
    (``watch`` killed, disk full): :attr:`complete` is False and
    :attr:`incomplete` says why; a last line cut mid-write is dropped."""

    name = "file"
    BATCH = 512  # records per drain: transient, so memory stays with the views

    def __init__(self, path: str, records: bool = False):
        self.path = path
        #: *records*: text traces are tokenized without an Event per line
        #: (the replay hot path); either way drain() gives Records
        self.yields_records = records
        self.fmt: Optional[str] = None
        self.stats: Any = None  # a ParseStats after start()
        self.header: Optional[dict] = None
        self.exhausted = False
        self.truncated_line: Optional[int] = None
        self._events: Any = None  # an iterator of Events or record tuples after start()
        self._first: list[tuple] = []

    def start(self) -> None:
        if self.stats is not None:
            # started already (replay() starts it to read the header before the
            # session does): a second start would re-read the file into fresh
            # stats, and of a file whose events were all read by the first
            # (none at all) it would count nothing, not even its lines and losses
            return
        from .parse import ParseStats, read_events, read_records

        read = read_records if self.yields_records else read_events
        self.fmt, self.stats, self._events = read(self.path, ParseStats())
        # the header comes with the first event: the views' model profile
        # depends on its kernel release
        self._first = self._next_batch(1)
        self.header = getattr(self.stats, "header", None)

    def _next_batch(self, n: int) -> list[tuple]:
        out: list[tuple] = []
        if self.exhausted:
            return out
        try:
            for ev in self._events:
                out.append(ev)
                if len(out) >= n:
                    return out
        except DataCorruption:
            if not self._cut_mid_write():
                raise
            self.truncated_line = self.stats.lines
        self.exhausted = True
        return out

    def _cut_mid_write(self) -> bool:
        """True when the line that failed to parse is the file's last and
        has no newline: a recording killed in the middle of a write."""
        if self.fmt != "jsonl" or getattr(self.stats, "trailer", None) is not None:
            return False
        if self.path == "-" or not os.path.isfile(self.path) or self.path.endswith((".gz", ".xz")):
            return False
        with open(self.path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() == 0:
                return False
            f.seek(-1, os.SEEK_END)
            if f.read(1) == b"\n":
                return False
            f.seek(0)
            lines = sum(1 for _ in f)
        return lines == self.stats.lines

    def drain(self, timeout: float = 0.0) -> list[Record]:
        if self._first:
            out, self._first = self._first, []
        else:
            out = self._next_batch(self.BATCH)
        if self.yields_records:
            return [Record(*t) for t in out]
        return records_of(out)

    def lost(self) -> int:
        return self.stats.lost if self.stats is not None else 0

    @property
    def trailer(self) -> Optional[dict]:
        return getattr(self.stats, "trailer", None)

    @property
    def complete(self) -> bool:
        """False for a recording that has no end line, or says it is incomplete."""
        if self.fmt in BINARY_RECORDINGS:
            return getattr(self.stats, "incomplete", None) is None
        if self.fmt != "jsonl":
            return True
        t = self.trailer
        return t is not None and t.get("complete", True) is not False

    @property
    def incomplete(self) -> Optional[str]:
        if self.complete:
            return None
        if self.fmt in BINARY_RECORDINGS:
            return self.stats.incomplete
        if self.trailer is not None:
            return "the recording says it is incomplete (watch ended by an error)"
        why = "the recording has no end line (watch was killed or the disk filled)"
        if self.truncated_line:
            why += f"; its last line {self.truncated_line} was cut mid-write and is skipped"
        return why

    def stop(self) -> None:
        pass

    def close(self) -> None:
        self._events = None


def drain_remaining(source, feed: Callable[[list], Any], seconds: float) -> int:
    """The final drain of a stopped live *source*: hand its records to
    *feed* until a drain is empty and the source is not ``behind`` (pages
    read ahead and not decoded), for at most *seconds* (the probes may keep
    firing).  Returns the events it still holds when the drain stopped
    short, by time or by a failed read (``unread()``, 0 for a source
    without one): they were traced and not read, so the caller counts them
    as lost.  0 when it emptied.  ``watch`` (:meth:`Session.finish`) and
    ``run``/``check`` (:class:`~pmemtrace.live.tracefs.TraceCapture`)."""
    end = time.monotonic() + seconds
    try:
        while time.monotonic() < end:
            records = source.drain(0)
            if not records and not getattr(source, "behind", False):
                return 0
            feed(records)
    except OSError as e:  # what is still buffered is counted below
        log.warning("final drain stopped: cannot read the trace: %s", e.strerror or e)
    unread = getattr(source, "unread", None)
    return unread() if unread is not None else 0


# ---------------------------------------------------------------------------
# The session


class Session:
    """Feed *source*'s events to *views*.

    :param keep: a predicate on a :class:`Record` (``.pid``, ``.fields``:
        ``--pid``, ``--path``), or None
    :param recorder: a :class:`pmemtrace.live.record.Recorder`, or None
    :param on_event: called with every kept Event (``--events``)
    :param seen_pid: called with the pid of every kept Event (the live
        attributor looks the files up in those processes' maps)
    """

    def __init__(
        self,
        source,
        views,
        keep: Optional[Callable[[Any], bool]] = None,
        recorder=None,
        on_event: Optional[Callable[[Event], None]] = None,
        seen_pid: Optional[Callable[[int], None]] = None,
    ):
        self.source = source
        self.views = views
        self.keep = keep
        self.recorder = recorder
        self.on_event = on_event
        self.seen_pid = seen_pid
        self.started = False
        self.complete = False
        self._lost_seen = 0
        self._stopping: list[int] = []
        self._saved_signals: Optional[dict] = None  # the handlers before start() caught SIGINT/SIGTERM

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> None:
        """Remove what killed pmemtrace runs left (live sources), then
        start the source.  SIGTERM during the start (bcc compiles for
        seconds) stops at once."""
        if self.source.name == "file":
            self.source.start()
            self.started = True
            return
        from .tracefs import remove_orphans_and_report

        remove_orphans_and_report()
        old = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

        def on_term_early(signum, frame):
            raise KeyboardInterrupt

        signal.signal(signal.SIGTERM, on_term_early)
        try:
            self.source.start()
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM while attaching: end now, normally
            signal.signal(signal.SIGTERM, old[signal.SIGTERM])
            self.source.close()
            self._stopping.append(signal.SIGINT)
            self.started = True
            return
        except BaseException:
            signal.signal(signal.SIGTERM, old[signal.SIGTERM])
            self.source.close()
            raise
        # Attached: from now to the end of run(), SIGINT and SIGTERM only ask
        # the session to stop, so that it detaches.  (Restoring the default
        # here left a window before run(): a SIGTERM in it killed watch with
        # its tracefs instance left behind, seen in the lab.)
        self._catch_stop_signals(old)
        self.started = True

    def _catch_stop_signals(self, old: dict) -> None:
        """SIGINT/SIGTERM set a flag checked after every drain (at most
        0.5 s): an exception raised from the handler would land inside
        bcc's ring-buffer callback, where ctypes prints and swallows it and
        watch would run on (seen in the lab under a GUP burst).  *old*: the
        handlers :meth:`_restore_signals` puts back."""
        if self._saved_signals is None:
            self._saved_signals = old
        for sig in old:
            signal.signal(sig, lambda signum, frame: self._stopping.append(signum))

    def _restore_signals(self) -> None:
        for sig, h in (self._saved_signals or {}).items():
            signal.signal(sig, h)
        self._saved_signals = None

    def _source_counts(self) -> None:
        """Let a source that can count into the views itself do so (tracefs
        in C), unless every event must be seen (a recorder, ``--events``)."""
        count_into = getattr(self.source, "count_into", None)
        rec = self.recorder
        if rec is not None:
            rec.attach(self.source)  # the source's pages, where it reads pages
        if (rec is None or not rec.takes_records) and self.on_event is None:
            if count_into is not None:
                count_into(self.views, self.feed)
        elif hasattr(self.source, "in_time_order"):
            self.source.in_time_order = True  # the events are written out one by one: in time order

    def feed(self, records: list[Record]) -> None:
        """The one feed path: each kept record to the views, and as an
        Event to the recorder and ``--events`` when they are there."""
        keep, add, on_event, seen = self.keep, self.views.add_record, self.on_event, self.seen_pid
        rec = self.recorder if self.recorder is not None and self.recorder.takes_records else None
        wants_event = rec is not None or on_event is not None
        for r in records:
            if keep is not None and not keep(r):
                continue
            if seen is not None and r.pid:
                seen(r.pid)
            add(r.name, r.fields, r.ts, r.pid, r.comm, r.cpu)
            if wants_event:
                if on_event is None:
                    if rec is not None:
                        rec.record(r)  # no Event built: the --record hot path
                    continue
                ev = r.event()
                if rec is not None:
                    rec.event(ev)
                on_event(ev)
        if self.recorder is not None:
            self.recorder.flush()  # whole lines per batch: a killed watch leaves a replayable file

    def fold_counts(self) -> None:
        """What the source counted in the kernel since the last call, into
        the views (before each view and at the end)."""
        counts = getattr(self.source, "counts", None)
        if counts is None:
            return
        rows, by_name = counts()
        keep, add = self.keep, self.views.add_counts
        add(None, by_name)
        # mappings first: a process's get_dev_pagemap count joins its last DAX row
        for c in sorted(rows, key=lambda c: not (c.dev or c.vm_start)):
            if keep is not None and not keep(_counted_record(c)):
                continue
            if self.seen_pid is not None and c.pid:
                self.seen_pid(c.pid)
            add(c)

    def snapshot(self) -> dict:
        """The counters now, as ``watch --json`` prints them per interval
        (``rows``, ``totals``, ``events_by_name``; docs/watch.md "Counters
        snapshot"), after folding in what the kernel counted and the
        losses so far.  For exporters (Prometheus) and tests: call it from
        the thread that runs the session (``on_interval``)."""
        self.account_lost()
        self.fold_counts()
        return self.views.to_json()

    def account_lost(self) -> None:
        lost = self.source.lost()
        if lost > self._lost_seen:
            if self.recorder is not None:
                self.recorder.lost_events(lost - self._lost_seen)
            self.views.lost += lost - self._lost_seen
            self._lost_seen = lost

    def run(
        self,
        duration: Optional[float] = None,
        interval: Optional[float] = None,
        on_interval: Optional[Callable[[], None]] = None,
    ) -> bool:
        """Drain until the source is exhausted, *duration* passes, or
        SIGINT/SIGTERM; call *on_interval* every *interval* seconds; then
        stop the source, drain what it buffered and close it.  Returns True
        when the session ended normally (a signal is a normal end)."""
        if not self.started:
            self.start()
        finite = getattr(self.source, "exhausted", None) is not None
        # a file source keeps Python's Ctrl-C: an interrupted replay is an error
        if not finite:
            self._catch_stop_signals({sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)})
        try:
            self._source_counts()
            start = time.monotonic()
            period = interval or 0.0  # 0: no views (next_view stays None)
            next_view = start + period if period else None
            while not self._stopping:
                now = time.monotonic()
                if duration is not None and now - start >= duration:
                    break
                timeout = 0.5
                if next_view is not None:
                    timeout = min(timeout, next_view - now)
                if duration is not None:
                    timeout = min(timeout, start + duration - now)
                self.feed(self.source.drain(max(0.0, timeout)))
                if finite:
                    self.account_lost()  # a file's [LOST] markers: a counter, free
                    if self.source.exhausted:
                        break
                if next_view is not None and time.monotonic() >= next_view:
                    next_view += period
                    if on_interval is not None:
                        # a live source's losses and kernel counts: once per
                        # interval (tracefs opens a stats file per CPU)
                        self.account_lost()
                        self.fold_counts()
                        on_interval()
            self.complete = True
        except KeyboardInterrupt:
            if finite:
                raise
            self.complete = True  # Ctrl-C before the handlers: a normal end
        finally:
            try:
                self.finish()
            finally:
                self._restore_signals()
        return self.complete

    def finish(self) -> None:
        """Stop the source, drain what it already buffered (it was traced,
        not lost; bounded in case the probes keep firing), close it."""
        if getattr(self.source, "exhausted", None) is not None:
            self.source.close()  # a file buffers nothing: an interrupted replay stops here
            return
        try:
            self.source.stop()
            left = drain_remaining(self.source, self.feed, FINAL_DRAIN_SECONDS)
            self.fold_counts()
            self.account_lost()
            if left:
                # the drain was cut short: what the buffer still holds is
                # lost too, and said (a lab --record run once showed 170,234
                # of 262,144 faults with 0 lost)
                log.warning(
                    "final drain stopped short (%d s at most): %d events not read, counted as lost",
                    FINAL_DRAIN_SECONDS,
                    left,
                )
                self.views.lost += left
                if self.recorder is not None:
                    self.recorder.lost_events(left)
        except Exception as e:  # the views so far are still worth showing
            log.debug("final drain failed: %s", e)
        finally:
            self.source.close()


def _counted_record(c) -> Record:
    """A kernel-counted row as a record, for the session's *keep* filter."""
    fields = {"dev": c.dev, "ino": c.ino} if c.dev or c.vm_start else {}
    return Record("counts", fields, None, c.pid, c.comm, None)


# ---------------------------------------------------------------------------
# replay


def _sniff_dat(path: str) -> bool:
    from .parse import _is_dat

    return _is_dat(path)


def _sniff(path: str) -> Optional[str]:
    """The format of a (non-.dat) trace file, as FileSource would find it;
    raises what FileSource would for a file of no known format."""
    from .parse import ParseStats, _is_dat, _sniffed_blocks

    if _is_dat(path):
        return "trace-cmd.dat"
    fmt, _blocks = _sniffed_blocks(path, ParseStats())
    return fmt


def replay(
    path: str,
    kernel: Optional[str] = None,
    pid: Optional[int] = None,
    reasons: bool = True,
    on_event: Optional[Callable[[Event], None]] = None,
    max_rows: Optional[int] = None,
    verify_reuse: bool = False,
):
    """The watch views of a trace file: ``(views, source)``; the model
    profile is *kernel*, else the recording's, else 6.12.  Fallback reasons
    are reused for identical situations (:class:`CachedAttributor`);
    *verify_reuse* runs the model anyway and counts differences."""
    from . import fasttext
    from .views import Aggregator

    def attributor_for(release: str):
        if not reasons:
            return None  # (and the model's modules not imported)
        from .attrcache import CachedAttributor
        from .attribute import Attributor

        return CachedAttributor(Attributor(release=release), verify=verify_reuse)

    if on_event is None and fasttext.usable_for(path) and _sniff(path) == "trace":
        # a text trace: the compiled hot path (pmemtrace.live.fasttext), same output
        from .parse import ParseStats

        stats = ParseStats()
        release = kernel or "6.12"
        attributor = attributor_for(release)
        views = Aggregator(attributor, max_rows=max_rows)
        fasttext.TextReplay(views, stats, keep_pid=pid).run(path)
        return views, fasttext.TextSource(path, stats)
    if on_event is None and fasttext.available() and path != "-" and _sniff_dat(path):
        # a trace-cmd .dat: pages decoded, merged and counted in C (same output)
        from .parse import ParseStats
        from .tracedat import open_pages

        dat, mm = open_pages(path, want_systems={"fs_dax"})
        stats = ParseStats()
        header = dat.header()
        release = kernel or header.get("kernel") or "6.12"
        attributor = attributor_for(release)
        views = Aggregator(attributor, max_rows=max_rows)
        if fasttext.DatReplay(views, stats, keep_pid=pid).run(dat, mm):
            stats.header = header  # type: ignore[attr-defined]
            return views, fasttext.DatSource(path, stats, header, dat)
    src = FileSource(path, records=True)
    src.start()
    release = kernel or (src.header or {}).get("kernel") or "6.12"
    attributor = attributor_for(release)
    views = Aggregator(attributor, max_rows=max_rows)
    keep = None if pid is None else (lambda rec: rec[3] == pid)
    Session(src, views, keep=keep, on_event=on_event).run()
    return views, src
