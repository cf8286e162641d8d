//! The driver with a real spool on a temp dir and a recording acker in
//! place of the broker: every ack comes after its batch's commit, a full
//! spool holds acks back until space returns, and a restart replays.

use std::sync::Mutex;

use gridcast_core::window::WindowConfig;
use gridcast_core::{Field, Source};
use rumqttc::QoS;

use super::*;

const T0: i64 = 1_670_492_760_000;

fn stage_config() -> StageConfig {
    StageConfig {
        decode: Default::default(),
        window: WindowConfig { width_secs: 60, lateness_secs: 5, ..WindowConfig::default() },
        only: None,
        idle_close_ms: 3_600_000,
    }
}

fn publish(sensor: &str, ts_ms: i64, p: f64) -> Publish {
    let payload = format!(r#"{{"ts": {}, "sensor": "{sensor}", "p_l1": {p}}}"#, ts_ms as f64 / 1000.0);
    Publish::new("meters/test", QoS::AtLeastOnce, payload)
}

/// Keeps every closed window; a line per window for the sinks.
#[derive(Clone, Default)]
struct Collect(Arc<Mutex<Vec<ClosedWindow>>>);

impl Consumer for Collect {
    type Event = ();
    type Writes = ();

    fn on_closed(&mut self, closed: Vec<ClosedWindow>) -> Output<()> {
        let lines = closed.iter().map(|w| format!("w,sensor={} n={}i {}\n", w.key.sensor, w.readings, w.start_ms));
        let lines = lines.collect::<String>().into_bytes();
        self.0.lock().unwrap().extend(closed);
        Output { lines, writes: () }
    }
}

/// Records, for every ack, what the spool held at that moment.
#[derive(Clone)]
struct Recorder {
    spool: Arc<Spool>,
    acks: Arc<Mutex<Vec<(String, u64, u64)>>>,
}

impl Acker for Recorder {
    async fn ack(&self, publish: &Publish) {
        let payload = String::from_utf8_lossy(&publish.payload).into_owned();
        let depth = self.spool.depth().unwrap();
        self.acks.lock().unwrap().push((payload, self.spool.next_journal_seq(), depth.point_records));
    }
}

fn driver(dir: &std::path::Path, max_bytes: u64) -> (Driver<Collect>, Collect, Arc<Spool>) {
    let spool = Arc::new(Spool::open(dir, max_bytes, &["sink".to_string()]).unwrap());
    let collect = Collect::default();
    let (newest, _) = watch::channel(0);
    let d = Driver::new(stage_config(), collect.clone(), spool.clone(), Arc::default(), newest, None);
    (d, collect, spool)
}

#[tokio::test]
async fn every_message_is_acked_after_its_batch_is_committed() {
    let dir = tempfile::tempdir().unwrap();
    let (mut driver, collect, spool) = driver(dir.path(), u64::MAX);
    let acker = Recorder { spool: spool.clone(), acks: Arc::default() };
    let first = vec![publish("a", T0 + 1_000, 1.0), publish("a", T0 + 2_000, 3.0)];
    driver.handle(Input::Batch(first), &acker).await.unwrap();
    driver.handle(Input::Batch(vec![publish("a", T0 + 66_000, 5.0)]), &acker).await.unwrap();
    let acks = acker.acks.lock().unwrap().clone();
    assert_eq!(acks.len(), 3);
    // Batch 0's acks: journal entry 0 committed (next is 1), nothing closed yet.
    assert_eq!((acks[0].1, acks[0].2), (1, 0));
    assert_eq!((acks[1].1, acks[1].2), (1, 0));
    // Batch 1's ack: its entry and the window it closed are committed.
    assert_eq!((acks[2].1, acks[2].2), (2, 1));
    assert_eq!(collect.0.lock().unwrap()[0].field(Field::PL1).unwrap().mean(), 2.0);
    let (journal, frontiers) = spool.recover().unwrap();
    assert_eq!(journal.iter().map(|j| j.0).collect::<Vec<_>>(), vec![1], "entry 0 forgotten with its window");
    assert_eq!(frontiers.len(), 1);
}

#[tokio::test]
async fn a_restart_replays_the_journal_and_a_redelivery_is_not_counted_twice() {
    let dir = tempfile::tempdir().unwrap();
    let batch = || vec![publish("a", T0 + 1_000, 1.0), publish("b", T0 + 1_000, 2.0)];
    {
        let (mut driver, _, spool) = driver(dir.path(), u64::MAX);
        let acker = Recorder { spool, acks: Arc::default() };
        driver.handle(Input::Batch(batch()), &acker).await.unwrap();
        // Killed here, say before the acks reached the broker.
    }
    let (mut driver, collect, spool) = driver(dir.path(), u64::MAX);
    driver.recover().await.unwrap();
    let acker = Recorder { spool: spool.clone(), acks: Arc::default() };
    driver.handle(Input::Batch(batch()), &acker).await.unwrap(); // the redelivery
    driver
        .handle(Input::Batch(vec![publish("a", T0 + 70_000, 0.0), publish("b", T0 + 70_000, 0.0)]), &acker)
        .await
        .unwrap();
    let closed = collect.0.lock().unwrap().clone();
    assert_eq!(closed.len(), 2);
    assert!(closed.iter().all(|w| w.readings == 1), "each reading merged once: {closed:?}");
    assert_eq!(spool.pending_points("sink", 10).unwrap().len(), 1);
}

#[tokio::test]
async fn a_full_spool_holds_the_acks_back_until_the_sinks_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    // A bound below one closed window's line (30 B): full once one waits.
    let (driver, _collect, spool) = driver(dir.path(), 20);
    let acker = Recorder { spool: spool.clone(), acks: Arc::default() };
    let acks = acker.acks.clone();
    let (tx, rx) = mpsc::channel(16);
    let (_events_tx, events) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let batching = Batching { max_messages: 1, linger: Duration::ZERO };
    let task = tokio::spawn(driver.run(rx, events, acker, batching, shutdown.clone()));

    let acked = |n: usize| {
        let acks = acks.clone();
        async move {
            while acks.lock().unwrap().len() < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    tx.send(publish("a", T0, 1.0)).await.unwrap();
    tx.send(publish("a", T0 + 66_000, 1.0)).await.unwrap(); // closes minute 0: one line spooled
    acked(2).await;
    assert!(spool.is_full(), "{} of {} bytes", spool.waiting_bytes(), spool.max_bytes());
    tx.send(publish("a", T0 + 67_000, 1.0)).await.unwrap();
    // The driver must not take it while full: give it every chance to (a
    // wrong driver fails here; a right one cannot be made to fail by timing).
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(acks.lock().unwrap().len(), 2, "nothing taken or acked while the spool is full");
    assert_eq!(spool.next_journal_seq(), 2);

    // The sink delivers the line: room again, and the message goes through.
    let (last, _) = *spool.pending_points("sink", 10).unwrap().last().unwrap();
    spool.advance_cursor("sink", last).unwrap();
    acked(3).await;
    assert_eq!(spool.next_journal_seq(), 3);
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn events_are_handled_between_batches_in_arrival_order() {
    #[derive(Default)]
    struct Order(Vec<&'static str>);
    impl Consumer for Order {
        type Event = &'static str;
        type Writes = ();
        fn on_closed(&mut self, closed: Vec<ClosedWindow>) -> Output<()> {
            if !closed.is_empty() {
                self.0.push("closed");
            }
            Output { lines: Vec::new(), writes: () }
        }
        fn on_event(&mut self, event: &'static str) -> Option<Output<()>> {
            self.0.push(event);
            // An event may have lines of its own (ingest's counters).
            (event == "stats").then(|| Output { lines: b"stats n=1i 1\n".to_vec(), writes: () })
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let spool = Arc::new(Spool::open(dir.path(), u64::MAX, &["sink".into()]).unwrap());
    let (newest, newest_rx) = watch::channel(0);
    let mut driver = Driver::new(stage_config(), Order::default(), spool.clone(), Arc::default(), newest, None);
    let acker = Recorder { spool: spool.clone(), acks: Arc::default() };
    driver.handle(Input::Batch(vec![publish("a", T0, 1.0)]), &acker).await.unwrap();
    driver.handle(Input::Event("model swap"), &acker).await.unwrap();
    assert!(spool.pending_points("sink", 10).unwrap().is_empty(), "an event without lines commits nothing");
    driver.handle(Input::Event("stats"), &acker).await.unwrap();
    let pending = spool.pending_points("sink", 10).unwrap();
    assert_eq!(pending.iter().map(|(_, l)| &l[..]).collect::<Vec<_>>(), [&b"stats n=1i 1\n"[..]]);
    assert_eq!(*newest_rx.borrow(), 1, "the sinks are told");
    driver.handle(Input::Batch(vec![publish("a", T0 + 70_000, 1.0)]), &acker).await.unwrap();
    assert_eq!(driver.consumer().0, vec!["model swap", "stats", "closed"]);
    let _ = Source::Raw;
}

#[tokio::test(start_paused = true)]
async fn a_linger_gathers_what_arrives_within_it_into_one_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (driver, _collect, spool) = driver(dir.path(), u64::MAX);
    let acker = Recorder { spool: spool.clone(), acks: Arc::default() };
    let acks = acker.acks.clone();
    let (tx, rx) = mpsc::channel(16);
    // No events of its own (ingest): the channel is closed from the start.
    let (_, events) = mpsc::channel(1);
    let shutdown = CancellationToken::new();
    let batching = Batching { max_messages: 100, linger: Duration::from_millis(500) };
    let task = tokio::spawn(driver.run(rx, events, acker, batching, shutdown.clone()));
    // Three messages 100 ms apart (paused clock): one batch, one commit.
    for i in 0..3 {
        tx.send(publish("a", T0 + i * 1_000, 1.0)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(acks.lock().unwrap().is_empty(), "still lingering at 300 ms of 500");
    while acks.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let acked: Vec<u64> = acks.lock().unwrap().iter().map(|a| a.1).collect();
    assert_eq!(acked, vec![1, 1, 1], "all three acked after the one commit of journal entry 0");
    assert_eq!(spool.next_journal_seq(), 1, "one batch");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn the_rejected_log_stops_growing_at_its_bound_and_counts_what_it_did_not_keep() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rejected/messages.jsonl");
    let stats = Stats::default();
    let record = || RejectedRecord::new(&publish("s", 0, 1.0), "undecodable", "test");
    keep_rejected_within(&path, &[record(), record()], &stats, 1_000);
    let kept = std::fs::read_to_string(&path).unwrap();
    assert_eq!(kept.lines().count(), 2);
    // Over the bound: nothing more is written, all of it is counted.
    keep_rejected_within(&path, &[record()], &stats, kept.len() as u64);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), kept);
    assert_eq!(stats.rejected_not_kept.load(std::sync::atomic::Ordering::Relaxed), 1);
}
