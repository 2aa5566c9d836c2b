"""explain(case, stream=True) (what ``explain --json``/``--jsonl`` run): the
model runs as the output is encoded and keeps no record; the bytes must be
those of the kept-records path, on every embedded example and scenario, on
the oldest and newest kernel profiles, and on random cases."""

import io

import pytest
from test_explain_output import _all_cases, _random_case

from pmemtrace.cli.explain import write_json, write_jsonl
from pmemtrace.model import explain, parse_case
from pmemtrace.model.profiles import PROFILES


def _bytes(case, writer, stream):
    out = io.BytesIO()
    writer(explain(case, stream=stream), out)
    return out.getvalue()


# the oldest and newest profiles besides the case's own (the streaming
# path has no profile-specific code; the profiles only change the records)
KERNELS = [PROFILES[0].name, PROFILES[-1].name]


@pytest.mark.parametrize("label,load,name", _all_cases(), ids=lambda x: x if isinstance(x, str) else "")
def test_stream_bytes_equal_kept_records(label, load, name):
    case = load(name)
    # a big scenario (ndctl-mmap-flags: 262,170 accesses) on its own kernel only
    for kernel in [case.kernel, *KERNELS][: 1 if len(case.accesses) > 10_000 else None]:
        case.kernel = kernel
        for writer in (write_json, write_jsonl):
            assert _bytes(case, writer, True) == _bytes(case, writer, False), (kernel, writer.__name__)


@pytest.mark.parametrize("seed", range(4))
def test_stream_random_cases(seed):
    case = parse_case(_random_case(seed, 2000))
    assert _bytes(case, write_json, True) == _bytes(case, write_json, False)


def test_stream_runs_once_and_summary_after():
    case = parse_case(_random_case(0, 50))
    pred = explain(case, stream=True)
    with pytest.raises(ValueError):
        pred.summary()  # not run yet
    n = sum(1 for _ in pred.iter_encoded(lambda o: b""))
    assert n == 50 and pred.summary()["accesses"] == 50
    with pytest.raises(ValueError):
        next(pred.iter_encoded(lambda o: b""))  # the records were not kept


def test_pwrite_case_is_not_streamed():
    # a pwrite may grow the file, and events show max_pgoff as of the end
    # of the run: such a case runs first, then is encoded
    obj = _random_case(1, 20)
    obj["accesses"].insert(5, {"op": "pwrite", "offset": 0, "length": 4096})
    pred = explain(parse_case(obj), stream=True)
    assert pred._records is not None
