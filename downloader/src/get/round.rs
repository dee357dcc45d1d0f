//! One round of a download: open the part file, run the workers under supervision, record
//! durable progress (fdatasync, then the journal) every interval and at the end.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::ByteRange;
use reqwest::Client;
use tokio::sync::watch;

use super::journal::{self, Journal};
use super::output::Target;
use super::plan::Plan;
use super::ranges::RangeSet;
use super::sources::Sources;
use super::worker::{self, Outcome};
use super::{cancelled, speed, Options, Restart, Round, State};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::retry::Shedder;

/// One round. `Ok(None)`: every byte is durable. `Ok(Some(_))`: start over.
pub(super) async fn run_round(
    client: &Client,
    url: &str,
    opts: &Options,
    target: &Target,
    state: &mut State,
    progress: &Arc<Progress>,
    interrupt: watch::Receiver<bool>,
) -> Result<Option<Restart>> {
    if !state.ranged {
        // A plain GET always starts at byte 0: earlier bytes are fetched (and written) again.
        state.done = RangeSet::new();
    }
    let length = state.probe.length;
    let file = target.open_part(length, state.done.covered() > 0)?;
    let missing = match length {
        Some(len) => state.done.missing(len),
        None => ByteRange::new(0, u64::MAX).into_iter().collect(),
    };
    let connections = if state.ranged {
        opts.connections.max(1)
    } else {
        1
    };
    let (cancel_tx, cancel) = watch::channel(false);
    progress.set_total(length);
    progress.set_done(state.done.covered());
    let round = Arc::new(Round {
        client: client.clone(),
        url: url.to_string(),
        length,
        sources: Sources::new(state.pool.clone(), connections),
        ranged: state.ranged,
        file: Arc::new(file),
        part_path: target.part.clone(),
        plan: Mutex::new(Plan::new(&missing, connections, opts.min_split)),
        written: Mutex::new(state.done.clone()),
        provenance: Mutex::new(state.provenance.clone()),
        progress: Arc::clone(progress),
        shedder: Shedder::new(),
        speeds: speed::SpeedBoard::new(connections),
        cancel,
        opts: opts.worker.clone(),
        kicks: (0..connections).map(|_| watch::channel(0).0).collect(),
        plan_changed: tokio::sync::Notify::new(),
    });
    let mut journal = Journal {
        url: url.to_string(),
        length: length.unwrap_or(0),
        etag: state.probe.validator.etag.clone(),
        last_modified: state.probe.validator.last_modified.clone(),
        done: Vec::new(),
    };
    let mut book = Bookkeeping {
        path: &target.journal,
        journal: &mut journal,
        last: state.done.clone(),
    };
    let ended = supervise(&round, connections, &cancel_tx, &mut book, opts, interrupt).await;
    book.flush(&round).await?;
    state.done = round
        .written
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    state.provenance = round
        .provenance
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match ended? {
        Some(end) => end,
        None => complete_or_error(&round, state),
    }
}

/// Durable-progress records of one round.
struct Bookkeeping<'a> {
    path: &'a std::path::Path,
    journal: &'a mut Journal,
    /// What the journal last recorded.
    last: RangeSet,
}

impl Bookkeeping<'_> {
    /// fdatasync, then journal (without a known length there is nothing to resume: sync only).
    async fn flush(&mut self, round: &Arc<Round>) -> Result<()> {
        if round.length.is_none() {
            return sync_data(round).await;
        }
        self.last = flush_journal(round, self.path, self.journal, &self.last).await?;
        Ok(())
    }
}

/// How many times a round re-opens its connections after all of them left with work
/// remaining (they shed on 429/503 while another one was about to finish).
const MAX_RESPAWNS: usize = 8;

