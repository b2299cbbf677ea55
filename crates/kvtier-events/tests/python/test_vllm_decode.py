"""kvtier's KV-event frames decoded with vLLM's own event classes.

The golden files under ../golden/ are written by the Rust test
`tests/golden.rs` (which fails if kvtier's encoding changes). Here vLLM's
classes (`vllm.distributed.kv_events`) decode them through msgspec:

- map format: with vLLM's `KVEventBatch` as is (vLLM >= 0.33 sends this);
- array format: with array-like versions of the same classes, built from
  vLLM's own field lists (the layout SGLang, older vLLM and llm-d use).

Every field is checked against `<format>.expected.json`, and msgspec's
re-encoding of the decoded objects must give back kvtier's bytes exactly.

The last test runs the `kvtier` binary (target/release/kvtier, or $KVTIER_BIN)
and reads its live stream and replay socket with pyzmq.

Run with the engines virtualenv (vllm==0.33.0, msgspec, pyzmq, pytest):
    cargo build --release -p kvtier-cli
    $HOME/.cache/kvtier/engines-venv/bin/python -m pytest crates/kvtier-events/tests/python
"""

import json
import os
import pathlib
import struct
import subprocess
import time
from typing import Union

import msgspec
import pytest

kv_events = pytest.importorskip("vllm.distributed.kv_events")

GOLDEN = pathlib.Path(__file__).resolve().parent.parent / "golden"
EVENT_CLASSES = ("BlockStored", "BlockRemoved", "AllBlocksCleared")


def read_messages(path):
    """Messages of a golden frames file: lists of frames."""
    data = path.read_bytes()
    at = 0

    def take(n):
        nonlocal at
        chunk = data[at : at + n]
        assert len(chunk) == n, "truncated golden file"
        at += n
        return chunk

    messages = []
    while at < len(data):
        (count,) = struct.unpack(">I", take(4))
        frames = []
        for _ in range(count):
            (length,) = struct.unpack(">I", take(4))
            frames.append(take(length))
        messages.append(frames)
    return messages


def array_like(cls, name=None, **extra):
    """`cls` (a msgspec Struct) re-declared array-like, same fields and tag."""
    fields = []
    for f in msgspec.structs.fields(cls):
        if f.default is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, f.default))
        elif f.default_factory is not msgspec.NODEFAULT:
            fields.append((f.name, f.type, msgspec.field(default_factory=f.default_factory)))
        else:
            fields.append((f.name, f.type))
    return msgspec.defstruct(
        name or cls.__name__, fields, array_like=True, omit_defaults=True, **extra
    )


def array_batch(events):
    """vLLM's (array-like) batch holding array-like `events` classes."""
    return msgspec.defstruct(
        "KVEventBatch",
        [
            ("ts", float),
            ("events", list[Union[tuple(events.values())]]),
            ("data_parallel_rank", Union[int, None], None),
        ],
        array_like=True,
        omit_defaults=True,
    )


# All of vLLM 0.33's fields, array-like: decodes kvtier's arrays (msgspec
# fills the trailing optional fields with their defaults).
ARRAY_BATCH = array_batch(
    {n: array_like(getattr(kv_events, n), tag=True) for n in EVENT_CLASSES}
)
# vLLM's required fields only (the layout older vLLM, SGLang and llm-d use):
# msgspec encodes these exactly as kvtier does. (msgspec ignores
# `omit_defaults` for array-like structs, so the full classes would append
# nine nils to every BlockStored.)
LEGACY_EVENTS = {
    n: msgspec.defstruct(
        n,
        [
            (f.name, f.type)
            for f in msgspec.structs.fields(getattr(kv_events, n))
            if f.default is msgspec.NODEFAULT and f.default_factory is msgspec.NODEFAULT
        ],
        array_like=True,
        tag=True,
    )
    for n in EVENT_CLASSES
}
LEGACY_BATCH = array_batch(LEGACY_EVENTS)


def as_vllm(event):
    """The vLLM class instance with the same field values."""
    cls = getattr(kv_events, type(event).__name__)
    return cls(**msgspec.structs.asdict(event))


def check_event(ev, want):
    assert isinstance(ev, getattr(kv_events, want["type"])), (ev, want)
    for name, value in want.items():
        if name == "type":
            continue
        assert getattr(ev, name) == value, (name, getattr(ev, name), value)
    # Fields kvtier does not send keep vLLM's defaults.
    for f in msgspec.structs.fields(type(ev)):
        if f.name not in want and f.default is not msgspec.NODEFAULT:
            assert getattr(ev, f.name) == f.default, f.name


def cases():
    for fmt in ("map", "array"):
        messages = read_messages(GOLDEN / f"{fmt}.frames")
        expected = json.loads((GOLDEN / f"{fmt}.expected.json").read_text())
        assert len(messages) == len(expected) > 0
        for frames, want in zip(messages, expected):
            yield pytest.param(fmt, frames, want, id=f"{fmt}-seq{want['seq']}")


