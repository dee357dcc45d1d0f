//! Progress display shared by `get` and `put`: an indicatif bar on a TTY (bytes, speed, ETA,
//! live connections), a plain line every few seconds otherwise, nothing with `--quiet`.
//! `-v` adds per-connection detail. Notices ("server ignores Range ...") go through
//! [`Progress::note`] so they do not tear the bar.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::size::format_size;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Quiet,
    Bar,
    Lines,
}

/// Display settings for a whole run (possibly several downloads at once).
#[derive(Clone)]
pub struct Ui {
    pub mode: Mode,
    pub verbose: bool,
    /// Interval between lines when stderr is not a terminal.
    pub line_interval: Duration,
    multi: MultiProgress,
    /// Set for the files of a tree (`-r`): their bytes also count towards this overall line,
    /// and their bars are cleared when they finish, so only the files in flight show.
    parent: Option<Arc<Progress>>,
}

impl Ui {
    /// Picks the bar when stderr is a terminal, lines otherwise.
    pub fn new(quiet: bool, verbose: bool) -> Self {
        let mode = match (quiet, std::io::stderr().is_terminal()) {
            (true, _) => Mode::Quiet,
            (false, true) => Mode::Bar,
            (false, false) => Mode::Lines,
        };
        Self::with_mode(mode, verbose)
    }

