"""Scenarios: a setup and a sequence of operations, written by hand in JSON.

Format (``"format": 1``), documented in docs/run.md::

    {"format": 1, "name": "pmd-write", "mode": "fsdax",
     "peer": "where the scenario comes from", "expect": "what the peer expects",
     "notes": "kernel behaviour behind any difference",
     "file": {"size": "8M", "alloc": "fallocate"},
     "mappings": [{"id": "m0", "length": "4M"}],
     "steps": [{"op": "write", "mapping": "m0", "offset": 0, "length": "4M", "stride": "2M"}]}

The embedded library lives in ``pmemtrace/workload/scenarios/*.json``.
"""

import json
from dataclasses import dataclass, field
from importlib import resources
from typing import Optional

from ..errors import UsageError
from ..units import parse_int

PAGE = 4096

OPS = ("read", "write", "gup", "mmap", "munmap", "madvise", "mremap", "pwrite", "punch", "check", "fork")
#: what a step may end in
OUTCOMES = ("ok", "sigbus", "skipped")
ADVICE = ("nohugepage", "hugepage", "dontneed")
ALLOCS = ("fallocate", "write", "sparse")
PLACES = ("aligned", "misaligned", "kernel")


class ScenarioError(UsageError):
    def __init__(self, where, key, message):
        self.key = key
        super().__init__(f"scenario {where}: {key}: {message}")


@dataclass
class MapSpec:
    id: str
    length: int
    offset: int = 0
    shared: bool = True
    sync: bool = False
    validate: bool = False
    writable: bool = True
    populate: bool = False
    mapped: bool = True
    place: str = "aligned"
    align: Optional[int] = None  # virtual alignment for "aligned"; default max(2M, device align)
    misalign: int = PAGE
    at: Optional[str] = None  # reuse another mapping's address
    anon: bool = False  # anonymous private memory (a landing pad for mremap)


@dataclass
class Step:
    op: str
    mapping: Optional[str] = None
    offset: int = 0
    length: int = PAGE
    stride: int = PAGE
    write: bool = False
    advice: Optional[str] = None
    to: Optional[str] = None
    fork: bool = False
    longterm: bool = False
    expect: list[str] = field(default_factory=lambda: ["ok"])
    note: Optional[str] = None


@dataclass
class Scenario:
    name: str
    mode: str
    peer: Optional[str]
    expect: Optional[str]
    notes: Optional[str]
    file_size: int
    alloc: str
    mappings: list[MapSpec]
    steps: list[Step]
    holes: list = field(default_factory=list)  # (offset, length) punched before the run
    device_align: Optional[int] = None  # devdax: the align this scenario needs
    thp_disable: bool = False
    events: dict = field(default_factory=dict)  # expected fs_dax events (live check)
    reason: Optional[str] = None  # the model reason code this scenario demonstrates
    raw: dict = field(default_factory=dict)

    def mapping(self, mid):
        for m in self.mappings:
            if m.id == mid:
                return m
        raise KeyError(mid)


def _size(d, key, where, default=None, required=False):
    if key not in d:
        if required:
            raise ScenarioError(where, key, "is required")
        return default
    try:
        return parse_int(d[key])
    except (UsageError, ValueError, TypeError) as exc:
        raise ScenarioError(where, key, f"not a size: {d[key]!r} ({exc})") from None


def _bool(d, key, where, default=False):
    v = d.get(key, default)
    if not isinstance(v, bool):
        raise ScenarioError(where, key, f"expected true or false, got {v!r}")
    return v


def _known(d, keys, where):
    for k in d:
        if k not in keys:
            raise ScenarioError(where, k, f"unknown key (known: {', '.join(sorted(keys))})")


def _expect(v, where):
    vals = v if isinstance(v, list) else [v]
    out = []
    for x in vals:
        if not isinstance(x, str) or not (x in OUTCOMES or x.isupper()):
            raise ScenarioError(where, "expect", f"{x!r}: expected ok, sigbus, skipped or an errno name like EINVAL")
        out.append({"ENOTSUP": "EOPNOTSUPP", "EWOULDBLOCK": "EAGAIN", "EDEADLOCK": "EDEADLK"}.get(x, x))
    return out


