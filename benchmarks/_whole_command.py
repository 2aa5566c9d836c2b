"""Timing a whole pmemtrace command as a child process, as a user waits for
it (interpreter start, reading, work, writing the output, exit): shared by
the end-to-end benchmarks (bench_explain_e2e.py, bench_replay.py)."""

import os
import subprocess
import sys
import tempfile
import time


def run_child(argv, out_path):
    """Wall seconds, CPU seconds (user + sys) and peak RSS (MiB) of one run
    of *argv*, its stdout written to *out_path*; exits naming the command
    and the end of its stderr if it fails."""
    t = time.perf_counter()
    with open(out_path, "wb") as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(argv, stdout=out, stderr=err)
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        p.returncode = os.waitstatus_to_exitcode(status)
        if p.returncode:
            err.seek(0)
            sys.exit(f"{' '.join(argv)} failed ({p.returncode}): {err.read().decode()[-500:]}")
    return wall, ru.ru_utime + ru.ru_stime, ru.ru_maxrss / 1024
