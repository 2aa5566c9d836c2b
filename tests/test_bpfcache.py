"""The compiled-program cache (pmemtrace/live/bpfcache.py) and the loader's
pure parts (bpfsys): the key follows every input, entries are loaded only
from a private directory, relocation puts each map's fd where bcc's was,
and the backend reads the kernel's counts from the maps' bytes.  Loading
and attaching for real is tested in the lab (tests/live/test_watch_bcc.py
runs watch twice with one cache directory)."""

import ctypes
import os
import struct

import pytest

from pmemtrace.live import bpfcache, bpfsys


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("PMEMTRACE_BPF_CACHE", raising=False)
    return tmp_path


def _sources(tmp_path):
    src = tmp_path / "p.bpf.c"
    hdr = tmp_path / "p.h"
    src.write_text("int x;\n")
    hdr.write_text("#define A 1\n")
    tfs = tmp_path / "tracefs"
    (tfs / "events" / "fs_dax" / "dax_pmd_fault").mkdir(parents=True)
    (tfs / "events" / "fs_dax" / "dax_pmd_fault" / "format").write_text("field:unsigned long ino;\n")
    return [str(src), str(hdr)], str(tfs)


def test_the_key_changes_with_every_input(tmp_path):
    srcs, tfs = _sources(tmp_path)
    base = bpfcache.key(srcs, ["-DA=1"], [["p", "kprobe", "f", "kp_f"]], tfs)
    assert base == bpfcache.key(srcs, ["-DA=1"], [["p", "kprobe", "f", "kp_f"]], tfs)
    keys = {base}
    keys.add(bpfcache.key(srcs, ["-DA=2"], [["p", "kprobe", "f", "kp_f"]], tfs))
    keys.add(bpfcache.key(srcs, ["-DA=1"], [["p", "fentry", "f", "kp_f"]], tfs))
    with open(srcs[1], "a") as f:
        f.write("#define B 2\n")
    keys.add(bpfcache.key(srcs, ["-DA=1"], [["p", "kprobe", "f", "kp_f"]], tfs))
    with open(os.path.join(tfs, "events", "fs_dax", "dax_pmd_fault", "format"), "a") as f:
        f.write("field:unsigned long pgoff;\n")
    keys.add(bpfcache.key(srcs, ["-DA=1"], [["p", "kprobe", "f", "kp_f"]], tfs))
    assert len(keys) == 5


def test_an_entry_is_stored_private_and_read_back(cache_home):
    k = "ab" * 32
    assert bpfcache.lookup(k) is None
    assert bpfcache.store(k, {"maps": {}, "programs": []})
    d = bpfcache.cache_dir()
    assert os.stat(d).st_mode & 0o777 == 0o700
    (name,) = os.listdir(d)
    assert os.stat(os.path.join(d, name)).st_mode & 0o777 == 0o600
    got = bpfcache.lookup(k)
    assert got is not None and got["key"] == k and got["programs"] == []
    assert bpfcache.lookup("cd" * 32) is None


def test_an_entry_others_could_have_written_is_not_loaded(cache_home, monkeypatch):
    k = "ab" * 32
    bpfcache.store(k, {"maps": {}, "programs": []})
    d = bpfcache.cache_dir()
    path = os.path.join(d, os.listdir(d)[0])
    os.chmod(path, 0o620)
    assert bpfcache.lookup(k) is None
    os.chmod(path, 0o600)
    os.chmod(d, 0o770)
    assert bpfcache.lookup(k) is None
    os.chmod(d, 0o700)
    assert bpfcache.lookup(k) is not None
    # owned by someone else (as seen by another user)
    uid = os.geteuid()
    monkeypatch.setattr(bpfcache.os, "geteuid", lambda: uid + 1)
    assert bpfcache.lookup(k) is None


def test_a_symlinked_or_mislabelled_entry_is_not_loaded(cache_home):
    k = "ab" * 32
    bpfcache.store(k, {"maps": {}, "programs": []})
    d = bpfcache.cache_dir()
    path = os.path.join(d, os.listdir(d)[0])
    os.rename(path, path + ".real")
    os.symlink(path + ".real", path)
    assert bpfcache.lookup(k) is None
    os.unlink(path)
    os.rename(path + ".real", path)
    other = "cd" * 32  # an entry copied under another key's name
    os.link(path, os.path.join(d, other + ".json"))
    assert bpfcache.lookup(other) is None
    with open(path, "w") as f:
        f.write("{not json")
    assert bpfcache.lookup(k) is None


