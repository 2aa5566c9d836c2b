"""The compiled hot path of ``pmemtrace replay`` on fs_dax text traces
(:class:`TextReplay`) and trace-cmd .dat files (:class:`DatReplay`), and of
``watch``'s tracefs backend on each CPU's ``trace_pipe_raw`` pages
(:class:`RawCounting`, the same page decoder and counting, a round of pages
at a time; at the end).

``pmemtrace._replayfast`` (cffi_build/replayfast.c) reads the file's bytes a
block at a time, tokenizes the plain fault lines (``dax_pmd_fault[_done]``,
``dax_pte_fault[_done]``) and counts them into the views' rows itself; what it
does not take comes back here one line at a time and goes through the
pure-Python path, in file order:

* every line it does not recognise (other events, headers, ``[LOST]``
  markers, unusual spacing or numbers, non-ASCII text): the Python tokenizer
  and the careful parser (:mod:`pmemtrace.live.parse`), then
  :meth:`Aggregator.add_record`;
* a PMD fallback in a situation not attributed before: the model
  attributes its reason in Python (:mod:`pmemtrace.live.attribute`, reused
  through :class:`~pmemtrace.live.attrcache.CachedAttributor`); the C side
  computes the same reuse key (``CachedAttributor.situation``) and, once
  Python has told it the reason of a key (and the row has that reason
  already, its evidence kept), counts the next fallbacks of that key
  itself; with ``--no-reasons`` it counts them all (as ``unattributed``);
* every event whose mapping row does not exist yet: Python makes the row
  (and folds it into ``other`` past ``--max-rows``), then the C side counts
  into it;
* the first time a flag or result text is seen: Python decodes it
  (:data:`pmemtrace.events.FAULT_FLAG`, ``VM_FAULT``) and the C side keeps
  the value.

The C side keeps the attributor's entry state (the last faults on each file,
those Python observed itself included) and Python takes what it has not
seen before it handles an event of that file, so the model, and the reuse
key, see what the pure-Python path would have shown them.  A line with a carriage
return, a line longer than :data:`~pmemtrace.live.parse.MAX_LINE`, or a row
the C side cannot key sends the rest of the file to the pure-Python path.

The output is the pure-Python path's, number for number
(tests/test_replay_fast.py compares them on every fixture trace and on
generated ones).  ``PMEMTRACE_PURE_PYTHON=1`` forces the pure-Python path;
without the compiled module replay uses it anyway.
"""

from __future__ import annotations

import codecs
import io
import locale
import os
import sys
from itertools import islice
from typing import Any

from ..compiled import PURE_ENV, pure_python_forced  # noqa: F401 (PURE_ENV: the tests' handle)
from ..events import FAULT_FLAG, VM_FAULT
from .attrcache import VM_NOHUGEPAGE, VM_SHARED, CachedAttributor
from .parse import (
    _FLAG_CACHE,
    _RESULT_CACHE,
    MAX_LINE,
    ParseStats,
    _flag_value,
    _line_blocks,
    _LongLines,
    trace_line_record,
)

RF_ABI = 6  # cffi_build/replayfast.c rf_abi()

try:
    from .. import _replayfast  # type: ignore[attr-defined]

    if _replayfast.lib.rf_abi() != RF_ABI:
        raise ImportError("stale build")
except (ImportError, AttributeError):  # not built (no C compiler at install), or stale: the pure-Python path
    _replayfast = None

BLOCK = 1 << 20  # bytes read per step
_FOLD_ROWS = 1024  # rows whose counts one rf_take_counts call takes
_U64 = 1 << 64
# the C side's event kinds, by number (the last only from .dat files)
_KIND_NAMES = ("dax_pmd_fault", "dax_pmd_fault_done", "dax_pte_fault", "dax_pte_fault_done", "dax_pmd_load_hole")
_DONE_KINDS = {"dax_pmd_fault_done": 1, "dax_pte_fault_done": 3}


def available() -> bool:
    """True when the compiled path is built and not turned off."""
    return _replayfast is not None and not pure_python_forced()


def usable_for(path: str) -> bool:
    """True when *path* can take the compiled path: a regular file, not
    compressed, read in a text encoding whose ASCII bytes are ASCII
    characters one for one (what open() would decode it with)."""
    if not available() or path == "-" or path.endswith((".gz", ".xz")) or not os.path.isfile(path):
        return False
    return codecs.lookup(_encoding()).name in ("utf-8", "ascii")


