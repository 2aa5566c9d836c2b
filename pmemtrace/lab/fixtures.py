"""Record what pmemtrace reads from a real host, per lab kernel, as fixtures.

Host side: :func:`record_all` boots each kernel once (the fixtures directory
writable with ``--rwdir``) and runs ``python -m pmemtrace.lab.fixtures
record`` in the guest, which reconfigures namespace0.0 through
:data:`CONFIGS` and copies, for each, into
``fixtures/<release>/<config>/`` (usable as a root directory)::

    META.json                 kernel, config, date, commands, accepted/error
    sys/devices/platform/e820_pmem/...   attribute files of the nd device tree
    sys/bus/nd/devices/*      relative symlinks into sys/devices
    sys/bus/nd/drivers/*/     empty directories ("driver" links point here)
    sys/bus/dax/devices/*, sys/bus/dax/drivers/*/, sys/block/pmem*
    sys/kernel/tracing/events/fs_dax/*/format
    proc/iomem, proc/cmdline, proc/self/mountinfo
    proc/kallsyms             only the probe-point lines (PROBE_SYMBOLS)
    ndctl.json                ndctl list -RNDu -i   (human units, as users see it)
    ndctl-raw.json            ndctl list -RND -i -v (numbers)
    daxctl.json               daxctl list -RDu      (devdax configs)

See docs/lab.md ("Fixtures").
"""

import argparse
import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import time

from ..errors import LabError, UsageError

#: config name -> (mode, map, align, filesystem or None)
CONFIGS = {
    "fsdax-mem-2M": ("fsdax", "mem", "2M", "xfs"),
    "fsdax-dev-4K": ("fsdax", "dev", "4K", None),
    "fsdax-dev-2M": ("fsdax", "dev", "2M", "xfs"),
    "fsdax-dev-1G": ("fsdax", "dev", "1G", None),
    "devdax-4K": ("devdax", "dev", "4K", None),
    "devdax-2M": ("devdax", "dev", "2M", None),
    "devdax-1G": ("devdax", "dev", "1G", None),
}

#: kallsyms names kept in proc/kallsyms (the probe points and their variants).
PROBE_SYMBOLS = re.compile(
    r"^(dax_iomap_pmd_fault|dax_iomap_pte_fault|dax_iomap_fault|dax_fault_iter|"
    r"dax_insert_entry|dax_iomap_rw|dax_direct_access|dax_pgoff_to_phys|"
    r"vmf_insert_pfn_pmd\w*|vmf_insert_pfn_pud\w*|vmf_insert_folio_pmd|vmf_insert_folio_pud|"
    r"vmf_insert_pfn|vmf_insert_pfn_prot|vmf_insert_mixed\w*|insert_pmd|insert_pud|"
    r"insert_pfn_pmd|insert_pfn_pud|insert_pfn|"
    r"get_dev_pagemap|put_dev_pagemap|follow_devmap_pmd|follow_devmap_pud|"
    r"pin_user_pages\w*|get_user_pages\w*|__get_user_pages\w*|__gup_longterm_locked|"
    r"check_and_migrate_movable\w*|follow_page_mask|follow_pmd_mask|"
    r"dev_dax_huge_fault|dev_dax_fault|__dev_dax_p[mtu]d_fault|check_vma|"
    r"xfs_filemap_huge_fault|xfs_filemap_fault|xfs_dax_fault\w*|xfs_dax_read_fault|"
    r"xfs_dax_write_fault|ext4_dax_huge_fault|ext4_dax_fault|"
    r"thp_get_unmapped_area\w*|__thp_get_unmapped_area|"
    r"pmem_dax_direct_access|__pmem_direct_access|vma_is_dax|"
    r"dax_layout_busy_page\w*|dax_writeback_mapping_range|dax_finish_sync_fault)$"
)

MAX_ATTR = 64 * 1024
_SKIP_DIRS = {"power", "trace", "integrity", "holders", "slaves", "mq"}
_SKIP_LINKS = {"subsystem", "firmware_node", "bdi", "device", "of_node", "iommu_group"}


# ---------------------------------------------------------------------------
# Guest side


def _read_attr(path):
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_ATTR + 1)
    except OSError:
        return None
    if len(data) > MAX_ATTR or b"\0" in data:
        return None
    return data


