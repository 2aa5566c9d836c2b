"""Compare what the kernel did (traced fs_dax events) with what the model
predicted, access by access: the heart of ``pmemtrace check``.

Both sides are reduced to the fault outcomes that matter -- which fs_dax
"done" events, at which page, with which result class (ok, fallback,
sigbus, retry) -- and aligned in order: the model's events for access 0,
then access 1...  against the trace in time order.  A predicted event not
found is ``missing``; a traced event no access predicted is ``unexpected``
(charged to the access being matched); same event and page with another
result class is ``differs``.
"""

from .tracefs import RESULT_EVENTS, result_class

#: the result events, plus the write-protect upgrades of a mapped PTE
COMPARED = RESULT_EVENTS + ("dax_insert_pfn_mkwrite", "dax_insert_pfn_mkwrite_no_entry")
WINDOW = 64  # how far ahead in the trace a predicted event is looked for


def _key(ev):
    f = ev["fields"]
    return ev["name"], f.get("address", 0) & ~0xFFF


def _short(ev):
    f = ev["fields"]
    return f"{ev['name']}@{f.get('address', 0):#x}:{result_class(ev['name'], f.get('result', 0))}"


def compare(prediction, observed):
    """prediction: ``Prediction.to_json()``; observed: Event JSON dicts (time
    order).  Returns ``(rows, ok)``; a row per access."""
    obs = [e for e in observed if e["name"] in COMPARED]
    j = 0
    rows = []
    for res in prediction["results"]:
        pred = [e for e in res.get("events", []) if e["name"] in COMPARED]
        row = {
            "access": res["access"],
            "op": res.get("op"),
            "model": res.get("outcome"),
            "reason": res.get("reason"),
            "predicted": len(pred),
            "matched": 0,
            "missing": [],
            "unexpected": [],
            "differs": [],
        }
        for p in pred:
            k = None
            for i in range(j, min(len(obs), j + WINDOW)):
                if _key(obs[i]) == _key(p):
                    k = i
                    break
            if k is None:
                row["missing"].append(_short(p))
                continue
            row["unexpected"] += [_short(e) for e in obs[j:k]]
            pc = result_class(p["name"], p["fields"].get("result", 0))
            oc = result_class(obs[k]["name"], obs[k]["fields"].get("result", 0))
            if pc != oc:
                row["differs"].append(f"{p['name']}@{p['fields'].get('address', 0):#x}: model {pc}, kernel {oc}")
            else:
                row["matched"] += 1
            j = k + 1
        rows.append(row)
    if j < len(obs):
        if rows:
            rows[-1]["unexpected"] += [_short(e) for e in obs[j:]]
        else:
            rows.append(
                {
                    "access": None,
                    "op": None,
                    "model": None,
                    "reason": None,
                    "predicted": 0,
                    "matched": 0,
                    "missing": [],
                    "unexpected": [_short(e) for e in obs[j:]],
                    "differs": [],
                }
            )
    for r in rows:
        r["agree"] = not (r["missing"] or r["unexpected"] or r["differs"])
    return rows, all(r["agree"] for r in rows)


def check_scenario(scen, tgt, dio_dir=None, kernel=None):
    """``pmemtrace check`` of one scenario: run it under fs_dax tracing
    (:func:`pmemtrace.workload.runner.run_scenario`), run the model on the
    case it recorded, compare.  Returns the scenario's result dict
    (``comparable``, ``agree``, ``rows``: only the disagreeing accesses)."""
    from ..model import explain, parse_case
    from ..workload.runner import run_scenario

    res = run_scenario(scen, tgt, dio_dir=dio_dir, trace=True, kernel=kernel)
    out = {"scenario": scen.name, "error": res.error, "trace": res.trace_reason or "recorded"}
    if res.trace_reason and res.trace_reason.startswith("incomplete"):
        # events were lost: comparing would report faults that did happen as
        # missing; the run failed to observe, which is an error, not agreement
        out.update(comparable=False, agree=False, rows=[], error=f"trace {res.trace_reason}")
        return out
    if not res.trace_text and res.trace_reason:
        out.update(comparable=False, agree=None, rows=[])
        return out
    pred = explain(parse_case(res.case)).to_json()
    rows, ok = compare(pred, res.events)
    # only the disagreeing rows are kept (a scenario can have 250,000+ accesses)
    out.update(
        comparable=True,
        agree=ok,
        accesses=len(rows),
        agreeing=sum(1 for r in rows if r["agree"]),
        rows=[r for r in rows if not r["agree"]],
        profile=pred.get("profile"),
        events=len(res.events),
    )
    return out
