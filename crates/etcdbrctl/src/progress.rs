//! Progress of the long commands (restore, initialize, verify, copy, compact): an observer of the
//! engine's events. On a terminal it draws a bar on stderr (indicatif) that log lines print
//! above; otherwise it logs a progress line every [`LOG_EVERY`] with percentages and an ETA.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use etcdbr::events::{Event, Events, Observer};
use indicatif::{ProgressBar, ProgressStyle};

use crate::cli::list::bytes;

/// How often a progress line is logged when stderr is not a terminal.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// The bar being drawn, if any: log lines are written with it suspended.
fn active() -> &'static Mutex<Option<ProgressBar>> {
    static BAR: OnceLock<Mutex<Option<ProgressBar>>> = OnceLock::new();
    BAR.get_or_init(|| Mutex::new(None))
}

/// Runs `f` (a write to stderr) with the bar, if one is drawn, cleared meanwhile.
pub fn suspend<T>(f: impl FnOnce() -> T) -> T {
    let bar = active().lock().ok().and_then(|b| b.clone());
    match bar {
        Some(b) => b.suspend(f),
        None => f(),
    }
}

#[derive(Debug, Default)]
struct State {
    started: Option<Instant>,
    last_line: Option<Instant>,
    fetched: u64,
    full_bytes: Option<u64>,
    full_name: String,
    base: i64,
    target: i64,
    revision: i64,
    deltas: usize,
    deltas_done: usize,
    /// When the first delta was applied, and the revision then (for the ETA).
    deltas_started: Option<(Instant, i64)>,
    objects: usize,
    copied: usize,
    copied_bytes: u64,
}

/// The progress observer; [`Progress::events`] gives the engine's events with it attached.
pub struct Progress {
    state: Mutex<State>,
    bar: Option<ProgressBar>,
}

impl Progress {
    /// A progress reporter: a bar when stderr is a terminal, else periodic log lines.
    #[must_use]
    pub fn new() -> Arc<Progress> {
        use std::io::IsTerminal;
        let bar = std::io::stderr().is_terminal().then(|| {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(200));
            if let Ok(mut a) = active().lock() {
                *a = Some(b.clone());
            }
            b
        });
        Arc::new(Progress {
            state: Mutex::new(State::default()),
            bar,
        })
    }

    /// The engine's events, reported to this observer.
    #[must_use]
    pub fn events(self: &Arc<Self>) -> Events {
        Events::none().with(Arc::clone(self) as Arc<dyn Observer>)
    }

    fn report(&self, s: &mut State, force: bool) {
        let line = describe(s);
        if let Some(bar) = &self.bar {
            bar.set_message(line);
            return;
        }
        let now = Instant::now();
        let due = s.last_line.is_none_or(|t| now - t >= LOG_EVERY);
        if force || due {
            s.last_line = Some(now);
            tracing::info!("Progress: {line}");
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            if let Ok(mut a) = active().lock() {
                *a = None;
            }
        }
    }
}

fn percent(done: f64, total: f64) -> f64 {
    if total <= 0.0 {
        100.0
    } else {
        (100.0 * done / total).clamp(0.0, 100.0)
    }
}

fn eta(elapsed: Duration, done: f64, total: f64) -> String {
    if done <= 0.0 || total <= done {
        return String::new();
    }
    let left = elapsed.as_secs_f64() * (total - done) / done;
    format!(", ETA {}", human(Duration::from_secs_f64(left)))
}

fn human(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{:02}s", s / 60, s % 60),
        _ => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
    }
}

/// One line of what is going on.
fn describe(s: &State) -> String {
    let elapsed = s.started.map_or(Duration::ZERO, |t| t.elapsed());
    let rate = bytes((s.fetched as f64 / elapsed.as_secs_f64().max(0.001)) as u64);
    if s.objects > 0 {
        return format!(
            "copied {} of {} objects ({:.0}%), {}{}",
            s.copied,
            s.objects,
            percent(s.copied as f64, s.objects as f64),
            bytes(s.copied_bytes),
            eta(elapsed, s.copied as f64, s.objects as f64)
        );
    }
    match s.deltas_started {
        None => match s.full_bytes {
            Some(total) => format!(
                "fetching {}: {} of {} ({:.0}%), {rate}/s{}",
                s.full_name,
                bytes(s.fetched),
                bytes(total),
                percent(s.fetched as f64, total as f64),
                eta(elapsed, s.fetched as f64, total as f64)
            ),
            None => format!("fetching {}: {}, {rate}/s", s.full_name, bytes(s.fetched)),
        },
        Some((since, from)) => {
            let (done, total) = ((s.revision - from) as f64, (s.target - from) as f64);
            format!(
                "applied {} of {} deltas, revision {} of {} ({:.0}%), {} fetched{}",
                s.deltas_done,
                s.deltas,
                s.revision,
                s.target,
                percent((s.revision - s.base) as f64, (s.target - s.base) as f64),
                bytes(s.fetched),
                eta(since.elapsed(), done, total)
            )
        }
    }
}

impl Observer for Progress {
    fn observe(&self, event: &Event<'_>) {
        let Ok(mut s) = self.state.lock() else {
            return;
        };
        let force = match event {
            Event::RestoreStarted {
                full,
                deltas,
                revision,
                base,
                full_bytes,
            } => {
                *s = State {
                    started: Some(Instant::now()),
                    full_name: full.snap_name.clone(),
                    full_bytes: *full_bytes,
                    base: base.get(),
                    revision: base.get(),
                    target: revision.get(),
                    deltas: *deltas,
                    last_line: s.last_line,
                    ..State::default()
                };
                false
            }
            Event::Fetched { bytes } => {
                s.fetched += bytes;
                false
            }
            Event::DeltaApplied {
                applied, revision, ..
            } => {
                if s.deltas_started.is_none() {
                    s.deltas_started = Some((Instant::now(), s.base));
                }
                s.deltas_done = *applied;
                s.revision = revision.get();
                false
            }
            Event::RestoreBuilt { .. } => return,
            Event::CopyPlanned { objects } => {
                *s = State {
                    started: Some(Instant::now()),
                    objects: *objects,
                    ..State::default()
                };
                false
            }
            Event::ObjectCopied { bytes, .. } => {
                s.copied += 1;
                s.copied_bytes += bytes;
                s.copied == s.objects
            }
            _ => return,
        };
        if s.started.is_some() {
            self.report(&mut s, force);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_how_far_and_how_long() {
        let mut s = State {
            started: Some(Instant::now() - Duration::from_secs(10)),
            full_name: "Full-x".into(),
            full_bytes: Some(400 << 20),
            fetched: 100 << 20,
            ..State::default()
        };
        let line = describe(&s);
        assert!(
            line.starts_with("fetching Full-x: 100.0 MiB of 400.0 MiB (25%)"),
            "{line}"
        );
        assert!(line.contains("ETA 30s"), "{line}");
        s.deltas_started = Some((Instant::now() - Duration::from_secs(4), 10));
        (s.base, s.revision, s.target, s.deltas, s.deltas_done) = (10, 20, 30, 4, 2);
        let line = describe(&s);
        assert!(
            line.starts_with("applied 2 of 4 deltas, revision 20 of 30 (50%)"),
            "{line}"
        );
        assert!(line.contains("ETA 4s"), "{line}");
        let s = State {
            started: Some(Instant::now()),
            objects: 4,
            copied: 1,
            ..State::default()
        };
        assert!(describe(&s).starts_with("copied 1 of 4 objects (25%)"));
        assert_eq!(human(Duration::from_secs(3725)), "1h02m");
    }
}
