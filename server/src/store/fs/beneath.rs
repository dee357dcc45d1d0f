//! Opening and creating paths confined to a directory by the kernel (`openat2` with
//! `RESOLVE_BENEATH`), and where an opened descriptor really is. Both the read side and
//! publishing go through here, so neither a symlink inside the root nor one swapped in
//! between a check and the use can make ferryd read or write outside the root.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::{Path, PathBuf};

use crate::path::RelPath;

fn c_path(rel: &str) -> io::Result<CString> {
    let rel = if rel.is_empty() { "." } else { rel };
    CString::new(rel).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

/// `openat2(dir, rel, flags | O_CLOEXEC, RESOLVE_BENEATH)`: fails with `EXDEV` if any step of
/// the resolution (`..`, a symlink, an absolute symlink) would leave `dir`.
pub(crate) fn open_beneath(dir: &File, rel: &str, flags: i32) -> io::Result<File> {
    let c = c_path(rel)?;
    // SAFETY: `open_how` is plain old data; all-zero is a valid value (no flags) and the fields
    // we need are set below.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.resolve = libc::RESOLVE_BENEATH;
    // SAFETY: the pointers are valid for the call: `c` is NUL-terminated and `how` is an
    // `open_how` of the size passed.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_openat2,
            dir.as_raw_fd(),
            c.as_ptr(),
            &how as *const libc::open_how,
            std::mem::size_of::<libc::open_how>(),
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd as i32) })
}

/// `openat(dir, name, flags | O_NOFOLLOW | O_CLOEXEC)` for one component: the fallback where
/// the kernel has no `openat2` refuses every symlink instead.
fn open_component_nofollow(dir: &File, name: &str, flags: i32) -> io::Result<File> {
    let c = c_path(name)?;
    // SAFETY: `c` is NUL-terminated and valid for the call.
    let fd = unsafe {
        libc::openat(
            dir.as_raw_fd(),
            c.as_ptr(),
            flags | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel returned a new file descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// Whether an error means "this path would leave the directory" (or a symlink was refused).
pub(crate) fn is_escape(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ELOOP))
}

const DIR_FLAGS: i32 = libc::O_RDONLY | libc::O_DIRECTORY;

/// Opens the directory `rel` under `root`, confined to it.
fn open_dir(root: &File, rel: &str) -> io::Result<File> {
    match open_beneath(root, rel, DIR_FLAGS) {
        Err(e) if e.raw_os_error() == Some(libc::ENOSYS) => {
            let mut cur = root.try_clone()?;
            for seg in rel.split('/').filter(|s| !s.is_empty()) {
                cur = open_component_nofollow(&cur, seg, DIR_FLAGS)?;
            }
            Ok(cur)
        }
        r => r,
    }
}

/// Opens directory `dir` under `root`, creating missing components one at a time, each
/// inside a parent that was itself opened confined to `root`. No directory is ever created
/// outside `root`: a component that is a symlink leading out fails with `EXDEV` (or `ELOOP`
/// on kernels without `openat2`) before anything below it is created.
pub(crate) fn create_dir_beneath(root: &File, dir: &RelPath) -> io::Result<File> {
    let mut cur = root.try_clone()?;
    let mut prefix = String::new();
    for seg in dir.segments() {
        if !prefix.is_empty() {
            prefix.push('/');
        }
        prefix.push_str(seg);
        cur = match open_dir(root, &prefix) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let c = c_path(seg)?;
                // SAFETY: `c` is NUL-terminated; `cur` is an open directory descriptor.
                if unsafe { libc::mkdirat(cur.as_raw_fd(), c.as_ptr(), 0o755) } != 0 {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::AlreadyExists {
                        return Err(e);
                    }
                }
                open_dir(root, &prefix)?
            }
            Err(e) => return Err(e),
        };
    }
    Ok(cur)
}

/// `linkat(AT_FDCWD, src, dir, name, AT_SYMLINK_FOLLOW)`: a new name for the file `src`
/// names (also through `/proc/self/fd/N`, see [`fd_path`]) inside the opened `dir`; fails
/// with `EEXIST` rather than replace anything.
pub(crate) fn link_into(src: &Path, dir: &File, name: &str) -> io::Result<()> {
    use std::os::unix::ffi::OsStrExt as _;
    let s = CString::new(src.as_os_str().as_bytes()).map_err(io::Error::other)?;
    let n = c_path(name)?;
    // SAFETY: both strings are NUL-terminated; `dir` is an open directory descriptor.
    let r = unsafe {
        libc::linkat(
            libc::AT_FDCWD,
            s.as_ptr(),
            dir.as_raw_fd(),
            n.as_ptr(),
            libc::AT_SYMLINK_FOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Device and inode of `name` inside `dir`, not following a final symlink.
pub(crate) fn identity_at(dir: &File, name: &str) -> io::Result<(u64, u64)> {
    let c = c_path(name)?;
    // SAFETY: `stat` is plain old data; all-zero is valid for the kernel to overwrite.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is NUL-terminated and `st` writable, both valid for the call.
    let r = unsafe {
        libc::fstatat(
            dir.as_raw_fd(),
            c.as_ptr(),
            &mut st,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

/// Where an opened descriptor really is (the kernel's own record, `/proc/self/fd/N`): the
/// resolved location, whatever symlinks led there. `None` without `/proc`.
pub(crate) fn real_path(f: &File) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", f.as_raw_fd())).ok()
}

/// A path through which the opened `f` can be used by name (`/proc/self/fd/N`), valid for as
/// long as `f` stays open.
pub(crate) fn fd_path(f: &File) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", f.as_raw_fd()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creates_nested_dirs_and_never_outside_the_root() {
        let d = tempfile::tempdir().unwrap();
        let (root, out) = (d.path().join("root"), d.path().join("out"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&out).unwrap();
        let root_f = File::open(&root).unwrap();
        let p = |s: &str| RelPath::from_segments(s.split('/')).unwrap();
        create_dir_beneath(&root_f, &p("a/b/c")).unwrap();
        assert!(root.join("a/b/c").is_dir());
        // A link leading out: nothing is created below it, in or out of the root.
        std::os::unix::fs::symlink(&out, root.join("leak")).unwrap();
        let e = create_dir_beneath(&root_f, &p("leak/x/y")).unwrap_err();
        assert!(is_escape(&e), "{e}");
        assert!(!out.join("x").exists());
        // A link staying inside the root is followed.
        std::os::unix::fs::symlink("a/b", root.join("inside")).unwrap();
        let f = create_dir_beneath(&root_f, &p("inside/new")).unwrap();
        assert!(root.join("a/b/new").is_dir());
        assert_eq!(real_path(&f).unwrap(), root.join("a/b/new"));
    }
}
