"""Aggregation views shared by ``watch`` (live) and ``replay`` (offline).

One row per mapping: (pid, comm, device, inode, VMA range).  PTE-class fs_dax
events carry no VMA bounds, so they join the row of the same (pid, dev, ino)
whose range contains their address; until one is known they sit in a row
whose range is ``?``.  bcc events always carry the bounds.
"""

import json

from ..events import VM_FAULT, Event
from .tracefs import fault_outcome

FALLBACK = VM_FAULT["FALLBACK"]
SIGBUS = VM_FAULT["SIGBUS"]

COUNTERS = ("pmd", "pte", "huge_zero", "fallback", "sigbus", "gup", "get_dev_pagemap", "insert_pmd", "devdax")

#: probe-point logical names (bcc backend) -> row counter
PROBE_COUNTERS = {
    "get_dev_pagemap": "get_dev_pagemap",
    "gup": "gup",
    "gup_fast": "gup",
    "insert_pmd": "insert_pmd",
    "insert_pud": "insert_pmd",
    "devdax_fault": "devdax",
}


def _dev(d):
    return f"{d >> 20}:{d & 0xFFFFF}"


def human_size(n):
    """Bytes as the largest binary unit that divides them exactly (``64G``,
    ``2M``, ``12K``), else to one decimal with a ``~`` (``~1.5G``): short
    enough for the RANGE column, never a number cut in half."""
    for shift, unit in ((40, "T"), (30, "G"), (20, "M"), (10, "K")):
        if n >= 1 << shift:
            if n & ((1 << shift) - 1) == 0:
                return f"{n >> shift}{unit}"
            if n >= 10 << shift:
                return f"~{n / (1 << shift):.0f}{unit}"
            return f"~{n / (1 << shift):.1f}{unit}"
    return f"{n}B"


class Row:
    __slots__ = ("pid", "comm", "dev", "ino", "vm_start", "vm_end") + COUNTERS + ("reasons", "evidence")

    def __init__(self, pid, comm, dev, ino, vm_start=None, vm_end=None):
        self.pid, self.comm, self.dev, self.ino = pid, comm, dev, ino
        self.vm_start, self.vm_end = vm_start, vm_end
        for c in COUNTERS:
            setattr(self, c, 0)
        self.reasons = {}
        self.evidence = []  # unexplained fallbacks, first few

    def target(self):
        if self.dev is None:
            return "-"
        return f"{_dev(self.dev)}:{self.ino}"

    def range(self, wide=False):
        """``start+size`` with a human size (``0x7f0000000000+64G``) that
        never cuts a number; *wide*: the exact end, ``start-end``."""
        if self.vm_start is None:
            return "?"
        if wide:
            return f"{self.vm_start:#x}-{self.vm_end:#x}"
        return f"{self.vm_start:#x}+{human_size(self.vm_end - self.vm_start)}"

    def to_json(self):
        d = {
            "pid": self.pid,
            "comm": self.comm,
            "dev": None if self.dev is None else _dev(self.dev),
            "ino": self.ino,
            "vm_start": self.vm_start,
            "vm_end": self.vm_end,
        }
        for c in COUNTERS:
            d[c] = getattr(self, c)
        d["fallback_reasons"] = dict(self.reasons)
        if self.evidence:
            d["unexplained_evidence"] = self.evidence
        return d


class _EventView:
    """The attributes of an :class:`Event` the attributor reads, reused for
    every tokenized record instead of one Event per line."""

    __slots__ = ("name", "fields", "pid", "comm")


#: default bound on mapping rows (``--max-rows``): a row retains 0.6 to 1.5 KB
#: (benchmarks/bench_rows.py, docs/watch.md), so 10,000 rows stay under 15 MB
DEFAULT_MAX_ROWS = 10000


