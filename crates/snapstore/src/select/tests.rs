//! The selection rules on listings made by hand.

use super::*;
use crate::list::sort;
use chrono::TimeZone;

fn listing(keys: &[&str]) -> Vec<Snapshot> {
    let mut l: Vec<Snapshot> = keys.iter().map(|k| Snapshot::parse(k).unwrap()).collect();
    sort(&mut l);
    l
}

/// Two sets: full at 10 (t=100) with deltas to 30; full at 30 (t=200) with deltas to 50.
fn store() -> Vec<Snapshot> {
    listing(&[
        "v2/Full-00000000-00000010-100.gz",
        "v2/Incr-00000011-00000020-110.gz",
        "v2/Incr-00000021-00000030-120.gz",
        "v2/Full-00000000-00000030-200.gz",
        "v2/Incr-00000031-00000040-210.gz",
        "v2/Incr-00000041-00000050-220.gz",
    ])
}

fn rev(target: i64) -> Selection {
    Selection {
        target: Target::Revision(Revision(target)),
        ..Selection::default()
    }
}

fn steps(p: &Plan) -> Vec<&str> {
    p.chain
        .iter()
        .map(|s| s.snapshot.snap_name.as_str())
        .collect()
}

#[test]
fn history_lists_sets_newest_first() {
    let h = history(&store()).unwrap();
    let bases: Vec<_> = h
        .iter()
        .map(|s| s.full.as_ref().unwrap().last_revision.get())
        .collect();
    assert_eq!(bases, [30, 10]);
    assert_eq!(h[1].deltas.len(), 2);
    assert_eq!(h[0].reach().unwrap().to, Revision(50));
}

#[test]
fn a_target_revision_uses_the_newest_full_at_or_below_it() {
    let l = store();
    let p = plan(&l, &rev(25)).unwrap();
    assert_eq!(p.full().last_revision.get(), 10);
    assert_eq!(
        steps(&p),
        [
            "Incr-00000011-00000020-110.gz",
            "Incr-00000021-00000030-120.gz"
        ]
    );
    assert_eq!(p.stop, Stop::AtRevision(Revision(25)));
    assert_eq!(p.revision(), Some(Revision(25)));
    let p = plan(&l, &rev(30)).unwrap();
    assert_eq!((p.full().last_revision.get(), p.chain.len()), (30, 0));
    let p = plan(&l, &rev(41)).unwrap();
    assert_eq!(steps(&p).len(), 2);
    let p = plan(&l, &rev(20)).unwrap();
    assert_eq!(steps(&p), ["Incr-00000011-00000020-110.gz"]);
    let p = plan(&l, &rev(10)).unwrap();
    assert!(p.chain.is_empty());
}

#[test]
fn unreachable_targets_name_what_the_store_holds() {
    let l = store();
    let e = plan(&l, &rev(5)).unwrap_err().to_string();
    assert!(
        e.contains("below the oldest full snapshot Full-00000000-00000010-100.gz (revision 10)"),
        "{e}"
    );
    assert!(
        e.contains("10..=30 (from Full-00000000-00000010-100.gz), 30..=50"),
        "{e}"
    );
    let e = plan(&l, &rev(51)).unwrap_err().to_string();
    assert!(
        e.contains("above the last backed-up revision 50 (Incr-00000041-00000050-220.gz)"),
        "{e}"
    );
    // A removed delta.
    let l: Vec<_> = store()
        .into_iter()
        .filter(|s| !s.snap_name.starts_with("Incr-00000031"))
        .collect();
    let e = plan(&l, &rev(45)).unwrap_err().to_string();
    assert!(e.contains("revisions 31..=40 are missing"), "{e}");
    assert!(plan(&l, &rev(30)).is_ok(), "below the gap restores");
    // Between sets: the older set's last delta is gone, and the next full is above.
    let l: Vec<_> = store()
        .into_iter()
        .filter(|s| !s.snap_name.starts_with("Incr-00000021"))
        .collect();
    let e = plan(&l, &rev(25)).unwrap_err().to_string();
    assert!(e.contains("ends at revision 20"), "{e}");
    assert!(plan(&l, &rev(20)).is_ok());
}

