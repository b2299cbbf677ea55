//! Reading keys, chunk ids and buffers from Python objects.

use crate::errors::{BadBufferError, BadInputError};
use kvtier::engine::KeyHasher;
use kvtier::engine::SequenceHash;
use pyo3::buffer::{PyBuffer, PyUntypedBuffer};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

/// Engine keys: `bytes` (vLLM's block hash + group) or `str` (SGLang's
/// page hashes, taken as UTF-8), from any iterable.
pub fn keys(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for (i, item) in obj.try_iter()?.enumerate() {
        let item = item?;
        if let Ok(b) = item.cast::<PyBytes>() {
            out.push(b.as_bytes().to_vec());
        } else if let Ok(s) = item.cast::<PyString>() {
            out.push(s.to_str()?.as_bytes().to_vec());
        } else if let Ok(b) = PyBuffer::<u8>::get(&item) {
            out.push(b.to_vec(item.py())?);
        } else {
            return Err(BadInputError::new_err(format!(
                "key {i} is a {}, expected bytes or str",
                item.get_type().name()?
            )));
        }
    }
    Ok(out)
}

/// The hash of one key (`bytes`, `str` or a bytes-like buffer), hashed in
/// place: no copy of the key is made for `bytes` and `str`.
pub fn key_hash(item: &Bound<'_, PyAny>, i: usize, hasher: &KeyHasher) -> PyResult<SequenceHash> {
    if let Ok(b) = item.cast::<PyBytes>() {
        Ok(hasher.hash(b.as_bytes()))
    } else if let Ok(s) = item.cast::<PyString>() {
        Ok(hasher.hash(s.to_str()?.as_bytes()))
    } else if let Ok(b) = PyBuffer::<u8>::get(item) {
        Ok(hasher.hash(&b.to_vec(item.py())?))
    } else {
        Err(BadInputError::new_err(format!(
            "key {i} is a {}, expected bytes or str",
            item.get_type().name()?
        )))
    }
}

/// The hashes of engine keys (as [`keys`] takes them), one pass, no
/// per-key copy; lists and tuples are walked without the iterator protocol.
pub fn key_hashes(obj: &Bound<'_, PyAny>, hasher: &KeyHasher) -> PyResult<Vec<SequenceHash>> {
    fn all<'py>(
        items: impl Iterator<Item = Bound<'py, PyAny>>,
        hasher: &KeyHasher,
    ) -> PyResult<Vec<SequenceHash>> {
        items
            .enumerate()
            .map(|(i, k)| key_hash(&k, i, hasher))
            .collect()
    }
    if let Ok(l) = obj.cast::<PyList>() {
        return all(l.iter(), hasher);
    }
    if let Ok(t) = obj.cast::<PyTuple>() {
        return all(t.iter(), hasher);
    }
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for (i, item) in obj.try_iter()?.enumerate() {
        out.push(key_hash(&item?, i, hasher)?);
    }
    Ok(out)
}

/// Chunk ids: a numpy integer array (read through the buffer protocol) or
/// any iterable of ints.
pub fn chunk_ids(obj: &Bound<'_, PyAny>) -> PyResult<Vec<i64>> {
    let py = obj.py();
    if let Ok(b) = PyBuffer::<i64>::get(obj) {
        return b.to_vec(py);
    }
    if let Ok(b) = PyBuffer::<i32>::get(obj) {
        return Ok(b.to_vec(py)?.into_iter().map(i64::from).collect());
    }
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for (i, item) in obj.try_iter()?.enumerate() {
        let v: i64 = item?
            .extract()
            .map_err(|_| BadInputError::new_err(format!("chunk id {i} is not an integer")))?;
        out.push(v);
    }
    Ok(out)
}

/// Plain unsigned integers (page addresses or sizes).
pub fn usizes(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<usize>> {
    let mut out = Vec::with_capacity(obj.len().unwrap_or(0));
    for (i, item) in obj.try_iter()?.enumerate() {
        let v: usize = item?.extract().map_err(|_| {
            BadInputError::new_err(format!("{what} {i} is not a non-negative integer"))
        })?;
        out.push(v);
    }
    Ok(out)
}

/// A writable, C-contiguous buffer held for as long as jobs may use it.
pub struct Region {
    /// Keeps the exporter's memory alive and pinned.
    pub buffer: PyUntypedBuffer,
    /// Start address.
    pub addr: usize,
    /// Length in bytes.
    pub len: usize,
}

impl Region {
    /// Hold `obj`'s buffer; refused unless writable and C-contiguous.
    pub fn get(obj: &Bound<'_, PyAny>) -> PyResult<Region> {
        let buffer = PyUntypedBuffer::get(obj).map_err(|e| {
            BadBufferError::new_err(format!("the object does not export a buffer: {e}"))
        })?;
        if buffer.readonly() {
            return Err(BadBufferError::new_err(
                "the buffer is read-only: loads write into it",
            ));
        }
        if !buffer.is_c_contiguous() {
            return Err(BadBufferError::new_err("the buffer is not C-contiguous"));
        }
        let addr = buffer.buf_ptr() as usize;
        let len = buffer.len_bytes();
        Ok(Region { buffer, addr, len })
    }

    /// Whether `[addr, addr + len)` lies inside this region.
    pub fn holds(&self, addr: usize, len: usize) -> bool {
        addr >= self.addr
            && addr
                .checked_add(len)
                .is_some_and(|end| end <= self.addr + self.len)
    }
}