def parse_scenario(obj, source="<dict>"):
    if not isinstance(obj, dict):
        raise ScenarioError(source, "scenario", "expected a JSON object")
    _known(
        obj,
        {
            "format",
            "name",
            "mode",
            "peer",
            "expect",
            "notes",
            "file",
            "device",
            "mappings",
            "steps",
            "process",
            "events",
            "reason",
        },
        source,
    )
    if obj.get("format", 1) != 1:
        raise ScenarioError(
            source, "format", f"unsupported scenario format {obj.get('format')!r} (this pmemtrace reads 1)"
        )
    name = obj.get("name") or source
    where = name
    mode = obj.get("mode")
    if mode not in ("fsdax", "devdax"):
        raise ScenarioError(where, "mode", "expected fsdax or devdax")
    f = obj.get("file", {})
    if mode == "fsdax":
        _known(f, {"size", "alloc", "holes"}, where + ".file")
        file_size = _size(f, "size", where + ".file", required=True)
        holes = []
        for j, h in enumerate(f.get("holes", [])):
            hw = f"{where}.file.holes[{j}]"
            _known(h, {"offset", "length"}, hw)
            holes.append((_size(h, "offset", hw, required=True), _size(h, "length", hw, required=True)))
        alloc = f.get("alloc", "fallocate")
        if alloc not in ALLOCS:
            raise ScenarioError(where + ".file", "alloc", f"expected one of {', '.join(ALLOCS)}")
    else:
        if "file" in obj:
            raise ScenarioError(where, "file", "devdax scenarios map the device itself")
        file_size, alloc, holes = 0, "none", []
    dev = obj.get("device", {})
    _known(dev, {"align"}, where + ".device")
    device_align = _size(dev, "align", where + ".device")
    maps = obj.get("mappings")
    if not isinstance(maps, list) or not maps:
        raise ScenarioError(where, "mappings", "expected a non-empty list")
    mappings = []
    for i, m in enumerate(maps):
        w = f"{where}.mappings[{i}]"
        _known(
            m,
            {
                "id",
                "length",
                "offset",
                "shared",
                "sync",
                "validate",
                "writable",
                "populate",
                "mapped",
                "place",
                "align",
                "misalign",
                "at",
                "anon",
            },
            w,
        )
        place = m.get("place", "aligned")
        if place not in PLACES:
            raise ScenarioError(w, "place", f"expected one of {', '.join(PLACES)}")
        ms = MapSpec(
            id=m.get("id", f"m{i}"),
            length=_size(m, "length", w, required=True),
            offset=_size(m, "offset", w, 0),
            shared=_bool(m, "shared", w, True),
            sync=_bool(m, "sync", w),
            validate=_bool(m, "validate", w),
            writable=_bool(m, "writable", w, True),
            populate=_bool(m, "populate", w),
            mapped=_bool(m, "mapped", w, True),
            place=place,
            align=_size(m, "align", w),
            misalign=_size(m, "misalign", w, PAGE),
            at=m.get("at"),
            anon=_bool(m, "anon", w),
        )
        if ms.length <= 0:
            raise ScenarioError(w, "length", "must be positive")
        if any(x.id == ms.id for x in mappings):
            raise ScenarioError(w, "id", f"duplicate id {ms.id!r}")
        if ms.at is not None and not any(x.id == ms.at for x in mappings):
            raise ScenarioError(w, "at", f"names no earlier mapping: {ms.at!r}")
        mappings.append(ms)
    ids = {m.id for m in mappings}
    steps = []
    for i, s in enumerate(obj.get("steps", [])):
        w = f"{where}.steps[{i}]"
        _known(
            s,
            {
                "op",
                "mapping",
                "offset",
                "length",
                "stride",
                "write",
                "advice",
                "to",
                "fork",
                "expect",
                "note",
                "longterm",
            },
            w,
        )
        op = s.get("op")
        if op not in OPS:
            raise ScenarioError(w, "op", f"expected one of {', '.join(OPS)}")
        mid = s.get("mapping")
        if op not in ("pwrite", "punch") and mid not in ids:
            raise ScenarioError(w, "mapping", f"names no mapping: {mid!r} (mappings: {', '.join(sorted(ids))})")
        st = Step(
            op=op,
            mapping=mid,
            offset=_size(s, "offset", w, 0),
            length=_size(s, "length", w, PAGE),
            stride=_size(s, "stride", w, PAGE),
            write=_bool(s, "write", w),
            advice=s.get("advice"),
            to=s.get("to"),
            fork=_bool(s, "fork", w),
            longterm=_bool(s, "longterm", w),
            expect=_expect(s.get("expect", "ok"), w),
            note=s.get("note"),
        )
        if op == "madvise" and st.advice not in ADVICE:
            raise ScenarioError(w, "advice", f"expected one of {', '.join(ADVICE)}")
        if op == "mremap" and st.to not in ids:
            raise ScenarioError(w, "to", "mremap needs 'to': the id of the mapping describing the destination")
        if op in ("pwrite", "punch") and mode != "fsdax":
            raise ScenarioError(w, "op", f"{op} needs a file (fsdax)")
        if st.stride <= 0 or st.length <= 0:
            raise ScenarioError(w, "length", "length and stride must be positive")
        steps.append(st)
    if not steps:
        raise ScenarioError(where, "steps", "expected a non-empty list")
    proc = obj.get("process", {})
    _known(proc, {"thp_disable"}, where + ".process")
    return Scenario(
        name=name,
        mode=mode,
        peer=obj.get("peer"),
        expect=obj.get("expect"),
        notes=obj.get("notes"),
        file_size=file_size,
        alloc=alloc,
        holes=holes,
        mappings=mappings,
        steps=steps,
        device_align=device_align,
        thp_disable=_bool(proc, "thp_disable", where + ".process"),
        events=obj.get("events", {}),
        reason=obj.get("reason"),
        raw=obj,
    )


def embedded_names():
    root = resources.files("pmemtrace.workload.scenarios")
    return sorted(e.name[:-5] for e in root.iterdir() if e.name.endswith(".json"))


def load_embedded(name):
    if name not in embedded_names():
        raise UsageError(f"no embedded scenario named {name!r}; 'pmemtrace run --list' lists them")
    text = resources.files("pmemtrace.workload.scenarios").joinpath(name + ".json").read_text()
    return parse_scenario(json.loads(text), name)


def load_scenario(spec):
    """A scenario by embedded name or by path to a JSON file."""
    if spec.endswith(".json") or "/" in spec:
        try:
            with open(spec) as f:
                obj = json.load(f)
        except FileNotFoundError:
            raise UsageError(f"{spec}: no such scenario file") from None
        except json.JSONDecodeError as exc:
            raise UsageError(f"{spec}: not valid JSON: {exc.msg} at line {exc.lineno}") from None
        return parse_scenario(obj, spec)
    return load_embedded(spec)