#[test]
fn a_chosen_snapshot_restores_its_own_set() {
    let l = store();
    let sel = |name: &str, no_deltas: bool, target: Target| Selection {
        snapshot: Some(name.into()),
        no_deltas,
        target,
    };
    let p = plan(
        &l,
        &sel("Full-00000000-00000010-100.gz", false, Target::Latest),
    )
    .unwrap();
    assert_eq!(
        steps(&p).len(),
        2,
        "its deltas up to the next full snapshot"
    );
    assert_eq!(p.revision(), Some(Revision(30)));
    let p = plan(
        &l,
        &sel("v2/Full-00000000-00000010-100.gz", true, Target::Latest),
    )
    .unwrap();
    assert!(p.chain.is_empty());
    assert_eq!(p.revision(), Some(Revision(10)));
    let e = plan(
        &l,
        &sel(
            "Full-00000000-00000030-200.gz",
            false,
            Target::Revision(Revision(20)),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("below the chosen full snapshot"), "{e}");
    let e = plan(
        &l,
        &sel("Incr-00000011-00000020-110.gz", false, Target::Latest),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("is a delta snapshot"), "{e}");
    let e = plan(
        &l,
        &sel("Full-00000000-00000099-100.gz", false, Target::Latest),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("Full-00000000-00000030-200.gz, Full-00000000-00000010-100.gz"),
        "{e}"
    );
    let e = plan(
        &l,
        &sel(
            "Full-00000000-00000010-100.gz",
            true,
            Target::Revision(Revision(12)),
        ),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("--no-deltas"), "{e}");
}

#[test]
fn a_target_time_picks_the_set_taken_before_it_and_the_deltas_around_it() {
    let l = store();
    let at = |s: i64| Selection {
        target: Target::Time(Utc.timestamp_opt(s, 0).unwrap()),
        ..Selection::default()
    };
    let p = plan(&l, &at(115)).unwrap();
    assert_eq!(p.full().last_revision.get(), 10);
    assert_eq!(
        steps(&p),
        [
            "Incr-00000011-00000020-110.gz",
            "Incr-00000021-00000030-120.gz"
        ],
        "the first delta taken after the time may hold events before it"
    );
    let p = plan(&l, &at(205)).unwrap();
    assert_eq!(p.full().last_revision.get(), 30);
    assert_eq!(steps(&p), ["Incr-00000031-00000040-210.gz"]);
    let p = plan(&l, &at(999)).unwrap();
    assert_eq!(steps(&p).len(), 2);
    let e = plan(&l, &at(99)).unwrap_err().to_string();
    assert!(
        e.contains("before the oldest full snapshot Full-00000000-00000010-100.gz"),
        "{e}"
    );
}

#[test]
fn a_rolled_back_history_is_a_set_of_its_own() {
    // etcd at 11, 20 writes saved, rolled back to 11, 30 writes.
    let l = listing(&[
        "v2/Full-00000000-00000011-100",
        "v2/Incr-00000012-00000031-110",
        "v2/Full-00000000-00000011-120",
        "v2/Incr-00000012-00000041-130",
    ]);
    let h = history(&l).unwrap();
    assert_eq!(h.len(), 2);
    // By revision: the history etcd went on with.
    let p = plan(&l, &rev(20)).unwrap();
    assert_eq!(steps(&p), ["Incr-00000012-00000041-130"]);
    // By time: the history of that time.
    let p = plan(
        &l,
        &Selection {
            target: Target::Time(Utc.timestamp_opt(115, 0).unwrap()),
            ..Selection::default()
        },
    )
    .unwrap();
    assert_eq!(steps(&p), ["Incr-00000012-00000031-110"]);
    // By name.
    let p = plan(
        &l,
        &Selection {
            snapshot: Some("Full-00000000-00000011-100".into()),
            ..Selection::default()
        },
    )
    .unwrap();
    assert_eq!(steps(&p), ["Incr-00000012-00000031-110"]);
}

#[test]
fn twins_and_latest_match_the_original() {
    let l = listing(&[
        "v2/Full-00000000-00000010-100.gz",
        "v2/Full-00000000-00000010-100.gz.final",
    ]);
    let h = history(&l).unwrap();
    assert_eq!(h.len(), 1);
    let p = plan(&l, &Selection::latest()).unwrap();
    assert_eq!(p.full().snap_name, "Full-00000000-00000010-100.gz.final");
    assert_eq!(
        plan(&[], &Selection::latest()),
        Err(SelectError::NoFullSnapshot)
    );
}
