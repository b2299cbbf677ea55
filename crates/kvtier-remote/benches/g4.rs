//! G4 store / load throughput against raw `object_store` put / get on the
//! same in-process S3 server in the same run, and the local index's lookup
//! cost per block.
//!
//! `cargo bench -p kvtier-remote --features testing --bench g4 [-- N]`

use futures::StreamExt;
use kvtier_logical::SequenceHash;
use kvtier_offload::{SharedBlock, SharedTier};
use kvtier_remote::index::Index;
use kvtier_remote::testing::{self, S3Server};
use kvtier_remote::{Backpressure, RemoteTier};
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use std::time::Instant;

const BLOCK: usize = 16_384;
const PARALLEL: usize = 16;
const ROUNDS: usize = 3;

fn block(i: u128) -> SharedBlock {
    let bytes: Vec<u8> = (0..BLOCK).map(|k| (k as u128 ^ i) as u8).collect();
    SharedBlock {
        hash: SequenceHash(i),
        checksum: xxhash_rust::xxh3::xxh3_64(&bytes),
        bytes,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(2_000);
    let rt = testing::runtime().unwrap();
    let dir = testing::scratch_dir().unwrap();
    rt.block_on(async {
        let server = S3Server::start(dir.path(), &["bench"]).await.unwrap();
        let raw = server.object_store("bench");
        let blocks: Vec<SharedBlock> = (0..n as u128).map(block).collect();
        let body = blocks[0].bytes.len() + kvtier_remote::format::HEADER_LEN;

        let mut cfg = server.config("bench", "g4");
        cfg.backpressure = Backpressure::Wait;
        cfg.in_flight = PARALLEL;
        cfg.read_parallelism = PARALLEL;
        cfg.deadline_ms = 60_000;
        // Raw puts and G4 stores alternate, ROUNDS each (new keys every
        // round); the best of each is reported (the machine is shared).
        let (mut raw_put, mut g4_put) = (0f64, 0f64);
        let mut g4 = None;
        for round in 0..ROUNDS {
            let t = Instant::now();
            futures::stream::iter(0..n)
                .map(|i| {
                    let raw = raw.clone();
                    let p = PutPayload::from(vec![i as u8; body]);
                    async move {
                        let key = Path::from(format!("raw/{round}/{i:08}"));
                        raw.put(&key, p).await.unwrap()
                    }
                })
                .buffer_unordered(PARALLEL)
                .count()
                .await;
            raw_put = raw_put.max(n as f64 / t.elapsed().as_secs_f64());
            let (store, prefix) = cfg.open_store().unwrap();
            let prefix = prefix.clone().join(format!("r{round}"));
            let tier = RemoteTier::open_with_store(store, prefix, cfg.clone(), 1, 2)
                .await
                .unwrap();
            let t = Instant::now();
            for b in blocks.iter() {
                tier.store(b.clone()).await;
            }
            tier.flush().await;
            g4_put = g4_put.max(n as f64 / t.elapsed().as_secs_f64());
            assert_eq!(tier.stats().objects_written, n as u64);
            g4 = Some(tier);
        }
        let g4 = g4.unwrap();

        // Raw gets and G4 loads (verified, onboardings of 64 blocks)
        // alternate, ROUNDS each; best of each.
        let hashes: Vec<SequenceHash> = (0..n as u128).map(SequenceHash).collect();
        let (mut raw_get, mut g4_get) = (0f64, 0f64);
        for _ in 0..ROUNDS {
            let t = Instant::now();
            futures::stream::iter(0..n)
                .map(|i| {
                    let raw = raw.clone();
                    async move {
                        let p = Path::from(format!("raw/0/{i:08}"));
                        raw.get(&p).await.unwrap().bytes().await.unwrap()
                    }
                })
                .buffered(PARALLEL)
                .count()
                .await;
            raw_get = raw_get.max(n as f64 / t.elapsed().as_secs_f64());
            let t = Instant::now();
            let mut got = 0;
            for chunk in hashes.chunks(64) {
                got += g4.load(chunk.to_vec()).await.len();
            }
            g4_get = g4_get.max(n as f64 / t.elapsed().as_secs_f64());
            assert_eq!(got, n);
        }
        g4.close().await;

        println!("objects {n} x {body} bytes, {PARALLEL} in flight, s3s-fs on 127.0.0.1, best of {ROUNDS}");
        println!(
            "store  raw put {raw_put:8.0} obj/s  G4 {g4_put:8.0} obj/s  ratio {:.2}",
            g4_put / raw_put
        );
        println!(
            "load   raw get {raw_get:8.0} obj/s  G4 {g4_get:8.0} obj/s  ratio {:.2}",
            g4_get / raw_get
        );
    });

    // Index lookups: 100,000 entries, prefixes of 64 blocks all present.
    let ix = Index::new();
    for i in 0..100_000u128 {
        ix.insert(SequenceHash(i * 7919), 16_448);
    }
    let q: Vec<Vec<SequenceHash>> = (0..1_000u128)
        .map(|r| {
            (0..64)
                .map(|k| SequenceHash(((r * 64 + k) % 100_000) * 7919))
                .collect()
        })
        .collect();
    let rounds = 50;
    let t = Instant::now();
    let mut total = 0;
    for _ in 0..rounds {
        for h in &q {
            total += ix.matched(std::hint::black_box(h));
        }
    }
    let ns = t.elapsed().as_nanos() as f64 / total as f64;
    assert_eq!(total, rounds * 64_000);
    println!("index  lookup {ns:.1} ns/block (100,000 entries, 64-block prefixes)");
}
