"""The live tier's plan (pmemtrace/lab/tier.py): which tests/live file runs
on which kernel of CI's list, and that ``lab test`` runs exactly that."""

import json
import os
import re

import pytest

from pmemtrace.cli import main
from pmemtrace.errors import LabError, UsageError
from pmemtrace.lab import tier

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _release(name):
    # the profile release of a lab name without the cache: "7" -> "7.0"
    return name if "." in name else f"{name}.0"


def ci_kernels():
    """The kernel list scripts/test-all.sh gives `lab test` in CI."""
    text = open(os.path.join(ROOT, "scripts", "test-all.sh")).read()
    m = re.search(r'--kernels "\$\{PMEMTRACE_LAB_KERNELS:-([0-9.,]+)\}"', text)
    assert m, "scripts/test-all.sh no longer names its CI kernels as --kernels ${PMEMTRACE_LAB_KERNELS:-...}"
    return m.group(1).split(",")


def test_every_live_file_is_assigned():
    tier.check_assignments(ROOT)
    assert set(tier.LIVE_FILES.values()) <= {tier.EVERY_KERNEL, tier.PER_FAMILY, tier.PER_PROFILE, tier.NEWEST_KERNEL}


def test_a_new_live_file_must_be_assigned(tmp_path):
    live = tmp_path / "tests" / "live"
    live.mkdir(parents=True)
    for name in tier.LIVE_FILES:
        (live / name).write_text("")
    (live / "test_new_probe.py").write_text("")
    with pytest.raises(LabError, match=r"not assigned to kernels: test_new_probe\.py"):
        tier.check_assignments(str(tmp_path))
    (live / "test_new_probe.py").unlink()
    (live / "test_watch_bcc.py").unlink()
    with pytest.raises(LabError, match=r"listed but missing: test_watch_bcc\.py"):
        tier.check_assignments(str(tmp_path))


def test_ci_runs_five_kernels():
    assert ci_kernels() == ["5.10", "6.1", "6.12", "7", "7.3"]


def test_probe_families_of_the_ci_kernels():
    fam = {n: tier.probe_family(_release(n)) for n in ci_kernels()}
    assert fam["5.10"] == fam["6.1"]  # _prot inserts, devmap GUP, 14 fs_dax events
    assert fam["7"] == fam["7.3"]  # folio inserts, no devmap
    assert len({fam["6.1"], fam["6.12"], fam["7"]}) == 3


def test_ci_plan_every_file_somewhere_per_family_once():
    plans = tier.plan(ci_kernels(), release_of=_release)
    by = {p.name: p for p in plans}
    assert [p.name for p in plans] == ci_kernels()
    # the newest kernel of each probe family is its representative
    assert {p.name for p in plans if p.representative} == {"6.1", "6.12", "7.3"}
    for f, scope in tier.LIVE_FILES.items():
        on = [p.name for p in plans if f in p.files]
        if scope == tier.EVERY_KERNEL:
            assert on == ci_kernels(), f
        elif scope == tier.PER_FAMILY:
            assert on == ["6.1", "6.12", "7.3"], f
        elif scope == tier.PER_PROFILE:
            assert on == ["5.10", "6.1", "6.12", "7.3"], f  # 7.2 and 7.3 share the 7.0 profile
        else:
            assert on == ["7.3"], f
    assert by["7"].files == [f for f, s in tier.LIVE_FILES.items() if s == tier.EVERY_KERNEL]
    assert by["5.10"].files == [f for f, s in tier.LIVE_FILES.items() if s in (tier.EVERY_KERNEL, tier.PER_PROFILE)]
    assert by["5.10"].paths()[0] == "tests/live/test_lab_guest.py"


def test_a_kernel_alone_is_its_familys_representative():
    (p,) = tier.plan(["5.10"], release_of=_release)
    assert p.representative and p.files == list(tier.LIVE_FILES)


