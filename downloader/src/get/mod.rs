//! `ferry get`: probe, plan, fetch over several connections, journal, verify, publish.
//!
//! A download runs in *rounds*. A round fixes what is being downloaded (length, validator,
//! whether ranges work) and runs the workers until the plan is empty. A round ends early when
//! a worker sees that the server ignores ranges or that the file changed; the next round then
//! starts over from zero, so versions are never mixed.

pub mod checksum;
pub mod journal;
mod liar;
mod mirrors;
pub mod origin;
pub mod output;
pub mod plan;
pub mod probe;
pub mod provenance;
pub mod ranges;
mod resume;
mod round;
pub mod sources;
pub mod speed;
pub mod tree;
pub mod worker;
mod xattr;

use std::fs::File;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::Client;
use tokio::sync::watch;

use crate::error::{Error, Result};
use crate::progress::{Progress, Ui};
use crate::ratelimit::RateLimit;
use crate::retry::{Backoff, Retries, Shedder};
use crate::size::format_size;
use checksum::Expected;
use output::Target;
use plan::Plan;
use probe::{Probe, Validator};
use provenance::Provenance;
use ranges::RangeSet;
use resume::resume_state;
use round::run_round;
use sources::Sources;

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
    /// Replace an existing final file when the remote one changed (else exit 1 saying so).
    pub update: bool,
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
    /// Credentials, sent only to the origins they were given for.
    pub auth: crate::auth::Auth,
    /// `--limit-rate`: one bucket shared by every connection of every download of the run.
    pub limit: Option<Arc<RateLimit>>,
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
            update: false,
            restart: false,
            worker: WorkerOptions {
                timeout: Duration::from_secs(30),
                backoff: Backoff::new(Duration::from_secs(1)),
                max_tries: 5,
                auth: crate::auth::Auth::default(),
                limit: None,
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
    /// The URL the download is named after (errors of the round as a whole).
    pub url: String,
    pub length: Option<u64>,
    /// The servers of this round (one, or mirrors proven to serve the same bytes).
    pub sources: Sources,
    /// False: plain GETs of the whole body on one connection.
    pub ranged: bool,
    pub file: Arc<File>,
    pub part_path: PathBuf,
    pub plan: Mutex<Plan>,
    /// Bytes written (not necessarily durable yet).
    pub written: Mutex<RangeSet>,
    /// With several servers: which one wrote which bytes.
    pub provenance: Mutex<Provenance>,
    pub progress: Arc<Progress>,
    pub shedder: Shedder,
    pub speeds: speed::SpeedBoard,
    pub cancel: watch::Receiver<bool>,
    pub opts: WorkerOptions,
    /// One per worker: bumped when the worker lost an end-game race, to stop its request.
    pub kicks: Vec<watch::Sender<u64>>,
    /// Signalled whenever a worker releases a segment, for workers waiting for work.
    pub plan_changed: tokio::sync::Notify,
}

impl Round {
    /// Stops worker `id`'s current request: it lost a race for its bytes.
    pub fn kick(&self, id: usize) {
        if let Some(k) = self.kicks.get(id) {
            k.send_modify(|gen| *gen = gen.wrapping_add(1));
        }
    }
}

/// What the next round downloads.
pub(super) struct State {
    probe: Probe,
    ranged: bool,
    done: RangeSet,
    /// Servers proven to serve the same bytes, the reference (whose probe this is) first.
    pool: Vec<(String, Validator)>,
    provenance: Provenance,
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
    download_mirrored(client, &[url.to_string()], opts, ui, interrupt).await
}

/// Downloads the file at `urls[0]`, also from the mirrors `urls[1..]` (see [`sources`]).
pub async fn download_mirrored(
    client: &Client,
    urls: &[String],
    opts: &Options,
    ui: &Ui,
    interrupt: watch::Receiver<bool>,
) -> Result<PathBuf> {
    let mut servers = mirrors::probe_all(client, urls, opts).await?;
    let target = Target::resolve(opts, servers.file_name())?;
    let _reservation = target.reserve()?;
    let progress = ui.transfer(&target.display_name());
    servers.tell(&progress);
    let (url, probe) = servers.reference();
    if let Some(proof) = existing(&target, url, probe, opts, &progress)? {
        progress.set_total(probe.length);
        progress.set_done(probe.length.unwrap_or(0));
        progress.finish(true, &format!("already complete ({proof}), nothing to do"));
        return Ok(target.path.clone());
    }
    let result = loop {
        let result = download_group(client, &servers, opts, &target, &progress, &interrupt).await;
        match result {
            Err(e) if e.is_remote() && servers.fail_over(&e, &progress) => target.discard()?,
            other => break other,
        }
    };
    match &result {
        Ok(_) => progress.finish(true, &format!("done, {}", format_size(progress.done()))),
        Err(_) => progress.finish(false, "failed"),
    }
    result.map(|()| target.path.clone())
}

/// Downloads from the current group of servers, verifies, publishes.
async fn download_group(
    client: &Client,
    servers: &mirrors::Servers,
    opts: &Options,
    target: &Target,
    progress: &Arc<Progress>,
    interrupt: &watch::Receiver<bool>,
) -> Result<()> {
    let (url, probe) = servers.reference();
    let mut state = resume_state(target, url, probe.clone(), opts, progress)?;
    state.pool = servers.pool();
    run_rounds(
        client,
        url,
        opts,
        target,
        &mut state,
        progress,
        interrupt.clone(),
    )
    .await?;
    finish(client, target, url, &mut state, opts, progress).await
}

