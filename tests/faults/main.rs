//! The fault suite: faults on the edge data path against real servers, each
//! reported as numbers (sent, stored, kept aside, lost, doubled, recovery
//! time) in `target/fault-report.json` (see `report.rs`), and each required
//! to lose nothing and double nothing:
//!
//! - `broker_restart`: Mosquitto stopped for the outage, then started again;
//! - `influxdb_down`: InfluxDB stopped for the outage;
//! - `network_cut`: ingest behind a veth link (its own network namespace),
//!   the link taken down for the outage;
//! - `spool_disk_full`: ingest's spool on a small tmpfs, filled by another
//!   file for the outage;
//! - `ingest_sigkill`: `gridcast ingest` SIGKILLed mid-stream, restarted, and
//!   killed and restarted again at once (a crash loop);
//! - `meter_clock_jumps`: one meter's clock an hour ahead for a minute, and
//!   later an hour behind for a minute.
//!
//! The outage lasts `GRIDCAST_FAULT_OUTAGE_SECS` (8 s by default, as CI
//! runs it): `GRIDCAST_FAULT_OUTAGE_SECS=600 scripts/test --test faults`
//! gives the 10-minute outages the README's report quotes.
//!
//! Each fault runs its own Mosquitto and InfluxDB (they are stopped and
//! restarted) from the binaries `scripts/install-deps` installs, and the
//! `gridcast` binary cargo built, as a child process.

#[path = "../support/mod.rs"]
mod support;

mod netns;
mod report;
mod scenario;

use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use gridcast_simulator::SimReading;

use report::FaultRecord;
use scenario::{SENSORS, Scenario, minutes_for};
use support::meter::{Expected, expected_minutes, simulated_readings};

