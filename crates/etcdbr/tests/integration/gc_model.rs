//! GC plans against a naive reference of the original's rules (`etcdbr-reference.md` §6), for
//! random listings of one history: full snapshots and deltas at random times over five weeks
//! and more, an orphan delta first now and then, both policies, random `--max-backups` and
//! `--delta-snapshot-retention-period`. The plan must delete exactly what the reference deletes,
//! and never the latest backup set.

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{DateTime, Duration, TimeZone, Timelike, Utc};
use etcdbr::gc::{GcOptions, GcPolicy, plan};
use proptest::prelude::*;
use snapstore::{Kind, Snapshot};

/// The reference, written from the rules' text, one stream at a time.
fn reference(list: &[Snapshot], now: DateTime<Utc>, opts: &GcOptions) -> BTreeSet<String> {
    // Streams: position 0, then every full snapshot after it starts one.
    let mut starts = vec![0];
    starts.extend((1..list.len()).filter(|&i| list[i].kind == Kind::Full));
    let n = starts.len();
    let end = |i: usize| starts.get(i + 1).copied().unwrap_or(list.len());
    let cutoff = now - Duration::from_std(opts.delta_retention).unwrap();
    let mut deleted = BTreeSet::new();
    // Deltas of every stream but the newest, older than the retention.
    for i in 0..n.saturating_sub(1) {
        for s in &list[starts[i]..end(i)] {
            if s.kind == Kind::Incr && s.created_on < cutoff {
                deleted.insert(s.snap_name.clone());
            }
        }
    }
    let mut delete_full = |i: usize| {
        if list[starts[i]].kind == Kind::Full {
            deleted.insert(list[starts[i]].snap_name.clone());
        }
    };
    match opts.policy {
        GcPolicy::LimitBased => {
            for i in 0..n.saturating_sub(1) {
                if i + opts.max_backups < n {
                    delete_full(i);
                }
            }
        }
        GcPolicy::Exponential => {
            let mut eod = Utc
                .with_ymd_and_hms(
                    now.year_ce().1 as i32,
                    now.month0() + 1,
                    now.day0() + 1,
                    23,
                    59,
                    59,
                )
                .unwrap();
            let mut shifted = false;
            let hours =
                |a: DateTime<Utc>, b: DateTime<Utc>| (a - b).num_milliseconds() as f64 / 3.6e6;
            for i in (1..n).rev() {
                let snap = &list[starts[i]];
                let next = &list[starts[i - 1]];
                let age = eod - next.created_on;
                let threshold: i64 = if age < Duration::hours(24) {
                    i64::from(next.created_on.hour() != now.hour())
                } else if age < Duration::days(8) {
                    24
                } else if age < Duration::days(35) {
                    if !shifted {
                        eod -= Duration::days(1);
                        shifted = true;
                    }
                    168
                } else {
                    i64::from(i32::MAX)
                };
                let (hn, hs) = (hours(eod, next.created_on), hours(eod, snap.created_on));
                let hour = hn as i64 - hs as i64;
                let day = (hn / 24.0) as i64 - (hs / 24.0) as i64;
                let week = (hn / 168.0) as i64 - (hs / 168.0) as i64;
                let keep = threshold == 0
                    || hour / threshold != 0
                    || day * 24 / threshold != 0
                    || week * 168 / threshold != 0;
                if !keep {
                    delete_full(i - 1);
                }
            }
        }
    }
    deleted
}

use chrono::Datelike;

/// A listing of one history: each step is (full or delta, minutes after the previous object).
fn listing(steps: &[(bool, u32)], orphan_first: bool, now: DateTime<Utc>) -> Vec<Snapshot> {
    let total: i64 = steps.iter().map(|(_, m)| i64::from(*m)).sum();
    let mut t = now - Duration::minutes(total + 1);
    let mut rev = 10;
    let mut out = Vec::new();
    for (i, (full, minutes)) in steps.iter().enumerate() {
        t += Duration::minutes(i64::from(*minutes));
        let delta = !*full || (i == 0 && orphan_first);
        let name = if delta {
            format!("v2/Incr-{:08}-{:08}-{}", rev + 1, rev + 5, t.timestamp())
        } else {
            format!("v2/Full-00000000-{:08}-{}", rev + 5, t.timestamp())
        };
        rev += 5;
        out.push(Snapshot::parse(&name).unwrap());
    }
    // A full snapshot first unless an orphan delta is wanted.
    if !orphan_first && out[0].kind == Kind::Incr {
        let s = &out[0];
        out[0] = Snapshot::parse(&format!(
            "v2/Full-00000000-{:08}-{}",
            s.last_revision.get(),
            s.created_on.timestamp()
        ))
        .unwrap();
    }
    snapstore::list::sort(&mut out);
    out
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn plans_delete_what_the_rules_say(
        steps in prop::collection::vec(
            (prop::bool::weighted(0.3), prop_oneof![3 => 0u32..30, 2 => 0u32..600, 1 => 0u32..5000]),
            1..80,
        ),
        orphan_first in prop::bool::weighted(0.1),
        limit_based in any::<bool>(),
        max_backups in 1usize..8,
        retention_minutes in prop_oneof![Just(0u64), 0u64..5000],
        now_minute in 0u32..(24 * 60),
    ) {
        let now = Utc.with_ymd_and_hms(2024, 5, 15, 0, 0, 0).unwrap()
            + Duration::minutes(i64::from(now_minute));
        let list = listing(&steps, orphan_first, now);
        let mut opts = GcOptions::new(if limit_based { GcPolicy::LimitBased } else { GcPolicy::Exponential });
        opts.max_backups = max_backups;
        opts.delta_retention = StdDuration::from_secs(retention_minutes * 60);
        let got: BTreeSet<String> = plan(&list, now, &opts).deletions().map(|s| s.snap_name.clone()).collect();
        prop_assert_eq!(&got, &reference(&list, now, &opts));
        // The latest set is never touched.
        let latest = snapstore::list::latest_set(&list).unwrap();
        for s in latest.full.iter().chain(&latest.deltas) {
            prop_assert!(!got.contains(&s.snap_name), "deleted {} of the latest set", s.snap_name);
        }
    }
}
