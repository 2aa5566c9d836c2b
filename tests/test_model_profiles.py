"""Every difference between kernel profiles, each tested on a case."""

import pytest

from pmemtrace.errors import UsageError
from pmemtrace.model.profiles import PROFILES, select_profile

from modelkit import A, M, devdax, fsdax, r, w

NOPAGE, FALLBACK = 0x100, 0x800


@pytest.mark.parametrize(
    "release,name",
    [
        ("6.1.0-27-amd64", "6.1"),
        ("6.1.192", "6.1"),
        ("6.12.95+deb12-amd64", "6.12"),
        ("6.13.2", "6.12"),
        ("6.14.2", "6.14"),
        ("6.15.0", "6.15"),
        ("6.16.9", "6.16"),
        ("6.17.1", "6.17"),
        ("6.18.44-fc-v769", "6.18"),
        ("7.2.13+deb14-amd64", "7.0"),
        ("7.3.4+deb13-amd64", "7.0"),
        ("8.0", "7.0"),
        # the releases fleets run (issue 15): each gets its own span's profile
        ("4.18.0-513.el8.x86_64", "4.18"),
        ("5.14.0-362.el9.x86_64", "5.11"),
        ("5.15.0-91-generic", "5.15"),
        ("6.8.0-45-generic", "6.6"),
        ("5.10.0-46-amd64", "5.10"),
        ("5.4.0-200-generic", "4.18"),
        ("5.7", "5.10"),
        ("5.19", "6.1"),
        ("6.2", "6.2"),
        ("6.4", "6.4"),
        ("6.10", "6.12"),
    ],
)
def test_release_selects_its_span_profile(release, name):
    assert select_profile(release).name == name


def test_every_release_from_4_18_has_exactly_one_span():
    from pmemtrace.model.profiles import RELEASE_SPANS

    releases = (
        [(4, m) for m in range(18, 21)]
        + [(5, m) for m in range(20)]
        + [(6, m) for m in range(20)]
        + [(7, m) for m in range(4)]
    )
    for ver in releases:
        hits = [p.name for first, last, p in RELEASE_SPANS if first <= ver <= last]
        assert len(hits) == 1, (ver, hits)
    # spans are contiguous and in order
    for (_, last, _), (first, _, _) in zip(RELEASE_SPANS, RELEASE_SPANS[1:]):
        nxt = (last[0], last[1] + 1) if first[0] == last[0] else (first[0], 0)
        assert first == nxt, (last, first)


def test_too_old_or_malformed_release():
    with pytest.raises(UsageError, match=r"older than 4.18"):
        select_profile("4.17.0")
    with pytest.raises(UsageError, match="not of the form"):
        select_profile("bookworm")
    with pytest.raises(UsageError, match=r"there is no Linux 5.20"):
        select_profile("5.20.1")


@pytest.mark.parametrize(
    "release,basis,on,note",
    [
        ("5.10.0-46-amd64", "lab", "5.10.0-46-amd64", None),
        ("6.1.0-50-amd64", "lab", "6.1.0-50-amd64", None),
        ("6.12.95+deb12-amd64", "lab", "6.12.95+deb12-amd64", None),
        ("7.2.13+deb14-amd64", "lab", "7.2.13+deb14-amd64", None),
        ("6.17.1", "source", None, None),
        ("4.18.0-513.el8.x86_64", "source", None, "a RHEL 8 kernel"),
        ("5.14.0-362.el9.x86_64", "source", None, "a RHEL 9 kernel"),
        ("5.15.0-91-generic", "source", None, "an Ubuntu kernel"),
        ("6.8.0-45-generic", "source", None, "an Ubuntu kernel"),
        ("8.1", "lab", "7.2.13+deb14-amd64", "8.1 is newer than 7.3"),
    ],
)
def test_every_answer_says_how_its_profile_is_known(release, basis, on, note):
    p = select_profile(release)
    v = p.verification()
    assert (v["basis"], v["verified_on"]) == (basis, on)
    assert (v["note"] is None) if note is None else v["note"].startswith(note)
    text = p.verification_text()
    assert ("verified in the lab on " + on in text) if on else "source reading only" in text
    # and the JSON of every explain answer carries it
    assert fsdax([r(0)], kernel=release).to_json()["profile_detail"]["verification"] == v


