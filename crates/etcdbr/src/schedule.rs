//! Cron schedules for full snapshots and defragmentation, as robfig/cron's `ParseStandard`
//! accepts them: 5 fields or an `@hourly`-style descriptor, in the local time zone, or
//! `@every <Go duration>` (fires that long after each previous firing, in whole seconds).

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Local, Timelike};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

/// A parsed cron expression.
#[derive(Clone)]
pub struct Schedule {
    spec: String,
    when: When,
}

#[derive(Clone)]
enum When {
    Cron(Box<Cron>),
    /// `@every`: a constant delay, whole seconds, at least one.
    Every(chrono::Duration),
}

impl fmt::Debug for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Schedule").field(&self.spec).finish()
    }
}

impl fmt::Display for Schedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.spec)
    }
}

/// Why a cron schedule is not usable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid cron schedule {spec:?}: {problem}")]
pub struct ScheduleError {
    /// The schedule as given.
    pub spec: String,
    /// What is wrong.
    pub problem: String,
}

impl FromStr for Schedule {
    type Err = ScheduleError;
    fn from_str(spec: &str) -> Result<Schedule, ScheduleError> {
        let bad = |problem: String| ScheduleError {
            spec: spec.to_owned(),
            problem,
        };
        if let Some(every) = spec.trim().strip_prefix("@every ") {
            let d = etcdbr_types::go::go_duration(every.trim()).map_err(|e| bad(e.to_string()))?;
            // As robfig/cron: below a second is a second; otherwise whole seconds.
            let secs = i64::try_from(d.as_secs().max(1)).map_err(|_| bad("too long".into()))?;
            return Ok(Schedule {
                spec: spec.to_owned(),
                when: When::Every(chrono::Duration::seconds(secs)),
            });
        }
        let fields = spec.split_whitespace().count();
        if !spec.trim_start().starts_with('@') && fields != 5 {
            return Err(bad(format!(
                "expected 5 fields (minute hour day-of-month month day-of-week), got {fields}"
            )));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Disallowed)
            .build()
            .parse(spec)
            .map_err(|e| bad(e.to_string()))?;
        Ok(Schedule {
            spec: spec.to_owned(),
            when: When::Cron(Box::new(cron)),
        })
    }
}

impl Schedule {
    /// The expression as given.
    #[must_use]
    pub fn spec(&self) -> &str {
        &self.spec
    }

    /// The first time strictly after `after` that the schedule fires.
    #[must_use]
    pub fn next_after(&self, after: DateTime<Local>) -> Option<DateTime<Local>> {
        match &self.when {
            When::Cron(cron) => cron.find_next_occurrence(&after, false).ok(),
            When::Every(delay) => {
                let whole = after.with_nanosecond(0).unwrap_or(after);
                whole.checked_add_signed(*delay)
            }
        }
    }

    /// The original's "full snapshot time window" in hours: 168 when the day-of-week field is
    /// restricted; `N` for an hour field `*/N` (or `x/N`) with day fields `*`; else 24.
    #[must_use]
    pub fn max_time_window_hours(&self) -> f64 {
        let f: Vec<&str> = self.spec.split_whitespace().collect();
        if f.len() < 5 {
            return 24.0;
        }
        if f[4] != "*" {
            return 24.0 * 7.0;
        }
        if f[2] == "*"
            && f[4] == "*"
            && let Some((_, n)) = f[1].split_once('/')
            && let Ok(v) = n.parse::<f64>()
        {
            return v;
        }
        24.0
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn parses_standard_five_field_specs() {
        let s: Schedule = "0 */1 * * *".parse().unwrap();
        let t = Local.with_ymd_and_hms(2024, 5, 1, 10, 20, 0).unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Local.with_ymd_and_hms(2024, 5, 1, 11, 0, 0).unwrap()
        );
        let s: Schedule = "*/30 * * * *".parse().unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Local.with_ymd_and_hms(2024, 5, 1, 10, 30, 0).unwrap()
        );
        assert!("@hourly".parse::<Schedule>().is_ok());
        let e = "0 0 */1 * * *".parse::<Schedule>().unwrap_err();
        assert!(e.to_string().contains("expected 5 fields"), "{e}");
        assert!("61 * * * *".parse::<Schedule>().is_err());
        assert!("".parse::<Schedule>().is_err());
    }

    #[test]
    fn every_fires_a_constant_delay_after_each_firing_in_whole_seconds() {
        let t = Local.with_ymd_and_hms(2024, 5, 1, 10, 20, 0).unwrap()
            + chrono::Duration::milliseconds(700);
        let s: Schedule = "@every 1h30m".parse().unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Local.with_ymd_and_hms(2024, 5, 1, 11, 50, 0).unwrap()
        );
        let s: Schedule = "@every 300ms".parse().unwrap();
        assert_eq!(
            s.next_after(t).unwrap(),
            Local.with_ymd_and_hms(2024, 5, 1, 10, 20, 1).unwrap()
        );
        assert_eq!(s.max_time_window_hours(), 24.0);
        let e = "@every soon".parse::<Schedule>().unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }

    #[test]
    fn time_window_follows_the_original() {
        let w = |s: &str| s.parse::<Schedule>().unwrap().max_time_window_hours();
        assert_eq!(w("0 */1 * * *"), 1.0);
        assert_eq!(w("0 */6 * * *"), 6.0);
        assert_eq!(w("0 0 * * 1"), 168.0);
        assert_eq!(w("0 0 */3 * *"), 24.0);
        assert_eq!(w("*/5 * * * *"), 24.0);
    }
}
