//! `--mirror` (issue 9 §4): probe every server of one file at once, group those proven to
//! serve the same bytes ([`same_content`]) with the first that answered, and keep the others
//! for failover, each on its own and from zero.

use std::collections::VecDeque;
use std::sync::Arc;

use reqwest::Client;

use super::probe::{Probe, Validator};
use super::sources::{same_content, Proof};
use super::{hedged_probe, probe_with_retries, Options};
use crate::error::{Error, Result};
use crate::progress::Progress;

/// The servers of one download: the group in use (reference first) and the groups after it.
pub(super) struct Servers {
    groups: VecDeque<Vec<(String, Probe)>>,
    /// What the probes found, told once the progress line exists.
    notes: Vec<String>,
}

/// Probes `urls` (the main URL first). One URL: as before, with retries. Several: one
/// (hedged) attempt each, all at once; the main URL alone is retried if none answered.
pub(super) async fn probe_all(client: &Client, urls: &[String], opts: &Options) -> Result<Servers> {
    let Some(main) = urls.first() else {
        return Err(Error::Usage("no URL given".into()));
    };
    let single = |probe| Servers {
        groups: VecDeque::from([vec![(main.clone(), probe)]]),
        notes: Vec::new(),
    };
    if urls.len() == 1 {
        return Ok(single(
            probe_with_retries(client, main, &opts.worker).await?,
        ));
    }
    let attempts = urls.iter().map(|u| hedged_probe(client, u, &opts.worker));
    let results = futures_util::future::join_all(attempts).await;
    let mut notes = Vec::new();
    let mut answered = Vec::new();
    for (url, result) in urls.iter().zip(results) {
        match result {
            Ok(p) => answered.push((url.clone(), p)),
            Err(e) => notes.push(format!("{e}; not using this server")),
        }
    }
    if answered.is_empty() {
        return Ok(single(
            probe_with_retries(client, main, &opts.worker).await?,
        ));
    }
    let (groups, more) = group(answered, opts.checksum.is_some());
    notes.extend(more);
    Ok(Servers {
        groups: groups.into(),
        notes,
    })
}

/// Groups answered servers: the first with every server proven the same as it, then each
/// unproven one alone (failover). Also says why each mirror landed where it did.
fn group(
    mut answered: Vec<(String, Probe)>,
    checksum_given: bool,
) -> (Vec<Vec<(String, Probe)>>, Vec<String>) {
    let reference = answered.remove(0);
    let mut pool = vec![reference];
    let mut rest = Vec::new();
    let mut notes = Vec::new();
    for (url, probe) in answered {
        match same_content(&pool[0].1, &probe, checksum_given) {
            Some(proof) => {
                notes.push(format!("{url}: {}; taking bytes from it too", why(proof)));
                pool.push((url, probe));
            }
            None => {
                notes.push(format!(
                    "{url}: not proven to serve the same bytes (no --checksum, no common digest or strong ETag); failover only"
                ));
                rest.push(vec![(url, probe)]);
            }
        }
    }
    let mut groups = vec![pool];
    groups.extend(rest);
    (groups, notes)
}

fn why(proof: Proof) -> &'static str {
    match proof {
        Proof::Checksum => "same length, --checksum verifies the whole file",
        Proof::Digest => "same digest",
        Proof::StrongEtag => "same strong ETag",
    }
}

impl Servers {
    /// The reference of the group in use: its URL and probe.
    pub fn reference(&self) -> (&str, &Probe) {
        let (url, probe) = &self.groups[0][0];
        (url, probe)
    }

    pub fn file_name(&self) -> Option<&str> {
        self.reference().1.file_name.as_deref()
    }

    /// The group in use, as the round wants it.
    pub fn pool(&self) -> Vec<(String, Validator)> {
        self.groups[0]
            .iter()
            .map(|(u, p)| (u.clone(), p.validator.clone()))
            .collect()
    }

    pub fn tell(&mut self, progress: &Arc<Progress>) {
        for n in self.notes.drain(..) {
            progress.note(&n);
        }
    }

    /// The group in use failed with `e`: moves to the next one, if any, and says so.
    pub fn fail_over(&mut self, e: &Error, progress: &Arc<Progress>) -> bool {
        if self.groups.len() < 2 {
            return false;
        }
        self.groups.pop_front();
        let next = self.reference().0;
        progress.note(&format!("{e}; failing over to {next}, from zero"));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(etag: &str) -> Probe {
        Probe {
            length: Some(10),
            ranges: true,
            validator: Validator {
                etag: Some(etag.into()),
                last_modified: None,
                any_etag: Some(etag.into()),
            },
            file_name: None,
            digest: None,
        }
    }

    #[test]
    fn proven_mirrors_join_the_first_the_rest_wait_in_order() {
        let answered = vec![
            ("a".to_string(), probe("\"1\"")),
            ("b".to_string(), probe("\"2\"")),
            ("c".to_string(), probe("\"1\"")),
            ("d".to_string(), probe("\"3\"")),
        ];
        let (groups, notes) = group(answered.clone(), false);
        let urls: Vec<Vec<&str>> = groups
            .iter()
            .map(|g| g.iter().map(|(u, _)| u.as_str()).collect())
            .collect();
        assert_eq!(urls, vec![vec!["a", "c"], vec!["b"], vec!["d"]]);
        assert!(notes.iter().any(|n| n.starts_with("b: not proven")));
        let (groups, _) = group(answered, true);
        assert_eq!(
            groups.len(),
            1,
            "--checksum: every mirror of the same length"
        );
    }
}
