"""The probe map per lab kernel: the exact names pmemtrace's probe table
picks on each kernel the lab runs (recorded from the real kernel's
/proc/kallsyms and tracefs available_events by scripts/record_probe_map.py,
in fixtures/probe-maps/), and their agreement with the model's profile for
that release.  The live tier checks, on every kernel, that the running
kernel still has its series' recorded map (tests/live/test_probe_map.py)."""

import pytest
from live.probe_maps import load_maps, winners

from pmemtrace.lab import tier
from pmemtrace.live.probes import PROBES
from pmemtrace.live.tracefs import FS_DAX_TRACEPOINTS
from pmemtrace.model.profiles import select_profile

MAPS = load_maps()

_DEVMAP_GUP = {"get_dev_pagemap": "get_dev_pagemap", "gup": "__get_user_pages", "devdax_fault": "dev_dax_huge_fault"}
#: The kprobe winners per lab kernel, written out by hand (exact names).
EXPECTED_KPROBES = {
    "5.10.0-46-amd64": dict(
        _DEVMAP_GUP,
        insert_pmd="vmf_insert_pfn_pmd_prot",
        insert_pud="vmf_insert_pfn_pud_prot",
        gup_fast="internal_get_user_pages_fast",
    ),
    "6.1.0-50-amd64": dict(
        _DEVMAP_GUP,
        insert_pmd="vmf_insert_pfn_pmd_prot",
        insert_pud="vmf_insert_pfn_pud_prot",
        gup_fast="internal_get_user_pages_fast",
    ),
    "6.12.95+deb12-amd64": dict(
        _DEVMAP_GUP, insert_pmd="vmf_insert_pfn_pmd", insert_pud="vmf_insert_pfn_pud", gup_fast="gup_fast_fallback"
    ),
    "7.2.13+deb14-amd64": dict(
        _DEVMAP_GUP, insert_pmd="vmf_insert_folio_pmd", insert_pud="vmf_insert_folio_pud", gup_fast="gup_fast_fallback"
    ),
    "7.3.4+deb13-amd64": dict(
        _DEVMAP_GUP, insert_pmd="vmf_insert_folio_pmd", insert_pud="vmf_insert_folio_pud", gup_fast="gup_fast_fallback"
    ),
}


def test_every_ci_series_has_a_recorded_map():
    from test_lab_plan import ci_kernels

    assert sorted(m["series"] for m in MAPS.values()) == sorted(ci_kernels())
    assert set(MAPS) == set(EXPECTED_KPROBES)


@pytest.mark.parametrize("release", sorted(EXPECTED_KPROBES))
def test_exact_winners_per_kernel(release):
    m = MAPS[release]
    got = winners(m["functions"], m["fs_dax_events"])
    kprobes = {p.name for p in PROBES if p.kind == "kprobe"}
    assert {k: v for k, v in got.items() if k in kprobes} == EXPECTED_KPROBES[release]
    # every fs_dax point pmemtrace uses exists on every lab kernel
    assert all(got[tp] == f"fs_dax:{tp}" for tp in FS_DAX_TRACEPOINTS), got
    assert got["devdax_fault"] and m["functions"]["dev_dax_huge_fault"] == "device_dax"


@pytest.mark.parametrize("release", sorted(EXPECTED_KPROBES))
def test_recorded_map_agrees_with_the_profile(release):
    m = MAPS[release]
    p = select_profile(release)
    got = winners(m["functions"], m["fs_dax_events"])
    assert (got["insert_pmd"], got["insert_pud"]) == (p.pmd_insert_function, p.pud_insert_function), p.name
    assert set(p.pte_insert_function) <= set(m["functions"]), p.name
    # the profile's fs_dax events are exactly the kernel's (defined ones count)
    assert sorted(p.tracepoints) == m["fs_dax_events"], p.name


def test_same_probe_family_same_map():
    """The plan runs probe-backend tests on one kernel per family
    (tier.probe_family): that is only sound if the family's maps agree."""
    by_family = {}
    for release, m in MAPS.items():
        w = winners(m["functions"], m["fs_dax_events"])
        by_family.setdefault(tier.probe_family(release), []).append((release, w))
    for members in by_family.values():
        assert all(w == members[0][1] for _, w in members), members
    assert len(by_family) == 3
