"""ftrace ring-buffer pages and event formats (pmemtrace.live.ftrace_binary),
on pages built here record by record as kernel/trace/ring_buffer.c writes them."""

import struct

import pytest

from pmemtrace.live.ftrace_binary import (
    LOST_UNKNOWN,
    FormatError,
    PageDecoder,
    check_header_event,
    parse_event_format,
    parse_header_page,
)

FORMAT = """name: dax_pte_fault
ID: 1058
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:unsigned char common_flags;\toffset:2;\tsize:1;\tsigned:0;
\tfield:unsigned char common_preempt_count;\toffset:3;\tsize:1;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:unsigned long ino;\toffset:8;\tsize:8;\tsigned:0;
\tfield:int result;\toffset:16;\tsize:4;\tsigned:1;
\tfield:char comm[16];\toffset:20;\tsize:16;\tsigned:0;
\tfield:__data_loc char[] name;\toffset:36;\tsize:4;\tsigned:0;

print fmt: "ino %#lx", REC->ino
"""

HEADER_PAGE = """\tfield: u64 timestamp;\toffset:0;\tsize:8;\tsigned:0;
\tfield: local_t commit;\toffset:8;\tsize:8;\tsigned:1;
\tfield: int overwrite;\toffset:8;\tsize:1;\tsigned:1;
\tfield: char data;\toffset:16;\tsize:4080;\tsigned:1;
"""

HEADER_EVENT = """# compressed entry header
\ttype_len    :    5 bits
\ttime_delta  :   27 bits
\tarray       :   32 bits

\tpadding     : type == 29
\ttime_extend : type == 30
\ttime_stamp : type == 31
\tdata max type_len  == 28
"""


def record(eid, pid, ino, result=0):
    body = struct.pack("<HBBiQi16sI", eid, 0, 0, pid, ino, result, b"x" * 16, 0)
    return body + b"\0" * (-len(body) % 4)


def hdr(type_len, delta):
    return struct.pack("<I", type_len | delta << 5)


def page(ts, records, lost=None, size=4096):
    data = b"".join(records)
    commit = len(data)
    tail = b""
    if lost is not None:
        commit |= 1 << 31
        if lost >= 0:
            commit |= 1 << 30
            tail = struct.pack("<Q", lost)
    p = struct.pack("<QQ", ts, commit) + data + tail
    return p + b"\0" * (size - len(p))


def decoder(fmt):
    return PageDecoder(parse_header_page(HEADER_PAGE), {fmt.id: fmt})


def test_format_layout():
    f = parse_event_format(FORMAT, "fs_dax")
    assert (f.name, f.id, f.system) == ("dax_pte_fault", 1058, "fs_dax")
    assert [x.name for x in f.fields][-4:] == ["ino", "result", "comm", "name"]
    assert f.fields[-1].data_loc and f.fields[-2].array == 16
    v = f.unpack_from(record(1058, 77, 0xC, -5))
    assert v[f.index["common_pid"]] == 77 and v[f.index["ino"]] == 0xC and v[f.index["result"]] == -5
    assert v[f.index["comm"]] == b"x" * 16


def test_page_records_deltas_extend_padding_and_big_records():
    f = parse_event_format(FORMAT, "fs_dax")
    r = record(1058, 1, 0xA)
    n = len(r) // 4
    recs = [
        hdr(n, 5) + r,  # ts 1005
        hdr(30, 3) + struct.pack("<I", 2),  # time extend: + (2 << 27) + 3
        hdr(n, 7) + r,  # ts 1005 + 2<<27 + 3 + 7
        hdr(29, 4)
        + struct.pack("<I", 12)
        + b"\0" * 8,  # a discarded record (length after the header); its delta counts (kbuffer)
        hdr(0, 1) + struct.pack("<I", len(r) + 4) + r,  # type_len 0: length word first
        hdr(n, 1) + record(999, 2, 0xB),  # an event not asked for: skipped
        hdr(29, 0),  # end of page's data
    ]
    out = []
    d = decoder(f)
    assert d.decode(page(1000, recs), 3, out) == 0
    t2 = 1005 + (2 << 27) + 3 + 7
    assert [(ts, cpu, eid) for ts, cpu, eid, _ in out] == [(1005, 3, 1058), (t2, 3, 1058), (t2 + 4 + 1, 3, 1058)]
    assert d.skipped == 1


def test_time_stamp_keeps_the_top_bits():
    f = parse_event_format(FORMAT, "fs_dax")
    r = record(1058, 1, 0xA)
    base = (0x1F << 59) | 10
    recs = [hdr(31, 9) + struct.pack("<I", 1), hdr(len(r) // 4, 1) + r]
    out = []
    decoder(f).decode(page(base, recs), 0, out)
    assert out[0][0] == ((1 << 27) + 9 | (0x1F << 59)) + 1


def test_lost_events_stored_and_unknown():
    f = parse_event_format(FORMAT, "fs_dax")
    r = record(1058, 1, 0xA)
    d = decoder(f)
    assert d.decode(page(1, [hdr(len(r) // 4, 1) + r], lost=42), 0, []) == 42
    assert d.decode(page(1, [hdr(len(r) // 4, 1) + r], lost=-1), 0, []) == LOST_UNKNOWN
    buf = page(1, [], lost=7) + page(1, [], lost=-1) + page(1, [])
    assert d.decode_pages(buf, 4096, 0, []) == 7 and d.lost_unknown == 1


@pytest.mark.parametrize(
    "recs",
    [
        [hdr(20, 1) + b"\0" * 8],  # a record longer than the data
        [hdr(0, 1)],  # a length word past the data
        [hdr(30, 1)],  # a time extend cut short
    ],
)
def test_corrupt_pages_raise_format_error(recs):
    f = parse_event_format(FORMAT, "fs_dax")
    with pytest.raises(FormatError):
        decoder(f).decode(page(1, recs), 0, [])
    with pytest.raises(FormatError):  # commit beyond the page
        decoder(f).decode(struct.pack("<QQ", 1, 5000) + b"\0" * 100, 0, [])


def test_headers():
    h = parse_header_page(HEADER_PAGE)
    assert (h.commit_size, h.data_offset) == (8, 16)
    check_header_event(HEADER_EVENT)
    with pytest.raises(FormatError):
        check_header_event(HEADER_EVENT.replace("5 bits", "6 bits"))
    with pytest.raises(FormatError):
        parse_header_page("nothing")
    with pytest.raises(FormatError):
        parse_event_format("format:\n")
