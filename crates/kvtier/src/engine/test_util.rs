//! Helpers shared by the engine-core tests: keys, block patterns, buffers.

use super::*;
use std::path::Path;

/// `n` distinct keys tagged `tag`.
pub(super) fn keys(n: usize, tag: u8) -> Vec<Vec<u8>> {
    (0..n)
        .map(|i| [vec![tag; 4], (i as u64).to_le_bytes().to_vec()].concat())
        .collect()
}

/// `n` blocks of `block_bytes` of a pattern tagged `tag` (u64 storage:
/// 8-byte aligned).
pub(super) fn pattern_of(n: usize, tag: u8, block_bytes: usize) -> Vec<u64> {
    (0..n * block_bytes / 8)
        .map(|i| (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ tag as u64)
        .collect()
}

/// The vector as a host buffer.
pub(super) fn buf(v: &mut [u64]) -> HostBuffer {
    // SAFETY: every vector outlives the jobs using it (each test drains).
    unsafe { HostBuffer::new(v.as_mut_ptr().cast(), v.len() * 8) }
}

/// `n` keys tagged `tag` and a pattern of as many blocks of `block_bytes`.
pub(super) fn blocks_of(n: usize, tag: u8, block_bytes: usize) -> (Vec<Vec<u8>>, Vec<u64>) {
    (keys(n, tag), pattern_of(n, tag, block_bytes))
}

/// A new temporary directory and a store `open` opens on it (the directory
/// lives as long as the first element).
pub(super) fn fresh_with(open: fn(&Path) -> EngineCore) -> (tempfile::TempDir, EngineCore) {
    let dir = tempfile::tempdir().unwrap();
    let core = open(dir.path());
    (dir, core)
}
