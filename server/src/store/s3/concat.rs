//! tus concatenation (and concatenation-unfinished) on S3. Concatenating records the final
//! upload's data as the partial uploads' objects end to end (its `pieces`: their part
//! objects and tails, or the `<id>.bin` of a part begun by an older ferryd); nothing is
//! copied then. Its publish ([`super::copy`]) lays them into the multipart upload at the
//! published name: `UploadPartCopy` of each piece inside S3, so the bytes do not pass through
//! ferryd, except where S3's rules forbid a copy: every part but the last must hold at least
//! 5 MiB, so a piece shorter than that (a small partial upload, a short tail) is read and
//! joined with its neighbours' bytes into a part of [`MIN_PART`] bytes or more ([`plan`]).
//! One completion for the whole file, as for a plain upload.
//!
//! The partial uploads stay until they expire (usable for other final uploads, as on disk);
//! they are never published. A final upload copies from their objects only when it is
//! published, so concatenation pins each part first ([`S3Store::pin`], a compare-and-swap on
//! the part's record): a part terminated or expired before that publish is gone for clients
//! (410) at once, as on disk, but its objects stay until every final upload that pinned it
//! is published, terminated or expired (the directory store copies at concatenation, so its
//! final upload never depends on its parts afterwards).
//!
//! Which final uploads wait for a part (concatenation-unfinished) is kept as empty marker
//! objects `PREFIX/.ferry/finals/<part>/<final>`, written before the final upload's record.

use std::ops::Range;

use bytes::BytesMut;
use futures_util::StreamExt as _;
use object_store::multipart::{MultipartStore as _, PartId};
use object_store::path::Path as Key;
use object_store::ObjectStoreExt as _;

use super::raw::{MAX_COPY, MIN_S3_PART};
use super::upload::{other, Keys, Piece, Record, MIN_PART};
use super::{from_s3, S3Store};
use crate::store::upload::{Concat, Concatenation, UploadId, UploadInfo, UploadState};
use crate::store::{BoxFuture, StoreError};

/// Parts copied or uploaded at once while publishing.
pub(super) const PARTS_AT_ONCE: usize = 4;

/// S3's part size rules, as [`plan`] applies them (parameters so tests can scale them down).
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    /// Smallest part but the last.
    pub min_part: u64,
    /// Largest part.
    pub max_part: u64,
    /// How many bytes a part joined from pieces too short to copy gets (at least `min_part`).
    pub join: u64,
}

/// The limits of S3 and the part size ferryd joins small pieces to.
pub(super) const S3_LIMITS: Limits = Limits {
    min_part: MIN_S3_PART,
    max_part: MAX_COPY,
    join: MIN_PART as u64,
};

/// One part of the final upload's multipart upload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Planned {
    /// Bytes `range` of piece `piece`, copied inside S3.
    Copy { piece: usize, range: Range<u64> },
    /// These ranges of pieces, in order, read and uploaded as one part.
    Data(Vec<(usize, Range<u64>)>),
}

/// The parts that lay pieces of lengths `lens` end to end (pure). A piece, or what is left of
/// it, of at least `min_part` bytes is copied (in copies of at most `max_part`); shorter ones
/// are joined with the bytes that follow into a part of `join` bytes (the last part may be
/// shorter). So every part but the last holds `min_part..=max_part` bytes, and at most
/// `join + min_part` bytes per piece pass through ferryd.
pub(super) fn plan(lens: &[u64], lim: Limits) -> Vec<Planned> {
    let mut out = Vec::new();
    let mut buf: Vec<(usize, Range<u64>)> = Vec::new();
    let mut buf_len = 0u64;
    for (piece, &len) in lens.iter().enumerate() {
        let mut at = 0u64;
        if buf_len > 0 {
            let take = len.min(lim.join - buf_len.min(lim.join));
            if take > 0 {
                buf.push((piece, 0..take));
                buf_len += take;
                at = take;
            }
            if buf_len < lim.join {
                continue; // the piece went into the joined part whole
            }
            out.push(Planned::Data(std::mem::take(&mut buf)));
            buf_len = 0;
        }
        let rest = len - at;
        if rest == 0 {
            continue;
        }
        if rest >= lim.min_part {
            let n = rest.div_ceil(lim.max_part);
            let (each, extra) = (rest / n, rest % n);
            for i in 0..n {
                let size = each + u64::from(i < extra);
                out.push(Planned::Copy {
                    piece,
                    range: at..at + size,
                });
                at += size;
            }
        } else {
            buf.push((piece, at..len));
            buf_len += rest;
        }
    }
    if !buf.is_empty() {
        out.push(Planned::Data(buf));
    }
    out
}

