"""The model's answer against what the kernel did, per access, and the
minimisation of a case on which they disagree.

Per access the comparison covers: the fs_dax events in order (name, fault
address, and the VM_FAULT result bits of ``*_fault_done``), for device-dax
the fault size that the kprobes on ``dev_dax_huge_fault`` saw succeed (it
has no tracepoint), a SIGBUS, and the errno of a refused call (mmap,
munmap, madvise, pwrite).  Accesses after a SIGBUS were not run and are not
compared.
"""

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

from ..errors import CaseError
from ..events import decode_vm_fault
from ..model import explain, parse_case
from .execute import Observation, devdax_outcome, fs_dax_events, split_by_marker


def _sig(events: Any) -> list[list[str]]:
    """[name, fault address, VM_FAULT result of a *_done] per event (lists,
    so that a saved observation compares equal after JSON)."""
    out = []
    for e in events:
        res = e.fields.get("result")
        addr = e.fields.get("address")
        out.append(
            [
                e.name,
                hex(addr) if addr is not None else "",
                decode_vm_fault(res) if res is not None and e.name.endswith("_done") else "",
            ]
        )
    return out


@dataclass
class Row:
    index: int
    op: str
    feature: str  # what the model says the access is about (op/outcome)
    agree: bool
    model: dict[str, Any]
    kernel: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "access": self.index,
            "op": self.op,
            "feature": self.feature,
            "agree": self.agree,
            "model": self.model,
            "kernel": self.kernel,
        }


@dataclass
class Comparison:
    rows: list[Row] = field(default_factory=list)
    not_run: int = 0
    #: O_DIRECT GUPs taken out before the run (no partner directory:
    #: execute.without_odirect)
    not_compared: int = 0
    note: Optional[str] = None

    @property
    def agree(self) -> bool:
        return all(r.agree for r in self.rows)

    @property
    def disagreements(self) -> list[Row]:
        return [r for r in self.rows if not r.agree]


def kernel_view(case: dict[str, Any], obs: Observation) -> list[Optional[dict[str, Any]]]:
    """Per access what the kernel did (None: not run)."""
    groups = split_by_marker(obs.lines)
    devdax = case["device"]["mode"] == "devdax"
    out: list[Optional[dict[str, Any]]] = []
    for i, _a in enumerate(case["accesses"]):
        if i >= obs.run:
            out.append(None)
            continue
        lines = groups.get(f"access {i}", [])
        k: dict[str, Any] = {}
        if obs.sigbus_at == i or i in obs.child_sigbus:
            k["outcome"] = "sigbus"
        if devdax:
            k.setdefault("outcome", devdax_outcome(lines))
        else:
            k["events"] = _sig(fs_dax_events(lines))
        err = obs.errnos.get(i)
        if err is not None:
            k["errno"] = err
        if i in obs.skipped:
            k["skipped"] = obs.skipped[i]
        out.append(k)
    return out


_DEVDAX_FAULTS = ("pte", "pmd", "pud", "sigbus")


def _model_view(r: Any, devdax: bool) -> dict[str, Any]:
    m: dict[str, Any] = {"outcome": r.outcome, "reason": r.reason}
    if devdax and r.op == "gup":
        # what the kprobes see of a GUP: the faults it took, the last one
        # that mapped (or its SIGBUS: GUP's EFAULT, no signal); as
        # devdax_outcome() reads them
        last = "none"
        for _, f in r.faults:
            if f.outcome in _DEVDAX_FAULTS:
                last = f.outcome
        m["faults"] = last
    if not devdax:
        m["events"] = _sig(r.events())
    err = r.to_json().get("errno")
    if err is not None:
        m["errno"] = err
    return m


def _agrees(m: dict[str, Any], k: dict[str, Any], devdax: bool) -> bool:
    if k.get("skipped"):
        # the child did not touch (nothing mapped there, a write to a
        # read-only mapping): the model must say the access fails
        return m["outcome"] == "error"
    if m.get("errno") != k.get("errno"):
        return False
    if "faults" in m:  # a GUP on device-dax
        return m["faults"] == k.get("outcome")
    if (m["outcome"] == "sigbus") != (k.get("outcome") == "sigbus"):
        return False
    if devdax:
        mo = m["outcome"] if m["outcome"] in ("pte", "pmd", "pud", "sigbus") else "none"
        return mo == k.get("outcome")
    return m["events"] == k.get("events")


