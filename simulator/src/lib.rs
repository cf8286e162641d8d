//! `gridcast simulate`: a stand-in for the installation's meter. It replays a
//! CSV of real per-minute power (the product's meter CSV; a credited sample
//! ships in `samples/`) as 12 Hz raw binary readings (feature type 18) for N
//! sensors, over MQTT, at a chosen speed-up of real time.
//!
//! The flow mirrors the real one, upstream of `gridcast ingest`:
//! [`series`] (read the CSV) -> [`generator`] (pure: minute rows to 12 Hz
//! readings, deterministic for a seed) -> [`batch`] (pure: readings per
//! message) -> [`publish`] (MQTT, QoS 1, lossless across broker restarts,
//! configured by [`options`]). `run` wires them for the CLI; the demo and the
//! tests call the pieces directly.

pub mod batch;
pub mod generator;
pub mod options;
pub mod publish;
pub mod series;

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use serde::Serialize;

pub use batch::Batches;
pub use generator::{
    Generator, GeneratorConfig, GeneratorError, READINGS_PER_MINUTE, READINGS_PER_SECOND, RECORD_LEN, Readings,
    SimReading, Start, encode_batch, sensor_hex, sensor_id,
};
pub use options::{PublishOptions, Qos};
pub use publish::{Progress, PublishError, PublishReport, publish};
pub use series::{MinuteRow, Series, SeriesError};

/// The credited sample of real minute data shipped in the repository.
pub const DEFAULT_CSV: &str = "samples/uci_household_2007-01_14d.csv";

/// `gridcast simulate`: replay minute data as a three-phase meter's 12 Hz
/// readings over MQTT.
#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// Minute CSV to replay: `timestamp` (RFC 3339), `p_l1`, optional `p_l2`, `p_l3` (W).
    #[arg(long, default_value = DEFAULT_CSV)]
    pub csv: PathBuf,

    /// Number of simulated sensors; sensor i replays the CSV from
    /// i x --sensor-offset-minutes rows later (wrapping).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub sensors: u32,

    /// Minutes to simulate [default: every row of the CSV]; more than the CSV
    /// has wraps around to its start.
    #[arg(long)]
    pub minutes: Option<usize>,

    /// Multiple of real time: 1 = 12 readings/s per sensor, 60 = a minute per
    /// second, 0 = as fast as the broker takes them.
    #[arg(long, default_value_t = 1.0, value_parser = parse_speedup)]
    pub speedup: f64,

    /// Broker address, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    pub mqtt: BrokerAddr,

    /// Messages go to `{prefix}/{sensor id in hex}`.
    #[arg(long, default_value = "data/realtime/feature/raw")]
    pub topic_prefix: String,

    /// MQTT client id; fixed, so the broker keeps the session across reconnects.
    #[arg(long, default_value = "gridcast-simulator")]
    pub client_id: String,

    /// MQTT QoS: 1 = every message acknowledged (lossless), 0 = fire and forget.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=1))]
    pub qos: u8,

    /// Timestamps: `now` = the first minute starts at the current minute,
    /// `csv` = the CSV's own times, or a Unix second for the first minute.
    #[arg(long, default_value = "now")]
    pub start: StartAt,

    /// Seed of the within-minute noise and the power factors.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,

    /// Readings per MQTT message, all of one sensor (12 = one second, as a
    /// batching gateway sends).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub readings_per_message: u32,

    /// Rows between the starts of consecutive sensors in the CSV (1440 = a day,
    /// so each sensor keeps the clock's time of day).
    #[arg(long, default_value_t = 1440)]
    pub sensor_offset_minutes: usize,

    /// Most messages awaiting the broker's acknowledgement at once.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..=32767))]
    pub inflight: u16,

    /// Seconds to wait for an acknowledgement while messages are outstanding
    /// (broker down) before failing.
    #[arg(long, default_value_t = 60)]
    pub ack_timeout: u64,
}

/// A broker's `HOST:PORT` (`[v6]:PORT` for IPv6 literals; `HOST` alone means port 1883).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerAddr {
    pub host: String,
    pub port: u16,
}

impl FromStr for BrokerAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (host, port) = if let Some(rest) = s.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(|| format!("{s:?}: missing `]`"))?;
            (host, after.strip_prefix(':'))
        } else if s.matches(':').count() == 1 {
            let (host, port) = s.split_once(':').unwrap_or((s, ""));
            (host, Some(port))
        } else {
            (s, None)
        };
        if host.is_empty() {
            return Err(format!("{s:?}: no host; expected HOST:PORT, e.g. 127.0.0.1:1883"));
        }
        let port = match port {
            None => 1883,
            Some(p) => p.parse().map_err(|_| format!("{s:?}: port {p:?} is not a number 0-65535"))?,
        };
        Ok(BrokerAddr { host: host.to_string(), port })
    }
}

impl fmt::Display for BrokerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// The `--start` choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The first minute starts at the current minute (wall clock).
    Now,
    /// The CSV's own timestamps.
    Csv,
    /// The first minute starts at this Unix second.
    Unix(i64),
}

impl FromStr for StartAt {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "now" => Ok(StartAt::Now),
            "csv" => Ok(StartAt::Csv),
            other => other
                .parse()
                .map(StartAt::Unix)
                .map_err(|_| format!("{s:?}: expected `now`, `csv` or a whole Unix second")),
        }
    }
}

impl StartAt {
    /// The generator's start; `Now` reads the clock here, once.
    pub fn resolve(self) -> Start {
        match self {
            StartAt::Now => Start::At(chrono::Utc::now().timestamp().div_euclid(60) * 60),
            StartAt::Csv => Start::Csv,
            StartAt::Unix(t) => Start::At(t),
        }
    }
}

