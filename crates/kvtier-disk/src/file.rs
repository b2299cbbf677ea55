//! [`DiskMemory`]: one preallocated file per tier (or shard), block id -> file
//! offset by the layout's arithmetic, reachable both through a shared mmap and
//! through positioned I/O (O_DIRECT where the file system allows it).
//!
//! # Flush semantics
//! Bytes written through the mapping (mmap mode, or [`HostVisible`] views) are
//! in the page cache and reach the disk when the kernel writes them back or when
//! [`DiskMemory::flush_range`] / [`DiskMemory::flush`] are called (`msync`
//! with `MS_SYNC` of the block's pages). Bytes written with O_DIRECT bypass the
//! page cache but, like any write, are durable only after
//! [`DiskMemory::sync_data`] (`fdatasync`); `flush*` also calls it. Nothing is
//! durable across a crash until flushed.
//!
//! # I/O errors and SIGBUS
//! Through a mapping, the kernel reports an I/O error on a page fault (media
//! error, a file truncated by another process, out-of-space writeback on a
//! sparse file) as `SIGBUS`, which kills the process: no Rust error can be
//! returned. The file is fully allocated with `posix_fallocate` at open, so
//! out-of-space on a fault cannot happen; media errors and outside truncation
//! remain. Positioned I/O ([`crate::DiskIo::Direct`], the default) reports every
//! such failure as a typed [`kvtier_memory::CopyError::Io`] instead.

use std::fs::{File, OpenOptions};
use std::io::{self, IoSlice, IoSliceMut};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use crate::sys::rc_ok;
use kvtier_memory::{BlockLocks, HostVisible, Layout, LayoutError, MemoryKind, PAGE_SIZE};
use memmap2::MmapRaw;
use thiserror::Error;

/// Errors opening or flushing a disk tier file.
#[derive(Debug, Error)]
pub enum DiskError {
    /// Bad layout.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// The file could not be created or opened.
    #[error("cannot create or open disk tier file {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// An existing file has another size than the layout needs.
    #[error("disk tier file {path} has {found} bytes, the layout needs {expected}")]
    WrongSize {
        /// The path.
        path: PathBuf,
        /// Bytes the layout needs.
        expected: u64,
        /// Bytes the file has.
        found: u64,
    },
    /// The file system cannot hold the file (refused at start-up).
    #[error("not enough disk space for {path}: {needed} bytes needed{} ({source})",
            available.map(|a| format!(", {a} available")).unwrap_or_default())]
    NoSpace {
        /// The path.
        path: PathBuf,
        /// Bytes needed.
        needed: u64,
        /// Bytes the file system had available, if known.
        available: Option<u64>,
        /// The OS error.
        source: io::Error,
    },
    /// Another I/O error (allocation, mapping, flush).
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

/// How an existing file is treated by [`DiskMemory::open`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OpenMode {
    /// Reuse the file if it exists with the right size (its blocks survive a
    /// restart); create it otherwise.
    #[default]
    OpenOrCreate,
    /// Fail if the file exists.
    CreateNew,
    /// Fail if the file does not exist.
    OpenExisting,
}

/// A disk tier file holding `layout.num_blocks()` blocks.
pub struct DiskMemory {
    path: PathBuf,
    layout: Layout,
    locks: BlockLocks,
    file: File,
    direct: Option<File>,
    map: MmapRaw,
}

impl std::fmt::Debug for DiskMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DiskMemory")
            .field("path", &self.path)
            .field("layout", &self.layout)
            .field("direct", &self.direct.is_some())
            .finish()
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> DiskError + '_ {
    move |source| DiskError::Io {
        path: path.to_path_buf(),
        source,
    }
}

