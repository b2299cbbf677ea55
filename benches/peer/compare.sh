#!/usr/bin/env bash
# Side-by-side replay benchmark: kvtier vs NVIDIA Dynamo's kvbm-logical 1.6.1.
#
# Builds both (release), replays the Mooncake synthetic trace through each
# R times (one process per run) with one tier of N blocks and LRU, keeps each
# side's best blocks/s, and prints both figures and the ratio kvtier/peer.
#
# usage: benches/peer/compare.sh [--capacity N] [--repeat R] [--trace FILE]
#                                [--release tail-first|suffix-first]
# env: PEER_BIN, KVTIER_BIN override the binaries run (both are still built).
set -euo pipefail

SCRIPT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")"
ROOT="$(dirname "$(dirname "$(dirname "$SCRIPT")")")"
cd "$ROOT"

CAPACITY=6000
REPEAT=5
TRACE=tests/data/mooncake_synthetic_trace.jsonl
# kvtier releases a request's blocks tail first (docs/architecture.md, "Replay"); the
# peer does the same by default here, so both sides do identical work and
# must report identical hits. `suffix-first` is kvbm-logical's natural order.
RELEASE=tail-first

usage() {
    sed -n '2,10p' "$SCRIPT" | sed 's/^# \{0,1\}//'
}

while [[ $# -gt 0 ]]; do
    case "$1" in
        --capacity) CAPACITY="${2:?--capacity needs a value}"; shift 2 ;;
        --repeat) REPEAT="${2:?--repeat needs a value}"; shift 2 ;;
        --trace) TRACE="${2:?--trace needs a value}"; shift 2 ;;
        --release) RELEASE="${2:?--release needs a value}"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) echo "compare.sh: unknown argument: $1" >&2; usage >&2; exit 2 ;;
    esac
done

[[ "$CAPACITY" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: bad --capacity: $CAPACITY" >&2; exit 2; }
[[ "$REPEAT" =~ ^[1-9][0-9]*$ ]] || { echo "compare.sh: bad --repeat: $REPEAT" >&2; exit 2; }
[[ -f "$TRACE" ]] || { echo "compare.sh: trace not found: $TRACE" >&2; exit 2; }

PEER_BIN="${PEER_BIN:-benches/peer/target/release/kvbm-peer-bench}"
KVTIER_BIN="${KVTIER_BIN:-target/release/kvtier}"

# Print "hits blocks blocks_per_s" from the last JSON object line on stdin
# (lines before it, e.g. logging, are ignored).
fields() {
    python3 -c '
import json, sys
lines = [l for l in sys.stdin.read().splitlines() if l.lstrip().startswith("{")]
if not lines:
    sys.exit("no JSON object in output")
d = json.loads(lines[-1])
print(d["hits"], d["blocks"], d["blocks_per_s"])
'
}

# run_side NAME CMD... : runs CMD $REPEAT times, checks that hits and blocks
# are the same every time, and prints "hits blocks best_blocks_per_s".
run_side() {
    local name="$1"
    shift
    local best=0 hits="" blocks="" out parsed h b bps
    for ((i = 1; i <= REPEAT; i++)); do
        if ! out="$("$@")"; then
            echo "compare.sh: $name run failed: $*" >&2
            exit 1
        fi
        parsed="$(printf '%s\n' "$out" | fields)" || {
            echo "compare.sh: $name printed no usable JSON (need hits, blocks, blocks_per_s): $out" >&2
            exit 1
        }
        read -r h b bps <<<"$parsed"
        echo "  $name run $i: $out" >&2
        if [[ -n "$hits" && ( "$h" != "$hits" || "$b" != "$blocks" ) ]]; then
            echo "compare.sh: $name is not deterministic: $h/$b vs $hits/$blocks" >&2
            exit 1
        fi
        hits="$h"
        blocks="$b"
        best="$(python3 -c 'import sys; print(max(float(sys.argv[1]), float(sys.argv[2])))' "$best" "$bps")"
    done
    echo "$hits $blocks $best"
}

# report NAME HITS BLOCKS BLOCKS_PER_S
report() {
    python3 - "$@" <<'EOF'
import sys

name, hits, blocks, bps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
print(f"{name:<26}: {bps / 1e6:7.3f} M blocks/s  hits {hits}/{blocks} ({hits / blocks:.4f})")
EOF
}

echo "== building peer (kvbm-logical 1.6.1)" >&2
cargo build --release --manifest-path benches/peer/Cargo.toml >&2

echo "== peer: $REPEAT runs, capacity $CAPACITY, lru, release $RELEASE" >&2
PEER="$(
    run_side peer "$PEER_BIN" --trace "$TRACE" --capacity "$CAPACITY" \
        --policy lru --release "$RELEASE" --repeat 1
)"
read -r PEER_HITS PEER_BLOCKS PEER_BPS <<<"$PEER"
echo "capacity $CAPACITY blocks, LRU, best of $REPEAT runs"
report "peer (kvbm-logical 1.6.1)" "$PEER_HITS" "$PEER_BLOCKS" "$PEER_BPS"

echo "== building kvtier" >&2
cargo build --release >&2

echo "== kvtier: $REPEAT runs, capacity $CAPACITY, lru" >&2
KVTIER="$(
    run_side kvtier "$KVTIER_BIN" replay --trace "$TRACE" --g1-blocks "$CAPACITY" \
        --g2-blocks 0 --g3-blocks 0 --policy lru --no-data --json
)"
read -r KV_HITS KV_BLOCKS KV_BPS <<<"$KVTIER"
report "kvtier" "$KV_HITS" "$KV_BLOCKS" "$KV_BPS"

python3 - "$KV_BPS" "$PEER_BPS" <<'EOF'
import sys

print(f"{'ratio kvtier/peer':<26}: {float(sys.argv[1]) / float(sys.argv[2]):7.2f}x")
EOF
if [[ "$PEER_HITS/$PEER_BLOCKS" != "$KV_HITS/$KV_BLOCKS" ]]; then
    echo "compare.sh: WARNING: hit counts differ" \
        "(peer $PEER_HITS/$PEER_BLOCKS, kvtier $KV_HITS/$KV_BLOCKS)" >&2
fi
