//! The identity of a G3 directory ([`G3Header`]), how it is compared with
//! what the caller expects, and what to do on a mismatch.

use kvtier_memory::{layout_fingerprint, BlockShape, LayoutKind};

/// Default G3 directory format version for [`G3Header::new`].
pub const FORMAT_VERSION: u32 = 1;

/// Identity of a G3 directory: a journal written for another identity is
/// refused (or reset on request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct G3Header {
    /// Caller-defined format version of the G3 directory.
    pub format_version: u32,
    /// Fingerprint of the block layout (model shape, block size, dtype, layout kind).
    pub layout_fingerprint: u64,
    /// Cache salt the sequence hashes were computed with.
    pub salt: u64,
    /// Number of blocks in the data file.
    pub num_blocks: u64,
}

impl G3Header {
    /// A header with [`FORMAT_VERSION`].
    pub fn new(layout_fingerprint: u64, salt: u64, num_blocks: u64) -> Self {
        G3Header {
            format_version: FORMAT_VERSION,
            layout_fingerprint,
            salt,
            num_blocks,
        }
    }

    /// The header of a G3 directory of `num_blocks` blocks of `shape`
    /// arranged as `kind`, for hashes salted with `salt`.
    pub fn for_layout(shape: &BlockShape, kind: LayoutKind, salt: u64, num_blocks: u64) -> Self {
        G3Header::new(layout_fingerprint(shape, kind), salt, num_blocks)
    }
}

/// What opening does with a journal written for another [`G3Header`], an
/// unreadable header, or (for a whole G3 directory) any other damage that
/// keeps it from opening.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnMismatch {
    /// Refuse with a typed error naming what differs.
    Refuse,
    /// Discard the old contents and start empty with the expected identity.
    Reset,
}

/// A header field that can mismatch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeaderField {
    /// [`G3Header::format_version`].
    FormatVersion,
    /// [`G3Header::layout_fingerprint`].
    LayoutFingerprint,
    /// [`G3Header::salt`].
    Salt,
    /// [`G3Header::num_blocks`].
    NumBlocks,
}

impl std::fmt::Display for HeaderField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            HeaderField::FormatVersion => "format_version",
            HeaderField::LayoutFingerprint => "layout_fingerprint",
            HeaderField::Salt => "salt",
            HeaderField::NumBlocks => "num_blocks",
        })
    }
}

/// A field's value as messages show it.
pub(crate) fn show(field: HeaderField, v: u64) -> String {
    match field {
        HeaderField::LayoutFingerprint | HeaderField::Salt => format!("{v:#018x}"),
        _ => v.to_string(),
    }
}

/// The first field where `found` differs from `expected`.
pub(crate) fn check_header(
    found: &G3Header,
    expected: &G3Header,
) -> Option<(HeaderField, u64, u64)> {
    let pairs = [
        (
            HeaderField::FormatVersion,
            found.format_version as u64,
            expected.format_version as u64,
        ),
        (
            HeaderField::LayoutFingerprint,
            found.layout_fingerprint,
            expected.layout_fingerprint,
        ),
        (HeaderField::Salt, found.salt, expected.salt),
        (
            HeaderField::NumBlocks,
            found.num_blocks,
            expected.num_blocks,
        ),
    ];
    pairs.into_iter().find(|(_, f, e)| f != e)
}
