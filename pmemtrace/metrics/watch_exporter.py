"""``watch --prometheus/--textfile``: the watch counters as Prometheus
metrics.

The views are fed on watch's main thread; :meth:`WatchExporter.publish`
(called there every ``--interval`` and at the end) takes a
:class:`~.collect.Snapshot` through the adapter and turns it into label
tuples.  The custom collector reads the last published tuples at scrape
time, from the HTTP server's thread: nothing is mirrored per event, and the
views are never read from two threads."""

import logging
import threading
from typing import Any, Optional

from . import families as fam
from .collect import OUTCOMES, PROBES, Snapshot, snapshot
from .common import ErrorCounter, build_info, families_or_error
from .labels import DeviceLabels

log = logging.getLogger(__name__)

PROBE_FAMILIES = {
    "gup": fam.GUP,
    "get_dev_pagemap": fam.GET_DEV_PAGEMAP,
    "insert_pmd": fam.PMD_INSERTS,
    "devdax": fam.DEVDAX_FAULTS,
}

#: textfile name for node_exporter
TEXTFILE = "pmemtrace.prom"


class WatchExporter:
    """Publishes snapshots of *views*; a prometheus_client collector.

    :param backend: the tracing backend's name (``bcc`` exports the probe
        counters; ``tracefs`` does not see them, so they are left out
        rather than exported as zeros)
    :param max_comms: export per process name for at most this many names
        (the first seen), the rest as ``comm="other"``; 0: no process names
    """

    def __init__(
        self,
        views: Any,
        backend: str,
        release: Optional[str] = None,
        max_comms: int = 0,
        device_labels: Optional[DeviceLabels] = None,
    ):
        self.views = views
        self.backend = backend
        self.release = release
        self.max_comms = max_comms
        self.labels = device_labels or DeviceLabels()
        self.errors = ErrorCounter("watch", ("snapshot", "collect", "textfile"))
        self._comms: dict[str, None] = {}  # the names given their own label, in order seen
        self._lock = threading.Lock()
        self._published: dict[str, list[tuple[tuple[str, ...], float]]] = {}

    # -- the main thread ---------------------------------------------------

    def publish(self) -> bool:
        """Snapshot the views now; False (and an error counted) on failure."""
        try:
            samples = self._samples(snapshot(self.views))
        except Exception as exc:
            log.warning("metrics: snapshot failed: %s", exc)
            self.errors.inc("snapshot")
            return False
        with self._lock:
            self._published = samples
        return True

    def _comm(self, comm: Optional[str]) -> str:
        comm = comm or ""
        if comm in self._comms:
            return comm
        if len(self._comms) < self.max_comms:
            self._comms[comm] = None
            return comm
        return "other"

    def _samples(self, snap: Snapshot) -> dict[str, list[tuple[tuple[str, ...], float]]]:
        faults: dict[tuple[str, ...], int] = {}
        reasons: dict[tuple[str, ...], int] = {}
        probes: dict[str, dict[tuple[str, ...], int]] = {p: {} for p in PROBES}
        by_comm: dict[tuple[str, ...], int] = {}
        for (dev, comm), c in snap.by_key.items():
            dl = self.labels(dev)
            for o in OUTCOMES:
                k = dl + (o,)
                faults[k] = faults.get(k, 0) + c.outcomes.get(o, 0)
            for r, n in c.reasons.items():
                k = dl + (r,)
                reasons[k] = reasons.get(k, 0) + n
            for p in PROBES:
                probes[p][dl] = probes[p].get(dl, 0) + c.probes.get(p, 0)
            if self.max_comms:
                name = self._comm(comm)
                for o in OUTCOMES:
                    by_comm[(name, o)] = by_comm.get((name, o), 0) + c.outcomes.get(o, 0)
        out: dict[str, list[tuple[tuple[str, ...], float]]] = {
            fam.FAULTS.name: sorted(faults.items()),
            fam.FALLBACKS.name: sorted(reasons.items()),
            fam.LOST.name: [((), snap.lost)],
            fam.EVENTS.name: [((), snap.events)],
            fam.FOLDED.name: [((), snap.folded_events)],
            fam.SNAPSHOT_TIME.name: [((), snap.taken)],
        }
        if self.max_comms:
            out[fam.PROCESS_FAULTS.name] = sorted(by_comm.items())
        if self.backend == "bcc":
            for p, f in PROBE_FAMILIES.items():
                out[f.name] = sorted(probes[p].items())
            out[fam.OUTSIDE_DAX.name] = sorted(((k,), v) for k, v in snap.outside_dax.items())
        return out

    # -- the HTTP server's thread (and the textfile writer) ----------------

    def collect(self):
        yield build_info("watch", self.backend, self.release)
        with self._lock:
            published = self._published
        yield from families_or_error(fam.WATCH_FAMILIES, lambda: published, self.errors)
        yield self.errors.family()