impl DiskMemory {
    /// Opens (or creates) the tier file at `path` for `layout`.
    ///
    /// A new file is created `0600` and allocated in full with
    /// `posix_fallocate`, so a disk that is too small is refused here
    /// ([`DiskError::NoSpace`]) and the partial file removed. An existing file
    /// must be a regular file (a symlink is refused, never followed) with
    /// exactly `layout.total_bytes()` bytes ([`DiskError::WrongSize`]); it is
    /// never resized. Only `path` itself is created or written: no
    /// directories, no side files.
    pub fn open(path: impl AsRef<Path>, layout: Layout, mode: OpenMode) -> Result<Self, DiskError> {
        let path = path.as_ref().to_path_buf();
        let open_err = |source| DiskError::Open {
            path: path.clone(),
            source,
        };
        let mut opts = OpenOptions::new();
        opts.read(true)
            .write(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK);
        let (file, created) = match mode {
            OpenMode::CreateNew => (opts.create_new(true).open(&path).map_err(open_err)?, true),
            OpenMode::OpenExisting => (opts.open(&path).map_err(open_err)?, false),
            OpenMode::OpenOrCreate => match opts.clone().create_new(true).open(&path) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    (opts.open(&path).map_err(open_err)?, false)
                }
                Err(e) => return Err(open_err(e)),
            },
        };
        check_regular(&file).map_err(open_err)?;
        let direct = reopen_direct(&path, &file);
        let avail = if created {
            free_bytes(file.as_raw_fd())
        } else {
            None
        };
        let remove = |p: &Path| {
            let _ = std::fs::remove_file(p);
        };
        Self::finish(path.clone(), file, direct, layout, created, avail, || {
            remove(&path)
        })
    }

    /// Opens (or creates) the tier file `name` in a locked G3 directory,
    /// relative to the directory's descriptor (see
    /// [`crate::journal::lock`]): same rules as [`open`](Self::open), and the
    /// free space of the file system is checked before a new file is
    /// allocated.
    pub fn open_in(
        dir: &crate::journal::G3Dir,
        name: &str,
        layout: Layout,
        mode: OpenMode,
    ) -> Result<Self, DiskError> {
        use crate::journal::lock::Create;
        let path = dir.join(name);
        let open_err = |source| DiskError::Open {
            path: path.clone(),
            source,
        };
        let (file, created) = match mode {
            OpenMode::CreateNew => (dir.open_file(name, Create::New, 0).map_err(open_err)?, true),
            OpenMode::OpenExisting => {
                (dir.open_file(name, Create::No, 0).map_err(open_err)?, false)
            }
            OpenMode::OpenOrCreate => match dir.open_file(name, Create::New, 0) {
                Ok(f) => (f, true),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                    (dir.open_file(name, Create::No, 0).map_err(open_err)?, false)
                }
                Err(e) => return Err(open_err(e)),
            },
        };
        let direct = dir
            .open_file(name, Create::No, libc::O_DIRECT)
            .ok()
            .filter(|d| same_file(&file, d));
        let avail = if created { dir.available_bytes() } else { None };
        Self::finish(path, file, direct, layout, created, avail, || {
            let _ = dir.remove(name);
        })
    }

    /// Creates a tier file in `dir` that has no name: it is created `0600`,
    /// opened, and unlinked before it is allocated, so its space returns to
    /// the file system when the process exits, however it exits (`SIGKILL`
    /// included). For a G3 that does not outlive the process.
    pub fn create_unlinked(dir: &Path, layout: Layout) -> Result<Self, DiskError> {
        use std::time::{SystemTime, UNIX_EPOCH};
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!("kvtier-g3-{}-{nanos:08x}.blocks", std::process::id());
        let path = dir.join(&name);
        let open_err = |source| DiskError::Open {
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&path)
            .map_err(open_err)?;
        let direct = reopen_direct(&path, &file);
        std::fs::remove_file(&path).map_err(open_err)?;
        let avail = free_bytes(file.as_raw_fd());
        let shown = dir.join(format!("{name} (deleted)"));
        Self::finish(shown, file, direct, layout, true, avail, || {})
    }

    /// Common tail of the opens: allocate a new file (checking `avail`
    /// first; `cleanup` removes it on failure) or check an existing one's
    /// size, then map it.
    fn finish(
        path: PathBuf,
        file: File,
        direct: Option<File>,
        layout: Layout,
        created: bool,
        avail: Option<u64>,
        cleanup: impl FnOnce(),
    ) -> Result<Self, DiskError> {
        let total = layout.total_bytes() as u64;
        if created {
            let res = match avail {
                Some(a) if a < total => Err(io::Error::from_raw_os_error(libc::ENOSPC)),
                _ => fallocate(&file, total),
            };
            if let Err(e) = res {
                drop(file);
                cleanup();
                return Err(
                    if e.raw_os_error() == Some(libc::ENOSPC)
                        || e.raw_os_error() == Some(libc::EFBIG)
                    {
                        DiskError::NoSpace {
                            path,
                            needed: total,
                            available: avail,
                            source: e,
                        }
                    } else {
                        DiskError::Io { path, source: e }
                    },
                );
            }
        } else {
            let meta = file.metadata().map_err(io_err(&path))?;
            if !meta.is_file() || meta.len() != total {
                return Err(DiskError::WrongSize {
                    path,
                    expected: total,
                    found: meta.len(),
                });
            }
        }
        // Blocking I/O from here on (O_NONBLOCK only kept a FIFO from
        // hanging the open; regular files ignore it).
        clear_nonblock(file.as_raw_fd());
        let map = MmapRaw::map_raw(&file).map_err(io_err(&path))?;
        Ok(Self {
            locks: BlockLocks::new(layout.num_blocks()),
            path,
            layout,
            file,
            direct,
            map,
        })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if positioned I/O bypasses the page cache (O_DIRECT accepted).
    pub fn is_direct(&self) -> bool {
        self.direct.is_some()
    }

    /// Flushes the mapped pages of one block to disk (`msync`) and syncs data
    /// written with positioned I/O.
    pub fn flush_range(&self, block: usize) -> Result<(), DiskError> {
        for r in self.layout.block_ranges(block)? {
            self.map
                .flush_range(r.start, r.len())
                .map_err(io_err(&self.path))?;
        }
        self.sync_data()
    }

    /// Flushes the whole mapping and syncs the file data.
    pub fn flush(&self) -> Result<(), DiskError> {
        self.map.flush().map_err(io_err(&self.path))?;
        self.sync_data()
    }

    /// Flushes the file, then asks the kernel to drop its pages from this
    /// process's mapping (`madvise(MADV_DONTNEED)`) and from the page cache
    /// (`posix_fadvise(POSIX_FADV_DONTNEED)`), so the next read comes from the
    /// disk. Used by benchmarks to measure cold reads; the contents are
    /// unchanged (the mapping is shared and file-backed).
    pub fn drop_cache(&self) -> Result<(), DiskError> {
        self.flush()?;
        let len = self.layout.total_bytes();
        // SAFETY: the range is exactly our own shared file mapping; for a
        // shared file mapping MADV_DONTNEED only drops page-table entries.
        let rc = unsafe {
            libc::madvise(
                self.map.as_mut_ptr() as *mut libc::c_void,
                len,
                libc::MADV_DONTNEED,
            )
        };
        if rc != 0 {
            return Err(io_err(&self.path)(io::Error::last_os_error()));
        }
        // SAFETY: valid fd; advisory call.
        let rc =
            unsafe { libc::posix_fadvise(self.file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        if rc != 0 {
            return Err(io_err(&self.path)(io::Error::from_raw_os_error(rc)));
        }
        Ok(())
    }

    /// `fdatasync` of the file (for positioned writes).
    pub fn sync_data(&self) -> Result<(), DiskError> {
        self.file.sync_data().map_err(io_err(&self.path))
    }

    /// Writes `buf` at byte `offset` with positioned I/O: O_DIRECT when the
    /// offset, length and buffer address are page-aligned and the file system
    /// accepts it, buffered otherwise.
    pub fn pwrite_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.check_io(buf.len(), offset)?;
        self.pick(buf.as_ptr(), buf.len(), offset)
            .write_all_at(buf, offset)
    }

    /// Reads `buf.len()` bytes at byte `offset` (see [`pwrite_at`](Self::pwrite_at)).
    pub fn pread_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.check_io(buf.len(), offset)?;
        self.pick(buf.as_ptr(), buf.len(), offset)
            .read_exact_at(buf, offset)
    }

    /// Gathers `bufs` into the file starting at `offset` (`pwritev`), O_DIRECT
    /// when every buffer and the offset are page-aligned.
    pub fn pwritev_at(&self, bufs: &[IoSlice<'_>], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.check_io(total, offset)?;
        let f = self.pick_vec(bufs.iter().map(|b| (b.as_ptr(), b.len())), offset);
        let mut owned: Vec<IoSlice<'_>> = bufs.to_vec();
        let write = |s: &[IoSlice<'_>], off: u64| {
            // SAFETY: IoSlice is ABI-compatible with iovec and `s` holds at
            // least the count passed; valid fd.
            unsafe { libc::pwritev(f.as_raw_fd(), s.as_ptr().cast(), iov_count(s), off as i64) }
        };
        let (zero, what) = (io::ErrorKind::WriteZero, "pwritev wrote 0 bytes");
        vectored(
            &mut owned,
            offset,
            write,
            IoSlice::advance_slices,
            zero,
            what,
        )
    }

    /// Scatters the file starting at `offset` into `bufs` (`preadv`), O_DIRECT
    /// when every buffer and the offset are page-aligned.
    pub fn preadv_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> io::Result<()> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        self.check_io(total, offset)?;
        let f = self.pick_vec(bufs.iter().map(|b| (b.as_ptr(), b.len())), offset);
        let read = |s: &[IoSliceMut<'_>], off: u64| {
            // SAFETY: IoSliceMut is ABI-compatible with iovec and `s` holds at
            // least the count passed; valid fd.
            unsafe { libc::preadv(f.as_raw_fd(), s.as_ptr().cast(), iov_count(s), off as i64) }
        };
        let (eof, what) = (io::ErrorKind::UnexpectedEof, "preadv hit end of file");
        vectored(bufs, offset, read, IoSliceMut::advance_slices, eof, what)
    }

    fn pick_vec(&self, bufs: impl Iterator<Item = (*const u8, usize)>, offset: u64) -> &File {
        let mut aligned = offset.is_multiple_of(PAGE_SIZE as u64);
        for (p, l) in bufs {
            aligned &= (p as usize).is_multiple_of(PAGE_SIZE) && l.is_multiple_of(PAGE_SIZE);
        }
        match &self.direct {
            Some(d) if aligned => d,
            _ => &self.file,
        }
    }

    fn check_io(&self, len: usize, offset: u64) -> io::Result<()> {
        let fits = match offset.checked_add(len as u64) {
            Some(e) => e <= self.layout.total_bytes() as u64,
            None => false,
        };
        if !fits {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "I/O beyond the tier file",
            ));
        }
        Ok(())
    }

    fn pick(&self, ptr: *const u8, len: usize, offset: u64) -> &File {
        let aligned = (ptr as usize).is_multiple_of(PAGE_SIZE)
            && len.is_multiple_of(PAGE_SIZE)
            && offset.is_multiple_of(PAGE_SIZE as u64);
        match &self.direct {
            Some(d) if aligned => d,
            _ => &self.file,
        }
    }

    /// The mapping's base pointer (valid for `total_bytes`).
    pub(crate) fn map_ptr(&self) -> NonNull<u8> {
        // MmapRaw of a non-empty file is never null; fall back to dangling is
        // impossible because layouts are non-empty.
        NonNull::new(self.map.as_mut_ptr()).unwrap_or(NonNull::dangling())
    }
}

