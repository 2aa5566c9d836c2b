"""The namespace arithmetic against what real kernels did: the fixtures
recorded in the lab (fixtures/<release>/<config>/, META.json says how)."""

import glob
import json
import os
import re

import pytest

from pmemtrace.model.geometry import namespace_layout
from pmemtrace.units import parse_int

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
METAS = sorted(glob.glob(os.path.join(ROOT, "fixtures", "*", "*", "META.json")))
METAS = [m for m in METAS if "handmade" not in m]


def _size(text):
    # ndctl prints "1006.00 MiB (1054.87 MB)"
    m = re.match(r"([\d.]+) (KiB|MiB|GiB)", text)
    return int(float(m.group(1)) * {"KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}[m.group(2)])


@pytest.mark.skipif(not METAS, reason="no recorded lab fixtures in fixtures/ (pmemtrace lab record-fixtures)")
@pytest.mark.parametrize("meta", METAS, ids=lambda p: "/".join(p.split(os.sep)[-3:-1]))
def test_model_layout_matches_recorded_kernel(meta):
    m = json.load(open(meta))
    size, start = (parse_int(x) for x in m["memmap"].split(",")[0].split("!"))
    lay = namespace_layout(
        size, start, m["mode"], m.get("map") or "mem", parse_int(m["align"]), release=m["kernel"], bus="e820"
    )
    if not m.get("accepted", True):
        assert lay.error, f"kernel refused ({m.get('error', '')[:80]}) but the model accepts"
        return
    assert lay.error is None, lay.error
    d = os.path.dirname(meta)
    nd = json.load(open(os.path.join(d, "ndctl.json")))
    ns = nd["regions"][0]["namespaces"][0] if "regions" in nd else nd[0]
    assert _size(ns["size"]) == lay.data_size, (ns["size"], lay.to_json())
