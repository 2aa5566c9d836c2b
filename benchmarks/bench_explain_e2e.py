#!/usr/bin/env python3
"""explain end to end, as the user waits for it (figures, not a timed test).

1. Writes the benchmark case deterministically (1,000,000 accesses over a
   512 GiB shared mapping of a file with 10,000 extents; the case of
   bench_model.py, seed 1) to a file.
2. Runs the whole command ``pmemtrace explain --json CASE > OUT`` as a
   child process (interpreter start, reading, model, encoding, writing) and
   prints accesses/s (by wall time, and by the child's CPU time, steadier
   on a shared machine) and the child's peak RSS.  ``--jsonl``,
   ``--indent 1`` (the bytes of tests/expected, streamed like ``--json``),
   and ``--json`` and ``--indent 1`` with PMEMTRACE_PURE_PYTHON=1 (the
   Python model alone, no compiled core) are timed the same way.
3. Second figure: the phase breakdown, in process, by CPU time (reading,
   typed decoding, then model + JSON encoding + writing, through the
   compiled core and through the Python model), and what the careful
   path (plain decoding, check_json_limits, parse_case) would cost instead
   of the typed decoding.

    python3 benchmarks/bench_explain_e2e.py [--accesses N] [--extents N] [--keep DIR]
    python3 benchmarks/bench_explain_e2e.py --write-case case.json   # only the case
"""

import argparse
import gc
import json
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

from _whole_command import run_child  # noqa: E402
from bench_model import build  # noqa: E402


def write_case(path, n, n_ext):
    with open(path, "w") as f:
        json.dump(build(n, n_ext), f)


def phases(case_path, n):
    """The CLI's steps, each timed on its own (CPU seconds of this process)."""
    import msgspec

    from pmemtrace.cli import _common
    from pmemtrace.cli.explain import write_json
    from pmemtrace.model import core, explain, parse_case

    gc.disable()  # as the CLI does for JSON output
    clock = time.process_time
    t0 = clock()
    data = _common.read_bounded(case_path, _common.CASE_MAX_BYTES, "case")
    t1 = clock()
    case = _common._typed_case(data)  # what load_case_file() takes for this case
    t2 = clock()
    assert case is not None, "the benchmark case has the common shape"
    for compiled in (True, False):
        if compiled and not core.available():
            print("  (no compiled explain core: pmemtrace._explain_core is not built or PMEMTRACE_PURE_PYTHON=1)")
            continue
        t3 = clock()
        pred = explain(case, stream=True, compiled=compiled)
        t4 = clock()
        cols = ""
        if compiled:
            run = core.prepare(case, pred._sim, b",")
            assert run is not None, "the benchmark case is in the compiled core's subset"
            cols = f" (of which access columns {clock() - t4:4.2f} s)"
            del run
            t4 = clock()
        with open(os.devnull, "wb") as sink:
            write_json(pred, sink)
        t5 = clock()
        tot = (t1 - t0) + (t2 - t1) + (t5 - t3)
        what = "compiled core" if compiled else "Python model "
        print(
            f"  phases, {what} (in process, CPU): read {t1 - t0:5.2f} s, typed decode {t2 - t1:5.2f} s, "
            f"model + encode + write {t5 - t4 + (t4 - t3):5.2f} s{cols} = {tot:5.2f} s -> {n / tot:,.0f} accesses/s"
        )
        del pred
    # the careful path, which the typed decoding replaces for this shape of
    # case (and which still reads every other case): plain decoding, the
    # JSON limit checks, parse_case()
    t0 = clock()
    obj = msgspec.json.decode(data)
    t1 = clock()
    _common.check_json_limits(obj)
    t2 = clock()
    parse_case(obj)
    t3 = clock()
    print(
        f"  careful path (other cases): decode {t1 - t0:5.2f} s, check_json_limits {t2 - t1:5.2f} s, "
        f"parse_case {t3 - t2:5.2f} s = {t3 - t0:5.2f} s"
    )


def _same_file(p, q, bs=1 << 20):
    with open(p, "rb") as f, open(q, "rb") as g:
        while True:
            a, b = f.read(bs), g.read(bs)
            if a != b:
                return False
            if not a:
                return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--accesses", type=int, default=1_000_000)
    ap.add_argument("--extents", type=int, default=10_000)
    ap.add_argument("--write-case", metavar="PATH", help="only write the benchmark case to PATH")
    ap.add_argument("--keep", metavar="DIR", help="keep the case and outputs in DIR")
    ap.add_argument("--no-phases", action="store_true")
    ap.add_argument(
        "--modes",
        default="json,jsonl,indent1,pure,indent1-pure",
        help="comma list of: json (default output), jsonl, indent1 (--indent 1), pure (--json with "
        "PMEMTRACE_PURE_PYTHON=1: the Python model alone), indent1-pure (default: all)",
    )
    a = ap.parse_args()
    if a.write_case:
        write_case(a.write_case, a.accesses, a.extents)
        return
    d = a.keep or tempfile.mkdtemp(prefix="bench-explain-")
    os.makedirs(d, exist_ok=True)
    case = os.path.join(d, "case.json")
    t = time.perf_counter()
    # in a child: a parent grown by the case would show in the children's
    # peak RSS (fork copies its resident pages into the child's count)
    subprocess.run(
        [sys.executable, __file__, "--write-case", case, "--accesses", str(a.accesses), "--extents", str(a.extents)],
        check=True,
    )
    n = a.accesses
    print(
        f"explain end to end: {n:,} accesses, {a.extents:,} extents, 512 GiB mapping; case "
        f"{os.path.getsize(case) / 1e6:.0f} MB written in {time.perf_counter() - t:.1f} s"
    )
    exe = [sys.executable, "-m", "pmemtrace", "explain", case]
    modes = {
        "json": (["--json"], "out.json"),
        "jsonl": (["--jsonl"], "out.jsonl"),
        "indent1": (["--indent", "1"], "out1.json"),
        "pure": (["--json"], "out-pure.json"),
        "indent1-pure": (["--indent", "1"], "out1-pure.json"),
    }
    for mode in a.modes.split(","):
        extra, name = modes[mode]
        out = os.path.join(d, name)
        pure = mode.endswith("pure")
        if pure:
            os.environ["PMEMTRACE_PURE_PYTHON"] = "1"
        try:
            wall, cpu, rss = run_child(exe + extra, out)
        finally:
            os.environ.pop("PMEMTRACE_PURE_PYTHON", None)
        label = " ".join(extra) + (" (pure Python)" if pure else "")
        print(
            f"  explain {label:<24}: wall {wall:6.2f} s -> {n / wall:10,.0f} accesses/s "
            f"(CPU {cpu:6.2f} s -> {n / cpu:10,.0f}/s); output {os.path.getsize(out) / 1e6:5.0f} MB; "
            f"peak RSS {rss:,.0f} MiB"
        )
    outs = {m: os.path.join(d, modes[m][1]) for m in a.modes.split(",")}
    for with_core, without, flags in (("json", "pure", "--json"), ("indent1", "indent1-pure", "--indent 1")):
        if with_core in outs and without in outs:
            same = _same_file(outs[with_core], outs[without])
            print(f"  {flags} output identical with and without the compiled core: {same}")
    if not a.no_phases:
        phases(case, n)
    if not a.keep:
        for f in os.listdir(d):
            os.unlink(os.path.join(d, f))
        os.rmdir(d)


if __name__ == "__main__":
    main()
