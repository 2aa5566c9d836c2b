"""Where metrics go: an HTTP endpoint (prometheus_client's server), a
node_exporter textfile written atomically, and the lock that keeps one
tracing exporter per host.  Every failure is a :class:`PmemtraceError`
with one line that says what to do, raised before anything is attached."""

import errno
import glob
import os
import socket
import tempfile
from typing import Any, Optional

from prometheus_client import generate_latest
from prometheus_client.registry import CollectorRegistry

from ..errors import ExporterConflict, PrivilegeError, UsageError


def parse_listen(text: str) -> tuple[str, int]:
    """``[ADDR:]PORT`` (``9101``, ``127.0.0.1:9101``, ``[::1]:9101``) ->
    (addr, port); the address defaults to all interfaces; port 0 picks a
    free one (the status line says which)."""
    addr, sep, port = text.rpartition(":")
    if not sep:
        addr, port = "", text
    if addr.startswith("[") and addr.endswith("]"):
        addr = addr[1:-1]
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{text!r}: give [ADDR:]PORT with a port number 0-65535")
    return addr or "0.0.0.0", int(port)


def check_textfile_dir(path: str) -> str:
    """An existing, writable directory (checked by writing in it)."""
    if not os.path.isdir(path):
        raise UsageError(
            f"--textfile {path}: not a directory; create it first (node_exporter's --collector.textfile.directory)"
        )
    try:
        fd, tmp = tempfile.mkstemp(dir=path, prefix=".pmemtrace-probe.", suffix=".tmp")
    except OSError as exc:
        raise PrivilegeError(
            f"--textfile {path}: cannot write there ({exc.strerror}); give a directory this user can write"
        ) from None
    os.close(fd)
    os.unlink(tmp)
    return path


def remove_stale_temps(directory: str, name: str) -> None:
    """Temporary files of writers that were killed mid-write (their pid is gone)."""
    for tmp in glob.glob(os.path.join(directory, f".{name}.*.tmp")):
        try:
            pid = int(tmp.rsplit(".", 3)[-2])
        except ValueError:
            continue
        if pid != os.getpid() and not os.path.exists(f"/proc/{pid}"):
            try:
                os.unlink(tmp)
            except OSError:
                pass


def write_textfile(directory: str, name: str, registry: Any) -> str:
    """*registry*'s metrics to DIRECTORY/NAME atomically, as node_exporter's
    textfile collector wants: a temporary file in the same directory
    (``.NAME.<pid>.tmp``, never read: it does not end in ``.prom``), fsync,
    rename over NAME, fsync the directory.  Returns the path."""
    path = os.path.join(directory, name)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
    data = generate_latest(registry)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.rename(tmp, path)
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return path


class HostLock:
    """One tracing exporter per host (network namespace): a listening
    abstract unix socket, which the kernel releases when the process ends,
    however it ends; nothing on disk.  A second exporter learns the
    holder's pid from SO_PEERCRED."""

    NAME = b"\0pmemtrace-exporter"

    def __init__(self, name: Optional[bytes] = None):
        self.name = name or self.NAME
        self.sock: Optional[socket.socket] = None

    def acquire(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(self.name)
        except OSError as exc:
            s.close()
            if exc.errno != errno.EADDRINUSE:
                raise
            raise ExporterConflict(
                f"another pmemtrace exporter runs on this host{self._holder()}: stop it, or read its metrics"
            ) from None
        s.listen(1)
        self.sock = s

    def _holder(self) -> str:
        import struct

        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
                c.settimeout(1)
                c.connect(self.name)
                pid, _uid, _gid = struct.unpack("3i", c.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))
                return f" (pid {pid})"
        except OSError:
            return ""

    def release(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class HttpEndpoint:
    """prometheus_client's HTTP server on a daemon thread, serving
    *registry* at ``/metrics`` (any path, as the library does)."""

    def __init__(self, listen: tuple[str, int], registry: CollectorRegistry):
        self.listen = listen
        self.registry = registry
        self.server: Any = None
        self.thread: Any = None

    def start(self) -> tuple[str, int]:
        from prometheus_client import start_http_server

        addr, port = self.listen
        where = f"{addr}:{port}" if ":" not in addr else f"[{addr}]:{port}"
        try:
            self.server, self.thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ExporterConflict(f"--prometheus {where}: address already in use; choose another port") from None
            if exc.errno == errno.EACCES:
                raise PrivilegeError(
                    f"--prometheus {where}: permission denied (ports below 1024 need CAP_NET_BIND_SERVICE)"
                ) from None
            raise UsageError(f"--prometheus {where}: cannot listen there ({exc.strerror or exc})") from None
        host, real_port = self.server.server_address[:2]
        return host, real_port

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
