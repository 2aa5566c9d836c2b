"""bpf/pmemtrace.bpf.c compiles (bcc/clang), in both modes (counting in the
kernel, and every event), and passes the verifier with
the headers of the lab kernel this guest runs (from the lab's kernel cache),
loaded in a private mount namespace where /lib/modules/$(uname -r)/build
points at them.  A root-only test: it lives in the live tier, behind the
lab gate (it was a host-side unit test, which ran only as root)."""

import glob
import os
import platform
import shutil
import subprocess
import sys

from .labkit import skip_or_fail

CACHE = os.environ.get("PMEMTRACE_LAB_CACHE", os.path.expanduser("~/.cache/pmemtrace/lab"))
KERNELS = sorted(glob.glob(os.path.join(CACHE, "kernels", "*", "root", "lib", "modules", "*", "build")))
#: the headers of the running kernel only: the program is loaded into it
OWN = [b for b in KERNELS if b.split(os.sep)[-2] == platform.release()]

PROG = r"""
import os
from bcc import BPF, lib
from pmemtrace.live import bpf_file, bpfsys
from pmemtrace.live.bcc_backend import BccBackend
from pmemtrace.live.btf import tp_btf_events
from pmemtrace.live.probes import PROBES
from pmemtrace.live.tracefs import FS_DAX_TRACEPOINTS
fns = sorted({fn for p in PROBES if p.kind == "kprobe" for _, fn in p.candidates} |
             {p.retprobe for p in PROBES if p.retprobe})
loaded, wanted = [], []
for aggregate in (True, False):  # the default watch, and --events/--record
    b = BccBackend(aggregate=aggregate)
    flags = b.cflags()
    bpf = BPF(src_file=bpf_file("pmemtrace.bpf.c").encode(), cflags=flags)
    for fn in fns:
        bpf.load_func(fn.encode(), BPF.KPROBE)
    # the tp_btf programs bcc compiled and cannot load: the verifier must
    # take their plain loads here, or the watch falls back to tracepoints
    for e in FS_DAX_TRACEPOINTS:
        if f"-DPMT_BTF_{e}=1" in flags:
            insns = bpf.dump_func(f"tpbtf__{e}".encode())
            os.close(bpfsys.prog_load_tp_btf(insns, e, lib.bpf_module_license(bpf.module)))
            loaded.append(f"{e}/{int(aggregate)}")
    bpf.cleanup()
have = sorted(tp_btf_events(FS_DAX_TRACEPOINTS) & set(b.tracepoints))
print("OK", len(fns), "tp_btf", ",".join(loaded) or "-", "of", ",".join(have) or "-")
"""


def _why_not():
    if not shutil.which("unshare"):
        return "needs unshare(1) for a private mount namespace"
    try:
        import bcc  # noqa: F401 - only whether it imports
    except ImportError:
        return "bcc is not importable (python3-bpfcc, /usr/bin/python3)"
    if not OWN:
        return f"no headers for {platform.release()} in the lab cache {CACHE} (pmemtrace lab fetch)"
    return None


def test_compiles_against_lab_kernel_headers():
    why = _why_not()
    if why:
        skip_or_fail(f"cannot check the BPF program here: {why}")
    build = OWN[0]
    mod = os.path.dirname(build)
    src = os.path.realpath(os.path.join(mod, "source"))
    rel = platform.release()
    script = (
        f"mount -t tmpfs none /lib/modules && mkdir -p /lib/modules/{rel} && "
        f"ln -s {os.path.realpath(build)} /lib/modules/{rel}/build && "
        f"ln -s {src} /lib/modules/{rel}/source && cd / && "
        f'exec {sys.executable} -c "$PMT_PROG"'
    )
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PMT_PROG=PROG),
    )
    errors = [line for line in p.stderr.splitlines() if "error:" in line]
    assert p.returncode == 0 and p.stdout.startswith("OK"), "\n".join(errors[:20]) or p.stderr[-2000:]
    # the fs_dax events BTF types here were loaded as tp_btf (a refusal
    # raises above), the done events in both modes
    _ok, _n, _label, loaded, _of, have = p.stdout.split()[:6]
    for e in ("dax_pmd_fault_done/1", "dax_pte_fault_done/1", "dax_pmd_fault_done/0", "dax_pmd_fault/0"):
        assert e in loaded.split(","), p.stdout
    assert "dax_pmd_fault_done" in have.split(","), p.stdout
