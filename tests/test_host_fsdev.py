"""A device-dax bound to fsdev_dax (famfs's fs-dax binding, Linux 7.1 and
later): diagnose says /dev/daxX.Y cannot be mapped, the case's device
carries the driver, and the model refuses the mmap with ENODEV.

The tree is the hand-made cxl-hmem one with dax0.0's driver link pointed at
fsdev_dax, as ``daxctl``/famfs leave it (drivers/dax/fsdev.c); the lab
binds a real one on 7.2 and 7.3 (tests/live/test_softreserved_live.py)."""

import json
import os
import shutil

import pytest

from pmemtrace.cli import main
from pmemtrace.host import cases, inventory
from pmemtrace.host.fsread import Roots
from pmemtrace.model import explain, parse_case
from pmemtrace.model.build import CaseBuilder, case_to_json

HANDMADE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures", "handmade")
M = 1 << 20


@pytest.fixture
def tree(tmp_path):
    dst = tmp_path / "t"
    shutil.copytree(os.path.join(HANDMADE, "cxl-hmem"), dst, symlinks=True)
    link = dst / "sys/devices/platform/hmem.0/dax0.0/driver"
    os.unlink(link)
    os.symlink("../../../../bus/dax/drivers/fsdev_dax", link)
    # the char device dax0.0 is, as cases.dax_device() finds it
    char = dst / "sys/dev/char"
    char.mkdir(parents=True)
    os.symlink("../../devices/platform/hmem.0/dax0.0", char / "252:0")
    return dst


def test_inventory_and_verdict(tree):
    inv = inventory.read_inventory(Roots(str(tree / "sys"), str(tree / "proc")))
    d0 = next(d for d in inv.dax_devices if d.name == "dax0.0")
    assert (d0.provider, d0.driver, d0.mode) == ("hmem", "fsdev_dax", "fsdev")


def test_diagnose_json_says_no_mmap(tree, capsys):
    assert main(["diagnose", "--sysfs-root", str(tree / "sys"), "--procfs-root", str(tree / "proc"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    f = [x for x in out["findings"] if x["subject"] == "dax0.0"]
    assert [x["code"] for x in f] == ["dax-no-namespace", "devdax-fsdev-no-mmap"]
    assert f[1]["verdict"] == "no-dax" and "ENODEV" in f[1]["message"]
    assert "daxctl reconfigure-device --mode=devdax dax0.0" in f[1]["remedy"]
    # the other devices are judged as before
    assert {x["code"] for x in out["findings"] if x["subject"] == "dax2.0"} >= {"dax-range-unaligned"}


def test_case_device_carries_the_driver_and_the_model_refuses_mmap(tree):
    dev, notes = cases.dax_device(Roots(str(tree / "sys"), str(tree / "proc")), 252, 0)
    assert dev is not None and dev.driver == "fsdev_dax", notes
    assert [(r.start, r.length) for r in dev.ranges] == [(0x480000000, 512 * M), (0x4A0000000, 512 * M)]
    b = CaseBuilder(dev, kernel="7.2.13+deb14-amd64")
    b.mapping("m0", 0x7F0000000000, 4 * M)
    b.touch("m0", 0, False)
    js = case_to_json(b.build())
    assert js["device"]["driver"] == "fsdev_dax"
    res = explain(parse_case(js)).results[0]
    assert (res.outcome, res.errno, res.reason) == ("error", 19, "devdax-fsdev-no-mmap")


def test_kmem_bound_device_reads_as_device_dax_with_a_note(tree):
    char = tree / "sys/dev/char"
    os.symlink("../../devices/platform/ACPI0017:00/root0/decoder0.0/region0/dax_region0/dax1.0", char / "252:1")
    dev, notes = cases.dax_device(Roots(str(tree / "sys"), str(tree / "proc")), 252, 1)
    assert dev is not None and dev.driver == "device_dax"
    assert notes == ["bound to kmem, not device_dax"]
