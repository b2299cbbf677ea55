"""Contract test against vLLM 0.33: its own SecondaryTierFactory builds
KvtierTier from a `secondary_tiers` entry, and a store -> lookup -> load round
trip through a primary-tier memoryview is byte-exact."""

import types

import numpy as np
import pytest

pytest.importorskip("vllm")
from vllm.v1.kv_offload.base import LookupResult, Medium, ReqContext, make_offload_key  # noqa: E402
from vllm.v1.kv_offload.tiering.base import TransferJob  # noqa: E402
from vllm.v1.kv_offload.tiering.factory import SecondaryTierFactory  # noqa: E402

from kvtier.vllm import KvtierTier, wait_finished  # noqa: E402

CHUNKS, BB = 64, 8192


def spec():
    """The parts of an OffloadingSpec a secondary tier reads."""
    cfg = types.SimpleNamespace(
        model=types.SimpleNamespace(name="tiny-llama", dtype="bfloat16"),
        cache=types.SimpleNamespace(tokens_per_hash=16, blocks_per_chunk=1),
        parallel=types.SimpleNamespace(tp_size=1, pp_size=1),
        kv_cache_layout="NHD",
    )
    return types.SimpleNamespace(config=cfg, kv_events_config=types.SimpleNamespace(enable_kv_cache_events=True))


def tier_cfg(tmp_path, cfg=None, **extra):
    d = {"type": "KvtierTier", "module_path": "kvtier.vllm", "path": str(tmp_path / "kvtier")}
    if cfg:
        d["config"] = cfg
    d.update(extra)
    return d


def keys(n, tag=0):
    return [make_offload_key(bytes([tag]) * 28 + i.to_bytes(4, "big"), 0) for i in range(n)]


def job(job_id, ks, chunk_ids):
    return TransferJob(job_id=job_id, keys=ks, chunk_ids=np.asarray(chunk_ids, dtype=np.int64),
                       is_promotion=False, req_context=ReqContext(req_id="r"))


def test_factory_builds_the_tier_and_a_round_trip_is_byte_exact(tmp_path, small_config):
    primary = np.random.default_rng(0).integers(0, 256, size=(CHUNKS, BB), dtype=np.uint8)
    view = memoryview(primary)
    tier = SecondaryTierFactory.create_secondary_tier(tier_cfg(tmp_path, small_config), view, spec())
    assert isinstance(tier, KvtierTier) and tier.medium == Medium.STORAGE
    assert tier.block_size_bytes == BB
    ctx = ReqContext(req_id="r")
    ks = keys(16)
    assert [tier.lookup(k, ctx) for k in ks[:2]] == [LookupResult.MISS] * 2
    tier.submit_store(job(1, ks, range(16)))
    (r,) = wait_finished(tier, [1])
    assert r.success and r.transfer_bytes == 16 * BB
    assert all(tier.lookup(k, ctx) == LookupResult.HIT for k in ks)
    want = primary[:16].copy()
    primary[:] = 0
    tier.submit_load(job(2, ks, range(40, 56)))
    (r,) = wait_finished(tier, [2])
    assert r.success
    np.testing.assert_array_equal(primary[40:56], want)
    # A partial load names the keys that made it; the rest stay untouched.
    primary[:] = 5
    tier.submit_load(job(3, ks[:2] + keys(2, tag=9), [0, 1, 2, 3]))
    (r,) = wait_finished(tier, [3])
    assert not r.success and list(r.successful_keys) == ks[:2]
    assert (primary[2:4] == 5).all()
    tier.touch(ks, ctx)
    tier.drain_jobs()
    tier.shutdown()
    view.release()  # vLLM releases its view after shutdown: nothing may hold it


def test_a_restarted_tier_on_the_same_path_finds_the_blocks(tmp_path):
    # Built-in defaults (no config): sizes from configs/engine.toml.
    primary = np.random.default_rng(1).integers(0, 256, size=(CHUNKS, BB), dtype=np.uint8)
    tier = SecondaryTierFactory.create_secondary_tier(tier_cfg(tmp_path), memoryview(primary), spec())
    ks = keys(8, tag=3)
    tier.submit_store(job(1, ks, range(8)))
    assert wait_finished(tier, [1])[0].success
    tier.shutdown()
    fresh = np.zeros_like(primary)
    tier = SecondaryTierFactory.create_secondary_tier(tier_cfg(tmp_path), memoryview(fresh), spec())
    assert all(tier.lookup(k, ReqContext(req_id="x")) == LookupResult.HIT for k in ks)
    tier.submit_load(job(2, ks, range(8)))
    assert wait_finished(tier, [2])[0].success
    np.testing.assert_array_equal(fresh[:8], primary[:8])
    tier.shutdown()


def test_events_are_vllm_offloading_events(tmp_path, small_config):
    primary = np.zeros((CHUNKS, BB), dtype=np.uint8)
    tier = SecondaryTierFactory.create_secondary_tier(
        tier_cfg(tmp_path, small_config, enable_kv_events=True), memoryview(primary), spec())
    ks = keys(4, tag=7)
    tier.submit_store(job(1, ks, range(4)))
    wait_finished(tier, [1])
    (ev,) = list(tier.take_events())
    assert ev.keys == ks and ev.medium == Medium.STORAGE and ev.removed is False
    assert list(tier.take_events()) == []
    tier.shutdown()


def test_missing_path_is_a_clear_error(tmp_path):
    primary = np.zeros((4, BB), dtype=np.uint8)
    cfg = tier_cfg(tmp_path)
    del cfg["path"]
    with pytest.raises(ValueError, match="path"):
        SecondaryTierFactory.create_secondary_tier(cfg, memoryview(primary), spec())