def test_the_cache_can_be_turned_off_and_is_pruned(cache_home, monkeypatch):
    for i in range(bpfcache.KEEP + 3):
        assert bpfcache.store(f"{i:064x}", {"maps": {}, "programs": []})
    assert len(os.listdir(bpfcache.cache_dir())) == bpfcache.KEEP
    monkeypatch.setenv("PMEMTRACE_BPF_CACHE", "0")
    assert bpfcache.lookup(f"{bpfcache.KEEP + 2:064x}") is None
    assert not bpfcache.store("ff" * 32, {})


def test_a_store_killed_before_its_rename_is_cleaned_up(cache_home):
    """A store() killed between write and rename leaves <entry>.<pid>.tmp;
    the next store removes it once that pid is gone, and never a live
    writer's."""
    import subprocess

    dead = subprocess.Popen(["true"])
    dead.wait()
    assert bpfcache.store("aa" * 32, {"maps": {}, "programs": []})
    d = bpfcache.cache_dir()
    stale = os.path.join(d, f"{'bb' * 32}.json.{dead.pid}.tmp")
    live = os.path.join(d, f"{'cc' * 32}.json.{os.getpid()}.tmp")
    for p in (stale, live):
        open(p, "w").close()
    assert bpfcache.store("dd" * 32, {"maps": {}, "programs": []})
    assert not os.path.exists(stale)
    assert os.path.exists(live)


def _insn(op, regs=0, imm=0):
    return struct.pack("<BBhi", op, regs, 0, imm)


def test_map_loads_are_found_and_relocated():
    ld_map = _insn(bpfsys.LD_IMM64, 1 << 4 | 1, 7) + _insn(0)  # r1 = map fd 7 (two slots)
    prog = _insn(0xB7, 0, 0) + ld_map + _insn(0x85, 0, 1) + _insn(0x95)
    assert bpfsys.map_refs(prog) == [(1, 7)]
    out = bpfsys.relocate(prog, [(1, "events")], {"events": 42})
    assert bpfsys.map_refs(out) == [(1, 42)] and out[:8] == prog[:8] and out[16:] == prog[16:]
    with pytest.raises(bpfsys.BpfError):
        bpfsys.relocate(prog, [(0, "events")], {"events": 42})
    # a map value or BTF id load cannot be relocated by fd: not cached
    assert bpfsys.map_refs(_insn(bpfsys.LD_IMM64, 2 << 4 | 1, 7) + _insn(0)) is None


def test_a_failed_load_closes_what_it_made(monkeypatch):
    made = []

    def fake_map(*a):
        fd = os.open(os.devnull, os.O_RDONLY)
        made.append(fd)
        return fd

    def refuse(*a, **k):
        raise bpfsys.BpfError(13, "loading x: Permission denied")

    monkeypatch.setattr(bpfsys, "map_create", fake_map)
    monkeypatch.setattr(bpfsys, "prog_load", refuse)
    entry = {
        "license": "GPL",
        "kern_version": 0,
        "maps": {"events": {"type": 27, "key_size": 0, "value_size": 0, "max_entries": 4096, "flags": 0}},
        "programs": [{"name": "p", "type": 5, "insns": _insn(0x95).hex(), "relocs": [], "attach": ["x", "y"]}],
    }
    with pytest.raises(bpfsys.BpfError):
        bpfcache.load(entry)
    assert len(made) == 1
    with pytest.raises(OSError):
        os.fstat(made[0])  # closed


def test_the_loader_is_bccs_own_library_with_its_prototypes():
    """bpfsys binds libbcc_bpf.so.0 (libbpfcc, a python3-bpfcc dependency):
    every function it calls is there, and a call's failure is an error
    with errno, not a crash (a bad fd, a program type nobody has)."""
    lib = bpfsys.lib()
    for name in bpfsys._PROTOTYPES:
        assert getattr(lib, name).restype is not None
    with pytest.raises(bpfsys.BpfError) as e:
        bpfsys.map_info(-1)
    assert e.value.errno
    with pytest.raises(bpfsys.BpfError) as e:
        bpfsys.Map(-1, {"type": 1, "key_size": 4, "value_size": 8}).get(b"\0" * 4)
    assert e.value.errno == 9  # EBADF
    with pytest.raises(bpfsys.BpfError) as e:
        bpfsys.prog_load(9999, _insn(0x95), "p", b"GPL", 0)
    assert "loading p" in str(e.value)
    with pytest.raises(bpfsys.BpfError):
        bpfsys.attach(-1, "uprobe", "x")


