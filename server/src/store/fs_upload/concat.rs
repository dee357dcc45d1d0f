//! Concatenation on the fs backend: parts placed into the final upload's data are already
//! where they belong; the others are copied there (in the kernel where it can).

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

use super::super::upload::{Concat, Placement, UploadInfo};
use super::super::StoreError;
use super::{data_location, data_path, save_info};

pub(super) fn concatenate_blocking(
    root: &Path,
    info: &mut UploadInfo,
    parts: &[UploadInfo],
) -> Result<(), StoreError> {
    let out = OpenOptions::new()
        .write(true)
        .open(data_path(root, &info.id))?;
    let mut at = 0u64;
    for part in parts {
        let len = part
            .length
            .filter(|&l| l == part.offset)
            .ok_or_else(|| io::Error::other("part is incomplete"))?;
        let placed_here = part
            .placement
            .as_ref()
            .is_some_and(|p| p.upload == info.id && p.at == at);
        if !placed_here {
            let (src, base) = data_location(root, part);
            copy_range(&File::open(src)?, base, &out, at, len)?;
        }
        at += len;
    }
    out.set_len(at)?;
    out.sync_data()?;
    info.length = Some(at);
    info.offset = at;
    save_info(root, info)
}

/// Copies `len` bytes from `src` at `from` to `dst` at `to` (positional; in the kernel where
/// it can, `copy_file_range(2)`, which may share blocks on file systems that support it).
fn copy_range(src: &File, from: u64, dst: &File, to: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd as _;
    use std::os::unix::fs::FileExt as _;
    let (mut done, mut kernel) = (0u64, true);
    let mut buf = Vec::new();
    while done < len {
        let want = (len - done).min(1 << 30) as usize;
        if kernel {
            let mut off_in = i64::try_from(from + done).map_err(io::Error::other)?;
            let mut off_out = i64::try_from(to + done).map_err(io::Error::other)?;
            // SAFETY: both descriptors are open for the duration of the call and the offset
            // pointers point to live locals.
            let n = unsafe {
                libc::copy_file_range(
                    src.as_raw_fd(),
                    &mut off_in,
                    dst.as_raw_fd(),
                    &mut off_out,
                    want,
                    0,
                )
            };
            match n {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n if n > 0 => {
                    done += n as u64;
                    continue;
                }
                _ => {
                    let e = io::Error::last_os_error();
                    match e.raw_os_error() {
                        Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP) => {
                            kernel = false;
                        }
                        _ => return Err(e),
                    }
                }
            }
        }
        buf.resize(want.min(1 << 20), 0);
        let n = src.read_at(&mut buf, from + done)?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "part data shorter than its offset",
            ));
        }
        dst.write_all_at(&buf[..n], to + done)?;
        done += n as u64;
    }
    Ok(())
}

/// See [`UploadStore::place`]. Order for crash safety: the bytes go to the final upload's
/// data and are synced before the part's record says they are there; the part's own data is
/// removed only after that.
pub(super) fn place_blocking(
    root: &Path,
    part: &mut UploadInfo,
    into: &UploadInfo,
    at: u64,
) -> Result<(), StoreError> {
    if part.placement.is_some() || part.concat != Concat::Partial {
        return Ok(());
    }
    let len = part
        .length
        .ok_or_else(|| io::Error::other("a part without a length cannot be placed"))?;
    let total = into
        .length
        .ok_or_else(|| io::Error::other("a final upload without a length"))?;
    if at.checked_add(len).is_none_or(|end| end > total) {
        return Err(io::Error::other("part does not fit the final upload").into());
    }
    let dst = OpenOptions::new()
        .write(true)
        .open(data_path(root, &into.id))?;
    if dst.metadata()?.len() < total {
        dst.set_len(total)?;
    }
    if part.offset > 0 {
        copy_range(
            &File::open(data_path(root, &part.id))?,
            0,
            &dst,
            at,
            part.offset,
        )?;
    }
    dst.sync_data()?;
    part.placement = Some(Placement {
        upload: into.id.clone(),
        at,
    });
    save_info(root, part)?;
    match fs::remove_file(data_path(root, &part.id)) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.into()),
        _ => Ok(()),
    }
}

/// See [`PlaceParts::unplace`](super::super::upload::PlaceParts::unplace). Crash-safe in the
/// same order as [`place_blocking`]: the part's own data is written and synced before its
/// record says it is no longer placed (a crash in between leaves a data file the placed
/// part never reads, removed with it).
pub(super) fn unplace_blocking(root: &Path, part: &mut UploadInfo) -> Result<(), StoreError> {
    if part.placement.is_none() {
        return Ok(());
    }
    if !part.is_complete() {
        return Err(io::Error::other("only a complete part is unplaced").into());
    }
    let (src, base) = data_location(root, part);
    let own = data_path(root, &part.id);
    let dst = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&own)?;
    copy_range(&File::open(src)?, base, &dst, 0, part.offset)?;
    dst.sync_data()?;
    if let Some(dir) = own.parent() {
        File::open(dir)?.sync_all()?;
    }
    part.placement = None;
    save_info(root, part)
}
