"""Contract test against a real vLLM 0.33 Scheduler with OffloadingConnector
+ TieringOffloadingSpec + KvtierTier, on CPU, driven with fake model
outputs (this test plays the worker: it reports the GPU<->CPU copy jobs as
done and writes/checks the CPU-tier bytes the GPU copy would have moved).

A first Scheduler stores a request's blocks through the CPU tier into
kvtier; a second Scheduler on the same `path`, its CPU tier empty (a
restarted vLLM), sees a request with the same prefix as external hits, loads
them through kvtier, and schedules only the tokens after the prefix."""

import hashlib
import os
import time

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

torch = pytest.importorskip("torch")
pytest.importorskip("vllm")
from vllm.distributed.kv_transfer.kv_connector.v1.offloading.common import (  # noqa: E402
    OffloadingWorkerMetadata,
)
from vllm.sampling_params import SamplingParams  # noqa: E402
from vllm.utils.hashing import sha256  # noqa: E402
from vllm.v1.core.kv_cache_utils import get_request_block_hasher, init_none_hash  # noqa: E402
from vllm.v1.outputs import KVConnectorOutput, ModelRunnerOutput  # noqa: E402
from vllm.v1.request import Request  # noqa: E402

from kvtier.vllm import KvtierTier  # noqa: E402

import vllm_rig  # noqa: E402
from vllm_rig import write_model  # noqa: E402

BLOCK = 16  # tokens per block
GPU_BLOCKS = 64


def make_scheduler(tmp_path, kvtier_dir, config):
    model = write_model(tmp_path / "tiny-llama", layers=2, heads=4, kv_heads=1, head_dim=16,
                        max_len=1024, intermediate=128)
    tier = {"type": "KvtierTier", "module_path": "kvtier.vllm", "path": kvtier_dir, "config": config}
    s, manager = vllm_rig.make_scheduler(model, [tier], block=BLOCK, layers=2, kv_heads=1, head_size=16,
                                         gpu_blocks=GPU_BLOCKS, cpu_bytes=1 << 20, max_len=1024,
                                         max_batched_tokens=512)
    (tier,) = [t for t in manager.secondary_tiers if isinstance(t, KvtierTier)]
    return s, tier


def request(req_id, tokens):
    init_none_hash(sha256)
    return Request(request_id=req_id, prompt_token_ids=tokens,
                   sampling_params=SamplingParams(max_tokens=2), pooling_params=None,
                   block_hasher=get_request_block_hasher(BLOCK, sha256))


def pattern(pos, nbytes):
    """The bytes of the prompt's block `pos` (the prompts share a prefix)."""
    d = hashlib.sha256(b"block %d" % pos).digest()
    return np.frombuffer(d * (nbytes // len(d) + 1), dtype=np.uint8)[:nbytes]


class Worker:
    """Plays vLLM's worker: a GPU->CPU store writes each block's bytes into
    its CPU-tier chunk; a CPU->GPU load checks that its chunk holds them."""

    def __init__(self, tier):
        self.view = np.asarray(tier._primary_kv_view).view(np.uint8)
        self.loaded_ok = []

    def step(self, so):
        meta = so.kv_connector_metadata
        done, recving = {}, set()
        width = self.view.shape[1]
        for jid, job in getattr(meta, "store_jobs", {}).items():
            first = int(job.src_spec.block_indices[0])
            for i, c in enumerate(job.dst_spec.chunk_ids):
                self.view[int(c)] = pattern(first + i, width)
            done[jid] = 1
        for jid, job in getattr(meta, "load_jobs", {}).items():
            first = int(job.dst_spec.block_indices[0])
            for i, c in enumerate(job.src_spec.chunk_ids):
                self.loaded_ok.append(bool((self.view[int(c)] == pattern(first + i, width)).all()))
            done[jid] = 1
            if not job.sync:
                recving.add(job.req_id)
        return done, recving


def run(s, worker, until, steps=400):
    """Schedule and feed fake outputs until `until()` or `steps` run out;
    returns every SchedulerOutput."""
    outs = []
    for _ in range(steps):
        so = s.schedule()
        outs.append(so)
        done, recving = worker.step(so)
        req_ids = list(so.num_scheduled_tokens)
        mro = ModelRunnerOutput(
            req_ids=req_ids, req_id_to_index={r: i for i, r in enumerate(req_ids)},
            sampled_token_ids=[[7] for _ in req_ids],
            kv_connector_output=KVConnectorOutput(
                finished_recving=recving or None,
                kv_connector_worker_meta=OffloadingWorkerMetadata(completed_jobs=done)),
        )
        s.update_from_output(so, mro)
        if until():
            return outs
        time.sleep(0.005)
    raise AssertionError("the scheduler did not get there in time")


def test_a_restarted_scheduler_loads_the_prefix_through_kvtier(tmp_path, small_config):
    kvtier_dir = str(tmp_path / "kvtier")
    prompt = list(range(1, 5 * BLOCK + 1))  # 5 full blocks
    s, tier = make_scheduler(tmp_path, kvtier_dir, small_config)
    worker = Worker(tier)
    s.add_request(request("r1", prompt))
    # Run until kvtier holds the request's blocks (cascade CPU -> kvtier).
    run(s, worker, lambda: _held(tier) >= 4, steps=400)
    held = _held(tier)
    s.shutdown()
    assert held >= 4, held

    # A restarted vLLM: a new Scheduler, its CPU tier empty, same path.
    s2, tier2 = make_scheduler(tmp_path, kvtier_dir, small_config)
    assert tier2.store.recovery()["restored"] >= 4
    worker2 = Worker(tier2)
    s2.add_request(request("r2", prompt + [999] * 8))
    computed = []
    outs = []
    while not computed:
        outs += run(s2, worker2, lambda: True, steps=1)
        computed += [n for n in outs[-1].num_scheduled_tokens.values() if n]
        assert len(outs) < 400, "r2 was never scheduled"
    # kvtier's 5 blocks came back byte-exact through the CPU tier ...
    assert len(worker2.loaded_ok) == 5 and all(worker2.loaded_ok), worker2.loaded_ok
    assert tier2.stats["loaded_keys"] == 5
    # ... and the first compute step schedules only the 8 tokens after them.
    assert computed[0] == 8, computed
    s2.shutdown()


def _held(tier):
    return tier.stats["stored_keys"]
