"""Unit tests of the lab's host side: no VM, no network, no root.

The live behaviour (boots, ndctl, tracefs) is tested by tests/live in lab
guests; here: region/memory arithmetic, the guest script, console parsing,
cache bookkeeping, symlink rewriting, kernel-name matching, the recorded
fixture trees' layout, and the CLI's argument handling.
"""

import json
import os

import pytest

from pmemtrace.cli import main
from pmemtrace.errors import LabError, UsageError
from pmemtrace.lab import fixtures, kernels, vm

GiB = 1 << 30
HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
LAB_RELEASES = sorted(d for d in os.listdir(FIXTURES) if os.path.isdir(os.path.join(FIXTURES, d, "fsdax-mem-2M")))


class TestRegions:
    def test_default_region(self):
        (r,) = vm.regions_for(vm.DEFAULT_MEMMAP)
        assert (r.size, r.start, str(r)) == (GiB, 4 * GiB, "1G!4G")

    def test_nodax_region_follows_the_last(self):
        regs = vm.regions_for(["2G!4G"], nodax="512M")
        assert [(r.start, r.size) for r in regs] == [(4 * GiB, 2 * GiB), (6 * GiB, 512 << 20)]

    def test_region_in_pci_hole_is_refused(self):
        with pytest.raises(UsageError, match="PCI hole"):
            vm.regions_for(["1G!3G"])

    def test_bad_syntax(self):
        with pytest.raises(UsageError, match="SIZE!START"):
            vm.regions_for(["1G@4G"])

    def test_size_must_be_2m_multiple(self):
        with pytest.raises(UsageError, match="multiple of 2M"):
            vm.regions_for(["3K!4G"])

    @pytest.mark.parametrize(
        "memmap,nodax,want",
        [
            (["1G!4G"], None, 4 * GiB),  # q35: 2G low + 2G high (1G pmem, 1G RAM)
            (["1G!4G"], "1G", 5 * GiB),  # high RAM must reach 6G
            (["4G!4G"], None, 7 * GiB),
        ],
    )
    def test_memory_backs_every_region(self, memmap, nodax, want):
        regs = vm.regions_for(memmap, nodax)
        mem = vm.memory_for(regs)
        assert mem == want
        # the RAM above 4G (q35) reaches the end of the highest region
        assert 4 * GiB + (mem - 2 * GiB) >= max(r.end for r in regs)


class TestGuestScript:
    def test_stderr_path_env_and_prepare(self):
        s = vm.build_script("echo hi", {"A": "x y"}, "/work", ["--mode", "devdax"])
        lines = s.splitlines()
        assert lines[0] == "exec 2>/dev/virtio-ports/pmemtrace.stderr"
        assert "export A='x y'" in lines
        assert "cd /work || exit 125" in lines
        assert any(" -m pmemtrace.lab.guest prepare --mode devdax" in ln and ln.endswith("|| exit 124") for ln in lines)
        assert lines[-1] == "echo hi"

    def test_boot_seconds_from_console(self):
        console = "[    3.49] Run /init as init process\n[   16.814326] virtme-ng-init: starting script\n"
        assert vm._boot_seconds(console) == pytest.approx(16.814326)
        assert vm._boot_seconds("[ 1.0] Kernel panic - not syncing\n") is None


