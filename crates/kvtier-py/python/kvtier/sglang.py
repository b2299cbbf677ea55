"""kvtier as an SGLang (0.5.23) HiCache storage backend.

Load it with the ``dynamic`` backend, no SGLang patch::

    --enable-hierarchical-cache --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "kvtier",
        "module_path": "kvtier.sglang", "class_name": "KvtierStore",
        "path": "/var/cache/kvtier", "config": "/etc/kvtier/engine.toml",
        "interface_v1": 1}'

``path`` is the directory of kvtier's durable disk tier, ``config``
(optional) a kvtier TOML config. One kvtier block is one page of the
registered host KV pool. With ``interface_v1`` SGLang's cache controller
moves pages by address (``batch_get_v1``/``batch_set_v1`` and the pool's
``get_page_buffer_meta``), without a copy through Python; without it, it
passes flat page tensors (``batch_get``/``batch_set``). A block holds the
page's bytes in address-segment order either way, so a page stored through
one interface loads through the other. Keys are SGLang's page hashes,
namespaced by model, tensor-parallel rank and page layout.
"""

from __future__ import annotations

import ctypes
import itertools
import threading
import time
from typing import Any, List, Optional

import torch
from sglang.srt.mem_cache.hicache_storage import HiCacheStorage, HiCacheStorageConfig

from kvtier._native import KvtierError, Store

#: How long a synchronous batch waits for its job before raising.
JOB_TIMEOUT_S = 120.0


def _tensors(obj: Any) -> list:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [t for t in obj if isinstance(t, torch.Tensor)]
    return []