/// How often [`S3Store::pin`] and [`S3Store::unpin`] read a record again after another writer
/// changed it between their read and their compare-and-swap.
const PIN_TRIES: usize = 8;

impl S3Store {
    /// Records in the record of the complete partial upload `part` (as loaded) that the final
    /// upload `fin` names its objects as pieces (a compare-and-swap on the part's record,
    /// retried while it moves on): from now on its termination or expiry keeps them until
    /// `fin` lets go ([`S3Store::unpin_parts`]). Returns the part's record as pinned. A part
    /// that is no longer active, or not at `part.offset`, is a conflict: a termination
    /// recorded first wins, and the final upload is not concatenated from it.
    async fn pin(&self, part: &UploadInfo, fin: &str) -> Result<Record, StoreError> {
        let keys = Keys::new(self, &part.id);
        for _ in 0..PIN_TRIES {
            let mut rec = self.read_record(&keys).await?;
            if rec.info.state != UploadState::Active || rec.info.offset != part.offset {
                return Err(StoreError::Conflict);
            }
            if rec.pinned_by.iter().any(|f| f == fin) {
                return Ok(rec);
            }
            rec.pinned_by.push(fin.to_owned());
            match self.write_record(&keys, &mut rec).await {
                Err(StoreError::Conflict) => continue,
                r => return r.map(|()| rec),
            }
        }
        Err(StoreError::Conflict)
    }

    /// The final upload `fin` (published, terminated or expired) lets go of its parts'
    /// objects; each part that was terminated or expired meanwhile and that no other final
    /// upload holds has them removed now. Best effort: a pin left behind (a crash, S3
    /// failing) is seen to be stale when the part's tombstone is purged
    /// ([`S3Store::pinned_live`]).
    pub(super) async fn unpin_parts(&self, fin: &UploadInfo) {
        let Concat::Final { parts } = &fin.concat else {
            return;
        };
        for part in parts.iter().filter_map(|p| UploadId::parse(p)) {
            if let Err(e) = self.unpin(&part, &fin.id).await {
                tracing::warn!(%part, fin = %fin.id, error = %e, "could not let go of a part's objects");
            }
        }
    }

    async fn unpin(&self, part: &UploadId, fin: &str) -> Result<(), StoreError> {
        let keys = Keys::new(self, part.as_str());
        for _ in 0..PIN_TRIES {
            let mut rec = match self.read_record(&keys).await {
                Err(StoreError::NotFound) => return Ok(()),
                r => r?,
            };
            if !rec.pinned_by.iter().any(|f| f == fin) {
                return Ok(());
            }
            rec.pinned_by.retain(|f| f != fin);
            match self.write_record(&keys, &mut rec).await {
                Err(StoreError::Conflict) => continue,
                r => r?,
            }
            if rec.info.state != UploadState::Active && rec.pinned_by.is_empty() {
                self.remove_staging(&keys, rec.multipart.as_ref()).await;
            }
            return Ok(());
        }
        Err(StoreError::Conflict)
    }

    /// Whether a final upload named in `rec.pinned_by` may still copy from its objects: one
    /// that is still active (or whose record cannot be read now). One that is gone,
    /// published, terminated or expired has let go, even if a crash kept it from saying so.
    pub(super) async fn pinned_live(&self, rec: &Record) -> bool {
        for fin in &rec.pinned_by {
            let Some(id) = UploadId::parse(fin) else {
                continue;
            };
            match self.read_record(&Keys::new(self, id.as_str())).await {
                Ok(f) if f.info.state != UploadState::Active => {}
                Err(StoreError::NotFound) => {}
                _ => return true,
            }
        }
        false
    }

