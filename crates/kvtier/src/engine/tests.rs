//! Engine-core tests: round trips, corruption, drain, reopen, the lock,
//! events, bad input.

use super::test_util::{blocks_of, buf, fresh_with, keys, pattern_of};
use super::*;
use std::path::Path;
use std::sync::Arc;

const BB: usize = 4096;

fn small_config(dir: &Path) -> std::path::PathBuf {
    let p = dir.join("engine-test.toml");
    std::fs::write(
        &p,
        "salt = \"t\"\n[g1]\nbytes = \"1MiB\"\n[g2]\nbytes = \"2MiB\"\n[g3]\nbytes = \"16MiB\"\n\
         [offload]\ng1_to_g2 = { mode = \"write-back\" }\ng2_to_g3 = { mode = \"write-through\" }\n\
         disk_io = \"mmap\"\nclean_ahead = 16\n",
    )
    .unwrap();
    p
}

fn open(dir: &Path) -> EngineCore {
    let cfg = small_config(dir);
    EngineCore::open(
        &EngineOptions::new(BB, Some(&dir.join("g3")), "test-model").with_config(Some(&cfg)),
    )
    .unwrap()
}

fn pattern(n: usize, tag: u8) -> Vec<u64> {
    pattern_of(n, tag, BB)
}

fn blocks(n: usize, tag: u8) -> (Vec<Vec<u8>>, Vec<u64>) {
    blocks_of(n, tag, BB)
}

fn fresh() -> (tempfile::TempDir, EngineCore) {
    fresh_with(open)
}

fn store_all(core: &EngineCore, job: u64, keys: &[Vec<u8>], data: &mut [u64]) -> JobResult {
    let chunks: Vec<i64> = (0..keys.len() as i64).collect();
    // SAFETY: drained before `data` goes.
    unsafe { core.submit_store(job, keys, &chunks, buf(data)).unwrap() };
    core.drain();
    let r = core.poll_finished();
    assert_eq!(r.len(), 1);
    r.into_iter().next().unwrap()
}

fn load_all(core: &EngineCore, job: u64, keys: &[Vec<u8>], out: &mut [u64]) -> JobResult {
    let chunks: Vec<i64> = (0..keys.len() as i64).collect();
    // SAFETY: drained before `out` goes.
    unsafe { core.submit_load(job, keys, &chunks, buf(out)).unwrap() };
    core.drain();
    core.poll_finished().pop().unwrap()
}

#[test]
fn round_trips_are_byte_exact() {
    let (_dir, core) = fresh();
    for (tag, n) in [(1u8, 1usize), (2, 7), (3, 64), (4, 300)] {
        let (k, mut data) = blocks(n, tag);
        assert_eq!(core.lookup(&k).unwrap(), 0);
        let r = store_all(&core, tag as u64, &k, &mut data);
        assert!(r.ok, "{r:?}");
        assert_eq!(core.lookup(&k).unwrap(), n);
        let mut out = vec![0u64; data.len()];
        let r = load_all(&core, 100 + tag as u64, &k, &mut out);
        assert!(r.ok, "{r:?}");
        assert_eq!(out, data, "{n} blocks");
    }
    core.close().unwrap();
}

#[test]
fn lookup_counts_the_leading_run_and_missing_loads_leave_the_buffer() {
    let (_dir, core) = fresh();
    let (k, mut data) = blocks(4, 9);
    store_all(&core, 1, &k[..2], &mut data);
    assert_eq!(core.lookup(&k).unwrap(), 2);
    let mut out = vec![7u64; data.len()];
    let r = load_all(&core, 2, &k, &mut out);
    assert!(!r.ok);
    assert_eq!(r.ok_keys, vec![true, true, false, false]);
    assert_eq!(out[..2 * BB / 8], data[..2 * BB / 8]);
    assert!(out[2 * BB / 8..].iter().all(|&v| v == 7));
}

