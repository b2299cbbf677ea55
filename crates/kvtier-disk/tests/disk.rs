//! Disk tier: round-trip properties and bad-input handling.

use std::sync::Arc;

use kvtier_disk::*;
use kvtier_memory::testing::*;
use kvtier_memory::*;
use proptest::prelude::*;

const N: usize = 1024;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]
    #[test]
    fn host_disk_round_trip(
        n in 1usize..=N, mmap in any::<bool>(),
        l_src in any::<bool>(), l_disk in any::<bool>(), l_dst in any::<bool>(),
        seed in proptest::collection::vec(any::<usize>(), N),
        seed2 in proptest::collection::vec(any::<usize>(), N),
        mock_src in any::<bool>(),
        threads in 1usize..4,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let io = if mmap { DiskIo::Mmap } else { DiskIo::Direct };
        let mut engine = DiskCopyEngine::new(io, threads).unwrap();
        engine.set_min_part(4096);
        let src_h = Arc::new(HostMemory::new(tiny_layout(l_src, N)).unwrap());
        let dst_h = Arc::new(HostMemory::new(tiny_layout(l_dst, N)).unwrap());
        let disk: Arc<dyn BlockMemory> = Arc::new(
            DiskMemory::open(dir.path().join("g3"), tiny_layout(l_disk, N), OpenMode::CreateNew).unwrap(),
        );
        let a = distinct_ids(&seed, n, N);
        let b = distinct_ids(&seed2, n, N);
        fill_blocks(&src_h, &a, 17, 0x5a);
        let mut s: Arc<dyn BlockMemory> = src_h.clone();
        if mock_src {
            // Mock device -> disk directly (G1 -> G3 path of a CPU-only node).
            let m: Arc<dyn BlockMemory> = Arc::new(MockDeviceMemory::new(tiny_layout(l_src, N)).unwrap());
            let pairs: Vec<_> = a.iter().map(|&x| (x, x)).collect();
            MemcpyEngine::new(1).unwrap().copy_blocks(&s, &m, &pairs).unwrap().wait().unwrap();
            s = m;
        }
        prop_assert_eq!(round_trip_mismatch(&engine, &s, &disk, &dst_h, &src_h, &a, &b), None);
    }
}

#[test]
fn aligned_blocks_use_o_direct_and_persist() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("g3");
    let shape = BlockShape::llama3_8b().with_block_size(2); // 256 KiB blocks, 8 KiB layers
    let l = Layout::layer_separate(shape, 8).unwrap();
    let host = Arc::new(HostMemory::new(l).unwrap());
    let data: Vec<u8> = (0..l.block_bytes()).map(|i| (i % 251) as u8).collect();
    host.write_block(3, &data).unwrap();
    {
        let disk = Arc::new(DiskMemory::open(&path, l, OpenMode::CreateNew).unwrap());
        assert!(disk.is_direct(), "ext4 accepts O_DIRECT");
        let e = DiskCopyEngine::new(DiskIo::Direct, 2).unwrap();
        let h: Arc<dyn BlockMemory> = host.clone();
        let dd: Arc<dyn BlockMemory> = disk.clone();
        e.copy_blocks(&h, &dd, &[(3, 6)]).unwrap().wait().unwrap();
        disk.flush_range(6).unwrap();
        // The mapping sees what O_DIRECT wrote.
        assert_eq!(disk.read_block(6).unwrap(), data);
    }
    // Reopen: the block survived.
    let disk = DiskMemory::open(&path, l, OpenMode::OpenExisting).unwrap();
    assert_eq!(disk.read_block(6).unwrap(), data);
    disk.flush().unwrap();
}

