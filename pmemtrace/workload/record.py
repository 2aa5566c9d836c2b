"""Case recording: what the worker of ``pmemtrace run`` did (or, for a dry
run, would do), as the model's case, through the one
:class:`~pmemtrace.model.build.CaseBuilder`."""

import os
from collections.abc import Iterable, Mapping
from typing import Any, Optional

from ..model.build import CaseBuilder, extent
from ..model.case import Case, File
from .scenario import PAGE

PMD = 2 << 20
#: above this many touched addresses a step is recorded in the case as one
#: access per 2 MiB (what decides PMD vs PTE) instead of one per address
#: (256 MiB of 4 KiB touches)
CASE_ACCESS_LIMIT = 65536


def step_records(scen, msgs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per scenario step from the worker's step messages: the
    outcome, whether the peer expected it, and what the worker reported."""
    got = {m["step"]: m for m in msgs if "step" in m}
    out = []
    for i, st in enumerate(scen.steps):
        m = dict(got.get(i, {"outcome": "not-run"}))
        m.pop("step", None)
        outcome = m.pop("outcome")
        rec = {
            "index": i,
            "op": st.op,
            "mapping": st.mapping,
            "outcome": outcome,
            "expect": st.expect,
            "match": outcome in st.expect,
        }
        rec.update(m)
        if st.note:
            rec["note"] = st.note
        out.append(rec)
    return out


def _touched_offsets(st_, s) -> list[int]:
    """The offsets a read/write/fork/check step touched, cut at a SIGBUS,
    and one per 2 MiB beyond :data:`CASE_ACCESS_LIMIT`."""
    stride = st_.stride if st_.op != "check" else PAGE
    offs = list(range(st_.offset, st_.offset + st_.length, stride))
    if s["outcome"] == "sigbus" and s.get("fault_offset") is not None:
        offs = [o for o in offs if o <= s["fault_offset"]] or offs[:1]
    if len(offs) > CASE_ACCESS_LIMIT:
        seen, keep = set(), []
        for o in offs:
            if (o // PMD) not in seen:
                seen.add(o // PMD)
                keep.append(o)
        offs = keep
    return offs


def build_case(
    scen,
    target,
    st: Optional[os.stat_result],
    extents,
    placed: Mapping[str, int],
    mapped_at_start: Mapping[str, int],
    steps: list[dict[str, Any]],
    kernel: Optional[str] = None,
    odirect: bool = False,
    start_tables: Iterable[int] = (),
) -> Case:
    """The model's case for what the worker did: *extents* as FIEMAP gave
    them (objects with logical, physical, length, unwritten), *placed* and
    *mapped_at_start* the addresses the worker reported, *steps* the
    :func:`step_records`."""
    b = CaseBuilder(
        target.device,
        kernel=kernel or os.uname().release,
        name=f"run-{scen.name}",
        notes=f"recorded by pmemtrace run {scen.name} on {target.path}" + (f" ({scen.peer})" if scen.peer else ""),
    )
    if scen.mode == "fsdax":
        b.file = File(
            size=scen.file_size,
            ino=st.st_ino if st else 0,
            extents=[extent(e.logical, e.physical, e.length, e.unwritten) for e in extents],
            fs=target.fs if target.fs in ("xfs", "ext4") else "xfs",
        )
    ids = set()
    for m in scen.mappings:
        if m.anon:
            continue
        a = mapped_at_start.get(m.id) or placed.get(m.id)
        if a is None:
            a = next((s["addr"] for s in steps if s["op"] == "mmap" and s["mapping"] == m.id and s.get("addr")), None)
        b.mapping(
            m.id, a or 0, m.length, offset=m.offset, shared=m.shared, sync=m.sync, writable=m.writable, mapped=m.mapped
        )
        ids.add(m.id)
    b.page_tables.update(start_tables)
    for m in scen.mappings:
        # MAP_POPULATE faults the whole mapping in at mmap time
        # (mm_populate(): FOLL_WRITE only for private writable mappings)
        if not m.anon and m.mapped and m.populate:
            b.populate(m.id, m.length, m.writable and not m.shared)
    remapped = {}
    for s, st_ in zip(steps, scen.steps):
        op, mid = st_.op, st_.mapping
        if s["outcome"] == "not-run":
            break
        if op == "mremap":
            if s["outcome"] == "ok":
                src = scen.mapping(mid)
                rid = f"{st_.to}@{s['index']}"
                b.mapping(
                    rid,
                    s["addr"],
                    st_.length,
                    offset=src.offset + st_.offset,
                    shared=src.shared,
                    sync=src.sync,
                    writable=src.writable,
                    mapped=False,
                )
                b.mmap(rid)
                b.page_tables.update(s.get("page_tables") or ())
                remapped[st_.to] = rid
            continue
        if op == "pwrite":
            if s["outcome"] == "ok":
                b.pwrite(st_.offset, s.get("bytes", st_.length))
            continue
        cid = remapped.get(mid, mid)
        if cid not in ids and cid not in remapped.values():
            continue  # anonymous memory: not part of the case
        if op == "mmap":
            b.mmap(cid)
            b.page_tables.update(s.get("page_tables") or ())
            src = scen.mapping(mid)
            if src.populate and not src.anon and s["outcome"] == "ok":
                b.populate(cid, src.length, src.writable and not src.shared)
        elif op == "munmap":
            b.munmap(cid)
        elif op == "madvise":
            b.madvise(cid, st_.advice, st_.offset, st_.length)
        elif op == "gup":
            b.gup(
                cid,
                st_.offset,
                st_.length,
                write=st_.write or st_.longterm,
                fast=odirect or st_.longterm,
                longterm=st_.longterm,
            )
        elif op in ("read", "write", "fork", "check"):
            write = op == "write" or (op == "fork" and st_.write)
            if op == "fork" or st_.fork:
                # a child has fresh page tables: modelled as munmap + mmap (see the dax-pmd example)
                b.munmap(cid)
                b.mmap(cid)
            for o in _touched_offsets(st_, s):
                b.touch(cid, o, write)
    b.thp_disable = bool(scen.thp_disable)
    return b.build()
