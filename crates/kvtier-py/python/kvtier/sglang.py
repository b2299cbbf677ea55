"""kvtier as an SGLang (0.5.23) HiCache storage backend.

Load it with the ``dynamic`` backend, no SGLang patch::

    --enable-hierarchical-cache --hicache-storage-backend dynamic
    --hicache-storage-backend-extra-config '{"backend_name": "kvtier",
        "module_path": "kvtier.sglang", "class_name": "KvtierStore",
        "path": "/var/cache/kvtier", "config": "/etc/kvtier/engine.toml"}'

``path`` is the directory of kvtier's durable disk tier, ``config``
(optional) a kvtier TOML config. One kvtier block is one page of the
registered host KV pool; pages move between kvtier and the pool's memory by
address (``get_page_buffer_meta``), without a copy through Python. Keys are
SGLang's page hashes, namespaced by model, tensor-parallel rank and page
layout.
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
        attached = 0
        for name in ("kv_buffer", "k_buffer", "v_buffer"):
            for t in _tensors(getattr(pool, name, None)):
                nbytes = t.untyped_storage().nbytes()
                region = (ctypes.c_ubyte * nbytes).from_address(t.untyped_storage().data_ptr())
                self._store.attach(memoryview(region).cast("B"))
                attached += 1
        if attached == 0:
            raise KvtierError(f"{type(pool).__name__}: no host KV buffer found to attach")
        # One page of scratch for the tensor-valued (legacy) get/set.
        self._scratch = torch.zeros(page_bytes, dtype=torch.uint8)
        self._store.attach(self._scratch.numpy())
        self._page_bytes = page_bytes

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
        flat = value.contiguous().view(torch.uint8).reshape(-1)
        if flat.numel() != self._page_bytes:
            raise KvtierError(f"KvtierStore.set: {flat.numel()} bytes, a page is {self._page_bytes}")
        with self._scratch_lock:
            self._scratch.copy_(flat)
            job = next(self._ids)
            self.store.submit_store_pages(job, [key], [self._scratch.data_ptr()], [self._page_bytes])
            return bool(self._wait(job)[1])

    def batch_set(self, keys, values=None, target_locations=None, target_sizes=None) -> bool:
        return all(self.set(k, v) for k, v in zip(keys, values or []))

    def get(self, key, target_location=None, target_sizes=None):
        if target_location is None:
            raise KvtierError("KvtierStore.get: a target tensor is required")
        with self._scratch_lock:
            job = next(self._ids)
            self.store.submit_load_pages(job, [key], [self._scratch.data_ptr()], [self._page_bytes])
            if not self._wait(job)[1]:
                return None  # a miss: SGLang's contract for get()
            target_location.view(torch.uint8).reshape(-1).copy_(self._scratch)
        return target_location

    def batch_get(self, keys, target_locations=None, target_sizes=None):
        return [self.get(k, t) for k, t in zip(keys, target_locations or [None] * len(keys))]

    def clear(self) -> None:
        raise KvtierError("KvtierStore.clear: remove the directory while SGLang is stopped")

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
