//! One worker = one HTTP/1.1 connection fetching planned ranges until nothing is left.
//!
//! Never a wrong byte: every ranged request carries `If-Range` with the validator, and bytes
//! are written only from a 206 whose `Content-Range` is exactly the range asked for (RFC 9110
//! §14.4, §13.1.5). A 200 to a ranged request means the server ignores `Range`; a changed
//! validator or length means the file changed. Both end the round (see [`Restart`]); the
//! orchestrator starts over rather than mixing versions.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferry_proto::{ByteRange, ContentRange};
use http::header::{CONTENT_LENGTH, CONTENT_RANGE, IF_RANGE, RANGE};
use http::StatusCode;
use reqwest::Response;

use super::probe::{header_str, header_u64, status_error};
use super::{speed, Restart, Round};
use crate::error::Error;
use crate::retry::Retries;

/// Bytes gathered in memory before one positional write.
const WRITE_BUFFER: usize = 64 * 1024;

/// How a worker ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing left to take.
    Done,
    /// Left because the server refused more connections (429/503) while others stay.
    Shed,
    Cancelled,
    Restart(Restart),
    Failed(Error),
}

/// Why one fetch stopped early.
enum Fault {
    Restart(Restart),
    Cancelled,
    /// Far slower than the other connections: retry on a fresh one.
    Slow,
    Error(Error),
}

impl From<Error> for Fault {
    fn from(e: Error) -> Self {
        Fault::Error(e)
    }
}

/// Runs worker `id` until the plan has nothing for it.
pub async fn run(round: Arc<Round>, id: usize) -> Outcome {
    round.shedder.join();
    round.progress.connection_opened();
    let outcome = work(&round, id).await;
    round.progress.connection_closed();
    if !matches!(outcome, Outcome::Shed) {
        round.shedder.leave();
    }
    outcome
}

async fn work(round: &Round, id: usize) -> Outcome {
    let mut retries = Retries::new(round.opts.backoff);
    let mut slow_retries = 0u32;
    let mut cancel = round.cancel.clone();
    loop {
        if *cancel.borrow() {
            return Outcome::Cancelled;
        }
        let Some(range) = lock_plan(round).next(id) else {
            return Outcome::Done;
        };
        let mut written_to = range.start;
        let judge = slow_retries < speed::MAX_SLOW_RETRIES;
        let result = fetch(round, id, range, &mut written_to, judge).await;
        round.speeds.set(id, 0);
        // Without ranges a retry starts at 0 again, so a failure requeues the whole segment.
        let requeue_from = if round.ranged || result.is_ok() {
            written_to
        } else {
            range.start
        };
        lock_plan(round).release(id, requeue_from);
        if written_to > range.start {
            retries.progress();
        }
        let err = match result {
            Ok(()) => continue,
            Err(Fault::Cancelled) => return Outcome::Cancelled,
            Err(Fault::Slow) => {
                slow_retries += 1;
                round.progress.verbose(&format!(
                    "connection {id}: far slower than the others, reconnecting"
                ));
                continue;
            }
            Err(Fault::Restart(r)) => return Outcome::Restart(r),
            Err(Fault::Error(e)) => e,
        };
        let delay = match retry_delay(round, id, err, &mut retries) {
            Ok(delay) => delay,
            Err(outcome) => return outcome,
        };
        if delay.is_zero() {
            continue;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = super::cancelled(&mut cancel) => return Outcome::Cancelled,
        }
    }
}

fn lock_plan(round: &Round) -> std::sync::MutexGuard<'_, super::plan::Plan> {
    round.plan.lock().unwrap_or_else(|p| p.into_inner())
}

/// After a failure: how long to wait before retrying (zero when the connection had delivered
/// bytes since its last failure, see [`Retries`]), or how the worker ends (error not
/// retryable, tries without progress used up, or shed on 429/503).
fn retry_delay(
    round: &Round,
    id: usize,
    err: Error,
    retries: &mut Retries,
) -> Result<Duration, Outcome> {
    let retry_after = match &err {
        Error::Status { retry_after, .. } => *retry_after,
        _ => None,
    };
    let delay = retries.failed(retry_after);
    let failures = retries.failures();
    if !err.is_retryable() || failures >= round.opts.max_tries {
        return Err(Outcome::Failed(err));
    }
    let refused = matches!(
        err,
        Error::Status {
            status: 429 | 503,
            ..
        }
    );
    if refused && round.shedder.try_shed() {
        round.progress.verbose(&format!(
            "connection {id}: server refused it ({err}); continuing with fewer"
        ));
        return Err(Outcome::Shed);
    }
    round.progress.verbose(&format!(
        "connection {id}: {err}; retry {failures} in {delay:.1?}"
    ));
    Ok(delay)
}

