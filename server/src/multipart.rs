//! `multipart/byteranges` responses (RFC 9110 §14.6), streamed part by part with an exact
//! `Content-Length` computed up front.
//!
//! The framing is byte for byte what nginx sends: every part starts with a CRLF and the
//! delimiter, then its `Content-Type` and `Content-Range`, an empty line and the bytes; the
//! close delimiter ends the body (RFC 2046 §5.1.1, the CRLF before a delimiter belongs to it).
//!
//! ```text
//! \r\n--BOUNDARY\r\nContent-Type: TYPE\r\nContent-Range: bytes S-E/LEN\r\n\r\n<bytes>
//! ...
//! \r\n--BOUNDARY--\r\n
//! ```

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;

use bytes::Bytes;
use ferry_proto::ByteRange;
use futures_util::StreamExt;

use crate::store::{ByteStream, FileHandle};

/// A planned multipart body: its `Content-Type` header value, exact length, and the stream.
pub struct Multipart {
    pub content_type: String,
    pub content_length: u64,
    pub body: ByteStream,
}

/// Builds the body for `ranges` (disjoint, in the order given) of `file`, whose own media type
/// is `part_type`. `boundary` is the separator string (no leading dashes).
///
/// Nothing is read until the body is polled, and each range is opened only once the previous
/// one has been sent, so memory stays at one read chunk whatever the ranges add up to.
pub fn multipart(
    file: Arc<dyn FileHandle>,
    ranges: &[ByteRange],
    part_type: &str,
    boundary: &str,
) -> Multipart {
    let complete = file.meta().len;
    let pending: VecDeque<(Bytes, ByteRange)> = ranges
        .iter()
        .map(|r| (part_header(boundary, part_type, r, complete), *r))
        .collect();
    let closing = Bytes::from(format!("\r\n--{boundary}--\r\n"));
    let content_length = pending
        .iter()
        .map(|(header, r)| (header.len() as u64).saturating_add(r.len()))
        .fold(closing.len() as u64, u64::saturating_add);
    let parts = Parts {
        file,
        pending,
        closing: Some(closing),
        current: None,
    };
    Multipart {
        content_type: format!("multipart/byteranges; boundary={boundary}"),
        content_length,
        body: Box::pin(futures_util::stream::unfold(parts, Parts::next_item)),
    }
}

/// The delimiter and header section that precede the bytes of `range`.
fn part_header(boundary: &str, part_type: &str, range: &ByteRange, complete: u64) -> Bytes {
    let content_range = range.content_range(complete);
    Bytes::from(format!(
        "\r\n--{boundary}\r\nContent-Type: {part_type}\r\nContent-Range: {content_range}\r\n\r\n"
    ))
}

/// The body's state between polls.
struct Parts {
    file: Arc<dyn FileHandle>,
    /// Part headers and ranges not started yet.
    pending: VecDeque<(Bytes, ByteRange)>,
    /// The close delimiter, until sent.
    closing: Option<Bytes>,
    /// The range being streamed.
    current: Option<Current>,
}

struct Current {
    range: ByteRange,
    stream: ByteStream,
    /// Bytes of `range` not received yet.
    left: u64,
}

