#!/usr/bin/env bash
# The test command (README): every Rust test of the workspace, then the
# Python package's tests against the real vLLM and SGLang (their virtualenv is
# built from PyPI on first use and cached outside the checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --workspace --release
# The integration tests just built the binary; the Python tests reuse it.
export KVTIER_BIN="${KVTIER_BIN:-$PWD/target/release/kvtier}"
bash scripts/test-python.sh
