"""The soft-reserved lab layout: kernel argument, RAM sizing, tier split."""

import pytest

from pmemtrace.errors import UsageError
from pmemtrace.lab import tier, vm

GiB = 1 << 30


def test_soft_reserved_kernel_arg_retypes_ram_at_4g():
    r = vm.SoftReserved.parse("1G")
    # parse_memmap_one(): memmap=nn%ss-oldtype+newtype, RAM (1) -> SOFT_RESERVED
    assert r.kernel_arg() == "memmap=1024M%0x100000000-1+0xefffffff"
    assert (r.start, r.size) == (4 * GiB, GiB)
    assert vm.SoftReserved.parse("2G@8G").kernel_arg() == "memmap=2048M%0x200000000-1+0xefffffff"


@pytest.mark.parametrize("text", ["1536M", "1G@5000M", "1G@2G", "x", "0"])
def test_soft_reserved_must_be_1g_aligned_above_the_pci_hole(text):
    with pytest.raises(UsageError):
        vm.SoftReserved.parse(text)


def test_guest_ram_reaches_the_soft_reserved_range():
    # q35: 2 GiB below 4 GiB, the rest from 4 GiB; RAM must cover 4G..6G
    assert vm.memory_for([vm.SoftReserved.parse("2G")]) == 5 * GiB
    assert vm.memory_for([vm.SoftReserved.parse("1G")]) == 4 * GiB


def test_tier_runs_the_soft_reserved_tests_in_their_own_boot(monkeypatch):
    boots = []

    def fake_run_kernel(kernel, argv, root, env, **kw):
        boots.append((argv, kw.get("soft_reserved")))
        return 0, None

    monkeypatch.setattr(tier, "run_kernel", fake_run_kernel)
    monkeypatch.setattr("pmemtrace.lab.kernels.get", lambda name: type("K", (), {"release": name})())
    res = tier.run_tier(["6.12"], ["-k", "x"])
    assert [r.returncode for r in res] == [0]
    (pmem, none), (hmem, size) = boots
    assert none is None and size == tier.SOFT_RESERVED
    (sr,) = tier.SOFT_RESERVED_PATHS
    assert sr not in pmem and "tests/live/test_model_vs_kernel.py" in pmem
    assert hmem[3] == sr and not any(a.startswith("tests/live") for a in hmem[4:])
    assert pmem[-2:] == hmem[-2:] == ["-k", "x"]


def test_cli_soft_reserved_boots_without_pmem(monkeypatch):
    from pmemtrace.cli import main
    from pmemtrace.lab import kernels

    seen = {}

    class R:
        returncode, elapsed, boot_seconds = 0, 1.0, 1.0

    def fake_run(k, cmd, **kw):
        seen.update(kw, cmd=cmd)
        return R()

    monkeypatch.setattr(kernels, "get", lambda name: type("K", (), {"release": "6.12.x"})())
    monkeypatch.setattr(vm, "run", fake_run)
    argv = ["lab", "run", "--kernel", "6.12", "--soft-reserved", "1G", "--prepare", "--mode", "hmem", "--align", "1G"]
    assert main([*argv, "--", "true"]) == 0
    assert seen["memmap"] == () and str(seen["soft_reserved"]) == "1G@4G"
    assert seen["prepare"][:2] == ["--mode", "hmem"]
    assert main(["lab", "run", "--kernel", "6.12", "--soft-reserved", "1536M", "--", "true"]) == 2
