#!/usr/bin/env python3
"""The idle exporter's cost: ``pmemtrace watch --backend tracefs
--prometheus 127.0.0.1:0 --textfile DIR -i 15`` (the whole command, as the
systemd unit runs it) on a host with no DAX activity, scraped every 15 s
like a Prometheus server would, for 60 s.  Prints CPU (% of one CPU, from
/proc/PID/stat utime+stime after the start) and RSS (now and peak).
Targets: <= 1% of a CPU, <= 50 MB RSS.  Needs root and tracefs (a lab guest
or a host).

    python3 benchmarks/bench_exporter_idle.py [--seconds 60] [--scrape 15] [--backend tracefs]
"""

import argparse
import os
import re
import select
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime


def rss_mb(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out["VmRSS"], out["VmHWM"]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--scrape", type=float, default=15)
    ap.add_argument("--backend", default="tracefs")
    a = ap.parse_args()
    textdir = tempfile.mkdtemp(prefix="pmemtrace-bench-")
    argv = [sys.executable, "-m", "pmemtrace", "watch", "--backend", a.backend, "-i", str(a.scrape),
            "--prometheus", "127.0.0.1:0", "--textfile", textdir]  # fmt: skip
    t_start = time.monotonic()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = b""
    while b"Hit Ctrl-C" not in err:
        r, _, _ = select.select([p.stderr], [], [], 600)
        chunk = os.read(p.stderr.fileno(), 65536) if r else b""
        if not chunk:
            p.kill()
            sys.exit("the exporter did not start: " + err.decode(errors="replace")[-2000:])
        err += chunk
    port = int(re.search(rb"metrics at http://[^:]+:(\d+)/metrics", err).group(1))
    started = time.monotonic() - t_start
    cpu0, t0 = cpu_seconds(p.pid), time.monotonic()
    scrapes, body = 0, b""
    while time.monotonic() - t0 < a.seconds:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
        scrapes += 1
        time.sleep(max(0.0, min(a.scrape, a.seconds - (time.monotonic() - t0))))
    cpu1, t1 = cpu_seconds(p.pid), time.monotonic()
    rss, hwm = rss_mb(p.pid)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=120)
    prom = os.path.join(textdir, "pmemtrace.prom")
    size = os.path.getsize(prom) if os.path.exists(prom) else 0
    for f in os.listdir(textdir):
        os.unlink(os.path.join(textdir, f))
    os.rmdir(textdir)
    print(f"kernel {os.uname().release}, backend {a.backend}, start {started:.1f} s")
    print(
        f"idle {t1 - t0:.0f} s, {scrapes} scrapes ({len(body)} B each, textfile {size} B): "
        f"CPU {cpu1 - cpu0:.2f} s = {100 * (cpu1 - cpu0) / (t1 - t0):.2f}% of a CPU; "
        f"RSS {rss:.1f} MB (peak {hwm:.1f} MB); exit {p.returncode}"
    )


if __name__ == "__main__":
    main()
