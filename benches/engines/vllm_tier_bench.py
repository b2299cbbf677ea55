"""KvtierTier against vLLM's built-in `fs` secondary tier, side by side.

Both tiers are built by a real vLLM 0.33 TieringOffloadingSpec (one
Scheduler with both in `secondary_tiers`, sharing one primary CPU tier) and
driven through the same SecondaryTierManager calls with the same job
stream: store N blocks in jobs of 64, look every key up, load them back into
other primary chunks (bytes checked). Then KvtierTier is closed and reopened
and loads again (from its disk tier, page cache warm).

Also: the Python layer's share of a kvtier job of 64 blocks (time in the
Python calls, submit + result handling, against the Rust core's own job
time from submission to completion).

Run: bash benches/engines/run.sh   (or this file with the engines venv's python)
"""

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")

import numpy as np  # noqa: E402
from vllm.v1.kv_offload.base import LookupResult, ReqContext, make_offload_key  # noqa: E402
from vllm.v1.kv_offload.tiering.base import TransferJob  # noqa: E402
from vllm.v1.kv_offload.tiering.factory import SecondaryTierFactory  # noqa: E402

# The Scheduler rig shared with the vLLM contract test.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "crates", "kvtier-py", "tests"))
from vllm_rig import make_scheduler, write_model  # noqa: E402

BLOCK = 16
BATCH = 64


def build(tmp, layers, heads, head_dim, n_chunks, bytes_per_block):
    model = write_model(os.path.join(tmp, "model"), layers=layers, heads=heads, kv_heads=heads,
                        head_dim=head_dim, max_len=4096, intermediate=256)
    tiers = [
        {"type": "fs", "root_dir": os.path.join(tmp, "fs")},
        {"type": "KvtierTier", "module_path": "kvtier.vllm", "path": os.path.join(tmp, "kvtier"),
         "config": os.environ.get("KVTIER_CONFIG") or None},
    ]
    return make_scheduler(model, tiers, block=BLOCK, layers=layers, kv_heads=heads, head_size=head_dim,
                          gpu_blocks=64, cpu_bytes=n_chunks * bytes_per_block, max_len=4096,
                          max_batched_tokens=4096)


def wait(tier, ids, timeout=600):
    want, out = set(ids), {}
    deadline = time.monotonic() + timeout
    while want - out.keys():
        for r in tier.get_finished_jobs():
            out[r.job_id] = r
        if time.monotonic() > deadline:
            raise TimeoutError(sorted(want - out.keys())[:5])
        time.sleep(0.0002)
    return out


def jobs(first_id, keys, chunk0):
    for b in range(0, len(keys), BATCH):
        ks = keys[b : b + BATCH]
        yield TransferJob(job_id=first_id + b // BATCH, keys=ks,
                          chunk_ids=np.arange(chunk0 + b, chunk0 + b + len(ks), dtype=np.int64),
                          is_promotion=False, req_context=ReqContext(req_id="bench"))


def run_stream(tier, view, n, tag, load_tier=None):
    """Store n blocks (chunks 0..n), look them up, load into chunks n..2n."""
    keys = [make_offload_key(bytes([tag]) * 24 + i.to_bytes(8, "big"), 0) for i in range(n)]
    res = {}
    t = time.perf_counter()
    ids = []
    for j in jobs(1000 * tag, keys, 0):
        tier.submit_store(j)
        ids.append(j.job_id)
    done = wait(tier, ids)
    res["store_s"] = time.perf_counter() - t
    res["store_ok"] = sum(r.success for r in done.values()) / len(done)
    ctx = ReqContext(req_id=f"bench-{tag}")
    tier.on_new_request(ctx)
    # The fs tier answers RETRY while its async lookup of a key runs: ask
    # until every key settled, then time a pass over keys it has seen.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(tier.lookup(k, ctx) in (LookupResult.HIT, LookupResult.MISS) for k in keys):
            break
        tier.get_finished_jobs()
        time.sleep(0.001)
    t = time.perf_counter()
    hits = sum(tier.lookup(k, ctx) == LookupResult.HIT for k in keys)
    res["lookup_us_per_key"] = (time.perf_counter() - t) / n * 1e6
    res["lookup_hits"] = hits
    tier.on_request_finished(ctx)
    src = load_tier or tier
    view[n : 2 * n] = 0
    t = time.perf_counter()
    ids = []
    for j in jobs(1000 * tag + 500, keys, n):
        src.submit_load(j)
        ids.append(j.job_id)
    done = wait(src, ids)
    res["load_s"] = time.perf_counter() - t
    res["load_ok"] = sum(r.success for r in done.values()) / len(done)
    res["bytes_equal"] = bool((view[n : 2 * n] == view[0:n]).all())
    return keys, res


def timed_jobs(tier, submit, keys_all, first_id, chunk0, n_jobs):
    """Run n_jobs jobs of 64 blocks one at a time; returns (Python seconds,
    Rust job seconds) of the successful ones and the failed job count."""
    py, rust = [], []
    for j in range(n_jobs):
        job = next(jobs(first_id + j, keys_all[j * BATCH : (j + 1) * BATCH], chunk0))
        t0 = time.perf_counter()
        submit(job)
        t1 = time.perf_counter()
        tier.store.drain()
        t2 = time.perf_counter()
        (r,) = tier.get_finished_jobs()
        t3 = time.perf_counter()
        if r.success:
            py.append((t1 - t0) + (t3 - t2))
            rust.append(r.transfer_time)
    return py, rust


