//! `ferry get`: probe, plan, fetch over several connections, journal, verify, publish.
//!
//! A download runs in *rounds*. A round fixes what is being downloaded (length, validator,
//! whether ranges work) and runs the workers until the plan is empty. A round ends early when
//! a worker sees that the server ignores ranges or that the file changed; the next round then
//! starts over from zero, so versions are never mixed.

pub mod checksum;
pub mod journal;
pub mod output;
pub mod plan;
pub mod probe;
pub mod ranges;
pub mod speed;
pub mod worker;

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ferry_proto::ByteRange;
use reqwest::Client;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::progress::{Progress, Ui};
use crate::retry::{Backoff, Shedder};
use crate::size::format_size;
use checksum::Expected;
use journal::Journal;
use output::Target;
use plan::Plan;
use probe::{Probe, Validator};
use ranges::RangeSet;
use worker::Outcome;

/// Restarts from zero allowed in one run (server ignores ranges, file changed).
const MAX_RESTARTS: usize = 3;

/// Settings of one `ferry get` run.
#[derive(Debug, Clone)]
pub struct Options {
    pub output: Option<PathBuf>,
    pub dir: Option<PathBuf>,
    pub connections: usize,
    pub min_split: u64,
    pub checksum: Option<Expected>,
    pub overwrite: bool,
    pub restart: bool,
    pub worker: WorkerOptions,
    /// How often durable progress is recorded (the issue asks for at least once a second).
    pub journal_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct WorkerOptions {
    pub timeout: Duration,
    pub backoff: Backoff,
    pub max_tries: u32,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            output: None,
            dir: None,
            connections: 8,
            min_split: 1 << 20,
            checksum: None,
            overwrite: false,
            restart: false,
            worker: WorkerOptions {
                timeout: Duration::from_secs(30),
                backoff: Backoff::new(Duration::from_secs(1)),
                max_tries: 5,
            },
            journal_interval: Duration::from_secs(1),
        }
    }
}

/// Why a round ended before the plan was empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restart {
    /// A ranged request got a 200 with the same validator.
    IgnoresRange,
    /// The remote file is no longer the one being downloaded; the text says how.
    Changed(String),
}

/// Everything the workers of one round share.
pub struct Round {
    pub client: Client,
    pub url: String,
    pub length: Option<u64>,
    pub validator: Validator,
    /// False: plain GETs of the whole body on one connection.
    pub ranged: bool,
    pub file: Arc<File>,
    pub part_path: PathBuf,
    pub plan: Mutex<Plan>,
    /// Bytes written (not necessarily durable yet).
    pub written: Mutex<RangeSet>,
    pub progress: Arc<Progress>,
    pub shedder: Shedder,
    pub speeds: speed::SpeedBoard,
    pub cancel: watch::Receiver<bool>,
    pub opts: WorkerOptions,
}

/// What the next round downloads.
struct State {
    probe: Probe,
    ranged: bool,
    done: RangeSet,
}

/// Downloads `url`; returns the final path. `interrupt` turning true (Ctrl-C) stops the
/// workers, records progress and returns [`Error::Interrupted`].
pub async fn download(
    client: &Client,
    url: &str,
    opts: &Options,
    ui: &Ui,
    interrupt: watch::Receiver<bool>,
) -> Result<PathBuf> {
    let probe = probe_with_retries(client, url, &opts.worker).await?;
    let target = Target::resolve(opts, probe.file_name.as_deref())?;
    let progress = ui.transfer(&target.display_name());
    target.refuse_existing(opts.overwrite)?;
    let mut state = resume_state(&target, url, probe, opts, &progress)?;
    let result = run_rounds(client, url, opts, &target, &mut state, &progress, interrupt).await;
    let result = match result {
        Ok(()) => finish(&target, &state, opts).await,
        Err(e) => Err(e),
    };
    match &result {
        Ok(_) => progress.finish(true, &format!("done, {}", format_size(progress.done()))),
        Err(_) => progress.finish(false, "failed"),
    }
    result.map(|()| target.path.clone())
}

