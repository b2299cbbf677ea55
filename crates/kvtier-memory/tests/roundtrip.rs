//! Property tests: byte-exact round trips host -> X -> host for every memory
//! kind of this crate (host, mock device), both layouts, random block ids and
//! batches of 1..=1024 blocks.

use std::sync::Arc;

use kvtier_memory::testing::*;
use kvtier_memory::*;
use proptest::prelude::*;

const N: usize = 1024;

fn mem(kind: u8, layout: Layout) -> Arc<dyn BlockMemory> {
    match kind {
        0 => Arc::new(HostMemory::new(layout).unwrap()),
        _ => Arc::new(MockDeviceMemory::new(layout).unwrap()),
    }
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
        let src_h = Arc::new(HostMemory::new(tiny_layout(l_src, N)).unwrap());
        let dst_h = Arc::new(HostMemory::new(tiny_layout(l_dst, N)).unwrap());
        let mid = mem(mid_kind, tiny_layout(l_mid, N));
        let a = distinct_ids(&seed, n, N);
        let b = distinct_ids(&seed2, n, N);
        fill_blocks(&src_h, &a, 31, fill);
        let s: Arc<dyn BlockMemory> = src_h.clone();
        prop_assert_eq!(round_trip_mismatch(&engine, &s, &mid, &dst_h, &src_h, &a, &b), None);
    }
}

#[test]
fn busy_blocks_are_refused_and_released() {
    let l = tiny_layout(false, N);
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