class TestKernelNames:
    @pytest.mark.parametrize(
        "name,series",
        [
            ("6.1", "6.1"),
            ("6.12", "6.12"),
            ("7", "7"),
            ("7.2", "7"),
            ("6.12.95", "6.12"),
            ("5.10", "5.10"),
            ("5.10.262", "5.10"),
            ("7.3", "7.3"),
            ("7.3.4", "7.3"),
            ("6.1.0-50-amd64", None),
            ("5.10.0-46-amd64", None),
        ],
    )
    def test_series_of(self, name, series):
        assert kernels._series_of(name) == series

    def test_series_regexes_pick_only_plain_amd64_images(self):
        import re

        ok = {
            "5.10": "linux-image-5.10.0-46-amd64",
            "6.1": "linux-image-6.1.0-50-amd64",
            "6.12": "linux-image-6.12.95+deb12-amd64",
            "7": "linux-image-7.2.13+deb14-amd64",
            "7.3": "linux-image-7.3.4+deb13-amd64",
        }
        for series, (_, rx) in kernels.SERIES.items():
            assert re.match(rx, ok[series]), series
            for bad in ("-cloud-amd64", "-rt-amd64", "-amd64-dbg", "-amd64-unsigned"):
                assert not re.match(rx, ok[series].replace("-amd64", bad)), (series, bad)
        # experimental's -rc image ("7.3-amd64") matches 7.3 but sorts below any 7.3.x
        m = re.match(kernels.SERIES["7.3"].pattern, "linux-image-7.3-amd64")
        assert m and m.group(1) == "7.3-amd64"
        assert max(["7.3-amd64", "7.3.4+deb13-amd64"], key=kernels.release_key) == "7.3.4+deb13-amd64"
        # 7.3 stays out of the "7" series and 7.2 out of "7.3"
        assert not re.match(kernels.SERIES["7.3"].pattern, "linux-image-7.2.12+deb13-amd64")

    def test_series_suites(self):
        assert kernels.SERIES["5.10"].suites == ("bullseye", "bullseye-security")
        assert kernels.SERIES["7.3"].suites == ("trixie-backports", "experimental")
        assert kernels.SERIES["6.1"].suites == ("bookworm",)

    def test_security_suite_uses_the_security_archive(self, monkeypatch):
        monkeypatch.delenv("PMEMTRACE_LAB_MIRROR", raising=False)
        monkeypatch.delenv("PMEMTRACE_LAB_SECURITY_MIRROR", raising=False)
        assert kernels.mirror("bullseye-security") == "http://deb.debian.org/debian-security"
        assert kernels.mirror("bullseye") == "http://deb.debian.org/debian"
        monkeypatch.setenv("PMEMTRACE_LAB_SECURITY_MIRROR", "http://m/sec")
        assert kernels.mirror("bullseye-security") == "http://m/sec"

    def test_resolve_takes_the_newest_image_across_a_series_suites(self, monkeypatch, tmp_path):
        found = {
            "bullseye": ["5.10.0-35-amd64"],
            "bullseye-security": ["5.10.0-46-amd64", "5.10.0-9-amd64"],
            "trixie-backports": [],
            "experimental": ["7.3-amd64"],
        }
        monkeypatch.setattr(kernels, "_search_suite", lambda suite, *a: found[suite])
        monkeypatch.setattr(kernels._Apt, "version", lambda self, pkg: "v-" + self.suite)
        k = kernels.resolve("5.10", cache=str(tmp_path))
        assert (k.release, k.suite, k.version) == ("5.10.0-46-amd64", "bullseye-security", "v-bullseye-security")
        # no released 7.3 in trixie-backports: experimental's -rc is taken
        k = kernels.resolve("7.3", cache=str(tmp_path))
        assert (k.release, k.suite) == ("7.3-amd64", "experimental")
        found["trixie-backports"] = ["7.3.4+deb13-amd64"]
        assert kernels.resolve("7.3", cache=str(tmp_path)).release == "7.3.4+deb13-amd64"
        found["bullseye"] = found["bullseye-security"] = []
        with pytest.raises(LabError, match=r"no kernel image matching '5.10' in Debian bullseye,bullseye-security"):
            kernels.resolve("5.10", cache=str(tmp_path))

    def test_natural_order(self):
        rel = ["7.2.9+deb14-amd64", "7.10.1+deb14-amd64", "7.2.13+deb14-amd64"]
        assert max(rel, key=kernels.release_key) == "7.10.1+deb14-amd64"


