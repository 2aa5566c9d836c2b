"""MADV_DONTNEED frees empty PTE tables from v6.14 (Linux kernel commit
6375e95f381e ("mm: pgtable: reclaim empty PTE page in madvise(MADV_DONTNEED)")
(in v6.14)).  Found by the differential live test: generated case (seed 16,
index 18) differed on 7.2.13 and 7.3.4 at access 11 and agreed on 6.12."""

import pytest

from pmemtrace.fuzz.generate import generate
from pmemtrace.model import engine
from pmemtrace.model.case import parse_case
from pmemtrace.model.profiles import select_profile

KINDS = ("fsdax-xfs", "fsdax-ext4", "devdax-2M", "devdax-4K")
# what 7.2.13 and 7.3.4 logged for access 11 (CI, tests/live/test_differential.py)
KERNEL_7X = [
    ("dax_pmd_fault", 0),
    ("dax_pmd_fault_done", 0x800),
    ("dax_pmd_fault", 0),
    ("dax_pmd_fault_done", 0x800),
    ("dax_pte_fault", 0),
    ("dax_pte_fault_done", 0x100),
]


def _access_11(kernel):
    case = generate(16, 18, KINDS, kernel=kernel, remap=False, gup=False)  # the case CI ran then
    ops = [a["op"] if a["op"] != "madvise" else a["advice"] for a in case["accesses"]]
    assert ops[8] == "dontneed" and case["accesses"][8]["length"] == 0  # the whole mapping
    j = engine.explain(parse_case(case)).results[11].to_json()
    return j, [(e["name"], e["fields"]["result"]) for e in j["events"]]


@pytest.mark.parametrize("kernel", ["7.2.13+deb14-amd64", "7.3.4+deb13-amd64", "6.14.0"])
def test_dontneed_of_a_whole_block_frees_its_table_from_6_14(kernel):
    assert select_profile(kernel).dontneed_frees_pte_tables
    j, events = _access_11(kernel)
    # the PMD is none again: a huge fault is tried (and falls back on colour)
    assert (j["outcome"], j["reason"]) == ("pte", "pmd-colour-mismatch")
    assert events == KERNEL_7X


def test_before_6_14_the_empty_table_stays():
    assert not select_profile("6.12.95+deb12-amd64").dontneed_frees_pte_tables
    j, events = _access_11("6.12.95+deb12-amd64")
    assert (j["outcome"], j["reason"]) == ("pte", "pte-table-present")
    assert [n for n, _ in events] == ["dax_pte_fault", "dax_pte_fault_done"]
