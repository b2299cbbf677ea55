//! Python exceptions: one type per kind of refusal, all subclasses of
//! `kvtier.KvtierError`.

use kvtier::engine::EngineError;
use pyo3::create_exception;
use pyo3::prelude::*;

create_exception!(
    kvtier,
    KvtierError,
    pyo3::exceptions::PyException,
    "Base of every kvtier error."
);
create_exception!(
    kvtier,
    ConfigError,
    KvtierError,
    "The config is missing, unreadable or invalid."
);
create_exception!(
    kvtier,
    DirectoryInUseError,
    KvtierError,
    "The directory is held by another open store."
);
create_exception!(
    kvtier,
    BadBufferError,
    KvtierError,
    "A buffer of the wrong size, alignment, shape or access."
);
create_exception!(
    kvtier,
    ChunkRangeError,
    KvtierError,
    "A chunk id or page address outside the buffer."
);
create_exception!(
    kvtier,
    BadInputError,
    KvtierError,
    "Keys and chunks that do not match, or a key of the wrong type."
);
create_exception!(
    kvtier,
    DuplicateJobError,
    KvtierError,
    "A job id that is still in flight."
);
create_exception!(kvtier, ClosedError, KvtierError, "The store was closed.");

/// Add the exception types to module `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("KvtierError", py.get_type::<KvtierError>())?;
    m.add("ConfigError", py.get_type::<ConfigError>())?;
    m.add("DirectoryInUseError", py.get_type::<DirectoryInUseError>())?;
    m.add("BadBufferError", py.get_type::<BadBufferError>())?;
    m.add("ChunkRangeError", py.get_type::<ChunkRangeError>())?;
    m.add("BadInputError", py.get_type::<BadInputError>())?;
    m.add("DuplicateJobError", py.get_type::<DuplicateJobError>())?;
    m.add("ClosedError", py.get_type::<ClosedError>())?;
    Ok(())
}

/// The Python exception for `e`.
pub fn to_py(e: EngineError) -> PyErr {
    let msg = e.to_string();
    match e {
        // A bad `[events]` endpoint is a config error too.
        EngineError::Config(_) | EngineError::Events(_) => ConfigError::new_err(msg),
        EngineError::DirectoryInUse(_) => DirectoryInUseError::new_err(msg),
        EngineError::BlockSize { .. }
        | EngineError::BufferSize { .. }
        | EngineError::BufferAlignment { .. }
        | EngineError::SegmentSize { .. } => BadBufferError::new_err(msg),
        EngineError::ChunkOutOfRange { .. } => ChunkRangeError::new_err(msg),
        EngineError::LengthMismatch { .. } | EngineError::KeysNeeded => BadInputError::new_err(msg),
        EngineError::DuplicateJob(_) => DuplicateJobError::new_err(msg),
        EngineError::Closed => ClosedError::new_err(msg),
        EngineError::Setup(_) | EngineError::Worker(_) => KvtierError::new_err(msg),
    }
}
