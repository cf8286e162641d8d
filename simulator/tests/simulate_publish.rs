//! Black-box tests of `gridcast simulate`'s publisher against a real
//! Mosquitto (`/usr/sbin/mosquitto`, started by each test on a free port and
//! killed by pid at the end): every simulated reading reaches a subscriber,
//! batched or not, and nothing is lost when the broker restarts mid-stream,
//! whether it kept our session (persistence) or lost it.
//!
//! Self-contained for now; the shared `tests/support` module will absorb the
//! broker and subscriber helpers.

use std::collections::HashSet;
use std::net::TcpListener as StdListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gridcast_simulator::{
    Generator, GeneratorConfig, PublishOptions, PublishReport, RECORD_LEN, Series, Start, encode_batch, publish,
};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, sleep};

const MOSQUITTO: &str = "/usr/sbin/mosquitto";
const T0: i64 = 1_700_000_040; // a whole minute

fn sample_generator(sensors: u32, minutes: usize) -> Generator {
    let csv = Path::new(env!("CARGO_MANIFEST_DIR")).join("../samples/uci_household_2007-01_14d.csv");
    let series = Series::load(&csv).expect("the shipped sample loads");
    let config =
        GeneratorConfig { sensors, minutes: Some(minutes), start: Start::At(T0), ..GeneratorConfig::default() };
    Generator::new(&series, config).expect("generator")
}

