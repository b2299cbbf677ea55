"""kvtier as a vLLM (0.33) secondary offloading tier.

Load it with no vLLM patch, in ``kv_connector_extra_config`` of an
``OffloadingConnector`` using the ``TieringOffloadingSpec``::

    "secondary_tiers": [{"type": "KvtierTier", "module_path": "kvtier.vllm",
                         "path": "/var/cache/kvtier",
                         "config": "/etc/kvtier/engine.toml"}]

``path`` is the directory of kvtier's durable disk tier (a restarted vLLM
with the same ``path`` finds what was stored before); ``config`` (optional) is
a kvtier TOML config for tier sizes and policies, with built-in defaults when
absent. Blocks are vLLM's primary-tier chunks (``block_size_bytes``), keyed by
vLLM's own offload keys, namespaced by model, KV dtype and layout.
"""

from __future__ import annotations

import time
from collections.abc import Collection, Iterable
from typing import TYPE_CHECKING, Any, ClassVar

from vllm.v1.kv_offload.base import (
    LookupResult,
    Medium,
    OffloadingEvent,
    OffloadKey,
    ReqContext,
    RequestOffloadingContext,
)
from vllm.v1.kv_offload.tiering.base import JobResult, SecondaryTierManager, TransferJob

from kvtier._native import Store

_HIT = LookupResult.HIT
_MISS = LookupResult.MISS

if TYPE_CHECKING:
    from vllm.v1.kv_offload.base import OffloadingSpec
    from vllm.v1.kv_offload.tiering.backpressure import BackpressureDetector


def namespace_of(offloading_spec: Any, block_size_bytes: int) -> str:
    """The key namespace: what makes the same engine key mean the same bytes."""
    cfg = getattr(offloading_spec, "config", None)
    model = getattr(cfg, "model", None)
    cache = getattr(cfg, "cache", None)
    par = getattr(cfg, "parallel", None)
    parts = [
        "vllm",
        str(getattr(model, "name", "?")),
        str(getattr(model, "dtype", "?")),
        f"tph={getattr(cache, 'tokens_per_hash', '?')}",
        f"bpc={getattr(cache, 'blocks_per_chunk', '?')}",
        f"tp={getattr(par, 'tp_size', '?')}",
        f"pp={getattr(par, 'pp_size', '?')}",
        f"layout={getattr(cfg, 'kv_cache_layout', None)}",
        f"bytes={block_size_bytes}",
    ]
    return "/".join(parts)


class KvtierTier(SecondaryTierManager):
    """kvtier's host + durable disk tiers behind vLLM's secondary-tier API.

    Every call returns at once: stores and loads run on kvtier's worker
    threads against the primary tier's memoryview and are reported by
    ``get_finished_jobs``. A load that misses or fails verification reports
    its keys failed (vLLM recomputes them) and leaves their chunks as they
    were.
    """

    medium: ClassVar[Medium] = Medium.STORAGE

    def __init__(
        self,
        offloading_spec: "OffloadingSpec",
        primary_kv_view: memoryview,
        tier_type: str,
        path: str | None = None,
        config: str | None = None,
        namespace: str | None = None,
        enable_kv_events: bool = False,
        locality: str | None = None,
        backpressure_detector: "BackpressureDetector | None" = None,
    ) -> None:
        super().__init__(offloading_spec, primary_kv_view, tier_type, backpressure_detector)
        if path is None:
            raise ValueError(
                "KvtierTier needs 'path' (the directory of kvtier's durable tier) "
                "in its secondary_tiers entry"
            )
        ns = namespace or namespace_of(offloading_spec, self.block_size_bytes)
        self._store = Store(self.block_size_bytes, path=path, config=config, namespace=ns)
        self._store.attach(primary_kv_view)
        self._contains = self._store.contains
        self._jobs: dict[int, tuple[str, list[OffloadKey]]] = {}
        #: Keys stored and loaded by finished jobs (for tests and metrics).
        self.stats = {"stored_keys": 0, "loaded_keys": 0, "failed_keys": 0}
        self._events_on = bool(enable_kv_events)
        if self._events_on:
            self._store.enable_events(True)

    @property
    def store(self) -> Store:
        """The kvtier store behind this tier."""
        return self._store

    def lookup(self, key: OffloadKey, req_context: ReqContext) -> LookupResult:
        # The scheduler asks key by key: one probe of kvtier's indexes, no
        # per-call attribute lookups.
        return _HIT if self._contains(key) else _MISS

    def submit_store(self, job_metadata: TransferJob) -> None:
        self._submit("store", self._store.submit_store, job_metadata)

    def submit_load(self, job_metadata: TransferJob) -> None:
        self._submit("load", self._store.submit_load, job_metadata)

    def _submit(self, kind: str, submit, job_metadata: TransferJob) -> None:
        keys = list(job_metadata.keys)
        self._jobs[job_metadata.job_id] = (kind, keys)
        try:
            submit(job_metadata.job_id, keys, job_metadata.chunk_ids)
        except BaseException:
            self._jobs.pop(job_metadata.job_id, None)
            raise

    def get_finished_jobs(self) -> Iterable[JobResult]:
        out = []
        for job, ok, ok_keys, nbytes, seconds in self._store.poll_finished():
            kind, keys = self._jobs.pop(job, ("?", None))
            good = len(ok_keys) if ok else sum(ok_keys)
            self.stats["stored_keys" if kind == "store" else "loaded_keys"] += good
            self.stats["failed_keys"] += len(ok_keys) - good
            successful = None
            if not ok and keys is not None and any(ok_keys):
                successful = [k for k, good in zip(keys, ok_keys) if good]
            out.append(
                JobResult(
                    job_id=job,
                    success=ok,
                    successful_keys=successful,
                    transfer_time=seconds,
                    transfer_bytes=nbytes,
                )
            )
        return out

    def has_pending_work(self) -> bool:
        return self._store.in_flight > 0

    def drain_jobs(self) -> None:
        self._store.drain()

    def touch(self, keys: Collection[OffloadKey], req_context: ReqContext) -> None:
        self._store.touch(list(keys))

    def on_new_request(self, req_context: ReqContext) -> RequestOffloadingContext:
        return RequestOffloadingContext()

    def take_events(self) -> Iterable[OffloadingEvent]:
        if not self._events_on:
            return ()
        return [
            OffloadingEvent(
                keys=[OffloadKey(k) for k in keys],
                medium=Medium.STORAGE,
                removed=(kind == "removed"),
                locality=self.locality,
                ownership=self.tier_type,
            )
            for kind, keys in self._store.take_events()
        ]

    def shutdown(self) -> None:
        self._store.close()


def wait_finished(tier: KvtierTier, job_ids: Collection[int], timeout: float = 30.0) -> list[JobResult]:
    """Poll ``tier`` until every job in ``job_ids`` finished (a helper for
    tests and benchmarks; vLLM itself polls once per step)."""
    want = set(job_ids)
    got: list[JobResult] = []
    deadline = time.monotonic() + timeout
    while want:
        for r in tier.get_finished_jobs():
            want.discard(r.job_id)
            got.append(r)
        if want:
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs {sorted(want)} did not finish in {timeout} s")
            time.sleep(0.0005)
    return got