impl Parts {
    /// The next chunk of the body. After an error nothing more is sent: the response is
    /// aborted, and a part with the wrong number of bytes would break the announced length.
    async fn next_item(mut self) -> Option<(io::Result<Bytes>, Self)> {
        loop {
            let Some(cur) = self.current.as_mut() else {
                return self.start_next_part();
            };
            let failure = match cur.stream.next().await {
                Some(Ok(chunk)) if chunk.len() as u64 <= cur.left => {
                    cur.left -= chunk.len() as u64;
                    return Some((Ok(chunk), self));
                }
                Some(Ok(chunk)) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "expected {} more bytes of range {}, the store sent {}",
                        cur.left,
                        cur.range,
                        chunk.len()
                    ),
                ),
                Some(Err(e)) => e,
                None if cur.left == 0 => {
                    self.current = None;
                    continue;
                }
                None => io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "expected {} more bytes of range {}, the store ended",
                        cur.left, cur.range
                    ),
                ),
            };
            self.stop();
            return Some((Err(failure), self));
        }
    }

    /// Sends the next part header and opens its range, or sends the close delimiter.
    fn start_next_part(mut self) -> Option<(io::Result<Bytes>, Self)> {
        match self.pending.pop_front() {
            Some((header, range)) => {
                let stream = self.file.clone().read(range);
                let left = range.len();
                self.current = Some(Current {
                    range,
                    stream,
                    left,
                });
                Some((Ok(header), self))
            }
            None => self.closing.take().map(|closing| (Ok(closing), self)),
        }
    }

    fn stop(&mut self) {
        self.current = None;
        self.pending.clear();
        self.closing = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::SystemTime;

    use crate::store::Meta;

    /// What the in-memory file does when read.
    #[derive(Clone, Copy, PartialEq)]
    enum Mode {
        Good,
        /// An I/O error instead of the byte at this offset.
        FailAt(u64),
        /// Ends each range one byte early.
        Short,
        /// Sends one byte past each range.
        Long,
    }

    /// An in-memory file whose byte at `pos` is `pos % 251`, so files can be larger than 4 GiB
    /// without allocating them. Reads come in chunks of `chunk` bytes and are logged.
    struct MemFile {
        meta: Meta,
        chunk: u64,
        mode: Mode,
        reads: Mutex<Vec<ByteRange>>,
    }

    fn byte_at(pos: u64) -> u8 {
        (pos % 251) as u8
    }

    fn mem_file(len: u64, chunk: u64, mode: Mode) -> Arc<MemFile> {
        let meta = Meta {
            len,
            modified: SystemTime::UNIX_EPOCH,
            etag: "\"mem\"".into(),
        };
        let reads = Mutex::new(Vec::new());
        Arc::new(MemFile {
            meta,
            chunk,
            mode,
            reads,
        })
    }

    impl FileHandle for MemFile {
        fn meta(&self) -> &Meta {
            &self.meta
        }

        fn read(self: Arc<Self>, range: ByteRange) -> ByteStream {
            self.reads.lock().unwrap().push(range);
            let end = match self.mode {
                Mode::Short => range.end - 1,
                Mode::Long => range.end + 1,
                _ => range.end,
            };
            let mut items = Vec::new();
            let mut pos = range.start;
            while pos < end {
                let stop = end.min(pos + self.chunk);
                if let Mode::FailAt(at) = self.mode {
                    if (pos..stop).contains(&at) {
                        items.push(Err(io::Error::other("disk on fire")));
                        break;
                    }
                }
                items.push(Ok((pos..stop).map(byte_at).collect::<Bytes>()));
                pos = stop;
            }
            Box::pin(futures_util::stream::iter(items))
        }
    }

    fn r(start: u64, end: u64) -> ByteRange {
        ByteRange::new(start, end).unwrap()
    }

    fn expected_bytes(range: ByteRange) -> Vec<u8> {
        (range.start..range.end).map(byte_at).collect()
    }

    async fn collect(mut body: ByteStream) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        while let Some(chunk) = body.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    // RFC 9110 §14.6: the Content-Type names the boundary.
    #[test]
    fn content_type_names_the_boundary() {
        let m = multipart(
            mem_file(10, 4, Mode::Good),
            &[r(0, 1), r(5, 6)],
            "text/plain",
            "XyZ",
        );
        assert_eq!(m.content_type, "multipart/byteranges; boundary=XyZ");
    }

    // RFC 9110 §14.6 and RFC 2046 §5.1.1, framed as nginx frames it.
    #[tokio::test]
    async fn two_part_body_is_exact() {
        let file = mem_file(300, 2, Mode::Good);
        let m = multipart(
            file,
            &[r(0, 3), r(260, 262)],
            "text/plain; charset=utf-8",
            "3d6b6a41",
        );
        let body = collect(m.body).await.unwrap();
        let mut want = b"\r\n--3d6b6a41\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Range: bytes 0-2/300\r\n\r\n"
            .to_vec();
        want.extend_from_slice(&[0, 1, 2]);
        want.extend_from_slice(
            b"\r\n--3d6b6a41\r\n\
            Content-Type: text/plain; charset=utf-8\r\n\
            Content-Range: bytes 260-261/300\r\n\r\n",
        );
        want.extend_from_slice(&[9, 10]); // 260 % 251, 261 % 251
        want.extend_from_slice(b"\r\n--3d6b6a41--\r\n");
        assert_eq!(body, want);
        assert_eq!(m.content_length, want.len() as u64);
    }

    #[tokio::test]
    async fn three_part_body_is_exact() {
        let file = mem_file(20, 3, Mode::Good);
        let m = multipart(file, &[r(0, 1), r(4, 9), r(19, 20)], "image/png", "B");
        let body = collect(m.body).await.unwrap();
        let header =
            |cr: &str| format!("\r\n--B\r\nContent-Type: image/png\r\nContent-Range: {cr}\r\n\r\n");
        let mut want = header("bytes 0-0/20").into_bytes();
        want.extend_from_slice(&[0]);
        want.extend_from_slice(header("bytes 4-8/20").as_bytes());
        want.extend_from_slice(&[4, 5, 6, 7, 8]);
        want.extend_from_slice(header("bytes 19-19/20").as_bytes());
        want.extend_from_slice(&[19]);
        want.extend_from_slice(b"\r\n--B--\r\n");
        assert_eq!(
            String::from_utf8_lossy(&body),
            String::from_utf8_lossy(&want)
        );
        assert_eq!(body, want);
        assert_eq!(m.content_length, want.len() as u64);
    }

    // Content-Length must be exact, or the client sees a truncated or overlong response.
    #[tokio::test]
    async fn content_length_matches_body_for_random_range_sets() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for round in 0..300 {
            let len = 1 + next(5000);
            let mut cuts: Vec<u64> = (0..2 + next(32)).map(|_| next(len + 1)).collect();
            cuts.sort_unstable();
            cuts.dedup();
            // Every other gap between cut points becomes a range: disjoint and sorted.
            let ranges: Vec<ByteRange> = cuts
                .chunks_exact(2)
                .filter_map(|c| ByteRange::new(c[0], c[1]))
                .collect();
            if ranges.is_empty() {
                continue;
            }
            let boundary = format!("{:x}", next(u64::MAX));
            let file = mem_file(len, 1 + next(700), Mode::Good);
            let m = multipart(file, &ranges, "application/octet-stream", &boundary);
            let body = collect(m.body).await.unwrap();
            assert_eq!(
                m.content_length,
                body.len() as u64,
                "round {round}: {ranges:?}"
            );
            // Every part's bytes appear right after its header.
            let mut at = 0;
            for rg in &ranges {
                let part_header = format!("Content-Range: {}\r\n\r\n", rg.content_range(len));
                let pos = find(&body[at..], part_header.as_bytes()).expect("part header") + at;
                at = pos + part_header.len();
                let part = &body[at..at + rg.len() as usize];
                assert_eq!(part, &expected_bytes(*rg)[..], "round {round}");
            }
            assert!(body.ends_with(format!("\r\n--{boundary}--\r\n").as_bytes()));
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    // Files larger than 4 GiB: 64-bit offsets in Content-Range and in the length.
    #[tokio::test]
    async fn offsets_beyond_4gib() {
        let len = 6_000_000_000;
        let ranges = [r(4_294_967_290, 4_294_967_300), r(5_999_999_990, len)];
        let m = multipart(mem_file(len, 7, Mode::Good), &ranges, "video/mp4", "b");
        let body = collect(m.body).await.unwrap();
        assert_eq!(m.content_length, body.len() as u64);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("Content-Range: bytes 4294967290-4294967299/6000000000\r\n"));
        assert!(text.contains("Content-Range: bytes 5999999990-5999999999/6000000000\r\n"));
        // The length is computed without reading: ranges of many GiB are fine.
        let huge = [r(0, 3_000_000_000), r(3_000_000_001, len)];
        let m = multipart(mem_file(len, 7, Mode::Good), &huge, "video/mp4", "b");
        let headers: u64 = huge
            .iter()
            .map(|h| part_header("b", "video/mp4", h, len).len() as u64)
            .sum();
        assert_eq!(
            m.content_length,
            len - 1 + headers + "\r\n--b--\r\n".len() as u64
        );
    }

    // The body is streamed: nothing is read up front, and a range is opened only after the
    // previous one has been sent completely.
    #[tokio::test]
    async fn ranges_are_read_lazily_one_after_another() {
        let file = mem_file(100, 4, Mode::Good);
        let ranges = [r(0, 10), r(20, 30), r(40, 50)];
        let m = multipart(file.clone(), &ranges, "text/plain", "b");
        let reads = || file.reads.lock().unwrap().clone();
        assert!(reads().is_empty());
        let mut body = m.body;
        for (i, rg) in ranges.iter().enumerate() {
            let header = body.next().await.unwrap().unwrap();
            assert!(header.starts_with(b"\r\n--b\r\n"));
            assert_eq!(reads(), ranges[..=i].to_vec());
            let mut got = Vec::new();
            while got.len() < rg.len() as usize {
                got.extend_from_slice(&body.next().await.unwrap().unwrap());
            }
            assert_eq!(got, expected_bytes(*rg));
            assert_eq!(reads().len(), i + 1, "the next range is not opened yet");
        }
        assert_eq!(&body.next().await.unwrap().unwrap()[..], b"\r\n--b--\r\n");
        assert!(body.next().await.is_none());
    }

    // A store error aborts the body (ByteStream contract): it is passed on and nothing follows.
    #[tokio::test]
    async fn reader_error_propagates_and_ends_the_body() {
        let file = mem_file(100, 4, Mode::FailAt(25));
        let m = multipart(
            file.clone(),
            &[r(0, 10), r(20, 30), r(40, 50)],
            "text/plain",
            "b",
        );
        let items: Vec<io::Result<Bytes>> = m.body.collect().await;
        let last = items.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.to_string(), "disk on fire");
        assert!(items[..items.len() - 1].iter().all(Result::is_ok));
        assert_eq!(
            file.reads.lock().unwrap().len(),
            2,
            "the third range is never opened"
        );
    }

    // A store returning too few or too many bytes would break Content-Length: error instead.
    #[tokio::test]
    async fn wrong_byte_count_from_store_is_an_error() {
        for (mode, kind) in [
            (Mode::Short, io::ErrorKind::UnexpectedEof),
            (Mode::Long, io::ErrorKind::InvalidData),
        ] {
            let m = multipart(
                mem_file(100, 4, mode),
                &[r(0, 10), r(20, 30)],
                "text/plain",
                "b",
            );
            let items: Vec<io::Result<Bytes>> = m.body.collect().await;
            let err = items.last().unwrap().as_ref().unwrap_err();
            assert_eq!(err.kind(), kind, "{err}");
            assert!(err.to_string().contains("range 0..10"), "{err}");
            let ok_bytes: usize = items.iter().flatten().map(Bytes::len).sum();
            assert!(ok_bytes <= 10 + part_header("b", "text/plain", &r(0, 10), 100).len());
        }
    }
}
