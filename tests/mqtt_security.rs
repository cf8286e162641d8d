//! MQTT over TLS with a client certificate and a password, against a real
//! Mosquitto with a TLS listener (`require_certificate true`, its own
//! `password_file`) whose CA and certificates this test makes with rcgen:
//! `gridcast ingest` over TLS writes every window of what the meters
//! publish (on the broker's plain loopback listener); and a wrong CA, an
//! expired client certificate, an expired broker certificate and a wrong
//! password each keep ingest running, log what to fix, and are retried
//! with backoff. A missing CA file stops ingest at start, naming the file.
//!
//! Needs the shared test servers (InfluxDB): run `scripts/test`, or
//! `scripts/test-servers start && source target/test-servers/env`.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use gridcast_simulator::{PublishOptions, publish};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    date_time_ymd,
};

use support::gridcast::{GridcastProcess, IngestToml};
use support::meter::{check_influx_rows, expected_minutes, influx_rows, simulated_readings};
use support::{INFLUX_DB, Mosquitto, command_output, find_binary, shared_servers, unique};

const USER: &str = "meter-gateway";
const PASSWORD: &str = "tls-test-password";
/// Failed attempts, each logged, to see before calling the retries steady.
const ATTEMPTS: usize = 3;

/// The files of a test PKI, PEM, in one folder.
struct Pki {
    ca: PathBuf,
    /// A CA that signed nothing here.
    other_ca: PathBuf,
    broker_cert: PathBuf,
    broker_key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
    /// Signed by `ca`, valid 2020-2021 only.
    expired_cert: PathBuf,
    expired_key: PathBuf,
    /// A broker certificate like `broker_cert`, valid 2020-2021 only.
    expired_broker_cert: PathBuf,
    expired_broker_key: PathBuf,
}

fn ca_params(name: &str) -> CertificateParams {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params
}

fn leaf_params(name: &str, names: &[&str], usage: ExtendedKeyUsagePurpose) -> CertificateParams {
    let mut params = CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![usage];
    params
}

impl Pki {
    fn generate(dir: &Path) -> Pki {
        let write = |name: &str, text: String| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap();
            path
        };
        let ca_key = KeyPair::generate().unwrap();
        let params = ca_params("gridcast test CA");
        let ca = write("ca.pem", params.self_signed(&ca_key).unwrap().pem());
        let issuer = Issuer::new(params, ca_key);
        let other_key = KeyPair::generate().unwrap();
        let other_ca = write("other-ca.pem", ca_params("an unrelated CA").self_signed(&other_key).unwrap().pem());

        let sign = |stem: &str, params: CertificateParams| {
            let key = KeyPair::generate().unwrap();
            let cert = params.signed_by(&key, &issuer).unwrap();
            (write(&format!("{stem}.pem"), cert.pem()), write(&format!("{stem}.key"), key.serialize_pem()))
        };
        // rumqttc sends the host as the TLS server name: 127.0.0.1 here.
        let (broker_cert, broker_key) =
            sign("broker", leaf_params("broker", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth));
        let (client_cert, client_key) = sign("client", leaf_params(USER, &[], ExtendedKeyUsagePurpose::ClientAuth));
        let mut expired = leaf_params(USER, &[], ExtendedKeyUsagePurpose::ClientAuth);
        expired.not_before = date_time_ymd(2020, 1, 1);
        expired.not_after = date_time_ymd(2021, 1, 1);
        let (expired_cert, expired_key) = sign("expired-client", expired);
        let mut expired = leaf_params("broker", &["127.0.0.1", "localhost"], ExtendedKeyUsagePurpose::ServerAuth);
        expired.not_before = date_time_ymd(2020, 1, 1);
        expired.not_after = date_time_ymd(2021, 1, 1);
        let (expired_broker_cert, expired_broker_key) = sign("expired-broker", expired);
        Pki {
            ca,
            other_ca,
            broker_cert,
            broker_key,
            client_cert,
            client_key,
            expired_cert,
            expired_key,
            expired_broker_cert,
            expired_broker_key,
        }
    }
}

/// A Mosquitto whose second listener is TLS: the broker's certificate from
/// `pki`, client certificates required and checked against the same CA, and
/// [`USER`] / [`PASSWORD`] from its own password file.
struct TlsBroker {
    _dir: tempfile::TempDir,
    pki: Pki,
    mosquitto: Mosquitto,
}