def python_share(tier, view, n_jobs=30):
    """Python time (submit + result handling) per 64-block kvtier job, against
    the Rust core's own time for the job (submission to completion)."""
    keys_all = [make_offload_key(b"\x77" * 24 + i.to_bytes(8, "big"), 0) for i in range(BATCH * n_jobs)]
    py, rust = timed_jobs(tier, tier.submit_store, keys_all, 90000, 0, n_jobs)
    lp, lr = timed_jobs(tier, tier.submit_load, keys_all, 95000, BATCH, n_jobs)
    med = statistics.median
    return {"store_py_us": med(py) * 1e6, "store_rust_us": med(rust) * 1e6,
            "store_share": med(py) / med(rust),
            "store_jobs_ok": len(py), "load_jobs_ok": len(lp), "jobs": n_jobs,
            "load_py_us": med(lp) * 1e6, "load_rust_us": med(lr) * 1e6, "load_share": med(lp) / med(lr)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="fewer blocks (a smoke run)")
    ap.add_argument("--sizes", default="64KiB,2MiB", help="block sizes to run (64KiB, 2MiB)")
    args = ap.parse_args()
    # (layers, kv heads, head dim) -> bytes per 16-token bf16 block = 2*L*H*D*2*16
    shapes = [("64KiB", 4, 2, 128, 512 if args.quick else 2048),
              ("2MiB", 32, 8, 128, 16 if args.quick else 128)]
    out = []
    for label, layers, heads, dim, n in shapes:
        if label not in args.sizes.split(","):
            continue
        with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_DIR")) as tmp:
            bb = 2 * layers * heads * dim * 2 * BLOCK
            s, manager = build(tmp, layers, heads, dim, 2 * n + 2 * BATCH, bb)
            fs, kv = manager.secondary_tiers
            view = np.asarray(kv._primary_kv_view).view(np.uint8)
            view[:n] = np.random.default_rng(0).integers(0, 256, size=(n, view.shape[1]), dtype=np.uint8)
            row = {"block": label, "block_bytes": kv.block_size_bytes, "n": n}
            _, row["fs"] = run_stream(fs, view, n, 1)
            keys, row["kvtier"] = run_stream(kv, view, n, 2)
            ref = view[:n].copy()  # python_share() below reuses chunks 0..128
            row["python_share"] = python_share(kv, view)
            # Restart kvtier on the same directory: loads now come from G3.
            kv.shutdown()
            kv2 = SecondaryTierFactory.create_secondary_tier(
                {"type": "KvtierTier", "module_path": "kvtier.vllm", "path": os.path.join(tmp, "kvtier")},
                kv._primary_kv_view, kv._offloading_spec)
            view[n : 2 * n] = 0
            ids, t = [], time.perf_counter()
            for j in jobs(70000, keys, n):
                kv2.submit_load(j)
                ids.append(j.job_id)
            done = wait(kv2, ids)
            row["kvtier_reopened_load_s"] = time.perf_counter() - t
            row["kvtier_reopened_ok"] = all(r.success for r in done.values())
            row["kvtier_reopened_bytes_equal"] = bool((view[n : 2 * n] == ref).all())
            kv2.shutdown()
            for name in ("fs", "kvtier"):
                r = row[name]
                r["store_blocks_per_s"] = n / r["store_s"]
                r["load_blocks_per_s"] = n / r["load_s"]
            row["ratio_store"] = row["kvtier"]["store_blocks_per_s"] / row["fs"]["store_blocks_per_s"]
            row["ratio_load"] = row["kvtier"]["load_blocks_per_s"] / row["fs"]["load_blocks_per_s"]
            row["ratio_reopened_load"] = row["kvtier"]["load_s"] and (
                (n / row["kvtier_reopened_load_s"]) / row["fs"]["load_blocks_per_s"])
            try:
                fs.shutdown()
            except Exception:
                pass
            out.append(row)
            print(json.dumps(row, indent=1), flush=True)
    print("SUMMARY")
    for r in out:
        print(f"{r['block']:>6} n={r['n']:5d}  store blocks/s fs {r['fs']['store_blocks_per_s']:9.0f} "
              f"kvtier {r['kvtier']['store_blocks_per_s']:9.0f} ({r['ratio_store']:.2f}x)  "
              f"load fs {r['fs']['load_blocks_per_s']:9.0f} kvtier {r['kvtier']['load_blocks_per_s']:9.0f} "
              f"({r['ratio_load']:.2f}x; reopened {r['ratio_reopened_load']:.2f}x)  "
              f"lookup us/key fs {r['fs']['lookup_us_per_key']:.2f} kvtier {r['kvtier']['lookup_us_per_key']:.2f}  "
              f"python share store {r['python_share']['store_share']:.1%} load {r['python_share']['load_share']:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