/// Fetches `range` (or the whole body when the server ignores ranges), writing as it goes;
/// `written_to` is the offset below which every byte of the segment is written.
async fn fetch(
    round: &Round,
    id: usize,
    range: ByteRange,
    written_to: &mut u64,
    judge: bool,
) -> Result<(), Fault> {
    if !round.ranged && range.start != 0 {
        // A plain GET delivers the body from byte 0; it can only fill a segment starting there.
        return Err(protocol(
            round,
            format!("cannot fetch {range} without Range support"),
        ));
    }
    let mut req = round.client.get(&round.url);
    if round.ranged {
        req = req.header(RANGE, range.to_range_header());
        if let Some(v) = round.validator.if_range() {
            req = req.header(IF_RANGE, v);
        }
    }
    let timeout = round.opts.timeout;
    let send = tokio::time::timeout(timeout, req.send());
    let mut cancel = round.cancel.clone();
    let resp = tokio::select! {
        r = send => r.map_err(|_| stalled(round, timeout))?.map_err(|source| network(round, source))?,
        _ = super::cancelled(&mut cancel) => return Err(Fault::Cancelled),
    };
    check_response(round, &resp, range)?;
    stream_body(round, id, resp, range, written_to, judge).await
}

async fn stream_body(
    round: &Round,
    id: usize,
    mut resp: Response,
    range: ByteRange,
    written_to: &mut u64,
    judge: bool,
) -> Result<(), Fault> {
    let mut cancel = round.cancel.clone();
    let mut meter = speed::Meter::new(Instant::now());
    let mut buf = Vec::with_capacity(WRITE_BUFFER);
    let mut offset = range.start;
    let result = loop {
        let next = tokio::select! {
            r = tokio::time::timeout(round.opts.timeout, resp.chunk()) => r,
            _ = super::cancelled(&mut cancel) => break Err(Fault::Cancelled),
        };
        let chunk = match next {
            Err(_) => break Err(stalled(round, round.opts.timeout).into()),
            Ok(Err(source)) => break Err(network(round, source).into()),
            Ok(Ok(None)) => break end_of_body(round, id, offset),
            Ok(Ok(Some(chunk))) => chunk,
        };
        let allowed = lock_plan(round).claim(id, offset, chunk.len() as u64);
        // Copy through a fixed-size buffer: hyper hands out chunks of up to ~400 KiB, and a
        // growing Vec would keep a MiB per connection.
        let mut piece = &chunk[..allowed as usize];
        while !piece.is_empty() {
            let (now, rest) = piece.split_at((WRITE_BUFFER - buf.len()).min(piece.len()));
            buf.extend_from_slice(now);
            piece = rest;
            if buf.len() == WRITE_BUFFER {
                flush(round, id, &mut buf, written_to).await?;
            }
        }
        offset += allowed;
        if allowed < chunk.len() as u64 {
            break Ok(()); // segment complete (perhaps shortened by a steal): drop the response
        }
        if let Some(speed) = meter.feed(allowed, Instant::now()) {
            round.speeds.set(id, speed);
            if judge
                && meter.windows >= speed::WARM_UP_WINDOWS
                && is_straggler(round, id, speed, offset)
            {
                break Err(Fault::Slow);
            }
        }
    };
    // Bytes already received are good even when the connection failed: keep them.
    flush(round, id, &mut buf, written_to).await?;
    result
}

/// Far below the others' median speed, with enough left to be worth a fresh connection.
fn is_straggler(round: &Round, id: usize, mine: u64, offset: u64) -> bool {
    let Some(median) = round.speeds.median_of_others(id) else {
        return false;
    };
    let end = lock_plan(round).end_of(id);
    let remaining = end.unwrap_or(offset).saturating_sub(offset);
    speed::is_straggler(mine, median) && speed::worth_retrying(remaining, mine)
}

