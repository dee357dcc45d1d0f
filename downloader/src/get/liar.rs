//! The whole-file checksum failed on a file several servers wrote (issue 9 §4): find the
//! server that sent wrong bytes, replace its bytes with the others', never publish a wrong one.
//!
//! 1. Every piece (at most [`PIECE`] bytes of one writer) is fetched again from another
//!    server and compared with the disk. Pieces where two servers agree are settled.
//! 2. Each disagreement involves the liar or its accuser. Suspects are tried in order of how
//!    many disagreements they are in (mirrors before the main URL on a tie): every disputed
//!    piece the suspect holds is fetched from the other party and written, then the whole file
//!    is checked again. The checksum is the judge: the first suspect whose removal makes it
//!    match was the liar. A wrong guess only replaced bytes with those of the other party,
//!    which the next suspect's turn fetches again.
//! 3. No disagreement, or no suspect that fixes it: the original checksum error stands and
//!    nothing is published.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ferry_proto::{ByteRange, ContentRange};
use http::header::{CONTENT_RANGE, IF_RANGE, RANGE};
use http::StatusCode;
use reqwest::Client;

use super::checksum::{self, Expected};
use super::probe::{header_str, status_error, Validator};
use super::provenance::{pieces, Provenance, EARLIER_RUN};
use super::sources::SourceId;
use crate::auth::Auth;
use crate::error::{Error, Result};
use crate::progress::Progress;

/// Largest unit compared and replaced.
pub const PIECE: u64 = 4 << 20;

/// A piece two servers disagree about: the one that wrote it and the one that accused it.
#[derive(Debug, Clone, Copy)]
struct Dispute {
    piece: ByteRange,
    writer: SourceId,
    accuser: SourceId,
}

pub(super) struct Suspects<'a> {
    pub client: &'a Client,
    /// The pool of the download, reference first.
    pub servers: &'a [(String, Validator)],
    pub part: &'a Path,
    pub progress: &'a Arc<Progress>,
    pub timeout: Duration,
    /// Credentials, sent only to the origins they were given for.
    pub auth: &'a Auth,
    pub expected: &'a [Expected],
}