impl TlsBroker {
    fn start() -> TlsBroker {
        Self::start_with(false)
    }

    /// With `expired`, the broker shows `expired_broker_cert` instead.
    fn start_with(expired: bool) -> TlsBroker {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::generate(dir.path());
        let passwords = dir.path().join("passwords");
        let mosquitto_passwd = find_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd");
        let output = std::process::Command::new(mosquitto_passwd)
            .arg("-c")
            .arg("-b")
            .arg(&passwords)
            .args([USER, PASSWORD])
            .output()
            .unwrap();
        assert!(output.status.success(), "mosquitto_passwd: {}", command_output(&output));
        let listener = |port: u16| {
            format!(
                "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\nrequire_certificate true\n\
                 allow_anonymous false\npassword_file {}\n",
                pki.ca.display(),
                if expired { &pki.expired_broker_cert } else { &pki.broker_cert }.display(),
                if expired { &pki.expired_broker_key } else { &pki.broker_key }.display(),
                passwords.display()
            )
        };
        let mosquitto = Mosquitto::start_with_listener(dir.path().join("mosquitto"), listener);
        TlsBroker { _dir: dir, pki, mosquitto }
    }

    /// The broker's plain listener, for the tests' publishers.
    fn plain(&self) -> std::net::SocketAddr {
        format!("127.0.0.1:{}", self.mosquitto.port()).parse().unwrap()
    }

    /// An ingest config for the TLS listener: `ca`, the client certificate
    /// and key, and `password`, on `topic`, writing windows to the shared
    /// InfluxDB as `measurement`.
    fn ingest_toml(&self, dir: &Path, ca: &Path, cert: (&Path, &Path), password: &str, topic: &str) -> IngestToml {
        let tls_port = self.mosquitto.second_port().expect("a TLS listener");
        let servers = shared_servers();
        let address = format!("127.0.0.1:{tls_port}").parse().unwrap();
        let mut config = IngestToml::new(address, dir, topic, &unique("tls_meter"));
        config.mqtt_extra = format!(
            "reconnect_max_ms = 1000\ntls = true\nca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n\
             username = {USER:?}\npassword = {password:?}\n",
            ca.display().to_string(),
            cert.0.display().to_string(),
            cert.1.display().to_string(),
        );
        config.sinks = IngestToml::influxdb_v1(&servers.influxdb_v1, INFLUX_DB, "");
        config
    }
}