#[test]
fn reopen_finds_every_acknowledged_block_and_a_second_open_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (k, mut data) = blocks(200, 5);
    {
        let core = open(dir.path());
        let cfg = small_config(dir.path());
        let second = EngineCore::open(
            &EngineOptions::new(BB, Some(&dir.path().join("g3")), "test-model")
                .with_config(Some(&cfg)),
        );
        match second {
            Err(EngineError::DirectoryInUse(msg)) => assert!(msg.contains("in use"), "{msg}"),
            Err(e) => panic!("wrong error: {e}"),
            Ok(_) => panic!("second open accepted"),
        }
        assert!(store_all(&core, 1, &k, &mut data).ok);
        core.close().unwrap();
        assert!(matches!(core.lookup(&k), Err(EngineError::Closed)));
        // Closed (not yet dropped): the directory is free again.
        let again = open(dir.path());
        assert_eq!(again.lookup(&k).unwrap(), 200);
    }
    let core = open(dir.path());
    assert_eq!(core.recovery().unwrap().restored, 200);
    assert_eq!(core.lookup(&k).unwrap(), 200);
    let mut out = vec![0u64; data.len()];
    assert!(load_all(&core, 2, &k, &mut out).ok);
    assert_eq!(out, data);
}

#[test]
fn a_block_corrupted_on_disk_fails_and_the_buffer_is_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (k, mut data) = blocks(8, 6);
    {
        let core = open(dir.path());
        assert!(store_all(&core, 1, &k, &mut data).ok);
        core.close().unwrap();
    }
    // Flip every byte of the G3 data file.
    let path = dir.path().join("g3").join(kvtier_disk::journal::DATA_FILE);
    let mut bytes = std::fs::read(&path).unwrap();
    for b in &mut bytes {
        *b ^= 0xA5;
    }
    std::fs::write(&path, bytes).unwrap();
    let core = open(dir.path());
    let mut out = vec![3u64; data.len()];
    let r = load_all(&core, 2, &k, &mut out);
    assert!(!r.ok_keys[0], "{r:?}");
    assert!(
        out.iter().all(|&v| v == 3),
        "a failed load wrote into the buffer"
    );
}

#[test]
fn drain_waits_for_jobs_in_flight() {
    let (_dir, core) = fresh();
    let mut bufs: Vec<Vec<u64>> = (0..8).map(|j| pattern(32, j as u8)).collect();
    let all: Vec<Vec<Vec<u8>>> = (0..8).map(|j| keys(32, 50 + j as u8)).collect();
    let chunks: Vec<i64> = (0..32).collect();
    for (j, b) in bufs.iter_mut().enumerate() {
        // SAFETY: drained below, before the buffers go.
        unsafe {
            core.submit_store(j as u64, &all[j], &chunks, buf(b))
                .unwrap()
        };
    }
    core.drain();
    assert_eq!(core.in_flight(), 0);
    let mut done = core.poll_finished();
    done.sort_by_key(|r| r.job);
    assert_eq!(done.len(), 8);
    assert!(done.iter().all(|r| r.ok));
    for k in &all {
        assert_eq!(core.lookup(k).unwrap(), 32);
    }
}

