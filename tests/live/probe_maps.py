"""The recorded probe maps (fixtures/probe-maps/<release>.json, written by
scripts/record_probe_map.py in a lab guest): which probe-table functions
and fs_dax tracepoints each lab kernel has.  Read by the unit tier
(tests/test_probe_map.py: exact winners per kernel, agreement with the
model's profile) and by the live tier (tests/live/test_probe_map.py: the
running kernel still has the map recorded for its series)."""

import glob
import json
import os

from pmemtrace.live.probes import resolve

MAPS_DIR = os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "fixtures", "probe-maps"
)


def load_maps(directory=MAPS_DIR):
    """{release: recorded map}, every recording."""
    out = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.json"))):
        with open(path) as f:
            m = json.load(f)
        out[m["release"]] = m
    return out


def winners(functions, fs_dax_events):
    """{probe point: winning target} for a kernel's functions and events."""
    return {r.point.name: r.winner for r in resolve(functions, set(fs_dax_events))}


def recorded_for_series(series, directory=MAPS_DIR):
    """The recording of the newest release of lab *series*, or None."""
    from pmemtrace.lab.kernels import release_key

    found = [m for m in load_maps(directory).values() if m.get("series") == series]
    return max(found, key=lambda m: release_key(m["release"])) if found else None
