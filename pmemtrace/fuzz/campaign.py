"""A differential run: N generated cases on real DAX in one process, the
per-access agreement per feature, and the minimised disagreements.

Used inside a lab guest by ``pmemtrace lab fuzz`` (which boots once and runs
``python -m pmemtrace.fuzz.campaign``) and by tests/live/test_differential.py.
Cases are grouped by target kind so that each namespace layout is made once.
"""

import argparse
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ..model import parse_case
from .compare import compare, kernel_view, known_limit, minimise
from .execute import KernelTrace, execute, real_case, without_odirect
from .generate import DEFAULT_KINDS, generate, kind_of


class Target:
    """A prepared target of one kind: the case device and where to run;
    *partner*: a directory on a non-DAX filesystem for O_DIRECT GUPs (None:
    those accesses are not run)."""

    def __init__(self, kind: str, path: str, device: Any, fs: Optional[str] = None, partner: Optional[str] = None):
        self.kind, self.path, self.device, self.fs, self.partner = kind, path, device, fs, partner


def lab_target(kind: str, mount: str = "/tmp/pmem") -> Target:
    """Reconfigure namespace0.0 of a lab guest for *kind* (fsdax-xfs,
    fsdax-ext4, devdax-<align>); raises LabError when the kernel refuses."""
    from ..lab import guest
    from ..workload import target as T

    mode, what = kind.split("-", 1)
    guest.load_modules()
    guest.umount(mount)  # a mounted namespace cannot be reconfigured (EBUSY)
    partner = lab_partner()
    if mode == "fsdax":
        ns = guest.reconfigure("namespace0.0", "fsdax", "mem", "2M")
        guest.make_fs("/dev/" + ns.get("blockdev", "pmem0"), what, None, mount)
        t = T.open_dir(mount)
        return Target(kind, os.path.join(mount, ".pmemtrace-fuzz.dat"), t.device, fs=what, partner=partner)
    ns = guest.reconfigure("namespace0.0", "devdax", "dev", what)
    dev = "/dev/" + ns["daxregion"]["devices"][0]["chardev"]
    return Target(kind, dev, T.open_device(dev).device, partner=partner)


def lab_partner() -> Optional[str]:
    """The non-DAX ext4 of a lab guest booted with a second region
    (namespace1.0; ``lab fuzz`` boots one), mounted once; None without."""
    from ..lab import guest

    if not os.path.exists("/sys/bus/nd/devices/namespace1.0"):
        return None
    if not os.path.ismount(guest.NODAX_MOUNT):
        ns1 = [n for n in guest.namespaces() if n.get("dev") == "namespace1.0"]
        dev = "/dev/" + (ns1[0].get("blockdev", "pmem1") if ns1 else "pmem1")
        guest.make_fs(dev, "ext4", "", guest.NODAX_MOUNT, dax=False)
    return guest.NODAX_MOUNT


def host_target(wt: Any, case_mode: str, partner: Optional[str] = None) -> Target:
    """A :class:`Target` from a :class:`pmemtrace.workload.target.Target`
    (``--dir`` or ``--device``): fsdax cases get a scratch file in the
    directory, removed after each case; *partner*: ``--dio-dir``."""
    if wt.mode == "fsdax":
        path = os.path.join(wt.path, f".pmemtrace-case-{os.getpid()}.dat")
        fs = wt.fs if wt.fs in ("xfs", "ext4") else None
        return Target(f"fsdax-{fs or 'other'}", path, wt.device, fs=fs, partner=partner)
    return Target("devdax", wt.path, wt.device, partner=partner)


def check_case(case_json: dict[str, Any], target: Target) -> dict[str, Any]:
    """Carry one case out on *target* and compare: the record ``run --case``
    and ``check --case`` print and write."""
    release = os.uname().release
    trace = KernelTrace(kprobes=target.device.mode == "devdax")
    try:
        real, kv, cmp = run_one(case_json, target, trace, release)
    finally:
        trace.close()
    return {
        "kernel": release,
        "case": real,
        "kernel_view": kv,
        "rows": [r.to_json() for r in cmp.rows],
        "not_run": cmp.not_run,
        "not_compared": cmp.not_compared,
        "agree": cmp.agree,
        "note": cmp.note or trace.reason,
    }


