"""The adapter between the watch views and the metrics: a snapshot of the
counters, taken on the thread that feeds the views.

This is the only metrics module that knows how the views hold their
counts.  It reads the documented ``watch --json`` object
(:meth:`pmemtrace.live.views.Aggregator.to_json`): ``rows[]`` with ``dev``
(``"major:minor"`` or None), ``comm``, the outcome counters ``pmd``,
``pte``, ``huge_zero``, ``fallback``, ``sigbus``, the probe counters
``gup``, ``get_dev_pagemap``, ``insert_pmd``, ``devdax`` and
``fallback_reasons`` (reason -> count); ``totals`` with ``lost``,
``events``, ``outside_dax`` (probe -> hits) and ``other_row.folded_events``.
When watch's counting moves elsewhere, only :func:`snapshot` changes.
"""

import time
from dataclasses import dataclass, field
from typing import Any, Optional

#: outcome of a DAX fault as the watch table counts it
OUTCOMES = ("pmd", "pte", "huge_zero", "fallback", "sigbus")
#: probe hits (bcc backend only)
PROBES = ("gup", "get_dev_pagemap", "insert_pmd", "devdax")


@dataclass
class Counts:
    """Counters of one (device, process name) key."""

    outcomes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    reasons: dict[str, int] = field(default_factory=dict)
    probes: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PROBES, 0))

    def add(self, other: "Counts") -> None:
        for k, v in other.outcomes.items():
            self.outcomes[k] = self.outcomes.get(k, 0) + v
        for k, v in other.reasons.items():
            self.reasons[k] = self.reasons.get(k, 0) + v
        for k, v in other.probes.items():
            self.probes[k] = self.probes.get(k, 0) + v


@dataclass(frozen=True)
class Snapshot:
    """Monotonic counters since watch started, keyed by
    ``(device, comm)``; *device* is ``"major:minor"`` or None (mappings
    beyond ``--max-rows``, probe hits without a file)."""

    taken: float
    by_key: dict[tuple[Optional[str], Optional[str]], Counts]
    lost: int
    events: int
    folded_events: int
    outside_dax: dict[str, int]


def snapshot(views: Any, now: Optional[float] = None) -> Snapshot:
    """A :class:`Snapshot` of *views* (call it on the thread that feeds them)."""
    data = views.to_json()
    by_key: dict[tuple[Optional[str], Optional[str]], Counts] = {}
    for row in data["rows"]:
        c = Counts(
            outcomes={k: int(row.get(k) or 0) for k in OUTCOMES},
            reasons={str(k): int(v) for k, v in (row.get("fallback_reasons") or {}).items()},
            probes={k: int(row.get(k) or 0) for k in PROBES},
        )
        key = (row.get("dev"), row.get("comm"))
        if key in by_key:
            by_key[key].add(c)
        else:
            by_key[key] = c
    totals = data["totals"]
    return Snapshot(
        taken=time.time() if now is None else now,
        by_key=by_key,
        lost=int(totals.get("lost") or 0),
        events=int(totals.get("events") or 0),
        folded_events=int((totals.get("other_row") or {}).get("folded_events") or 0),
        outside_dax={str(k): int(v) for k, v in (totals.get("outside_dax") or {}).items()},
    )
