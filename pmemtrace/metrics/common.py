"""Pieces both exporters share: metric families from :mod:`.families`,
build info, and the scrape-error counter."""

import logging
import os
import threading
from collections.abc import Callable, Iterable
from typing import Any, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from .. import __version__
from .families import BUILD_INFO, SCRAPE_ERRORS, Family

log = logging.getLogger(__name__)


def family(f: Family, samples: Iterable[tuple[tuple[str, ...], float]]) -> Any:
    """A prometheus_client metric family of *f* holding *samples*
    ((label values...), value)."""
    if f.type == "counter":
        mf: Any = CounterMetricFamily(f.name, f.help, labels=f.labels)
    elif f.type == "gauge":
        mf = GaugeMetricFamily(f.name, f.help, labels=f.labels)
    else:
        raise ValueError(f.type)
    for labels, value in samples:
        mf.add_metric(list(labels), value)
    return mf


def build_info(command: str, backend: str, release: Optional[str] = None) -> Any:
    from ..model.profiles import select_profile

    kernel = release or os.uname().release
    try:
        profile = select_profile(kernel).name
    except Exception:  # an unparsable release: the info still says which kernel
        profile = ""
    mf = InfoMetricFamily(BUILD_INFO.name, BUILD_INFO.help, labels=())
    mf.add_metric(
        [], {"version": __version__, "kernel": kernel, "profile": profile, "backend": backend, "command": command}
    )
    return mf


class ErrorCounter:
    """pmemtrace_scrape_errors_total{command, stage}; thread-safe."""

    def __init__(self, command: str, stages: tuple[str, ...]):
        self.command = command
        self.counts = dict.fromkeys(stages, 0)
        self._lock = threading.Lock()

    def inc(self, stage: str) -> None:
        with self._lock:
            self.counts[stage] = self.counts.get(stage, 0) + 1

    def family(self) -> Any:
        with self._lock:
            items = sorted(self.counts.items())
        return family(SCRAPE_ERRORS, (((self.command, k), v) for k, v in items))


def families_or_error(declared: Iterable[Family], published: Callable[[], dict], errors: "ErrorCounter") -> list:
    """The metric families of *declared* from ``published()`` (family
    name -> samples); on an error, none, and the error counted (a scrape
    still answers with build info and the error counter)."""
    try:
        got = published()
        return [family(f, got[f.name]) for f in declared if f.name in got]
    except Exception as exc:
        log.warning("metrics: collect failed: %s", exc)
        errors.inc("collect")
        return []