def _encoding() -> str:
    return locale.getpreferredencoding(False)  # what open(path) in parse.open_trace uses


def _in_u64(*vals: Any) -> bool:
    return all(type(v) is int and 0 <= v < _U64 for v in vals)


class _Recorder:
    """The views' attributor during a compiled replay: the
    CachedAttributor itself, keeping what its last ``attribute`` answered
    (the code, and whether the attributor keeps it for reuse)."""

    def __init__(self, att: CachedAttributor) -> None:
        self.att = att
        self.observe = att.observe
        self.last: tuple[str, bool] | None = None

    def attribute(self, ev: Any) -> tuple[str, dict[str, Any]]:
        att = self.att
        before = att.hits + att.misses
        code, evidence = att.attribute(ev)
        self.last = (code, att.hits + att.misses != before)
        return code, evidence

    def __getattr__(self, name: str) -> Any:
        return getattr(self.att, name)


class _Counting:
    """The C side's state for one replay into *views* (an Aggregator), and
    what both inputs share: a record handed back to the views, the entry
    state taken, the rows registered, the counts folded in at the end."""

    def __init__(self, views: Any, stats: ParseStats, keep_pid: int | None = None) -> None:
        ffi, lib = _replayfast.ffi, _replayfast.lib
        self.ffi, self.lib = ffi, lib
        self.views = views
        self.stats = stats
        self.keep_pid = keep_pid
        self.enc = _encoding()
        att = views.attributor
        self.attributor = att
        self.history = (att.history + 2) if att is not None else 2
        ctx = lib.rf_new(self.history)
        if ctx == ffi.NULL:
            raise MemoryError("replay: cannot allocate the compiled path's state")
        self.ctx = ffi.gc(ctx, lib.rf_free)
        if keep_pid is None:
            ctx.keep_pid = -1
        else:  # a pid no record has (negative, past 63 bits) matches none
            ctx.keep_pid = keep_pid if 0 <= keep_pid < (1 << 63) else (1 << 63) - 1
        ctx.observe = 1 if att is not None else 0
        ctx.write_flag = FAULT_FLAG["WRITE"]
        ctx.sigbus_bit = VM_FAULT["SIGBUS"]
        ctx.fallback_bit = VM_FAULT["FALLBACK"]
        # reuse in C: only where CachedAttributor reuses the same way for
        # every file (no file layout known) and nothing is verified
        self.reuse = (
            isinstance(att, CachedAttributor)
            and not att.verify
            and getattr(att.inner, "file_info_given", True) is False
            # (Attributor keeps at least 2,048 entries a file: past that
            # its history would be shorter than the C side's)
            and 0 < getattr(att.inner, "history", 0) < 2048
        )
        self.recorder: _Recorder | None = None
        if self.reuse:
            ctx.reuse = 1
            ctx.prior = att.inner.history
            ctx.shared_bit = VM_SHARED
            ctx.nohuge_bit = VM_NOHUGEPAGE
            self.recorder = _Recorder(att)
        self.codes: dict[str, int] = {}  # reason code -> its number on the C side
        self.allowed: dict[tuple[int, int], str] = {}  # (row, code number) the C side counts -> code
        self.row_ix: dict[tuple, int] = {}  # views.rows key -> the C side's row number
        n = self.history
        self.hbuf = (
            ffi.new("uint64_t[]", n),
            ffi.new("uint64_t[]", n),
            ffi.new("uint8_t[]", n),
            ffi.new("uint8_t[]", n),
        )
        self.rows: list = []  # row objects, by the C side's row number
        self.fold_buf = (ffi.new("int64_t[]", _FOLD_ROWS), ffi.new("int64_t[]", _FOLD_ROWS * lib.RF_NCNT))
        self.reason_taken: dict[tuple[int, int], int] = {}  # (row, code number) -> reuse count folded
        self.nrows = 0  # views.rows seen (registered or not)
        self.pure = False  # the rest of the file through the pure-Python path
        self.in_c = True  # the C side still follows the file (its history)

    def _begin(self) -> None:
        if self.recorder is not None:
            self.views.attributor = self.recorder

    def _end(self) -> None:
        if self.recorder is not None:
            self.views.attributor = self.attributor

    # -- one line through the pure-Python path -----------------------------

    def _py_line(self, line: str) -> None:
        rec = trace_line_record(line, self.stats)
        if rec is not None:
            self._add(rec)

    def _add(self, rec: tuple) -> None:
        """A record (name, fields, ts, pid, comm, cpu) through the views' own path."""
        if self.keep_pid is not None and rec[3] != self.keep_pid:
            return
        views = self.views
        noted = self.ctx.rec_noted  # of the record handed back last (0 for a line C did not parse)
        key_kept = self.ctx.rec_key
        if self.attributor is not None:
            f = rec[1]
            self._take_history(f.get("dev", 0), f.get("ino", 0))
        n = len(views.rows)
        self._into_views(rec)
        if len(views.rows) != n:
            self._register(len(views.rows) - self.nrows)
        if self.reuse and self.in_c:
            kind = _DONE_KINDS.get(rec[0])
            if kind and not noted:
                self._note(rec[1], kind)
            last = self.recorder.last  # type: ignore[union-attr]
            if last is not None:
                self.recorder.last = None  # type: ignore[union-attr]
                self._learn(rec, last[0], last[1] and key_kept)

    def _into_views(self, rec: tuple) -> None:
        self.views.add_record(*rec)

    def _note(self, f: dict, kind: int) -> None:
        """A fault-done event the attributor observed and the C side did
        not parse: into its history, at its place."""
        dev, ino = f.get("dev", 0), f.get("ino", 0)
        if not _in_u64(dev, ino):
            return  # a file the C side never sees
        pgoff, res, flags = f.get("pgoff", 0), f.get("result", 0), f.get("flags", 0)
        if not (_in_u64(pgoff, res) and type(flags) is int):
            kind = -1  # one it cannot hold: no reuse on this file
        if self.lib.rf_note(
            self.ctx,
            dev,
            ino,
            pgoff if kind > 0 else 0,
            res if kind > 0 else 0,
            bool(kind > 0 and flags & FAULT_FLAG["WRITE"]),
            kind,
        ):
            raise MemoryError("replay: the compiled path ran out of memory")

    def _learn(self, rec: tuple, code: str, cached: bool) -> None:
        """After Python attributed a fallback: its situation key's reason to
        the C side (when the attributor keeps it for reuse), and the row's
        leave to count that reason itself once the row has it (and keeps no
        more evidence of it, for unexplained ones)."""
        lib, ctx = self.lib, self.ctx
        cid = self.codes.setdefault(code, len(self.codes))
        if cached and lib.rf_learn(ctx, cid):
            raise MemoryError("replay: the compiled path ran out of memory")
        f = rec[1]
        ix = self.row_ix.get((rec[3], f.get("dev"), f.get("ino"), f.get("vm_start"), f.get("vm_end")))
        if ix is None or (ix, cid) in self.allowed:
            return
        row = self.rows[ix]
        if code in row.reasons and (code != "unexplained" or len(row.evidence) >= self.views.max_evidence):
            if lib.rf_allow(ctx, ix, cid):
                raise MemoryError("replay: the compiled path ran out of memory")
            self.allowed[(ix, cid)] = code

    def _take_history(self, dev: Any, ino: Any) -> None:
        """The entry state the C side kept for (dev, ino), to the attributor."""
        if not _in_u64(dev, ino):
            return  # (also after a switch to the pure path: what the C side kept is still taken)
        pg, res, wr, kd = self.hbuf
        n = self.lib.rf_take_history(self.ctx, dev, ino, pg, res, wr, kd, self.history)
        if n:
            unpack = self.ffi.unpack
            self.attributor.observe_entries(
                (dev, ino),
                list(
                    zip(
                        unpack(pg, n),
                        map(bool, unpack(wr, n)),
                        map(_KIND_NAMES.__getitem__, unpack(kd, n)),
                        unpack(res, n),
                    )
                ),
            )

    def _register(self, new: int) -> None:
        """Tell the C side about the *new* rows Python just made (the last
        ones of views.rows, in order)."""
        items = list(islice(reversed(self.views.rows.items()), new))[::-1]
        self.nrows += new
        for (pid, dev, ino, vs, ve), row in items:
            if not _in_u64(pid, dev, ino):
                continue  # no line the C side takes has such a key
            bounded = vs is not None or ve is not None
            if bounded and not _in_u64(vs, ve):
                # the C side cannot hold its bounds, and a PTE event inside
                # them belongs to it: the rest goes the pure-Python way
                self.pure = True
                return
            r = self.lib.rf_add_row(self.ctx, len(self.rows), pid, dev, ino, bounded, vs or 0, ve or 0)
            if r:
                raise MemoryError("replay: the compiled path ran out of memory")
            self.row_ix[(pid, dev, ino, vs, ve)] = len(self.rows)
            self.rows.append(row)

    def _finish(self) -> None:
        """What the C side counted, into the views, at the end of a replay."""
        self._fold()
        self.views.lost += self.stats.lost

    def _fold(self) -> None:
        """What the C side counted since the last fold, into the views (its
        counters are zeroed as they are taken)."""
        lib, ctx, views = self.lib, self.ctx, self.views
        rows, counts = self.fold_buf
        while True:
            n = lib.rf_take_counts(ctx, rows, counts, _FOLD_ROWS)
            if not n:
                break
            nc = lib.RF_NCNT
            got = self.ffi.unpack(counts, n * nc)
            for j, i in enumerate(self.ffi.unpack(rows, n)):
                pmd, pte, sigbus, fallback, huge_zero = got[j * nc : j * nc + 5]
                row = self.rows[i]
                row.pmd += pmd
                row.pte += pte
                row.sigbus += sigbus
                if fallback:  # only without an attributor (--no-reasons)
                    row.fallback += fallback
                    row.reasons["unattributed"] = row.reasons.get("unattributed", 0) + fallback
                row.huge_zero += huge_zero  # dax_pmd_load_hole, .dat only
        for key, code in self.allowed.items():
            total = lib.rf_reason_count(ctx, *key)  # fallbacks counted by reuse (a running total)
            n = total - self.reason_taken.get(key, 0)
            if n:
                self.reason_taken[key] = total
                row = self.rows[key[0]]
                row.fallback += n
                row.reasons[code] += n
        if self.reuse:
            self.attributor.hits += ctx.reuse_hits
            ctx.reuse_hits = 0
        for k, name in enumerate(_KIND_NAMES):
            n = ctx.by_kind[k]
            if n:
                views.by_name[name] = views.by_name.get(name, 0) + n
                ctx.by_kind[k] = 0
        views.events += ctx.view_events
        ctx.view_events = 0