def _fake_cached(cache, release, series):
    d = os.path.join(cache, "kernels", release)
    os.makedirs(os.path.join(d, "root", "boot"))
    open(os.path.join(d, "root", "boot", f"vmlinuz-{release}"), "w").close()
    with open(os.path.join(d, "KERNEL.json"), "w") as f:
        json.dump(
            {
                "series": series,
                "release": release,
                "suite": "sid",
                "version": "1",
                "packages": [],
                "fetched": "2026-01-01T00:00:00Z",
            },
            f,
        )


class TestCache:
    def test_cache_dir_from_environment(self, monkeypatch, tmp_path):
        monkeypatch.setenv("PMEMTRACE_LAB_CACHE", str(tmp_path / "c"))
        assert kernels.cache_dir() == str(tmp_path / "c")

    def test_find_prefers_newest_cached(self, tmp_path):
        c = str(tmp_path)
        _fake_cached(c, "7.2.9+deb14-amd64", "7")
        _fake_cached(c, "7.2.13+deb14-amd64", "7")
        _fake_cached(c, "6.12.95+deb12-amd64", "6.12")
        assert kernels.find("7", c).release == "7.2.13+deb14-amd64"
        assert kernels.find("7.2", c).release == "7.2.13+deb14-amd64"
        assert kernels.find("6.12", c).release == "6.12.95+deb12-amd64"
        assert kernels.find("6.1", c) is None
        assert kernels.find("7.2.9+deb14-amd64", c).release == "7.2.9+deb14-amd64"

    def test_half_fetched_kernel_is_not_cached(self, tmp_path):
        c = str(tmp_path)
        _fake_cached(c, "6.1.0-50-amd64", "6.1")
        os.unlink(os.path.join(c, "kernels", "6.1.0-50-amd64", "root", "boot", "vmlinuz-6.1.0-50-amd64"))
        assert kernels.cached_kernels(c) == []

    def test_get_without_fetch_names_the_remedy(self, tmp_path):
        with pytest.raises(LabError, match=r"pmemtrace lab fetch 6.1"):
            kernels.get("6.1", fetch_missing=False, cache=str(tmp_path))

    def test_lock_can_be_taken_again_after_release(self, tmp_path):
        with kernels.cache_lock(str(tmp_path)):
            pass
        with kernels.cache_lock(str(tmp_path)):
            assert os.path.exists(tmp_path / "lock")

    def test_absolute_symlinks_become_relative(self, tmp_path):
        root = tmp_path / "root"
        (root / "usr/lib/linux-kbuild-6.1/scripts").mkdir(parents=True)
        hdr = root / "usr/src/linux-headers-6.1.0-50-amd64"
        hdr.mkdir(parents=True)
        os.symlink("/usr/lib/linux-kbuild-6.1/scripts", hdr / "scripts")
        os.symlink("/nonexistent/elsewhere", hdr / "dangling")
        kernels._relativize_symlinks(str(root))
        assert os.readlink(hdr / "scripts") == "../../lib/linux-kbuild-6.1/scripts"
        assert os.path.isdir(hdr / "scripts")
        assert os.readlink(hdr / "dangling") == "/nonexistent/elsewhere"