def test_a_missing_library_is_a_load_failure(monkeypatch):
    monkeypatch.setattr(bpfsys, "_lib", None)
    monkeypatch.setattr(bpfsys, "LIBRARY", "libpmemtrace-no-such.so.0")
    with pytest.raises(bpfsys.BpfError):
        bpfcache.load(
            {
                "license": "GPL",
                "kern_version": 0,
                "maps": {"m": {"type": 2, "key_size": 4, "value_size": 8, "max_entries": 1, "flags": 0}},
                "programs": [],
            }
        )


class _FakeMap:
    def __init__(self, values, ncpus=2, value_size=8):
        self.values, self.ncpus, self.value_size = values, ncpus, value_size

    def all_keys(self):
        return list(self.values)

    def get(self, key):
        return self.values.get(key)

    def delete(self, key):
        return self.values.pop(key, None) is not None

    def per_cpu(self, value):
        s = (self.value_size + 7) & ~7
        return [value[i * s : i * s + self.value_size] for i in range(self.ncpus)]


def test_the_backend_reads_counts_kinds_and_lost_from_map_bytes():
    from pmemtrace.live import bcc_backend
    from pmemtrace.live.decode import CountedRow

    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.aggregate, b._counted, b._kinds_seen, b._comms, b._dying = True, {}, {}, {}, set()
    b._alive = lambda tgid: True
    key = struct.pack("<IIQQQ", 9, 0x10300001, 5, 0x7F0000000000, 0x7F0000400000)
    per_cpu = struct.pack("<5Q", 3, 0, 1, 3, 0) + struct.pack("<5Q", 2, 4, 0, 2, 0)
    counts = _FakeMap({key: per_cpu}, value_size=40)
    comm = _FakeMap({struct.pack("<I", 9): b"touch\0" + b"\0" * 10}, ncpus=1, value_size=16)
    kinds = _FakeMap({struct.pack("<I", 2): struct.pack("<QQ", 4, 1)})
    lost = _FakeMap({struct.pack("<I", 0): struct.pack("<QQ", 6, 1)})
    b.maps = {"counts": counts, "comms": comm, "kinds": kinds, "lost": lost}
    rows, by_name = b.counts()
    assert rows == [CountedRow(9, "touch", 0x10300001, 5, 0x7F0000000000, 0x7F0000400000, 5, 4, 1, 5, 0)]
    assert by_name == {"dax_pmd_fault_done": 5}
    assert b.lost() == 7
    # the next read gives increments only
    counts.values[key] = struct.pack("<5Q", 4, 0, 1, 3, 0) + struct.pack("<5Q", 2, 4, 0, 2, 0)
    rows, by_name = b.counts()
    assert [(r.pmd, r.pte) for r in rows] == [(1, 0)] and by_name == {}


def test_what_bccs_loader_prints_is_kept_off_stderr(capfd):
    os.write(2, b"before\n")
    with bpfsys.quiet():
        os.write(2, b"bpf: Failed to load program: Permission denied\n")
        with pytest.raises(bpfsys.BpfError):
            bpfsys.prog_load(9999, _insn(0x95), "p", b"GPL", 0)
    os.write(2, b"after\n")
    assert capfd.readouterr().err == "before\nafter\n"


