"""Guest-side preparation of the emulated pmem: runs INSIDE a lab guest, as root.

Usable as a module (the live tests call :func:`prepare`, :func:`reconfigure`,
:func:`make_fs`) or as a command, which :func:`pmemtrace.lab.vm.run` runs
before the user's command when asked to prepare::

    python3 -m pmemtrace.lab.guest prepare --mode fsdax --map mem --align 2M \\
        --fs xfs --mkfs-options '-d su=2m,sw=1 -m reflink=0' --mount /tmp/pmem
    python3 -m pmemtrace.lab.guest prepare --mode devdax --align 2M
    python3 -m pmemtrace.lab.guest info

The state of the last preparation is kept in ``/tmp/pmemtrace-lab.json``
(the guest's private /tmp) and printed as JSON.
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time

from ..errors import LabError, UsageError

STATE_FILE = "/tmp/pmemtrace-lab.json"
DAX_MOUNT = "/tmp/pmem"
NODAX_MOUNT = "/tmp/nodax"

#: Modules for e820 pmem; Debian builds all of them as modules.  The first
#: two are required, the rest are needed only for devdax / pfn devices.
REQUIRED_MODULES = ("nd_e820", "nd_pmem")
OPTIONAL_MODULES = ("dax_pmem", "device_dax", "nd_btt")

#: mkfs defaults: xfs with a 2 MiB stripe unit so extents are PMD aligned
#: (lab-recipe.md), reflink off (reflink and DAX do not mix on older xfs).
DEFAULT_MKFS_OPTIONS = {
    "xfs": "-d su=2m,sw=1 -m reflink=0",
    "ext4": "",
}


def in_guest():
    """True inside a lab guest started by :func:`pmemtrace.lab.vm.run`."""
    return os.environ.get("PMEMTRACE_LAB_GUEST") == "1"


def sh(cmd, check=True, input=None):
    """Run *cmd* (argv list or string), return stdout; LabError on failure."""
    argv = shlex.split(cmd) if isinstance(cmd, str) else list(cmd)
    try:
        p = subprocess.run(argv, capture_output=True, text=True, input=input)
    except FileNotFoundError:
        raise LabError(f"{argv[0]} not found in the guest (install it on the host: scripts/install-deps.sh)") from None
    if check and p.returncode != 0:
        raise LabError(f"{' '.join(argv)} failed ({p.returncode}): {(p.stderr or p.stdout).strip()[-400:]}")
    return p.stdout


def load_modules():
    """modprobe the nvdimm/dax modules; return the list of loaded names."""
    loaded = []
    for mod in REQUIRED_MODULES + OPTIONAL_MODULES:
        p = subprocess.run(["modprobe", mod], capture_output=True, text=True)
        if p.returncode == 0:
            loaded.append(mod)
        elif mod in REQUIRED_MODULES:
            raise LabError(f"modprobe {mod} failed: {p.stderr.strip()}")
    _wait_for(lambda: os.path.exists("/sys/bus/nd/devices/region0"), "region0", 10)
    return loaded


#: Modules for a soft-reserved range (``lab run --soft-reserved``): dax_hmem
#: claims the range, device_dax gives /dev/daxX.Y.
HMEM_MODULES = ("dax_hmem", "device_dax")
DAX_BUS = "/sys/bus/dax/devices"


def hmem_devices():
    """Names of the device-dax instances whose region is not an NVDIMM one
    (dax_hmem's: their dax_region's parent is a platform device ``hmem.N``)."""
    try:
        names = sorted(os.listdir(DAX_BUS))
    except FileNotFoundError:
        return []
    return [n for n in names if "/ndbus" not in os.path.realpath(os.path.join(DAX_BUS, n))]


def load_hmem_modules():
    """modprobe dax_hmem and device_dax; wait for the soft-reserved range's
    device-dax; return the list of loaded modules."""
    for mod in HMEM_MODULES:
        p = subprocess.run(["modprobe", mod], capture_output=True, text=True)
        if p.returncode != 0:
            raise LabError(f"modprobe {mod} failed: {p.stderr.strip()}")
    # bound to kmem (the default since 6.3) it has no /dev node yet
    _wait_for(lambda: hmem_devices(), "a dax_hmem device under /sys/bus/dax (boot with lab run --soft-reserved)", 10)
    return list(HMEM_MODULES)


def daxctl_list(dev=None):
    """``daxctl list -R -D -u`` JSON (regions with their devices)."""
    out = sh(["daxctl", "list", "-R", "-D", "-u"] + (["-d", dev] if dev else []), check=False)
    data = json.loads(out) if out.strip() else []
    return data if isinstance(data, list) else [data]


def _write(path, value):
    try:
        with open(path, "w") as f:
            f.write(str(value))
    except OSError as exc:
        raise LabError(f"echo {value} > {path}: {exc.strerror}") from None


def dax_driver(dev):
    """The driver device-dax *dev* is bound to (device_dax, kmem,
    fsdev_dax) or None."""
    link = os.path.join(DAX_BUS, dev, "driver")
    return os.path.basename(os.path.realpath(link)) if os.path.exists(link) else None


def set_dax_align(dev, align):
    """Bind device-dax *dev* to device_dax with *align*; return its align.

    ``daxctl reconfigure-device -m devdax`` moves it off kmem (6.3 and
    later bind soft-reserved ranges to kmem by default); the align is
    written in sysfs while the device is unbound (bus.c align_store()
    refuses a bound device with EBUSY): ``daxctl reconfigure-device
    --align`` of ndctl 76.1 fails with ENXIO on every lab kernel."""
    from .. import units

    if dax_driver(dev) != "device_dax":
        sh(["daxctl", "reconfigure-device", "-m", "devdax", "-f", dev])
    want = units.parse_int(align)
    base = os.path.join(DAX_BUS, dev)
    with open(os.path.join(base, "align")) as f:
        have = int(f.read())
    if have != want:
        _write(os.path.join(base, "driver", "unbind"), dev)
        try:
            _write(os.path.join(base, "align"), want)
        finally:
            _write("/sys/bus/dax/drivers/device_dax/bind", dev)
    _wait_for(lambda: os.path.exists(f"/dev/{dev}"), f"/dev/{dev}", 10)
    with open(os.path.join(base, "align")) as f:
        return int(f.read())


def hmem(align="2M"):
    """The soft-reserved range's device-dax with *align*; returns a dict:
    ``device`` (/dev/daxX.Y), ``align`` (bytes), ``daxctl`` (its JSON)."""
    load_hmem_modules()
    dev = hmem_devices()[0]
    got = set_dax_align(dev, align)
    return {"device": f"/dev/{dev}", "align": got, "daxctl": daxctl_list()}


def _wait_for(pred, what, timeout):
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise LabError(
                f"{what} did not appear within {timeout} s (is memmap= on the kernel command line? cat /proc/iomem)"
            )
        time.sleep(0.05)


def ndctl_list():
    """``ndctl list -RNDu``-style JSON (regions with their namespaces)."""
    out = sh(["ndctl", "list", "-R", "-N", "-D", "-u", "-i"], check=False)
    return json.loads(out) if out.strip() else []


def namespaces():
    out = sh(["ndctl", "list", "-N", "-i"], check=False)
    data = json.loads(out) if out.strip() else []
    return data if isinstance(data, list) else [data]


def umount(path):
    if os.path.ismount(path):
        sh(["umount", path])


def reconfigure(namespace="namespace0.0", mode="fsdax", map="mem", align="2M"):
    """Reconfigure *namespace* (``ndctl create-namespace -f -e``); return its JSON.

    :param mode: ``fsdax``, ``devdax`` or ``raw``
    :param map: ``mem`` or ``dev`` (fsdax and devdax: where struct pages live)
    :param align: ``4K``, ``2M`` or ``1G`` (passed to ``-a``)
    """
    if mode not in ("fsdax", "devdax", "raw"):
        raise UsageError(f"unknown namespace mode {mode!r}: fsdax, devdax or raw")
    argv = ["ndctl", "create-namespace", "-f", "-e", namespace, "-m", mode]
    if mode != "raw":
        argv += ["--map", map]
        if align:
            argv += ["-a", str(align)]
    out = sh(argv)
    ns = json.loads(out)
    if mode == "fsdax":
        dev = "/dev/" + ns.get("blockdev", "pmem0")
        _wait_for(lambda: os.path.exists(dev), dev, 10)
    elif mode == "devdax":
        chardev = ns.get("daxregion", {}).get("devices", [{}])[0].get("chardev")
        if chardev:
            _wait_for(lambda: os.path.exists("/dev/" + chardev), "/dev/" + chardev, 10)
    return ns


def make_fs(dev="/dev/pmem0", fs="xfs", mkfs_options=None, mount=DAX_MOUNT, dax=True):
    """mkfs *fs* on *dev* and mount it at *mount* (``-o dax`` when *dax*,
    ``-o dax=never`` or no option otherwise); return a description dict."""
    if fs not in ("xfs", "ext4"):
        raise UsageError(f"unknown filesystem {fs!r}: xfs or ext4")
    if mkfs_options is None:
        mkfs_options = DEFAULT_MKFS_OPTIONS[fs]
    umount(mount)
    if fs == "xfs":
        sh(["mkfs.xfs", "-f", "-q"] + shlex.split(mkfs_options) + [dev])
    else:
        sh(["mkfs.ext4", "-F", "-q"] + shlex.split(mkfs_options) + [dev])
    os.makedirs(mount, exist_ok=True)
    if dax:
        opts = "dax"
        sh(["mount", "-o", opts, dev, mount])
    else:
        opts = "dax=never"
        p = subprocess.run(["mount", "-o", opts, dev, mount], capture_output=True, text=True)
        if p.returncode != 0:
            opts = "defaults"
            sh(["mount", dev, mount])
    return {"device": dev, "fs": fs, "mkfs_options": mkfs_options, "mount": mount, "mount_options": opts, "dax": dax}


def prepare(
    mode="fsdax",
    map="mem",
    align="2M",
    fs="xfs",
    mkfs_options=None,
    mount=DAX_MOUNT,
    nodax=None,
    namespace="namespace0.0",
):
    """Load modules, configure *namespace*, make and mount the filesystem,
    and optionally a non-DAX filesystem on the second region; save and
    return the state dict.

    :param mode: ``fsdax``, ``devdax``, ``raw``, ``none`` (leave it) or
        ``hmem`` (the soft-reserved device-dax of ``lab run --soft-reserved``
        with *align*; no namespace, no filesystem)
    :param fs: ``xfs``, ``ext4`` or ``none`` (fsdax only)
    :param nodax: mount point for an ext4 without DAX on namespace1.0
        (needs a second memmap region), or None
    """
    if mode == "hmem":
        st = {"kernel": os.uname().release, "modules": list(HMEM_MODULES), "hmem": hmem(align)}
        with open(STATE_FILE, "w") as f:
            json.dump(st, f, indent=2)
        return st
    state = {"kernel": os.uname().release, "modules": load_modules()}
    if mode != "none":
        state["namespace"] = reconfigure(namespace, mode, map, align)
    if mode in ("fsdax", "raw", "none") and fs not in (None, "none"):
        ns = state.get("namespace") or {}
        dev = "/dev/" + ns.get("blockdev", "pmem0")
        state["fs"] = make_fs(dev, fs, mkfs_options, mount, dax=True)
    if nodax:
        if not os.path.exists("/sys/bus/nd/devices/namespace1.0"):
            raise LabError(
                "no namespace1.0 for the non-DAX filesystem: boot with a second region (pmemtrace lab run --nodax 1G)"
            )
        ns1 = [n for n in namespaces() if n.get("dev") == "namespace1.0"]
        dev = "/dev/" + (ns1[0].get("blockdev", "pmem1") if ns1 else "pmem1")
        state["nodax"] = make_fs(dev, "ext4", "", nodax, dax=False)
    state["ndctl"] = ndctl_list()
    with open(STATE_FILE, "w") as f:
        json.dump(state, f, indent=2)
    return state


def state():
    """The state saved by the last :func:`prepare` in this guest, or None."""
    try:
        with open(STATE_FILE) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python3 -m pmemtrace.lab.guest",
        description="Prepare emulated pmem inside a pmemtrace lab guest (run as root).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
        "  python3 -m pmemtrace.lab.guest prepare --fs xfs            # fsdax map=mem 2M, xfs -o dax on /tmp/pmem\n"
        "  python3 -m pmemtrace.lab.guest prepare --map dev --fs ext4 --mkfs-options '-b 4096'\n"
        "  python3 -m pmemtrace.lab.guest prepare --mode devdax --align 2M\n"
        "  python3 -m pmemtrace.lab.guest prepare --nodax /tmp/nodax   # needs lab run --nodax 1G\n",
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("prepare", help="load modules, configure the namespace, mkfs and mount")
    p.add_argument("--mode", default="fsdax", choices=["fsdax", "devdax", "raw", "none", "hmem"])
    p.add_argument("--map", default="mem", choices=["mem", "dev"])
    p.add_argument("--align", default="2M")
    p.add_argument("--fs", default="xfs", choices=["xfs", "ext4", "none"])
    p.add_argument(
        "--mkfs-options", default=None, help="options for mkfs (default xfs: '-d su=2m,sw=1 -m reflink=0', ext4: none)"
    )
    p.add_argument("--mount", default=DAX_MOUNT)
    p.add_argument("--nodax", metavar="DIR", default=None, help="also mount ext4 without DAX from namespace1.0 at DIR")
    p.add_argument("--namespace", default="namespace0.0")
    sub.add_parser("info", help="print the saved state and ndctl list")
    args = parser.parse_args(argv)
    try:
        if args.cmd == "prepare":
            st = prepare(
                args.mode, args.map, args.align, args.fs, args.mkfs_options, args.mount, args.nodax, args.namespace
            )
        else:
            st = state() or {"ndctl": ndctl_list()}
    except (LabError, UsageError) as exc:
        print(f"pmemtrace lab guest: {exc}", file=sys.stderr)
        return exc.exit_status
    json.dump(st, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