def run_one(
    case_json: dict[str, Any], target: Target, trace: KernelTrace, release: str
) -> tuple[dict[str, Any], Any, Any]:
    """(the real case, the kernel's per-access view, the Comparison)."""
    dropped = 0
    if target.partner is None:
        case_json, dropped = without_odirect(case_json)
    case = parse_case(case_json)
    placed = set(case_json.get("fuzz", {}).get("kernel_placed", ()))
    if target.fs and case.file is not None:
        case.file.fs = target.fs
    try:
        obs = execute(case, trace, target.path, placed, partner=target.partner)
    finally:
        if case.device.mode == "fsdax" and os.path.exists(target.path):
            os.unlink(target.path)
    real = real_case(case, obs, target.device, release)
    if "fuzz" in case_json:
        real["fuzz"] = case_json["fuzz"]
    kv = kernel_view(real, obs)
    cmp = compare(real, kv)
    cmp.not_compared = dropped
    if obs.died:
        cmp.note = obs.died
    return real, kv, cmp


def campaign(
    n: int,
    seed: int,
    kinds: Sequence[str] = DEFAULT_KINDS,
    out_dir: Optional[str] = None,
    minimise_budget: int = 40,
    make_target: Callable[[str], Target] = lab_target,
    status: Callable[[str], None] = lambda s: print(s, file=sys.stderr, flush=True),
    gup: bool = True,
) -> dict[str, Any]:
    """Run cases 0..n-1 of *seed* (``gup=False``: without the GUP accesses,
    as the generator made them before it had them); returns the JSON report."""
    release = os.uname().release
    t0 = time.monotonic()
    by_kind: dict[str, list[int]] = {}
    for i in range(n):
        by_kind.setdefault(kind_of(i, seed, kinds), []).append(i)
    feat_all: Counter = Counter()
    feat_ok: Counter = Counter()
    kinds_report: dict[str, Any] = {}
    disagreements: list[dict[str, Any]] = []
    for kind, idxs in sorted(by_kind.items()):
        try:
            target = make_target(kind)
        except Exception as exc:  # a layout the lab cannot make (1G on a 1 GiB region)
            kinds_report[kind] = {"cases": 0, "skipped": len(idxs), "why": str(exc).splitlines()[0][:200]}
            status(f"{kind}: cannot set up ({exc}); {len(idxs)} cases not run")
            continue
        trace = KernelTrace(kprobes=kind.startswith("devdax"))
        ok = total = cases = not_run = not_compared = died = 0
        try:
            for i in idxs:
                cj = generate(seed, i, kinds, kernel=release, gup=gup)
                real, kv, cmp = run_one(cj, target, trace, release)
                cases += 1
                not_run += cmp.not_run
                not_compared += cmp.not_compared
                died += bool(cmp.note)
                for r in cmp.rows:
                    total += 1
                    ok += r.agree
                    feat_all[r.feature] += 1
                    feat_ok[r.feature] += r.agree
                if not cmp.agree:
                    # the same case once more: a difference the kernel does
                    # not repeat is its own race (e.g. a fault retried once
                    # more), not a rule the model lacks; counted either way
                    again = run_one(cj, target, trace, release)[2]
                    d = {
                        "index": i,
                        "kind": kind,
                        "reproduced": sorted(
                            {r.index for r in again.disagreements} & {r.index for r in cmp.disagreements}
                        ),
                        "accesses": [r.to_json() for r in cmp.disagreements][:4],
                        "all_accesses": [r.to_json() for r in cmp.disagreements],
                        "known_limits": [known_limit(real, r) for r in cmp.disagreements],
                        "case": real,
                        "kernel": kv,
                    }
                    if len(disagreements) < 50 and minimise_budget:

                        def still(c: dict[str, Any], target: Target = target, trace: KernelTrace = trace) -> bool:
                            return not run_one(c, target, trace, release)[2].agree

                        small = minimise(cj, still, minimise_budget)
                        sreal, skv, scmp = run_one(small, target, trace, release)
                        d["minimal"] = {
                            "case": sreal,
                            "kernel": skv,
                            "rows": [r.to_json() for r in scmp.rows],
                            "agree": scmp.agree,
                        }
                    disagreements.append(d)
                    again_note = "" if d["reproduced"] else " (not repeated when run again)"
                    status(f"{kind} case {i}: {len(cmp.disagreements)} access(es) disagree{again_note}")
        finally:
            trace.close()
        kinds_report[kind] = {
            "cases": cases,
            "accesses": total,
            "agree": ok,
            "not_run": not_run,
            "not_compared": not_compared,
            "child_died": died,
        }
        status(f"{kind}: {cases} cases, {ok}/{total} accesses agree")
        # the report so far: a run cut short still leaves its figures
        _report(
            release, seed, n, kinds_report, feat_all, feat_ok, disagreements, t0, out_dir, status, final=False, gup=gup
        )
    return _report(release, seed, n, kinds_report, feat_all, feat_ok, disagreements, t0, out_dir, status, gup=gup)