#[test]
fn bad_inputs_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let l = tiny_layout(false, 16);
    // Parent directory missing: refused, nothing created.
    let e =
        DiskMemory::open(dir.path().join("no/such/dir/g3"), l, OpenMode::OpenOrCreate).unwrap_err();
    assert!(matches!(e, DiskError::Open { .. }), "{e}");
    assert!(!dir.path().join("no").exists());
    // Existing file of the wrong size: refused, not resized.
    let p = dir.path().join("wrong");
    std::fs::write(&p, b"hello").unwrap();
    let e = DiskMemory::open(&p, l, OpenMode::OpenOrCreate).unwrap_err();
    assert!(
        matches!(
            e,
            DiskError::WrongSize {
                expected: 8192,
                found: 5,
                ..
            }
        ),
        "{e}"
    );
    assert_eq!(std::fs::metadata(&p).unwrap().len(), 5);
    // CreateNew over an existing file.
    assert!(matches!(
        DiskMemory::open(&p, l, OpenMode::CreateNew),
        Err(DiskError::Open { .. })
    ));
    // OpenExisting of a missing file.
    assert!(DiskMemory::open(dir.path().join("missing"), l, OpenMode::OpenExisting).is_err());
    // A layout that does not fit the disk: refused at start-up, file removed.
    let huge = Layout::contiguous(BlockShape::llama3_70b(), 1 << 30).unwrap(); // 5 PiB
    let hp = dir.path().join("huge");
    let e = DiskMemory::open(&hp, huge, OpenMode::OpenOrCreate).unwrap_err();
    assert!(matches!(e, DiskError::NoSpace { .. }), "{e}");
    assert!(!hp.exists());
    // A layout that overflows never gets to the disk.
    assert!(Layout::contiguous(BlockShape::llama3_70b(), usize::MAX / 4096).is_err());
    // The engine refuses pairs it cannot serve.
    let disk: Arc<dyn BlockMemory> =
        Arc::new(DiskMemory::open(dir.path().join("ok"), l, OpenMode::CreateNew).unwrap());
    let e = DiskCopyEngine::new(DiskIo::Direct, 1).unwrap();
    assert!(matches!(
        e.copy_blocks(&disk, &disk, &[(0, 1)]),
        Err(CopyError::Unsupported { .. })
    ));
    let h: Arc<dyn BlockMemory> = Arc::new(HostMemory::new(l).unwrap());
    assert!(e.copy_blocks(&h, &disk, &[(0, 16)]).is_err());
    let other: Arc<dyn BlockMemory> = Arc::new(
        HostMemory::new(Layout::contiguous(BlockShape::tiny().with_dtype_bytes(1), 32).unwrap())
            .unwrap(),
    );
    assert_eq!(
        e.copy_blocks(&other, &disk, &[(20, 1)]).unwrap_err(),
        CopyError::ShapeMismatch
    );
    // Only the configured files exist in the directory.
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, vec!["ok", "wrong"]);
}

#[test]
fn tmpfs_falls_back_from_o_direct() {
    let shm = std::path::Path::new("/dev/shm");
    if !shm.is_dir() {
        println!("skipping: no /dev/shm here");
        return;
    }
    let Ok(dir) = tempfile::tempdir_in(shm) else {
        println!("skipping: /dev/shm not writable");
        return;
    };
    let l = Layout::contiguous(BlockShape::llama3_8b().with_block_size(1), 4).unwrap();
    let disk = Arc::new(DiskMemory::open(dir.path().join("g3"), l, OpenMode::CreateNew).unwrap());
    println!("O_DIRECT on /dev/shm: {}", disk.is_direct());
    let host = Arc::new(HostMemory::new(l).unwrap());
    host.write_block(1, &vec![3u8; l.block_bytes()]).unwrap();
    let e = DiskCopyEngine::new(DiskIo::Direct, 1).unwrap();
    let h: Arc<dyn BlockMemory> = host.clone();
    let d: Arc<dyn BlockMemory> = disk.clone();
    e.copy_blocks(&h, &d, &[(1, 2)]).unwrap().wait().unwrap();
    assert_eq!(disk.read_block(2).unwrap(), vec![3u8; l.block_bytes()]);
}