/// The body ended: fine when the segment is complete, otherwise the server sent too little.
fn end_of_body(round: &Round, id: usize, offset: u64) -> Result<(), Fault> {
    let end = lock_plan(round).end_of(id);
    match end {
        Some(end) if round.length.is_some() && offset < end => Err(Error::Protocol {
            url: round.url.clone(),
            msg: format!("response ended at byte {offset}, expected data up to {end}"),
        }
        .into()),
        _ => {
            if round.length.is_none() {
                // Unknown length: the end of the body is the end of the file.
                lock_plan(round).end_at(offset);
            }
            Ok(())
        }
    }
}

/// Writes the buffer at its offset (`*written_to`) and records it as written (not yet durable).
async fn flush(
    round: &Round,
    id: usize,
    buf: &mut Vec<u8>,
    written_to: &mut u64,
) -> Result<(), Fault> {
    if buf.is_empty() {
        return Ok(());
    }
    // The buffer travels to the blocking thread and back, so it is allocated once per worker.
    let mut data = std::mem::take(buf);
    let (file, at) = (Arc::clone(&round.file), *written_to);
    let res = tokio::task::spawn_blocking(move || {
        let res = file.write_all_at(&data, at).map(|()| data.len() as u64);
        data.clear();
        (res, data)
    })
    .await;
    let n = match res {
        Ok((Ok(n), data)) => {
            *buf = data;
            n
        }
        Ok((Err(e), _)) => return Err(Error::io(&round.part_path, e).into()),
        Err(e) => return Err(Error::io(&round.part_path, std::io::Error::other(e)).into()),
    };
    if let Some(r) = ByteRange::new(at, at + n) {
        round
            .written
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(r);
    }
    *written_to = at + n;
    round.progress.add(id, n);
    Ok(())
}

/// Decides whether the body of `resp` may be written as `range`.
fn check_response(round: &Round, resp: &Response, range: ByteRange) -> Result<(), Fault> {
    let h = resp.headers();
    let status = resp.status();
    if status == StatusCode::RANGE_NOT_SATISFIABLE {
        return Err(Fault::Restart(Restart::Changed(
            "the server says the range is past the end".into(),
        )));
    }
    if !status.is_success() {
        return Err(status_error(&round.url, resp, status).into());
    }
    if round.validator.contradicts(h) {
        return Err(Fault::Restart(Restart::Changed(
            "its validator (ETag or Last-Modified) changed".into(),
        )));
    }
    match (round.ranged, status) {
        (true, StatusCode::PARTIAL_CONTENT) => {
            check_content_range(round, header_str(h, &CONTENT_RANGE), range)
        }
        (true, StatusCode::OK) => match (header_u64(h, &CONTENT_LENGTH), round.length) {
            (Some(seen), Some(len)) if seen != len => Err(changed_length(len, seen)),
            _ => Err(Fault::Restart(Restart::IgnoresRange)),
        },
        (false, StatusCode::OK) => match (header_u64(h, &CONTENT_LENGTH), round.length) {
            (Some(seen), Some(len)) if seen != len => Err(changed_length(len, seen)),
            _ => Ok(()),
        },
        (_, s) => Err(protocol(
            round,
            format!("expected status 206 or 200, got {s}"),
        )),
    }
}

fn check_content_range(round: &Round, value: Option<&str>, asked: ByteRange) -> Result<(), Fault> {
    let length = round.length.unwrap_or_default();
    let expected = asked.content_range(length);
    let value = value.ok_or_else(|| {
        protocol(
            round,
            format!("206 without Content-Range, expected {expected:?}"),
        )
    })?;
    let parsed = ContentRange::parse(value).map_err(|e| protocol(round, e.to_string()))?;
    if let Some(seen) = parsed.complete.filter(|c| *c != length) {
        return Err(changed_length(length, seen));
    }
    if parsed.range != asked || parsed.complete.is_none() {
        return Err(protocol(
            round,
            format!("expected Content-Range {expected:?}, got {value:?}; not writing it"),
        ));
    }
    Ok(())
}

fn changed_length(expected: u64, seen: u64) -> Fault {
    Fault::Restart(Restart::Changed(format!(
        "its length changed from {expected} to {seen} bytes"
    )))
}

fn protocol(round: &Round, msg: String) -> Fault {
    Fault::Error(Error::Protocol {
        url: round.url.clone(),
        msg,
    })
}

fn stalled(round: &Round, after: Duration) -> Error {
    Error::Stalled {
        url: round.url.clone(),
        after,
    }
}

fn network(round: &Round, source: reqwest::Error) -> Error {
    Error::Network {
        url: round.url.clone(),
        source,
    }
}
