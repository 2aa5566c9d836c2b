"""pmemtrace's exception hierarchy and its exit statuses.

The CLI catches :class:`PmemtraceError` only and prints ``str(exc)`` as one
line on stderr, then exits with ``exc.exit_status``.  Anything else is a bug
and keeps its traceback.

Every subcommand uses the same exit statuses (docs/exit-status.md); each
status is one branch of this hierarchy:

====  ======================  =============================================
0     (success)               done, nothing to report
1     :class:`Finding`        a finding: a disagreement, a refused layout,
                              a workload step that failed
2     :class:`UsageError`     bad input or usage (argparse's own errors too)
3     :class:`IncompleteData` incomplete or corrupt data (a trace, a
                              recording, data read back from pmem)
4     :class:`HostUnsupported` missing privilege, kernel feature, DAX
                              target or lab prerequisite on this host
130   (KeyboardInterrupt)     interrupted (Ctrl-C)
====  ======================  =============================================
"""

from typing import ClassVar

EXIT_OK = 0
EXIT_FINDING = 1
EXIT_USAGE = 2
EXIT_DATA = 3
EXIT_HOST = 4
EXIT_INTERRUPTED = 130


class PmemtraceError(Exception):
    """Base class: a user-facing error with a one-line message and remedy."""

    exit_status: ClassVar[int] = EXIT_FINDING


class Finding(PmemtraceError):
    """The command ran and found something to report: a disagreement between
    model and kernel, a refused layout, a workload step that failed (1)."""

    exit_status: ClassVar[int] = EXIT_FINDING


class UsageError(PmemtraceError):
    """Bad input: a malformed case, scenario, trace argument or option (2)."""

    exit_status: ClassVar[int] = EXIT_USAGE


class CaseError(UsageError):
    """A case file is malformed; the message names the offending key."""

    def __init__(self, key: str, message: str) -> None:
        self.key = key
        super().__init__(f"case: {key}: {message}")


class IncompleteData(PmemtraceError):
    """Input data is incomplete or corrupt: a truncated or damaged trace or
    recording, a compressed file that does not decompress (3)."""

    exit_status: ClassVar[int] = EXIT_DATA


class DataCorruption(IncompleteData):
    """Data read back from pmem differs from what was written, or a trace
    line cannot be parsed (3)."""


class HostUnsupported(PmemtraceError):
    """This host cannot do what was asked: a privilege, a kernel feature, a
    DAX target or a lab prerequisite is missing (4)."""

    exit_status: ClassVar[int] = EXIT_HOST


class PrivilegeError(HostUnsupported):
    """The operation needs root (or CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN)."""


class KernelFeatureMissing(HostUnsupported):
    """The running kernel lacks a probe point, tracepoint, headers or config."""


class NoDaxMapping(HostUnsupported):
    """The target is not DAX (not a DAX mount, not a devdax device...)."""


class ProbeAttachError(HostUnsupported):
    """A bcc probe could not be attached."""


class LabError(HostUnsupported):
    """The emulated-pmem lab could not fetch, boot or run a kernel."""


class ExporterConflict(HostUnsupported):
    """A metrics port is in use, or another pmemtrace exporter runs on this host."""


#: every exit status the CLI returns, with its meaning (docs/exit-status.md)
EXIT_STATUSES = {
    EXIT_OK: "ok",
    EXIT_FINDING: "finding or disagreement",
    EXIT_USAGE: "bad input or usage",
    EXIT_DATA: "incomplete or corrupt data",
    EXIT_HOST: "missing privilege or kernel feature",
    EXIT_INTERRUPTED: "interrupted",
}
