"""Contract test against SGLang 0.5.23: its own StorageBackendFactory builds
KvtierStore from the `dynamic` backend config, and pages of SGLang's real
MHA host pool (`MHATokenToKVPoolHost`, on CPU, built from a CPU
`MHATokenToKVPool`'s buffer info as SGLang's host-pool assembler does)
round-trip byte-exact in every layout its `get_page_buffer_meta` serves.

Both of the cache controller's paths are covered: by address
(`batch_get_v1`/`batch_set_v1`, with `interface_v1` in the extra config)
and by flat page tensor (`batch_get`/`batch_set` with the pool's
`get_data_page`, `get_dummy_flat_data_page` and `set_from_flat_data_page`),
and a page stored through one loads through the other."""

import pytest

torch = pytest.importorskip("torch")
factory = pytest.importorskip("sglang.srt.mem_cache.storage.backend_factory")
from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig  # noqa: E402
from sglang.srt.mem_cache.memory_pool import MHATokenToKVPool  # noqa: E402
from sglang.srt.mem_cache.pool_host.base import host_memory_budget_scope  # noqa: E402
from sglang.srt.mem_cache.pool_host.mha import (  # noqa: E402
    MHATokenToKVPoolHost,
    get_mha_host_pool_cls,
)

import kvtier  # noqa: E402
from kvtier.sglang import KvtierStore  # noqa: E402

#: Every layout MHATokenToKVPoolHost.get_page_buffer_meta answers for.
LAYOUTS = ["layer_first", "page_first", "page_first_direct", "page_head"]
PAGE = 4
PAGES = 5  # pages stored per test


def host_pool(layout, layers=3, heads=2, head_dim=16, seed=0):
    """SGLang's MHA host pool on CPU, filled with random bit patterns."""
    device = MHATokenToKVPool(
        64, PAGE, torch.bfloat16, heads, head_dim, layers, "cpu", False,
        start_layer=0, end_layer=layers, enable_alt_stream=False,
    )
    info = device.get_device_pool_infos()[0].buffer_info
    cls = get_mha_host_pool_cls(info)
    assert cls is MHATokenToKVPoolHost
    # The pool checks its size against the machine's free memory less a
    # reserve of 10 GiB; a budget of its own keeps this test independent
    # of what else runs (the pool is a few KB).
    with host_memory_budget_scope(1 << 30):
        pool = cls(
            info, 2.0, 0, PAGE, layout, pin_memory=False, device="cpu",
            device_capacity_tokens=device.size if device.host_capacity_tokens is None
            else device.host_capacity_tokens,
            start_layer=device.start_layer, end_layer=device.end_layer,
            write_back_staging=device.hicache_write_back_staging,
        )
    assert pool.page_num >= 2 * PAGES + 1
    bits = pool.kv_buffer.view(torch.int16)
    g = torch.Generator().manual_seed(seed)
    bits.copy_(torch.randint(-(2**15), 2**15, bits.shape, dtype=torch.int16, generator=g))
    return pool


def page(pool, p):
    """Page `p`'s bytes as SGLang itself slices them (K and V, every layer)."""
    return pool.get_data_page(p * PAGE, flat=True).view(torch.int16).clone()


def tokens(first_page, n=PAGES):
    return torch.arange(first_page * PAGE, (first_page + n) * PAGE, dtype=torch.int64)


def storage_config(tmp_path, cfg, layout="layer_first"):
    return HiCacheStorageConfig(
        tp_rank=0, tp_size=1, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
        is_mla_model=False, enable_storage_metrics=False,
        is_page_first_layout=layout == "page_first", model_name="tiny-llama",
        extra_config={"backend_name": "kvtier", "module_path": "kvtier.sglang",
                      "class_name": "KvtierStore", "path": str(tmp_path / "g3"),
                      "config": cfg, "interface_v1": 1},
    )


def backend_for(tmp_path, cfg, pool):
    """The backend as SGLang's cache controller makes it: factory, then register."""
    backend = factory.StorageBackendFactory.create_backend(
        "dynamic", storage_config(tmp_path, cfg, pool.layout), pool)
    assert isinstance(backend, KvtierStore)
    backend.register_mem_pool_host(pool)
    return backend


