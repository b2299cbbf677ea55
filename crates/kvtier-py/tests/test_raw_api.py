"""The raw `kvtier.Store` API with numpy and bytearray buffers."""

import os
import subprocess
import sys
import time

import numpy as np
import pytest

import kvtier

BB = 4096


def keys(n, tag=b"k"):
    return [tag + i.to_bytes(8, "little") for i in range(n)]


def wait(store, jobs, timeout=60.0):
    want, got = set(jobs), {}
    deadline = time.monotonic() + timeout
    while want - got.keys():
        for job, ok, ok_keys, nbytes, secs in store.poll_finished():
            got[job] = (ok, ok_keys, nbytes)
        assert time.monotonic() < deadline, f"jobs {want - got.keys()} did not finish"
        time.sleep(0.001)
    return got


def open_store(tmp_path, cfg, ns="m"):
    return kvtier.Store(BB, path=str(tmp_path / "g3"), config=cfg, namespace=ns)


@pytest.mark.parametrize("n", [1, 2, 63, 64, 65, 500, 1024])
def test_round_trip_is_byte_exact(tmp_path, small_config, n):
    rng = np.random.default_rng(n)
    src = rng.integers(0, 256, size=(n, BB), dtype=np.uint8)
    with open_store(tmp_path, small_config) as s:
        s.attach(src)
        k = keys(n)
        assert s.lookup(k) == 0
        s.submit_store(1, k, np.arange(n, dtype=np.int64))
        assert wait(s, [1])[1][0]
        assert s.lookup(k) == n
        s.detach()
        dst = np.zeros_like(src)
        s.attach(dst)
        # Reverse order: chunk ids are honoured.
        s.submit_load(2, k[::-1], np.arange(n)[::-1].copy())
        ok, ok_keys, nbytes = wait(s, [2])[2]
        assert ok and all(ok_keys) and nbytes == n * BB
        np.testing.assert_array_equal(dst, src)


def test_bytearray_and_list_chunk_ids(tmp_path, small_config):
    buf = bytearray(os.urandom(4 * BB))
    want = bytes(buf)
    with open_store(tmp_path, small_config) as s:
        s.attach(buf)
        s.submit_store(1, keys(4), [0, 1, 2, 3])
        assert wait(s, [1])[1][0]
        buf[:] = bytes(len(buf))
        s.submit_load(2, keys(4), [0, 1, 2, 3])
        assert wait(s, [2])[2][0]
        assert bytes(buf) == want
        # str keys (SGLang page hashes) work too.
        s.submit_store(3, ["a", "b"], [0, 1])
        assert wait(s, [3])[3][0]
        assert s.lookup(["a", "b", "c"]) == 2 and s.contains("a") and not s.contains("c")


def test_a_block_corrupted_on_disk_fails_and_leaves_the_buffer(tmp_path, small_config):
    n = 16
    src = np.random.default_rng(1).integers(0, 256, size=(n, BB), dtype=np.uint8)
    with open_store(tmp_path, small_config) as s:
        s.attach(src)
        s.submit_store(1, keys(n), np.arange(n))
        assert wait(s, [1])[1][0]
    data = tmp_path / "g3" / "g3.blocks"
    raw = bytearray(data.read_bytes())
    for i in range(0, len(raw), 512):
        raw[i] ^= 0xFF
    data.write_bytes(bytes(raw))
    with open_store(tmp_path, small_config) as s:
        assert s.lookup(keys(n)) == n  # the index survived; the bytes did not
        dst = np.full((n, BB), 7, dtype=np.uint8)
        s.attach(dst)
        s.submit_load(2, keys(n), np.arange(n))
        ok, ok_keys, nbytes = wait(s, [2])[2]
        assert not ok and not ok_keys[0]
        assert (dst == 7).all(), "a failed load wrote into the buffer"


