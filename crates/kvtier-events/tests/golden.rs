//! Golden frames: the exact bytes kvtier publishes for fixed batches, in both
//! encodings, committed under `tests/golden/`. Any encoding change fails here;
//! `tests/python/test_vllm_decode.py` decodes the same files with vLLM's own
//! event classes. Regenerate (after checking the change is intended) with
//! `KVTIER_BLESS=1 cargo test -p kvtier-events --test golden -- --test-threads=1`.

use kvtier_events::{encode_batch, EventBatch, WireEvent, WireFormat};
use serde_json::json;
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

/// A `BlockStored` event without LoRA.
fn stored(
    block_hashes: Vec<u64>,
    parent_block_hash: Option<u64>,
    token_ids: Vec<u32>,
    block_size: u32,
    medium: &str,
) -> WireEvent {
    WireEvent::BlockStored {
        block_hashes,
        parent_block_hash,
        token_ids,
        block_size,
        lora_id: None,
        medium: Some(medium.into()),
        lora_name: None,
    }
}

/// The messages: `(topic, seq, batch)`.
fn messages(format: WireFormat) -> Vec<(String, u64, EventBatch)> {
    let topic = match format {
        WireFormat::Map => String::new(),
        WireFormat::Array => "kv@pod-0@llama".to_string(),
    };
    vec![
        (
            topic.clone(),
            0,
            EventBatch {
                ts: 1_700_000_000.25,
                events: vec![
                    WireEvent::AllBlocksCleared,
                    stored(vec![1, 2, u64::MAX, 1 << 63], None, vec![], 16, "GPU"),
                    stored(
                        vec![42, 300],
                        Some(2),
                        vec![7, 8, 9, 10, 70_000, 0, 1, 128],
                        4,
                        "CPU",
                    ),
                    WireEvent::BlockRemoved {
                        block_hashes: vec![1, u64::MAX],
                        medium: Some("STORAGE".into()),
                    },
                ],
                data_parallel_rank: Some(0),
            },
        ),
        (
            topic,
            1,
            EventBatch {
                ts: 1_700_000_001.5,
                events: vec![WireEvent::BlockRemoved {
                    block_hashes: vec![42],
                    medium: Some("CPU".into()),
                }],
                data_parallel_rank: Some(3),
            },
        ),
    ]
}

/// Frames file: per message, a u32 big-endian frame count, then each frame
/// as a u32 big-endian length and its bytes.
fn frames(format: WireFormat) -> Vec<u8> {
    let mut out = Vec::new();
    for (topic, seq, batch) in messages(format) {
        let frames = [
            topic.into_bytes(),
            seq.to_be_bytes().to_vec(),
            encode_batch(&batch, format),
        ];
        out.extend_from_slice(&(frames.len() as u32).to_be_bytes());
        for f in frames {
            out.extend_from_slice(&(f.len() as u32).to_be_bytes());
            out.extend_from_slice(&f);
        }
    }
    out
}

fn expected(format: WireFormat) -> String {
    let v: Vec<_> = messages(format)
        .into_iter()
        .map(|(topic, seq, b)| {
            json!({
                "topic": topic,
                "seq": seq,
                "ts": b.ts,
                "data_parallel_rank": b.data_parallel_rank,
                "events": b.events,
            })
        })
        .collect();
    serde_json::to_string_pretty(&v).unwrap() + "\n"
}

fn check(name: &str, got: &[u8]) {
    let path = dir().join(name);
    if std::env::var_os("KVTIER_BLESS").is_some() {
        std::fs::write(&path, got).unwrap();
        return;
    }
    let want = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with KVTIER_BLESS=1 to create it)",
            path.display()
        )
    });
    assert!(
        want == got,
        "{name} changed: the wire encoding is not what the golden file (and vLLM) expect"
    );
}

#[test]
fn frames_match_the_golden_files() {
    for format in [WireFormat::Map, WireFormat::Array] {
        check(&format!("{}.frames", format.name()), &frames(format));
        check(
            &format!("{}.expected.json", format.name()),
            expected(format).as_bytes(),
        );
    }
}

#[test]
fn golden_files_decode_back() {
    for format in [WireFormat::Map, WireFormat::Array] {
        let bytes = std::fs::read(dir().join(format!("{}.frames", format.name()))).unwrap();
        let mut at = 0;
        let mut take = |n: usize| {
            let s = &bytes[at..at + n];
            at += n;
            s.to_vec()
        };
        for (topic, seq, batch) in messages(format) {
            let count = u32::from_be_bytes(take(4).try_into().unwrap());
            assert_eq!(count, 3);
            let mut f = Vec::new();
            for _ in 0..3 {
                let len = u32::from_be_bytes(take(4).try_into().unwrap()) as usize;
                f.push(take(len));
            }
            assert_eq!(f[0], topic.as_bytes());
            assert_eq!(f[1], seq.to_be_bytes());
            assert_eq!(kvtier_events::decode_batch(&f[2]).unwrap(), batch);
        }
    }
}
