"""The event record of bpf/pmemtrace.h against its Python decoder (cffi is
the oracle: it parses the very header the BPF side compiles)."""

import cffi
import pytest

from pmemtrace.events import Event
from pmemtrace.live import bpf_file
from pmemtrace.live.decode import EVENT_SIZE, FIELDS, KINDS, STRUCT, cdef_text, decode, encode


@pytest.fixture(scope="module")
def ffi():
    f = cffi.FFI()
    f.cdef(cdef_text())
    return f


def test_size_and_offsets_match_header(ffi):
    assert ffi.sizeof("struct pmt_event") == EVENT_SIZE == STRUCT.size == 160
    off = 0
    import struct

    for name, code in FIELDS:
        assert ffi.offsetof("struct pmt_event", name) == off, name
        assert ffi.sizeof(
            ffi.typeof("struct pmt_event")
            .fields[[n for n, _ in ffi.typeof("struct pmt_event").fields].index(name)][1]
            .type
        ) == struct.calcsize(code), name
        off += struct.calcsize(code)
    assert [n for n, _ in ffi.typeof("struct pmt_event").fields] == [n for n, _ in FIELDS]


def test_kinds_match_header_defines():
    text = open(bpf_file("pmemtrace.h")).read()
    import re

    defines = {int(v): k for k, v in re.findall(r"#define PMT_KIND_(\w+) (\d+)", text)}
    assert set(defines) - {0} == set(KINDS)
    assert defines[2] == "PMD_FAULT_DONE" and KINDS[2] == "dax_pmd_fault_done"


def test_decode_cffi_built_record(ffi):
    ev = ffi.new("struct pmt_event *")
    ev.kind = 2
    ev.pid, ev.tid, ev.cpu = 41, 43, 1
    ev.comm = b"mmapper"
    ev.dev = (259 << 20) | 3
    ev.ino = 0x43
    ev.address = ev.vm_start = 0x7F2000000000
    ev.vm_end = 0x7F2000400000
    ev.vm_flags = 0xFB
    ev.pgoff, ev.max_pgoff = 0, 0x20000
    ev.flags, ev.result = 0x255, 0x800
    ev.timestamp = 1_500_000_000
    e = decode(bytes(ffi.buffer(ev)))
    assert e.name == "dax_pmd_fault_done" and e.pid == 41 and e.tid == 43 and e.comm == "mmapper"
    assert e.fields == {
        "dev": (259 << 20) | 3,
        "ino": 0x43,
        "vm_start": 0x7F2000000000,
        "vm_end": 0x7F2000400000,
        "vm_flags": 0xFB,
        "address": 0x7F2000000000,
        "pgoff": 0,
        "max_pgoff": 0x20000,
        "flags": 0x255,
        "result": 0x800,
    }
    assert e.ts == pytest.approx(1.5)
    assert decode(encode(e)).fields == e.fields


def test_negative_ret():
    Event("gup_ret", {"ret": -95}, ts=0.0, pid=1, comm="x")
    b = bytearray(encode(Event("lost", {"count": 5}, ts=0.0, pid=0)))
    assert decode(bytes(b)).fields == {"count": 5}
