"""Contract test against SGLang 0.5.23: its own StorageBackendFactory builds
KvtierStore from the `dynamic` backend config, and pages of a host KV pool
round-trip byte-exact through page addresses.

SGLang's MHA host pool module imports its GPU kernels (flashinfer), which do
not import on a CPU-only machine; the pool here is a stand-in with the same
buffer shape and the same get_page_buffer_meta arithmetic (K and V segments
per page, one pair per layer in the layer-first layout)."""

import pytest

torch = pytest.importorskip("torch")
factory = pytest.importorskip("sglang.srt.mem_cache.storage.backend_factory")
from sglang.srt.mem_cache.hicache_storage import HiCacheStorageConfig  # noqa: E402

import kvtier  # noqa: E402
from kvtier.sglang import KvtierStore  # noqa: E402


class HostPool:
    """SGLang's MHATokenToKVPoolHost as storage sees it: `kv_buffer` of
    shape (2, layers, tokens, heads, dim) or (2, tokens, layers, heads, dim),
    and page addresses from get_page_buffer_meta(token indices)."""

    def get_page_buffer_meta(self, indices):
        assert len(indices) % self.page_size == 0
        item = self.dtype.itemsize
        base = self.kv_buffer.data_ptr()
        tok = self.head_num * self.head_dim * item
        v_offset = self.layer_num * self.size * tok
        indices = indices.tolist()
        ptrs = []
        if self.layout == "layer_first":
            for i in range(0, len(indices), self.page_size):
                for layer in range(self.layer_num):
                    k = base + indices[i] * tok + layer * self.size * tok
                    ptrs += [k, k + v_offset]
            size = self.page_size * tok
        else:
            for i in range(0, len(indices), self.page_size):
                k = base + indices[i] * self.layer_num * tok
                ptrs += [k, k + v_offset]
            size = self.layer_num * self.page_size * tok
        return ptrs, [size] * len(ptrs)


def host_pool(layout, pages=8, page_size=4, layers=3, heads=2, head_dim=16):
    pool = HostPool()
    pool.layout = layout
    pool.page_size = page_size
    pool.layer_num = layers
    pool.head_num = heads
    pool.head_dim = head_dim
    pool.dtype = torch.bfloat16
    pool.size = pages * page_size
    if layout == "layer_first":
        dims = (2, layers, pool.size, heads, head_dim)
    else:
        dims = (2, pool.size, layers, heads, head_dim)
    pool.kv_buffer = torch.randn(dims).to(torch.bfloat16)
    return pool


def storage_config(tmp_path, cfg):
    return HiCacheStorageConfig(
        tp_rank=0, tp_size=1, pp_rank=0, pp_size=1, attn_cp_rank=0, attn_cp_size=1,
        is_mla_model=False, enable_storage_metrics=False, is_page_first_layout=False,
        model_name="tiny-llama",
        extra_config={"backend_name": "kvtier", "module_path": "kvtier.sglang",
                      "class_name": "KvtierStore", "path": str(tmp_path / "g3"), "config": cfg},
    )


@pytest.mark.parametrize("layout", ["layer_first", "page_first"])
def test_factory_builds_kvtier_and_pages_round_trip(tmp_path, small_config, layout):
    pool = host_pool(layout)
    sc = storage_config(tmp_path, small_config)
    backend = factory.StorageBackendFactory.create_backend("dynamic", sc, pool)
    assert isinstance(backend, KvtierStore)
    backend.register_mem_pool_host(pool)
    keys = [f"page-{i}" for i in range(5)]
    idx = torch.arange(0, 5 * pool.page_size, dtype=torch.int64)  # pages 0..4
    want = pool.kv_buffer.clone()
    assert backend.batch_exists(keys) == 0
    assert backend.batch_set_v1(keys, idx) == [True] * 5
    assert backend.batch_exists(keys + ["other"]) == 5
    assert backend.exists("page-0") and not backend.exists("other")
    pool.kv_buffer.zero_()
    # Load into pages 3..7: the same bytes, elsewhere in the pool.
    dst = torch.arange(3 * pool.page_size, 8 * pool.page_size, dtype=torch.int64)
    assert backend.batch_get_v1(keys, dst) == [True] * 5
    ps = pool.page_size
    if layout == "layer_first":
        got, exp = pool.kv_buffer[:, :, 3 * ps : 8 * ps], want[:, :, 0 : 5 * ps]
    else:
        got, exp = pool.kv_buffer[:, 3 * ps : 8 * ps], want[:, 0 : 5 * ps]
    assert torch.equal(got.view(torch.int16), exp.view(torch.int16))
    # A miss fails its key and leaves the page; never None.
    before = pool.kv_buffer.clone()
    assert backend.batch_get_v1(["nope"], torch.arange(0, ps, dtype=torch.int64)) == [False]
    assert torch.equal(pool.kv_buffer.view(torch.int16), before.view(torch.int16))
    # The tensor-valued API: one page.
    page = torch.randn(backend._page_bytes // 2).to(torch.bfloat16)
    assert backend.set("single", page) is True
    out = torch.zeros_like(page)
    assert backend.get("single", out) is out
    assert torch.equal(out.view(torch.int16), page.view(torch.int16))
    assert backend.get("missing", torch.zeros_like(page)) is None
    backend.close()


def test_missing_path_and_unregistered_pool_raise(tmp_path, small_config):
    sc = storage_config(tmp_path, small_config)
    sc.extra_config.pop("path")
    with pytest.raises(ValueError, match="path"):
        factory.StorageBackendFactory.create_backend("dynamic", sc, None)
    sc = storage_config(tmp_path, small_config)
    backend = factory.StorageBackendFactory.create_backend("dynamic", sc, None)
    with pytest.raises(kvtier.KvtierError, match="register_mem_pool_host"):
        backend.batch_exists(["a"])