async fn probe_with_retries(client: &Client, url: &str, opts: &WorkerOptions) -> Result<Probe> {
    // The one retry rule (`Retries`): a probe makes no progress, so failures back off, and a
    // `Retry-After` is honoured with the same cap as everywhere else.
    let mut retries = Retries::new(opts.backoff);
    loop {
        match hedged_probe(client, url, opts).await {
            Err(e) if e.is_retryable() && retries.failures() + 1 < opts.max_tries => {
                let delay = retries.failed(e.retry_after());
                tracing::info!("probe failed ({e}); retrying in {delay:?}");
                tokio::time::sleep(delay).await;
            }
            other => return other,
        }
    }
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
        // Mirrors were proven against the old version: from here on, this server alone.
        state.pool = vec![(url.to_string(), state.probe.validator.clone())];
        state.provenance = Provenance::new();
        state.done = RangeSet::new();
        target.discard()?;
    }
    Err(Error::Protocol {
        url: url.to_string(),
        msg: format!("gave up after {MAX_RESTARTS} restarts from zero"),
    })
}

/// A probe without an answer after this long (or a quarter of `--timeout`, if shorter) gets
/// a twin on a new connection, so that one silent connection does not cost a whole timeout
/// before the download even starts (issue 15). The first answer wins.
const PROBE_HEDGE_AFTER: Duration = Duration::from_secs(1);

async fn hedged_probe(client: &Client, url: &str, opts: &WorkerOptions) -> Result<Probe> {
    let timeout = opts.timeout;
    let first = probe::probe_as(client, url, timeout, &opts.auth);
    tokio::pin!(first);
    tokio::select! {
        r = &mut first => return r,
        _ = tokio::time::sleep(PROBE_HEDGE_AFTER.min(timeout / 4)) => {}
    }
    let second = probe::probe_as(client, url, timeout, &opts.auth);
    tokio::pin!(second);
    let (done, first_won) = tokio::select! {
        r = &mut first => (r, true),
        r = &mut second => (r, false),
    };
    match (done, first_won) {
        (Ok(p), _) => Ok(p),
        // One failed: the other may still answer.
        (Err(_), true) => second.await,
        (Err(_), false) => first.await,
    }
}

/// Resolves once `flag` is true; never if its sender is gone without setting it.
pub async fn cancelled(flag: &mut watch::Receiver<bool>) {
    if flag.wait_for(|c| *c).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// An existing final file (issue 9 §1): `Some(proof)` when it is already the remote file
/// (done; its leftover part file and journal are removed), `None` to download, an error when
/// it differs and neither `--update` nor `--overwrite` allows replacing it.
fn existing(
    target: &Target,
    url: &str,
    probe: &Probe,
    opts: &Options,
    progress: &Progress,
) -> Result<Option<String>> {
    if opts.overwrite {
        return Ok(None);
    }
    let Some(local) = origin::inspect(&target.path).map_err(|e| Error::io(&target.path, e))? else {
        return Ok(None);
    };
    match origin::compare(&local, url, probe) {
        origin::Verdict::Current(proof) => {
            target.discard()?;
            Ok(Some(proof))
        }
        origin::Verdict::Differs(why) if opts.update => {
            progress.note(&format!("{why}: downloading it again (--update)"));
            Ok(None)
        }
        origin::Verdict::Differs(why) => Err(Error::Differs {
            path: target.path.clone(),
            why,
        }),
    }
}

/// Verifies digests, records the origin, publishes the file (without clobbering unless
/// `--overwrite` or `--update`), removes the journal. When the check fails and several servers
/// wrote the file, the one that sent wrong bytes is found and its bytes fetched again from the
/// others ([`liar`]).
async fn finish(
    client: &Client,
    target: &Target,
    url: &str,
    state: &mut State,
    opts: &Options,
    progress: &Arc<Progress>,
) -> Result<()> {
    let expected: Vec<Expected> = opts
        .checksum
        .iter()
        .chain(state.probe.digest.iter())
        .cloned()
        .collect();
    let verified = verify(target, expected.clone()).await;
    let len = state.probe.length.unwrap_or(0);
    match verified {
        Err(e @ Error::Checksum { .. })
            if state.pool.len() > 1 && state.provenance.writers(len) > 1 =>
        {
            progress.note(&format!("{e}: comparing the servers' bytes"));
            let suspects = liar::Suspects {
                client,
                servers: &state.pool,
                part: &target.part,
                progress,
                timeout: opts.worker.timeout,
                auth: &opts.worker.auth,
                expected: &expected,
            };
            suspects.resolve(&mut state.provenance, len, e).await?;
        }
        other => other?,
    }
    record_origin(target, url, &state.probe).await?;
    target.publish(opts.overwrite || opts.update)
}

async fn verify(target: &Target, expected: Vec<Expected>) -> Result<()> {
    let part = target.part.clone();
    tokio::task::spawn_blocking(move || checksum::verify(&part, &expected))
        .await
        .map_err(|e| Error::io(&target.part, std::io::Error::other(e)))?
}

/// Records where the verified part file came from ([`origin`]), before it takes its name.
async fn record_origin(target: &Target, url: &str, probe: &Probe) -> Result<()> {
    let part = target.part.clone();
    let (url, probe) = (url.to_string(), probe.clone());
    tokio::task::spawn_blocking(move || {
        std::fs::OpenOptions::new()
            .write(true)
            .open(&part)
            .and_then(|f| origin::record(&f, &url, &probe))
            .map_err(|e| Error::io(&part, e))
    })
    .await
    .map_err(|e| Error::io(&target.part, std::io::Error::other(e)))?
}
