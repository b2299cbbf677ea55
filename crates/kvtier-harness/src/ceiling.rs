//! Bandwidth ceilings measured in the same run as a replay or benchmark:
//! single-thread memcpy, all-core memcpy over a working set well beyond the
//! last-level cache (the machine's memory bandwidth), and raw sequential
//! O_DIRECT file I/O in the disk tier's directory (the device's bandwidth,
//! writes then reads).

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

/// Size of the largest CPU cache (`/sys/devices/system/cpu/cpu0/cache`), or
/// 32 MiB when it cannot be read.
pub fn last_level_cache_bytes() -> usize {
    let mut best = 0usize;
    for i in 0..8 {
        let base = format!("/sys/devices/system/cpu/cpu0/cache/index{i}");
        let Ok(size) = std::fs::read_to_string(format!("{base}/size")) else {
            continue;
        };
        let size = size.trim();
        let (num, mult) = match size.strip_suffix('K') {
            Some(n) => (n, 1usize << 10),
            None => match size.strip_suffix('M') {
                Some(n) => (n, 1 << 20),
                None => (size, 1),
            },
        };
        if let Ok(n) = num.parse::<usize>() {
            best = best.max(n * mult);
        }
    }
    if best == 0 {
        32 << 20
    } else {
        best
    }
}

/// A working-set size that no CPU cache holds: 8x the last-level cache, at
/// least 256 MiB.
pub fn beyond_cache_bytes() -> usize {
    (8 * last_level_cache_bytes()).max(256 << 20)
}

/// Memory bandwidth with every core copying: `threads` threads each copy
/// their share of a `bytes` buffer into another (so `bytes` is well beyond
/// the caches), best of 5 passes, in bytes copied per second.
pub fn memcpy_bandwidth_all_cores(bytes: usize, threads: usize) -> f64 {
    let threads = threads.max(1);
    let src = vec![0x5au8; bytes];
    let mut dst = vec![0u8; bytes];
    let per = bytes.div_ceil(threads);
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        std::thread::scope(|s| {
            for (d, c) in dst.chunks_mut(per).zip(src.chunks(per)) {
                s.spawn(move || d.copy_from_slice(c));
            }
        });
        std::hint::black_box(&mut dst);
        best = best.min(t.elapsed().as_secs_f64());
    }
    bytes as f64 / best.max(1e-9)
}

/// Raw sequential file bandwidth of the device under `dir`, in bytes/s: a
/// scratch file of `bytes` written then read back in 8 MiB chunks with
/// O_DIRECT (the device, not the page cache), the two directions' bytes over
/// their total time. Falls back to buffered I/O with `fdatasync` and a
/// `POSIX_FADV_DONTNEED` before the read where O_DIRECT is refused (tmpfs).
pub fn file_bandwidth(dir: &Path, bytes: usize) -> std::io::Result<f64> {
    use std::os::unix::fs::{FileExt, OpenOptionsExt};
    let path = dir.join(".kvtier-ceiling.tmp");
    const CHUNK: usize = 8 << 20;
    let bytes = bytes.div_ceil(CHUNK).max(1) * CHUNK;
    let mut buf = kvtier_memory::AlignedBuf::zeroed(CHUNK, 4096)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    buf.as_mut_slice().fill(0xa5);
    let result = (|| {
        let open = |direct: bool| {
            let mut o = std::fs::OpenOptions::new();
            o.create(true).read(true).write(true);
            if direct {
                o.custom_flags(libc::O_DIRECT);
            }
            o.open(&path)
        };
        let (f, direct) = match open(true) {
            Ok(f) => (f, true),
            Err(_) => (open(false)?, false),
        };
        let t = Instant::now();
        for off in (0..bytes).step_by(CHUNK) {
            f.write_all_at(buf.as_slice(), off as u64)?;
        }
        f.sync_data()?;
        if !direct {
            use std::os::unix::io::AsRawFd;
            // SAFETY: valid fd; advisory call.
            unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        }
        for off in (0..bytes).step_by(CHUNK) {
            f.read_exact_at(buf.as_mut_slice(), off as u64)?;
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
        assert!(memcpy_bandwidth_all_cores(4 << 20, 2) > 0.0);
        assert!(last_level_cache_bytes() >= 1 << 10);
        assert!(beyond_cache_bytes() >= 256 << 20);
        let d = tempfile::tempdir().unwrap();
        assert!(file_bandwidth(d.path(), 4 << 20).unwrap() > 0.0);
        assert!(!d.path().join(".kvtier-ceiling.tmp").exists());
    }
}