class KvtierStore(HiCacheStorage):
    """kvtier's host + durable disk tiers behind SGLang's ``HiCacheStorage``.

    The zero-copy hot path (``batch_exists``, ``batch_get_v1``,
    ``batch_set_v1``) works against the host pool registered with
    ``register_mem_pool_host``. Every method raises on failure and never
    returns None where a result is due.
    """

    def __init__(self, storage_config: HiCacheStorageConfig, kwargs: Optional[dict] = None):
        extra = dict(getattr(storage_config, "extra_config", None) or {})
        extra.update(kwargs or {})
        self.path = extra.get("path")
        if not self.path:
            raise ValueError(
                "KvtierStore needs 'path' (the directory of kvtier's durable tier) "
                "in --hicache-storage-backend-extra-config"
            )
        self.config = extra.get("config")
        self.storage_config = storage_config
        cfg = storage_config
        rank = "" if getattr(cfg, "is_mla_model", False) else f"/tp={cfg.tp_rank}of{cfg.tp_size}"
        self._namespace_base = f"sglang/{cfg.model_name or '?'}{rank}/pp={cfg.pp_rank}of{cfg.pp_size}"
        self._store: Optional[Store] = None
        self._lock = threading.Lock()
        self._scratch_lock = threading.Lock()
        self._done: dict[int, tuple] = {}
        self._ids = itertools.count(1)
        self._scratch = None

    # -- set-up ---------------------------------------------------------------

    def register_mem_pool_host(self, mem_pool_host) -> None:
        super().register_mem_pool_host(mem_pool_host)
        pool = mem_pool_host
        page = int(pool.page_size)
        _, sizes = pool.get_page_buffer_meta(torch.arange(page, dtype=torch.int64))
        page_bytes = int(sum(sizes))
        ns = f"{self._namespace_base}/layout={pool.layout}/page={page}/bytes={page_bytes}"
        self._store = Store(page_bytes, path=self.path, config=self.config, namespace=ns)
        # MHATokenToKVPoolHost's k_buffer and v_buffer are views of kv_buffer:
        # each distinct storage is attached once.
        attached = set()
        for name in ("kv_buffer", "k_buffer", "v_buffer"):
            for t in _tensors(getattr(pool, name, None)):
                storage = t.untyped_storage()
                span = (storage.data_ptr(), storage.nbytes())
                if span in attached:
                    continue
                region = (ctypes.c_ubyte * span[1]).from_address(span[0])
                self._store.attach(memoryview(region).cast("B"))
                attached.add(span)
        if not attached:
            raise KvtierError(f"{type(pool).__name__}: no host KV buffer found to attach")
        # One page of scratch for the tensor-valued (legacy) get/set.
        self._scratch = torch.zeros(page_bytes, dtype=torch.uint8)
        self._store.attach(self._scratch.numpy())
        self._page_bytes = page_bytes
        # SGLang's flat data page (`get_data_page`) of a layer-first K/V pool is
        # every layer's K, then every layer's V; its address segments alternate
        # K and V per layer. The tensor-valued API converts between the two.
        layers = int(getattr(pool, "layer_num", 0))
        self._kv_layers = layers if pool.layout == "layer_first" and len(sizes) == 2 * layers else 0

    @property
    def store(self) -> Store:
        if self._store is None:
            raise KvtierError("KvtierStore: no host pool registered yet (register_mem_pool_host)")
        return self._store

    # -- jobs -----------------------------------------------------------------

    def _wait(self, job: int) -> tuple:
        deadline = time.monotonic() + JOB_TIMEOUT_S
        while True:
            with self._lock:
                for r in self.store.poll_finished():
                    self._done[r[0]] = r
                if job in self._done:
                    return self._done.pop(job)
            if time.monotonic() > deadline:
                raise KvtierError(f"kvtier job {job} did not finish in {JOB_TIMEOUT_S} s")
            time.sleep(0.0002)

    def _pages(self, host_indices):
        ptrs, sizes = self.mem_pool_host.get_page_buffer_meta(host_indices)
        return [int(p) for p in ptrs], [int(s) for s in sizes]

    def _run_pages(self, load: bool, keys: List[str], host_indices) -> List[bool]:
        if not keys:
            return []
        ptrs, sizes = self._pages(host_indices)
        job = next(self._ids)
        if load:
            self.store.submit_load_pages(job, keys, ptrs, sizes)
        else:
            self.store.submit_store_pages(job, keys, ptrs, sizes)
        _, _, ok_keys, _, _ = self._wait(job)
        return list(ok_keys)

    # -- the zero-copy hot path ---------------------------------------------

    def batch_exists(self, keys: List[str], extra_info=None) -> int:
        return self.store.lookup(keys)

    def batch_get_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info=None) -> List[bool]:
        return self._run_pages(True, keys, host_indices)

    def batch_set_v1(self, keys: List[str], host_indices: torch.Tensor, extra_info=None) -> List[bool]:
        return self._run_pages(False, keys, host_indices)

    # -- the tensor-valued API (one page at a time, through scratch) ---------

    def exists(self, key: str) -> bool:
        return self.store.contains(key)

    def set(self, key, value=None, target_location=None, target_sizes=None) -> bool:
        if value is None:
            raise KvtierError("KvtierStore.set: a value tensor is required")
        store = self.store  # raises until a host pool is registered
        flat = value.contiguous().view(torch.uint8).reshape(-1)
        if flat.numel() != self._page_bytes:
            raise KvtierError(f"KvtierStore.set: {flat.numel()} bytes, a page is {self._page_bytes}")
        with self._scratch_lock:
            if self._kv_layers:
                n = self._kv_layers
                self._scratch.view(n, 2, -1).copy_(flat.view(2, n, -1).transpose(0, 1))
            else:
                self._scratch.copy_(flat)
            job = next(self._ids)
            store.submit_store_pages(job, [key], [self._scratch.data_ptr()], [self._page_bytes])
            return bool(self._wait(job)[1])

    def batch_set(self, keys, values=None, target_locations=None, target_sizes=None) -> bool:
        return all(self.set(k, v) for k, v in zip(keys, values or []))

    def get(self, key, target_location=None, target_sizes=None):
        if target_location is None:
            raise KvtierError("KvtierStore.get: a target tensor is required")
        store = self.store  # raises until a host pool is registered
        if not target_location.is_contiguous():
            raise KvtierError("KvtierStore.get: the target tensor must be contiguous")
        out = target_location.view(torch.uint8).view(-1)
        if out.numel() != self._page_bytes:
            raise KvtierError(f"KvtierStore.get: {out.numel()} bytes, a page is {self._page_bytes}")
        with self._scratch_lock:
            job = next(self._ids)
            store.submit_load_pages(job, [key], [self._scratch.data_ptr()], [self._page_bytes])
            if not self._wait(job)[1]:
                return None  # a miss: SGLang's contract for get()
            if self._kv_layers:
                n = self._kv_layers
                out.view(2, n, -1).copy_(self._scratch.view(n, 2, -1).transpose(0, 1))
            else:
                out.copy_(self._scratch)
        return target_location

    def batch_get(self, keys, target_locations=None, target_sizes=None):
        return [self.get(k, t) for k, t in zip(keys, target_locations or [None] * len(keys))]

    def clear(self) -> None:
        raise KvtierError("KvtierStore.clear: remove the directory while SGLang is stopped")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
