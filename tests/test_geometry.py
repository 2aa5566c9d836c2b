"""nd_pfn_init() arithmetic against the worked examples of
kernel-dax-behavior.md 11.2 (start 2 MiB aligned, 12 GiB)."""

import pytest

from pmemtrace.model.geometry import namespace_layout

M, G = 1 << 20, 1 << 30


@pytest.mark.parametrize(
    "size,align,dataoff,end_trunc,data,npfns",
    [
        (16 * G, 2 * M, 258 * M, 0, 16126 * M, 4128256),
        (16 * G, G, 1024 * M, 0, 15360 * M, 3932160),
        (4 * G, 2 * M, 66 * M, 0, 4030 * M, 1031680),
        (1 * G, 2 * M, 18 * M, 0, 1006 * M, 257536),
        (3077 * M, 2 * M, 50 * M, 1 * M, 3026 * M, 774656),
    ],
)
def test_worked_examples_map_dev(size, align, dataoff, end_trunc, data, npfns):
    lay = namespace_layout(size, 12 * G, "fsdax", "dev", align)
    assert (lay.data_offset, lay.end_trunc, lay.data_size, lay.npfns) == (dataoff, end_trunc, data, npfns)
    assert lay.memmap_location == "device"


def test_lab_observation_1g_memmap_dev_is_18m():
    # lab-recipe.md: --map=dev on memmap=1G!4G gave an 18 MiB data offset
    assert namespace_layout(G, 4 * G, "fsdax", "dev", 2 * M).data_offset == 18 * M


def test_align_4k_still_uses_2m_compat_align_on_x86():
    a = namespace_layout(G, 4 * G, "fsdax", "dev", 4096)
    b = namespace_layout(G, 4 * G, "fsdax", "dev", 2 * M)
    assert a.data_offset == b.data_offset


def test_map_mem_on_e820_stays_raw_and_on_nfit_gets_2m_offset():
    e = namespace_layout(G, 4 * G, "fsdax", "mem", 2 * M, bus="e820")
    assert (e.data_offset, e.pfn_mode, e.memmap_location) == (0, None, "ram")
    n = namespace_layout(G, 4 * G, "fsdax", "mem", 2 * M, bus="nfit")
    assert (n.data_offset, n.pfn_mode, n.memmap_location) == (2 * M, "PFN_MODE_RAM", "ram")
    assert n.memmap_bytes == 64 * n.npfns


def test_1g_align_on_1g_namespace_refused():
    lay = namespace_layout(G, 4 * G, "fsdax", "dev", G)
    assert lay.error and "ENXIO" in lay.error
    assert "error" in lay.to_json() and "data_offset" not in lay.to_json()


def test_misaligned_start_refused():
    lay = namespace_layout(G, 4 * G + M, "fsdax", "dev", 2 * M)
    assert lay.error and "misaligned" in lay.error
    raw = namespace_layout(G, 4 * G + M, "raw", "dev", 2 * M)
    assert raw.error and "check_pfn_span" in raw.error


def test_devdax_1g():
    ok = namespace_layout(4 * G, 4 * G, "devdax", "dev", G)
    assert ok.error is None and ok.data_offset == G and ok.data_size == 3 * G
    # the unaligned tail is truncated (end_trunc), so the range stays aligned
    tail = namespace_layout(3 * G + 512 * M, 4 * G, "devdax", "dev", G)
    assert tail.error is None and tail.end_trunc == 512 * M and tail.data_size == 2 * G


def test_6_1_vs_6_12_end_trunc_limit():
    # [6.1]: offset >= size -> -ENXIO; [6.12]: offset >= size - end_trunc.
    # 1.5 GiB at align 1G: offset 1G, end_trunc 512M -> 6.1 accepts an empty
    # data area, 6.12 refuses it.
    a = namespace_layout(G + 512 * M, 4 * G, "fsdax", "dev", G, release="6.1")
    b = namespace_layout(G + 512 * M, 4 * G, "fsdax", "dev", G, release="6.12")
    assert a.error is None and a.data_size == 0
    assert b.error and "ENXIO" in b.error