/// Refuse anything but a regular file (a FIFO or device in a tier file's
/// place), naming what it is.
fn check_regular(file: &File) -> io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    let mode = file.metadata()?.mode() as libc::mode_t;
    if mode & libc::S_IFMT == libc::S_IFREG {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is {}, not a regular file",
                crate::journal::lock::file_type_name(mode)
            ),
        ))
    }
}

/// True if both descriptors are the same file (device and inode).
fn same_file(a: &File, b: &File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// Bytes available to an unprivileged writer on `file`'s file system.
pub(crate) fn free_bytes(fd: std::os::fd::RawFd) -> Option<u64> {
    // SAFETY: zeroed statvfs is a valid out-parameter.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is a valid descriptor of the caller's and the out-pointer
    // is valid.
    let rc = unsafe { libc::fstatvfs(fd, &mut s) };
    (rc == 0).then(|| s.f_bavail as u64 * s.f_frsize as u64)
}

/// Clear `O_NONBLOCK` on `fd` (set at open so a FIFO in a file's place cannot
/// hang it; regular files ignore it, but blocking I/O is what is meant).
pub(crate) fn clear_nonblock(fd: std::os::fd::RawFd) {
    // SAFETY: fcntl on a valid descriptor of the caller's.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        if fl >= 0 {
            libc::fcntl(fd, libc::F_SETFL, fl & !libc::O_NONBLOCK);
        }
    }
}

