//! Full verification of recovered records against the data file's bytes.

use kvtier_memory::HostVisible;
use xxhash_rust::xxh3::Xxh3;

use super::format::Record;

/// xxh3-64 of a block's bytes, regions in layer order (the checksum
/// [`Record::checksum`] holds; same as `kvtier_offload::block_checksum`).
pub fn block_checksum(mem: &dyn HostVisible, slot: u32) -> Result<u64, kvtier_memory::MemoryError> {
    let view = mem.block(slot as usize)?;
    let mut h = Xxh3::new();
    for r in view.regions() {
        h.update(r);
    }
    Ok(h.digest())
}

/// Full verification: re-read every record's block from `mem` (e.g. a
/// [`crate::DiskMemory`]) and check its checksum. Returns `(ok, bad)`, each in
/// input order; a block that cannot be read counts as bad.
pub fn verify_full(records: &[Record], mem: &dyn HostVisible) -> (Vec<Record>, Vec<Record>) {
    verify_full_with(records, |r| block_checksum(mem, r.slot).ok())
}

/// [`verify_full`] with any block reader: `checksum_of(record)` returns the
/// checksum of the block's current bytes, or `None` if it cannot be read.
pub fn verify_full_with(
    records: &[Record],
    mut checksum_of: impl FnMut(&Record) -> Option<u64>,
) -> (Vec<Record>, Vec<Record>) {
    let mut ok = Vec::with_capacity(records.len());
    let mut bad = Vec::new();
    for r in records {
        if checksum_of(r) == Some(r.checksum) {
            ok.push(*r);
        } else {
            bad.push(*r);
        }
    }
    (ok, bad)
}
