"""Every metric pmemtrace exports: name, type, label names, help.

Names follow Prometheus' conventions: the ``pmemtrace_`` prefix, base units
(bytes, seconds), ``_total`` on counters (added by the client library, so
the names here are the families' names without it), labels of bounded
cardinality (device, fs, mount, outcome, reason; a process name only with
``--metrics-comm N``, at most N of them; never a pid or an inode).
docs/metrics.md documents each one; tests/test_metrics.py checks the two
agree and runs ``promtool check metrics`` on the output."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str  # without _total for counters
    type: str  # counter | gauge | info
    labels: tuple[str, ...]
    help: str

    @property
    def sample_name(self) -> str:
        """The name of its samples: ``_total`` on counters, ``_info`` on info."""
        return self.name + {"counter": "_total", "info": "_info"}.get(self.type, "")


DEVICE = ("device", "mount", "fs")

# -- both exporters --------------------------------------------------------
BUILD_INFO = Family(
    "pmemtrace_build",
    "info",
    ("version", "kernel", "profile", "backend", "command"),
    "pmemtrace version, running kernel, model profile used for reasons, tracing backend (watch) and command",
)
SCRAPE_ERRORS = Family(
    "pmemtrace_scrape_errors",
    "counter",
    ("command", "stage"),
    "Errors while producing metrics, by command (watch, diagnose) and stage (snapshot, diagnose, collect, textfile)",
)

# -- watch -----------------------------------------------------------------
FAULTS = Family(
    "pmemtrace_dax_faults",
    "counter",
    DEVICE + ("outcome",),
    "DAX page faults by outcome: pmd (2 MiB mapped), pte (4 KiB), huge_zero (huge zero page for a hole), "
    "fallback (a PMD attempt that fell back to 4 KiB), sigbus",
)
FALLBACKS = Family(
    "pmemtrace_dax_pmd_fallbacks",
    "counter",
    DEVICE + ("reason",),
    "PMD faults that fell back to 4 KiB, by the reason the reference model gives (pmemtrace reasons)",
)
PROCESS_FAULTS = Family(
    "pmemtrace_process_dax_faults",
    "counter",
    ("comm", "outcome"),
    'DAX page faults by process name and outcome (only with --metrics-comm N: the first N names, the rest as comm="other")',
)
GUP = Family("pmemtrace_gup_calls", "counter", DEVICE, "get_user_pages calls on DAX mappings (bcc backend)")
GET_DEV_PAGEMAP = Family(
    "pmemtrace_get_dev_pagemap_calls",
    "counter",
    DEVICE,
    "get_dev_pagemap calls in processes with DAX mappings (bcc backend)",
)
PMD_INSERTS = Family(
    "pmemtrace_pmd_inserts",
    "counter",
    DEVICE,
    "Calls of the kernel's PMD/PUD insert function on DAX mappings (bcc backend)",
)
DEVDAX_FAULTS = Family("pmemtrace_devdax_faults", "counter", DEVICE, "device-dax huge faults (bcc backend)")
OUTSIDE_DAX = Family(
    "pmemtrace_probe_hits_outside_dax", "counter", ("probe",), "Probe hits outside any DAX mapping seen (bcc backend)"
)
LOST = Family("pmemtrace_lost_events", "counter", (), "Trace events lost because the kernel buffer was full")
EVENTS = Family("pmemtrace_events", "counter", (), "Trace events read")
FOLDED = Family(
    "pmemtrace_folded_events", "counter", (), 'Events of mappings beyond --max-rows, counted with device="other"'
)
SNAPSHOT_TIME = Family(
    "pmemtrace_snapshot_timestamp_seconds",
    "gauge",
    (),
    "Unix time of the counters exported (refreshed every --interval)",
)

# -- diagnose --------------------------------------------------------------
FINDING = Family(
    "pmemtrace_diagnose_finding",
    "gauge",
    ("kind", "subject", "verdict", "code"),
    "Findings of pmemtrace diagnose (1 per finding): kind namespace|dax|mount|partition|kernel|host|file|mapping, "
    "verdict pmd|pud|pte|no-dax|error|info|warn, code a host code or reason",
)
NS_PMD_CAPABLE = Family(
    "pmemtrace_namespace_pmd_capable",
    "gauge",
    ("namespace", "mode", "device"),
    "1 when the fsdax namespace's data starts 2 MiB aligned (PMD faults possible), else 0",
)
NS_MISALIGN = Family(
    "pmemtrace_namespace_data_misalignment_bytes",
    "gauge",
    ("namespace", "mode", "device"),
    "Bytes past a 2 MiB boundary where the namespace's data starts (0 = aligned)",
)
MOUNT_DAX = Family(
    "pmemtrace_mount_dax",
    "gauge",
    ("mount", "fs", "device", "mode"),
    "DAX mode of a filesystem on pmem (1 for its mode: always, inode, off)",
)
MOUNT_PMD_CAPABLE = Family(
    "pmemtrace_mount_pmd_capable",
    "gauge",
    ("mount", "fs", "device"),
    "1 when nothing found on the mount (DAX off, partition or allocation unit off 2 MiB) rules out PMD faults",
)
DAX_ALIGN = Family(
    "pmemtrace_dax_device_align_bytes",
    "gauge",
    ("device", "mode"),
    "device-dax align (2 MiB or 1 GiB allow huge faults)",
)
DAX_PMD_CAPABLE = Family(
    "pmemtrace_dax_device_pmd_capable",
    "gauge",
    ("device", "mode"),
    "1 when the device-dax device can take 2 MiB (or 1 GiB) faults",
)
FILE_CHUNKS = Family(
    "pmemtrace_diagnose_chunks",
    "gauge",
    ("mount", "outcome", "reason"),
    "2 MiB chunks of the files and mappings diagnosed, by predicted first-touch outcome and fallback reason",
)
FILES_NOT_PMD = Family(
    "pmemtrace_diagnose_files_not_pmd",
    "gauge",
    ("mount",),
    "Files or mappings diagnosed with at least one 2 MiB chunk that cannot get a PMD",
)
UNREADABLE = Family(
    "pmemtrace_diagnose_unreadable_paths", "gauge", (), "sysfs/procfs files diagnose could not read (partial diagnosis)"
)
DIAG_TIME = Family("pmemtrace_diagnose_timestamp_seconds", "gauge", (), "Unix time of the last diagnosis")
DIAG_DURATION = Family("pmemtrace_diagnose_duration_seconds", "gauge", (), "How long the last diagnosis took")

WATCH_FAMILIES = (
    BUILD_INFO,
    SCRAPE_ERRORS,
    FAULTS,
    FALLBACKS,
    PROCESS_FAULTS,
    GUP,
    GET_DEV_PAGEMAP,
    PMD_INSERTS,
    DEVDAX_FAULTS,
    OUTSIDE_DAX,
    LOST,
    EVENTS,
    FOLDED,
    SNAPSHOT_TIME,
)
DIAGNOSE_FAMILIES = (
    BUILD_INFO,
    SCRAPE_ERRORS,
    FINDING,
    NS_PMD_CAPABLE,
    NS_MISALIGN,
    MOUNT_DAX,
    MOUNT_PMD_CAPABLE,
    DAX_ALIGN,
    DAX_PMD_CAPABLE,
    FILE_CHUNKS,
    FILES_NOT_PMD,
    UNREADABLE,
    DIAG_TIME,
    DIAG_DURATION,
)
ALL_FAMILIES = tuple({f.name: f for f in WATCH_FAMILIES + DIAGNOSE_FAMILIES}.values())
