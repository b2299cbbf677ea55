//! The G3 directory handle: the directory is opened once, locked through
//! that descriptor, and every file in it is opened relative to the descriptor
//! without following symlinks.
//!
//! # Why lock the directory
//! The lock is `flock(LOCK_EX | LOCK_NB)` on the directory's own descriptor,
//! not on a side file: deleting or replacing a file in the directory cannot
//! let a second writer in, and a planted `g3.lock` symlink is never followed
//! (no lock file exists). `flock` locks belong to the open file description,
//! so a second open of the same directory fails with
//! [`JournalError::Locked`] both from another process and from this one. The
//! lock is advisory: it excludes other kvtier writers only.
//!
//! A child created by `fork()` shares the parent's descriptors until it calls
//! `exec` (`O_CLOEXEC` closes them only then): a directory closed and reopened
//! by one thread while another thread spawns a process can find the old
//! descriptor's lock still held for that short window. [`G3Dir::open`]
//! therefore retries a refused lock for up to [`LOCK_WAIT`] before reporting
//! [`JournalError::Locked`].
//!
//! # Files
//! [`G3Dir::open_file`] uses `openat` with `O_NOFOLLOW` (a symlink is refused,
//! never followed), `O_NONBLOCK` (a FIFO planted in place of a file cannot hang
//! the open) and checks that the result is a regular file. New files are
//! created `0600` and a missing directory `0700`: cached KV bytes are readable
//! by their owner only.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::JournalError;
use crate::sys::rc_ok;

/// How long [`G3Dir::open`] retries a lock refused because another open file
/// description holds it (see the module docs: a forked child that has not
/// exec'd yet holds copies of every descriptor).
pub const LOCK_WAIT: Duration = Duration::from_millis(500);

/// How [`G3Dir::open_file`] treats a missing or existing file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Create {
    /// Open an existing file only.
    No,
    /// Create the file; fail if the name exists (whatever it is).
    New,
}

/// An open, locked G3 directory. The lock is held while the handle lives.
#[derive(Debug)]
pub struct G3Dir {
    path: PathBuf,
    fd: OwnedFd,
}

fn cname(name: &str) -> io::Result<CString> {
    CString::new(name).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in file name"))
}

fn cvt(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// What a file type is called in messages.
pub fn file_type_name(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "a regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFLNK => "a symbolic link",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFSOCK => "a socket",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        _ => "of an unknown type",
    }
}

impl G3Dir {
    /// Open `dir` (created `0700`, with missing parents, if absent) and take
    /// its exclusive lock, retrying for up to [`LOCK_WAIT`].
    pub fn open(dir: &Path) -> Result<G3Dir, JournalError> {
        let io_at = |source| JournalError::Io {
            path: dir.to_path_buf(),
            source,
        };
        match std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            Ok(()) => {}
            Err(e) => return Err(io_at(e)),
        }
        let c = CString::new(dir.as_os_str().as_bytes())
            .map_err(|_| io_at(io::Error::new(io::ErrorKind::InvalidInput, "NUL in path")))?;
        // SAFETY: valid C string; the returned fd is owned below.
        let fd = cvt(unsafe {
            libc::open(
                c.as_ptr(),
                libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
            )
        })
        .map_err(io_at)?;
        // SAFETY: fd was just returned by open and is owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let start = Instant::now();
        loop {
            // SAFETY: flock on a valid fd owned by `fd`.
            let rc = unsafe { libc::flock(fd.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                break;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => continue,
                Some(libc::EWOULDBLOCK) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Some(libc::EWOULDBLOCK) => {
                    return Err(JournalError::Locked {
                        dir: dir.to_path_buf(),
                    })
                }
                _ => return Err(io_at(err)),
            }
        }
        Ok(G3Dir {
            path: dir.to_path_buf(),
            fd,
        })
    }

    /// The directory's path (for messages).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `path()/name`, for messages.
    pub fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// Open `name` in the directory for reading and writing, without
    /// following a symlink, refusing anything but a regular file (the error
    /// names what it is). [`Create::New`] creates it `0600` and fails if the
    /// name exists.
    pub fn open_file(&self, name: &str, create: Create, extra_flags: i32) -> io::Result<File> {
        let c = cname(name)?;
        let mut flags =
            libc::O_RDWR | libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK | extra_flags;
        if create == Create::New {
            flags |= libc::O_CREAT | libc::O_EXCL;
        }
        // SAFETY: valid dir fd and C string; the fd is owned below.
        let fd = unsafe {
            libc::openat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                flags,
                0o600 as libc::c_uint,
            )
        };
        if fd < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::ELOOP) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    "is a symbolic link (refused: G3 files are never followed through links)",
                ));
            }
            return Err(e);
        }
        // SAFETY: fd was just returned by openat.
        let file = unsafe { File::from_raw_fd(fd) };
        let meta = file.metadata()?;
        use std::os::unix::fs::MetadataExt;
        let mode = meta.mode() as libc::mode_t;
        if mode & libc::S_IFMT != libc::S_IFREG {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("is {}, not a regular file", file_type_name(mode)),
            ));
        }
        // Back to blocking I/O (no effect on regular files, but explicit).
        crate::file::clear_nonblock(file.as_raw_fd());
        Ok(file)
    }

    /// The file type and size of `name` without following a symlink; `None`
    /// if it does not exist.
    pub fn stat(&self, name: &str) -> io::Result<Option<(libc::mode_t, u64)>> {
        let c = cname(name)?;
        // SAFETY: zeroed stat is a valid out-parameter.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: valid dir fd, C string and out-pointer.
        let rc = unsafe {
            libc::fstatat(
                self.fd.as_raw_fd(),
                c.as_ptr(),
                &mut st,
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        if !rc_ok(rc.into(), io::ErrorKind::NotFound)? {
            return Ok(None);
        }
        Ok(Some((st.st_mode, st.st_size as u64)))
    }

    /// Remove `name` (a link is removed itself, never its target). False if
    /// it did not exist.
    pub fn remove(&self, name: &str) -> io::Result<bool> {
        let c = cname(name)?;
        // SAFETY: valid dir fd and C string.
        let rc = unsafe { libc::unlinkat(self.fd.as_raw_fd(), c.as_ptr(), 0) };
        rc_ok(rc.into(), io::ErrorKind::NotFound)
    }

    /// Rename `from` over `to`, both in this directory.
    pub fn rename(&self, from: &str, to: &str) -> io::Result<()> {
        let (a, b) = (cname(from)?, cname(to)?);
        let d = self.fd.as_raw_fd();
        // SAFETY: valid dir fd and C strings.
        cvt(unsafe { libc::renameat(d, a.as_ptr(), d, b.as_ptr()) }).map(|_| ())
    }

    /// `fsync` of the directory (makes creations, renames and removals
    /// durable).
    pub fn sync(&self) -> io::Result<()> {
        // SAFETY: valid fd.
        cvt(unsafe { libc::fsync(self.fd.as_raw_fd()) }).map(|_| ())
    }

    /// Bytes available to an unprivileged writer on the directory's file
    /// system (`fstatvfs`), if known.
    pub fn available_bytes(&self) -> Option<u64> {
        crate::file::free_bytes(self.fd.as_raw_fd())
    }
}
