"""The metrics side of ``watch`` and ``diagnose``: command-line options and
their lifecycle.  Everything that can fail (the textfile directory, the
one-exporter lock, the port) is checked in :meth:`open`, before watch
attaches anything, so a refusal leaves nothing behind."""

import argparse
import logging
import os
from typing import Any, Optional

# prometheus_client is imported only when metrics are asked for: these
# options are parsed on every watch/diagnose start

log = logging.getLogger(__name__)


def listen_arg(text: str) -> tuple[str, int]:
    from .serve import parse_listen

    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def textfile_dir_arg(text: str) -> str:
    if not text or not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not a directory; create it first")
    return text


def comm_cap_arg(text: str) -> int:
    if not text.isdigit() or not 0 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r}: give a number of process names, 0 to 1000")
    return int(text)


def add_args(p: argparse.ArgumentParser, watch: bool) -> None:
    g = p.add_argument_group("metrics (Prometheus, docs/metrics.md)")
    g.add_argument(
        "--prometheus",
        metavar="[ADDR:]PORT",
        type=listen_arg,
        help="serve metrics over HTTP at ADDR:PORT (default address: all interfaces)",
    )
    g.add_argument(
        "--textfile",
        metavar="DIR",
        type=textfile_dir_arg,
        help="write metrics to DIR/"
        + ("pmemtrace.prom every --interval" if watch else "pmemtrace-diagnose.prom")
        + " for node_exporter's textfile collector (atomically)",
    )
    if watch:
        g.add_argument(
            "--metrics-comm",
            metavar="N",
            type=comm_cap_arg,
            default=0,
            help="also export per process name, for the first N names seen (the rest as 'other'; default 0: none)",
        )


def _say(msg: str) -> None:
    from ..cli._common import status

    status(msg)


class MetricsOutputs:
    """The endpoint and/or textfile of one command."""

    def __init__(self, command: str, listen: Optional[tuple[str, int]], textfile: Optional[str], name: str):
        self.command = command
        self.listen, self.textfile, self.name = listen, textfile, name
        from prometheus_client.registry import CollectorRegistry

        self.registry = CollectorRegistry(auto_describe=False)
        self.endpoint: Any = None
        self.lock: Any = None
        self.collector: Any = None

    def open(self, host_lock: bool) -> None:
        from .serve import HostLock, HttpEndpoint, check_textfile_dir, remove_stale_temps

        try:
            if self.textfile:
                check_textfile_dir(self.textfile)
                remove_stale_temps(self.textfile, self.name)
            if host_lock:
                self.lock = HostLock()
                self.lock.acquire()
            if self.listen is not None:
                self.endpoint = HttpEndpoint(self.listen, self.registry)
                host, port = self.endpoint.start()
                _say(f"{self.command}: metrics at http://{host if ':' not in host else f'[{host}]'}:{port}/metrics")
        except BaseException:
            self.close()
            raise

    def register(self, collector: Any) -> None:
        self.collector = collector
        self.registry.register(collector)

    def write(self) -> None:
        from .serve import write_textfile

        if not self.textfile:
            return
        try:
            write_textfile(self.textfile, self.name, self.registry)
        except OSError as exc:
            log.warning("metrics: cannot write %s: %s", os.path.join(self.textfile, self.name), exc.strerror or exc)
            if self.collector is not None:
                self.collector.errors.inc("textfile")

    def close(self) -> None:
        if self.endpoint is not None:
            self.endpoint.stop()
            self.endpoint = None
        if self.lock is not None:
            self.lock.release()
            self.lock = None


class WatchMetrics(MetricsOutputs):
    """``watch --prometheus/--textfile``: :meth:`attach` the views once the
    backend is chosen; :meth:`tick` every interval (the main thread)."""

    def __init__(self, args: argparse.Namespace):
        from .watch_exporter import TEXTFILE

        super().__init__("watch", args.prometheus, args.textfile, TEXTFILE)
        self.max_comms = args.metrics_comm
        self.exporter: Any = None

    def attach(self, views: Any, backend: str, release: Optional[str]) -> None:
        from .watch_exporter import WatchExporter

        self.exporter = WatchExporter(views, backend, release=release, max_comms=self.max_comms)
        self.register(self.exporter)
        self.tick()

    def tick(self) -> None:
        if self.exporter is not None:
            self.exporter.publish()
            self.write()


def watch_metrics(args: argparse.Namespace) -> Optional[WatchMetrics]:
    """Opened metrics outputs for watch, or None without the options."""
    if args.prometheus is None and args.textfile is None:
        return None
    m = WatchMetrics(args)
    m.open(host_lock=True)
    return m


def diagnose_metrics(args: argparse.Namespace, run: Any, release: Optional[str]) -> Optional[int]:
    """``diagnose --prometheus/--textfile``: write the textfile once, and
    with --prometheus serve until SIGINT/SIGTERM.  None without the options
    (the ordinary diagnose output follows), else the exit status."""
    if args.prometheus is None and args.textfile is None:
        return None
    import signal
    import threading

    from .diagnose_exporter import TEXTFILE, DiagnoseExporter

    m = MetricsOutputs("diagnose", args.prometheus, args.textfile, TEXTFILE)
    exporter = DiagnoseExporter(run, release=release)
    m.register(exporter)
    try:
        m.open(host_lock=False)
        if m.textfile:
            exporter.refresh()
            m.write()
            _say(f"diagnose: wrote {os.path.join(m.textfile, m.name)}")
        if m.endpoint is not None:
            stop = threading.Event()
            old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
            try:
                while not stop.wait(3600):
                    pass
            finally:
                for s, h in old.items():
                    signal.signal(s, h)
    finally:
        m.close()
    return 0