@pytest.mark.skipif(not LAB_RELEASES, reason="no recorded lab fixtures in fixtures/")
class TestRecordedFixtureLayout:
    """The trees under fixtures/<release>/<config>/ can be used as a root."""

    @pytest.mark.parametrize("release", LAB_RELEASES)
    def test_every_config_has_meta(self, release):
        for cfg in fixtures.CONFIGS:
            with open(os.path.join(FIXTURES, release, cfg, "META.json")) as f:
                meta = json.load(f)
            assert meta["kernel"] == release and meta["config"] == cfg
            assert isinstance(meta["accepted"], bool)
            assert meta["commands"] and meta["date"]

    @pytest.mark.parametrize("release", LAB_RELEASES)
    def test_bus_links_resolve_inside_the_tree(self, release):
        root = os.path.join(FIXTURES, release, "fsdax-dev-2M")
        nd = os.path.join(root, "sys/bus/nd/devices")
        assert "namespace0.0" in os.listdir(nd)
        for name in os.listdir(nd):
            p = os.path.join(nd, name)
            assert not os.path.isabs(os.readlink(p))
            assert os.path.realpath(p).startswith(os.path.realpath(root) + os.sep)
            assert os.path.isdir(p), name

    @pytest.mark.parametrize("release", LAB_RELEASES)
    def test_pfn_holder_matches_ndctl(self, release):
        root = os.path.join(FIXTURES, release, "fsdax-dev-2M")
        ns = os.path.join(root, "sys/bus/nd/devices/namespace0.0")
        holder = open(os.path.join(ns, "holder")).read().strip()
        pfn = os.path.join(root, "sys/bus/nd/devices", holder)
        with open(os.path.join(root, "ndctl-raw.json")) as f:
            ndctl = json.load(f)
        regions = ndctl["regions"] if isinstance(ndctl, dict) else ndctl
        nss = [n for r in regions for n in r.get("namespaces", [])]
        (ns_json,) = [n for n in nss if n["dev"] == "namespace0.0"]
        assert int(open(os.path.join(pfn, "size")).read()) == ns_json["size"]
        assert os.path.basename(os.readlink(os.path.join(pfn, "driver"))) == "nd_pmem"
        assert open(os.path.join(pfn, "mode")).read().strip() == "pmem"

    @pytest.mark.parametrize("release", LAB_RELEASES)
    def test_devdax_device_and_kallsyms(self, release):
        root = os.path.join(FIXTURES, release, "devdax-2M")
        dax = os.path.join(root, "sys/bus/dax/devices")
        (dev,) = os.listdir(dax)
        assert int(open(os.path.join(dax, dev, "align")).read()) == 2 << 20
        syms = [ln.split()[2] for ln in open(os.path.join(root, "proc/kallsyms"))]
        assert "dev_dax_huge_fault" in syms and "get_dev_pagemap" in syms
        assert "Persistent Memory" in open(os.path.join(root, "proc/iomem")).read()

    @pytest.mark.parametrize("release", LAB_RELEASES)
    def test_1g_align_refused_on_a_1g_namespace(self, release):
        with open(os.path.join(FIXTURES, release, "fsdax-dev-1G", "META.json")) as f:
            meta = json.load(f)
        assert meta["accepted"] is False and "failed" in meta["error"]

    @pytest.mark.parametrize("release", LAB_RELEASES)
    def test_fs_dax_formats(self, release):
        fmt = os.path.join(
            FIXTURES, release, "fsdax-mem-2M", "sys/kernel/tracing/events/fs_dax/dax_pmd_fault_done/format"
        )
        assert "print fmt:" in open(fmt).read()


class TestSnapshotOfAFakeSysfs:
    def test_copy_keeps_attributes_and_relinks_driver(self, tmp_path):
        sysr = tmp_path / "sys"
        dev = sysr / "devices/platform/e820_pmem/ndbus0/region0/namespace0.0"
        dev.mkdir(parents=True)
        (dev / "mode").write_text("fsdax\n")
        (dev / "power").mkdir()
        (dev / "power/control").write_text("auto\n")
        (dev / "big").write_bytes(b"x" * (fixtures.MAX_ATTR + 1))
        drv = sysr / "bus/nd/drivers/nd_pmem"
        drv.mkdir(parents=True)
        os.symlink(os.path.relpath(drv, dev), dev / "driver")
        out = tmp_path / "out"
        fixtures.copy_sysfs_tree(str(sysr / "devices/platform/e820_pmem/ndbus0"), str(sysr), str(out))
        o = out / "devices/platform/e820_pmem/ndbus0/region0/namespace0.0"
        assert (o / "mode").read_text() == "fsdax\n"
        assert not (o / "power").exists() and not (o / "big").exists()
        assert not os.path.isabs(os.readlink(o / "driver"))
        assert os.path.realpath(o / "driver") == os.path.realpath(out / "bus/nd/drivers/nd_pmem")