def _report(
    release, seed, n, kinds_report, feat_all, feat_ok, disagreements, t0, out_dir, status, final=True, gup=True
):
    total = sum(v.get("accesses", 0) for v in kinds_report.values())
    agree = sum(v.get("agree", 0) for v in kinds_report.values())
    report = {
        "pmemtrace_fuzz": 1,
        "kernel": release,
        "seed": seed,
        "cases": n,
        "gup": gup,
        "cases_run": sum(v.get("cases", 0) for v in kinds_report.values()),
        "kinds": kinds_report,
        "accesses": total,
        "agree": agree,
        "agreement": round(agree / total, 6) if total else None,
        "features": {f: {"accesses": feat_all[f], "agree": feat_ok[f]} for f in sorted(feat_all)},
        "disagreements": disagreements,
        "seconds": round(time.monotonic() - t0, 1),
    }
    if out_dir:
        os.makedirs(out_dir, exist_ok=True)
        path = os.path.join(out_dir, f"fuzz-{release}-{seed}-{n}.json")
        with open(path, "w") as f:
            json.dump(report, f, indent=1)
        if final:
            status(f"report written to {path}")
    return report


def print_summary(report: dict[str, Any], file: Any = sys.stdout) -> None:
    print(
        f"kernel {report['kernel']}: {report['cases']} cases, {report['agree']}/{report['accesses']} "
        f"accesses agree ({100 * (report['agreement'] or 0):.2f}%), {report['seconds']} s",
        file=file,
    )
    for f, v in report["features"].items():
        mark = "" if v["agree"] == v["accesses"] else "   <--"
        print(f"  {f:<34} {v['agree']:>6}/{v['accesses']:<6}{mark}", file=file)
    flaky = sum(1 for d in report["disagreements"] if not d.get("reproduced", True))
    if flaky:
        print(f"  {flaky} differing case(s) agreed when run again (the kernel did not repeat itself)", file=file)
    for k, v in report["kinds"].items():
        if v.get("skipped"):
            print(f"  {k}: {v['skipped']} cases not run: {v['why']}", file=file)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m pmemtrace.fuzz.campaign")
    p.add_argument("--cases", type=int, default=100)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--kinds", default=",".join(DEFAULT_KINDS))
    p.add_argument("--out", default=None, help="directory for the JSON report")
    p.add_argument("--minimise", type=int, default=40, help="tries per disagreement (0: none)")
    p.add_argument("--no-gup", action="store_true", help="generate no GUP accesses (the cases of before they were)")
    a = p.parse_args(argv)
    rep = campaign(a.cases, a.seed, a.kinds.split(","), a.out, a.minimise, gup=not a.no_gup)
    print_summary(rep)
    return 0 if not rep["disagreements"] else 1


if __name__ == "__main__":
    sys.exit(main())