class Aggregator:
    """Folds Events into per-mapping rows.  *attributor* is optional.

    The views keep no per-event state: memory grows with the distinct
    mappings (rows), which *max_rows* bounds: once that many rows exist,
    the events of further mappings are counted in one ``other`` row
    (:attr:`folded_events` of them)."""

    def __init__(self, attributor=None, max_evidence=5, max_rows=None):
        self.max_rows = max_rows
        self.other = None  # the row of mappings beyond max_rows
        self.folded_events = 0
        self.rows = {}
        self.by_file = {}  # (pid, dev, ino) -> list of rows with bounds
        self.by_pid = {}  # pid -> list of rows with bounds
        self.last_by_pid = {}  # pid -> row of the last DAX event
        self.attributor = attributor
        self.max_evidence = max_evidence
        self.lost = 0
        self.events = 0
        self.by_name = {}
        self.unmatched = {}  # probe hits outside any DAX mapping seen
        self._shim = _EventView()  # one reused view of a record, for the attributor

    def _row(self, ev):
        return self._row_of(ev.fields, ev.pid, ev.comm)

    def _row_of(self, f, pid, comm):
        dev, ino = f.get("dev"), f.get("ino")
        vs, ve = f.get("vm_start"), f.get("vm_end")
        if vs is None:
            addr = f.get("address")
            cands = self.by_file.get((pid, dev, ino), ()) if dev is not None else self.by_pid.get(pid, ())
            for r in cands:
                if addr is not None and r.vm_start <= addr < r.vm_end:
                    return r
            if dev is None:
                # probe hits without a file (GUP, get_dev_pagemap): the
                # process's DAX row seen last, else a per-process row
                r = self.last_by_pid.get(pid)
                if r is not None and addr is None:
                    return r
        key = (pid, dev, ino, vs, ve)
        r = self.rows.get(key)
        if r is None:
            if self.max_rows is not None and len(self.rows) >= self.max_rows:
                self.folded_events += 1
                if self.other is None:
                    self.other = Row(None, "(other)", None, None)
                return self.other
            r = Row(pid, comm, dev, ino, vs, ve)
            self.rows[key] = r
            if vs is not None:
                self.by_file.setdefault((pid, dev, ino), []).append(r)
                self.by_pid.setdefault(pid, []).append(r)
        if dev is not None:
            self.last_by_pid[pid] = r
        return r

    def add_record(self, name, fields, ts, pid, comm, cpu):
        """:meth:`add` for a tokenized trace line (the tuple of
        :func:`~pmemtrace.live.parse.iter_trace_records`), without an :class:`Event`
        (the replay hot path): the fs_dax fault events are folded here, the
        rest (rare) goes through :meth:`add`."""
        by_name = self.by_name
        by_name[name] = by_name.get(name, 0) + 1
        self.events += 1
        if name == "dax_pte_fault":
            return
        if name == "dax_pte_fault_done":
            r = self._row_of(fields, pid, comm)
            if self.attributor is not None:
                shim = self._shim
                shim.name, shim.fields, shim.pid, shim.comm = name, fields, pid, comm
                self.attributor.observe(shim)
            if fields.get("result", 0) & SIGBUS:
                r.sigbus += 1
            else:
                r.pte += 1
            return
        # undo the counting: add() counts again
        by_name[name] -= 1
        self.events -= 1
        self.add(Event(name=name, fields=fields, ts=ts, pid=pid, tid=pid, comm=comm, cpu=cpu, source="replay"))

    def add(self, ev):
        self.events += 1
        name = ev.name
        self.by_name[name] = self.by_name.get(name, 0) + 1
        if name == "lost":
            self.lost += ev.fields.get("count", 0)
            return
        f = ev.fields
        if name == "dax_pmd_fault":
            self._row(ev)  # the row exists before the insert probe fires
            return
        if name == "dax_pmd_fault_done":
            r = self._row(ev)
            kind = fault_outcome(name, f.get("result", 0))
            if self.attributor is not None:
                self.attributor.observe(ev)
            if kind == "fallback":
                r.fallback += 1
                if self.attributor is not None:
                    code, evidence = self.attributor.attribute(ev)
                else:
                    code, evidence = "unattributed", None
                r.reasons[code] = r.reasons.get(code, 0) + 1
                if code == "unexplained" and evidence and len(r.evidence) < self.max_evidence:
                    r.evidence.append(evidence)
            elif kind == "sigbus":
                r.sigbus += 1
            else:
                r.pmd += 1
        elif name == "dax_pte_fault_done":
            r = self._row(ev)
            if self.attributor is not None:
                self.attributor.observe(ev)
            if fault_outcome(name, f.get("result", 0)) == "sigbus":
                r.sigbus += 1
            else:
                r.pte += 1
        elif name == "dax_pmd_load_hole":
            self._row(ev).huge_zero += 1
        elif name in ("gup", "gup_fast", "get_dev_pagemap"):
            # only GUP on a DAX VMA seen in the trace, get_dev_pagemap in a
            # process with DAX activity; the rest is counted apart
            r = None
            addr = f.get("address")
            if addr is not None:
                for cand in self.by_pid.get(ev.pid, ()):
                    if cand.vm_start <= addr < cand.vm_end:
                        r = cand
                        break
            else:
                r = self.last_by_pid.get(ev.pid)
            if r is None:
                self.unmatched[name] = self.unmatched.get(name, 0) + 1
                return
            c = PROBE_COUNTERS[name]
            setattr(r, c, getattr(r, c) + 1)
        elif name in PROBE_COUNTERS:
            # insert/devdax probes carry the VMA but no dev/ino: join the
            # process's row whose VMA contains the address, if any
            r = None
            addr = f.get("address")
            if f.get("dev") is None and addr is not None:
                for cand in self.by_pid.get(ev.pid, ()):
                    if cand.vm_start <= addr < cand.vm_end:
                        r = cand
                        break
            if r is None:
                r = self._row(ev)
            c = PROBE_COUNTERS[name]
            setattr(r, c, getattr(r, c) + 1)
            if name == "devdax_fault":
                o = f.get("order", 0)
                if f.get("result", 0) & FALLBACK:
                    r.fallback += 1
                    r.reasons["devdax"] = r.reasons.get("devdax", 0) + 1
                elif f.get("result", 0) & SIGBUS:
                    r.sigbus += 1
                elif o >= 9:
                    r.pmd += 1
                else:
                    r.pte += 1

    def add_counts(self, c, by_name=None):
        """Fold what the kernel counted (aggregate mode) into the rows: *c*
        a :class:`pmemtrace.live.decode.CountedRow` of increments, the same
        row an event of that mapping would reach.  *by_name*: {event name:
        increment} for ``events_by_name`` and ``events``."""
        if by_name:
            for name, n in by_name.items():
                self.by_name[name] = self.by_name.get(name, 0) + n
                self.events += n
        if c is None:
            return
        if not c.dev and not c.vm_start:
            # get_dev_pagemap by process: its last DAX row, as for the event
            r = self.last_by_pid.get(c.pid)
            if r is None:
                self.unmatched["get_dev_pagemap"] = self.unmatched.get("get_dev_pagemap", 0) + c.get_dev_pagemap
            else:
                r.get_dev_pagemap += c.get_dev_pagemap
            return
        f = {"dev": c.dev, "ino": c.ino, "vm_start": c.vm_start, "vm_end": c.vm_end}
        r = self._row_of(f, c.pid, c.comm)
        if r is self.other:
            self.folded_events += c.pmd + c.pte + c.huge_zero + c.insert_pmd + c.get_dev_pagemap - 1
        r.pmd += c.pmd
        r.pte += c.pte
        r.huge_zero += c.huge_zero
        r.insert_pmd += c.insert_pmd
        r.get_dev_pagemap += c.get_dev_pagemap

    def totals(self):
        t = dict.fromkeys(COUNTERS, 0)
        reasons = {}
        for r in self.sorted_rows():
            for c in COUNTERS:
                t[c] += getattr(r, c)
            for k, v in r.reasons.items():
                reasons[k] = reasons.get(k, 0) + v
        t["fallback_reasons"] = reasons
        t["lost"] = self.lost
        t["events"] = self.events
        t["outside_dax"] = dict(self.unmatched)
        if self.other is not None:
            t["other_row"] = {"max_rows": self.max_rows, "folded_events": self.folded_events}
        return t

    def to_json(self):
        return {
            "rows": [r.to_json() for r in self.sorted_rows()],
            "totals": self.totals(),
            "events_by_name": dict(sorted(self.by_name.items())),
        }

    def sorted_rows(self):
        rows = sorted(self.rows.values(), key=lambda r: (r.pid or 0, r.dev or 0, r.ino or 0, r.vm_start or 0))
        if self.other is not None:
            rows.append(self.other)  # last: the mappings beyond max_rows
        return rows

    def render(self, width=80, wide=False):
        """The table (under 80 columns) plus reason lines, as text.  Numbers
        are never cut: ranges show human sizes, and a longer comm or target
        widens its column; *wide*: exact ranges (``start-end``), whole comms."""
        rows = self.sorted_rows()
        cells = [
            (
                str(r.pid if r.pid is not None else "-"),
                (r.comm or "-") if wide else (r.comm or "-")[:10],
                r.target(),
                r.range(wide),
            )
            for r in rows
        ]
        wt = max([12] + [len(c[2]) for c in cells])
        wr = max([20] + [len(c[3]) for c in cells])
        wc = max([10] + [len(c[1]) for c in cells])
        wn = max([6] + [len(str(max(r.pmd, r.pte, r.fallback))) for r in rows])
        wh = max([4] + [len(str(r.huge_zero)) for r in rows])
        hdr = (
            f"{'PID':>7} {'COMM':<{wc}} {'DEV:INO':<{wt}} {'RANGE':<{wr}} {'PMD':>{wn}} {'PTE':>{wn}} "
            f"{'HZP':>{wh}} {'FALLBK':>{wn}}"
        )
        out = [hdr]
        for r, (pid, comm, target, rng) in zip(rows, cells):
            out.append(
                f"{pid:>7} {comm:<{wc}} {target:<{wt}} {rng:<{wr}} {r.pmd:>{wn}} {r.pte:>{wn}} "
                f"{r.huge_zero:>{wh}} {r.fallback:>{wn}}"
            )
            extra = []
            if r.reasons:
                extra.append("fallback: " + ", ".join(f"{k} {v}" for k, v in sorted(r.reasons.items())))
            if r.sigbus:
                extra.append(f"sigbus {r.sigbus}")
            for c, label in (
                ("gup", "gup"),
                ("get_dev_pagemap", "get_dev_pagemap"),
                ("insert_pmd", "insert_pmd"),
                ("devdax", "devdax faults"),
            ):
                if getattr(r, c):
                    extra.append(f"{label} {getattr(r, c)}")
            if extra:
                out.append(" " * 8 + "; ".join(extra))
            for e in r.evidence[:1]:
                out.append(
                    " " * 8
                    + "unexplained: "
                    + json.dumps({k: (hex(v) if isinstance(v, int) else v) for k, v in e.items()})
                )
        t = self.totals()
        out.append(
            f"total: {t['pmd']} PMD, {t['pte']} PTE, {t['huge_zero']} huge zero, "
            f"{t['fallback']} fallbacks, {t['sigbus']} SIGBUS"
        )
        out.append(
            f"       {t['gup']} GUP, {t['get_dev_pagemap']} get_dev_pagemap, "
            f"{t['insert_pmd']} PMD inserts, lost {t['lost']}"
        )
        return "\n".join(out)
