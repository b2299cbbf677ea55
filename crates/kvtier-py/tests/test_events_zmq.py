"""KV events from the Python package's store: with `[events]` in its config,
the blocks it holds are announced over ZMQ under the engine's own hash (the
integer vLLM publishes for a key: its last eight bytes, big-endian), and
vLLM's own event classes decode the stream."""

import time

import msgspec
import numpy as np
import zmq
from vllm.distributed import kv_events

import kvtier

from test_raw_api import BB, wait


def replayed_events(ctx, endpoint):
    """Every buffered batch, from sequence 0, through the replay socket."""
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(endpoint)
    dealer.send_multipart([b"", (0).to_bytes(8, "big")])
    decoder = msgspec.msgpack.Decoder(type=kv_events.KVEventBatch)
    events = []
    try:
        while True:
            assert dealer.poll(10000), "replay reply"
            frames = dealer.recv_multipart()
            if frames == [b"", b"", (-1).to_bytes(8, "big", signed=True), b""]:
                return events
            _, _, _, payload = frames
            events.extend(decoder.decode(payload).events)
    finally:
        dealer.close(linger=0)


def test_the_store_publishes_engine_hashes(tmp_path, small_config):
    pub, rep = f"ipc://{tmp_path}/events", f"ipc://{tmp_path}/replay"
    cfg = tmp_path / "events.toml"
    cfg.write_text(
        open(small_config).read()
        + f'[events]\nendpoint = "{pub}"\nreplay_endpoint = "{rep}"\nlinger_ms = 0\n'
    )
    n = 24
    keys = [b"\x07" * 24 + (1000 + i).to_bytes(8, "big") for i in range(n)]
    want = {1000 + i for i in range(n)}
    ctx = zmq.Context()
    try:
        with kvtier.Store(BB, path=str(tmp_path / "g3"), config=str(cfg), namespace="m") as s:
            src = np.random.default_rng(1).integers(0, 256, size=(n, BB), dtype=np.uint8)
            s.attach(src)
            s.submit_store(1, keys, np.arange(n, dtype=np.int64))
            assert wait(s, [1])[1][0]
            deadline = time.monotonic() + 30
            while True:
                events = replayed_events(ctx, rep)
                held = {}
                for e in events:
                    if isinstance(e, kv_events.BlockStored):
                        held.setdefault(e.medium, set()).update(e.block_hashes)
                    elif isinstance(e, kv_events.BlockRemoved):
                        held.setdefault(e.medium, set()).difference_update(e.block_hashes)
                announced = set().union(*held.values()) if held else set()
                if want <= announced:
                    break
                assert time.monotonic() < deadline, f"announced {sorted(announced)[:5]}..."
                time.sleep(0.05)
            assert announced == want, "only the stored blocks, under the engine's hashes"
            assert set(held) <= {"CPU", "STORAGE"}, held.keys()
    finally:
        ctx.term()
