"""The one case builder and writer (pmemtrace/model/build.py).  Oracle: the
model itself.  Every embedded example, read into the case dataclasses and
written back with case_to_json, must parse to a case the model predicts
byte-identically for, so the writer loses nothing any producer could say."""

import json

import pytest

from pmemtrace.cli.explain import example_names, load_example
from pmemtrace.model import explain, parse_case
from pmemtrace.model.build import CaseBuilder, case_to_json, devdax_device, extent, fsdax_device
from pmemtrace.model.case import File, Range


@pytest.mark.parametrize("name", example_names())
def test_every_example_survives_the_writer(name):
    original = load_example(name)
    written = case_to_json(original)
    again = parse_case(json.loads(json.dumps(written)))
    assert json.dumps(explain(again).to_json(), sort_keys=True) == json.dumps(
        explain(original).to_json(), sort_keys=True
    )
    assert case_to_json(again) == written  # a fixed point: writing is canonical


def test_builder_writes_what_run_records():
    b = CaseBuilder(
        fsdax_device(data_start=0x100000000, size=1 << 30, dev=(259 << 20)), kernel="6.12.95+deb12-amd64", name="run-x"
    )
    b.file = File(size=4 << 20, extents=[extent(0, 0x200000, 4 << 20, True)], ino=12)
    b.mapping("m0", 0x7F0000000000, 4 << 20)
    b.populate("m0", 4 << 20, write=False)
    b.gup("m0", 0, 8192, write=True, fast=False, longterm=True)
    b.madvise("m0", "nohugepage", 0, 2 << 20)
    b.touch("m0", 4096, write=True)
    b.pwrite(0, 4096)
    b.page_tables.update((0x7F0000200000, 0x7F0000000000))
    js = case_to_json(b.build())
    assert js["device"] == {
        "mode": "fsdax",
        "map": "mem",
        "align": 2 << 20,
        "size": 1 << 30,
        "data_start": "0x100000000",
        "dev": "259:0",
    }
    assert js["file"]["extents"] == [{"logical": 0, "physical": "0x200000", "length": 4 << 20, "unwritten": True}]
    assert [list(a) for a in js["accesses"]] == [
        ["mapping", "op", "offset", "length", "populate", "write"],
        ["mapping", "op", "offset", "length", "write", "fast", "longterm"],
        ["mapping", "op", "advice", "offset", "length"],
        ["mapping", "offset", "op"],
        ["op", "offset", "length"],
    ]
    assert js["process"] == {"page_tables": ["0x7f0000000000", "0x7f0000200000"]}
    parse_case(js)


def test_devdax_ranges_are_written_only_when_they_say_more_than_size():
    one = case_to_json(CaseBuilder(devdax_device(2 << 20, size=1 << 30, data_start=1 << 32)).build())["device"]
    assert "ranges" not in one and one["size"] == 1 << 30
    two = devdax_device(2 << 20, ranges=[Range(1 << 32, 1 << 29, 0), Range(3 << 32, 1 << 29, 1 << 17)])
    js = case_to_json(CaseBuilder(two).build())["device"]
    assert js["ranges"][1] == {"start": hex(3 << 32), "length": 1 << 29, "pgoff": 1 << 17} and "size" not in js
