//! Resume: use the journal only when it describes the very file the fresh probe sees.

use super::journal::{self, Journal};
use super::output::Target;
use super::probe::Probe;
use super::provenance::Provenance;
use super::ranges::RangeSet;
use super::{Options, State};
use crate::error::{Error, Result};
use crate::progress::Progress;
use crate::size::format_size;

/// Uses the journal when it describes the same file, otherwise starts from zero.
pub(super) fn resume_state(
    target: &Target,
    url: &str,
    probe: Probe,
    opts: &Options,
    progress: &Progress,
) -> Result<State> {
    let ranged = probe.ranges && probe.length.is_some();
    let pool = vec![(url.to_string(), probe.validator.clone())];
    let fresh = |probe| {
        Ok(State {
            probe,
            ranged,
            done: RangeSet::new(),
            pool: pool.clone(),
            provenance: Provenance::new(),
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
                pool: pool.clone(),
                provenance: Provenance::new(),
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
