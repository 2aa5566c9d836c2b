#!/bin/bash
# Install pmemtrace into ./.venv on a fresh Debian 12 machine and run the
# main job in model mode: no root needed to run it, no pmem, no bcc.
# (Installing the Debian packages needs root; run as root or with sudo.)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
apt_ensure python3-venv python3-dev gcc libc6-dev
venv_install .
.venv/bin/pmemtrace explain --example dax-pmd
