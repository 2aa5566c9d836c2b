"""Prometheus metrics: ``watch --prometheus/--textfile`` (fault counters) and
``diagnose --prometheus/--textfile`` (verdict gauges).

* :mod:`.collect`: the one adapter that reads the watch views (the only
  module that knows their shape);
* :mod:`.families`: metric names, types, labels and help texts;
* :mod:`.watch_exporter`, :mod:`.diagnose_exporter`: the collectors;
* :mod:`.serve`: the HTTP endpoint, the atomic textfile writer, the
  one-exporter-per-host lock and their errors.
"""