class TextReplay(_Counting):
    """One replay of a text trace, counting lines and events into *stats*
    as the pure-Python path does."""

    # -- the file ----------------------------------------------------------

    def run(self, path: str) -> None:
        self._begin()
        try:
            self._read(path)
        finally:
            self._end()
        self._finish()

    def _read(self, path: str) -> None:
        # one buffer, read into again and again: a fresh 1 MiB bytes per
        # block costs its page faults every time
        buf = bytearray(2 * BLOCK + MAX_LINE + 1)
        view = memoryview(buf)
        with open(path, "rb") as f:
            base = 0  # file offset of buf[0]
            have = 0  # bytes of buf holding file data (a partial line first)
            while True:
                got = f.readinto(view[have : have + BLOCK])
                if not got:
                    if have:
                        buf[have] = 10  # the last line, without its newline
                        switch = self._block(buf, have + 1)
                        if switch is not None:
                            self._rest(f, base + switch)
                    break
                have += got
                end = buf.rfind(b"\n", 0, have) + 1
                switch = self._block(buf, end) if end else None
                if switch is None and have - end > MAX_LINE:
                    switch = end  # a line too long to hold: the pure-Python path's rule for it
                if switch is not None:
                    self._rest(f, base + switch)
                    break
                view[: have - end] = view[end:have]  # the partial line to the front
                have -= end
                base += end
        view.release()

    def _rest(self, f, offset: int) -> None:
        """The rest of the file from *offset* (a line start) through the
        pure-Python path."""
        self.in_c = False
        f.seek(offset)
        text = io.TextIOWrapper(f, encoding=self.enc, errors="replace")
        long_lines = _LongLines(self.stats)
        long_lines.sniffed("trace")
        try:
            for lines in _line_blocks(text, long_lines, start=self.stats.lines):
                for line in lines:
                    self._py_line(line)
        finally:
            text.detach()

    def _block(self, buf: bytearray, end: int) -> int | None:
        """Lines of buf[:end] (whole lines): None, or the offset from which
        the rest of the file must take the pure-Python path."""
        if self.pure:
            return 0
        lib, ctx, st = self.lib, self.ctx, self.stats
        cbuf = self.ffi.from_buffer(buf)
        pos = 0
        while True:
            r = lib.rf_run(ctx, cbuf, end, pos)
            st.lines += ctx.lines
            st.events += ctx.events
            ctx.lines = ctx.events = 0
            if r == lib.RF_DONE:
                return None
            s, e = ctx.pos, ctx.line_end
            if r == lib.RF_LINE:
                self._py_line(buf[s:e].decode(self.enc, "replace"))
                pos = e + 1
                if self.pure:
                    return pos
            elif r == lib.RF_TOKEN:
                off = s + ctx.tok_off
                if not self._token(ctx.tok_kind, buf[off : off + ctx.tok_len]):
                    self._py_line(buf[s:e].decode(self.enc, "replace"))
                    pos = e + 1
                else:
                    pos = s  # the same line again, its text now known
            elif r == lib.RF_SWITCH:
                return s
            else:
                raise MemoryError("replay: the compiled path ran out of memory")

    def _token(self, kind: int, raw: bytearray) -> bool:
        """Decode a flag (kind 0) or result (kind 1) text for the C side;
        False when it keeps no value for it (its lines come to Python)."""
        text = raw.decode("ascii")
        data = bytes(raw)
        if kind == 0:
            v = _flag_value(text, _FLAG_CACHE, FAULT_FLAG)
        else:
            v = _RESULT_CACHE.get(text)
            if v is None:
                v = _flag_value(text, _RESULT_CACHE, VM_FAULT)
        value = v if v is not None and 0 <= v < (1 << 63) else -1  # -1: such lines come to Python
        return bool(self.lib.rf_set_token(self.ctx, kind, data, len(data), value))