@pytest.mark.parametrize("fmt,frames,want", list(cases()))
def test_golden_frames_decode_with_vllm_classes(fmt, frames, want):
    topic, seq, payload = frames  # vLLM's 3 frames
    assert topic == want["topic"].encode()
    assert len(seq) == 8 and int.from_bytes(seq, "big") == want["seq"]
    if fmt == "map":
        batch = msgspec.msgpack.Decoder(kv_events.KVEventBatch).decode(payload)
        events = batch.events
    else:
        batch = msgspec.msgpack.Decoder(ARRAY_BATCH).decode(payload)
        events = [as_vllm(e) for e in batch.events]
    assert batch.ts == want["ts"]
    assert batch.data_parallel_rank == want["data_parallel_rank"]
    assert len(events) == len(want["events"])
    for ev, w in zip(events, want["events"]):
        check_event(ev, w)
    # msgspec writes exactly kvtier's bytes for the decoded objects.
    if fmt == "map":
        assert msgspec.msgpack.encode(batch) == payload
    else:
        legacy = msgspec.msgpack.Decoder(LEGACY_BATCH).decode(payload)
        assert [as_vllm(e) for e in legacy.events] == events
        assert msgspec.msgpack.encode(legacy) == payload


def test_map_payload_is_what_vllm_would_send():
    """Built with vLLM's classes directly, vLLM's encoder gives the golden bytes."""
    messages = read_messages(GOLDEN / "map.frames")
    want = json.loads((GOLDEN / "map.expected.json").read_text())[0]
    events = []
    for e in want["events"]:
        fields = {k: v for k, v in e.items() if k != "type"}
        events.append(getattr(kv_events, e["type"])(**fields))
    batch = kv_events.KVEventBatch(
        ts=want["ts"], events=events, data_parallel_rank=want["data_parallel_rank"]
    )
    assert msgspec.msgpack.encode(batch) == messages[0][2]


def kvtier_binary():
    path = os.environ.get("KVTIER_BIN") or str(
        pathlib.Path(__file__).resolve().parents[4] / "target" / "release" / "kvtier"
    )
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path}: build it first (cargo build --release -p kvtier-cli) or set KVTIER_BIN")
    return path


def test_live_stream_and_replay_decode_with_vllm(tmp_path):
    """A real replay publishing over ZMQ, read with pyzmq (libzmq): every
    live batch decodes with vLLM's KVEventBatch, sequence numbers run from 0
    without a gap, and the replay socket answers a DEALER exactly as vLLM 0.33
    does ([b"", topic, seq, payload] ..., then [b"", b"", -1, b""]) with the
    same bytes as the live stream."""
    zmq = pytest.importorskip("zmq")
    pub = f"ipc://{tmp_path}/pub"
    rep = f"ipc://{tmp_path}/replay"
    ctx = zmq.Context()
    sub = ctx.socket(zmq.SUB)
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.connect(pub)  # libzmq retries until the publisher binds
    proc = subprocess.Popen(
        [
            kvtier_binary(), "replay", "--no-data", "--g1-blocks", "500",
            "--g2-blocks", "0", "--g3-blocks", "0", "--policy", "lru", "--limit", "400", "--json",
            "--events", pub, "--events-replay", rep, "--events-wait-subscriber", "60",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    decoder = msgspec.msgpack.Decoder(kv_events.KVEventBatch)
    live = {}
    replayed = None
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline:
            if not sub.poll(3000):
                break  # the stream went quiet
            topic, seq, payload = sub.recv_multipart()
            assert topic == b"" and len(seq) == 8
            live[int.from_bytes(seq, "big")] = payload
            decoder.decode(payload)
            if replayed is None:
                dealer = ctx.socket(zmq.DEALER)
                dealer.connect(rep)
                dealer.send_multipart([b"", (0).to_bytes(8, "big")])
                replayed = []
                while True:
                    assert dealer.poll(10000), "replay reply"
                    frames = dealer.recv_multipart()
                    if frames == [b"", b"", (-1).to_bytes(8, "big", signed=True), b""]:
                        break
                    delim, topic, seq, payload = frames
                    assert delim == b"" and topic == b""
                    replayed.append((int.from_bytes(seq, "big"), payload))
                dealer.close(linger=0)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
        sub.close(linger=0)
        ctx.term()
    assert proc.returncode == 0, err.decode()
    report = json.loads(out)["events"]
    n = report["metrics"]["batches"]
    assert sorted(live) == list(range(n)), "every batch, from 0, no gap"
    first = decoder.decode(live[0])
    assert isinstance(first.events[0], kv_events.AllBlocksCleared)
    stored = sum(
        len(e.block_hashes)
        for p in live.values()
        for e in decoder.decode(p).events
        if isinstance(e, kv_events.BlockStored)
    )
    removed = sum(
        len(e.block_hashes)
        for p in live.values()
        for e in decoder.decode(p).events
        if isinstance(e, kv_events.BlockRemoved)
    )
    assert stored - removed == 500  # the trace overflows a 500-block tier
    assert replayed and replayed[0][0] == 0
    for seq, payload in replayed:
        assert live[seq] == payload, f"replayed batch {seq} differs from the live one"
