#!/bin/bash
# Install everything and run all tests: lint (ruff) and types (mypy), the
# unit tier on this machine, a compiler-less install of model mode, then
# the live tier inside lab guests (real Debian kernels 5.10, 6.1, 6.12, 7.2
# and 7.3 booted under QEMU with memmap= pmem; which live test file runs on
# which kernel is pmemtrace/lab/tier.py's plan: `pmemtrace lab test --plan`).
# Set PMEMTRACE_RUN_LIVE_TESTS=1 to make "no lab here" a failure instead of
# a skip (CI does).
set -uo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh || { echo "test-all: installing dependencies failed" >&2; exit 1; }
status=0
echo "== lint and types =="
# configuration in pyproject.toml ([tool.ruff], [tool.mypy])
.venv/bin/ruff check . || status=1
.venv/bin/ruff format --check . || status=1
.venv/bin/mypy || status=1
t0=$(date +%s)
echo "== unit tier =="
.venv/bin/python -m pytest tests --ignore=tests/live -q || status=1
echo "unit tier: $(( $(date +%s) - t0 )) s"
echo "== model mode without a C compiler =="
bash scripts/test-install-no-compiler.sh || status=1
if .venv/bin/pmemtrace lab --help >/dev/null 2>&1; then
    echo "== live tier (lab) =="
    require=()
    [ "${PMEMTRACE_RUN_LIVE_TESTS:-0}" = 1 ] && require=(--require)
    # one boot per kernel, plus a soft-reserved boot for its tests (another
    # only if the guest dies or a boot hangs: lab test resumes / boots again);
    # 2-17 min each by the plan on a quiet 2-core machine (docs/lab.md, "The
    # CI plan"); two kernels at once, as each guest runs in one host thread;
    # 40 min bounds a stuck boot (a slow machine took 1,150 s for 6.1 alone)
    .venv/bin/pmemtrace lab test --kernels "${PMEMTRACE_LAB_KERNELS:-5.10,6.1,6.12,7,7.3}" --timeout 2400 \
        --jobs "${PMEMTRACE_LAB_JOBS:-2}" "${require[@]}" || status=1
elif [ "${PMEMTRACE_RUN_LIVE_TESTS:-0}" = 1 ]; then
    echo "test-all: the live tier is required (PMEMTRACE_RUN_LIVE_TESTS=1) but 'pmemtrace lab' is missing" >&2
    status=1
fi
exit $status
