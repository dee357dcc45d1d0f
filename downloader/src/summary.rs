//! The tally of a tree transfer (`get -r`, `put -r`): files finished, skipped as already
//! complete, failed, and their bytes; the summary line both print at the end.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::progress::{Mode, Progress, Ui};
use crate::size::format_size;

/// Ends the overall line: on a terminal the bar keeps the summary; in line mode nothing is
/// printed here, since the command prints the summary line itself.
pub fn finish_overall(overall: &Progress, tally: &Tally, ui: &Ui) {
    if ui.mode == Mode::Bar {
        overall.set_status(tally.line());
        overall.tick();
        overall.finish(tally.failed() == 0, &tally.line());
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Transferred in this run (possibly resumed).
    Done,
    /// Already complete at the destination; nothing sent.
    Skipped,
    Failed,
}

#[derive(Debug, Default)]
pub struct Tally {
    done: AtomicUsize,
    skipped: AtomicUsize,
    failed: AtomicUsize,
    bytes: AtomicU64,
    in_flight: AtomicUsize,
}

impl Tally {
    /// A file's transfer began (counted in flight until [`Tally::record`]).
    pub fn started(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
    }

    /// A file ended; `bytes` is its size when it is complete. Call [`Tally::started`] first,
    /// except for files that failed before they started.
    pub fn record(&self, outcome: Outcome, bytes: u64) {
        let counter = match outcome {
            Outcome::Done => &self.done,
            Outcome::Skipped => &self.skipped,
            Outcome::Failed => &self.failed,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        // Saturating: a file that failed before it started was never in flight.
        let _ = self
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    pub fn failed(&self) -> usize {
        self.failed.load(Ordering::Relaxed)
    }

    /// Files complete at the destination, transferred now or before.
    pub fn complete(&self) -> usize {
        self.done.load(Ordering::Relaxed) + self.skipped.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// For the overall progress line: `3/10 files, 1 failed, 2 in flight`.
    pub fn status(&self, total: usize) -> String {
        let mut s = format!("{}/{total} files", self.complete());
        let failed = self.failed();
        if failed > 0 {
            s.push_str(&format!(", {failed} failed"));
        }
        s.push_str(&format!(
            ", {} in flight",
            self.in_flight.load(Ordering::Relaxed)
        ));
        s
    }

    /// The summary: `12 files, 34.5 MiB, 0 failed (3 already complete)`. Bytes are those of
    /// the complete files.
    pub fn line(&self) -> String {
        let files = self.complete();
        let mut s = format!(
            "{files} file{}, {}, {} failed",
            if files == 1 { "" } else { "s" },
            format_size(self.bytes()),
            self.failed()
        );
        let skipped = self.skipped.load(Ordering::Relaxed);
        if skipped > 0 {
            s.push_str(&format!(" ({skipped} already complete)"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_counts_complete_files_and_failures() {
        let t = Tally::default();
        t.started();
        t.record(Outcome::Done, 1024);
        t.started();
        t.record(Outcome::Skipped, 1024);
        t.record(Outcome::Failed, 0);
        assert_eq!(t.line(), "2 files, 2.0 KiB, 1 failed (1 already complete)");
        assert_eq!(t.status(5), "2/5 files, 1 failed, 0 in flight");
        assert_eq!(Tally::default().line(), "0 files, 0 B, 0 failed");
    }
}
