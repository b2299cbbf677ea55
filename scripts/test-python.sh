#!/usr/bin/env bash
# The Python tests: the `kvtier` package (raw API, vLLM and SGLang contract
# tests) and the KV-event golden test against vLLM's own decoder.
#
# Creates (or reuses) the engines virtualenv with .ci/engines-venv.sh (pinned
# vLLM and SGLang from PyPI, outside the checkout), builds and installs the
# package into it with maturin, builds the `kvtier` binary (or takes
# $KVTIER_BIN), and runs pytest, bounded in time.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

VENV=$(bash .ci/engines-venv.sh | tail -n 1)
PY="$VENV/bin/python"
echo "test-python: venv $VENV" >&2

# The package, built in release mode into the venv (editable install).
(cd crates/kvtier-py && VIRTUAL_ENV="$VENV" PATH="$VENV/bin:$PATH" \
    "$VENV/bin/maturin" develop --release --quiet)

# The binary the events golden test runs.
if [ -z "${KVTIER_BIN:-}" ]; then
    cargo build --release --quiet -p kvtier-cli
    export KVTIER_BIN="$ROOT/target/release/kvtier"
fi

# vLLM must not reach for a hub or a GPU.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_TARGET_DEVICE=cpu
# The tests' temporary directories (G3 files of up to the built-in 8 GiB)
# go to one base directory, removed afterwards whatever the outcome.
BASETEMP=$(mktemp -d "${TMPDIR:-/tmp}/kvtier-pytest.XXXXXX")
trap 'rm -rf "$BASETEMP"' EXIT
timeout --kill-after=30 900 "$PY" -m pytest -q -p no:cacheprovider \
    --basetemp "$BASETEMP" \
    crates/kvtier-py/tests crates/kvtier-events/tests/python "$@"
