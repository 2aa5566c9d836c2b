#!/bin/bash
# Install everything the whole test suite needs on a fresh Debian 12 machine
# (idempotent).  Debian packages: the build toolchain for the cffi engine,
# Debian's bcc (python3-bpfcc; PyPI's "bcc" is an unrelated package), and the
# emulated-pmem lab (QEMU, ndctl/daxctl, mkfs tools, trace-cmd).  Python
# packages go into ./.venv, made from Debian's python3 with system site
# packages so that bcc imports.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
APT_PACKAGES=(
    python3-venv python3-dev python3-pip gcc libc6-dev
    python3-bpfcc bpfcc-tools
    qemu-system-x86 ndctl daxctl xfsprogs e2fsprogs trace-cmd
    # the lab's guest runs on the host root via virtme-ng: it needs a static
    # busybox for its initramfs, udev (systemd-udevd creates the
    # /dev/virtio-ports/* links vng's I/O goes through; without it the
    # command's output lands on the console and its exit status is lost),
    # kmod for depmod/modprobe, and apt/dpkg (present) to fetch kernels.
    busybox-static udev kmod
    # fleet metrics (docs/metrics.md): promtool checks the exported names and
    # the alert rules (unit tier); the live tier runs the real Prometheus and
    # node_exporter against watch --prometheus/--textfile
    prometheus prometheus-node-exporter
)
apt_ensure "${APT_PACKAGES[@]}"
venv_install '.[test]'
.venv/bin/pip install -q virtme-ng