#[test]
fn bad_input_is_refused_with_typed_errors() {
    let (_dir, core) = fresh();
    let (k, mut data) = blocks(2, 1);
    let data_ptr: *mut u8 = data.as_mut_ptr().cast();
    let b = buf(&mut data);
    let submit = |job: u64, keys: &[Vec<u8>], chunks: &[i64], b: HostBuffer| {
        // SAFETY: every call below is refused before a job starts, or drained
        // before `data` goes.
        unsafe { core.submit_store(job, keys, chunks, b) }
    };
    let e = submit(1, &k, &[0, 2], b).unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::ChunkOutOfRange {
                chunk: 2,
                chunks: 2
            }
        ),
        "{e}"
    );
    let e = submit(1, &k, &[0, -1], b).unwrap_err();
    assert!(matches!(e, EngineError::ChunkOutOfRange { .. }), "{e}");
    let e = submit(1, &k, &[0], b).unwrap_err();
    assert!(matches!(e, EngineError::LengthMismatch { .. }), "{e}");
    // SAFETY: a shorter view of `data`, refused before any job starts.
    let short = unsafe { HostBuffer::new(data_ptr, BB + 8) };
    let e = submit(1, &k, &[0, 0], short).unwrap_err();
    assert!(matches!(e, EngineError::BufferSize { .. }), "{e}");
    // SAFETY: inside `data`, refused before any job starts.
    let odd = unsafe { HostBuffer::new(data_ptr.add(1), BB) };
    let e = submit(1, &k[..1], &[0], odd).unwrap_err();
    assert!(matches!(e, EngineError::BufferAlignment { .. }), "{e}");
    submit(7, &k, &[0, 1], b).unwrap();
    core.drain();
    assert_eq!(core.poll_finished().len(), 1);
    let table = jobs::JobTable::default();
    table.begin(7).unwrap();
    assert!(matches!(table.begin(7), Err(EngineError::DuplicateJob(7))));
    core.close().unwrap();
    assert!(matches!(
        submit(8, &k, &[0, 1], b),
        Err(EngineError::Closed)
    ));
    let e = EngineCore::open(
        &EngineOptions::new(BB, None, "m").with_config(Some(Path::new("/nonexistent/x.toml"))),
    );
    assert!(matches!(e, Err(EngineError::Config(_))));
    let e = EngineCore::open(&EngineOptions::new(3, None, "m"));
    assert!(matches!(e, Err(EngineError::BlockSize { .. })));
}

#[test]
fn namespaces_separate_keys_and_refuse_each_others_directory() {
    let dir = tempfile::tempdir().unwrap();
    {
        let core = open(dir.path());
        assert!(store_all(&core, 1, &keys(1, 1), &mut pattern(1, 1)).ok);
        core.close().unwrap();
    }
    let cfg = small_config(dir.path());
    let other = EngineCore::open(
        &EngineOptions::new(BB, Some(&dir.path().join("g3")), "other-model")
            .with_config(Some(&cfg)),
    );
    match other {
        Err(e) => assert!(e.to_string().contains("salt"), "{e}"),
        Ok(_) => panic!("a directory of another namespace was accepted"),
    }
    let a = KeyHasher::new(1).hash(b"k");
    assert_ne!(a, KeyHasher::new(2).hash(b"k"));
    assert_ne!(a, KeyHasher::new(1).hash(b"k2"));
}

#[derive(Default)]
struct Collect(parking_lot::Mutex<Vec<EngineEvent>>);

impl EngineEventSink for Collect {
    fn on_event(&self, event: EngineEvent) {
        self.0.lock().push(event);
    }
}

