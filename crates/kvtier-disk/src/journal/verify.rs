//! Full verification of recovered records against the data file's bytes.

use kvtier_memory::{block_checksum, HostVisible};

use super::format::Record;

/// Full verification: re-read every record's block from `mem` (e.g. a
/// [`crate::DiskMemory`]) and check its checksum. Returns `(ok, bad)`, each in
/// input order; a block that cannot be read counts as bad.
pub fn verify_full(records: &[Record], mem: &dyn HostVisible) -> (Vec<Record>, Vec<Record>) {
    verify_full_with(records, |r| block_checksum(mem, r.slot as usize).ok())
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
