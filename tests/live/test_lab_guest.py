"""The lab itself, checked from inside the guest against /proc and sysfs."""

import os

from pmemtrace import units


def _iomem_pmem():
    out = []
    with open("/proc/iomem") as f:
        for line in f:
            rng, _, name = line.strip().partition(" : ")
            if name.startswith("Persistent Memory") and not line.startswith(" "):
                lo, hi = (int(x, 16) for x in rng.split("-"))
                out.append((lo, hi + 1 - lo))
    return out


class TestLabGuestAgainstProcIomem:
    def test_memmap_regions_are_persistent_memory(self, lab_gate):
        want = []
        for r in lab_gate.memmap.split(","):
            size, start = r.split("!")
            want.append((units.parse_int(start), units.parse_int(size)))
        assert sorted(_iomem_pmem()) == sorted(want)

    def test_kernel_is_the_one_booted(self, lab_gate):
        assert os.environ["PMEMTRACE_LAB_KERNEL"] == lab_gate.release

    def test_modules_come_from_the_cache(self, lab_gate):
        assert "nd_pmem" in lab_gate.modules
        assert os.path.isdir(f"/lib/modules/{lab_gate.release}/kernel") or os.path.isdir(
            f"/lib/modules/{lab_gate.release}/kernel/"
        )


class TestGuestPreparation:
    def test_fsdax_xfs_is_mounted_with_dax(self, guest):
        st = guest.fsdax(map="mem", align="2M", fs="xfs")
        with open("/proc/self/mountinfo") as f:
            lines = [ln for ln in f if f" {st['mount']} " in ln]
        assert lines, "DAX filesystem not mounted"
        assert "dax" in lines[-1]
        assert st["namespace"]["mode"] == "fsdax"

    def test_devdax_2m_has_a_character_device(self, guest):
        path = guest.devdax("2M")
        assert os.path.exists(path)
        name = os.path.basename(path)
        with open(f"/sys/bus/dax/devices/{name}/align") as f:
            assert int(f.read()) == 2 << 20

    def test_nodax_filesystem_accepts_o_direct(self, guest):
        mnt = guest.nodax()
        path = os.path.join(mnt, "odirect")
        fd = os.open(path, os.O_CREAT | os.O_RDWR | os.O_DIRECT, 0o600)
        os.close(fd)
        os.unlink(path)


class TestTracefsAgainstFsDaxFormat:
    def test_fs_dax_events_exist(self, tracefs):
        assert tracefs.has_event("fs_dax", "dax_pmd_fault_done")
        assert "field:unsigned long address" in tracefs.format("fs_dax", "dax_pmd_fault_done")