def copy_sysfs_tree(src, sys_root, out_sys):
    """Copy attribute files of the sysfs directory *src* (a real path under
    *sys_root*) into *out_sys*, recreating ``driver`` links relatively and
    keeping other symlinks that point inside the copied tree."""
    links = []
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, sys_root)
        odir = os.path.join(out_sys, rel)
        os.makedirs(odir, exist_ok=True)
        keep = []
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if os.path.islink(p):
                links.append(p)
            elif d not in _SKIP_DIRS:
                keep.append(d)
        dirnames[:] = keep
        for fn in filenames:
            p = os.path.join(dirpath, fn)
            if os.path.islink(p):
                links.append(p)
                continue
            data = _read_attr(p)
            if data is not None:
                with open(os.path.join(odir, fn), "wb") as f:
                    f.write(data)
    src_real = os.path.realpath(src)
    for p in links:
        name = os.path.basename(p)
        if name in _SKIP_LINKS:
            continue
        target = os.path.realpath(p)
        rel_link = os.path.relpath(p, sys_root)
        out_link = os.path.join(out_sys, rel_link)
        if name == "driver":
            # /sys/bus/<bus>/drivers/<drv>
            tgt_rel = os.path.relpath(target, sys_root)
            os.makedirs(os.path.join(out_sys, tgt_rel), exist_ok=True)
        elif target.startswith(src_real + os.sep):
            tgt_rel = os.path.relpath(target, sys_root)
        else:
            continue
        if os.path.lexists(out_link):
            continue
        os.symlink(os.path.relpath(os.path.join(out_sys, tgt_rel), os.path.dirname(out_link)), out_link)


def _link_bus(sys_root, out_sys, bus_dir):
    """Recreate /sys/<bus_dir>/* symlinks (relative) for copied targets."""
    src = os.path.join(sys_root, bus_dir)
    if not os.path.isdir(src):
        return
    out = os.path.join(out_sys, os.path.relpath(src, sys_root))
    os.makedirs(out, exist_ok=True)
    for name in sorted(os.listdir(src)):
        target = os.path.realpath(os.path.join(src, name))
        tgt_out = os.path.join(out_sys, os.path.relpath(target, sys_root))
        if os.path.exists(tgt_out) and not os.path.lexists(os.path.join(out, name)):
            os.symlink(os.path.relpath(tgt_out, out), os.path.join(out, name))


def _drivers(sys_root, out_sys, bus):
    d = os.path.join(sys_root, "bus", bus, "drivers")
    if os.path.isdir(d):
        for name in os.listdir(d):
            os.makedirs(os.path.join(out_sys, "bus", bus, "drivers", name), exist_ok=True)


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w" if isinstance(data, str) else "wb") as f:
        f.write(data)


def _cmd_json(argv):
    p = subprocess.run(argv, capture_output=True, text=True)
    out = p.stdout.strip()
    try:
        return json.loads(out) if out else None
    except ValueError:
        return {"unparsed": out, "stderr": p.stderr.strip()}


def snapshot(out, sys_root="/sys", proc_root="/proc", devdax=False):
    """Copy what pmemtrace reads from this host into *out* (a root dir)."""
    out_sys = os.path.join(out, "sys")
    nd = os.path.join(sys_root, "bus", "nd", "devices")
    buses = set()
    for name in os.listdir(nd) if os.path.isdir(nd) else []:
        real = os.path.realpath(os.path.join(nd, name))
        if name.startswith("ndbus"):
            buses.add(real)
    for bus in sorted(buses):
        copy_sysfs_tree(bus, sys_root, out_sys)
    for bus in ("nd", "dax"):
        _drivers(sys_root, out_sys, bus)
        _link_bus(sys_root, out_sys, os.path.join("bus", bus, "devices"))
    _link_bus_block(sys_root, out_sys)
    tr = os.path.join(sys_root, "kernel", "tracing", "events")
    for system in ("fs_dax",):
        sdir = os.path.join(tr, system)
        if os.path.isdir(sdir):
            for ev in sorted(os.listdir(sdir)):
                fmt = os.path.join(sdir, ev, "format")
                if os.path.isfile(fmt):
                    _write(os.path.join(out_sys, "kernel", "tracing", "events", system, ev, "format"), open(fmt).read())
    for name in ("iomem", "cmdline", "self/mountinfo"):
        data = _read_attr(os.path.join(proc_root, name)) or b""
        _write(os.path.join(out, "proc", name), data)
    keep = []
    with open(os.path.join(proc_root, "kallsyms")) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 3 and PROBE_SYMBOLS.match(parts[2]):
                keep.append(line)
    _write(os.path.join(out, "proc", "kallsyms"), "".join(keep))
    _write(
        os.path.join(out, "ndctl.json"),
        json.dumps(_cmd_json(["ndctl", "list", "-R", "-N", "-D", "-u", "-i"]), indent=2) + "\n",
    )
    _write(
        os.path.join(out, "ndctl-raw.json"),
        json.dumps(_cmd_json(["ndctl", "list", "-R", "-N", "-D", "-i", "-v"]), indent=2) + "\n",
    )
    if devdax:
        _write(
            os.path.join(out, "daxctl.json"),
            json.dumps(_cmd_json(["daxctl", "list", "-R", "-D", "-u"]), indent=2) + "\n",
        )


def _link_bus_block(sys_root, out_sys):
    src = os.path.join(sys_root, "block")
    if not os.path.isdir(src):
        return
    for name in sorted(os.listdir(src)):
        if not name.startswith("pmem"):
            continue
        target = os.path.realpath(os.path.join(src, name))
        tgt_out = os.path.join(out_sys, os.path.relpath(target, sys_root))
        if os.path.isdir(tgt_out):
            os.makedirs(os.path.join(out_sys, "block"), exist_ok=True)
            os.symlink(os.path.relpath(tgt_out, os.path.join(out_sys, "block")), os.path.join(out_sys, "block", name))


