//! The Exponential policy, exactly as the original computes it.
//!
//! Walking from the second-newest stream to the oldest, the full snapshot of each stream
//! (`next`) is compared with the full snapshot of the stream after it (`snap`). With
//! `eod` = today 23:59:59 UTC and `age = eod - next.created_on`:
//!
//! | age        | threshold (hours)                                               |
//! |------------|-----------------------------------------------------------------|
//! | < 24h      | 0 (keep) if created in the current hour of day, else 1          |
//! | < 8 days   | 24                                                              |
//! | < 35 days  | 168; on first entry into this band `eod` moves back one day     |
//! | older      | `i32::MAX` (delete)                                             |
//!
//! `next` is kept when the threshold is 0, or when the hour, day or week bucket (counted back
//! from `eod`, truncated toward zero) differs from `snap`'s by at least the threshold. Note that
//! `snap` is the neighbouring stream's full snapshot whether or not that one was kept; this is
//! the original's behaviour and is kept so both tools delete the same objects.

use chrono::{DateTime, Duration, Timelike, Utc};
use snapstore::Snapshot;

use super::FullDecision;

fn hours(d: Duration) -> f64 {
    match d.num_nanoseconds() {
        Some(ns) => ns as f64 / 3.6e12,
        None => d.num_seconds() as f64 / 3600.0,
    }
}

/// Go's `int(f)`: truncation toward zero.
fn trunc(f: f64) -> i64 {
    f as i64
}

pub(super) fn judge(
    list: &[Snapshot],
    full_index: &[usize],
    now: DateTime<Utc>,
) -> Vec<(usize, usize, FullDecision)> {
    let midnight = now
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .map_or(now, |t| t.and_utc());
    let mut eod = midnight + Duration::hours(23) + Duration::minutes(59) + Duration::seconds(59);
    let mut tracking_week = false;
    let mut out = Vec::new();
    for i in (1..full_index.len()).rev() {
        let snap = &list[full_index[i]];
        let next = &list[full_index[i - 1]];
        let age = eod - next.created_on;
        let (threshold, band): (i64, &str) = if age < Duration::hours(24) {
            if next.created_on.hour() == now.hour() {
                (0, "taken in the current hour")
            } else {
                (1, "hourly for the last day")
            }
        } else if age < Duration::hours(8 * 24) {
            (24, "daily for the last week")
        } else if age < Duration::hours(5 * 7 * 24) {
            if !tracking_week {
                eod -= Duration::hours(24);
                tracking_week = true;
            }
            (24 * 7, "weekly for the last four weeks")
        } else {
            (i64::from(i32::MAX), "older than five weeks")
        };
        let hour_change = trunc(hours(eod - next.created_on)) - trunc(hours(eod - snap.created_on));
        let day_change =
            trunc(hours(eod - next.created_on) / 24.0) - trunc(hours(eod - snap.created_on) / 24.0);
        let week_change = trunc(hours(eod - next.created_on) / (24.0 * 7.0))
            - trunc(hours(eod - snap.created_on) / (24.0 * 7.0));
        let keep = threshold == 0
            || hour_change / threshold != 0
            || day_change * 24 / threshold != 0
            || week_change * 24 * 7 / threshold != 0;
        let reason = if keep {
            format!("kept: {band}")
        } else {
            format!("deleted: a newer full snapshot covers its slot ({band})")
        };
        out.push((
            full_index[i - 1],
            full_index[i],
            FullDecision {
                snapshot: next.clone(),
                delete: !keep,
                reason,
            },
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::super::test_support::*;
    use super::super::*;

    fn t(d: u32, h: u32, m: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 5, d, h, m, 0).unwrap()
    }

    fn fulls(times: &[DateTime<Utc>]) -> Vec<Snapshot> {
        times
            .iter()
            .enumerate()
            .map(|(i, &ts)| full(i as i64 * 10 + 10, ts))
            .collect()
    }

    fn deleted(list: &[Snapshot], now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let p = plan(list, now, &GcOptions::new(GcPolicy::Exponential));
        let mut v: Vec<_> = p.deletions().map(|s| s.created_on).collect();
        v.sort();
        v
    }

    #[test]
    fn keeps_everything_of_the_current_hour() {
        let now = t(15, 10, 50);
        let list = fulls(&[t(15, 10, 0), t(15, 10, 10), t(15, 10, 20), t(15, 10, 30)]);
        assert!(deleted(&list, now).is_empty());
    }

    #[test]
    fn keeps_one_per_hour_for_today() {
        let now = t(15, 10, 50);
        // Three snapshots in hour 8, two in hour 9, and one in the current hour.
        let list = fulls(&[
            t(15, 8, 0),
            t(15, 8, 20),
            t(15, 8, 40),
            t(15, 9, 0),
            t(15, 9, 30),
            t(15, 10, 5),
        ]);
        assert_eq!(
            deleted(&list, now),
            [t(15, 8, 0), t(15, 8, 20), t(15, 9, 0)]
        );
    }

    #[test]
    fn keeps_one_per_day_for_a_week() {
        let now = t(15, 10, 0);
        let list = fulls(&[
            t(10, 1, 0),
            t(10, 13, 0),
            t(10, 23, 0),
            t(11, 5, 0),
            t(12, 5, 0),
            t(12, 6, 0),
            t(15, 9, 0),
        ]);
        assert_eq!(
            deleted(&list, now),
            [t(10, 1, 0), t(10, 13, 0), t(12, 5, 0)]
        );
    }

    #[test]
    fn keeps_one_per_week_for_four_weeks_and_nothing_older() {
        let now = t(31, 10, 0);
        // Weeks counted back from the end of the previous day (May 30 23:59:59).
        let list = fulls(&[
            Utc.with_ymd_and_hms(2024, 4, 20, 12, 0, 0).unwrap(), // older than five weeks: deleted
            t(10, 12, 0), // same week bucket as May 12: deleted
            t(12, 12, 0), // kept (four weeks of weekly buckets reach back to May 2)
            t(20, 12, 0), // kept (another week)
            t(31, 9, 0),  // newest stream
        ]);
        assert_eq!(deleted(&list, now), [list[0].created_on, t(10, 12, 0)]);
    }

    #[test]
    fn deltas_of_all_but_the_newest_stream_go() {
        let now = t(15, 10, 50);
        let list = vec![
            full(10, t(15, 9, 0)),
            incr(11, 15, t(15, 9, 10)),
            full(20, t(15, 10, 0)),
            incr(21, 25, t(15, 10, 10)),
        ];
        let p = plan(&list, now, &GcOptions::new(GcPolicy::Exponential));
        assert_eq!(
            names(p.deletions()),
            ["Incr-00000011-00000015-1715764200.gz"]
        );
    }
}