    fn finals_dir(&self, part: &str) -> Key {
        self.state_dir("finals").join(part)
    }

    /// Removes the markers of the final uploads waiting for `part` (its purge).
    pub(super) async fn forget_finals(&self, part: &UploadId) -> Result<(), StoreError> {
        let listed: Vec<_> = self
            .client
            .list(Some(&self.finals_dir(part.as_str())))
            .collect()
            .await;
        for o in listed {
            match self.client.delete(&o.map_err(from_s3)?.location).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(from_s3(e)),
            }
        }
        Ok(())
    }

    /// Writes one planned part of the multipart upload `mp` of `dst`.
    pub(super) async fn put_planned(
        &self,
        dst: &Key,
        mp: &str,
        idx: usize,
        part: Planned,
        sources: &[(Key, u64)],
    ) -> Result<PartId, StoreError> {
        match part {
            Planned::Copy { piece, range } => {
                self.copy_part(dst, mp, idx, &sources[piece].0, range, None)
                    .await
            }
            Planned::Data(ranges) => {
                let mut buf = BytesMut::new();
                for (piece, range) in ranges {
                    let want = range.end - range.start;
                    let got = self
                        .client
                        .get_range(&sources[piece].0, range)
                        .await
                        .map_err(from_s3)?;
                    if got.len() as u64 != want {
                        return Err(other("a part's data is shorter than recorded"));
                    }
                    buf.extend_from_slice(&got);
                }
                let payload = buf.freeze().into();
                self.s3
                    .put_part(dst, &mp.to_owned(), idx, payload)
                    .await
                    .map_err(from_s3)
            }
        }
    }
}

