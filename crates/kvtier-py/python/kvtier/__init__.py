"""kvtier: a multi-tier KV-cache store (host memory + durable disk) as a
storage tier of inference engines.

- ``kvtier.Store``: the engine core (opaque keys, store/load jobs on worker
  threads against buffers you attach, ``poll_finished``).
- ``kvtier.vllm.KvtierTier``: a vLLM ``SecondaryTierManager``.
- ``kvtier.sglang.KvtierStore``: an SGLang ``HiCacheStorage`` backend.

The engine modules import their engine only when used.
"""

from kvtier._native import (  # noqa: F401
    BadBufferError,
    BadInputError,
    ChunkRangeError,
    ClosedError,
    ConfigError,
    DirectoryInUseError,
    DuplicateJobError,
    KvtierError,
    Store,
    __version__,
)

__all__ = [
    "Store",
    "KvtierError",
    "ConfigError",
    "DirectoryInUseError",
    "BadBufferError",
    "ChunkRangeError",
    "BadInputError",
    "DuplicateJobError",
    "ClosedError",
    "__version__",
]