def compare(case: dict[str, Any], kernel: list[Optional[dict[str, Any]]]) -> Comparison:
    """The model on *case* against the kernel's per-access view."""
    devdax = case["device"]["mode"] == "devdax"
    pred = explain(parse_case(case))
    out = Comparison()
    for r, k in zip(pred.results, kernel):
        if k is None:
            out.not_run += 1
            continue
        m = _model_view(r, devdax)
        child = "child-" if case["accesses"][r.index].get("child") else ""
        feature = f"{case['device']['mode']}:{child}{r.op}:{r.outcome}"
        out.rows.append(Row(r.index, r.op, feature, _agrees(m, k, devdax), m, k))
    return out


# ---------------------------------------------------------------------------
# minimisation


def _without_access(case: dict[str, Any], i: int) -> dict[str, Any]:
    c = dict(case)
    c["accesses"] = case["accesses"][:i] + case["accesses"][i + 1 :]
    return c


def _without_mapping(case: dict[str, Any], mid: str) -> dict[str, Any]:
    c = dict(case)
    c["mappings"] = [m for m in case["mappings"] if m["id"] != mid]
    c["accesses"] = [a for a in case["accesses"] if a.get("mapping") != mid]
    return c


def _without_extent(case: dict[str, Any], j: int) -> dict[str, Any]:
    c = dict(case)
    f = dict(case["file"])
    f["extents"] = f["extents"][:j] + f["extents"][j + 1 :]
    c["file"] = f
    return c


def _is_case(c: dict[str, Any]) -> bool:
    """Is a candidate still a case?  Dropping a fork leaves its child's
    accesses without a child, dropping a mapping's mmap its later uses."""
    try:
        parse_case(c)
    except CaseError:
        return False
    return True


def minimise(
    case: dict[str, Any], still_disagrees: Callable[[dict[str, Any]], bool], budget: int = 200
) -> dict[str, Any]:
    """Drop accesses, mappings and extents while *still_disagrees* (which
    runs the candidate on the kernel and compares) holds; greedy, one piece
    at a time, at most *budget* tries.  Returns the smallest case found."""
    tries = 0
    changed = True
    while changed and tries < budget:
        changed = False
        cands: list[dict[str, Any]] = []
        if len(case["mappings"]) > 1:
            cands += [_without_mapping(case, m["id"]) for m in case["mappings"]]
        cands += [_without_access(case, i) for i in range(len(case["accesses"]) - 1, -1, -1)]
        if case.get("file") and len(case["file"]["extents"]) > 1:
            cands += [_without_extent(case, j) for j in range(len(case["file"]["extents"]))]
        for c in cands:
            if not c["accesses"] or not _is_case(c):
                continue
            tries += 1
            if still_disagrees(c):
                case, changed = c, True
                break
            if tries >= budget:
                break
    return case


# ---------------------------------------------------------------------------
# the regression corpus (fixtures/regressions/*.json)


def load_regressions(directory: str) -> list[dict[str, Any]]:
    """Every saved disagreement: ``{name, cause, kernel, fs, case,
    kernel_observation, known_limit}`` (known_limit: why the model still
    differs, documented in docs/model-validation.md; null once fixed)."""
    import json
    import os

    out = []
    for n in sorted(os.listdir(directory)):
        if n.endswith(".json"):
            with open(os.path.join(directory, n)) as f:
                out.append(json.load(f))
    return out


def replay_model_side(reg: dict[str, Any]) -> Comparison:
    """The model on the saved case against the saved kernel observation."""
    return compare(reg["case"], reg["kernel_observation"])


# ---------------------------------------------------------------------------
# known limits (docs/model-validation.md): a differing access that one of
# them explains is counted apart, never as agreement


