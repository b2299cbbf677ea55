"""A real vLLM 0.33 Scheduler with OffloadingConnector + TieringOffloadingSpec
over a tiny Llama-shaped model on CPU: shared by the scheduler contract test
and the engine-tier benchmark (benches/engines)."""

import json
import os

import torch
from vllm.config import (
    CacheConfig,
    DeviceConfig,
    KVTransferConfig,
    ModelConfig,
    SchedulerConfig,
    VllmConfig,
)
from vllm.v1.core.sched.scheduler import Scheduler
from vllm.v1.kv_cache_interface import FullAttentionSpec, KVCacheConfig, KVCacheGroupSpec
from vllm.v1.structured_output import StructuredOutputManager


def write_model(directory, layers, heads, kv_heads, head_dim, max_len, intermediate):
    """A Llama config.json (no weights: the scheduler never loads them)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump({"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                   "hidden_size": heads * head_dim, "intermediate_size": intermediate,
                   "num_attention_heads": heads, "num_key_value_heads": kv_heads,
                   "num_hidden_layers": layers, "vocab_size": 1000,
                   "max_position_embeddings": max_len, "torch_dtype": "bfloat16",
                   "rms_norm_eps": 1e-5}, f)
    return str(directory)


def make_scheduler(model, tiers, *, block, layers, kv_heads, head_size, gpu_blocks,
                   cpu_bytes, max_len, max_batched_tokens):
    """A Scheduler whose offloading connector has `tiers` as secondary tiers;
    returns it and its tiering manager."""
    vc = VllmConfig(
        model_config=ModelConfig(model=model, tokenizer=model, skip_tokenizer_init=True,
                                 dtype="bfloat16", seed=0, max_model_len=max_len),
        scheduler_config=SchedulerConfig(max_num_seqs=8, max_num_batched_tokens=max_batched_tokens,
                                         max_model_len=max_len, enable_chunked_prefill=True,
                                         is_encoder_decoder=False),
        cache_config=CacheConfig(block_size=block, gpu_memory_utilization=0.9, cache_dtype="auto",
                                 enable_prefix_caching=True),
        kv_transfer_config=KVTransferConfig(
            kv_connector="OffloadingConnector", kv_role="kv_both",
            kv_connector_extra_config={"spec_name": "TieringOffloadingSpec", "cpu_bytes_to_use": cpu_bytes,
                                       "secondary_tiers": tiers}),
        device_config=DeviceConfig("cpu"),
    )
    vc.cache_config.num_gpu_blocks = gpu_blocks
    names = [f"model.layers.{i}.self_attn.attn" for i in range(layers)]
    kcc = KVCacheConfig(num_blocks=gpu_blocks, kv_cache_tensors=[], kv_cache_groups=[
        KVCacheGroupSpec(names, FullAttentionSpec(block_size=block, num_kv_heads=kv_heads, head_size=head_size,
                                                  dtype=torch.bfloat16))])
    s = Scheduler(vllm_config=vc, kv_cache_config=kcc, structured_output_manager=StructuredOutputManager(vc),
                  block_size=block)
    return s, s.connector.connector_scheduler.manager
