#!/bin/bash
# Install pmemtrace into ./.venv on a fresh Debian 12 machine and run the
# main job in model mode: no root needed to run it, no pmem, no bcc.
# (Installing the Debian packages needs root; run as root or with sudo.)
set -euo pipefail
cd "$(dirname "$0")/.."
SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
need=()
for p in python3-venv python3-dev gcc libc6-dev; do
    dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ "${#need[@]}" -gt 0 ]; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
# Debian's python3 (not a pyenv one): bcc's bindings import only there.
[ -x .venv/bin/python ] || /usr/bin/python3 -m venv --system-site-packages .venv
.venv/bin/pip install -q --upgrade pip >/dev/null
.venv/bin/pip install -q -e .
.venv/bin/pmemtrace explain --example dax-pmd
