"""Pieces both exporters share: metric families from :mod:`.families`,
build info, and the scrape-error counter."""

import os
import threading
from collections.abc import Iterable
from typing import Any, Optional

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily

from .. import __version__
from .families import BUILD_INFO, SCRAPE_ERRORS, Family


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