class _Pages(_Counting):
    """What a replay of a .dat and a live read of tracefs's binary pages
    share: the event table the C side decodes the records with."""

    #: the fields the C side reads, in the order of rf_dat_event's table
    FIELDS = (
        "common_pid",
        "dev",
        "ino",
        "vm_start",
        "vm_end",
        "address",
        "pgoff",
        "max_pgoff",
        "flags",
        "result",
        "vm_flags",
    )

    def _dat_events(self, formats: dict, conv: dict) -> bool:
        """Tell the C side the layout of each event of *conv* (ids with a
        converter, :func:`~pmemtrace.live.fsdax_binary.converters`) among
        *formats*; False when it refuses one."""
        ffi, lib, ctx = self.ffi, self.lib, self.ctx
        for eid in conv:
            f = formats[eid]
            f.layout(False)
            by_name = {x.name: x for x in f.fields}
            table = []
            for name in self.FIELDS:
                x = by_name.get(name) if name in f.index else None
                if x is None or x.array is not None or x.data_loc or x.size not in (1, 2, 4, 8):
                    table += [-1, 0, 0]
                else:
                    table += [x.offset, x.size, int(bool(x.signed))]
            kind = _KIND_NAMES.index(f.name) if f.name in _KIND_NAMES else len(_KIND_NAMES)  # handed back
            if f.name == "dax_pmd_load_hole" and ("vm_start" in f.index or "vm_end" in f.index):
                kind = len(_KIND_NAMES)  # the C side finds its row by address: not with bounds given
            if lib.rf_dat_event(ctx, eid, kind, f.unpacker.size, ffi.new("int32_t[]", table)):
                return False
        return True


