"""Small builders for model cases used by the unit tests."""

from pmemtrace.model import explain, parse_case

A = 0x7F0000000000
M = 1 << 20


def fsdax(
    accesses,
    file_size=16 * M,
    extents=None,
    mappings=None,
    kernel="6.12.95+deb12-amd64",
    fs="xfs",
    device=None,
    process=None,
):
    c = {
        "version": 1,
        "kernel": kernel,
        "device": device or {"mode": "fsdax", "map": "mem", "align": "2M", "size": "1G", "data_start": "0x100000000"},
        "file": {
            "size": file_size,
            "fs": fs,
            "ino": 12,
            "extents": extents
            if extents is not None
            else [{"logical": 0, "physical": 2 * M, "length": max(file_size, 2 * M)}],
        },
        "mappings": mappings or [{"id": "m0", "start": A, "length": 16 * M}],
        "accesses": accesses,
    }
    if process:
        c["process"] = process
    return explain(parse_case(c))


def devdax(accesses, align="2M", size="1G", mappings=None, kernel="6.12.95+deb12-amd64"):
    c = {
        "version": 1,
        "kernel": kernel,
        "device": {"mode": "devdax", "align": align, "size": size, "data_start": "0x101200000"},
        "mappings": mappings or [{"id": "m0", "start": A, "length": 8 * M}],
        "accesses": accesses,
    }
    return explain(parse_case(c))


def r(off, m="m0"):
    return {"mapping": m, "offset": off, "op": "read"}


def w(off, m="m0"):
    return {"mapping": m, "offset": off, "op": "write"}


def rows(pred):
    return [(x.outcome, x.result, x.reason) for x in pred.results]


def events(pred, i):
    return [(e.name, e.fields.get("result")) for e in pred.results[i].events()]
