"""pmemtrace's exception hierarchy.

The CLI catches :class:`PmemtraceError` only and prints ``str(exc)`` as one
line on stderr, then exits with ``exc.exit_status``.  Anything else is a bug
and keeps its traceback.
"""


class PmemtraceError(Exception):
    """Base class: a user-facing error with a one-line message and remedy."""

    exit_status = 1


class UsageError(PmemtraceError):
    """Bad input: a malformed case, scenario or argument (exit status 2)."""

    exit_status = 2


class CaseError(UsageError):
    """A case file is malformed; the message names the offending key."""

    def __init__(self, key, message):
        self.key = key
        super().__init__(f"case: {key}: {message}")


class PrivilegeError(PmemtraceError):
    """The operation needs root (or CAP_BPF/CAP_PERFMON/CAP_SYS_ADMIN)."""


class KernelFeatureMissing(PmemtraceError):
    """The running kernel lacks a probe point, tracepoint, headers or config."""


class NoDaxMapping(PmemtraceError):
    """The target is not DAX (not a DAX mount, not a devdax device...)."""


class ProbeAttachError(PmemtraceError):
    """A bcc probe could not be attached."""


class LabError(PmemtraceError):
    """The emulated-pmem lab could not fetch, boot or run a kernel."""


class DataCorruption(PmemtraceError):
    """Data read back from pmem differs from what was written."""

    exit_status = 3