class DatReplay(_Pages):
    """One replay of a trace-cmd .dat (:mod:`pmemtrace.live.tracedat`): the
    ring-buffer pages decoded, the CPUs merged and the fault events counted
    in C; other fs_dax events, fallbacks and new rows come back here, where
    the record is unpacked and converted as the pure path does it."""

    def run(self, dat: Any, mm: Any) -> bool:
        """Replay *dat* (and its mmap *mm*, :func:`~pmemtrace.live.tracedat.open_dat`);
        False when the C side does not take the file (a big-endian file,
        pages it finds unusual, maybe past records it has counted): the
        caller then replays it through the pure-Python path into new views,
        which says what is wrong if anything is.

        A CPU's data is decompressed and decoded a piece at a time, when the
        merge in C asks for it (RF_MORE), and dropped when its records are
        all merged: memory holds a piece per CPU, not the file."""
        from .fsdax_binary import converters
        from .ftrace_binary import FormatError
        from .tracedat import _Truncated, cpu_pages

        ffi, lib, ctx = self.ffi, self.lib, self.ctx
        h = dat.header_page
        if dat.big_endian or sys.byteorder != "little" or h is None:
            return False
        conv = converters(dat.formats, dat.cmdlines)
        cpus = [c for c in sorted(dat.cpus, key=lambda c: c.cpu) if c.size]
        if lib.rf_dat_layout(ctx, dat.page_size, h.ts_offset, h.commit_offset, h.commit_size, h.data_offset, len(cpus)):
            return False
        if not self._dat_events(dat.formats, conv):
            return False
        pieces = [cpu_pages(dat, mm, c) for c in cpus]
        held: list = [None] * len(cpus)  # each slot's current piece (and its cffi view): the C side reads it
        self._begin()
        try:
            while True:
                r = lib.rf_dat_run(ctx)
                if r == lib.RF_MORE:
                    slot = ctx.need_slot
                    held[slot] = None  # its records are all merged
                    try:
                        piece = next(pieces[slot], None)
                    except (_Truncated, FormatError):
                        return False  # the pure path raises it, with its message
                    if piece is None:
                        lib.rf_dat_end(ctx, slot)
                        continue
                    cbuf = ffi.from_buffer(piece)
                    held[slot] = (piece, cbuf)
                    if lib.rf_dat_piece(ctx, slot, cbuf, len(piece)):
                        return False
                    continue
                if r == lib.RF_DONE:
                    break
                if r != lib.RF_LINE:
                    raise MemoryError("replay: the compiled path ran out of memory")
                eid = ctx.rec_eid
                values = dat.formats[eid].unpack_from(held[ctx.rec_slot][0], ctx.rec_off)
                self._add(conv[eid](ctx.rec_ts, cpus[ctx.rec_slot].cpu, values))
        finally:
            self._end()
        st = self.stats
        st.lines += ctx.dat_records
        st.events += ctx.dat_records
        # a recording's LOST frames count what the pages count too, and more
        st.lost += max(ctx.dat_lost, dat.recorded_lost)
        st.skipped += ctx.dat_skipped
        st.lost_unknown += ctx.dat_lost_unknown
        self._finish()
        return True