def test_source_only_profiles_are_not_marked_verified():
    # only kernels the lab tier ran on may carry verified_on
    for p in PROFILES:
        assert p.verified_on in (
            None,
            "5.10.0-46-amd64",
            "6.1.0-50-amd64",
            "6.12.95+deb12-amd64",
            "7.2.13+deb14-amd64",
        ), p.name


@pytest.mark.parametrize(
    "kernel,fn",
    [
        ("4.18.0", "vmf_insert_pfn_pmd"),
        ("5.10.0", "vmf_insert_pfn_pmd_prot"),
        ("6.1.0", "vmf_insert_pfn_pmd_prot"),
        ("6.4.0", "vmf_insert_pfn_pmd"),
        ("6.12.0", "vmf_insert_pfn_pmd"),
        ("6.15.0", "vmf_insert_folio_pmd"),
        ("7.2.0", "vmf_insert_folio_pmd"),
    ],
)
def test_pmd_insert_function_per_kernel(kernel, fn):
    p = fsdax([w(0)], kernel=kernel)
    assert p.results[0].all_calls().get(fn) == 1
    # devdax PMD faults use the same primitive
    p = devdax([r(0)], kernel=kernel)
    assert p.results[0].all_calls().get(fn) == 1


@pytest.mark.parametrize(
    "kernel,fn",
    [("6.1.0", "vmf_insert_pfn_pud_prot"), ("6.12.0", "vmf_insert_pfn_pud"), ("6.15.0", "vmf_insert_folio_pud")],
)
def test_pud_insert_function_per_kernel(kernel, fn):
    p = devdax([r(0)], align="1G", size="2G", kernel=kernel, mappings=[{"id": "m0", "start": A, "length": 1 << 30}])
    assert p.results[0].outcome == "pud"
    assert p.results[0].all_calls().get(fn) == 1


@pytest.mark.parametrize("kernel,fn", [("6.1.0", "vmf_insert_mixed_mkwrite"), ("6.15.0", "vmf_insert_page_mkwrite")])
def test_pte_insert_function_per_kernel(kernel, fn):
    p = fsdax([w(0)], kernel=kernel, mappings=[{"id": "m0", "start": A, "length": 16 * M, "nohugepage": True}])
    assert p.results[0].all_calls().get(fn) == 1


@pytest.mark.parametrize(
    "kernel,calls", [("5.10.0", 256), ("6.1.0", 256), ("6.12.0", 256), ("6.15.0", 0), ("6.17.0", 0), ("7.2.0", 0)]
)
def test_gup_get_dev_pagemap_per_kernel(kernel, calls):
    # O_DIRECT into a DAX buffer: one get_dev_pagemap() per 4 KiB page grabbed
    # while DAX mappings carry pXX_devmap (<= 6.14)
    p = fsdax([{"mapping": "m0", "op": "gup", "offset": 0, "length": M, "write": True}], kernel=kernel)
    assert p.results[0].pinned == 256
    assert p.results[0].all_calls().get("get_dev_pagemap", 0) == calls


@pytest.mark.parametrize("kernel,via_insert", [("6.12.0", False), ("6.17.0", False), ("6.18.0", True), ("7.2.0", True)])
def test_huge_zero_page_insertion(kernel, via_insert):
    ext = [{"logical": 0, "physical": 2 * M, "length": 4 * M, "unwritten": True}]
    p = fsdax([r(0)], kernel=kernel, file_size=4 * M, extents=ext)
    res = p.results[0]
    assert res.outcome == "huge-zero"
    assert [e.name for e in res.events()] == ["dax_pmd_fault", "dax_pmd_load_hole", "dax_pmd_fault_done"]
    fn = select_profile(kernel).pmd_insert_function
    assert (res.all_calls().get(fn, 0) == 1) is via_insert


def test_zero_field_name_6_1_vs_6_12():
    ext = [{"logical": 0, "physical": 2 * M, "length": 4 * M, "unwritten": True}]
    e61 = fsdax([r(0)], kernel="6.1.0", file_size=4 * M, extents=ext).results[0].events()[1]
    e612 = fsdax([r(0)], kernel="6.12.0", file_size=4 * M, extents=ext).results[0].events()[1]
    assert "zero_page" in e61.fields and "zero_folio" in e612.fields


