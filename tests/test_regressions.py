"""The regression corpus (fixtures/regressions/), model side: every case a
differential run found the model and a real kernel disagreeing on, saved
with the kernel's observation.  The model's answer must now equal that
observation -- or the case names its known limit (documented in
docs/model-validation.md), and then it must still differ, so that a fix
shows up here and the limit is struck from the docs.  The kernel side is
tests/live/test_differential.py."""

import os

import pytest

from pmemtrace.fuzz.compare import load_regressions, replay_model_side
from pmemtrace.model import parse_case

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(os.path.dirname(HERE), "fixtures", "regressions")
REGRESSIONS = load_regressions(CORPUS)
DOC = os.path.join(os.path.dirname(HERE), "docs", "model-validation.md")


def test_the_corpus_is_there():
    assert len(REGRESSIONS) >= 3


@pytest.mark.parametrize("reg", REGRESSIONS, ids=[r["name"] for r in REGRESSIONS])
def test_model_gives_the_kernels_observation(reg):
    assert reg["kernel"] and reg["cause"], "a regression says where it was seen and why it differed"
    parse_case(reg["case"])  # a valid case
    assert len(reg["kernel_observation"]) == len(reg["case"]["accesses"])
    cmp = replay_model_side(reg)
    bad = [r.to_json() for r in cmp.disagreements]
    if reg.get("known_limit"):
        assert bad, f"{reg['name']} now agrees: drop its known_limit here and in docs/model-validation.md"
        with open(DOC) as f:
            assert reg["name"] in f.read(), "a known limit is listed in docs/model-validation.md"
    else:
        assert not bad, f"{reg['name']}: the model differs from kernel {reg['kernel']}: {bad}"


def test_a_wrong_observation_is_caught():
    """The replay can fail: flip the saved observation of one access."""
    reg = dict(REGRESSIONS[0])
    obs = [dict(k) if k else k for k in reg["kernel_observation"]]
    i = next(i for i, k in enumerate(obs) if k and (k.get("events") or k.get("outcome") not in (None, "none")))
    if "events" in obs[i]:
        obs[i]["events"] = obs[i]["events"][:-1]
    else:
        obs[i]["outcome"] = "pte" if obs[i]["outcome"] != "pte" else "pmd"
    reg["kernel_observation"] = obs
    assert not replay_model_side(reg).agree