#[test]
fn events_carry_the_engine_keys() {
    let (_dir, core) = fresh();
    let sink = Arc::new(Collect::default());
    core.enable_events(Some(sink.clone()));
    let (k, mut data) = blocks(3, 8);
    store_all(&core, 1, &k, &mut data);
    // Storing again announces nothing new.
    store_all(&core, 2, &k, &mut data);
    let evs = sink.0.lock().clone();
    assert_eq!(evs, vec![EngineEvent::Stored { keys: k.clone() }]);
    assert_eq!(EngineEvent::low64(&[1, 2]), 0x0102);
    assert_eq!(EngineEvent::low64(&[9, 0, 0, 0, 0, 0, 0, 0, 0xab]), 0xab);
    // Fill G3 (16 MiB = 4096 blocks) past capacity: early keys are removed.
    let (big, mut bd) = blocks(4500, 10);
    let chunks: Vec<i64> = (0..4500).collect();
    // SAFETY: drained before `bd` goes.
    unsafe { core.submit_store(3, &big, &chunks, buf(&mut bd)).unwrap() };
    core.drain();
    assert!(core.poll_finished()[0].ok);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let removed = sink
            .0
            .lock()
            .iter()
            .any(|e| matches!(e, EngineEvent::Removed { keys } if !keys.is_empty()));
        if removed || std::time::Instant::now() > deadline {
            assert!(removed, "no removed event after overfilling G3");
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    core.enable_events(None);
}

#[test]
fn chunks_split_in_segments_round_trip() {
    let (_dir, core) = fresh();
    let n = 5;
    let k = keys(n, 11);
    // Two "layers": the first 1 KiB of each block in one buffer, the rest in
    // another, as a layer-first paged pool hands them over.
    let mut first: Vec<u64> = (0..n * 128).map(|i| i as u64 * 3).collect();
    let mut rest: Vec<u64> = (0..n * 384).map(|i| i as u64 * 7 + 1).collect();
    let segs = |a: &mut Vec<u64>, b: &mut Vec<u64>| -> Vec<(usize, usize)> {
        let (pa, pb) = (a.as_mut_ptr() as usize, b.as_mut_ptr() as usize);
        (0..n)
            .flat_map(|i| [(pa + i * 1024, 1024), (pb + i * 3072, 3072)])
            .collect()
    };
    // SAFETY: the vectors outlive the drained job.
    let chunks = unsafe { Chunks::from_segments(segs(&mut first, &mut rest), n, BB) }.unwrap();
    // SAFETY: as above.
    unsafe { core.submit_chunks(JobKind::Store, 1, &k, chunks).unwrap() };
    core.drain();
    assert!(core.poll_finished()[0].ok);
    let (want_a, want_b) = (first.clone(), rest.clone());
    first.fill(0);
    rest.fill(0);
    // SAFETY: as above.
    let chunks = unsafe { Chunks::from_segments(segs(&mut first, &mut rest), n, BB) }.unwrap();
    // SAFETY: as above.
    unsafe { core.submit_chunks(JobKind::Load, 2, &k, chunks).unwrap() };
    core.drain();
    assert!(core.poll_finished()[0].ok);
    assert_eq!((first, rest), (want_a, want_b));
    // Segments that do not make a block are refused.
    // SAFETY: refused before use.
    let e = unsafe { Chunks::from_segments(vec![(8, 100), (16, 100)], 2, BB) }.unwrap_err();
    assert!(
        matches!(
            e,
            EngineError::SegmentSize {
                chunk: 0,
                bytes: 100,
                ..
            }
        ),
        "{e}"
    );
    // SAFETY: refused before use.
    let e = unsafe { Chunks::from_segments(vec![(8, BB); 3], 2, BB) }.unwrap_err();
    assert!(matches!(e, EngineError::LengthMismatch { .. }), "{e}");
}

/// With `[events]` in the config, every stored block is announced under the
/// engine's own hash (the integer vLLM publishes for the key), in the
/// store's media, and nothing else is.
#[test]
fn events_are_published_under_the_engine_hash() {
    use kvtier_events::{engine_key_low64, Mirror, Subscriber, SubscriberConfig};
    use std::collections::HashSet;
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_config(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(
        "[events]\nendpoint = \"tcp://127.0.0.1:0\"\nbind = true\n\
         replay_endpoint = \"tcp://127.0.0.1:0\"\nlinger_ms = 0\n",
    );
    std::fs::write(&cfg, text).unwrap();
    let opts = EngineOptions::new(BB, Some(&dir.path().join("g3")), "m").with_config(Some(&cfg));
    let core = EngineCore::open(&opts).unwrap();
    let (ep, replay) = core.events_endpoints().expect("publishing");
    let mut sub = Subscriber::connect(SubscriberConfig::new(ep, replay)).unwrap();
    let (k, mut data) = blocks(40, 7);
    assert!(store_all(&core, 1, &k, &mut data).ok);
    let want: HashSet<u64> = k.iter().map(|k| engine_key_low64(k)).collect();
    let mut mirror = Mirror::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    let held =
        |m: &Mirror| -> HashSet<u64> { m.set("CPU").union(&m.set("STORAGE")).copied().collect() };
    while held(&mirror) != want {
        assert!(Instant::now() < deadline, "announced {:?}", mirror.sizes());
        if let Some(d) = sub.next_batch(Duration::from_millis(100)).unwrap() {
            mirror.apply(&d);
        }
    }
    assert!(mirror.set("GPU").is_empty(), "the store is not GPU memory");
    assert_eq!(mirror.errors(), Default::default());
    core.close().unwrap();
}

/// With `[g4]` in the config, a block one engine store wrote is found and
/// loaded, byte-exact, by another node's store with empty local tiers.
#[test]
fn a_second_node_loads_through_the_shared_tier() {
    let dir = tempfile::tempdir().unwrap();
    let g4 = dir.path().join("bucket");
    std::fs::create_dir_all(&g4).unwrap();
    let cfg = small_config(dir.path());
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "[g4]\nurl = \"file://{}\"\nbackpressure = \"wait\"\n",
        g4.display()
    ));
    std::fs::write(&cfg, text).unwrap();
    let node = |g3: &str| {
        let opts = EngineOptions::new(BB, Some(&dir.path().join(g3)), "m").with_config(Some(&cfg));
        EngineCore::open(&opts).unwrap()
    };
    let (k, mut data) = blocks(30, 9);
    let a = node("g3-a");
    assert!(store_all(&a, 1, &k, &mut data).ok);
    a.close().unwrap(); // waits for the shared tier's writes
    let b = node("g3-b");
    assert_eq!(
        b.lookup(&k).unwrap(),
        30,
        "found in the shared tier's index"
    );
    let mut out = vec![0u64; data.len()];
    let r = load_all(&b, 2, &k, &mut out);
    assert!(r.ok, "{r:?}");
    assert_eq!(out, data);
    b.close().unwrap();
}

