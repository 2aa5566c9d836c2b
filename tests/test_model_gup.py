"""GUP as its callers make it (pmemtrace/model/gup.py): io_uring's
long-term registration, O_DIRECT and process_vm_readv/writev, on the rules
the lab kernels showed (fixtures/regressions/gup-*.json replays the lab's
observation of them)."""

from modelkit import A, M, fsdax, w

K61, K612 = "6.1.0-50-amd64", "6.12.95+deb12-amd64"
PRIVATE = [{"id": "m0", "start": A, "length": 16 * M, "shared": False}]


def _pin(offset, length, **kw):
    return {"mapping": "m0", "op": "gup", "offset": offset, "length": length, "write": True, **kw}


def test_longterm_pin_takes_a_private_mappings_cow_pages_from_6_10():
    cow = [w(i * 4096) for i in range(4)]  # four COW copies at the start
    for kernel, whole, running_on in (
        (K61, (95, "longterm-pin-fsdax"), (95, "longterm-pin-fsdax")),
        (K612, (None, None), (14, "longterm-pin-partial")),
    ):
        p = fsdax(
            [*cow, _pin(0, 4 * 4096, longterm=True), _pin(0, 8 * 4096, longterm=True)], mappings=PRIVATE, kernel=kernel
        )
        got = [(r.errno, r.reason if r.outcome == "error" else None) for r in p.results[4:]]
        assert got == [whole, running_on], kernel
    # the pages the fast path pinned were anonymous: no fault, no DAX event
    p = fsdax([*cow, _pin(0, 4 * 4096, longterm=True)], mappings=PRIVATE, kernel=K612)
    assert p.results[4].outcome == "pinned" and p.results[4].faults == []


def _stop_faults(result, addr):
    return sum(1 for a, f in result.faults if a == addr and f.outcome == "sigbus")


def test_the_caller_faults_the_page_that_stopped_the_pin_again():
    size = 3 * M + 12345  # the page at 3 MiB + 12 KiB holds EOF, the next is beyond
    stop = A + ((size + 4095) & ~4095)
    start = stop - 8 * 4096
    shared = [{"id": "m0", "start": A, "length": 4 * M}]
    cases = {
        # O_DIRECT: bio retry, next bio, next iomap iteration: 4 faults, EFAULT
        "odirect": (_pin(start - A, 16 * 4096, fast=True), 4, 14),
        # process_vm: the next 512-page call faults it once more, a short copy
        "process_vm": (_pin(start - A, 16 * 4096, fast=False), 2, None),
        # ... unless the stop is the first page of a call (page 512)
        "process_vm-call-boundary": (_pin(stop - A - 512 * 4096, 520 * 4096, fast=False), 1, None),
        # io_uring: fsdax is refused before any fault (device-dax: a partial
        # pin is EFAULT, test_model_reasons.py)
        "io_uring": (_pin(start - A, 16 * 4096, longterm=True), 0, 95),
    }
    ext = [{"logical": 0, "physical": 2 * M, "length": stop - A}]
    for name, (access, faults, errno) in cases.items():
        r = fsdax([access], file_size=size, extents=ext, mappings=shared, kernel=K612, fs="ext4").results[0]
        assert (_stop_faults(r, stop), r.errno) == (faults, errno), name
    # a stop at the first page is the GUP's own EFAULT, whoever calls
    r = fsdax([_pin(stop - A, 4096, fast=True)], file_size=size, extents=ext, mappings=shared, kernel=K612).results[0]
    assert (_stop_faults(r, stop), r.errno) == (1, 14)
