//! `kvtier._native`: the Python binding of kvtier's engine core
//! ([`kvtier::engine`]). The Python package `kvtier` wraps it as a vLLM
//! secondary tier (`kvtier.vllm.KvtierTier`) and an SGLang HiCache storage
//! backend (`kvtier.sglang.KvtierStore`).
//!
//! | module | one idea |
//! | --- | --- |
//! | [`errors`] | the Python exception types and the mapping from [`EngineError`](kvtier::engine::EngineError) |
//! | [`convert`] | keys, chunk ids and buffers read from Python objects |
//! | [`store`] | the `Store` class: open, lookup, jobs, poll, drain, close |
//!
//! Every call that does work releases the GIL; every bad input raises a
//! typed exception (nothing from Python reaches an unchecked address:
//! buffers are held through the buffer protocol, and raw page addresses
//! must lie inside an attached buffer).

use pyo3::prelude::*;

pub mod convert;
pub mod errors;
pub mod store;

/// The extension module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<store::Store>()?;
    errors::register(m)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
