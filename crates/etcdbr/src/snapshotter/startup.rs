//! The server's start-up decision, as the original's `IsFullSnapshotRequiredAtStartup`: resume
//! the store's chain with an initial delta, or take a full snapshot first.

use chrono::{DateTime, Local, Utc};
use snapstore::Snapshot;

use crate::schedule::Schedule;

/// Why a full snapshot is required at start-up, or `None` when the chain can be resumed.
#[must_use]
pub fn full_required(
    prev_full: Option<&Snapshot>,
    schedule: &Schedule,
    now: DateTime<Local>,
) -> Option<&'static str> {
    let Some(prev) = prev_full else {
        return Some("there is no full snapshot in the store");
    };
    if prev.is_final {
        return Some("the latest full snapshot is final");
    }
    let window = chrono::Duration::seconds((schedule.max_time_window_hours() * 3600.0) as i64);
    let created: DateTime<Utc> = prev.created_on;
    if now.with_timezone(&Utc) - created > window {
        return Some("the latest full snapshot is older than the schedule's window");
    }
    // Missed: the schedule fired after the full snapshot was taken and before now. (The
    // original compares the next firing minus the window with the snapshot's time, which says
    // "missed" for any schedule whose period is not the window: a yearly schedule took a full
    // snapshot at every start.)
    let missed = schedule
        .next_after(created.with_timezone(&Local))
        .is_some_and(|fire| fire <= now);
    let next = schedule.next_after(now)?.with_timezone(&Utc);
    (missed && next - created > window)
        .then_some("a scheduled full snapshot was missed and the next one is beyond the window")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use etcdbr_types::Revision;
    use snapstore::Kind;

    fn full(created: DateTime<Utc>, is_final: bool) -> Snapshot {
        Snapshot::new(
            Kind::Full,
            Revision(0),
            Revision(9),
            created,
            "",
            is_final,
            "v2",
        )
    }

    #[test]
    fn decides_like_the_original() {
        let hourly = "0 */1 * * *".parse::<Schedule>().unwrap();
        let now = Local.with_ymd_and_hms(2026, 5, 15, 10, 20, 0).unwrap();
        let utc = |h, m| {
            Local
                .with_ymd_and_hms(2026, 5, 15, h, m, 0)
                .unwrap()
                .with_timezone(&Utc)
        };
        assert!(full_required(None, &hourly, now).is_some());
        assert!(full_required(Some(&full(utc(10, 0), true)), &hourly, now).is_some());
        assert!(full_required(Some(&full(utc(8, 0), false)), &hourly, now).is_some());
        // Taken at 10:00 as scheduled: resume.
        assert_eq!(
            full_required(Some(&full(utc(10, 0), false)), &hourly, now),
            None
        );
        // Taken at 09:50 off schedule: the next (11:00) is 70 min after it, beyond the hour.
        assert!(full_required(Some(&full(utc(9, 50), false)), &hourly, now).is_some());
        // Daily schedule, full taken this morning: resume.
        let daily = "0 0 * * *".parse::<Schedule>().unwrap();
        assert_eq!(
            full_required(Some(&full(utc(9, 0), false)), &daily, now),
            None
        );
        // Yearly schedule, full taken seconds ago: nothing was missed.
        let yearly = "0 0 1 1 *".parse::<Schedule>().unwrap();
        assert_eq!(
            full_required(Some(&full(utc(10, 19), false)), &yearly, now),
            None
        );
        // Every 6 hours, taken at 06:00, now 10:20: the 12:00 one is not missed yet.
        let six = "0 */6 * * *".parse::<Schedule>().unwrap();
        assert_eq!(
            full_required(Some(&full(utc(6, 0), false)), &six, now),
            None
        );
    }
}