/// Jobs over keys hashed by the caller round-trip like jobs over keys, and
/// are refused while an event sink is set (its events name keys).
#[test]
fn hashed_jobs_round_trip_and_need_keys_with_events_on() {
    let (_dir, core) = fresh();
    let (k, mut data) = blocks(6, 12);
    let hashes = core.hasher().hash_all(&k);
    let whole = |v: &mut [u64]| {
        let b = buf(v);
        b.check_chunks(BB, &(0..6).collect::<Vec<i64>>()).unwrap()
    };
    // SAFETY: drained before `data` goes.
    unsafe {
        core.submit_hashed(JobKind::Store, 1, hashes.clone(), whole(&mut data))
            .unwrap()
    };
    core.drain();
    assert!(core.poll_finished()[0].ok);
    // Stored under the same hashes as keys: a load by key finds them.
    let mut out = vec![0u64; data.len()];
    assert!(load_all(&core, 2, &k, &mut out).ok);
    assert_eq!(out, data);
    out.fill(0);
    // SAFETY: drained before `out` goes.
    unsafe {
        core.submit_hashed(JobKind::Load, 3, hashes.clone(), whole(&mut out))
            .unwrap()
    };
    core.drain();
    assert!(core.poll_finished()[0].ok);
    assert_eq!(out, data);
    // One hash short of the chunks.
    // SAFETY: refused before use.
    let e = unsafe { core.submit_hashed(JobKind::Load, 4, hashes[..5].to_vec(), whole(&mut out)) }
        .unwrap_err();
    assert!(
        matches!(e, EngineError::LengthMismatch { keys: 5, chunks: 6 }),
        "{e}"
    );
    core.enable_events(Some(Arc::new(Collect::default())));
    // SAFETY: refused before use.
    let e = unsafe { core.submit_hashed(JobKind::Store, 5, hashes, whole(&mut data)) }.unwrap_err();
    assert!(matches!(e, EngineError::KeysNeeded), "{e}");
    core.enable_events(None);
}