def test_lab_test_plan_prints_without_booting(monkeypatch, capsys):
    from pmemtrace.lab import vm

    monkeypatch.setattr(vm, "run", lambda *a, **k: pytest.fail("--plan must not boot"))
    monkeypatch.setattr(tier, "profile_release", _release)  # no cache needed
    assert main(["lab", "test", "--kernels", ",".join(ci_kernels()), "--plan", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert [k["kernel"] for k in d["kernels"]] == ci_kernels()
    assert [k["family_representative"] for k in d["kernels"]] == [False, True, True, False, True]
    assert main(["lab", "test", "--kernels", "5.10,7.3", "--plan"]) == 0
    out = capsys.readouterr().out
    assert "5.10: every-kernel files, its profile's files, its probe family's files;" in out
    assert "7.3: every-kernel files, its profile's files, its probe family's files, the newest kernel's files;" in out
    assert "    tests/live/test_watch_bcc.py" in out


def test_run_tier_runs_the_plans_files(monkeypatch):
    from pmemtrace.lab import kernels

    class K:
        def __init__(self, name):
            self.release = {"5.10": "5.10.0-46-amd64", "7.3": "7.3.4+deb13-amd64", "7": "7.2.13+deb14-amd64"}[name]

    monkeypatch.setattr(kernels, "get", K)
    monkeypatch.setattr(tier, "profile_release", _release)
    seen = {}

    def fake_run_kernel(k, argv, root, env, **kw):
        # a kernel may boot twice (pmem, then soft-reserved): its files in order
        seen.setdefault(k.release, []).extend(a for a in argv if a.startswith("tests/live"))
        return 0, None

    monkeypatch.setattr(tier, "run_kernel", fake_run_kernel)
    res = tier.run_tier(["5.10", "7", "7.3"], status=lambda s: None)
    assert [r.returncode for r in res] == [0, 0, 0]
    every = [f"tests/live/{f}" for f, s in tier.LIVE_FILES.items() if s == tier.EVERY_KERNEL]
    but_newest = [f"tests/live/{f}" for f, s in tier.LIVE_FILES.items() if s != tier.NEWEST_KERNEL]
    assert seen["5.10.0-46-amd64"] == but_newest  # alone in its family, not the newest
    assert seen["7.2.13+deb14-amd64"] == every
    assert seen["7.3.4+deb13-amd64"] == [f"tests/live/{f}" for f in tier.LIVE_FILES]
    seen.clear()
    tier.run_tier(["7"], status=lambda s: None, whole=True)
    assert sorted(seen["7.2.13+deb14-amd64"]) == [f"tests/live/{f}" for f in tier.live_test_files(tier.repo_root())]
    by_profile_or_every = {f for f, s in tier.LIVE_FILES.items() if s in (tier.EVERY_KERNEL, tier.PER_PROFILE)}
    # --only: CI's share for 5.10 (the every-kernel files), without booting the rest
    seen.clear()
    res = tier.run_tier(["5.10", "7", "7.3"], status=lambda s: None, only=["5.10"])
    assert [r.release for r in res] == ["5.10.0-46-amd64"]
    assert seen == {"5.10.0-46-amd64": but_newest}  # 5.10 alone in its family here
    seen.clear()
    tier.run_tier(ci_kernels(), status=lambda s: None, only=["5.10"])
    assert seen == {"5.10.0-46-amd64": [f"tests/live/{f}" for f in tier.LIVE_FILES if f in by_profile_or_every]}
    with pytest.raises(UsageError, match="not in the kernel list"):
        tier.run_tier(["7"], status=lambda s: None, only=["5.10"])


# -- a hung boot fails fast and is booted again ------------------------------


def test_silent_console_before_the_command_is_a_hung_boot(tmp_path):
    import subprocess

    from pmemtrace.lab import vm

    console = tmp_path / "console"
    console.write_text("Probing EDD (edd=off to disable)... ok\n")
    p = subprocess.Popen(["sleep", "30"])
    try:
        assert vm._wait(p, str(console), timeout=20, silence=0.6, poll=0.1) == "hung"
    finally:
        p.kill()
        p.wait()
    # once the command started, a quiet console is normal (tests run)
    console.write_text("[ 17.0] virtme-ng-init: starting script\n")
    p = subprocess.Popen(["sleep", "1.5"])
    assert vm._wait(p, str(console), timeout=20, silence=0.3, poll=0.1) == "exited"
    p = subprocess.Popen(["sleep", "30"])
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            vm._wait(p, str(console), timeout=0.5, silence=10, poll=0.1)
    finally:
        p.kill()
        p.wait()


def test_run_kernel_boots_again_after_a_hung_boot(monkeypatch, tmp_path):
    from pmemtrace.lab import vm

    calls = []

    class Res:
        returncode = 0

    def fake_run(kernel, argv, **kw):
        calls.append(argv)
        if len(calls) == 1:
            raise vm.BootError("kernel k hung while booting: ...", hung=True)
        return Res()

    class K:
        release = "5.10.0-46-amd64"

    monkeypatch.setattr(vm, "run", fake_run)
    notes = []
    assert tier.run_kernel(K(), ["pytest"], str(tmp_path), {}, status=notes.append) == (0, None)
    assert len(calls) == 2 and "booting again" in notes[0]
    # a second hang, or a boot that failed otherwise, is the kernel's failure
    calls.clear()
    monkeypatch.setattr(vm, "run", lambda *a, **k: (_ for _ in ()).throw(vm.BootError("hung", hung=True)))
    with pytest.raises(vm.BootError):
        tier.run_kernel(K(), ["pytest"], str(tmp_path), {}, status=notes.append)


def test_run_tier_jobs_boots_kernels_at_once_and_prints_each_output_whole(monkeypatch, capsys):
    import threading

    from pmemtrace.lab import kernels

    class K:
        def __init__(self, name):
            self.release = {"5.10": "5.10.0-46-amd64", "7.3": "7.3.4+deb13-amd64", "7": "7.2.13+deb14-amd64"}[name]

    monkeypatch.setattr(kernels, "get", K)
    monkeypatch.setattr(tier, "profile_release", _release)
    both_running = threading.Barrier(2, timeout=10)

    def fake_run_kernel(k, argv, root, env, output=None, **kw):
        if k.release != "7.2.13+deb14-amd64":
            both_running.wait()  # 5.10 and 7.3 (the heaviest plans) boot together
        output.write(f"guest output of {k.release}\n")
        return (1 if k.release.startswith("5.10") else 0), None

    monkeypatch.setattr(tier, "run_kernel", fake_run_kernel)
    res = tier.run_tier(["5.10", "7", "7.3"], status=lambda s: None, jobs=2)
    assert [r.release for r in res] == ["5.10.0-46-amd64", "7.2.13+deb14-amd64", "7.3.4+deb13-amd64"]
    assert [r.returncode for r in res] == [1, 0, 0]
    out = capsys.readouterr().out
    for r in res:
        assert f"===== output of {r.release} =====\nguest output of {r.release}\n" in out
    with pytest.raises(UsageError):
        tier.run_tier(["7"], jobs=0)


def test_a_long_guest_script_goes_through_a_file_not_the_kernel_command_line(tmp_path):
    from pmemtrace.lab import vm

    short = "echo hi\n"
    assert vm._exec_line(short, str(tmp_path)) == short
    long = "export X=" + "y" * 3000 + "\n"
    line = vm._exec_line(long, str(tmp_path))
    # x86 bounds the command line (where vng puts the script, base64) at 2048 bytes
    assert len(line) < 200 and line == f"exec sh {tmp_path}/script.sh"
    assert (tmp_path / "script.sh").read_text() == long


def test_no_boot_starts_after_the_lab_was_told_to_stop(monkeypatch):
    from pmemtrace.lab import vm

    monkeypatch.setattr(vm, "_STOPPING", __import__("threading").Event())
    vm.kill_running()
    with pytest.raises(LabError, match="stopping"):
        vm.run(type("K", (), {"release": "6.12.x", "series": "6.12", "vmlinuz": "/nonexistent"})(), "true")


def test_icount_makes_the_guest_clock_count_instructions(capsys):
    """``lab run --icount SHIFT`` (benchmarks): QEMU's -icount under
    round-robin TCG, refused with KVM and outside 0..10."""
    from pmemtrace.cli import main
    from pmemtrace.lab import vm

    assert vm.qemu_opts("/e", icount=0).endswith("-accel tcg,thread=single -icount shift=0,sleep=on")
    assert "icount" not in vm.qemu_opts("/e") and "tcg" not in vm.qemu_opts("/e", kvm=True, icount=3)
    for argv, why in (
        (["--icount", "11"], "SHIFT is 0 to 10"),
        (["--icount", "0", "--kvm"], "drop --kvm"),
    ):
        assert main(["lab", "run", *argv, "--", "true"]) == 2
        err = capsys.readouterr().err
        assert why in err and len(err.strip().splitlines()) <= 3
