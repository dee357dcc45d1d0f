//! Extended attributes on an open file, through libc (`fsetxattr`/`fgetxattr`, Linux). The
//! `xattr` crate would add rustix for two calls; libc is already in the workspace. Elsewhere
//! (and on file systems without user attributes) every call reports
//! [`io::ErrorKind::Unsupported`], and callers fall back to length + mtime.

use std::fs::File;
use std::io;

/// Longest attribute value read back; ferry writes a URL and a small JSON object.
const MAX_VALUE: usize = 64 * 1024;

/// Whether `e` means "this file system (or platform) keeps no user attributes".
pub fn unsupported(e: &io::Error) -> bool {
    #[cfg(target_os = "linux")]
    if matches!(e.raw_os_error(), Some(libc::ENOTSUP) | Some(libc::EPERM)) {
        return true;
    }
    e.kind() == io::ErrorKind::Unsupported
}

#[cfg(target_os = "linux")]
pub fn set(file: &File, name: &str, value: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    // SAFETY: the fd is open for the call's duration; name is NUL-terminated; value points
    // to value.len() readable bytes.
    let rc = unsafe {
        libc::fsetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            value.as_ptr().cast(),
            value.len(),
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The attribute's value; `None` when the file has no such attribute.
#[cfg(target_os = "linux")]
pub fn get(file: &File, name: &str) -> io::Result<Option<Vec<u8>>> {
    use std::os::fd::AsRawFd;
    let name = std::ffi::CString::new(name).map_err(io::Error::other)?;
    let mut buf = vec![0u8; MAX_VALUE];
    // SAFETY: the fd is open; name is NUL-terminated; buf has buf.len() writable bytes.
    let n = unsafe {
        libc::fgetxattr(
            file.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    match usize::try_from(n) {
        Ok(len) => {
            buf.truncate(len);
            Ok(Some(buf))
        }
        Err(_) => {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENODATA) => Ok(None),
                _ => Err(e),
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn set(_file: &File, _name: &str, _value: &[u8]) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(not(target_os = "linux"))]
pub fn get(_file: &File, _name: &str) -> io::Result<Option<Vec<u8>>> {
    Err(io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn set_then_get_round_trips_and_absent_is_none() {
        // Linux tmp directories (ext4, xfs, btrfs, tmpfs since 6.6) keep user attributes; a
        // failure here says the test machine cannot exercise the attribute path at all.
        let f = tempfile::NamedTempFile::new().unwrap();
        let file = f.as_file();
        set(file, "user.ferry.test", b"value").expect("user xattrs in the temp directory");
        assert_eq!(
            get(file, "user.ferry.test").unwrap().as_deref(),
            Some(&b"value"[..])
        );
        assert_eq!(get(file, "user.ferry.absent").unwrap(), None);
    }
}
