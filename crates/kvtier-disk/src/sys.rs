//! Reading the results of raw libc calls.

use std::io;

/// A libc call's return value `rc` read as `Ok(true)` (success, `rc >= 0`),
/// `Ok(false)` (it failed with an error of kind `tolerated`), or the error.
pub(crate) fn rc_ok(rc: i64, tolerated: io::ErrorKind) -> io::Result<bool> {
    if rc >= 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == tolerated {
        Ok(false)
    } else {
        Err(e)
    }
}