def test_a_cached_tp_btf_program_is_loaded_by_libbpf_with_its_event(monkeypatch):
    """bcc's loader cannot load a tp_btf program (it takes the attach type
    from kfunc__/lsm__ names only): a cached entry's tp_btf program goes to
    prog_load_tp_btf with its tracepoint, the others to bcc's prog_load."""
    calls = []
    monkeypatch.setattr(bpfsys, "map_create", lambda *a: os.open(os.devnull, os.O_RDONLY))
    monkeypatch.setattr(
        bpfsys, "prog_load_tp_btf", lambda insns, event, lic: calls.append(("load tp_btf", event)) or os.dup(0)
    )
    monkeypatch.setattr(bpfsys, "prog_load", lambda t, insns, name, lic, kv: calls.append(("bcc", name)) or os.dup(0))
    monkeypatch.setattr(
        bpfsys, "attach", lambda fd, kind, target: calls.append((kind, target)) or bpfsys.Attachment(os.dup(0), kind)
    )
    entry = {
        "license": "GPL",
        "kern_version": 0,
        "maps": {},
        "programs": [
            {
                "name": "tpbtf__dax_pmd_fault_done",
                "type": 26,
                "insns": _insn(0x95).hex(),
                "relocs": [],
                "attach": ["tp_btf", "dax_pmd_fault_done"],
            },
            {
                "name": "kfunc__vmf_insert_folio_pmd",
                "type": 26,
                "insns": _insn(0x95).hex(),
                "relocs": [],
                "attach": ["fentry", "vmf_insert_folio_pmd"],
            },
        ],
    }
    loaded = bpfcache.load(entry)
    loaded.close()
    assert calls == [
        ("load tp_btf", "dax_pmd_fault_done"),
        ("tp_btf", "dax_pmd_fault_done"),
        ("bcc", "kfunc__vmf_insert_folio_pmd"),
        ("fentry", "vmf_insert_folio_pmd"),
    ]


def test_tp_btf_loading_binds_libbpf_and_reports_a_refusal():
    """prog_load_tp_btf goes through libbpf.so.1 (libbcc_bpf's own
    dependency): its options struct is libbpf 1.0's bpf_prog_load_opts up
    to log_buf, and a tracepoint without BTF or a refused program is an
    error naming the event, not a crash."""
    assert ctypes.sizeof(bpfsys._ProgLoadOpts) == 104
    assert bpfsys._ProgLoadOpts.log_buf.offset == 96 and bpfsys._ProgLoadOpts.attach_btf_id.offset == 32
    lb = bpfsys.libbpf()
    assert lb.bpf_prog_load.restype is ctypes.c_int
    with pytest.raises(bpfsys.BpfError) as e:
        bpfsys.prog_load_tp_btf(_insn(0x95), "pmemtrace_no_such_event", b"GPL")
    assert "pmemtrace_no_such_event" in str(e.value)


def test_the_backend_adds_a_keys_slots_to_its_hash_entry():
    """The same key counted in its slot and in the hash (its slot was
    another key's on one CPU): one row with both, increments after."""
    from pmemtrace.live import bcc_backend
    from pmemtrace.live.decode import CountedRow
    from pmemtrace.live.slots import LIVE, SLOT, SlotTable

    KEY = (9, 0x10300001, 5, 0x7F0000000000, 0x7F0000400000)
    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.aggregate, b._counted, b._kinds_seen, b._comms, b._dying = True, {}, {}, {}, set()
    b._alive = lambda tgid: True
    kb = struct.pack("<IIQQQ", *KEY)
    counts = _FakeMap({kb: struct.pack("<5Q", 1, 0, 0, 1, 0) + struct.pack("<5Q", 0, 0, 0, 0, 0)}, value_size=40)
    comm = _FakeMap({struct.pack("<I", 9): b"touch\0" + b"\0" * 10}, ncpus=1, value_size=16)
    kinds = _FakeMap({})
    b.maps = {"counts": counts, "comms": comm, "kinds": kinds}
    buf = bytearray(SLOT.pack(*KEY, 3, 2, 0, 3, 0, LIVE, 0))
    b.slots = SlotTable(buf, alive=lambda tgid: True)
    rows, _ = b.counts()
    assert rows == [CountedRow(9, "touch", *KEY[1:], 4, 2, 0, 4, 0)]
    struct.pack_into("<Q", buf, 32, 5)
    rows, _ = b.counts()
    assert [(r.pmd, r.insert_pmd) for r in rows] == [(2, 0)]


