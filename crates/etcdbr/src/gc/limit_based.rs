//! The LimitBased policy: keep the newest `max_backups` full snapshots.

use snapstore::Snapshot;

use super::FullDecision;

/// Judges the stream starts from oldest to second-newest: the original deletes stream `i`'s
/// full snapshot when `i < len(full_index) - max_backups`.
pub(super) fn judge(
    list: &[Snapshot],
    full_index: &[usize],
    max_backups: usize,
) -> Vec<(usize, usize, FullDecision)> {
    let n = full_index.len();
    (0..n.saturating_sub(1))
        .map(|i| {
            let snapshot = list[full_index[i]].clone();
            let delete = i + max_backups < n;
            let reason = if delete {
                format!("more than --max-backups={max_backups} newer full snapshots exist")
            } else {
                format!("among the newest --max-backups={max_backups} full snapshots")
            };
            (
                full_index[i],
                full_index[i + 1],
                FullDecision {
                    snapshot,
                    delete,
                    reason,
                },
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_support::*;
    use super::super::*;

    #[test]
    fn keeps_the_newest_max_backups() {
        let list: Vec<_> = (1..=5)
            .flat_map(|i| {
                [
                    full(i * 10, at(i as u32, 0)),
                    incr(i * 10 + 1, i * 10 + 5, at(i as u32, 5)),
                ]
            })
            .collect();
        for (max, deleted_fulls) in [(1usize, 4usize), (2, 3), (5, 0), (7, 0)] {
            let mut o = GcOptions::new(GcPolicy::LimitBased);
            o.max_backups = max;
            let p = plan(&list, at(12, 0), &o);
            let fulls: Vec<_> = p.deletions().filter(|s| s.kind == Kind::Full).collect();
            assert_eq!(fulls.len(), deleted_fulls, "max_backups={max}");
            // Every delta except the latest stream's goes, whatever max_backups is.
            assert_eq!(p.deletions().filter(|s| s.kind == Kind::Incr).count(), 4);
            if let Some(newest_deleted) = fulls.iter().map(|s| s.last_revision).max() {
                assert!(newest_deleted.get() <= (5 - max as i64) * 10);
            }
        }
    }

    #[test]
    fn orphan_deltas_at_the_start_count_as_a_stream_like_the_original() {
        let list = vec![incr(1, 5, at(1, 0)), full(10, at(2, 0)), full(20, at(3, 0))];
        let mut o = GcOptions::new(GcPolicy::LimitBased);
        o.max_backups = 2;
        let p = plan(&list, at(12, 0), &o);
        // Position 0 is judged as a "full snapshot" by the original even when it is a delta;
        // we delete it once, as a delta.
        assert_eq!(
            names(p.deletions()),
            ["Incr-00000001-00000005-1715734800.gz"]
        );
    }

    #[test]
    fn the_base_of_a_rolled_back_history_is_never_deleted() {
        // An old history up to 31 (full at 31), then etcd rolled back to 11: new full at 11
        // and a delta to 41. By revision the new base sorts into an "older" stream.
        let list = vec![
            full(11, at(3, 0)),
            full(31, at(2, 0)),
            incr(12, 41, at(4, 0)),
        ];
        let mut sorted = list.clone();
        snapstore::list::sort(&mut sorted);
        let mut o = GcOptions::new(GcPolicy::LimitBased);
        o.max_backups = 1;
        let p = plan(&sorted, at(12, 0), &o);
        let deleted = names(p.deletions());
        assert!(
            !deleted.iter().any(|n| n.contains("00000011-")),
            "{deleted:?}"
        );
        assert!(
            !deleted.iter().any(|n| n.starts_with("Incr-")),
            "{deleted:?}"
        );
    }
}
