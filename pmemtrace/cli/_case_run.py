"""``run --case`` and ``check --case``: carry one case out on real DAX and
compare each access with the model (pmemtrace.fuzz does the work; this
module parses the target and renders)."""

import json
import os

from ..errors import PrivilegeError, UsageError
from ._common import load_case_file, load_json_file, print_json, status, table


def run_case(path, dir_=None, device=None, out=None, as_json=False, allow_non_dax=False, dio_dir=None):
    """Returns the exit status: 0 every access agrees, 1 any disagreement.
    *dio_dir*: a directory on a non-DAX filesystem for the case's O_DIRECT
    GUPs (without it they are taken out of the case first)."""
    from ..fuzz.campaign import check_case, host_target
    from ..fuzz.execute import refuse_what_cannot_run
    from ..workload import target as T

    case = load_case_file(path)  # validated: a bad case is one line, exit 2
    refuse_what_cannot_run(case)
    raw = load_json_file(path, "case")
    mode = case.device.mode
    if mode == "fsdax" and not dir_:
        raise UsageError(f"--case {path} is an fsdax case: give --dir DIR on a filesystem mounted -o dax")
    if mode == "devdax" and not device:
        raise UsageError(f"--case {path} is a device-dax case: give --device /dev/daxX.Y")
    if dio_dir and not os.path.isdir(dio_dir):
        raise UsageError(f"--dio-dir {dio_dir}: not a directory")
    if os.geteuid() != 0:
        raise PrivilegeError("--case needs root to trace the kernel's faults (tracefs): try sudo")
    from ..workload import engine  # noqa: F401  (EngineNotBuilt: one line, before any tracing)

    wt = T.open_dir(dir_, allow_non_dax=allow_non_dax) if mode == "fsdax" else T.open_device(device)
    if mode == "devdax" and wt.device.align != case.device.align:
        status(
            f"note: the case says align {case.device.align >> 10}K, {device} has {wt.device.align >> 10}K; "
            "the model is asked about the real device"
        )
    rec = check_case(raw, host_target(wt, mode, partner=dio_dir))
    if out:
        with open(out, "w") as f:
            json.dump(rec["case"], f, indent=1)
            f.write("\n")
        base = out[:-5] if out.endswith(".json") else out
        with open(base + ".run.json", "w") as f:
            json.dump(rec, f, indent=1)
            f.write("\n")
        status(f"pmemtrace: the case as carried out written to {out} (comparison {base}.run.json)")
    if as_json:
        print_json(rec)
    else:
        rows = []
        for r in rec["rows"]:
            m, k = r["model"], r["kernel"]
            rows.append(
                (
                    r["access"],
                    r["op"],
                    f"{m['outcome']}{'/' + m['reason'] if m['reason'] else ''}",
                    _brief(m),
                    _brief(k),
                    "yes" if r["agree"] else "NO",
                )
            )
        table(rows, ["#", "op", "model", "model events", "kernel events", "agree"])
        if rec["not_run"]:
            status(f"pmemtrace: {rec['not_run']} accesses after a SIGBUS were not run")
        if rec["not_compared"]:
            status(
                f"pmemtrace: {rec['not_compared']} O_DIRECT GUPs taken out of the case (not run, not compared): "
                "give --dio-dir DIR on a non-DAX filesystem"
            )
        if rec["note"]:
            status(f"note: {rec['note']}")
    bad = sum(not r["agree"] for r in rec["rows"])
    status(f"pmemtrace: {len(rec['rows']) - bad} of {len(rec['rows'])} accesses agree with the model")
    return 1 if bad else 0


def _brief(view):
    parts = []
    if view.get("skipped"):
        parts.append(f"not touched ({view['skipped']})")
    if view.get("errno") is not None:
        parts.append(f"errno {view['errno']}")
    if "events" in view:
        parts += [f"{n}{'=' + r if r else ''}" for n, _a, r in view["events"] if n.endswith("_done") or "hole" in n]
    elif view.get("outcome") and not parts:
        parts.append(view["outcome"])
    return ", ".join(parts) or "-"