/// Every 70-byte record the generator produces.
fn expected_records(g: &Generator) -> HashSet<Vec<u8>> {
    g.readings().map(|r| encode_batch(&[r])).collect()
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A Mosquitto of our own; killed (SIGKILL, by pid) when dropped.
struct Mosquitto {
    child: Child,
    port: u16,
    config: PathBuf,
}

impl Mosquitto {
    /// Start on `port`; with `persistence`, sessions and queued messages
    /// survive a graceful restart (saved under `dir`).
    async fn start(dir: &Path, port: u16, persistence: bool) -> Mosquitto {
        let config = dir.join(format!("mosquitto-{port}.conf"));
        let mut text = format!(
            "listener {port} 127.0.0.1\nallow_anonymous true\nmax_inflight_messages 1000\n\
             max_queued_messages 0\nlog_dest file {}\n",
            dir.join(format!("mosquitto-{port}.log")).display()
        );
        if persistence {
            text += &format!("persistence true\npersistence_location {}/\n", dir.display());
        }
        std::fs::write(&config, text).expect("write mosquitto config");
        Mosquitto::spawn(config, port).await
    }

    async fn spawn(config: PathBuf, port: u16) -> Mosquitto {
        let child = Command::new(MOSQUITTO)
            .arg("-c")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {MOSQUITTO}: {e}"));
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not listen on {port}");
            sleep(Duration::from_millis(20)).await;
        }
        Mosquitto { child, port, config }
    }

    /// SIGTERM (mosquitto saves its persistence file), wait for the exit,
    /// start again with the same config and port.
    async fn restart_gracefully(mut self) -> Mosquitto {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill -TERM");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.child.try_wait().expect("wait for mosquitto").is_none() {
            assert!(Instant::now() < deadline, "mosquitto did not stop on SIGTERM");
            sleep(Duration::from_millis(10)).await;
        }
        let (config, port) = (self.config.clone(), self.port);
        drop(self);
        Mosquitto::spawn(config, port).await
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A QoS 1 subscriber with a persistent session that collects every payload
/// and re-subscribes on every connection.
struct Subscriber {
    payloads: Arc<Mutex<Vec<Vec<u8>>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Subscriber {
    async fn start(port: u16, client_id: &str, filter: &str) -> Subscriber {
        let mut opts = MqttOptions::new(client_id, "127.0.0.1", port);
        opts.set_clean_session(false).set_keep_alive(Duration::from_secs(5));
        let (client, mut eventloop) = AsyncClient::new(opts, 100);
        let payloads = Arc::new(Mutex::new(Vec::new()));
        let (subscribed_tx, mut subscribed) = tokio::sync::watch::channel(false);
        let (sink, filter) = (payloads.clone(), filter.to_string());
        let task = tokio::spawn(async move {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        client.try_subscribe(filter.clone(), QoS::AtLeastOnce).expect("subscribe");
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(true);
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => sink.lock().unwrap().push(p.payload.to_vec()),
                    Ok(_) => {}
                    Err(_) => sleep(Duration::from_millis(20)).await,
                }
            }
        });
        tokio::time::timeout(Duration::from_secs(10), subscribed.wait_for(|s| *s))
            .await
            .expect("subscribed within 10 s")
            .expect("subscriber task alive");
        Subscriber { payloads, task }
    }

    /// Distinct records received so far, and the total including duplicates.
    fn records(&self) -> (HashSet<Vec<u8>>, usize) {
        let payloads = self.payloads.lock().unwrap();
        let mut all = HashSet::new();
        let mut total = 0;
        for payload in payloads.iter() {
            assert_eq!(payload.len() % RECORD_LEN, 0, "payload of {} bytes", payload.len());
            for record in payload.chunks(RECORD_LEN) {
                all.insert(record.to_vec());
                total += 1;
            }
        }
        (all, total)
    }

    /// Wait until every expected record has arrived (or fail, saying how many are missing).
    async fn wait_for_all(&self, expected: &HashSet<Vec<u8>>, within: Duration) -> usize {
        let deadline = Instant::now() + within;
        loop {
            let (got, total) = self.records();
            if got.is_superset(expected) {
                assert_eq!(got.len(), expected.len(), "records that were never published arrived");
                return total;
            }
            if Instant::now() >= deadline {
                panic!("{} of {} records never arrived", expected.difference(&got).count(), expected.len());
            }
            sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn options(port: u16, client_id: &str, prefix: &str) -> PublishOptions {
    PublishOptions {
        port,
        client_id: client_id.into(),
        topic_prefix: prefix.into(),
        speedup: 0.0,
        ack_timeout: Duration::from_secs(30),
        ..PublishOptions::default()
    }
}

fn assert_all_acked(report: &PublishReport, messages: u64, readings: u64) {
    assert_eq!(report.messages_published, messages, "{report:?}");
    assert_eq!(report.messages_acked, messages, "{report:?}");
    assert_eq!(report.readings, readings, "{report:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_simulated_reading_reaches_a_subscriber_through_mosquitto() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), free_port(), false).await;
    let sub = Subscriber::start(broker.port, "sim-test-sub-1", "sim1/#").await;
    let g = sample_generator(2, 2);
    let expected = expected_records(&g);
    assert_eq!(expected.len(), 2 * 2 * 720);

    let report = publish(&options(broker.port, "sim-test-pub-1", "sim1"), g.readings(), |_| {}).await.unwrap();
    assert_all_acked(&report, 2880, 2880);
    let total = sub.wait_for_all(&expected, Duration::from_secs(20)).await;
    assert_eq!(total, 2880, "no duplicates without a fault");
    eprintln!("published {:.0} messages/s", report.messages_per_sec);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batched_messages_carry_one_second_of_one_sensor() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), free_port(), false).await;
    let sub = Subscriber::start(broker.port, "sim-test-sub-2", "sim2/#").await;
    let g = sample_generator(2, 2);
    let expected = expected_records(&g);

    let opts = PublishOptions { readings_per_message: 12, ..options(broker.port, "sim-test-pub-2", "sim2") };
    let report = publish(&opts, g.readings(), |_| {}).await.unwrap();
    assert_all_acked(&report, 240, 2880);
    sub.wait_for_all(&expected, Duration::from_secs(20)).await;
    let payloads = sub.payloads.lock().unwrap();
    assert!(payloads.iter().all(|p| p.len() == 12 * RECORD_LEN));
    // One sensor per message: the sensor bytes (9..21) of every record match the first's.
    assert!(payloads.iter().all(|p| p.chunks(RECORD_LEN).all(|r| r[9..21] == p[9..21])));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_lost_when_the_broker_restarts_with_our_session() {
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), free_port(), true).await;
    let port = broker.port;
    let sub = Subscriber::start(port, "sim-test-sub-3", "sim3/#").await;
    let g = sample_generator(2, 2);
    let expected = expected_records(&g);

    // 2 minutes at 40x real time: 3 s, with the broker restarted after 1 s.
    let opts = PublishOptions { speedup: 40.0, ..options(port, "sim-test-pub-3", "sim3") };
    let publisher = tokio::spawn(async move { publish(&opts, g.readings(), |_| {}).await });
    sleep(Duration::from_secs(1)).await;
    let broker = broker.restart_gracefully().await;

    let report = publisher.await.unwrap().unwrap();
    assert_all_acked(&report, 2880, 2880);
    assert!(report.reconnects >= 1, "{report:?}");
    let total = sub.wait_for_all(&expected, Duration::from_secs(20)).await;
    eprintln!("{} duplicates after the restart", total - expected.len());
    drop(broker);
}

/// A broker that accepts the first connection, answers CONNECT, then swallows
/// every PUBLISH without acknowledging it (counting them), until told to hang
/// up; every later connection is piped to the real broker on `upstream`.
async fn black_hole_then_proxy(
    listener: TcpListener,
    upstream: u16,
    swallowed: Arc<AtomicUsize>,
    hang_up: tokio::sync::oneshot::Receiver<()>,
) {
    let (mut conn, _) = listener.accept().await.expect("accept");
    tokio::select! {
        _ = async {
            loop {
                let Ok(first) = conn.read_u8().await else { return };
                let mut len = 0usize;
                for shift in [0, 7, 14, 21] {
                    let Ok(b) = conn.read_u8().await else { return };
                    len |= ((b & 0x7f) as usize) << shift;
                    if b & 0x80 == 0 {
                        break;
                    }
                }
                let mut body = vec![0; len];
                if conn.read_exact(&mut body).await.is_err() {
                    return;
                }
                match first >> 4 {
                    1 => conn.write_all(&[0x20, 0x02, 0x00, 0x00]).await.expect("connack"),
                    3 => {
                        swallowed.fetch_add(1, Ordering::SeqCst);
                    }
                    _ => {}
                }
            }
        } => {}
        _ = hang_up => {}
    }
    drop(conn);
    loop {
        let (mut client, _) = listener.accept().await.expect("accept");
        tokio::spawn(async move {
            let mut server = TcpStream::connect(("127.0.0.1", upstream)).await.expect("upstream");
            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unacked_messages_are_resent_when_the_broker_lost_our_session() {
    // rumqttc drops its un-acked publishes when a reconnect finds no session
    // (session_present = 0), as after a broker restart without persistence.
    // Here the first "broker" never acknowledges a window's worth of
    // messages and hangs up; the reconnection reaches a real Mosquitto that
    // has never seen this client. Every message must still arrive.
    let dir = tempfile::tempdir().unwrap();
    let broker = Mosquitto::start(dir.path(), free_port(), false).await;
    let sub = Subscriber::start(broker.port, "sim-test-sub-4", "sim4/#").await;
    let front = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_port = front.local_addr().unwrap().port();
    let swallowed = Arc::new(AtomicUsize::new(0));
    let (hang_up, hang_up_rx) = tokio::sync::oneshot::channel();
    let proxy = tokio::spawn(black_hole_then_proxy(front, broker.port, swallowed.clone(), hang_up_rx));

    let g = sample_generator(1, 1);
    let expected = expected_records(&g);
    let opts = PublishOptions { inflight: 200, ..options(front_port, "sim-test-pub-4", "sim4") };
    let publisher = tokio::spawn(async move { publish(&opts, g.readings(), |_| {}).await });

    // The publisher fills its window (200 un-acked messages) and stalls.
    let deadline = Instant::now() + Duration::from_secs(10);
    while swallowed.load(Ordering::SeqCst) < 200 {
        assert!(Instant::now() < deadline, "only {} messages reached the black hole", swallowed.load(Ordering::SeqCst));
        sleep(Duration::from_millis(10)).await;
    }
    sleep(Duration::from_millis(200)).await;
    assert_eq!(swallowed.load(Ordering::SeqCst), 200, "the window holds");
    hang_up.send(()).unwrap();

    let report = publisher.await.unwrap().unwrap();
    assert_all_acked(&report, 720, 720);
    assert_eq!(report.reconnects, 1, "{report:?}");
    sub.wait_for_all(&expected, Duration::from_secs(20)).await;
    proxy.abort();
}