    pub fn with_mode(mode: Mode, verbose: bool) -> Self {
        let target = if mode == Mode::Bar {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Self {
            mode,
            verbose,
            line_interval: Duration::from_secs(5),
            multi: MultiProgress::with_draw_target(target),
            parent: None,
        }
    }

    /// The same display, for transfers that are part of `overall` (a tree).
    pub fn under(&self, overall: Arc<Progress>) -> Self {
        Self {
            parent: Some(overall),
            ..self.clone()
        }
    }

    /// A progress tracker for one transfer named `name`.
    pub fn transfer(&self, name: &str) -> Arc<Progress> {
        let bar = (self.mode == Mode::Bar).then(|| {
            let bar = self.multi.add(ProgressBar::no_length());
            let style = ProgressStyle::with_template(
                "{prefix} {wide_bar} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(name.to_string());
            bar
        });
        Arc::new(Progress {
            name: name.to_string(),
            ui: Self {
                parent: None,
                ..self.clone()
            },
            parent: self.parent.clone(),
            status: Mutex::new(None),
            bar,
            total: AtomicU64::new(u64::MAX),
            done: AtomicU64::new(0),
            live: AtomicUsize::new(0),
            per_connection: Mutex::new(Vec::new()),
            last_line: Mutex::new((Instant::now(), 0)),
        })
    }

    /// An error or notice that should show even in quiet mode.
    pub fn error(&self, msg: &str) {
        let _ = self.multi.println(msg);
        if self.mode != Mode::Bar {
            eprintln!("{msg}");
        }
    }
}

pub struct Progress {
    name: String,
    ui: Ui,
    parent: Option<Arc<Progress>>,
    /// Replaces the live-connection count in the message (the overall line of a tree).
    status: Mutex<Option<String>>,
    bar: Option<ProgressBar>,
    /// `u64::MAX` while unknown.
    total: AtomicU64,
    done: AtomicU64,
    live: AtomicUsize,
    per_connection: Mutex<Vec<u64>>,
    last_line: Mutex<(Instant, u64)>,
}

impl Progress {
    pub fn set_total(&self, total: Option<u64>) {
        self.total
            .store(total.unwrap_or(u64::MAX), Ordering::Relaxed);
        if let (Some(bar), Some(t)) = (&self.bar, total) {
            bar.set_length(t);
        }
    }

    /// Sets the byte count (a resumed transfer starts at what is already on disk).
    pub fn set_done(&self, done: u64) {
        let before = self.done.swap(done, Ordering::Relaxed);
        if let Some(parent) = &self.parent {
            match done.checked_sub(before) {
                Some(more) => parent.add_bytes(more),
                None => parent.sub_bytes(before - done),
            }
        }
        if let Some(bar) = &self.bar {
            bar.set_position(done);
            bar.reset_eta();
        }
    }

    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    /// Connection `id` moved `n` more bytes.
    pub fn add(&self, id: usize, n: u64) {
        self.add_bytes(n);
        let mut per = self
            .per_connection
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if per.len() <= id {
            per.resize(id + 1, 0);
        }
        per[id] += n;
    }

    fn add_bytes(&self, n: u64) {
        self.done.fetch_add(n, Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
        if let Some(parent) = &self.parent {
            parent.add_bytes(n);
        }
    }

    fn sub_bytes(&self, n: u64) {
        let before = self.done.fetch_sub(n.min(self.done()), Ordering::Relaxed);
        if let Some(bar) = &self.bar {
            bar.set_position(before.saturating_sub(n));
        }
        if let Some(parent) = &self.parent {
            parent.sub_bytes(n);
        }
    }

    /// Text shown instead of the live-connection count (the overall line of a tree).
    pub fn set_status(&self, status: String) {
        *self.status.lock().unwrap_or_else(|p| p.into_inner()) = Some(status);
    }

    pub fn connection_opened(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connection_closed(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// A notice for the user (not shown with `--quiet`).
    pub fn note(&self, msg: &str) {
        match (&self.bar, self.ui.mode) {
            (_, Mode::Quiet) => {}
            (Some(bar), _) => bar.println(format!("{}: {msg}", self.name)),
            (None, _) => eprintln!("{}: {msg}", self.name),
        }
        tracing::info!(transfer = %self.name, "{msg}");
    }

    /// Detail shown only with `-v`.
    pub fn verbose(&self, msg: &str) {
        if self.ui.verbose {
            self.note(msg);
        } else {
            tracing::debug!(transfer = %self.name, "{msg}");
        }
    }

    /// Refreshes the bar message, or prints a line when the interval has passed. Call often.
    pub fn tick(&self) {
        let live = self.live.load(Ordering::Relaxed);
        let status = self
            .status
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut msg = status.unwrap_or_else(|| format!("{live} conn"));
        if self.ui.verbose {
            let per = self
                .per_connection
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let sizes: Vec<String> = per.iter().map(|b| format_size(*b)).collect();
            msg.push_str(&format!(" [{}]", sizes.join(" ")));
        }
        if let Some(bar) = &self.bar {
            bar.set_message(msg);
            return;
        }
        if self.ui.mode == Mode::Lines {
            let mut last = self.last_line.lock().unwrap_or_else(|p| p.into_inner());
            if last.0.elapsed() >= self.ui.line_interval {
                let done = self.done();
                let speed = (done.saturating_sub(last.1)) as f64 / last.0.elapsed().as_secs_f64();
                eprintln!(
                    "{}: {}, {}/s, {msg}",
                    self.name,
                    self.fraction(done),
                    format_size(speed as u64)
                );
                *last = (Instant::now(), done);
            }
        }
    }

    fn fraction(&self, done: u64) -> String {
        match self.total.load(Ordering::Relaxed) {
            u64::MAX => format_size(done),
            0 => "100%".to_string(),
            t => format!(
                "{:.0}% of {} ({})",
                done as f64 * 100.0 / t as f64,
                format_size(t),
                format_size(done)
            ),
        }
    }

    /// The transfer ended; `ok` leaves a finished bar, otherwise it is abandoned.
    pub fn finish(&self, ok: bool, summary: &str) {
        if let Some(bar) = &self.bar {
            if self.parent.is_some() {
                bar.finish_and_clear();
            } else if ok {
                bar.finish_with_message(summary.to_string());
            } else {
                bar.abandon_with_message(summary.to_string());
            }
        } else if self.ui.mode == Mode::Lines && ok {
            eprintln!("{}: {summary}", self.name);
        }
    }
}
