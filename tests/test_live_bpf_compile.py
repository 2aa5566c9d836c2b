"""bpf/pmemtrace.bpf.c compiles (bcc/clang) and passes the verifier with the
headers of every lab kernel, checked on the host without booting: a
private mount namespace makes /lib/modules/$(uname -r)/build point at the
cached lab kernel's headers.  Skips (with the reason) when root, bcc,
unshare or the lab's kernel cache are missing."""

import glob
import os
import platform
import shutil
import subprocess
import sys

import pytest

CACHE = os.environ.get("PMEMTRACE_LAB_CACHE", os.path.expanduser("~/.cache/pmemtrace/lab"))
KERNELS = sorted(glob.glob(os.path.join(CACHE, "kernels", "*", "root", "lib", "modules", "*", "build")))

PROG = r"""
import sys
sys.path.insert(0, %(root)r)
from bcc import BPF
from pmemtrace.live import bpf_file
from pmemtrace.live.bcc_backend import BccBackend
from pmemtrace.live.probes import PROBES
b = BccBackend()
bpf = BPF(src_file=bpf_file("pmemtrace.bpf.c").encode(), cflags=b.cflags())
fns = sorted({fn for p in PROBES if p.kind == "kprobe" for _, fn in p.candidates} |
             {p.retprobe for p in PROBES if p.retprobe})
for fn in fns:
    bpf.load_func(fn.encode(), BPF.KPROBE)
bpf.cleanup()
print("OK", len(fns))
"""


def _why_not():
    if os.geteuid() != 0:
        return "needs root (bcc loads the program to run the verifier)"
    if not shutil.which("unshare"):
        return "needs unshare(1) for a private mount namespace"
    try:
        import bcc  # noqa: F401
    except ImportError:
        return "bcc is not importable (python3-bpfcc, /usr/bin/python3)"
    if not KERNELS:
        return f"no lab kernels cached in {CACHE} (pmemtrace lab fetch)"
    return None


@pytest.mark.skipif(_why_not() is not None, reason=str(_why_not()))
@pytest.mark.parametrize("build", KERNELS, ids=lambda p: p.split(os.sep)[-2])
def test_compiles_against_lab_kernel_headers(build):
    mod = os.path.dirname(build)
    src = os.path.realpath(os.path.join(mod, "source"))
    rel = platform.release()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = (f"mount -t tmpfs none /lib/modules && mkdir -p /lib/modules/{rel} && "
              f"ln -s {os.path.realpath(build)} /lib/modules/{rel}/build && "
              f"ln -s {src} /lib/modules/{rel}/source && cd / && "
              f"exec {sys.executable} -c \"$PMT_PROG\"")
    p = subprocess.run(["unshare", "-m", "sh", "-c", script], capture_output=True, text=True, timeout=600,
                       env=dict(os.environ, PMT_PROG=PROG % {"root": root}))
    errors = [l for l in p.stderr.splitlines() if "error:" in l]
    assert p.returncode == 0 and p.stdout.startswith("OK"), "\n".join(errors[:20]) or p.stderr[-2000:]
