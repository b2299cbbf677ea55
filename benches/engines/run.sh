#!/usr/bin/env bash
# Runs the engine-tier benchmark in the engines venv (built by
# .ci/engines-venv.sh), after installing the kvtier package in release mode.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VENV=$(bash "$ROOT/.ci/engines-venv.sh" | tail -n 1)
(cd "$ROOT/crates/kvtier-py" && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" "$VENV/bin/maturin" develop --release --quiet)
exec "$VENV/bin/python" "$ROOT/benches/engines/vllm_tier_bench.py" "$@"
