"""`explain --kernel` with the distribution kernels fleets run (issue 15):
each gets its span's profile, says in text and JSON that the profile comes
from source reading, and warns that the vendor backports later changes."""

import json
import subprocess
import sys

import pytest

CASES = [
    # release, profile, vendor note
    ("4.18.0-513.el8.x86_64", "4.18", "a RHEL 8 kernel"),
    ("5.14.0-362.el9.x86_64", "5.11", "a RHEL 9 kernel"),
    ("5.15.0-91-generic", "5.15", "an Ubuntu kernel"),
    ("6.8.0-45-generic", "6.6", "an Ubuntu kernel"),
]


def explain(*args):
    p = subprocess.run(
        [sys.executable, "-m", "pmemtrace", "explain", "--example", "dax-pmd", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0 and not p.stderr, p.stderr
    return p.stdout


@pytest.mark.parametrize("release,profile,vendor", CASES)
def test_distribution_kernel_gets_its_profile_and_the_backport_caveat(release, profile, vendor):
    text = explain("--kernel", release)
    line = next(ln for ln in text.splitlines() if "-> profile" in ln)
    assert f"kernel {release} -> profile {profile} (" in line
    assert "source reading only (not verified in the lab)" in line
    assert vendor in line and "backports" in line and "newer profile" in line
    d = json.loads(explain("--kernel", release, "--json"))
    assert d["profile"] == profile
    v = d["profile_detail"]["verification"]
    assert v["basis"] == "source" and v["verified_on"] is None
    assert v["note"].startswith(vendor) and "backports" in v["note"]


def test_debian_lab_kernel_has_no_vendor_caveat():
    d = json.loads(explain("--kernel", "5.10.0-46-amd64", "--json"))
    assert d["profile"] == "5.10"
    assert d["profile_detail"]["verification"] == {"basis": "lab", "verified_on": "5.10.0-46-amd64", "note": None}