/// `GRIDCAST_FAULT_OUTAGE_SECS`, 8 s if unset.
pub fn outage() -> Duration {
    let secs = std::env::var("GRIDCAST_FAULT_OUTAGE_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(8.0);
    Duration::from_secs_f64(secs)
}

fn readings(minutes: usize) -> (Vec<SimReading>, Expected) {
    let readings = simulated_readings(SENSORS, minutes);
    let expected = expected_minutes(&readings);
    assert_eq!(expected.len(), SENSORS as usize * minutes);
    (readings, expected)
}

/// Writes the record, then asserts what every fault must hold.
fn report_and_check(s: &Scenario, record: &FaultRecord) {
    report::write(record);
    let log = || {
        let log = s.ingest.log();
        let tail: Vec<&str> = log.lines().rev().take(40).collect();
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    };
    assert_eq!(record.readings_lost, 0, "{record:#?}\ningest log tail:\n{}", log());
    assert_eq!(record.windows_exact, record.windows_expected, "{record:#?}\ningest log tail:\n{}", log());
    assert_eq!((record.windows_wrong, record.windows_doubled), (0, 0), "{record:#?}");
}

/// A fault on a server: the meters publish, the path is seen working (two
/// minutes of windows stored), `break_it`, the outage, `restore`; then the
/// recovery time and the counts.
fn server_outage(fault: &str, what: &str, break_it: fn(&mut Scenario), restore: fn(&mut Scenario)) {
    outage_of(Scenario::start(), fault, what, outage(), break_it, restore);
}

fn outage_of(
    mut s: Scenario,
    fault: &str,
    what: &str,
    outage: Duration,
    break_it: fn(&mut Scenario),
    restore: fn(&mut Scenario),
) -> Scenario {
    let minutes = minutes_for(outage);
    let (readings, expected) = readings(minutes);
    let publisher = s.publish(readings);
    s.wait_windows(2 * SENSORS as usize);

    let broken = Instant::now();
    break_it(&mut s);
    thread::sleep(outage);
    restore(&mut s);
    let restored = Instant::now();
    let sent_at_restore = s.newest_sent_ms.load(Ordering::Relaxed);

    let mut record = FaultRecord {
        fault: fault.into(),
        what: what.into(),
        outage_secs: restored.duration_since(broken).as_secs_f64(),
        minutes,
        ..FaultRecord::default()
    };
    record.recovery_secs = s.recovery_secs(restored, sent_at_restore, &expected);
    s.measure(vec![publisher], &expected, &mut record);
    report_and_check(&s, &record);
    s
}

#[test]
fn broker_restart() {
    server_outage(
        "broker_restart",
        "Mosquitto stopped (SIGTERM, persistence saved) for the outage, then started again",
        |s| s.mosquitto.stop(),
        |s| s.mosquitto.restart(),
    );
}

#[test]
fn network_cut() {
    // At least 20 s: four keep-alives, so both ends give the connection up.
    let s = outage_of(
        Scenario::start_behind_link(),
        "network_cut",
        "ingest in a network namespace of its own, reaching the broker over a veth pair; the link taken down for \
         the outage (at least 20 s), then up (ingest's MQTT keep-alive 5 s; windows checked in its file sink)",
        outage().max(Duration::from_secs(20)),
        |s| s.link.as_ref().expect("a link").cut(),
        |s| s.link.as_ref().expect("a link").restore(),
    );
    assert!(s.ingest.log().contains("MQTT connection lost"), "ingest noticed the cut:\n{}", s.ingest.log());
}

#[test]
fn influxdb_down() {
    server_outage(
        "influxdb_down",
        "InfluxDB stopped for the outage, then started again",
        |s| s.influxd().stop(),
        |s| s.influxd().restart(),
    );
}

#[test]
fn spool_disk_full() {
    let s = outage_of(
        Scenario::start_on_small_disk(16),
        "spool_disk_full",
        "ingest's spool on a 16 MiB tmpfs, filled to the last byte by another file for the outage, then the file \
         removed",
        outage(),
        |s| {
            let filler = s.disk.as_ref().expect("a small disk").fill();
            let log = || s.ingest.log();
            support::eventually(Duration::from_secs(60), "ingest to find the disk full", || {
                log().contains("the disk under the spool is full").then_some(())
            });
            assert!(filler.exists());
        },
        |s| {
            std::fs::remove_file(s.disk.as_ref().expect("a small disk").path.join("filler")).expect("remove the filler")
        },
    );
    assert!(s.ingest.log().contains("starting again to reopen the spool"), "{}", s.ingest.log());
}

#[test]
fn ingest_sigkill() {
    let mut s = Scenario::start();
    let minutes = minutes_for(Duration::from_secs(4));
    let (readings, expected) = readings(minutes);
    let publisher = s.publish(readings);
    s.wait_windows(2 * SENSORS as usize);
    let broken = Instant::now();
    s.ingest.kill();
    thread::sleep(Duration::from_secs(2));
    s.ingest.restart();
    let restored = Instant::now();
    let sent_at_restore = s.newest_sent_ms.load(Ordering::Relaxed);
    // Killed again once it has replayed its journal, restarted at once: a
    // crash loop must not lose or double either (its time counts in the
    // recovery).
    support::eventually(Duration::from_secs(60), "the journal replayed", || {
        s.ingest.log().contains("replayed the spool journal").then_some(())
    });
    s.ingest.restart();
    let mut record = FaultRecord {
        fault: "ingest_sigkill".into(),
        what: "gridcast ingest SIGKILLed mid-stream and restarted 2 s later; once it had replayed its journal, \
               killed and restarted again at once (within the recovery)"
            .into(),
        outage_secs: restored.duration_since(broken).as_secs_f64(),
        minutes,
        ..FaultRecord::default()
    };
    record.recovery_secs = s.recovery_secs(restored, sent_at_restore, &expected);
    s.measure(vec![publisher], &expected, &mut record);
    report_and_check(&s, &record);
}

#[test]
fn meter_clock_jumps() {
    const HOUR_SECS: f64 = 3_600.0;
    let mut s = Scenario::start();
    let minutes = 12;
    let (all, _) = readings(minutes);
    let first_minute = (all[0].ts_secs / 60.0).floor() * 60.0;
    let jumped_sensor = all[0].sensor;
    let in_minute = |r: &SimReading, m: f64| {
        r.sensor == jumped_sensor && (r.ts_secs / 60.0).floor() * 60.0 == first_minute + m * 60.0
    };
    // Minute 4 of one meter an hour ahead, its minute 8 an hour behind; the
    // rest as it was. The jumped minutes go out through publishers of their
    // own, each when the meters reach that minute (a publisher paces by
    // reading time, so one an hour ahead would wait an hour).
    let ahead: Vec<SimReading> =
        all.iter().filter(|r| in_minute(r, 4.0)).map(|r| SimReading { ts_secs: r.ts_secs + HOUR_SECS, ..*r }).collect();
    let behind: Vec<SimReading> =
        all.iter().filter(|r| in_minute(r, 8.0)).map(|r| SimReading { ts_secs: r.ts_secs - HOUR_SECS, ..*r }).collect();
    let rest: Vec<SimReading> = all.iter().filter(|r| !in_minute(r, 4.0) && !in_minute(r, 8.0)).copied().collect();
    let expected = expected_minutes(&rest);
    let jumped = (ahead.len() + behind.len()) as u64;

    let mut publishers = vec![s.publish(rest)];
    s.wait_sent_until(((first_minute + 4.0 * 60.0) * 1000.0) as i64);
    publishers.push(s.publish_untracked(ahead));
    s.wait_sent_until(((first_minute + 8.0 * 60.0) * 1000.0) as i64);
    publishers.push(s.publish_untracked(behind));

    let mut record = FaultRecord {
        fault: "meter_clock_jumps".into(),
        what: "one meter's clock an hour ahead for its minute 4, and an hour behind for its minute 8".into(),
        minutes,
        ..FaultRecord::default()
    };
    s.measure(publishers, &expected, &mut record);
    report_and_check(&s, &record);
    assert_eq!(record.readings_kept_aside, jumped, "every jumped reading kept aside: {record:#?}");
    assert_eq!(record.readings_in_windows + jumped, record.readings_sent, "{record:#?}");
    let log = s.ingest.log();
    assert!(log.contains("meter clock that jumped ahead"), "the jump ahead was logged:\n{log}");
    assert!(log.contains("late reading"), "the jump back was logged:\n{log}");
}