/// A second descriptor of `path` with O_DIRECT, if the file system accepts
/// it (some, e.g. tmpfs on older kernels or FUSE/overlay setups, refuse it
/// with EINVAL: then buffered I/O is used) and it is still `file`.
fn reopen_direct(path: &Path, file: &File) -> Option<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT | libc::O_NOFOLLOW)
        .open(path)
        .ok()
        .filter(|d| same_file(file, d))
}

fn fallocate(file: &File, len: u64) -> io::Result<()> {
    let len = libc::off_t::try_from(len).map_err(|_| io::Error::from_raw_os_error(libc::EFBIG))?;
    // SAFETY: valid fd; posix_fallocate returns an error number (not errno).
    let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

kvtier_memory::impl_block_memory!(DiskMemory, m =>
    kind: MemoryKind::Disk, host_ptr: Some(m.map_ptr()));

// SAFETY: the shared mapping covers the whole file (= the layout) while self
// lives (the MmapRaw is owned).
unsafe impl HostVisible for DiskMemory {}

/// The most iovecs one vectored call takes (Linux's IOV_MAX).
fn iov_count<S>(slices: &[S]) -> libc::c_int {
    slices.len().min(1024) as libc::c_int
}

/// Run a vectored positional call (`call(slices, offset)`, a `pwritev` or
/// `preadv`) until every slice is done, dropping done bytes with `advance`.
/// A call that moves nothing is an error of kind `nothing` saying `what`.
fn vectored<S>(
    mut slices: &mut [S],
    mut off: u64,
    call: impl Fn(&[S], u64) -> isize,
    advance: fn(&mut &mut [S], usize),
    nothing: io::ErrorKind,
    what: &str,
) -> io::Result<()> {
    while !slices.is_empty() {
        let Some(n) = vectored_progress(call(slices, off), nothing, what)? else {
            continue;
        };
        off += n as u64;
        advance(&mut slices, n);
    }
    Ok(())
}

/// What one `pwritev` / `preadv` call returning `n` means for the loop
/// around it: `Ok(Some(bytes))` moved, `Ok(None)` interrupted (retry), or an
/// error; a call that moves nothing is an error of kind `nothing` (the file
/// is preallocated, so it cannot make progress later either).
fn vectored_progress(n: isize, nothing: io::ErrorKind, what: &str) -> io::Result<Option<usize>> {
    if !rc_ok(n as i64, io::ErrorKind::Interrupted)? {
        return Ok(None);
    }
    if n == 0 {
        return Err(io::Error::new(nothing, what.to_string()));
    }
    Ok(Some(n as usize))
}
