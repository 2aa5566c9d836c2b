"""Reading the device geometry for a case from sysfs, on fake sysfs trees
laid out like the lab kernels' (memmap= namespace with and without a pfn
device, a partition, device-dax with mappings)."""

import os

import pytest

from pmemtrace.errors import NoDaxMapping
from pmemtrace.workload import target as T

MiB = 1 << 20


def _w(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def _blockdev(root, maj_min, nd_name, attrs, partition_start=None):
    nd = root / "sys/devices/platform/e820_pmem/ndbus0/region0" / nd_name
    for k, v in attrs.items():
        _w(str(nd / k), v)
    disk = nd / "block/pmem0"
    disk.mkdir(parents=True)
    os.symlink(str(nd), str(disk / "device"))
    target = disk
    if partition_start is not None:
        target = disk / "pmem0p1"
        target.mkdir()
        _w(str(target / "partition"), "1")
        _w(str(target / "start"), str(partition_start))
    (root / "sys/dev/block").mkdir(parents=True, exist_ok=True)
    os.symlink(str(target), str(root / "sys/dev/block" / maj_min))


def test_fsdax_pfn_device_map_dev(tmp_path):
    _blockdev(
        tmp_path,
        "259:0",
        "pfn0.1",
        {"mode": "pmem", "align": "0x200000", "resource": "0x101200000", "size": "1054867456"},
    )
    dev, _notes = T.fsdax_device(os.makedev(259, 0), str(tmp_path))
    assert dev == {
        "mode": "fsdax",
        "dev": "259:0",
        "map": "dev",
        "align": 2 * MiB,
        "data_start": "0x101200000",
        "size": 1054867456,
    }


def test_fsdax_memmap_namespace_without_pfn(tmp_path):
    _blockdev(tmp_path, "259:0", "namespace0.0", {"resource": "0x100000000", "size": "1073741824", "mode": "raw"})
    dev, notes = T.fsdax_device(os.makedev(259, 0), str(tmp_path))
    assert dev["map"] == "mem" and dev["data_start"] == "0x100000000" and dev["size"] == 1 << 30
    assert any("no pfn device" in n for n in notes)


def test_fsdax_partition_offsets_data_start(tmp_path):
    _blockdev(
        tmp_path, "259:1", "namespace0.0", {"resource": "0x100000000", "size": "1073741824"}, partition_start=2048
    )
    dev, _notes = T.fsdax_device(os.makedev(259, 1), str(tmp_path))
    assert dev["data_start"] == hex(0x100000000 + 2048 * 512)  # fdisk's 1 MiB start: not 2 MiB aligned
    assert dev["size"] == (1 << 30) - 2048 * 512


def test_not_a_pmem_disk(tmp_path):
    dev, notes = T.fsdax_device(os.makedev(8, 0), str(tmp_path))
    assert dev is None and notes


def test_devdax_refusals(tmp_path):
    with pytest.raises(NoDaxMapping, match="not a character device"):
        T.open_device(str(tmp_path))
    with pytest.raises(NoDaxMapping, match="not device-dax"):
        T.open_device("/dev/null")


def test_mount_of_reads_dax_options(tmp_path):
    _w(
        str(tmp_path / "proc/self/mountinfo"),
        "22 1 254:0 / / rw,relatime - ext4 /dev/vda rw\n"
        "98 22 259:0 / /mnt/pmem rw,relatime - xfs /dev/pmem0 rw,attr2,dax=always,inode64\n"
        "99 22 259:1 / /mnt/pm1 rw,relatime - ext4 /dev/pmem1 rw,dax",
    )
    mnt, fstype, opts, src = T.mount_of("/mnt/pmem/sub/dir", str(tmp_path))
    assert (mnt, fstype, src) == ("/mnt/pmem", "xfs", "/dev/pmem0") and T._is_dax_mount(opts)
    assert T._is_dax_mount(T.mount_of("/mnt/pm1", str(tmp_path))[2])
    assert not T._is_dax_mount(T.mount_of("/mnt/other", str(tmp_path))[2])


def test_watch_attribution_reads_device_geometry_from_sysfs(tmp_path):
    """pmemtrace watch gives the attributor the device's real data start
    (a kernel dev_t from the tracepoint), so a pfn-unaligned fallback is
    explained instead of being blamed on an assumed aligned device."""
    from pmemtrace.live.files import LiveFiles

    _blockdev(
        tmp_path,
        "259:0",
        "pfn0.1",
        {"mode": "ram", "align": "0x200000", "resource": "0x100100000", "size": "1071644672"},
    )
    lf = LiveFiles(root=str(tmp_path))
    geo = lf._device((259 << 20) | 0)
    assert geo["data_start"] == "0x100100000" and geo["map"] == "mem" and geo["size"] == 1071644672
    assert lf._device((8 << 20) | 1) is None  # no such block device: unknown, not guessed


def test_run_trace_counts_ring_buffer_losses(tmp_path):
    """Overwritten and dropped events (per_cpu/cpu*/stats) make the run's
    trace 'incomplete', never silently short."""
    from pmemtrace.live.tracefs import instance_losses

    for cpu, (over, dropped) in {"cpu0": (70000, 0), "cpu1": (4874, 12)}.items():
        _w(
            str(tmp_path / "per_cpu" / cpu / "stats"),
            f"entries: 24230\noverrun: {over}\ncommit overrun: 0\nbytes: 0\ndropped events: {dropped}\nread events: 1",
        )
    assert instance_losses(str(tmp_path)) == 74886


def test_non_dax_stand_in_device_is_the_block_device_size(tmp_path):
    # FIEMAP's physical offsets run to the end of the block device, past the
    # statvfs size (which leaves out the filesystem's metadata): a recorded
    # case of a file near the end of the disk must still parse.
    from pmemtrace.host.fsread import Roots

    blk = tmp_path / "sys" / "dev" / "block" / "8:1"
    blk.mkdir(parents=True)
    (blk / "size").write_text("2097152\n")  # sectors: 1 GiB
    roots = Roots(str(tmp_path / "sys"), str(tmp_path / "proc"))
    assert T._block_device_bytes(roots, os.makedev(8, 1)) == 1 << 30
    assert T._block_device_bytes(roots, os.makedev(8, 2)) is None
