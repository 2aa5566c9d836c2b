#!/bin/bash
# Model mode installs anywhere: install this tree (tracked and new files, as
# a clean clone would have them) into a fresh venv with no C compiler
# reachable (PATH without gcc/cc, CC=/bin/false), then run the model.  The
# install must succeed without the C engine; `explain` must print the
# reviewed output; `replay` must run (its pure-Python path); a command that
# needs the engine must say so in one line and exit non-zero, without a
# traceback.  Run by scripts/test-all.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
work=$(mktemp -d /tmp/pmemtrace-nocc.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "test-install-no-compiler: $*" >&2; exit 1; }

# the tree as a clone of it would be, plus files not yet committed
mkdir "$work/src"
git ls-files -z --cached --others --exclude-standard | tar --null -T - -cf - | tar -xf - -C "$work/src"

/usr/bin/python3 -m venv "$work/venv"
# a PATH with the tools pip needs but no compiler
mkdir "$work/bin"
for tool in sh bash env uname git; do
    p=$(command -v "$tool") && ln -s "$p" "$work/bin/$tool"
done
nocc=(env -i HOME="$HOME" PATH="$work/bin" CC=/bin/false CXX=/bin/false LDSHARED=/bin/false
      TMPDIR="$work" PIP_DISABLE_PIP_VERSION_CHECK=1)
for cc in gcc cc x86_64-linux-gnu-gcc clang; do
    "${nocc[@]}" sh -c "command -v $cc" >/dev/null 2>&1 && fail "a compiler ($cc) is still on the PATH"
done
"${nocc[@]}" "$work/venv/bin/python" -m pip install -q "$work/src" >"$work/pip.log" 2>&1 \
    || { tail -20 "$work/pip.log" >&2; fail "pip install failed without a C compiler"; }

# the model and the CLI: the reviewed output, byte for byte
"${nocc[@]}" "$work/venv/bin/pmemtrace" explain --example dax-pmd --json --indent 1 >"$work/dax-pmd.json" \
    || fail "pmemtrace explain failed in the compiler-less install"
cmp -s "$work/dax-pmd.json" tests/expected/dax-pmd.json || fail "explain --example dax-pmd differs from tests/expected/dax-pmd.json"
"${nocc[@]}" "$work/venv/bin/python" -I -c "import pmemtrace._engine" 2>/dev/null \
    && fail "the C engine was built although no compiler was reachable (the test is not testing anything)"
# compact JSON, which explain's compiled core writes where it is built: the
# Python model alone writes the same results here
"${nocc[@]}" "$work/venv/bin/python" -I -c "import pmemtrace._explain_core" 2>/dev/null \
    && fail "the compiled explain core was built although no compiler was reachable"
"${nocc[@]}" "$work/venv/bin/pmemtrace" explain --example dax-pmd --json >"$work/dax-pmd.compact.json" \
    || fail "pmemtrace explain --json failed in the compiler-less install"
/usr/bin/python3 -c 'import json, sys; sys.exit(json.load(open(sys.argv[1])) != json.load(open(sys.argv[2])))' \
    "$work/dax-pmd.compact.json" tests/expected/dax-pmd.json || fail "explain --json differs from tests/expected/dax-pmd.json"

# replay without its compiled path (pmemtrace._replayfast): the pure-Python path
"${nocc[@]}" "$work/venv/bin/python" -I -c "import pmemtrace._replayfast" 2>/dev/null \
    && fail "the compiled replay path was built although no compiler was reachable"
"${nocc[@]}" "$work/venv/bin/pmemtrace" replay fixtures/trace-dat/7.2-fsdax.report.txt >"$work/replay.out" 2>"$work/replay.err" \
    || { cat "$work/replay.err" >&2; fail "pmemtrace replay failed without its compiled path"; }
grep -q "dax_pmd\|PMD" "$work/replay.out" || fail "pmemtrace replay printed no table without its compiled path"

# a command that needs the engine: one line, non-zero, no traceback
mkdir "$work/scratch"
set +e
"${nocc[@]}" "$work/venv/bin/pmemtrace" run reason-vma-end --dir "$work/scratch" --allow-non-dax --no-trace \
    >"$work/run.out" 2>"$work/run.err"
rc=$?
set -e
[ "$rc" -ne 0 ] || fail "pmemtrace run succeeded without the C engine"
grep -q Traceback "$work/run.err" && { cat "$work/run.err" >&2; fail "pmemtrace run printed a traceback"; }
[ "$(wc -l <"$work/run.err")" -eq 1 ] || { cat "$work/run.err" >&2; fail "pmemtrace run: expected one line on stderr"; }
grep -q "C workload engine" "$work/run.err" || { cat "$work/run.err" >&2; fail "pmemtrace run does not name the missing engine"; }
echo "test-install-no-compiler: ok (installed without a compiler; explain matches; run says: $(cat "$work/run.err"))"
