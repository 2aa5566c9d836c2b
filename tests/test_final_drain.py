"""The one final drain (pmemtrace.live.session.drain_remaining) of watch
(Session.finish) and run/check (tracefs.TraceCapture.stop): it drains a
stopped source until it is empty and not behind, and what it leaves unread
(time up, a failed read) is counted as lost by both callers: the "Nothing
lost" standard, checked against fake sources whose buffers say what they
hold."""

import errno

import pytest

from pmemtrace.live import session, tracefs
from pmemtrace.live.session import Record, Session, drain_remaining
from pmemtrace.live.views import Aggregator

DEV = (259 << 20) | 1


def _record(i=0):
    return Record("dax_pte_fault_done", {"dev": DEV, "ino": 5, "address": i << 12}, 0.0, 9, "w", 0, 9, "fake")


class _Source:
    """A stopped backend: *batches* records to drain (then empty), *behind*
    drains that come back empty though pages wait, *unread* events its
    buffer says it still holds, *fail*: drains raise EIO."""

    name = "fake"

    def __init__(self, batches=0, behind=0, unread=0, fail=False, endless=False):
        self.batches, self._behind, self._unread = batches, behind, unread
        self.fail, self.endless = fail, endless
        self.unread_calls = 0
        self.closed = False

    @property
    def behind(self):
        return self._behind > 0

    def drain(self, timeout):
        if self.fail:
            raise OSError(errno.EIO, "Input/output error")
        if self.endless or self.batches:
            self.batches -= 1
            return [_record()]
        if self._behind:
            self._behind -= 1
        return []

    def unread(self):
        self.unread_calls += 1
        return self._unread

    def lost(self):
        return 3

    def start(self):
        pass

    def stop(self):
        pass

    def close(self):
        self.closed = True


def test_drains_until_empty_and_not_behind():
    got = []
    src = _Source(batches=4, behind=2, unread=99)
    assert drain_remaining(src, got.extend, 60) == 0
    assert len(got) == 4 and src._behind == 0
    assert src.unread_calls == 0  # emptied: its buffer is not asked


@pytest.mark.parametrize("src", [_Source(endless=True, unread=7), _Source(fail=True, unread=7)], ids=["time", "eio"])
def test_what_a_cut_drain_leaves_is_returned(src):
    assert drain_remaining(src, [].extend, 0.02) == 7


class _NoUnread(_Source):
    unread = None  # a source that cannot say what its buffer holds


def test_a_source_without_unread_leaves_nothing_to_count():
    assert drain_remaining(_NoUnread(endless=True), [].extend, 0.01) == 0


def test_session_counts_what_the_final_drain_left_as_lost(monkeypatch):
    monkeypatch.setattr(session, "FINAL_DRAIN_SECONDS", 0.02)
    views = Aggregator()
    src = _Source(endless=True, unread=7)
    s = Session(src, views)
    s.started = True
    s.finish()
    assert views.lost == 3 + 7  # the ring's own losses, and the unread
    assert views.events >= 1 and src.closed


def test_session_counts_unread_as_lost_when_a_read_fails():
    views = Aggregator()
    s = Session(_Source(fail=True, unread=5), views)
    s.started = True
    s.finish()
    assert views.lost == 3 + 5


def test_session_emptied_counts_only_the_ring_losses():
    views = Aggregator()
    s = Session(_Source(batches=3, unread=11), views)
    s.started = True
    s.finish()
    assert views.lost == 3 and views.events == 3


def _capture(tmp_path, backend):
    """A TraceCapture made on a fake tracefs tree, its backend swapped for *backend*."""
    root = tmp_path / "tracing"
    for ev in ("dax_pmd_fault_done", "dax_pte_fault_done"):
        (root / "events" / "fs_dax" / ev).mkdir(parents=True)
    (root / "instances").mkdir()
    cap = tracefs.TraceCapture(root=str(root))
    assert cap.backend is not None, cap.reason
    cap.backend.close()
    backend.running = True
    cap.backend = backend
    return cap


def test_trace_capture_counts_what_the_final_drain_left_as_lost(tmp_path, monkeypatch):
    cap = _capture(tmp_path, _Source(endless=True, unread=7))
    monkeypatch.setattr(cap, "FINAL_DRAIN_SECONDS", 0.02)
    events = cap.stop()
    assert cap.lost == 3 + 7 and events
    assert cap.reason is not None and cap.reason.startswith("incomplete")


def test_trace_capture_emptied_returns_every_event(tmp_path):
    cap = _capture(tmp_path, _Source(batches=4, behind=1, unread=7))
    events = cap.stop()
    assert len(events) == 4 and cap.lost == 3
