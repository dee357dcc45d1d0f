//! One worker = one HTTP/1.1 connection fetching planned ranges until nothing is left.
//!
//! Never a wrong byte: every ranged request carries `If-Range` with the validator, and bytes
//! are written only from a 206 whose `Content-Range` is exactly the range asked for (RFC 9110
//! §14.4, §13.1.5). A 200 to a ranged request means the server ignores `Range`; a changed
//! validator or length means the file changed. Both end the round (see [`Restart`]); the
//! orchestrator starts over rather than mixing versions.
//!
//! A worker with nothing to take waits while others still hold segments: when one of them
//! receives nothing for [`speed::stall_after`], the idle worker races it for the rest of its
//! segment (end-game, issue 15 §3, see [`super::plan`]); the loser is kicked out of its request.

use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod accept;

use ferry_proto::ByteRange;
use http::header::{IF_RANGE, RANGE};
use reqwest::Response;
use tokio::sync::watch;

use super::{speed, Restart, Round};
use crate::error::Error;
use crate::retry::Retries;
use accept::check_response;

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
    /// Another worker racing for the same bytes delivered first.
    Beaten,
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
    let Some(mut kick) = round.kicks.get(id).map(watch::Sender::subscribe) else {
        return Outcome::Done;
    };
    loop {
        // Kicks sent before this point were about an earlier segment (they are sent under the
        // plan lock, before that segment's release).
        kick.borrow_and_update();
        let range = match next_range(round, id).await {
            Ok(range) => range,
            Err(outcome) => return outcome,
        };
        let mut written_to = range.start;
        let judge = slow_retries < speed::MAX_SLOW_RETRIES;
        let result = fetch(round, id, range, &mut written_to, judge, &mut kick).await;
        round.speeds.set(id, 0);
        // Without ranges a retry starts at 0 again, so a failure requeues the whole segment.
        let requeue_from = if round.ranged || result.is_ok() {
            written_to
        } else {
            range.start
        };
        lock_plan(round).release(id, requeue_from);
        round.plan_changed.notify_waiters();
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
            Err(Fault::Beaten) => {
                round.progress.verbose(&format!(
                    "connection {id}: silent, another connection got its bytes first"
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

/// The next range for worker `id`. While there is none but other workers still hold
/// segments, waits: one of them may go silent (then this worker races it) or fail (then its
/// rest is requeued). `Err` when the plan is done or the round cancelled.
async fn next_range(round: &Round, id: usize) -> Result<ByteRange, Outcome> {
    let mut cancel = round.cancel.clone();
    loop {
        if *cancel.borrow() {
            return Err(Outcome::Cancelled);
        }
        let changed = round.plan_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let now = Instant::now();
        let rate = round.speeds.per_connection_rate(now);
        let stall = speed::stall_after(rate, round.opts.timeout);
        {
            let mut plan = lock_plan(round);
            let silent = |w: usize| round.speeds.silent(w, now, stall);
            let next = plan.next(id, &silent);
            for loser in plan.take_beaten() {
                round.kick(loser); // a silent racer replaced by this worker
            }
            if let Some(range) = next {
                round.speeds.touch(id, now);
                return Ok(range);
            }
            if plan.is_done() || !round.ranged {
                return Err(Outcome::Done);
            }
        }
        tokio::select! {
            _ = changed => {}
            _ = tokio::time::sleep(stall / 4) => {}
            _ = super::cancelled(&mut cancel) => return Err(Outcome::Cancelled),
        }
    }
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
    let delay = retries.failed(err.retry_after());
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
    kick: &mut watch::Receiver<u64>,
) -> Result<(), Fault> {
    if !round.ranged && range.start != 0 {
        // A plain GET delivers the body from byte 0; it can only fill a segment starting there.
        return Err(protocol(
            round,
            format!("cannot fetch {range} without Range support"),
        ));
    }
    let mut req = round
        .opts
        .auth
        .apply(round.client.get(&round.url), &round.url);
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
        _ = kick.changed() => return Err(Fault::Beaten),
    };
    check_response(round, &resp, range)?;
    let body = Body { resp, range, judge };
    stream_body(round, id, body, written_to, kick).await
}

/// A response accepted for `range`; `judge`: may be retried for being far too slow.
struct Body {
    resp: Response,
    range: ByteRange,
    judge: bool,
}

async fn stream_body(
    round: &Round,
    id: usize,
    body: Body,
    written_to: &mut u64,
    kick: &mut watch::Receiver<u64>,
) -> Result<(), Fault> {
    let Body {
        mut resp,
        range,
        judge,
    } = body;
    let mut cancel = round.cancel.clone();
    let mut meter = speed::Meter::new(Instant::now());
    let mut buf = Vec::with_capacity(WRITE_BUFFER);
    let mut offset = range.start;
    let result = 'body: loop {
        let next = tokio::select! {
            r = tokio::time::timeout(round.opts.timeout, resp.chunk()) => r,
            _ = super::cancelled(&mut cancel) => break Err(Fault::Cancelled),
            _ = kick.changed() => break Err(Fault::Beaten),
        };
        let chunk = match next {
            Err(_) => break Err(stalled(round, round.opts.timeout).into()),
            Ok(Err(source)) => break Err(network(round, source).into()),
            Ok(Ok(None)) => break end_of_body(round, id, offset),
            Ok(Ok(Some(chunk))) => chunk,
        };
        // With --limit-rate the chunk passes in small pieces, each granted by the shared
        // bucket first; without, in one piece.
        let quantum = round
            .opts
            .limit
            .as_ref()
            .map_or(chunk.len(), |l| l.quantum() as usize);
        let mut allowed = 0;
        for piece in chunk.chunks(quantum.max(1)) {
            if let Some(limit) = &round.opts.limit {
                tokio::select! {
                    _ = limit.take(piece.len() as u64) => {}
                    _ = super::cancelled(&mut cancel) => break 'body Err(Fault::Cancelled),
                    _ = kick.changed() => break 'body Err(Fault::Beaten),
                }
            }
            let n = claim(round, id, offset, piece.len() as u64);
            take_bytes(round, id, &piece[..n as usize], &mut buf, written_to).await?;
            offset += n;
            allowed += n;
            if n < piece.len() as u64 {
                break 'body Ok(()); // segment complete (perhaps shortened by a steal): drop the response
            }
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

/// Copies claimed bytes through the fixed-size buffer, writing it whenever it is full: hyper
/// hands out chunks of up to ~400 KiB, and a growing Vec would keep a MiB per connection.
async fn take_bytes(
    round: &Round,
    id: usize,
    mut piece: &[u8],
    buf: &mut Vec<u8>,
    written_to: &mut u64,
) -> Result<(), Fault> {
    while !piece.is_empty() {
        let (now, rest) = piece.split_at((WRITE_BUFFER - buf.len()).min(piece.len()));
        buf.extend_from_slice(now);
        piece = rest;
        if buf.len() == WRITE_BUFFER {
            flush(round, id, buf, written_to).await?;
        }
    }
    Ok(())
}

/// Claims received bytes; a racing worker's first claim kicks the rival it beat (under the
/// plan lock, see [`work`]).
fn claim(round: &Round, id: usize, offset: u64, len: u64) -> u64 {
    let now = Instant::now();
    let mut plan = lock_plan(round);
    let allowed = plan.claim(id, offset, len);
    for loser in plan.take_beaten() {
        round.kick(loser);
    }
    drop(plan);
    round.speeds.received(id, allowed, now);
    allowed
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
