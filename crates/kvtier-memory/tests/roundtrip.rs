//! Property tests: byte-exact round trips host -> X -> host for every memory
//! kind of this crate (host, mock device), both layouts, random block ids and
//! batches of 1..=1024 blocks.

use std::sync::Arc;

use kvtier_memory::*;
use proptest::prelude::*;

const N: usize = 1024;

fn mem(kind: u8, layout: Layout) -> Arc<dyn BlockMemory> {
    match kind {
        0 => Arc::new(HostMemory::new(layout).unwrap()),
        _ => Arc::new(MockDeviceMemory::new(layout).unwrap()),
    }
}

fn layout(separate: bool) -> Layout {
    if separate {
        Layout::layer_separate(BlockShape::tiny(), N).unwrap()
    } else {
        Layout::contiguous(BlockShape::tiny(), N).unwrap()
    }
}

/// `n` distinct ids in `0..N` from a seed permutation.
fn ids(seed: &[usize], n: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..N).collect();
    for (i, s) in seed.iter().enumerate().take(n) {
        let j = i + s % (N - i);
        v.swap(i, j);
    }
    v.truncate(n);
    v
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]
    #[test]
    fn round_trip(
        n in 1usize..=N,
        seed in proptest::collection::vec(any::<usize>(), N),
        seed2 in proptest::collection::vec(any::<usize>(), N),
        mid_kind in 0u8..2,
        l_src in any::<bool>(), l_mid in any::<bool>(), l_dst in any::<bool>(),
        threads in 1usize..4,
        fill in any::<u8>(),
    ) {
        let engine = {
            let mut e = MemcpyEngine::new(threads).unwrap();
            e.set_min_part(4096);
            if threads == 3 {
                e.set_inline_max(0);
            }
            e
        };
        let src_h = Arc::new(HostMemory::new(layout(l_src)).unwrap());
        let dst_h = Arc::new(HostMemory::new(layout(l_dst)).unwrap());
        let mid = mem(mid_kind, layout(l_mid));
        let a = ids(&seed, n);
        let b = ids(&seed2, n);
        let bb = src_h.layout().block_bytes();
        for (k, &blk) in a.iter().enumerate() {
            let data: Vec<u8> = (0..bb).map(|i| (i as u8) ^ (k as u8).wrapping_mul(31) ^ fill).collect();
            src_h.write_block(blk, &data).unwrap();
        }
        let s: Arc<dyn BlockMemory> = src_h.clone();
        let d: Arc<dyn BlockMemory> = dst_h.clone();
        let down: Vec<_> = a.iter().copied().zip(b.iter().copied()).collect();
        engine.copy_blocks(&s, &mid, &down).unwrap().wait().unwrap();
        // Back up into the same ids as the source, through the future path.
        let up: Vec<_> = b.iter().copied().zip(a.iter().copied()).collect();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(engine.copy_blocks(&mid, &d, &up).unwrap()).unwrap();
        for &blk in &a {
            prop_assert_eq!(src_h.read_block(blk).unwrap(), dst_h.read_block(blk).unwrap());
        }
    }
}

#[test]
fn busy_blocks_are_refused_and_released() {
    let l = layout(false);
    let h = Arc::new(HostMemory::new(l).unwrap());
    let m: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(l).unwrap());
    let e = MemcpyEngine::new(1).unwrap();
    let hd: Arc<dyn BlockMemory> = h.clone();
    let view = h.block_mut(3).unwrap();
    let err = e.copy_blocks(&hd, &m, &[(2, 2), (3, 3)]).unwrap_err();
    assert_eq!(
        err,
        CopyError::Busy {
            side: "source",
            block: 3
        }
    );
    drop(view);
    // Nothing stayed locked by the failed submission.
    e.copy_blocks(&hd, &m, &[(2, 2), (3, 3)])
        .unwrap()
        .wait()
        .unwrap();
    e.copy_blocks(&m, &hd, &[(2, 5)]).unwrap().wait().unwrap();
    assert!(h.block_mut(5).is_ok());
    assert!(e.copy_blocks(&hd, &m, &[(0, N)]).is_err());
    assert!(e.copy_blocks(&hd, &hd, &[(1, 1)]).is_err());
}
