"""The query cache: never an output that was not computed for this run, resumable at any kill.

Full disks, kills (SIGKILL, SIGINT, SIGTERM) mid-query and mid-write, concurrent processes,
damaged or crafted folders, edited models, custom value functions, one cache root for many
feature sets (and the folders of the layout before roots), and the timed chunks that store
finished masks early.
"""

import errno
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from test_query import Counting, examples, heads_query, random_masks

from compattr._testing import tiny_llama
from compattr.cache import CacheCorruptError, CacheMismatchError, QueryCache
from compattr.features import AttentionHeads
from compattr.features.base import digest
from compattr.query import Query, cache_folder, model_fingerprint, run_queries
from compattr.query.runner import _ChunkSizer
from compattr.values import ClassLogit, Value, class_logits

REPO = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
RECORD = 2 + 8 + 4  # bytes of one record for n = 12: packed mask, float64 output, CRC32


class Ids:
    """``n`` features; a mask's output is its binary number, so that any mix-up shows.
    Records the masks of every ``evaluate`` call; raises KeyboardInterrupt at call ``fail_at``."""

    def __init__(self, n=12, fail_at=None):
        self.n, self.names, self.groups = n, [f"x{i}" for i in range(n)], np.zeros(n, int)
        self.fail_at, self.calls = fail_at, []

    def fingerprint(self):
        return f"ids-{self.n}"

    def evaluate(self, masks):
        if len(self.calls) + 1 == self.fail_at:
            raise KeyboardInterrupt("killed")
        self.calls.append(np.array(masks))
        return ids(masks)

    @property
    def evaluated(self) -> np.ndarray:
        return np.vstack(self.calls) if self.calls else np.zeros((0, self.n), bool)


def ids(masks):
    return masks @ 2.0 ** np.arange(masks.shape[1])


def distinct_masks(m, n=12, seed=0):
    X = np.unique(random_masks(3 * m, n, seed=seed), axis=0)[:m]
    return np.random.default_rng(seed).permutation(X)


def open_cache(folder, n=12):
    return QueryCache(folder, n, {"features": Ids(n).fingerprint()})


def folder_of(root, features=None):
    """The folder under the cache root ``root`` that holds the outputs of ``features`` (:class:`Ids`)."""
    return root / digest((features or Ids()).fingerprint())


def record(mask, output):
    """One record of ``records.bin``, as the format says: packed mask, <f8 output, <u4 CRC32."""
    body = np.packbits(mask).tobytes() + struct.pack("<d", output)
    return body + struct.pack("<I", zlib.crc32(body))


@pytest.fixture
def clock(monkeypatch):
    """The chunk sizer's clock, moved only by the test: [now] (starts at 0, frozen)."""
    now = [0.0]
    monkeypatch.setattr(_ChunkSizer, "clock", staticmethod(lambda: now[0]))
    return now


# --------------------------------------------------------------------------- resume
def test_killed_and_resumed_run_equals_an_uninterrupted_one(tmp_path, clock):
    X = random_masks(30, heads_query().n, seed=1)
    uninterrupted = run_queries(heads_query(), X, chunk_size=4, progress=False)
    first = Counting(heads_query(), fail_after=11)
    with pytest.raises(KeyboardInterrupt):
        run_queries(first, X, cache_dir=tmp_path, chunk_size=4, progress=False)
    assert len(first.rows) == 11  # calls of 1, 2, 4, 4 masks, all stored
    second = Counting(heads_query())
    resumed = run_queries(second, X, cache_dir=tmp_path, chunk_size=4, progress=False)
    assert np.allclose(resumed, uninterrupted, atol=1e-6)
    assert not set(first.rows) & set(second.rows)
    assert len(second.rows) == 30 - 11
    third = Counting(heads_query())
    assert np.array_equal(run_queries(third, X, cache_dir=tmp_path, progress=False), resumed)
    assert third.rows == []


KILL_MASKS = distinct_masks(50)

_KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys, time
    sys.path.insert(0, sys.argv[1])
    from test_cache import KILL_MASKS, RECORD, Ids
    from compattr.query import run_queries

    folder, where, sig, kill_at = sys.argv[2], sys.argv[3], getattr(signal, sys.argv[4]), int(sys.argv[5])
    signal.signal(signal.SIGINT, signal.default_int_handler)  # as at a terminal, even if started with SIGINT ignored

    class Dying(Ids):
        def evaluate(self, masks):
            if where == "evaluate" and len(self.calls) + 1 == kill_at:
                die()
            return super().evaluate(masks)

    def die(written=0):
        finished = sum(len(m) for m in features.calls[: kill_at - 1])
        print("finished", finished, "written", written, flush=True)
        os.kill(os.getpid(), sig)
        time.sleep(60)

    write = os.pwrite

    def dying_write(fd, data, offset):  # the records of call kill_at: some whole, one torn
        if where == "write" and len(features.calls) == kill_at:
            whole = len(data) // RECORD // 2
            write(fd, data[: whole * RECORD + 5], offset)
            die(whole)
        return write(fd, data, offset)

    os.pwrite = dying_write
    features = Dying()
    run_queries(features, KILL_MASKS, cache_dir=folder, chunk_size=5, progress=False)
    print("not killed")
    """
)


@pytest.mark.slow  # runs subprocesses
@pytest.mark.parametrize(
    "where, sig",
    [
        ("evaluate", "SIGKILL"),
        ("evaluate", "SIGINT"),
        ("evaluate", "SIGTERM"),
        ("write", "SIGKILL"),
        ("write", "SIGINT"),
    ],
)
def test_a_killed_run_resumes_without_repeating_finished_masks(tmp_path, where, sig):
    script, folder = tmp_path / "run.py", tmp_path / "cache"
    script.write_text(_KILLED_RUN)
    killed = subprocess.run(
        [sys.executable, str(script), str(TESTS), str(folder), where, sig, "4"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert killed.returncode == -getattr(signal, sig), killed.stdout + killed.stderr[-2000:]
    finished, written = (int(v) for v in killed.stdout.split()[1::2])
    torn = (where, sig) == ("write", "SIGKILL")  # SIGINT unwinds: the torn write is cut off
    assert finished >= 3
    resumed = Ids()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        y = run_queries(resumed, KILL_MASKS, cache_dir=folder, progress=False)
    assert len([w for w in caught if "partial record" in str(w.message)]) == torn
    np.testing.assert_array_equal(y, ids(KILL_MASKS))
    assert len(resumed.evaluated) == len(KILL_MASKS) - finished - (written if torn else 0)
    assert len(np.unique(resumed.evaluated, axis=0)) == len(resumed.evaluated)


# --------------------------------------------------------------------------- full disk
class _FullDisk:
    """``os.pwrite`` on a disk that is full from write call ``full_at`` on: a write then only
    fills the file's last allocated ``block`` (short write), and fails with ENOSPC when that
    has no room left, as a filesystem does."""

    def __init__(self, full_at, block):
        self.full_at, self.block, self.calls, self.write = full_at, block, 0, os.pwrite

    def __call__(self, fd, data, offset):
        self.calls += 1
        if self.calls >= self.full_at:
            allocated = -(-os.fstat(fd).st_size // self.block) * self.block
            if allocated <= offset:
                raise OSError(errno.ENOSPC, "No space left on device")
            data = bytes(data)[: allocated - offset]
        return self.write(fd, data, offset)


@pytest.mark.parametrize("block", [48, RECORD], ids=["short-write", "ENOSPC"])
def test_a_full_disk_marks_nothing_stored_and_the_next_run_recomputes(tmp_path, monkeypatch, clock, block):
    X = distinct_masks(40)
    # write 1: the manifest; 2, 3, 4: the outputs of calls of 1, 2, 4 masks; 5: 8 masks, disk full
    with monkeypatch.context() as patched, pytest.raises(OSError) as error:
        patched.setattr(os, "pwrite", _FullDisk(full_at=5, block=block))
        run_queries(Ids(), X, cache_dir=tmp_path, chunk_size=8, progress=False)
    # the disk is freed
    later = Ids()
    np.testing.assert_array_equal(run_queries(later, X, cache_dir=tmp_path, progress=False), ids(X))
    assert len(later.evaluated) == 40 - 7
    assert f"could not write {folder_of(tmp_path) / 'records.bin'}: No space left on device" in str(error.value)


# --------------------------------------------------------------------------- concurrency
_SEEDED_RUNS = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from test_cache import Ids, ids
    from compattr.query import run_queries

    folder, seed, ready = sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
    (ready / str(seed)).touch()
    while len(list(ready.iterdir())) < 2:  # start together
        time.sleep(0.002)
    features, wrong = Ids(n=10), 0
    for r in range(25):
        X = np.random.default_rng([seed, r]).random((40, 10)) < 0.5
        wrong += int((run_queries(features, X, cache_dir=folder, chunk_size=4, progress=False) != ids(X)).sum())
    print("wrong", wrong)
    """
)


