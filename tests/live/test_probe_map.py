"""The running kernel's probe map is the one recorded for its lab series
(fixtures/probe-maps/, checked against the model's profile by the unit
tier's tests/test_probe_map.py): same exact winner per probe point, same
fs_dax events.  A Debian update of a series that renames a probed function
shows up here first."""

import os

from pmemtrace.live.probes import kernel_functions

from .labkit import TRACEFS, skip_or_fail
from .probe_maps import recorded_for_series, winners


def _fs_dax_events():
    with open(os.path.join(TRACEFS, "available_events")) as f:
        return sorted(line.split(":", 1)[1].strip() for line in f if line.startswith("fs_dax:"))


def test_probe_map_is_the_recorded_one(lab_gate):
    rec = recorded_for_series(lab_gate.series)
    if rec is None:
        skip_or_fail(
            f"no probe map recorded for lab series {lab_gate.series!r} in fixtures/probe-maps "
            "(record one with scripts/record_probe_map.py)"
        )
    funcs = kernel_functions()
    assert funcs is not None, "cannot read /proc/kallsyms"
    events = _fs_dax_events()
    assert events == rec["fs_dax_events"], (lab_gate.release, rec["release"])
    assert winners(funcs, events) == winners(rec["functions"], rec["fs_dax_events"]), (
        lab_gate.release,
        rec["release"],
    )
    # and the names themselves, module included
    assert {n: funcs.get(n) for n in rec["functions"]} == rec["functions"]
    assert not [n for n in rec["absent"] if n in funcs]