def test_a_gone_processs_mappings_are_reported_whole_then_given_back():
    """A watch left running keeps nothing of processes long gone: the
    read that finds a process gone reports its increments and keeps its
    hash entry; the next (no program of it can still be adding) reports
    what came meanwhile, deletes the entry and forgets the key, and its
    slot is emptied and forgotten the same way.  A later process with the
    same key counts from zero."""
    from pmemtrace.live import bcc_backend
    from pmemtrace.live.slots import EMPTY, LIVE, SLOT, SlotTable

    KEY = (9, 0x10300001, 5, 0x7F0000000000, 0x7F0000400000)
    SLOTKEY = (9, 0x10300001, 6, 0x7F1000000000, 0x7F1000200000)
    gone = set()
    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.aggregate, b._counted, b._kinds_seen, b._comms, b._dying = True, {}, {}, {}, set()
    b._alive = lambda tgid: tgid not in gone
    kb = struct.pack("<IIQQQ", *KEY)
    zero = struct.pack("<5Q", 0, 0, 0, 0, 0)
    counts = _FakeMap({kb: struct.pack("<5Q", 2, 0, 0, 2, 0) + zero}, value_size=40)
    comm = _FakeMap({struct.pack("<I", 9): b"touch\0" + b"\0" * 10}, ncpus=1, value_size=16)
    b.maps = {"counts": counts, "comms": comm, "kinds": _FakeMap({})}
    buf = bytearray(SLOT.pack(*SLOTKEY, 1, 0, 0, 1, 0, LIVE, 0))
    b.slots = SlotTable(buf, alive=b._alive)
    rows, _ = b.counts()
    assert sorted((r.ino, r.pmd) for r in rows) == [(5, 2), (6, 1)]
    gone.add(9)
    # a fault of its last moments, counted after the read before
    counts.values[kb] = struct.pack("<5Q", 3, 0, 0, 3, 0) + zero
    rows, _ = b.counts()
    assert [(r.ino, r.pmd) for r in rows] == [(5, 1)]
    assert kb in counts.values and b._dying == {KEY}
    # one interval on: a count a program made meanwhile is still reported
    counts.values[kb] = struct.pack("<5Q", 4, 0, 0, 3, 0) + zero
    struct.pack_into("<Q", buf, 32, 2)
    rows, _ = b.counts()
    assert sorted((r.ino, r.pmd) for r in rows) == [(5, 1), (6, 1)]
    assert counts.values == {} and struct.unpack_from("<I", buf, 72)[0] == EMPTY
    assert b._counted == {} and b.slots.retired == {} and b._comms == {} and b._dying == set()
    rows, _ = b.counts()
    assert rows == []
    # the pid reused for the same mapping: its counts start from zero
    gone.clear()
    counts.values[kb] = struct.pack("<5Q", 1, 0, 0, 1, 0) + zero
    rows, _ = b.counts()
    assert [(r.ino, r.pmd, r.insert_pmd) for r in rows] == [(5, 1, 1)]


def test_in_a_containers_pid_namespace_nothing_is_given_back(tmp_path):
    """The programs count under the kernel's pids; in a container's pid
    namespace a live process can look gone, and deleting its entry while
    it counts would lose counts: there the entries stay."""
    from pmemtrace.live import bcc_backend
    from pmemtrace.live.tracefs import in_initial_pid_namespace

    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "status").write_text("Name:\tpython3\nNSpid:\t4242\t17\n")
    assert not in_initial_pid_namespace(str(tmp_path))
    (tmp_path / "self" / "status").write_text("Name:\tpython3\nNSpid:\t4242\n")
    assert in_initial_pid_namespace(str(tmp_path))
    assert not in_initial_pid_namespace(str(tmp_path / "none"))

    KEY = (9, 0x10300001, 5, 0x7F0000000000, 0x7F0000400000)
    b = bcc_backend.BccBackend.__new__(bcc_backend.BccBackend)
    b.aggregate, b._counted, b._kinds_seen, b._comms, b._dying = True, {}, {}, {}, set()
    b._alive, b._give_back, b.slots = (lambda tgid: False), False, None
    kb = struct.pack("<IIQQQ", *KEY)
    counts = _FakeMap({kb: struct.pack("<5Q", 2, 0, 0, 2, 0) + bytes(40)}, value_size=40)
    b.maps = {"counts": counts, "comms": _FakeMap({}, ncpus=1, value_size=16), "kinds": _FakeMap({})}
    for _ in range(3):
        b.counts()
    assert kb in counts.values and KEY in b._counted and b._dying == set()
