//! [`EngineError`]: everything the engine core refuses, typed so bindings
//! can raise a matching exception.

use crate::config::ConfigError;
use crate::setup::SetupError;

/// Why an engine-core call was refused.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The TOML config is missing, unreadable or invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The G3 directory is held by another open cache (another process or
    /// another store in this one).
    #[error("{0}")]
    DirectoryInUse(String),
    /// The cache could not be built from a valid config.
    #[error(transparent)]
    Setup(SetupError),
    /// The engine's block size cannot be laid out.
    #[error("block size of {block_bytes} bytes is not usable: {reason}")]
    BlockSize {
        /// The size given.
        block_bytes: usize,
        /// Why not.
        reason: String,
    },
    /// The host buffer does not hold a whole number of blocks.
    #[error("buffer of {len} bytes is not a whole number of {block_bytes}-byte blocks")]
    BufferSize {
        /// Buffer length.
        len: usize,
        /// Block size.
        block_bytes: usize,
    },
    /// The host buffer's start is not aligned.
    #[error("buffer at address {addr:#x} is not aligned to {align} bytes")]
    BufferAlignment {
        /// Start address.
        addr: usize,
        /// Required alignment.
        align: usize,
    },
    /// A chunk id lies past the buffer's last block.
    #[error("chunk id {chunk} is out of range: the buffer holds {chunks} blocks")]
    ChunkOutOfRange {
        /// The chunk id.
        chunk: i64,
        /// Blocks in the buffer.
        chunks: usize,
    },
    /// A chunk's segments do not add up to one block.
    #[error("chunk {chunk}: its segments hold {bytes} bytes, a block is {block_bytes}")]
    SegmentSize {
        /// The chunk's position in the job.
        chunk: usize,
        /// Bytes its segments hold.
        bytes: usize,
        /// Block size.
        block_bytes: usize,
    },
    /// Keys and chunk ids differ in number.
    #[error("{keys} keys but {chunks} chunk ids")]
    LengthMismatch {
        /// Keys given.
        keys: usize,
        /// Chunk ids given.
        chunks: usize,
    },
    /// A job with this id is still in flight.
    #[error("job id {0} is already in flight")]
    DuplicateJob(u64),
    /// The store was closed.
    #[error("the kvtier store is closed")]
    Closed,
    /// Keys given as hashes while an event sink is set: stored events name
    /// engine keys, so the job needs the keys themselves.
    #[error("an event sink is set: submit the keys, not their hashes")]
    KeysNeeded,
    /// An internal worker failed (the job is reported failed).
    #[error("kvtier worker: {0}")]
    Worker(String),
    /// The `[events]` publisher could not start (bad endpoint, port in use).
    #[error("KV events: {0}")]
    Events(#[from] kvtier_events::EventsError),
}

impl From<SetupError> for EngineError {
    fn from(e: SetupError) -> Self {
        match e {
            SetupError::G3(j @ kvtier_disk::journal::JournalError::Locked { .. }) => {
                EngineError::DirectoryInUse(j.to_string())
            }
            SetupError::Config(c) => EngineError::Config(c),
            other => EngineError::Setup(other),
        }
    }
}