@pytest.mark.parametrize("layout", LAYOUTS)
def test_pages_round_trip_by_address(tmp_path, small_config, layout):
    pool = host_pool(layout)
    ptrs, sizes = pool.get_page_buffer_meta(tokens(0, 1))
    assert len(ptrs) == (2 * pool.layer_num if layout == "layer_first" else 2)
    backend = backend_for(tmp_path, small_config, pool)
    assert backend._page_bytes == sum(sizes) == pool.get_size_per_token() * PAGE
    keys = [f"page-{i}" for i in range(PAGES)]
    want = [page(pool, i) for i in range(PAGES)]
    assert backend.batch_exists(keys) == 0
    assert backend.batch_set_v1(keys, tokens(0)) == [True] * PAGES
    assert backend.batch_exists(keys + ["other"]) == PAGES
    assert backend.batch_exists(["other"] + keys) == 0
    assert backend.exists("page-0") and not backend.exists("other")
    pool.kv_buffer.zero_()
    # Load into pages 6..10: the same bytes, elsewhere in the pool.
    assert backend.batch_get_v1(keys, tokens(6)) == [True] * PAGES
    for i in range(PAGES):
        assert torch.equal(page(pool, 6 + i), want[i]), f"page {i}"
    # Nothing else was written.
    for p in list(range(6)) + list(range(6 + PAGES, pool.page_num)):
        assert not page(pool, p).any(), f"page {p} written"
    # A miss fails its key and leaves the page; never None.
    before = pool.kv_buffer.clone()
    assert backend.batch_get_v1(["nope"], tokens(0, 1)) == [False]
    assert torch.equal(pool.kv_buffer.view(torch.int16), before.view(torch.int16))
    backend.close()


@pytest.mark.parametrize("layout", LAYOUTS)
def test_flat_pages_and_addresses_agree(tmp_path, small_config, layout):
    """The controller's tensor path (without `interface_v1`) keeps the same
    block bytes as the address path, so either reads what the other wrote."""
    pool = host_pool(layout, seed=1)
    backend = backend_for(tmp_path, small_config, pool)
    want = [page(pool, i) for i in range(2 * PAGES)]
    flat_keys = [f"flat-{i}" for i in range(PAGES)]
    addr_keys = [f"addr-{i}" for i in range(PAGES)]
    # As _generic_page_set does: one flat data page per key.
    data = [pool.get_data_page(i * PAGE) for i in range(PAGES)]
    assert backend.batch_set(flat_keys, data) is True
    assert backend.batch_set_v1(addr_keys, tokens(PAGES)) == [True] * PAGES
    pool.kv_buffer.zero_()
    # Flat in, address out.
    assert backend.batch_get_v1(flat_keys, tokens(PAGES)) == [True] * PAGES
    for i in range(PAGES):
        assert torch.equal(page(pool, PAGES + i), want[i]), f"flat page {i}"
    # Address in, flat out, as _generic_page_get does.
    dummies = [pool.get_dummy_flat_data_page() for _ in addr_keys]
    got = backend.batch_get(addr_keys + ["nope"], dummies + [pool.get_dummy_flat_data_page()])
    assert got[-1] is None
    for i, t in enumerate(got[:-1]):
        assert t is dummies[i]
        pool.set_from_flat_data_page(i * PAGE, t)
        assert torch.equal(page(pool, i), want[PAGES + i]), f"address page {i}"
    backend.close()


def test_one_page_tensor_api(tmp_path, small_config):
    pool = host_pool("layer_first")
    backend = backend_for(tmp_path, small_config, pool)
    value = torch.randn(backend._page_bytes // 2).to(torch.bfloat16)
    assert backend.set("single", value) is True
    out = torch.zeros_like(value)
    assert backend.get("single", out) is out
    assert torch.equal(out.view(torch.int16), value.view(torch.int16))
    assert backend.get("missing", torch.zeros_like(value)) is None
    with pytest.raises(kvtier.KvtierError, match="a page is"):
        backend.set("short", value[:-1])
    with pytest.raises(kvtier.KvtierError, match="a page is"):
        backend.get("single", out[:-1])
    with pytest.raises(kvtier.KvtierError, match="contiguous"):
        backend.get("single", torch.zeros(2, value.numel(), dtype=value.dtype)[:, ::2])
    backend.close()


def test_missing_path_and_unregistered_pool_raise(tmp_path, small_config):
    sc = storage_config(tmp_path, small_config)
    sc.extra_config.pop("path")
    with pytest.raises(ValueError, match="path"):
        factory.StorageBackendFactory.create_backend("dynamic", sc, None)
    sc = storage_config(tmp_path, small_config)
    backend = factory.StorageBackendFactory.create_backend("dynamic", sc, None)
    for call in (lambda: backend.batch_exists(["a"]),
                 lambda: backend.set("a", torch.zeros(4)),
                 lambda: backend.get("a", torch.zeros(4))):
        with pytest.raises(kvtier.KvtierError, match="register_mem_pool_host"):
            call()


def test_page_outside_the_pool_raises(tmp_path, small_config):
    pool = host_pool("page_first")
    backend = backend_for(tmp_path, small_config, pool)
    past_end = torch.arange(pool.size, pool.size + PAGE, dtype=torch.int64)
    with pytest.raises(kvtier.ChunkRangeError):
        backend.batch_set_v1(["x"], past_end)
    backend.close()