def record_configs(out_dir, configs=None):
    """In the guest: for each config, reconfigure namespace0.0 and snapshot
    into ``<out_dir>/<config>/``.  Returns {config: accepted}."""
    from . import guest

    configs = configs or list(CONFIGS)
    modules = guest.load_modules()
    # filesystems' DAX fault handlers appear in kallsyms only once loaded
    for fsmod in ("xfs", "ext4"):
        subprocess.run(["modprobe", fsmod], capture_output=True)
    done = {}
    for name in configs:
        mode, map_, align, fs = CONFIGS[name]
        dest = os.path.join(out_dir, name)
        tmp = dest + ".partial"
        shutil.rmtree(tmp, ignore_errors=True)
        os.makedirs(tmp)
        guest.umount(guest.DAX_MOUNT)
        cmds = [f"ndctl create-namespace -f -e namespace0.0 -m {mode} --map {map_} -a {align}"]
        meta = {
            "kernel": os.uname().release,
            "series": os.environ.get("PMEMTRACE_LAB_SERIES"),
            "config": name,
            "mode": mode,
            "map": map_,
            "align": align,
            "filesystem": fs,
            "memmap": os.environ.get("PMEMTRACE_LAB_MEMMAP"),
            "emulated": True,
            "modules": modules,
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "generator": "pmemtrace lab record-fixtures (pmemtrace/lab/fixtures.py)",
        }
        try:
            ns = guest.reconfigure("namespace0.0", mode, map_, align)
            meta["accepted"], meta["error"] = True, None
            meta["namespace"] = ns
        except LabError as exc:
            meta["accepted"], meta["error"] = False, str(exc)
            # leave namespace0.0 in a known state for the snapshot
            try:
                guest.reconfigure("namespace0.0", "raw", None, None)
            except LabError:
                pass
        if meta["accepted"] and fs:
            info = guest.make_fs("/dev/" + meta["namespace"].get("blockdev", "pmem0"), fs, None, guest.DAX_MOUNT)
            cmds.append(
                f"mkfs.{fs} {info['mkfs_options']} /dev/{meta['namespace'].get('blockdev')}; "
                f"mount -o dax ... {guest.DAX_MOUNT}"
            )
            meta["mount"] = info
        meta["commands"] = cmds
        time.sleep(0.2)
        snapshot(tmp, devdax=(mode == "devdax"))
        with open(os.path.join(tmp, "META.json"), "w") as f:
            json.dump(meta, f, indent=2)
            f.write("\n")
        shutil.rmtree(dest, ignore_errors=True)
        os.rename(tmp, dest)
        done[name] = meta["accepted"]
        print(
            f"recorded {name}: {'accepted' if meta['accepted'] else 'refused: ' + meta['error']}",
            file=sys.stderr,
            flush=True,
        )
    guest.umount(guest.DAX_MOUNT)
    return done


# ---------------------------------------------------------------------------
# Host side


def default_output():
    here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    return os.path.join(here, "fixtures")


def record_all(kernel_names, output=None, configs=None, timeout=1200):
    """Boot each kernel once and record every config into
    ``<output>/<release>/``.  Returns a CLI exit status."""
    from . import kernels, vm

    output = os.path.abspath(output or default_output())
    os.makedirs(output, exist_ok=True)
    for c in configs or ():
        if c not in CONFIGS:
            raise UsageError(f"unknown fixture config {c!r}: {', '.join(CONFIGS)}")
    status = 0
    for name in kernel_names:
        k = kernels.get(name)
        dest = os.path.join(output, k.release)
        argv = [vm.guest_python(), "-m", "pmemtrace.lab.fixtures", "record", "--out", dest]
        for c in configs or ():
            argv += ["--config", c]
        t0 = time.monotonic()
        print(f"pmemtrace lab: recording fixtures on {k.release} into {dest}", file=sys.stderr, flush=True)
        res = vm.run(k, argv, rwdirs=[output], timeout=timeout, stream=True, capture=False)
        print(
            f"pmemtrace lab: {k.release}: exit {res.returncode} in {time.monotonic() - t0:.1f} s",
            file=sys.stderr,
            flush=True,
        )
        status = status or res.returncode
    return status


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python3 -m pmemtrace.lab.fixtures", description="Guest side of pmemtrace lab record-fixtures."
    )
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("record")
    r.add_argument("--out", required=True)
    r.add_argument("--config", action="append", default=None, choices=list(CONFIGS))
    s = sub.add_parser("snapshot", help="snapshot the current host state only")
    s.add_argument("--out", required=True)
    args = p.parse_args(argv)
    try:
        if args.cmd == "record":
            record_configs(args.out, args.config)
        else:
            snapshot(args.out, devdax=True)
    except LabError as exc:
        print(f"pmemtrace lab fixtures: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