def test_vma_lock_flag_in_user_faults():
    # 6.1: no per-VMA locks: read fault flags 0x254; 6.12: 0x1254 (VMA_LOCK)
    assert fsdax([r(0)], kernel="6.1.0").results[0].events()[0].fields["flags"] == 0x254
    # 6.4/6.5: per-VMA locks for anonymous VMAs only; 6.6: DAX huge faults too
    assert fsdax([r(0)], kernel="6.4.0").results[0].events()[0].fields["flags"] == 0x254
    assert fsdax([r(0)], kernel="6.6.0").results[0].events()[0].fields["flags"] == 0x1254
    # before FAULT_FLAG_INTERRUPTIBLE (v5.7): 0x54/0x55
    assert fsdax([r(0)], kernel="4.18.0").results[0].events()[0].fields["flags"] == 0x54
    assert fsdax([w(0)], kernel="4.18.0").results[0].events()[0].fields["flags"] == 0x55
    assert fsdax([w(0)], kernel="5.10.0").results[0].events()[0].fields["flags"] == 0x255
    assert fsdax([r(0)], kernel="6.12.0").results[0].events()[0].fields["flags"] == 0x1254
    assert fsdax([w(0)], kernel="6.12.0").results[0].events()[0].fields["flags"] == 0x1255


def test_ext4_retries_under_mmap_lock_on_vma_lock_kernels():
    ext = [{"logical": 0, "physical": M, "length": 4 * M}]  # pfn unaligned -> fallback

    def names(p):
        return [e.name for e in p.results[0].events()]

    p61 = fsdax([r(0)], kernel="6.1.0", fs="ext4", file_size=4 * M, extents=ext)
    p612 = fsdax([r(0)], kernel="6.12.0", fs="ext4", file_size=4 * M, extents=ext)
    x612 = fsdax([r(0)], kernel="6.12.0", fs="xfs", file_size=4 * M, extents=ext)
    assert names(p61).count("dax_pmd_fault_done") == 1
    assert names(p612).count("dax_pmd_fault_done") == 2
    assert names(x612).count("dax_pmd_fault_done") == 1
    assert p612.summary()["vmstat"]["thp_fault_fallback"] == 2


def test_profiles_are_ordered_and_cited():
    versions = [p.version for p in PROFILES]
    assert versions == sorted(versions)
    for p in PROFILES:
        assert p.citations.get("pmd_insert_function"), p.name
        assert p.pmd_insert_function.startswith("vmf_insert_")


def test_dead_tracepoints_gone_from_6_16():
    # a4a45a9a72f3 (in v6.16); the lab's 5.10/6.1/6.12 kernels list them, 7.2/7.3 not
    # (tests/test_probe_map.py compares every lab kernel's events with its profile)
    assert "dax_pmd_insert_mapping" in select_profile("6.12").tracepoints
    assert "dax_pmd_insert_mapping" in select_profile("6.15").tracepoints
    assert "dax_pmd_insert_mapping" not in select_profile("6.16").tracepoints
    assert "dax_pmd_insert_mapping" not in select_profile("6.17").tracepoints


def test_streaming_summary_equals_full_summary():
    import json
    from importlib import resources

    from pmemtrace.model import explain, parse_case

    for name in ("dax-pmd", "private-write", "huge-zero", "ext4-vma-lock-retry", "devdax-4k"):
        obj = json.loads(resources.files("pmemtrace.model.examples").joinpath(name + ".json").read_text())
        full = explain(parse_case(obj)).summary()
        stream = explain(parse_case(obj), keep_results=False).summary()
        assert full == stream, name


def test_orig_pte_valid_when_a_page_table_exists():
    # Lab, 6.12 ext4 and xfs: a write fault next to a 4 KiB-mapped page prints
    # "WRITE|...|0x800" (FAULT_FLAG_ORIG_PTE_VALID, set by handle_pte_fault()
    # when the PTE table exists); the first 4 KiB fault of a range has none.
    p = fsdax([r(6 * M), w(6 * M + 8192)], mappings=[{"id": "m0", "start": A, "length": 16 * M, "nohugepage": True}])
    f0 = p.results[0].events()[0].fields["flags"]
    f1 = p.results[1].events()[0].fields["flags"]
    assert not f0 & 0x800 and f1 & 0x800


