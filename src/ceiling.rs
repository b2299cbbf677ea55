//! Bandwidth ceilings measured in the same run as a replay, for its floor:
//! single-thread memcpy, and raw sequential file I/O in the disk tier's
//! directory (positioned writes then reads of the same bytes).

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Instant;

/// Single-thread memcpy bandwidth in bytes/s over `bytes` (best of 5 passes).
pub fn memcpy_bandwidth(bytes: usize) -> f64 {
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0u8; bytes];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.copy_from_slice(&src);
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best.max(1e-9)
}

/// Raw sequential write+read bandwidth (bytes/s, the two directions' bytes
/// over their total time) of a scratch file of `bytes` in `dir`. The write is
/// followed by `fdatasync`, so it measures the device, not only the page cache.
pub fn file_bandwidth(dir: &Path, bytes: usize) -> std::io::Result<f64> {
    let path = dir.join(".kvtier-ceiling.tmp");
    let chunk = vec![0xa5u8; 1 << 20];
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(true)
            .read(true)
            .write(true)
            .open(&path)?;
        let t = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len());
            f.write_all(&chunk[..n])?;
            left -= n;
        }
        f.sync_data()?;
        f.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; 1 << 20];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len());
            f.read_exact(&mut buf[..n])?;
            left -= n;
        }
        Ok((2 * bytes) as f64 / t.elapsed().as_secs_f64().max(1e-9))
    })();
    let _ = std::fs::remove_file(&path);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_something_positive() {
        assert!(memcpy_bandwidth(1 << 20) > 0.0);
        let d = tempfile::tempdir().unwrap();
        assert!(file_bandwidth(d.path(), 4 << 20).unwrap() > 0.0);
        assert!(!d.path().join(".kvtier-ceiling.tmp").exists());
    }
}