def known_limit(case: dict[str, Any], row: Row) -> Optional[str]:
    """The documented known limit that explains a differing access, or None."""
    m, k = row.model, row.kernel
    kev = k.get("events") or []
    if row.op == "write" and m["outcome"] == "pmd" and kev[1:2] and kev[1][2] == "FALLBACK":
        a = case["accesses"][row.index]
        mp = next(x for x in case["mappings"] if x["id"] == a["mapping"])
        pos = (mp["offset"] + a["offset"]) & ~((2 << 20) - 1)
        covered = any(
            e["logical"] <= pos and pos + (2 << 20) <= e["logical"] + e["length"] and not e["unwritten"]
            for e in case.get("file", {}).get("extents", [])
        )
        # where the case records the filesystem's placement (file.allocated:
        # every carried-out case does), the model knows it: not a limit
        if not covered and not _placed(case, pos):  # the PMD fault allocated: where is the allocator's choice
            return "allocator"
    if row.op == "gup" and _odirect_stop_on_a_bio_boundary(case, row):
        return "odirect-stop-on-a-bio-boundary"
    if row.op in ("read", "write") and case.get("file") and _after_allocation(case, row.index):
        # an access to a 2 MiB file block that was a hole when the case
        # started and that an earlier write or pwrite allocated: the model
        # placed those blocks 2 MiB-aligned, the filesystem did not (the
        # earlier access is the "allocator" limit; this one follows from
        # it) -- unless the case records where they went (file.allocated)
        a = case["accesses"][row.index]
        mp = next(x for x in case["mappings"] if x["id"] == a["mapping"])
        pos = (mp["offset"] + a["offset"]) & ~((2 << 20) - 1)
        if not _placed(case, pos):
            return "allocator"
    return None


def _odirect_stop_on_a_bio_boundary(case: dict[str, Any], row: Row) -> bool:
    """An O_DIRECT GUP stopped by a SIGBUS on the first page of a 256-page
    bio, which the kernel faulted fewer times than the model (7.3: twice;
    docs/model-validation.md, known limits); all else alike."""
    a = case["accesses"][row.index]
    if not a.get("fast", True) or a.get("longterm") or row.model.get("errno") != row.kernel.get("errno"):
        return False
    mev, kev = row.model.get("events") or [], row.kernel.get("events") or []
    mstop = [e for e in mev if e[2] == "SIGBUS"]
    kstop = [e for e in kev if e[2] == "SIGBUS"]
    if not kstop or len(kstop) >= len(mstop) or {e[1] for e in mstop + kstop} != {mstop[0][1]}:
        return False
    stop = int(mstop[0][1], 16)
    if [e for e in mev if e[1] != mstop[0][1]] != [e for e in kev if e[1] != mstop[0][1]]:
        return False
    start = explain(parse_case(case)).results[row.index].address
    return start is not None and ((stop - start) >> 12) % 256 == 0


def _placed(case: dict[str, Any], pos: int) -> bool:
    """Does the case record where the filesystem placed blocks it allocated
    in the 2 MiB file block at *pos* (file.allocated)?"""
    return any(
        e["logical"] < pos + (2 << 20) and pos < e["logical"] + e["length"]
        for e in case.get("file", {}).get("allocated", [])
    )


def _after_allocation(case: dict[str, Any], index: int) -> bool:
    """Was access *index*'s 2 MiB file block not wholly written or
    unwritten at the start, and did an earlier access write into it?"""
    pmd = 2 << 20
    maps = {m["id"]: m for m in case["mappings"]}
    exts = case.get("file", {}).get("extents", [])

    def block(a: dict[str, Any]) -> Optional[int]:
        if a["op"] not in ("read", "write"):
            return None
        m = maps.get(a.get("mapping") or "")
        return None if m is None else (m["offset"] + a["offset"]) // pmd

    def blocks_written(a: dict[str, Any]) -> set[int]:
        if a["op"] == "pwrite":
            return set(range(a["offset"] // pmd, (a["offset"] + a["length"] - 1) // pmd + 1))
        b = block(a)
        return {b} if a["op"] == "write" and b is not None else set()

    accesses = case["accesses"]
    b = block(accesses[index])
    if b is None:
        return False
    lo, hi = b * pmd, (b + 1) * pmd
    covered = sum(max(0, min(hi, e["logical"] + e["length"]) - max(lo, e["logical"])) for e in exts)
    if covered >= pmd:
        return False
    return any(b in blocks_written(a) for a in accesses[:index])
