#!/bin/sh
# Byte-exact snapshot of what must not change by accident: the dry-run case of
# every embedded scenario (on each kernel profile), `explain --json` of every
# embedded example, and `diagnose --json` on the fixture trees.
# Usage: scripts/snapshot_outputs.sh OUTDIR   (then diff -r BEFORE AFTER)
set -eu
out=${1:?usage: $0 OUTDIR}
pt=${PMEMTRACE:-.venv/bin/pmemtrace}
mkdir -p "$out/run" "$out/explain" "$out/diagnose"
for s in $($pt run --list | awk 'NR>2 {print $1}'); do
    for k in 6.1.0-50-amd64 6.12.95+deb12-amd64 7.2.13+deb14-amd64; do
        $pt run "$s" --dry-run --kernel "$k" --out "$out/run/$s.$k.json" >/dev/null 2>&1 || echo "run $s $k: exit $?" >>"$out/errors"
    done
done
for e in $($pt explain --list-examples | awk 'NR>2 {print $1}'); do
    $pt explain --json --example "$e" >"$out/explain/$e.json" 2>&1 || echo "explain $e: exit $?" >>"$out/errors"
done
for t in fixtures/*/*/; do
    [ -d "$t/sys" ] || continue
    n=$(echo "$t" | tr '/' '_')
    $pt diagnose --json --sysfs-root "$t/sys" --procfs-root "$t/proc" >"$out/diagnose/$n.json" 2>&1 || true
    for p in "$t"proc/[0-9]*; do
        [ -d "$p" ] || continue
        $pt diagnose --json --no-host --sysfs-root "$t/sys" --procfs-root "$t/proc" --pid "$(basename "$p")" \
            >"$out/diagnose/$n.pid$(basename "$p").json" 2>&1 || true
    done
done
