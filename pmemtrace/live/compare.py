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
        row = {"access": res["access"], "op": res.get("op"), "model": res.get("outcome"),
               "reason": res.get("reason"), "predicted": len(pred), "matched": 0,
               "missing": [], "unexpected": [], "differs": []}
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
            rows.append({"access": None, "op": None, "model": None, "reason": None, "predicted": 0,
                         "matched": 0, "missing": [], "unexpected": [_short(e) for e in obs[j:]], "differs": []})
    for r in rows:
        r["agree"] = not (r["missing"] or r["unexpected"] or r["differs"])
    return rows, all(r["agree"] for r in rows)