/// Wait until ingest (started in `dir`) has logged `message` in
/// [`ATTEMPTS`] refused attempts, each with its retry delay, while it keeps
/// running; then check that it never subscribed.
fn assert_refused_and_retried(ingest: &mut GridcastProcess, dir: &Path, message: &str) {
    let log_path = dir.join("ingest.log");
    let refusals = |log: &str| {
        log.lines().filter(|l| l.contains("cannot connect to the MQTT broker") && l.contains(message)).count()
    };
    let log =
        ingest.wait_for(Duration::from_secs(60), &format!("{ATTEMPTS} attempts refused with {message:?}"), || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            (refusals(&log) >= ATTEMPTS).then_some(log)
        });
    let lines: Vec<&str> = log.lines().filter(|l| l.contains(message)).collect();
    assert!(lines.iter().all(|l| l.contains("ERROR") && l.contains("retry_in_ms=")), "{}", lines.join("\n"));
    assert!(!log.contains(" subscribed"), "ingest subscribed although refused:\n{log}");
    ingest.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_over_tls_with_a_client_certificate_and_a_password_writes_every_window() {
    let broker = tokio::task::block_in_place(TlsBroker::start);
    let dir = tempfile::tempdir().unwrap();
    let topic_prefix = unique("tls/raw");
    let pki = &broker.pki;
    let config = broker.ingest_toml(
        dir.path(),
        &pki.ca,
        (&pki.client_cert, &pki.client_key),
        PASSWORD,
        &format!("{topic_prefix}/#"),
    );
    let measurement = config.measurement.clone();
    let mut ingest = tokio::task::block_in_place(|| {
        let mut ingest = GridcastProcess::start("ingest", dir.path(), &config.to_toml(), &[]);
        ingest.wait_subscribed(1);
        ingest
    });

    let readings = simulated_readings(2, 2);
    let expected = expected_minutes(&readings);
    let plain = broker.plain();
    let options = PublishOptions {
        host: plain.ip().to_string(),
        port: plain.port(),
        client_id: unique("tls-meter"),
        topic_prefix: topic_prefix.clone(),
        speedup: 0.0,
        ..PublishOptions::default()
    };
    publish(&options, readings, |_| {}).await.unwrap();

    let url = shared_servers().influxdb_v1;
    let rows = tokio::task::block_in_place(|| {
        ingest.wait_for(Duration::from_secs(60), "every window in InfluxDB", || {
            let rows = influx_rows(&url, &measurement);
            (rows.len() == expected.len()).then_some(rows)
        })
    });
    check_influx_rows(&rows, &expected);
    let log = ingest.log();
    assert!(!log.contains("cannot connect to the MQTT broker"), "no refusal on the good path:\n{log}");
    assert!(!log.contains(PASSWORD), "the password is never logged:\n{log}");
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused_with_the_ca_file_named_and_retried() {
    let broker = TlsBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = &broker.pki;
    let config =
        broker.ingest_toml(dir.path(), &pki.other_ca, (&pki.client_cert, &pki.client_key), PASSWORD, "tls/never/#");
    let mut ingest = GridcastProcess::start("ingest", dir.path(), &config.to_toml(), &[]);
    let message =
        format!("the broker's certificate is not trusted by ca_file {}: UnknownIssuer", pki.other_ca.display());
    assert_refused_and_retried(&mut ingest, dir.path(), &message);
}

#[test]
fn an_expired_client_certificate_is_refused_by_the_broker_and_retried() {
    let broker = TlsBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = &broker.pki;
    let config =
        broker.ingest_toml(dir.path(), &pki.ca, (&pki.expired_cert, &pki.expired_key), PASSWORD, "tls/never/#");
    let mut ingest = GridcastProcess::start("ingest", dir.path(), &config.to_toml(), &[]);
    let message = format!(
        "the broker refused our client certificate (client_cert_file {}): it has expired",
        pki.expired_cert.display()
    );
    assert_refused_and_retried(&mut ingest, dir.path(), &message);
}

#[test]
fn an_expired_broker_certificate_is_refused_and_retried() {
    let broker = TlsBroker::start_with(true);
    let dir = tempfile::tempdir().unwrap();
    let pki = &broker.pki;
    let config = broker.ingest_toml(dir.path(), &pki.ca, (&pki.client_cert, &pki.client_key), PASSWORD, "tls/never/#");
    let mut ingest = GridcastProcess::start("ingest", dir.path(), &config.to_toml(), &[]);
    assert_refused_and_retried(&mut ingest, dir.path(), "the broker's certificate has expired");
}

#[test]
fn a_wrong_password_is_refused_by_the_broker_and_retried() {
    let broker = TlsBroker::start();
    let dir = tempfile::tempdir().unwrap();
    let pki = &broker.pki;
    let config =
        broker.ingest_toml(dir.path(), &pki.ca, (&pki.client_cert, &pki.client_key), "not-the-password", "tls/never/#");
    let mut ingest = GridcastProcess::start("ingest", dir.path(), &config.to_toml(), &[]);
    assert_refused_and_retried(&mut ingest, dir.path(), "the broker refused our username/password");
    assert!(!ingest.log().contains("not-the-password"), "the password is never logged:\n{}", ingest.log());
}

#[test]
fn a_missing_ca_file_stops_ingest_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-ca.pem");
    let address = "127.0.0.1:8883".parse().unwrap();
    let mut config = IngestToml::new(address, dir.path(), "tls/never/#", "tls_never");
    config.mqtt_extra = format!("tls = true\nca_file = {:?}\n", missing.display().to_string());
    let path = dir.path().join("ingest.toml");
    std::fs::write(&path, config.to_toml()).unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .args(["ingest", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = command_output(&output);
    assert!(!output.status.success(), "{text}");
    assert!(text.contains("[mqtt] ca_file: cannot read") && text.contains(missing.to_str().unwrap()), "{text}");
}