@pytest.mark.slow  # runs subprocesses
def test_two_processes_with_other_seeds_share_one_folder_at_once(tmp_path):
    script, folder, ready = tmp_path / "run.py", tmp_path / "cache", tmp_path / "ready"
    script.write_text(_SEEDED_RUNS)
    ready.mkdir()
    runs = [
        subprocess.Popen(
            [sys.executable, str(script), str(TESTS), str(folder), str(seed), str(ready)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=REPO,
        )
        for seed in (1, 2)
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (out, err) in zip(runs, outputs):
        assert run.returncode == 0 and out.split() == ["wrong", "0"], out + err[-2000:]
    every = np.unique(
        np.vstack([np.random.default_rng([seed, r]).random((40, 10)) < 0.5 for seed in (1, 2) for r in range(25)]),
        axis=0,
    )
    assert [p.name for p in folder.iterdir()] == [folder_of(folder, Ids(10)).name]  # one cache under the root
    with QueryCache(folder_of(folder, Ids(10)), 10, {"features": Ids(10).fingerprint()}) as cache:
        assert len(cache) == len(every)  # nothing lost
        np.testing.assert_array_equal(cache.lookup(every), ids(every))  # nothing mixed
    assert (folder_of(folder, Ids(10)) / "records.bin").stat().st_size == len(every) * RECORD  # nothing twice


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_DISTRIBUTED_RUN = textwrap.dedent(
    """
    import os, sys
    import numpy as np, torch
    torch.set_num_threads(1)
    from compattr._testing import tiny_llama
    from compattr.features import AttentionHeads
    from compattr.query import Query, run_queries
    from compattr.values import ClassLogit

    model = tiny_llama()
    inputs = torch.randint(6, 60, (3, 6), generator=torch.Generator().manual_seed(0))
    query = Query(model, AttentionHeads(model), ClassLogit(), inputs, batch_size=4)
    X = np.random.default_rng(1).random((30, query.n)) < 0.5
    seen = []
    evaluate = query.evaluate
    query.evaluate = lambda masks: seen.append(len(masks)) or evaluate(masks)
    y = run_queries(query, X, cache_dir=sys.argv[1], chunk_size=4, progress=False)
    rank = os.environ["RANK"]
    np.save(os.path.join(sys.argv[2], f"y{rank}.npy"), y)
    np.save(os.path.join(sys.argv[2], f"n{rank}.npy"), sum(seen))
    from accelerate import PartialState
    PartialState().destroy_process_group()  # a clean exit, as accelerate asks of every script
    """
)


@pytest.mark.slow
def test_two_processes_under_accelerate_launch_share_one_cache(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(_DISTRIBUTED_RUN)
    launch = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(_free_port()),
        str(script),
        str(tmp_path / "cache"),
        str(tmp_path),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(launch, capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    y0, y1 = np.load(tmp_path / "y0.npy"), np.load(tmp_path / "y1.npy")
    n0, n1 = int(np.load(tmp_path / "n0.npy")), int(np.load(tmp_path / "n1.npy"))
    assert np.array_equal(y0, y1) and n0 + n1 == 30 and min(n0, n1) >= 12
    model = tiny_llama()
    inputs = torch.randint(6, 60, (3, 6), generator=torch.Generator().manual_seed(0))
    query = Query(model, AttentionHeads(model), ClassLogit(), inputs, batch_size=4)
    X = np.random.default_rng(1).random((30, query.n)) < 0.5
    assert np.allclose(y0, query.evaluate(X), atol=1e-5)
    counting = Counting(query)
    assert np.array_equal(run_queries(counting, X, cache_dir=tmp_path / "cache", progress=False), y0)
    assert counting.rows == []


def test_two_caches_on_one_folder_read_the_first_output_stored(tmp_path):
    X = distinct_masks(6)
    with open_cache(tmp_path) as a, open_cache(tmp_path) as b:
        np.testing.assert_array_equal(a.store(X[:4], ids(X[:4])), ids(X[:4]))
        assert np.isnan(b.lookup(X[:4])).all()  # not read yet
        np.testing.assert_array_equal(b.store(X, ids(X) + 1), np.r_[ids(X[:4]), ids(X[4:]) + 1])
        assert len(a) == 4 and len(b) == 6
    with open_cache(tmp_path) as c:
        np.testing.assert_array_equal(c.lookup(X), np.r_[ids(X[:4]), ids(X[4:]) + 1])
        with pytest.raises(ValueError, match="finite outputs"):
            c.store(X[:1], [np.nan])


# --------------------------------------------------------------------------- damage
def stored_folder(root, m=6):
    """A cache root holding the outputs of ``m`` masks of :class:`Ids`; returns the masks and
    the cache folder under the root that holds them."""
    X = distinct_masks(m, seed=3)
    run_queries(Ids(), X, cache_dir=root, progress=False)
    assert (folder_of(root) / "manifest.json").is_file()
    return X, folder_of(root)


def test_a_partial_last_record_is_dropped_with_a_warning_and_the_run_resumes(tmp_path):
    X, folder = stored_folder(tmp_path)
    with open(folder / "records.bin", "ab") as file:
        file.write(record(X[0], 1.0)[: RECORD - 3])
    later = Ids()
    with pytest.warns(UserWarning, match="partial record at the end of .*records.bin"):
        y = run_queries(later, X, cache_dir=tmp_path, progress=False)
    np.testing.assert_array_equal(y, ids(X))
    assert later.calls == [] and (folder / "records.bin").stat().st_size == 6 * RECORD


@pytest.mark.parametrize(
    "damage, what",
    [
        (lambda raw, X: raw[:20] + bytes([raw[20] ^ 1]) + raw[21:], "record 1 of records.bin fails its checksum"),
        (lambda raw, X: raw[: RECORD + 3] + raw[RECORD + 4 :], "record 1 of records.bin fails its checksum"),
        (lambda raw, X: raw + record(X[2], -1.0), "records.bin stores one mask twice with different outputs"),
    ],
    ids=["bit-flip", "byte-lost-mid-file", "two-outputs"],
)
def test_damaged_records_are_refused_naming_the_folder(tmp_path, damage, what):
    X, folder = stored_folder(tmp_path)
    path = folder / "records.bin"
    path.write_bytes(damage(path.read_bytes(), X))
    with pytest.raises(CacheCorruptError, match=f"query cache at {re.escape(str(folder))} is damaged: {what}"):
        run_queries(Ids(), X, cache_dir=tmp_path, progress=False)


def test_records_that_shrink_while_in_use_are_refused(tmp_path):
    X, folder = stored_folder(tmp_path)
    with open_cache(folder) as cache:
        os.truncate(folder / "records.bin", 5 * RECORD)
        with pytest.raises(CacheCorruptError, match=f"records.bin shrank from {6 * RECORD} to {5 * RECORD} bytes"):
            cache.store(X[:1], ids(X[:1]))


@pytest.mark.parametrize(
    "text",
    [
        b"",
        b'{"format": "compattr.query-cache", "vers',
        b"\xff\xfe",
        b"[1, 2]",
        b'{"format": "compattr.query-cache", "version": 2}',
    ],
    ids=["empty", "cut", "not-utf8", "not-an-object", "no-fingerprint"],
)
def test_an_unreadable_manifest_is_refused_naming_the_folder(tmp_path, text):
    X, folder = stored_folder(tmp_path)
    (folder / "manifest.json").write_bytes(text)
    with pytest.raises(CacheCorruptError, match=f"{re.escape(str(folder))} is damaged: manifest.json"):
        run_queries(Ids(), X, cache_dir=tmp_path, progress=False)


def test_records_without_a_manifest_are_refused(tmp_path):
    X, folder = stored_folder(tmp_path)
    (folder / "manifest.json").unlink()
    with pytest.raises(CacheCorruptError, match="records.bin holds records but manifest.json is missing"):
        run_queries(Ids(), X, cache_dir=tmp_path, progress=False)
    assert not (folder / "manifest.json").exists()
    (folder / "records.bin").write_bytes(b"")  # no records: a new cache
    np.testing.assert_array_equal(run_queries(Ids(), X, cache_dir=tmp_path, progress=False), ids(X))
    # the same damage in a folder that is itself a cache (the layout before roots) is refused too
    (tmp_path / "direct").mkdir()
    (tmp_path / "direct" / "records.bin").write_bytes(record(X[0], ids(X[:1])[0]))
    with pytest.raises(CacheCorruptError, match="records.bin holds records but manifest.json is missing"):
        run_queries(Ids(), X, cache_dir=tmp_path / "direct", progress=False)
    assert sorted(p.name for p in (tmp_path / "direct").iterdir()) == ["records.bin"]


@pytest.mark.parametrize("link", ["records.bin", "manifest.json", "manifest.tmp", "folder", "hard-link"])
def test_links_are_refused_and_nothing_is_written_outside(tmp_path, link):
    folder, outside = tmp_path / "cache", tmp_path / "outside"
    outside.mkdir()
    target = outside / "victim"
    target.write_bytes(b"keep")
    if link == "folder":
        folder.symlink_to(outside, target_is_directory=True)
    else:
        folder.mkdir()
        if link == "hard-link":
            os.link(target, folder / "records.bin")
        else:
            (folder / link).symlink_to(target)
    with pytest.raises(CacheCorruptError, match="link"):
        run_queries(Ids(), distinct_masks(3), cache_dir=folder, progress=False)
    assert target.read_bytes() == b"keep" and sorted(p.name for p in outside.iterdir()) == ["victim"]


def test_a_folder_of_the_older_format_is_refused(tmp_path):
    old = {"format": "compattr.query-cache", "version": 1, "n": 12, "fingerprint": {"features": "ids-12"}}
    (tmp_path / "manifest.json").write_text(json.dumps(old))
    for name in ("masks.bin", "outputs.bin", "done.bin"):
        (tmp_path / name).write_bytes(b"\x00" * 8)
    with pytest.raises(CacheMismatchError, match="older compattr format .*masks.bin.*Delete the folder"):
        run_queries(Ids(), distinct_masks(3), cache_dir=tmp_path, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["done.bin", "manifest.json", "masks.bin", "outputs.bin"]
    for name in ("masks.bin", "outputs.bin", "done.bin"):
        (tmp_path / name).unlink()
    with pytest.raises(
        CacheMismatchError, match="format version 1; this compattr reads version 2 only. Delete the folder"
    ):
        run_queries(Ids(), distinct_masks(3), cache_dir=tmp_path, progress=False)


# --------------------------------------------------------------------------- fingerprints
@pytest.mark.parametrize(
    "change, part",
    [
        (dict(seed=1), "model"),
        (dict(layers=[1, 2]), "features"),
        (dict(value=ClassLogit(log_odds=True)), "value"),
    ],
)
def test_a_folder_that_is_itself_a_cache_refuses_anything_else(tmp_path, change, part):
    X = random_masks(6, heads_query().n)
    run_queries(heads_query(), X, cache_dir=tmp_path, progress=False)
    (folder,) = tmp_path.iterdir()  # the one cache under the root
    fingerprint = heads_query().fingerprint()
    assert folder == cache_folder(tmp_path, fingerprint) == tmp_path / digest(fingerprint)
    other = heads_query(**change)
    with pytest.raises(CacheMismatchError, match=f"made for another {part}:"):
        run_queries(other, random_masks(6, other.n), cache_dir=folder, progress=False)
    assert [p.name for p in folder.iterdir()] == ["manifest.json", "records.bin"]  # nothing written
    # under the root, the other feature set gets a folder of its own
    y = run_queries(other, random_masks(6, other.n), cache_dir=tmp_path, progress=False)
    np.testing.assert_allclose(y, other.evaluate(random_masks(6, other.n)), atol=1e-6)
    assert sorted(tmp_path.iterdir()) == sorted([folder, cache_folder(tmp_path, other.fingerprint())])


def test_one_root_serves_every_feature_set_and_each_resumes(tmp_path):
    """Other models, heads, values and inputs, and a feature set of its own, share one root
    without a mismatch; a second run of each reads all its outputs back and queries nothing."""
    sets = [
        lambda: heads_query(),
        lambda: heads_query(seed=1),
        lambda: heads_query(layers=[1, 2]),
        lambda: heads_query(value=ClassLogit(log_odds=True)),
        lambda: Ids(),
    ]
    first = []
    for build in sets:
        counting = Counting(build())
        X = random_masks(7, counting.n, seed=2)
        first.append(run_queries(counting, X, cache_dir=tmp_path, progress=False))
        assert len(counting.rows) == 7
    assert len({p.name for p in tmp_path.iterdir()}) == len(sets)  # one folder each
    for build, y in zip(sets, first):
        again = Counting(build())
        X = random_masks(7, again.n, seed=2)
        np.testing.assert_array_equal(run_queries(again, X, cache_dir=tmp_path, progress=False), y)
        assert again.rows == []  # resumed: no query
        np.testing.assert_allclose(y, again.features.evaluate(X), atol=1e-6)  # its own outputs


def test_a_cache_of_the_layout_before_roots_resumes_in_place(tmp_path):
    """A folder that directly holds a cache (as ``cache_dir`` made it before roots) is used
    as that cache: its outputs are read, the missing ones stored there, no subfolder made."""
    query = heads_query()
    X = random_masks(8, query.n, seed=4)
    y = query.evaluate(X)
    with QueryCache(tmp_path, query.n, query.fingerprint()) as cache:
        cache.store(X[:5], y[:5])
    counting = Counting(heads_query())
    np.testing.assert_allclose(run_queries(counting, X, cache_dir=tmp_path, progress=False), y, atol=1e-6)
    assert len(counting.rows) == 3  # only the masks it did not hold
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "records.bin"]
    assert cache_folder(tmp_path, query.fingerprint()) == tmp_path
    with QueryCache(tmp_path, query.n, query.fingerprint()) as cache:
        assert len(cache) == 8
    with pytest.raises(CacheMismatchError, match="made for another model:"):
        run_queries(heads_query(seed=1), X, cache_dir=tmp_path, progress=False)


def test_cache_refuses_other_widths_and_unfingerprinted_features(tmp_path):
    QueryCache(tmp_path, 5, {"features": "a"})
    with pytest.raises(CacheMismatchError, match="n=5 features, this run has n=6"):
        QueryCache(tmp_path, 6, {"features": "a"})

    class Bare:
        n = 3

        def evaluate(self, masks):
            return masks.sum(1)

    with pytest.raises(TypeError, match="needs a feature set with a fingerprint"):
        run_queries(Bare(), np.ones((1, 3), bool), cache_dir=tmp_path / "b")


def _edit_weight(model):
    model.model.layers[1].mlp.down_proj.weight.data.view(-1)[1] += 1e-3  # not in any strided sample


def _edit_buffer(model):
    model.model.rotary_emb.inv_freq[-1] *= 1.001


@pytest.mark.parametrize("edit", [_edit_weight, _edit_buffer], ids=["weight", "buffer"])
def test_a_model_edited_in_place_is_noticed(tmp_path, edit):
    query = heads_query()
    X = random_masks(5, query.n)
    before = model_fingerprint(query.model)
    assert model_fingerprint(query.model) == before
    run_queries(query, X, cache_dir=tmp_path, progress=False)
    (folder,) = tmp_path.iterdir()
    edit(query.model)
    assert model_fingerprint(query.model) != before
    with pytest.raises(CacheMismatchError, match="made for another model:"):
        run_queries(query, X, cache_dir=folder, progress=False)
    # under the root, the edited model's outputs are computed in a folder of their own, not read
    counting = Counting(query)
    edited = run_queries(counting, X, cache_dir=tmp_path, progress=False)
    assert len(counting.rows) == 5 and len(list(tmp_path.iterdir())) == 2
    np.testing.assert_allclose(edited, query.evaluate(X), atol=1e-6)


def test_model_fingerprint_covers_the_configuration_but_not_where_it_was_loaded_from():
    """Two models of the same weights but another norm epsilon (a setting of the
    configuration alone) shared a fingerprint, and one read the other's cached outputs."""
    first, second = tiny_llama(), tiny_llama()
    assert model_fingerprint(first) == model_fingerprint(second)
    second.config.rms_norm_eps = 0.5
    assert model_fingerprint(first) != model_fingerprint(second)
    second.config.rms_norm_eps = first.config.rms_norm_eps
    second.config._name_or_path, second.config.transformers_version = "/elsewhere/llama", "0.0.1"
    assert model_fingerprint(first) == model_fingerprint(second)


def test_weights_written_through_data_are_not_cached_as_the_old_ones(tmp_path):
    """``p.data.mul_(0)`` leaves a tensor's version as it was: a reused Query kept the greedy
    answers and layer-replay captures of the weights before, and stored their outputs under
    the new weights' key, where every later run read them."""
    from compattr.values import LogLikelihood

    for value, layers in ((LogLikelihood(max_new_tokens=3), None), (ClassLogit(), [1])):
        query = heads_query(layers=layers, value=value)
        X = random_masks(4, query.n)
        query.evaluate(X)  # prepared (and captured) with the weights as loaded
        for layer in query.model.model.layers:
            layer.mlp.down_proj.weight.data.mul_(-3.0)  # a write that raises no version
        fresh = Query(query.model, query.features, value, query.inputs, batch_size=4).evaluate(X)
        assert not np.allclose(fresh, query.evaluate(X), atol=1e-4)  # the case: stale without a key read
        np.testing.assert_allclose(run_queries(query, X, cache_dir=tmp_path, progress=False), fresh, atol=1e-6)
        np.testing.assert_allclose(query.evaluate(X), fresh, atol=1e-6)  # forgotten for good


def test_model_fingerprint_tells_apart_modules_without_a_configuration():
    """A plain torch module has no configuration: two of the same weights but another
    activation, stride or temperature attribute shared a key and read each other's outputs."""

    class Scaled(torch.nn.Module):
        def __init__(self, activation, temperature=1.0):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv1d(1, 2, 3, padding=1)
            self.act, self.temperature = activation, temperature

        def forward(self, x):
            return self.act(self.conv(x)) / self.temperature

    base = model_fingerprint(Scaled(torch.nn.ReLU()))
    assert model_fingerprint(Scaled(torch.nn.ReLU())) == base
    assert model_fingerprint(Scaled(torch.nn.Tanh())) != base
    assert model_fingerprint(Scaled(torch.nn.ReLU(), temperature=4.0)) != base
    strided = Scaled(torch.nn.ReLU())
    strided.conv.stride = (2,)
    assert model_fingerprint(strided) != base
    assert model_fingerprint(Scaled(torch.nn.ReLU(), temperature=np.float32(4.0))) != base  # a NumPy number
    # an activation held as a function, not a module
    assert model_fingerprint(Scaled(torch.tanh)) != model_fingerprint(Scaled(torch.relu))


def test_model_fingerprint_covers_the_generation_end_tokens():
    """A greedy answer ends at the generation configuration's end tokens too (an instruction
    model's end of turn): changing them changed the answers scored, not the key."""
    model = tiny_llama()
    before = model_fingerprint(model)
    model.generation_config.eos_token_id = 13
    assert model_fingerprint(model) != before


def test_model_fingerprint_covers_every_dtype():
    model = tiny_llama()
    fingerprints = {model_fingerprint(model.to(dtype)) for dtype in (torch.float32, torch.bfloat16, torch.float16)}
    assert len(fingerprints) == 3


class TopLogit(Value):
    """A custom value function without ``__repr__``: scaled logit of token 0."""

    def __init__(self, scale):
        self.scale = scale

    def prepare(self, model, inputs, batch_size):
        return inputs, torch.zeros(len(inputs))

    def score(self, model, inputs, targets):
        return self.scale * class_logits(model, inputs)[:, 0]


_VALUE_FINGERPRINT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, sys.argv[1])
    from test_cache import TopLogit
    print(TopLogit(2.0).fingerprint())
    """
)


@pytest.mark.slow  # runs subprocesses
def test_a_custom_value_without_repr_resumes_across_queries_and_processes(tmp_path):
    model = tiny_llama()
    query = lambda value: Counting(Query(model, AttentionHeads(model), value, examples(), batch_size=4))
    X = random_masks(6, 12)
    first = query(TopLogit(2.0))
    y = run_queries(first, X, cache_dir=tmp_path, progress=False)
    second = query(TopLogit(2.0))
    np.testing.assert_array_equal(run_queries(second, X, cache_dir=tmp_path, progress=False), y)
    assert len(first.rows) == 6 and second.rows == []
    with pytest.raises(CacheMismatchError, match="made for another value:"):
        run_queries(query(TopLogit(3.0)), X, cache_dir=cache_folder(tmp_path, first.fingerprint()), progress=False)
    script = tmp_path / "fp.py"
    script.write_text(_VALUE_FINGERPRINT)
    other = subprocess.run(
        [sys.executable, str(script), str(TESTS)], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert other.stdout.strip() == TopLogit(2.0).fingerprint(), other.stderr[-2000:]
    assert " at 0x" not in TopLogit(2.0).fingerprint() and ClassLogit().fingerprint() == repr(ClassLogit())


# --------------------------------------------------------------------------- chunks
class Slow(Ids):
    """:class:`Ids` whose calls take ``seconds`` per mask on the fake ``clock``."""

    def __init__(self, clock, seconds, **kwargs):
        super().__init__(**kwargs)
        self.clock, self.seconds = clock, seconds

    def evaluate(self, masks):
        out = super().evaluate(masks)
        self.clock[0] += self.seconds * len(masks)
        return out


def test_finished_masks_are_stored_long_before_a_full_chunk(tmp_path, clock):
    """Calls start at one mask and grow to about two seconds' worth (here 16 masks at 1/8 s
    each), far below chunk_size; every finished call is stored before the next starts."""
    X = distinct_masks(200)
    slow = Slow(clock, seconds=0.125, fail_at=8)
    with pytest.raises(KeyboardInterrupt):
        run_queries(slow, X, cache_dir=tmp_path, chunk_size=128, progress=False)
    sizes = [len(m) for m in slow.calls]
    assert sizes == [1, 2, 4, 8, 16, 16, 16]
    with open_cache(folder_of(tmp_path)) as cache:
        assert len(cache) == sum(sizes)
        np.testing.assert_array_equal(cache.lookup(slow.evaluated), ids(slow.evaluated))


def test_calls_shrink_when_masks_get_slower(clock):
    sizer, sizes = _ChunkSizer(maximum=64), []
    for seconds in [2.0**-7] * 8 + [1.0] * 3 + [0.25] * 3:  # per mask, exact in binary
        sizes.append(sizer.size())
        sizer.timed(Slow(clock, seconds, n=3).evaluate, np.zeros((sizes[-1], 3), bool))
    assert sizes == [1, 2, 4, 8, 16, 32, 64, 64, 64, 2, 2, 2, 4, 8]


def test_a_query_on_an_accelerator_gets_two_forward_passes_per_call(clock):
    """Each call holds two full batches at the current batch size, which grows between calls
    (as batch_size="auto" grows it), up to chunk_size."""

    class Growing(Ids):
        device = torch.device("meta")
        inputs = torch.zeros(4, 3)  # 4 examples: a batch of 16 rows holds 4 masks

        def __init__(self):
            super().__init__()
            self.batch_size, self.batches = 16, []

        def evaluate(self, masks):
            self.batches.append(self.batch_size)
            self.batch_size = min(2 * self.batch_size, 256)
            return super().evaluate(masks)

    features = Growing()
    X = distinct_masks(600)
    np.testing.assert_array_equal(run_queries(features, X, chunk_size=100, progress=False), ids(X))
    sizes = [len(m) for m in features.calls]
    assert sizes[:6] == [8, 16, 32, 64, 100, 100]
    assert all(s >= min(100, 2 * b // 4) for s, b in zip(sizes[:-1], features.batches))


def test_offloaded_weights_are_fingerprinted_from_their_offload_hook():
    """Under accelerate's offload the parameters sit on the meta device and their values in
    the hooks: two checkpoints of one architecture had one fingerprint, and the cache served
    one's outputs to the other."""
    accelerate = pytest.importorskip("accelerate")
    from compattr._testing import tiny_llama

    a, b = tiny_llama(layers=2, seed=0), tiny_llama(layers=2, seed=1)
    on_cpu = model_fingerprint(a), model_fingerprint(b)
    for model in (a, b):
        accelerate.cpu_offload(model, execution_device=torch.device("cpu"))
    assert next(a.parameters()).device.type == "meta"
    assert (model_fingerprint(a), model_fingerprint(b)) == on_cpu  # the same weights, wherever they are
    bare = tiny_llama(layers=2, seed=0).to("meta")  # no hook holds its values
    with pytest.raises(ValueError, match="no offload hook holds its values"):
        model_fingerprint(bare)
