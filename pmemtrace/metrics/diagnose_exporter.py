"""``diagnose --prometheus/--textfile``: the host verdicts as gauges, per
namespace, dax device and DAX mount, and the per-chunk predictions of the
files and mappings given, per mount."""

import logging
import os
import threading
import time
from typing import Any, Callable, Optional

from . import families as fam
from .common import ErrorCounter, build_info, families_or_error

log = logging.getLogger(__name__)

PMD = 2 << 20
#: textfile name for node_exporter (beside watch's pmemtrace.prom)
TEXTFILE = "pmemtrace-diagnose.prom"
#: verdicts that rule out huge faults for their subject
NOT_HUGE = ("pte", "no-dax", "error")


class Diagnosis:
    """One run of diagnose: the host state, its findings and strips."""

    def __init__(self, state: Any, findings: list, strips: list, started: float, duration: float):
        self.state, self.findings, self.strips = state, findings, strips
        self.started, self.duration = started, duration


def _mount_of(state: Any, path: str) -> str:
    from ..host.mounts import mount_for_path

    try:
        m = mount_for_path(state.mounts, os.path.realpath(path))
    except Exception:
        m = None
    return m.mountpoint if m is not None else ""


def samples(d: Diagnosis) -> dict[str, list[tuple[tuple[str, ...], float]]]:
    """Label tuples per family name for one diagnosis."""
    state = d.state
    finding_n: dict[tuple[str, ...], int] = {}
    bad_subjects = set()
    for f in d.findings:
        k = (f.kind, f.subject, f.verdict, f.code)
        finding_n[k] = finding_n.get(k, 0) + 1
        if f.verdict in NOT_HUGE:
            bad_subjects.add(f.subject)
    ns_ok, ns_off = [], []
    for ns in state.inv.namespaces:
        if ns.mode == "devdax":
            continue  # its dax device says it
        dev = ns.block or (ns.pfn.block if ns.pfn else None) or ""
        labels = (ns.name, ns.mode, dev)
        if ns.mode in ("raw", "sector") or ns.mode.startswith("unknown"):
            ns_ok.append((labels, 0))
        elif ns.data_start is not None:
            ns_ok.append((labels, 0 if ns.data_start % PMD else 1))
            ns_off.append((labels, ns.data_start % PMD))
    mounts_mode, mounts_ok = [], []
    for f in d.findings:
        if f.kind != "mount" or f.code not in ("mount-dax", "mount-dax-inode", "mount-no-dax"):
            continue
        mode = {"mount-dax-inode": "inode", "mount-no-dax": "off"}.get(f.code, "always")
        mount = (f.subject, f.details.get("fstype") or "", f.details.get("device") or "")
        mounts_mode.append((mount + (mode,), 1))
        mounts_ok.append((mount, 0 if f.subject in bad_subjects else 1))
    dax_align, dax_ok = [], []
    for dev in state.inv.dax_devices:
        dax = (dev.name, dev.mode or "")
        if dev.align:
            dax_align.append((dax, dev.align))
        dax_ok.append(
            (dax, 1 if dev.mode == "devdax" and (dev.align or 0) >= PMD and dev.name not in bad_subjects else 0)
        )
    chunks: dict[tuple[str, ...], int] = {}
    not_pmd: dict[tuple[str, ...], int] = {}
    for s in d.strips:
        where = _mount_of(state, s.subject) if s.kind == "file" else (s.details.get("mount") or "")
        bad = False
        for ch in s.chunks:
            run = (where, ch.outcome, ch.reason or "")
            chunks[run] = chunks.get(run, 0) + ch.count
            bad = bad or ch.outcome not in ("pmd", "pud", "huge-zero")
        not_pmd[(where,)] = not_pmd.get((where,), 0) + (1 if bad else 0)
    return {
        fam.FINDING.name: sorted(finding_n.items()),
        fam.NS_PMD_CAPABLE.name: sorted(ns_ok),
        fam.NS_MISALIGN.name: sorted(ns_off),
        fam.MOUNT_DAX.name: sorted(mounts_mode),
        fam.MOUNT_PMD_CAPABLE.name: sorted(mounts_ok),
        fam.DAX_ALIGN.name: sorted(dax_align),
        fam.DAX_PMD_CAPABLE.name: sorted(dax_ok),
        fam.FILE_CHUNKS.name: sorted(chunks.items()),
        fam.FILES_NOT_PMD.name: sorted(not_pmd.items()),
        fam.UNREADABLE.name: [((), len(state.roots.unreadable))],
        fam.DIAG_TIME.name: [((), d.started)],
        fam.DIAG_DURATION.name: [((), d.duration)],
    }


class DiagnoseExporter:
    """A prometheus_client collector of diagnoses made by *run* (a callable
    returning a :class:`Diagnosis`).  For the textfile, :meth:`refresh` runs
    it once; behind ``--prometheus`` a scrape runs it again when the last
    one is older than *max_age* seconds (a scrape never waits for more than
    one diagnosis)."""

    def __init__(self, run: Callable[[], Diagnosis], release: Optional[str] = None, max_age: float = 30.0):
        self.run = run
        self.release = release
        self.max_age = max_age
        self.errors = ErrorCounter("diagnose", ("diagnose", "collect", "textfile"))
        self._lock = threading.Lock()
        self._last: Optional[Diagnosis] = None

    def refresh(self) -> Optional[Diagnosis]:
        try:
            d = self.run()
        except Exception as exc:  # the error counter says it; the last good diagnosis stays
            log.warning("metrics: diagnose failed: %s", exc)
            self.errors.inc("diagnose")
            return None
        self._last = d
        return d

    def collect(self):
        with self._lock:
            d = self._last
            if d is None or time.time() - d.started >= self.max_age:
                d = self.refresh() or d
        yield build_info("diagnose", "none", self.release or (d.state.release if d is not None else None))
        if d is not None:
            last = d
            yield from families_or_error(fam.DIAGNOSE_FAMILIES, lambda: samples(last), self.errors)
        yield self.errors.family()