async fn probe_with_retries(client: &Client, url: &str, opts: &WorkerOptions) -> Result<Probe> {
    let mut rng = fastrand::Rng::new();
    let mut attempt = 0;
    loop {
        match probe::probe(client, url, opts.timeout).await {
            Err(e) if e.is_retryable() && attempt + 1 < opts.max_tries => {
                let delay = match &e {
                    Error::Status {
                        retry_after: Some(d),
                        ..
                    } => (*d).min(crate::retry::MAX_RETRY_AFTER),
                    _ => opts.backoff.delay(attempt, &mut rng),
                };
                tracing::info!("probe failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

/// Uses the journal when it describes the same file, otherwise starts from zero.
fn resume_state(
    target: &Target,
    url: &str,
    probe: Probe,
    opts: &Options,
    progress: &Progress,
) -> Result<State> {
    let ranged = probe.ranges && probe.length.is_some();
    let fresh = |probe| {
        Ok(State {
            probe,
            ranged,
            done: RangeSet::new(),
        })
    };
    if opts.restart {
        target.discard()?;
        return fresh(probe);
    }
    let journal = match journal::load(&target.journal) {
        Ok(None) => return fresh(probe),
        Ok(Some(Ok(j))) => j,
        Ok(Some(Err(source))) => {
            return Err(Error::Journal {
                path: target.journal.clone(),
                source,
            })
        }
        Err(e) => return Err(Error::io(&target.journal, e)),
    };
    match journal_mismatch(&journal, url, &probe) {
        None if target.part.exists() => {
            let done = journal.done_set();
            progress.note(&format!(
                "resuming: {} already on disk",
                format_size(done.covered())
            ));
            Ok(State {
                probe,
                ranged,
                done,
            })
        }
        None => fresh(probe),
        Some(why) => {
            progress.note(&format!("{why}: starting over from zero"));
            fresh(probe)
        }
    }
}

/// Why a journal cannot be resumed against `probe`, if it cannot.
fn journal_mismatch(journal: &Journal, url: &str, probe: &Probe) -> Option<String> {
    if probe.length != Some(journal.length) {
        return Some(format!(
            "the remote length changed since the last run ({} -> {:?})",
            journal.length, probe.length
        ));
    }
    let v = &probe.validator;
    if journal.etag != v.etag || journal.last_modified != v.last_modified {
        return Some(
            "the remote file changed since the last run (new ETag or Last-Modified)".into(),
        );
    }
    if v.if_range().is_none() {
        return Some("the server gives no validator, so the partial file cannot be trusted".into());
    }
    if journal.url != url && journal.etag.is_none() {
        return Some(format!("the partial file came from {}", journal.url));
    }
    None
}

async fn run_rounds(
    client: &Client,
    url: &str,
    opts: &Options,
    target: &Target,
    state: &mut State,
    progress: &Arc<Progress>,
    interrupt: watch::Receiver<bool>,
) -> Result<()> {
    for _ in 0..=MAX_RESTARTS {
        let restart = match run_round(
            client,
            url,
            opts,
            target,
            state,
            progress,
            interrupt.clone(),
        )
        .await?
        {
            None => return Ok(()),
            Some(r) => r,
        };
        match restart {
            Restart::IgnoresRange => {
                progress
                    .note("the server ignores Range: downloading on one connection from the start");
                state.ranged = false;
            }
            Restart::Changed(how) => {
                progress.note(&format!(
                    "the remote file changed ({how}): starting over from zero"
                ));
                state.probe = probe_with_retries(client, url, &opts.worker).await?;
                state.ranged = state.probe.ranges && state.probe.length.is_some();
            }
        }
        state.done = RangeSet::new();
        target.discard()?;
    }
    Err(Error::Protocol {
        url: url.to_string(),
        msg: format!("gave up after {MAX_RESTARTS} restarts from zero"),
    })
}

/// One round. `Ok(None)`: every byte is durable. `Ok(Some(_))`: start over.
async fn run_round(
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
        validator: state.probe.validator.clone(),
        ranged: state.ranged,
        file: Arc::new(file),
        part_path: target.part.clone(),
        plan: Mutex::new(Plan::new(&missing, connections, opts.min_split)),
        written: Mutex::new(state.done.clone()),
        progress: Arc::clone(progress),
        shedder: Shedder::new(),
        speeds: speed::SpeedBoard::new(connections),
        cancel,
        opts: opts.worker.clone(),
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

/// Resolves once `flag` is true; never if its sender is gone without setting it.
pub async fn cancelled(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
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

/// Verifies digests, publishes the file without clobbering, removes the journal.
async fn finish(target: &Target, state: &State, opts: &Options) -> Result<()> {
    let expected: Vec<Expected> = opts
        .checksum
        .iter()
        .chain(state.probe.digest.iter())
        .cloned()
        .collect();
    let part = target.part.clone();
    tokio::task::spawn_blocking(move || checksum::verify(&part, &expected))
        .await
        .map_err(|e| Error::io(&target.part, std::io::Error::other(e)))??;
    target.publish(opts.overwrite)
}