def test_a_missing_key_fails_only_from_there(tmp_path, small_config):
    src = np.arange(4 * BB, dtype=np.uint8).reshape(4, BB)
    with open_store(tmp_path, small_config) as s:
        s.attach(src)
        s.submit_store(1, keys(2), [0, 1])
        wait(s, [1])
        s.detach()
        dst = np.full_like(src, 9)
        s.attach(dst)
        s.submit_load(2, keys(4), [0, 1, 2, 3])
        ok, ok_keys, _ = wait(s, [2])[2]
        assert (ok, ok_keys) == (False, [True, True, False, False])
        np.testing.assert_array_equal(dst[:2], src[:2])
        assert (dst[2:] == 9).all()


def test_drain_with_jobs_in_flight(tmp_path, small_config):
    n, jobs = 256, 8
    src = np.random.default_rng(2).integers(0, 256, size=(n, BB), dtype=np.uint8)
    with open_store(tmp_path, small_config) as s:
        s.attach(src)
        for j in range(jobs):
            s.submit_store(j, keys(n // jobs, bytes([j])), np.arange(j * 32, j * 32 + 32))
        s.drain()
        assert s.in_flight == 0
        done = s.poll_finished()
        assert sorted(r[0] for r in done) == list(range(jobs))
        assert all(r[1] for r in done)


def test_close_and_reopen_finds_every_acknowledged_block(tmp_path, small_config):
    n = 700
    src = np.random.default_rng(3).integers(0, 256, size=(n, BB), dtype=np.uint8)
    s = open_store(tmp_path, small_config)
    s.attach(src)
    for j in range(7):
        s.submit_store(j, keys(100, bytes([j])), np.arange(j * 100, j * 100 + 100))
    acked = wait(s, range(7))
    assert all(v[0] for v in acked.values())
    s.close()
    with pytest.raises(kvtier.ClosedError):
        s.lookup(keys(1))
    s.close()  # a second close does nothing
    with open_store(tmp_path, small_config) as s2:
        assert s2.recovery()["restored"] == n
        dst = np.zeros_like(src)
        s2.attach(dst)
        for j in range(7):
            assert s2.lookup(keys(100, bytes([j]))) == 100
            s2.submit_load(10 + j, keys(100, bytes([j])), np.arange(j * 100, j * 100 + 100))
        assert all(v[0] for v in wait(s2, range(10, 17)).values())
        np.testing.assert_array_equal(dst, src)


def test_two_processes_on_one_directory_are_refused(tmp_path, small_config):
    with open_store(tmp_path, small_config):
        code = (
            "import kvtier, sys\n"
            "try:\n"
            f"    kvtier.Store({BB}, path={str(tmp_path / 'g3')!r}, config={small_config!r}, namespace='m')\n"
            "except kvtier.DirectoryInUseError as e:\n"
            "    print('REFUSED', e); sys.exit(3)\n"
        )
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
        assert r.returncode == 3, r.stdout + r.stderr
        assert "REFUSED" in r.stdout and "g3" in r.stdout


def test_bad_input_raises_typed_errors(tmp_path, small_config):
    with pytest.raises(kvtier.ConfigError, match="nope.toml"):
        kvtier.Store(BB, path=str(tmp_path / "x"), config=str(tmp_path / "nope.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[g2\nbytes = 3")
    with pytest.raises(kvtier.ConfigError, match="bad.toml"):
        kvtier.Store(BB, path=str(tmp_path / "x"), config=str(bad))
    with pytest.raises(kvtier.BadBufferError):
        kvtier.Store(3, path=str(tmp_path / "y"), config=small_config)
    with open_store(tmp_path, small_config) as s:
        with pytest.raises(kvtier.BadBufferError, match="attach"):
            s.submit_store(1, keys(1), [0])
        with pytest.raises(kvtier.BadBufferError, match="read-only"):
            s.attach(b"x" * BB)
        with pytest.raises(kvtier.BadBufferError):
            s.attach(np.zeros((4, BB), dtype=np.uint8)[:, ::2])
        with pytest.raises(kvtier.BadBufferError):
            s.attach(42)
        buf = np.zeros(2 * BB + 8, dtype=np.uint8)
        s.attach(buf)
        with pytest.raises(kvtier.BadBufferError, match="whole number"):
            s.submit_store(1, keys(1), [0])
        s.detach()
        raw = np.zeros(3 * BB + 8, dtype=np.uint8)
        s.attach(raw[1 : 1 + 2 * BB])
        with pytest.raises(kvtier.BadBufferError, match="aligned"):
            s.submit_store(1, keys(1), [0])
        s.detach()
        buf = np.zeros((2, BB), dtype=np.uint8)
        s.attach(buf)
        with pytest.raises(kvtier.ChunkRangeError, match="chunk id 2"):
            s.submit_store(1, keys(1), [2])
        with pytest.raises(kvtier.ChunkRangeError):
            s.submit_load(1, keys(1), [-1])
        with pytest.raises(kvtier.BadInputError, match="2 keys but 1"):
            s.submit_store(1, keys(2), [0])
        with pytest.raises(kvtier.BadInputError, match="key 1"):
            s.lookup([b"a", 5])
        with pytest.raises(kvtier.BadInputError):
            s.submit_store(1, keys(1), ["zero"])
        with pytest.raises(kvtier.ChunkRangeError, match="outside every attached"):
            s.submit_store_pages(1, keys(1), [12345], [BB])
        with pytest.raises(kvtier.BadBufferError):
            s.submit_store_pages(1, keys(1), [buf.ctypes.data], [BB - 1])
        # A duplicate job id while the first is in flight.
        big = np.zeros((1024, BB), dtype=np.uint8)
        s.detach()
        s.attach(big)
        s.submit_store(7, keys(1024, b"d"), np.arange(1024))
        try:
            s.submit_store(7, keys(1, b"e"), [0])
        except kvtier.DuplicateJobError as e:
            assert "7" in str(e)
        else:
            # The first job finished first: then its id is free again.
            assert any(r[0] == 7 for r in s.poll_finished()) or s.in_flight == 0
        s.drain()
        s.poll_finished()
    with pytest.raises(kvtier.ClosedError):
        s.submit_store(9, keys(1), [0])
    assert issubclass(kvtier.ClosedError, kvtier.KvtierError)


def test_pages_by_address_round_trip(tmp_path, small_config):
    # Two "layers" per page, as SGLang's layer-first host pool hands them out.
    n = 8
    pool = np.random.default_rng(4).integers(0, 256, size=(2, n, BB // 2), dtype=np.uint8)
    base = pool.ctypes.data
    ptrs = [p for i in range(n) for p in (base + i * BB // 2, base + (n + i) * BB // 2)]
    sizes = [BB // 2] * (2 * n)
    want = pool.copy()
    with open_store(tmp_path, small_config) as s:
        s.attach(pool)
        s.submit_store_pages(1, keys(n), ptrs, sizes)
        assert wait(s, [1])[1][0]
        pool[:] = 0
        s.submit_load_pages(2, keys(n), ptrs, sizes)
        assert wait(s, [2])[2][0]
        np.testing.assert_array_equal(pool, want)


def test_namespaces_separate_the_same_key(tmp_path, small_config):
    a = np.full((1, BB), 1, dtype=np.uint8)
    with kvtier.Store(BB, config=small_config, namespace="model-a") as s:
        s.attach(a)
        s.submit_store(1, [b"same"], [0])
        wait(s, [1])
        assert s.lookup([b"same"]) == 1
    with kvtier.Store(BB, config=small_config, namespace="model-b") as s:
        assert s.lookup([b"same"]) == 0


def test_events_name_the_engine_keys(tmp_path, small_config):
    src = np.zeros((3, BB), dtype=np.uint8)
    with open_store(tmp_path, small_config) as s:
        s.enable_events()
        s.attach(src)
        s.submit_store(1, keys(3), [0, 1, 2])
        wait(s, [1])
        assert s.take_events() == [("stored", keys(3))]
        assert s.take_events() == []
