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

use super::plan::Peers;
use super::sources::SourceId;
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
        let Some(src) = round.sources.pick(id) else {
            lock_plan(round).release(id, range.start);
            return Outcome::Done;
        };
        let mut written_to = range.start;
        let judge = slow_retries < speed::MAX_SLOW_RETRIES;
        let at = Fetch { src, range, judge };
        let result = fetch(round, id, at, &mut written_to, &mut kick).await;
        round.sources.done(src);
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
            Err(Fault::Restart(r)) if leave_source(round, src, &restart_reason(&r)) => continue,
            Err(Fault::Restart(r)) => return Outcome::Restart(r),
            Err(Fault::Error(e)) => e,
        };
        let delay = match retry_delay(round, id, src, err, &mut retries) {
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

/// With several servers, stops using `src` (it failed or serves another file now) and says
/// so; false when it is the only one left (the caller then ends the round as before).
fn leave_source(round: &Round, src: SourceId, why: &str) -> bool {
    if round.sources.len() < 2 || !round.sources.drop_source(src) {
        return false;
    }
    let url = round.sources.get(src).map_or("", |s| s.url.as_str());
    round
        .progress
        .note(&format!("{url}: {why}; not using this server any more"));
    true
}

fn restart_reason(r: &Restart) -> String {
    match r {
        Restart::IgnoresRange => "it ignores Range".into(),
        Restart::Changed(how) => format!("the file there changed ({how})"),
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
            let view = View {
                round,
                now,
                stall,
                thief: id,
            };
            let next = plan.next(id, &view);
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

/// What [`Plan::next`](super::plan::Plan::next) learns about the other workers: who is
/// silent, and how fast each one is (the thief: the best server's speed, where it will go).
struct View<'a> {
    round: &'a Round,
    now: Instant,
    stall: Duration,
    thief: usize,
}

impl Peers for View<'_> {
    fn stalled(&self, w: usize) -> bool {
        self.round.speeds.silent(w, self.now, self.stall)
    }

    fn speed(&self, w: usize) -> u64 {
        let sources = &self.round.sources;
        match self.round.speeds.get(w) {
            _ if w == self.thief => sources.best_speed(),
            0 => sources.speed_of_worker(w),
            s => s,
        }
    }
}

/// After a failure: how long to wait before retrying (zero when the connection had delivered
/// bytes since its last failure, see [`Retries`]), or how the worker ends (error not
/// retryable, tries without progress used up, or shed on 429/503).
fn retry_delay(
    round: &Round,
    id: usize,
    src: SourceId,
    err: Error,
    retries: &mut Retries,
) -> Result<Duration, Outcome> {
    let delay = retries.failed(err.retry_after());
    let failures = retries.failures();
    if !err.is_retryable() || failures >= round.opts.max_tries {
        // Another server of the same file may do better: try the others afresh.
        if err.is_remote() && leave_source(round, src, &err.to_string()) {
            *retries = Retries::new(round.opts.backoff);
            return Ok(Duration::ZERO);
        }
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

/// One request: from which server, which range, and whether it may be judged too slow.
#[derive(Clone, Copy)]
struct Fetch {
    src: SourceId,
    range: ByteRange,
    judge: bool,
}

/// Fetches `at.range` (or the whole body when the server ignores ranges) from `at.src`,
/// writing as it goes; `written_to` is the offset below which every byte of it is written.
async fn fetch(
    round: &Round,
    id: usize,
    at: Fetch,
    written_to: &mut u64,
    kick: &mut watch::Receiver<u64>,
) -> Result<(), Fault> {
    let Some(src) = round.sources.get(at.src) else {
        return Err(Fault::Cancelled);
    };
    let range = at.range;
    if !round.ranged && range.start != 0 {
        // A plain GET delivers the body from byte 0; it can only fill a segment starting there.
        return Err(protocol(
            &src.url,
            format!("cannot fetch {range} without Range support"),
        ));
    }
    let mut req = round.opts.auth.apply(round.client.get(&src.url), &src.url);
    if round.ranged {
        req = req.header(RANGE, range.to_range_header());
        if let Some(v) = src.validator.if_range() {
            req = req.header(IF_RANGE, v);
        }
    }
    let timeout = round.opts.timeout;
    let send = tokio::time::timeout(timeout, req.send());
    let mut cancel = round.cancel.clone();
    let resp = tokio::select! {
        r = send => r.map_err(|_| stalled(&src.url, timeout))?.map_err(|e| network(&src.url, e))?,
        _ = super::cancelled(&mut cancel) => return Err(Fault::Cancelled),
        _ = kick.changed() => return Err(Fault::Beaten),
    };
    check_response(round, src, &resp, range)?;
    stream_body(round, id, (resp, at), written_to, kick).await
}

/// Reads an accepted response's body into the part file.
async fn stream_body(
    round: &Round,
    id: usize,
    (mut resp, at): (Response, Fetch),
    written_to: &mut u64,
    kick: &mut watch::Receiver<u64>,
) -> Result<(), Fault> {
    let url = round.sources.get(at.src).map_or("", |s| s.url.as_str());
    let mut cancel = round.cancel.clone();
    let mut meter = speed::Meter::new(Instant::now());
    let mut buf = Vec::with_capacity(WRITE_BUFFER);
    let mut offset = at.range.start;
    let result = 'body: loop {
        let next = tokio::select! {
            r = tokio::time::timeout(round.opts.timeout, resp.chunk()) => r,
            _ = super::cancelled(&mut cancel) => break Err(Fault::Cancelled),
            _ = kick.changed() => break Err(Fault::Beaten),
        };
        let chunk = match next {
            Err(_) => break Err(stalled(url, round.opts.timeout).into()),
            Ok(Err(source)) => break Err(network(url, source).into()),
            Ok(Ok(None)) => break end_of_body(round, id, url, offset),
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
            let sink = (id, at.src);
            take_bytes(round, sink, &piece[..n as usize], &mut buf, written_to).await?;
            offset += n;
            allowed += n;
            if n < piece.len() as u64 {
                break 'body Ok(()); // segment complete (perhaps shortened by a steal): drop the response
            }
        }
        if let Some(speed) = meter.feed(allowed, Instant::now()) {
            round.speeds.set(id, speed);
            round.sources.observe(at.src, speed);
            if at.judge
                && meter.windows >= speed::WARM_UP_WINDOWS
                && is_straggler(round, id, speed, offset)
            {
                break Err(Fault::Slow);
            }
        }
    };
    // Bytes already received are good even when the connection failed: keep them.
    flush(round, (id, at.src), &mut buf, written_to).await?;
    result
}

/// Copies claimed bytes through the fixed-size buffer, writing it whenever it is full: hyper
/// hands out chunks of up to ~400 KiB, and a growing Vec would keep a MiB per connection.
async fn take_bytes(
    round: &Round,
    sink: (usize, SourceId),
    mut piece: &[u8],
    buf: &mut Vec<u8>,
    written_to: &mut u64,
) -> Result<(), Fault> {
    while !piece.is_empty() {
        let (now, rest) = piece.split_at((WRITE_BUFFER - buf.len()).min(piece.len()));
        buf.extend_from_slice(now);
        piece = rest;
        if buf.len() == WRITE_BUFFER {
            flush(round, sink, buf, written_to).await?;
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
fn end_of_body(round: &Round, id: usize, url: &str, offset: u64) -> Result<(), Fault> {
    let end = lock_plan(round).end_of(id);
    match end {
        Some(end) if round.length.is_some() && offset < end => Err(Error::Protocol {
            url: url.to_string(),
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

/// Writes the buffer at its offset (`*written_to`) and records it as written (not yet durable),
/// and, with several servers, which one it came from.
async fn flush(
    round: &Round,
    (id, src): (usize, SourceId),
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
        if round.sources.len() > 1 {
            round
                .provenance
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .record(r, src);
        }
    }
    *written_to = at + n;
    round.progress.add(id, n);
    Ok(())
}

fn protocol(url: &str, msg: String) -> Fault {
    Fault::Error(Error::Protocol {
        url: url.to_string(),
        msg,
    })
}

fn stalled(url: &str, after: Duration) -> Error {
    Error::Stalled {
        url: url.to_string(),
        after,
    }
}

fn network(url: &str, source: reqwest::Error) -> Error {
    Error::Network {
        url: url.to_string(),
        source,
    }
}
