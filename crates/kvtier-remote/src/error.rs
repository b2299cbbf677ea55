//! [`RemoteError`]: why a G4 tier cannot be opened.

/// Why a G4 tier cannot be opened (reads and writes never fail a request:
/// they count a miss or a skipped block).
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// A `[g4]` value is out of range.
    #[error("[g4] {field}: {why}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        why: String,
    },
    /// The URL names no usable store.
    #[error("[g4] url '{url}': {why}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        why: String,
    },
    /// Not inside a tokio runtime.
    #[error("a G4 tier must be opened inside a tokio runtime")]
    NoRuntime,
}