def test_5_10_lab_trace_of_neighbouring_4k_faults():
    # lab, 5.10.0-46 xfs, MADV_NOHUGEPAGE: read page 0 (hole -> dax_load_hole),
    # write page 2: flags 0x254 / 0x255, no 0x800 although a page table exists
    p = fsdax(
        [r(0), w(8192)],
        kernel="5.10.0-46-amd64",
        file_size=4 * M,
        extents=[{"logical": 0, "physical": 2 * M, "length": 4 * M, "unwritten": True}],
        mappings=[{"id": "m0", "start": A, "length": 4 * M, "nohugepage": True}],
    )
    got = [[(e.name, e.fields.get("flags"), e.fields.get("result")) for e in res.events()] for res in p.results]
    assert got == [
        [("dax_pte_fault", 0x254, 0), ("dax_load_hole", 0x254, 0x100), ("dax_pte_fault_done", 0x254, 0x100)],
        [("dax_pte_fault", 0x255, 0), ("dax_pte_fault_done", 0x255, 0x100)],
    ]
    # the fault itself still returns MAJOR (and counts pgmajfault)
    assert p.results[1].result == 0x104 and p.summary()["vmstat"]["pgmajfault"] == 1
    # 5.15+ trace MAJOR in the event too
    p = fsdax(
        [r(0), w(8192)],
        kernel="5.15.0",
        file_size=4 * M,
        extents=[{"logical": 0, "physical": 2 * M, "length": 4 * M, "unwritten": True}],
        mappings=[{"id": "m0", "start": A, "length": 4 * M, "nohugepage": True}],
    )
    assert p.results[1].events()[-1].fields["result"] == 0x104


def test_no_orig_pte_valid_before_5_19():
    # FAULT_FLAG_ORIG_PTE_VALID arrived in v5.19: 5.10/5.15 print no 0x800
    for kernel, flag in (("5.10.0", 0), ("5.15.0", 0), ("5.19.0", 0x800)):
        p = fsdax(
            [r(6 * M), w(6 * M + 8192)],
            kernel=kernel,
            mappings=[{"id": "m0", "start": A, "length": 16 * M, "nohugepage": True}],
        )
        assert p.results[1].events()[0].fields["flags"] & 0x800 == flag, kernel


@pytest.mark.parametrize(
    "kernel,first", [("5.10.0", "dax_pte_fault"), ("5.14.0", "dax_pte_fault"), ("5.15.0", None), ("6.1.0", None)]
)
def test_sigbus_at_eof_vs_vma_checks_per_kernel(kernel, first):
    # A read at an aligned index past EOF in a mapping whose PMD would cross the
    # VMA end: <= 5.14 the VMA check falls back first and the PTE path raises
    # SIGBUS; 5.15+ (55f81639a715) the PMD path raises SIGBUS directly.
    p = fsdax([r(2 * M)], kernel=kernel, file_size=M, mappings=[{"id": "m0", "start": A, "length": 3 * M}])
    res = p.results[0]
    names = [e.name for e in res.events()]
    assert res.outcome == "sigbus"
    done = next(e for e in res.events() if e.name == "dax_pmd_fault_done")
    if first is None:
        assert names == ["dax_pmd_fault", "dax_pmd_fault_done"] and done.fields["result"] == 0x2
    else:
        assert done.fields["result"] == 0x800 and names[-2:] == ["dax_pte_fault", "dax_pte_fault_done"]


@pytest.mark.parametrize(
    "kernel,faults,gdp", [("5.10.0", True, True), ("5.11.0", False, False), ("6.1.0", False, False)]
)
def test_longterm_pin_of_fsdax_per_kernel(kernel, faults, gdp):
    # 5.10: __gup_longterm_locked() faults the pages in and grabs them, then
    # check_dax_vmas() refuses; 5.11+ (52650c8b466b) check_vma_flags() refuses first
    p = fsdax(
        [{"mapping": "m0", "op": "gup", "offset": 0, "length": 2 * M, "write": True, "longterm": True, "fast": False}],
        kernel=kernel,
    )
    res = p.results[0]
    assert (res.outcome, res.errno, res.reason) == ("error", 95, "longterm-pin-fsdax")
    assert bool(res.faults) is faults
    assert (res.all_calls().get("get_dev_pagemap", 0) > 0) is gdp
    if faults:
        # lab, 5.10.0-46 (io_uring REGISTER_BUFFERS of an unfaulted 2 MiB):
        # dax_pmd_fault "shared WRITE" -> NOPAGE, then EOPNOTSUPP
        ev = [(e.name, e.fields["flags"], e.fields["result"]) for e in res.events()]
        assert ev[:2] == [("dax_pmd_fault", 0x1, 0), ("dax_pmd_fault_done", 0x1, 0x100)]