impl Suspects<'_> {
    /// Finds and removes the liar; `Err(mismatch)` when that cannot be done.
    pub async fn resolve(
        &self,
        provenance: &mut Provenance,
        len: u64,
        mismatch: Error,
    ) -> Result<()> {
        let disputes = self.compare(provenance, len).await?;
        if disputes.is_empty() {
            self.progress
                .note("every piece compared equal on two servers: no server to blame");
            return Err(mismatch);
        }
        for suspect in suspects(&disputes) {
            self.replace(suspect, &disputes, provenance).await?;
            if self.verify().await.is_ok() {
                let url = self.url(suspect);
                self.progress.note(&format!(
                    "{url} sent bytes the other servers do not ({} of the compared pieces); dropped it and fetched them from the others: the checksum matches now",
                    disputes.iter().filter(|d| d.writer == suspect || d.accuser == suspect).count()
                ));
                return Ok(());
            }
        }
        Err(mismatch)
    }

    fn url(&self, id: SourceId) -> &str {
        self.servers
            .get(id)
            .map_or("an earlier run", |(u, _)| u.as_str())
    }

    /// Step 1: each piece against another server's copy.
    async fn compare(&self, provenance: &Provenance, len: u64) -> Result<Vec<Dispute>> {
        let mut disputes = Vec::new();
        for (span, writer) in provenance.cover(len) {
            let accuser = if writer == 0 { 1 } else { 0 };
            for piece in pieces(span, PIECE) {
                let theirs = match self.fetch(accuser, piece).await {
                    Ok(b) => b,
                    Err(e) => {
                        self.progress.note(&format!("cannot compare {piece}: {e}"));
                        continue;
                    }
                };
                if self.read(piece).await? != theirs {
                    disputes.push(Dispute {
                        piece,
                        writer,
                        accuser,
                    });
                }
            }
        }
        Ok(disputes)
    }

    /// Step 2 for one suspect: every disputed piece it holds now comes from the other party.
    async fn replace(
        &self,
        suspect: SourceId,
        disputes: &[Dispute],
        provenance: &mut Provenance,
    ) -> Result<()> {
        for d in disputes {
            let holder = provenance
                .cover(d.piece.end)
                .into_iter()
                .find(|(s, _)| s.start <= d.piece.start && d.piece.start < s.end)
                .map(|(_, w)| w);
            if holder != Some(suspect) {
                continue;
            }
            let other = if d.writer == suspect {
                d.accuser
            } else {
                d.writer
            };
            let other = if other == EARLIER_RUN || other == suspect {
                (0..self.servers.len()).find(|s| *s != suspect).unwrap_or(0)
            } else {
                other
            };
            let bytes = self.fetch(other, d.piece).await?;
            self.write(d.piece, bytes).await?;
            provenance.record(d.piece, other);
        }
        Ok(())
    }

    /// `piece` from server `id`: a 206 with exactly that Content-Range, or an error.
    async fn fetch(&self, id: SourceId, piece: ByteRange) -> Result<Bytes> {
        let (url, validator) = self
            .servers
            .get(id)
            .ok_or_else(|| Error::Usage("no other server to compare with".into()))?;
        let req = self.auth.apply(self.client.get(url), url);
        let mut req = req.header(RANGE, piece.to_range_header());
        if let Some(v) = validator.if_range() {
            req = req.header(IF_RANGE, v);
        }
        let protocol = |msg: String| Error::Protocol {
            url: url.clone(),
            msg,
        };
        let send = tokio::time::timeout(self.timeout, req.send()).await;
        let resp = send
            .map_err(|_| protocol("no answer".into()))?
            .map_err(|source| Error::Network {
                url: url.clone(),
                source,
            })?;
        if resp.status() != StatusCode::PARTIAL_CONTENT {
            return Err(status_error(url, &resp, resp.status()));
        }
        let range = header_str(resp.headers(), &CONTENT_RANGE)
            .and_then(|v| ContentRange::parse(v).ok())
            .map(|c| c.range);
        if range != Some(piece) {
            return Err(protocol(format!("expected Content-Range for {piece}")));
        }
        let body = tokio::time::timeout(self.timeout, resp.bytes()).await;
        let body = body
            .map_err(|_| protocol("body stalled".into()))?
            .map_err(|source| Error::Network {
                url: url.clone(),
                source,
            })?;
        if body.len() as u64 != piece.len() {
            return Err(protocol(format!("expected {} bytes", piece.len())));
        }
        Ok(body)
    }

    async fn read(&self, piece: ByteRange) -> Result<Bytes> {
        let path = self.part.to_path_buf();
        let res = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; usize::try_from(piece.len()).unwrap_or(0)];
            std::fs::File::open(&path)?.read_exact_at(&mut buf, piece.start)?;
            Ok::<_, std::io::Error>(Bytes::from(buf))
        })
        .await;
        self.io(res)
    }

    /// Writes and syncs (the file is about to be published).
    async fn write(&self, piece: ByteRange, bytes: Bytes) -> Result<()> {
        let path = self.part.to_path_buf();
        let res = tokio::task::spawn_blocking(move || {
            let f = std::fs::OpenOptions::new().write(true).open(&path)?;
            f.write_all_at(&bytes, piece.start)?;
            f.sync_data()
        })
        .await;
        self.io(res)
    }

    fn io<T>(
        &self,
        res: std::result::Result<std::io::Result<T>, tokio::task::JoinError>,
    ) -> Result<T> {
        match res {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(Error::io(self.part, e)),
            Err(e) => Err(Error::io(self.part, std::io::Error::other(e))),
        }
    }

    async fn verify(&self) -> Result<()> {
        let (part, expected) = (self.part.to_path_buf(), self.expected.to_vec());
        let res = tokio::task::spawn_blocking(move || checksum::verify(&part, &expected)).await;
        res.map_err(|e| Error::io(self.part, std::io::Error::other(e)))?
    }
}

/// Everyone in a dispute, most disputes first; on a tie, later servers (mirrors) before the
/// main URL, and bytes of an earlier run before both.
fn suspects(disputes: &[Dispute]) -> Vec<SourceId> {
    let mut count: Vec<(SourceId, usize)> = Vec::new();
    for who in disputes.iter().flat_map(|d| [d.writer, d.accuser]) {
        match count.iter_mut().find(|(w, _)| *w == who) {
            Some((_, n)) => *n += 1,
            None => count.push((who, 1)),
        }
    }
    count.sort_by_key(|(w, n)| (std::cmp::Reverse(*n), std::cmp::Reverse(*w)));
    count.into_iter().map(|(w, _)| w).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(writer: SourceId, accuser: SourceId) -> Dispute {
        Dispute {
            piece: ByteRange::new(0, 1).unwrap(),
            writer,
            accuser,
        }
    }

    #[test]
    fn the_server_in_most_disputes_is_suspected_first() {
        // Three servers, 2 lies: it is in every dispute.
        assert_eq!(suspects(&[d(2, 0), d(1, 2), d(2, 0)]), vec![2, 0, 1]);
        // Two servers: a tie; the mirror before the main URL.
        assert_eq!(suspects(&[d(1, 0), d(0, 1)]), vec![1, 0]);
        assert_eq!(suspects(&[d(EARLIER_RUN, 0)]), vec![EARLIER_RUN, 0]);
    }
}