class RawCounting(_Pages):
    """``watch``'s tracefs backend on the compiled path: each round of
    ``trace_pipe_raw`` pages (:meth:`~pmemtrace.live.rawpipe.RawPipes.next_round`)
    decoded, merged by timestamp and counted into the views in C, as
    :meth:`~pmemtrace.live.rawpipe.RawPipes.read` and the session's feed
    would (the same order: the rounds one after the other, each merged);
    what Python must see (new rows, fallbacks to attribute, the other
    fs_dax events, dax_pte_fault) goes to *feed* (``Session.feed``) as the
    C side meets it, one record at a time, and the counts are folded into
    the rows after every round (:meth:`round`).  The pages' losses are
    counted into the stats as the Python reader counts them.

    A round the C side finds unusual (a page that is not whole, a CPU
    going back in time, what :mod:`~pmemtrace.live.ftrace_binary` would
    call corrupt) is found so before anything of it is counted, and goes
    through the Python reader (:meth:`~pmemtrace.live.rawpipe.RawPipes.records`)
    instead, record by record to *feed*."""

    def __init__(self, views: Any, raw: Any, feed: Any) -> None:
        super().__init__(views, raw.stats)
        self.raw = raw
        self.feed = feed
        self.page_size = raw.page_size
        self.formats = raw.decoder.formats

    @classmethod
    def make(cls, views: Any, raw: Any, feed: Any) -> RawCounting | None:
        """The compiled path for the reader *raw* (a :class:`~pmemtrace.live.rawpipe.RawPipes`)
        into *views*, or None where it cannot run (not built, turned off, a
        big-endian host, a layout it refuses): the caller reads in Python."""
        if not available() or sys.byteorder != "little" or raw.decoder.big_endian:
            return None
        self = cls(views, raw, feed)
        h = raw.decoder.header
        lib, ctx = self.lib, self.ctx
        # a dax_pte_fault start has no row: counted in C only in a process
        # and file the session's filter let in (a row of theirs exists),
        # else handed to the filter (--record enables one each 4 KiB fault)
        ctx.pte_start_needs_file = 1
        if lib.rf_dat_layout(ctx, self.page_size, h.ts_offset, h.commit_offset, h.commit_size, h.data_offset, 0):
            return None
        if not self._dat_events(self.formats, raw.conv):
            return None
        return self

    def _into_views(self, rec: tuple) -> None:
        from .session import Record

        name, fields, ts, pid, comm, cpu = rec
        self.feed([Record(name, fields, ts, pid, comm, cpu, pid, "tracefs")])

    def round(self, rnd: list[tuple[int, bytes]]) -> None:
        """Count the round of pages *rnd* (``[(cpu, pages)]``), then fold
        the counts into the views."""
        try:
            if not self._c_round(rnd):
                for rec in self.raw.records(rnd):
                    self.ctx.rec_noted = self.ctx.rec_key = 0  # a record the C side did not parse
                    self._add(rec)
        finally:
            self._fold()

    def _c_round(self, rnd: list[tuple[int, bytes]]) -> bool:
        """The round through the C side: False (nothing counted) when it
        refuses it."""
        ffi, lib, ctx, ps = self.ffi, self.lib, self.ctx, self.page_size
        by_cpu: dict[int, list[bytes]] = {}
        for cpu, pages in rnd:
            if len(pages) % ps:
                return False  # the C side reads a CPU's pages at page-size steps
            by_cpu.setdefault(cpu, []).append(pages)
        cpus = sorted(by_cpu)
        if lib.rf_dat_round(ctx, len(cpus)):
            return False
        held = []  # each slot's piece and its cffi view: the C side reads them until the round ends
        for slot, cpu in enumerate(cpus):
            piece = b"".join(by_cpu[cpu])  # one CPU's pages come in one bytes: not copied
            cbuf = ffi.from_buffer(piece)
            held.append((piece, cbuf))
            r = lib.rf_dat_piece(ctx, slot, cbuf, len(piece))
            if r == lib.RF_NOMEM:
                raise MemoryError("watch: the compiled path ran out of memory")
            if r or lib.rf_dat_end(ctx, slot):
                # refused while decoding: nothing merged or counted yet, and
                # what the pages said so far is dropped (Python counts it)
                ctx.dat_records = ctx.dat_skipped = ctx.dat_lost = ctx.dat_lost_unknown = 0
                return False
        st, dec = self.stats, self.raw.decoder
        n = ctx.dat_records
        st.lines += n
        st.events += n
        st.lost += ctx.dat_lost
        dec.lost_unknown += ctx.dat_lost_unknown
        dec.skipped += ctx.dat_skipped
        st.lost_unknown = dec.lost_unknown
        ctx.dat_records = ctx.dat_skipped = ctx.dat_lost = ctx.dat_lost_unknown = 0
        formats, conv, named = self.formats, self.raw.conv, False
        self._begin()
        try:
            while True:
                r = lib.rf_dat_run(ctx)
                if r == lib.RF_DONE:
                    return True
                if r != lib.RF_LINE:
                    raise MemoryError("watch: the compiled path ran out of memory")
                eid, slot = ctx.rec_eid, ctx.rec_slot
                rec = conv[eid](ctx.rec_ts, cpus[slot], formats[eid].unpack_from(held[slot][0], ctx.rec_off))
                if rec[4] == "<...>":
                    if not named:  # a pid first seen since the last read (as RawPipes.records)
                        self.raw.refresh_comms()
                        named = True
                    rec = (*rec[:4], self.raw.comms.get(rec[3], "<...>"), rec[5])
                self._add(rec)
        finally:
            self._end()


class TextSource:
    """What the CLI reads of a replayed source (as of
    :class:`~pmemtrace.live.session.FileSource`) for a text trace that took
    the compiled path."""

    header: dict | None = None
    incomplete: str | None = None

    def __init__(self, path: str, stats: ParseStats) -> None:
        self.path = path
        self.fmt = "trace"
        self.stats = stats


class DatSource(TextSource):
    """:class:`TextSource` of a .dat that took the compiled path."""

    def __init__(self, path: str, stats: ParseStats, header: dict, dat: Any) -> None:
        super().__init__(path, stats)
        self.fmt = dat.fmt  # trace-cmd.dat, or a pmemtrace page recording
        self.header = header
        self.incomplete = dat.incomplete
