//! Spool behaviour: what is committed survives a reopen, cursors are per
//! sink, and records go once every sink has them.

use super::*;

fn open(dir: &Path, sinks: &[&str]) -> Spool {
    let names: Vec<String> = sinks.iter().map(|s| s.to_string()).collect();
    Spool::open(dir, 1 << 20, &names).unwrap()
}

fn key(sensor: &str) -> WindowKey {
    WindowKey { sensor: gridcast_core::SensorId::new(sensor), source: gridcast_core::Source::Raw }
}

#[test]
fn committed_journal_and_frontiers_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), &["a"]);
        spool
            .commit(Commit { journal: Some((0, b"one")), frontiers: &[(key("s"), 60_000)], ..Default::default() })
            .unwrap();
        spool.commit(Commit { journal: Some((1, b"two")), ..Default::default() }).unwrap();
    }
    let spool = open(dir.path(), &["a"]);
    let (journal, frontiers) = spool.recover().unwrap();
    assert_eq!(journal, vec![(0, b"one".to_vec()), (1, b"two".to_vec())]);
    assert_eq!(frontiers, vec![(key("s"), 60_000)]);
    assert_eq!(spool.next_journal_seq(), 2);
}

#[test]
fn journal_below_the_low_water_mark_is_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), &["a"]);
    for seq in 0..5 {
        spool.commit(Commit { journal: Some((seq, b"xx")), ..Default::default() }).unwrap();
    }
    spool.commit(Commit { forget_journal_below: Some(3), ..Default::default() }).unwrap();
    let (journal, _) = spool.recover().unwrap();
    assert_eq!(journal.iter().map(|(k, _)| *k).collect::<Vec<_>>(), vec![3, 4]);
    assert_eq!(spool.depth().unwrap().journal_bytes, 4);
}

#[test]
fn points_go_only_when_every_sink_has_them() {
    let dir = tempfile::tempdir().unwrap();
    let spool = open(dir.path(), &["a", "b"]);
    spool.commit(Commit { points: Some(b"p0"), ..Default::default() }).unwrap();
    spool.commit(Commit { points: Some(b"p1"), ..Default::default() }).unwrap();
    assert_eq!(spool.pending_points("a", 10).unwrap().len(), 2);
    spool.advance_cursor("a", 1).unwrap();
    assert!(spool.pending_points("a", 10).unwrap().is_empty());
    assert_eq!(spool.depth().unwrap().point_records, 2, "b has not stored them yet");
    spool.advance_cursor("b", 0).unwrap();
    assert_eq!(spool.depth().unwrap().point_records, 1);
    assert_eq!(spool.pending_points("b", 10).unwrap(), vec![(1, b"p1".to_vec())]);
}

#[test]
fn cursor_survives_reopen_and_new_sink_gets_the_backlog() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), &["a"]);
        spool.commit(Commit { points: Some(b"p0"), ..Default::default() }).unwrap();
        spool.commit(Commit { points: Some(b"p1"), ..Default::default() }).unwrap();
        spool.advance_cursor("a", 0).unwrap();
        // Durability::None advances are synced by the next real commit.
        spool.commit(Commit::default()).unwrap();
    }
    let spool = open(dir.path(), &["a", "new"]);
    assert_eq!(spool.pending_points("a", 10).unwrap(), vec![(1, b"p1".to_vec())]);
    assert_eq!(spool.pending_points("new", 10).unwrap(), vec![(1, b"p1".to_vec())]);
}

#[test]
fn full_when_points_reach_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let spool = Spool::open(dir.path(), 4, &["a".to_string()]).unwrap();
    spool.commit(Commit { points: Some(b"abc"), ..Default::default() }).unwrap();
    assert!(!spool.is_full());
    spool.commit(Commit { points: Some(b"de"), ..Default::default() }).unwrap();
    assert!(spool.is_full());
    spool.advance_cursor("a", 1).unwrap();
    assert!(!spool.is_full());
}

#[test]
fn sequence_numbers_continue_after_every_record_was_delivered_and_reopened() {
    let dir = tempfile::tempdir().unwrap();
    {
        let spool = open(dir.path(), &["a"]);
        spool.commit(Commit { journal: Some((0, b"j")), points: Some(b"p0"), ..Default::default() }).unwrap();
        spool
            .commit(Commit {
                journal: Some((1, b"j")),
                points: Some(b"p1"),
                forget_journal_below: Some(2),
                ..Default::default()
            })
            .unwrap();
        spool.advance_cursor("a", 1).unwrap();
        spool.commit(Commit::default()).unwrap();
        assert_eq!(spool.depth().unwrap().point_records, 0);
    }
    let spool = open(dir.path(), &["a"]);
    assert_eq!(spool.next_journal_seq(), 2);
    spool.commit(Commit { points: Some(b"p2"), ..Default::default() }).unwrap();
    assert_eq!(spool.pending_points("a", 10).unwrap(), vec![(2, b"p2".to_vec())], "the new record is after the cursor");
}