class TestCli:
    def test_lab_without_action_prints_help(self, capsys):
        assert main(["lab"]) == 2

    def test_nodax_mount_needs_a_region(self, capsys, tmp_path, monkeypatch):
        # an empty cache: the usage error must come before any fetch or boot
        monkeypatch.setenv("PMEMTRACE_LAB_CACHE", str(tmp_path))
        assert main(["lab", "run", "--kernel", "6.12", "--prepare", "--nodax-mount", "--", "true"]) == 2
        assert "--nodax-mount needs a second region" in capsys.readouterr().err

    def test_unknown_kernel_is_one_line(self, capsys, tmp_path, monkeypatch):
        monkeypatch.setenv("PMEMTRACE_LAB_CACHE", str(tmp_path))
        assert main(["lab", "fetch", "4.19"]) == 2  # bad input (docs/exit-status.md)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "unknown lab kernel '4.19'" in err[0]

    def test_record_fixtures_rejects_unknown_config(self, capsys, tmp_path, monkeypatch):
        monkeypatch.setenv("PMEMTRACE_LAB_CACHE", str(tmp_path))
        assert (
            main(["lab", "record-fixtures", "--kernels", "6.1", "--config", "nope", "--output", str(tmp_path / "fx")])
            == 2
        )  # bad input
        assert "unknown fixture config 'nope'" in capsys.readouterr().err


def test_read_progress_names_the_test_the_guest_died_in(tmp_path):
    """lab test resumes after a dead guest from the progress file written by
    tests/live/conftest.py: finished ids (any outcome, once), failures, and
    the test started without an outcome."""
    from pmemtrace.lab.tier import read_progress

    p = tmp_path / "progress"
    p.write_text(
        "start a::t1\npassed call a::t1\n"
        "start a::t2\nskipped setup a::t2\n"
        "start a::t3\npassed call a::t3\nfailed teardown a::t3\n"
        "start a::t4[x-y]\n"
    )
    finished, failed, running = read_progress(str(p))
    assert finished == ["a::t1", "a::t2", "a::t3"]
    assert failed == {"a::t3"}
    assert running == "a::t4[x-y]"
    assert read_progress(str(tmp_path / "missing")) == ([], set(), None)
    p.write_text("start a::t1\nfailed call a::t1\n")
    assert read_progress(str(p)) == (["a::t1"], {"a::t1"}, None)


def test_the_tree_is_compiled_on_the_host_once(monkeypatch, tmp_path):
    """Guests run with PYTHONDONTWRITEBYTECODE: the lab writes the
    checkout's bytecode on the host before the first boot, so guest Python
    processes do not compile every module they import (1.4 s of a
    7 s ``pmemtrace run`` under TCG)."""
    import compileall

    calls = []
    monkeypatch.setattr(compileall, "compile_dir", lambda d, **kw: calls.append(d))
    monkeypatch.setattr(vm, "_PRECOMPILED", vm.threading.Event())
    vm._precompile_tree()
    vm._precompile_tree()
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(vm.__file__))))
    assert os.path.join(root, "pmemtrace") in calls and os.path.join(root, "tests") in calls
    assert len(calls) == len(set(calls))  # once per lab process
    # a real compile of a directory writes what the guest's imports read
    src = tmp_path / "m.py"
    src.write_text("X = 1\n")
    monkeypatch.undo()
    assert compileall.compile_dir(str(tmp_path), quiet=2)
    assert any(p.name.startswith("m.") for p in (tmp_path / "__pycache__").iterdir())
