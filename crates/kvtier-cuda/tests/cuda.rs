//! CUDA tier tests. GPU tests skip with a printed reason when no driver/GPU is
//! present; the CPU-only fallbacks are tested everywhere.

use std::sync::Arc;

use kvtier_cuda::*;
use kvtier_memory::*;

fn gpu() -> Option<CudaDevice> {
    match CudaDevice::open(0) {
        Ok(d) => Some(d),
        Err(e) => {
            println!("SKIPPED (no GPU): {e}");
            None
        }
    }
}

#[test]
fn no_driver_is_a_typed_error_not_a_panic() {
    match probe_driver() {
        Ok(()) => println!("a CUDA driver is present; nothing to check"),
        Err(e) => {
            assert!(e.to_string().starts_with("no CUDA driver found"), "{e}");
            assert!(matches!(CudaDevice::open(0), Err(CudaError::NoDriver(_))));
            assert!(matches!(CudaDevice::count(), Err(CudaError::NoDriver(_))));
        }
    }
}

#[test]
fn pinned_fallback_round_trips_through_mock_device() {
    for separate in [false, true] {
        let l = if separate {
            Layout::layer_separate(BlockShape::tiny(), 64).unwrap()
        } else {
            Layout::contiguous(BlockShape::tiny(), 64).unwrap()
        };
        let pinned = Arc::new(PinnedMemory::new(None, l).unwrap());
        assert!(!pinned.is_page_locked());
        assert_eq!(pinned.kind(), MemoryKind::Pinned);
        let dev: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(l).unwrap());
        let data: Vec<u8> = (0..512).map(|i| (i * 7) as u8).collect();
        pinned.write_block(5, &data).unwrap();
        let p: Arc<dyn BlockMemory> = pinned.clone();
        let e = MemcpyEngine::new(2).unwrap();
        e.copy_blocks(&p, &dev, &[(5, 40)]).unwrap().wait().unwrap();
        e.copy_blocks(&dev, &p, &[(40, 6)]).unwrap().wait().unwrap();
        assert_eq!(pinned.read_block(6).unwrap(), data);
    }
}

#[test]
fn gpu_round_trips_all_strategies() {
    let Some(dev) = gpu() else { return };
    for strategy in [
        CopyStrategy::Memcpy,
        CopyStrategy::Kernel,
        CopyStrategy::Auto,
    ] {
        if strategy != CopyStrategy::Memcpy {
            if let Err(e) = probe_nvrtc() {
                println!("SKIPPED kernel strategy: {e}");
                continue;
            }
        }
        let engine = CudaCopyEngine::new(&dev, 2, strategy).unwrap();
        for separate in [false, true] {
            let l = if separate {
                Layout::layer_separate(BlockShape::tiny(), 1024).unwrap()
            } else {
                Layout::contiguous(BlockShape::tiny(), 1024).unwrap()
            };
            let pinned = Arc::new(PinnedMemory::new(Some(&dev), l).unwrap());
            let back = Arc::new(PinnedMemory::new(Some(&dev), l).unwrap());
            let d: Arc<dyn BlockMemory> = Arc::new(DeviceMemory::new(&dev, l).unwrap());
            let d2: Arc<dyn BlockMemory> = Arc::new(DeviceMemory::new(&dev, l).unwrap());
            for b in 0..1024 {
                let data: Vec<u8> = (0..512).map(|i| (i as u8) ^ (b as u8)).collect();
                pinned.write_block(b, &data).unwrap();
            }
            let p: Arc<dyn BlockMemory> = pinned.clone();
            let bk: Arc<dyn BlockMemory> = back.clone();
            let pairs: Vec<_> = (0..1024).map(|i| (i, (i * 7) % 1024)).collect();
            engine.copy_blocks(&p, &d, &pairs).unwrap().wait().unwrap();
            let inv: Vec<_> = pairs.iter().map(|&(a, b)| (b, a)).collect();
            let id: Vec<_> = (0..1024).map(|i| (i, i)).collect();
            engine.copy_blocks(&d, &d2, &id).unwrap().wait().unwrap();
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            rt.block_on(engine.copy_blocks(&d2, &bk, &inv).unwrap())
                .unwrap();
            for b in 0..1024 {
                assert_eq!(pinned.read_block(b).unwrap(), back.read_block(b).unwrap());
            }
        }
    }
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    const N: usize = 1024;

    fn layout(separate: bool) -> Layout {
        if separate {
            Layout::layer_separate(BlockShape::tiny(), N).unwrap()
        } else {
            Layout::contiguous(BlockShape::tiny(), N).unwrap()
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Pinned (CPU-only fallback) -> mock device / host -> pinned, byte-exact.
        #[test]
        fn pinned_fallback_round_trip(
            n in 1usize..=N,
            off in 0usize..N,
            l_a in any::<bool>(), l_b in any::<bool>(), l_c in any::<bool>(),
            mid_mock in any::<bool>(),
        ) {
            let a = Arc::new(PinnedMemory::new(None, layout(l_a)).unwrap());
            let c = Arc::new(PinnedMemory::new(None, layout(l_c)).unwrap());
            let mid: Arc<dyn BlockMemory> = if mid_mock {
                Arc::new(MockDeviceMemory::new(layout(l_b)).unwrap())
            } else {
                Arc::new(HostMemory::new(layout(l_b)).unwrap())
            };
            for b in 0..n {
                let data: Vec<u8> = (0..512).map(|i| (i as u8) ^ (b as u8) ^ (off as u8)).collect();
                a.write_block(b, &data).unwrap();
            }
            let e = MemcpyEngine::new(2).unwrap();
            let down: Vec<_> = (0..n).map(|i| (i, (i + off) % N)).collect();
            let up: Vec<_> = down.iter().map(|&(x, y)| (y, x)).collect();
            let ad: Arc<dyn BlockMemory> = a.clone();
            let cd: Arc<dyn BlockMemory> = c.clone();
            e.copy_blocks(&ad, &mid, &down).unwrap().wait().unwrap();
            e.copy_blocks(&mid, &cd, &up).unwrap().wait().unwrap();
            for b in 0..n {
                prop_assert_eq!(a.read_block(b).unwrap(), c.read_block(b).unwrap());
            }
        }
    }
}