fn parse_speedup(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(x) if x.is_finite() && x >= 0.0 => Ok(x),
        _ => Err(format!("{s:?}: expected 0 (as fast as possible) or a positive multiple of real time")),
    }
}

/// What `gridcast simulate` did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimulateReport {
    pub sensors: u32,
    pub minutes: usize,
    /// Unix seconds of the first simulated minute.
    pub first_minute: i64,
    #[serde(flatten)]
    pub publish: PublishReport,
}

impl fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.publish;
        write!(
            f,
            "simulated {} sensors x {} minutes: {} readings in {} messages, {} acknowledged, \
             in {:.2} s ({:.0} readings/s, {:.0} messages/s), {} reconnects",
            self.sensors,
            self.minutes,
            p.readings,
            p.messages_published,
            p.messages_acked,
            p.elapsed_secs,
            p.readings_per_sec,
            p.messages_per_sec,
            p.reconnects
        )
    }
}

impl SimulateArgs {
    /// The generator this run replays.
    pub fn generator(&self) -> anyhow::Result<Generator> {
        let series = Series::load(&self.csv).with_context(|| {
            format!(
                "loading the minute CSV {} (run from the repository root for the default sample, or pass --csv)",
                self.csv.display()
            )
        })?;
        let config = GeneratorConfig {
            sensors: self.sensors,
            minutes: self.minutes,
            start: self.start.resolve(),
            seed: self.seed,
            sensor_offset_minutes: self.sensor_offset_minutes,
        };
        Generator::new(&series, config).context("setting up the simulated meter")
    }

    /// The publishing options these arguments ask for.
    pub fn publish_options(&self) -> PublishOptions {
        PublishOptions {
            host: self.mqtt.host.clone(),
            port: self.mqtt.port,
            client_id: self.client_id.clone(),
            topic_prefix: self.topic_prefix.clone(),
            qos: if self.qos == 0 { Qos::AtMostOnce } else { Qos::AtLeastOnce },
            speedup: self.speedup,
            readings_per_message: self.readings_per_message as usize,
            inflight: self.inflight,
            ack_timeout: Duration::from_secs(self.ack_timeout),
            ..PublishOptions::default()
        }
    }
}

/// Run `gridcast simulate`: load, generate, publish; returns once the broker
/// has acknowledged every message (QoS 1).
pub async fn run(args: SimulateArgs) -> anyhow::Result<SimulateReport> {
    let generator = args.generator()?;
    let opts = PublishOptions { progress_interval: Duration::from_secs(5), ..args.publish_options() };
    let total = generator.total_readings();
    tracing::info!(
        csv = %args.csv.display(),
        sensors = args.sensors,
        minutes = generator.minutes(),
        readings = total,
        broker = %args.mqtt,
        speedup = args.speedup,
        "simulating the meter"
    );
    let report = publish(&opts, generator.readings(), |p| {
        tracing::info!(
            readings = p.readings,
            of = total,
            messages = p.messages_published,
            acked = p.messages_acked,
            reconnects = p.reconnects,
            connected = p.connected,
            "simulate progress"
        );
    })
    .await
    .with_context(|| format!("publishing simulated readings to {}", args.mqtt))?;
    Ok(SimulateReport {
        sensors: args.sensors,
        minutes: generator.minutes(),
        first_minute: generator.minute_start(0).unwrap_or_default(),
        publish: report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: SimulateArgs,
    }

    #[test]
    fn defaults_match_the_documented_ones() {
        let a = Cli::try_parse_from(["x"]).unwrap().args;
        assert_eq!(a.csv, PathBuf::from(DEFAULT_CSV));
        assert_eq!((a.sensors, a.minutes, a.speedup, a.qos), (3, None, 1.0, 1));
        assert_eq!(a.mqtt, BrokerAddr { host: "127.0.0.1".into(), port: 1883 });
        assert_eq!(a.start, StartAt::Now);
        assert_eq!(a.readings_per_message, 1);
        let o = a.publish_options();
        assert_eq!(o.topic(&sensor_id(0)), "data/realtime/feature/raw/677269646361737400000000");
        assert_eq!(o.client_id, "gridcast-simulator");
    }

    #[test]
    fn flags_parse_and_bad_values_are_rejected() {
        let a = Cli::try_parse_from([
            "x",
            "--mqtt",
            "[::1]:1999",
            "--start",
            "1700000040",
            "--speedup",
            "0",
            "--qos",
            "0",
            "--readings-per-message",
            "12",
        ])
        .unwrap()
        .args;
        assert_eq!(a.mqtt, BrokerAddr { host: "::1".into(), port: 1999 });
        assert_eq!(a.start, StartAt::Unix(1_700_000_040));
        assert_eq!(a.publish_options().qos, Qos::AtMostOnce);
        for bad in [
            &["x", "--qos", "2"][..],
            &["x", "--speedup", "-1"],
            &["x", "--start", "yesterday"],
            &["x", "--mqtt", "host:port"],
            &["x", "--sensors", "0"],
            &["x", "--readings-per-message", "0"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
        assert_eq!("mqtt.local".parse::<BrokerAddr>().unwrap().port, 1883);
        assert_eq!(BrokerAddr { host: "::1".into(), port: 1 }.to_string(), "[::1]:1");
    }

    #[test]
    fn start_now_is_a_whole_minute() {
        match StartAt::Now.resolve() {
            Start::At(t) => assert_eq!(t % 60, 0),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn missing_csv_error_says_what_to_do() {
        let a = Cli::try_parse_from(["x", "--csv", "/nonexistent/minutes.csv"]).unwrap().args;
        let err = format!("{:#}", a.generator().unwrap_err());
        assert!(err.contains("/nonexistent/minutes.csv") && err.contains("--csv"), "{err}");
    }
}