/// Runs the workers, records progress every `journal_interval`, refreshes the display.
/// `Ok(None)`: every worker ended normally; `Ok(Some(end))`: the round ended early.
async fn supervise(
    round: &Arc<Round>,
    connections: usize,
    cancel_tx: &watch::Sender<bool>,
    book: &mut Bookkeeping<'_>,
    opts: &Options,
    mut interrupt: watch::Receiver<bool>,
) -> Result<Option<Result<Option<Restart>>>> {
    let mut workers = tokio::task::JoinSet::new();
    let spawn_all = |workers: &mut tokio::task::JoinSet<Outcome>| {
        for id in 0..connections {
            workers.spawn(worker::run(Arc::clone(round), id));
        }
    };
    spawn_all(&mut workers);
    let mut journal_tick = tokio::time::interval(opts.journal_interval);
    let mut display_tick = tokio::time::interval(Duration::from_millis(200));
    let (mut ended, mut respawns) = (None, 0);
    loop {
        tokio::select! {
            joined = workers.join_next() => match joined {
                None if ended.is_none() && !round_plan_done(round) && respawns < MAX_RESPAWNS => {
                    respawns += 1;
                    spawn_all(&mut workers);
                }
                None => return Ok(ended),
                Some(res) => {
                    let outcome = res.unwrap_or_else(|e| Outcome::Failed(Error::Protocol {
                        url: round.url.clone(),
                        msg: format!("worker panicked: {e}"),
                    }));
                    if let Some(end) = outcome_end(outcome) {
                        ended.get_or_insert(end);
                        let _ = cancel_tx.send(true);
                    }
                }
            },
            _ = journal_tick.tick() => book.flush(round).await?,
            _ = display_tick.tick() => round.progress.tick(),
            _ = cancelled(&mut interrupt), if ended.is_none() => {
                ended = Some(Err(Error::Interrupted));
                let _ = cancel_tx.send(true);
            }
        }
    }
}

fn round_plan_done(round: &Round) -> bool {
    round
        .plan
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .is_done()
}

/// Maps a worker outcome to the end of the round, if it ends it.
fn outcome_end(outcome: Outcome) -> Option<Result<Option<Restart>>> {
    match outcome {
        Outcome::Done | Outcome::Shed | Outcome::Cancelled => None,
        Outcome::Restart(r) => Some(Ok(Some(r))),
        Outcome::Failed(e) => Some(Err(e)),
    }
}

/// All workers ended normally: the file must be complete.
fn complete_or_error(round: &Round, state: &mut State) -> Result<Option<Restart>> {
    let len = round.length.unwrap_or_else(|| state.done.covered());
    if state.probe.length.is_none() {
        state.probe.length = Some(len);
    }
    if state.done.covers(len) {
        return Ok(None);
    }
    Err(Error::Protocol {
        url: round.url.clone(),
        msg: format!(
            "all connections ended with {} of {} bytes",
            state.done.covered(),
            len
        ),
    })
}

/// fdatasync the data, then record what was written before the sync (never more).
async fn flush_journal(
    round: &Arc<Round>,
    path: &std::path::Path,
    journal: &mut Journal,
    last: &RangeSet,
) -> Result<RangeSet> {
    let snapshot = round
        .written
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    if &snapshot == last {
        return Ok(snapshot);
    }
    sync_data(round).await?;
    journal.set_done(&snapshot);
    let bytes = journal::encode(journal);
    let p = path.to_path_buf();
    let res = tokio::task::spawn_blocking(move || journal::write_atomic(&p, &bytes)).await;
    match res {
        Ok(Ok(())) => Ok(snapshot),
        Ok(Err(e)) => Err(Error::io(path, e)),
        Err(e) => Err(Error::io(path, std::io::Error::other(e))),
    }
}

async fn sync_data(round: &Arc<Round>) -> Result<()> {
    let file = Arc::clone(&round.file);
    let res = tokio::task::spawn_blocking(move || file.sync_data()).await;
    match res {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::io(&round.part_path, e)),
        Err(e) => Err(Error::io(&round.part_path, std::io::Error::other(e))),
    }
}
