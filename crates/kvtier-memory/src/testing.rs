//! Helpers shared by the round-trip property tests of the memory kinds and
//! copy engines (this crate's and the disk tier's). Behind the `testing`
//! feature: not part of the library an engine embeds.

use std::sync::Arc;

use crate::{BlockMemory, BlockShape, CopyEngine, HostMemory, HostVisible, Layout};

/// A layout of `n` tiny blocks, layer-separate or contiguous.
pub fn tiny_layout(separate: bool, n: usize) -> Layout {
    let r = if separate {
        Layout::layer_separate(BlockShape::tiny(), n)
    } else {
        Layout::contiguous(BlockShape::tiny(), n)
    };
    r.expect("the tiny shape fits any block count used by tests")
}

/// `n` distinct ids in `0..total`, a permutation prefix drawn from `seed`
/// (which has at least `n` entries).
pub fn distinct_ids(seed: &[usize], n: usize, total: usize) -> Vec<usize> {
    let mut v: Vec<usize> = (0..total).collect();
    for (i, s) in seed.iter().enumerate().take(n) {
        let j = i + s % (total - i);
        v.swap(i, j);
    }
    v.truncate(n);
    v
}

/// Write a distinct byte pattern (derived from the position `k`, `mul` and
/// `fill`) into each block of `ids`.
pub fn fill_blocks(mem: &HostMemory, ids: &[usize], mul: u8, fill: u8) {
    let bb = mem.layout().block_bytes();
    for (k, &blk) in ids.iter().enumerate() {
        let data: Vec<u8> = (0..bb)
            .map(|i| (i as u8) ^ (k as u8).wrapping_mul(mul) ^ fill)
            .collect();
        mem.write_block(blk, &data).expect("test block in range");
    }
}

/// Copy blocks `a` of `src` into blocks `b` of `mid` (waiting on the
/// transfer), back from `b` into `a` of `dst` (awaiting it as a future), and
/// return the first block whose bytes differ between `expect` and `dst`.
pub fn round_trip_mismatch(
    engine: &dyn CopyEngine,
    src: &Arc<dyn BlockMemory>,
    mid: &Arc<dyn BlockMemory>,
    dst: &Arc<HostMemory>,
    expect: &HostMemory,
    a: &[usize],
    b: &[usize],
) -> Option<usize> {
    let down: Vec<_> = a.iter().copied().zip(b.iter().copied()).collect();
    engine.copy_blocks(src, mid, &down).unwrap().wait().unwrap();
    let up: Vec<_> = b.iter().copied().zip(a.iter().copied()).collect();
    let d: Arc<dyn BlockMemory> = dst.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(engine.copy_blocks(mid, &d, &up).unwrap())
        .unwrap();
    a.iter()
        .copied()
        .find(|&blk| expect.read_block(blk).unwrap() != dst.read_block(blk).unwrap())
}

/// Flip the bits of one byte of `file` at `offset` (XOR `mask`) and sync it:
/// the corruption a test plants behind the cache's back.
pub fn flip_byte(file: &std::path::Path, offset: u64, mask: u8) {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .expect("open the file to corrupt");
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset)
        .expect("offset inside the file");
    b[0] ^= mask;
    f.write_all_at(&b, offset).expect("write the flipped byte");
    f.sync_all().expect("sync the corrupted file");
}
