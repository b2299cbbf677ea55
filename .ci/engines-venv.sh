#!/usr/bin/env bash
# Creates (or reuses) the Python virtualenv that the engine contract tests run in:
# pinned vLLM and SGLang from PyPI, plus pytest, numpy, msgspec and maturin.
#
# The venv lives outside the checkout, at $KVTIER_ENGINES_VENV or
# ~/.cache/kvtier/engines-venv, and is stamped with a hash of this script: an
# edit here rebuilds it, otherwise a second run is a no-op. Everything comes
# from PyPI. Prints the venv's directory as the last line of stdout.
set -euo pipefail

VENV=${KVTIER_ENGINES_VENV:-$HOME/.cache/kvtier/engines-venv}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
STAMP=$(sha256sum "$HERE/engines-venv.sh" | cut -c1-16)
PYTHON=${KVTIER_PYTHON:-python3}

if [ -f "$VENV/.kvtier-stamp" ] && [ "$(cat "$VENV/.kvtier-stamp")" = "$STAMP" ]; then
    echo "$VENV"
    exit 0
fi

echo "engines-venv: building $VENV (stamp $STAMP)" >&2
rm -rf "$VENV"
mkdir -p "$(dirname "$VENV")"
"$PYTHON" -m venv "$VENV"
PY="$VENV/bin/python"
"$PY" -m pip install --quiet --upgrade pip uv >&2
UV=("$VENV/bin/uv" pip install --python "$PY")

# vLLM pinned, with its own dependencies (torch from PyPI; it imports without a GPU).
"${UV[@]}" vllm==0.33.0 pytest numpy msgspec 'maturin>=1.9,<2' >&2
# SGLang pinned without its dependency tree (which would replace vLLM's torch);
# these are what `sglang.srt.mem_cache` needs to import on a CPU machine.
"${UV[@]}" --no-deps sglang==0.5.23 >&2
"${UV[@]}" ipython orjson pybase64 gguf >&2
# vLLM's tree also brings the monolithic cuda-python 12.x, whose files overwrite
# those of the cuda-bindings version torch resolved (13.x); flashinfer's
# nvidia_cutlass_dsl then fails to import (no `cuda.bindings.runtime.cudaLibrary_t`),
# and with it SGLang's host memory pools. Reinstall the resolved cuda-bindings
# over it, at the version the metadata records.
CUDA_BINDINGS=$("$PY" -c 'import importlib.metadata as m; print(m.version("cuda-bindings"))')
"${UV[@]}" --reinstall --no-deps "cuda-bindings==$CUDA_BINDINGS" >&2

"$PY" - <<'PY' >&2
import vllm, sglang  # noqa: F401
from vllm.v1.kv_offload.tiering.base import SecondaryTierManager  # noqa: F401
from sglang.srt.mem_cache.storage.backend_factory import StorageBackendFactory  # noqa: F401
import sglang.srt.mem_cache.memory_pool_host  # noqa: F401
from sglang.srt.mem_cache.pool_host.mha import MHATokenToKVPoolHost  # noqa: F401
print("engines-venv: vllm", vllm.__version__, "sglang", sglang.__version__)
PY

echo "$STAMP" > "$VENV/.kvtier-stamp"
echo "$VENV"
