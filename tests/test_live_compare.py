"""pmemtrace check's comparison: the model's own events as the 'kernel'
must agree everywhere; each kind of perturbation must be caught."""

import copy
import glob
import os

import pytest

from pmemtrace.events import VM_FAULT
from pmemtrace.live.compare import compare
from pmemtrace.model import explain, load_case

EX = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "pmemtrace", "model", "examples")


def _pred(name):
    return explain(load_case(os.path.join(EX, name + ".json"))).to_json()


def _observed(pred):
    return [copy.deepcopy(e) for r in pred["results"] for e in r.get("events", [])]


@pytest.mark.parametrize("path", sorted(glob.glob(os.path.join(EX, "*.json"))), ids=os.path.basename)
def test_model_agrees_with_itself(path):
    pred = explain(load_case(path)).to_json()
    rows, ok = compare(pred, _observed(pred))
    assert ok and len(rows) == len(pred["results"])


def test_fallback_instead_of_pmd_is_a_difference():
    pred = _pred("dax-pmd")
    obs = _observed(pred)
    done = [e for e in obs if e["name"] == "dax_pmd_fault_done"]
    done[3]["fields"]["result"] = VM_FAULT["FALLBACK"]
    rows, ok = compare(pred, obs)
    assert not ok
    bad = [r for r in rows if not r["agree"]]
    assert len(bad) == 1 and "model ok, kernel fallback" in bad[0]["differs"][0]


def test_missing_and_unexpected_events():
    pred = _pred("pmd-colour-mismatch")
    obs = _observed(pred)
    ptes = [i for i, e in enumerate(obs) if e["name"] == "dax_pte_fault_done"]
    extra = copy.deepcopy(obs[ptes[0]])
    extra["fields"]["address"] += 0x1000
    del obs[ptes[-1]]
    obs.insert(ptes[0] + 1, extra)
    rows, ok = compare(pred, obs)
    assert not ok
    assert sum(len(r["missing"]) for r in rows) == 1
    assert sum(len(r["unexpected"]) for r in rows) == 1


def test_trailing_unexpected_events_charged_to_last_access():
    pred = _pred("aligned-shared")
    obs = _observed(pred)
    obs.append(copy.deepcopy(next(e for e in obs if e["name"] == "dax_pmd_fault_done")))
    rows, ok = compare(pred, obs)
    assert not ok and rows[-1]["unexpected"]