def test_private_write_to_pmd_ext4_retry_matches_lab_6_12():
    # Lab, 6.12, ext4: write to a read-only private PMD -> wp_huge_pmd() zaps it
    # without calling ->huge_fault; the COW fault needs ->fault, ext4 has no
    # ->map_pages -> VM_FAULT_RETRY; under mmap_lock the PMD slot is empty, so a
    # PMD fault (no VMA_LOCK) falls back (private write) and the PTE path COWs.
    p = fsdax([r(2 * M), w(2 * M)], fs="ext4", mappings=[{"id": "m0", "start": A, "length": 16 * M, "shared": False}])
    ev = [(e.name, e.fields.get("flags"), e.fields.get("result")) for e in p.results[1].events()]
    assert ev == [
        ("dax_pmd_fault", 0x255, 0),
        ("dax_pmd_fault_done", 0x255, 0x800),
        ("dax_pte_fault", 0x255, 0),
        ("dax_pte_fault_done", 0x255, 0x1000),
    ]
    x = fsdax([r(2 * M), w(2 * M)], fs="xfs", mappings=[{"id": "m0", "start": A, "length": 16 * M, "shared": False}])
    assert [(e.name, e.fields.get("flags")) for e in x.results[1].events()] == [
        ("dax_pte_fault", 0x1255),
        ("dax_pte_fault_done", 0x1255),
    ]


@pytest.mark.parametrize(
    "kernel,pmd_event", [("5.10.0", True), ("6.1.0", True), ("6.2.0", False), ("6.12.0", False), ("7.2.0", False)]
)
def test_private_write_to_read_only_pmd_per_kernel(kernel, pmd_event):
    # Lab (xfs): 6.1 logs dax_pmd_fault WRITE -> FALLBACK before the PTE COW;
    # 6.12 and 7.2 go straight to the PTE COW (wp_huge_pmd checks VM_SHARED).
    p = fsdax(
        [r(2 * M), w(2 * M)],
        fs="xfs",
        kernel=kernel,
        mappings=[{"id": "m0", "start": A, "length": 16 * M, "shared": False}],
    )
    names = [e.name for e in p.results[1].events()]
    assert names[-2:] == ["dax_pte_fault", "dax_pte_fault_done"]
    assert ("dax_pmd_fault" in names) is pmd_event
    assert p.results[1].outcome == "cow"
    assert p.summary()["vmstat"]["thp_split_pmd"] == 1


def test_map_populate_faults_without_pinning():
    # MAP_POPULATE of a shared mapping of an unwritten file: read faults (huge
    # zero pages), no get_dev_pagemap even where GUP would call it (6.1)
    ext = [{"logical": 0, "physical": 2 * M, "length": 4 * M, "unwritten": True}]
    p = fsdax(
        [{"mapping": "m0", "op": "gup", "offset": 0, "length": 4 * M, "populate": True}, w(0)],
        kernel="6.1.0",
        file_size=4 * M,
        extents=ext,
        mappings=[{"id": "m0", "start": A, "length": 4 * M}],
    )
    r0 = p.results[0]
    assert r0.outcome == "populated" and r0.pinned == 0
    assert [f.outcome for _, f in r0.faults] == ["huge-zero", "huge-zero"]
    assert r0.all_calls().get("get_dev_pagemap", 0) == 0
    assert p.results[1].outcome == "pmd"  # the write replaces the zero page


def test_gup_write_into_read_only_mapping_is_efault():
    # fstests generic/462 (lab, engine scenario): O_DIRECT read into a
    # PROT_READ DAX mapping -> FOLL_WRITE -> check_vma_flags() -> -EFAULT
    p = fsdax(
        [{"mapping": "m0", "op": "gup", "offset": 0, "length": 4096, "write": True}],
        mappings=[{"id": "m0", "start": A, "length": 16 * M, "writable": False}],
    )
    r0 = p.results[0]
    assert (r0.outcome, r0.errno, r0.reason) == ("error", 14, "write-readonly")
    assert r0.faults == []
