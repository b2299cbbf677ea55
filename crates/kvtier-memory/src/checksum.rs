//! The block checksum every tier agrees on: xxh3-64 of a block's canonical
//! bytes (its regions in layer order). The offload engine stores it when a
//! block lands in a lower tier and checks it on the way up; a persistent G3
//! journal records it beside each block.

use crate::error::MemoryError;
use crate::memory::HostVisible;

/// xxh3-64 of block `block`'s bytes, regions in layer order (so the same
/// bytes give the same checksum in either layout kind). Fails like
/// [`HostVisible::block`] (out of range, busy).
pub fn block_checksum(mem: &dyn HostVisible, block: usize) -> Result<u64, MemoryError> {
    let view = mem.block(block)?;
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for r in view.regions() {
        h.update(r);
    }
    Ok(h.digest())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BlockShape, HostMemory, Layout};

    #[test]
    fn same_bytes_same_checksum_in_either_layout() {
        let shape = BlockShape::tiny();
        let a = HostMemory::new(Layout::contiguous(shape, 2).unwrap()).unwrap();
        let b = HostMemory::new(Layout::layer_separate(shape, 2).unwrap()).unwrap();
        let bytes: Vec<u8> = (0..shape.block_bytes().unwrap()).map(|i| i as u8).collect();
        a.write_block(1, &bytes).unwrap();
        b.write_block(0, &bytes).unwrap();
        let sum = block_checksum(&a, 1).unwrap();
        assert_eq!(sum, block_checksum(&b, 0).unwrap());
        assert_eq!(sum, xxhash_rust::xxh3::xxh3_64(&bytes));
        assert_ne!(sum, block_checksum(&a, 0).unwrap());
    }
}