impl Concatenation for S3Store {
    fn concatenate<'a>(
        &'a self,
        info: &'a mut UploadInfo,
        parts: &'a [UploadInfo],
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let mut sources = Vec::new();
            for part in parts {
                if !part.is_complete() {
                    return Err(other("part is incomplete"));
                }
                let rec = self.pin(part, &info.id).await?;
                sources.extend(self.sources_of(&rec).await?);
            }
            let total = sources
                .iter()
                .try_fold(0u64, |t, s| t.checked_add(s.1))
                .ok_or_else(|| other("parts add up past u64"))?;
            let pieces = sources
                .into_iter()
                .map(|(key, len)| Piece {
                    key: key.as_ref().to_owned(),
                    len,
                })
                .collect();
            let mut done = info.clone();
            done.length = Some(total);
            done.offset = total;
            let mut stale = None;
            self.swap(&mut done, |r| {
                stale = r.multipart.take();
                r.parts.clear();
                r.pieces = pieces;
            })
            .await?;
            // A concatenation begun by an older ferryd copied into a multipart upload.
            if let Some(old) = stale {
                let keys = Keys::new(self, &info.id);
                let _ = self.s3.abort_multipart(&keys.data(), &old).await;
            }
            *info = done;
            Ok(())
        })
    }

    fn note_final<'a>(
        &'a self,
        part: &'a UploadId,
        fin: &'a UploadId,
    ) -> BoxFuture<'a, Result<(), StoreError>> {
        Box::pin(async move {
            let marker = self.finals_dir(part.as_str()).join(fin.as_str());
            self.client
                .put(&marker, bytes::Bytes::new().into())
                .await
                .map_err(from_s3)?;
            Ok(())
        })
    }

    fn finals_of<'a>(
        &'a self,
        part: &'a UploadId,
    ) -> BoxFuture<'a, Result<Vec<UploadId>, StoreError>> {
        Box::pin(async move {
            let mut listed = self.client.list(Some(&self.finals_dir(part.as_str())));
            let mut out = Vec::new();
            while let Some(o) = listed.next().await {
                let o = o.map_err(from_s3)?;
                if let Some(id) = o.location.filename().and_then(UploadId::parse) {
                    out.push(id);
                }
            }
            Ok(out)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIM: Limits = Limits {
        min_part: 5,
        max_part: 20,
        join: 8,
    };

    /// The byte ranges of each piece the plan covers, in order, merged where adjacent.
    fn covered(plan: &[Planned]) -> Vec<(usize, Range<u64>)> {
        let mut out: Vec<(usize, Range<u64>)> = Vec::new();
        let flat = plan.iter().flat_map(|p| match p {
            Planned::Copy { piece, range } => vec![(*piece, range.clone())],
            Planned::Data(r) => r.clone(),
        });
        for (piece, r) in flat {
            assert!(!r.is_empty(), "empty range in {plan:?}");
            match out.last_mut() {
                Some((p, last)) if *p == piece && last.end == r.start => last.end = r.end,
                _ => out.push((piece, r)),
            }
        }
        out
    }

    fn part_len(p: &Planned) -> u64 {
        match p {
            Planned::Copy { range, .. } => range.end - range.start,
            Planned::Data(r) => r.iter().map(|(_, r)| r.end - r.start).sum(),
        }
    }

    /// Every piece laid out whole and in order; every part but the last within S3's sizes;
    /// bytes read through ferryd bounded per piece; a piece long enough is mostly copied.
    fn check(lens: &[u64]) {
        let p = plan(lens, LIM);
        let want: Vec<(usize, Range<u64>)> = lens
            .iter()
            .enumerate()
            .filter(|(_, &l)| l > 0)
            .map(|(i, &l)| (i, 0..l))
            .collect();
        assert_eq!(covered(&p), want, "{lens:?} -> {p:?}");
        for (i, part) in p.iter().enumerate() {
            let n = part_len(part);
            assert!(n <= LIM.max_part, "{lens:?}: part {i} of {n} bytes");
            if i + 1 < p.len() {
                assert!(n >= LIM.min_part, "{lens:?}: part {i} of {n} bytes");
            }
        }
        let read: u64 = p
            .iter()
            .filter(|x| matches!(x, Planned::Data(_)))
            .map(part_len)
            .sum();
        assert!(
            read <= lens.len() as u64 * (LIM.join + LIM.min_part),
            "{lens:?}: {read} bytes read"
        );
        for (i, &l) in lens.iter().enumerate() {
            if l >= LIM.join + LIM.min_part {
                let copied: u64 = p
                    .iter()
                    .filter_map(|x| match x {
                        Planned::Copy { piece, range } if *piece == i => {
                            Some(range.end - range.start)
                        }
                        _ => None,
                    })
                    .sum();
                assert!(
                    copied + LIM.join >= l,
                    "{lens:?}: piece {i} copied {copied}"
                );
            }
        }
    }

    #[test]
    fn big_pieces_are_copied_and_small_ones_joined() {
        assert_eq!(
            plan(&[10, 30], LIM),
            vec![
                Planned::Copy {
                    piece: 0,
                    range: 0..10
                },
                Planned::Copy {
                    piece: 1,
                    range: 0..15
                },
                Planned::Copy {
                    piece: 1,
                    range: 15..30
                },
            ]
        );
        // 2 + 3 small bytes are joined with 3 of the next piece into one part of 8; the
        // remaining 9 are copied.
        assert_eq!(
            plan(&[2, 3, 12], LIM),
            vec![
                Planned::Data(vec![(0, 0..2), (1, 0..3), (2, 0..3)]),
                Planned::Copy {
                    piece: 2,
                    range: 3..12
                },
            ]
        );
        // All small: one joined part, the last, whatever its size.
        assert_eq!(
            plan(&[1, 0, 2], LIM),
            vec![Planned::Data(vec![(0, 0..1), (2, 0..2)])]
        );
        assert!(plan(&[], LIM).is_empty());
        assert!(plan(&[0, 0], LIM).is_empty());
    }

    #[test]
    fn any_pieces_make_valid_parts() {
        // Exhaustive over three pieces of 0..=45 bytes, then random longer lists.
        for a in 0..=45 {
            for b in 0..=45 {
                for c in [0, 1, 4, 5, 7, 8, 9, 13, 21, 40, 45] {
                    check(&[a, b, c]);
                }
            }
        }
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        for _ in 0..3000 {
            let n = (x % 9) as usize + 1;
            let lens: Vec<u64> = (0..n)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x % 70
                })
                .collect();
            check(&lens);
        }
    }
}
