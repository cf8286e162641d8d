//! `gridcast ship model --engine`: the model image built and pushed by a real
//! Docker engine (Debian's dockerd, API 1.41, one per test) to a real
//! registry (Debian's docker-registry), and what the registry then holds:
//! the base's very layers, one layer with the model, the labels; then the
//! image run on that engine until the predictor serves the model. Also the
//! failures: a registry that is down, refused credentials, no engine.

mod support;

use std::os::unix::net::UnixListener;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::dockerd::Dockerd;
use support::gridcast::{model_version, shipped_model};
use support::image::{
    blob, config, layer_digests, manifest, ship, ship_failed, shipped, static_gridcast, tiny_elf, unpack,
};
use support::registry::Registry;
use support::{Mosquitto, free_port, http};

/// `ship model --engine` of the shipped model onto `base`, into `image`.
fn ship_model_with_engine(
    engine_host: &str,
    base: &str,
    image: &str,
    env: &[(&str, &str)],
    dir: &Path,
) -> std::process::Output {
    let model = shipped_model();
    ship(
        &[
            "model",
            "--engine",
            "--docker-host",
            engine_host,
            "--model",
            model.to_str().unwrap(),
            "--base",
            base,
            "--image",
            image,
        ],
        env,
        dir,
    )
}

#[test]
fn a_model_shipped_through_the_engine_sits_on_the_base_layers_and_serves() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let addr = registry.addr();
    let engine_dir = dir.path().join("engine");
    std::fs::create_dir(&engine_dir).unwrap();
    let engine = Dockerd::start(&engine_dir);

    // The base, daemonlessly, from the static binary (the test's own
    // gridcast is linked dynamically and would not start in the image).
    let base_image = format!("{addr}/gridcast/predictor:base");
    let binary = static_gridcast();
    shipped(&ship(&["base", "--binary", binary.to_str().unwrap(), "--image", &base_image], &[], dir.path()));
    let (base_manifest, _) = manifest(&addr, "gridcast/predictor", "base");
    let base_layers = layer_digests(&base_manifest);

    // The model through the engine, tagged by default with its version.
    let model = std::fs::read(shipped_model()).unwrap();
    let sha256 = model_version(&model);
    let version = &sha256[..12];
    let output = ship_model_with_engine(&engine.host(), &base_image, &format!("{addr}/gridcast/edge"), &[], dir.path());
    let (digest, report) = shipped(&output);
    println!("{report}");
    assert!(
        report.contains("through the Docker engine at")
            && report.contains("uploaded 1 layer(s)")
            && report.contains("reused 1 layer(s)"),
        "only the model layer is uploaded, the base layer mounted: {report}"
    );
    let (model_manifest, registry_digest) = manifest(&addr, "gridcast/edge", version);
    assert_eq!(digest, registry_digest, "printed digest = the registry's for the model-version tag");

    let layers = layer_digests(&model_manifest);
    assert_eq!(layers.len(), base_layers.len() + 1, "base layers + exactly one new layer: {layers:?}");
    assert_eq!(layers[..base_layers.len()], base_layers[..], "the base layers are the very same blobs");
    let (files, _) = unpack(&blob(&addr, "gridcast/edge", layers.last().unwrap()));
    assert_eq!(files.len(), 1, "{:?}", files.iter().map(|(p, _)| p).collect::<Vec<_>>());
    assert_eq!(files[0].0, "models/current.gcm");
    assert!(files[0].1 == model, "the top layer holds exactly the model's bytes");
    let config = config(&addr, "gridcast/edge", &model_manifest);
    assert_eq!(config["config"]["Labels"]["io.gridcast.model.version"], version);
    assert_eq!(config["config"]["Labels"]["io.gridcast.model.sha256"], sha256.as_str());
    assert_eq!(config["config"]["Entrypoint"], serde_json::json!(["/gridcast"]), "the base's config is kept");
    assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), layers.len());

    // The image runs on the engine: host networking, its own config but for
    // the broker's port, its /health port and a file triplet store (no
    // InfluxDB: the predictor warns and spools).
    let mqtt = Mosquitto::start(dir.path());
    let mqtt_port = mqtt.addr().rsplit(':').next().unwrap().to_owned();
    let http_port = free_port();
    let image = format!("{addr}/gridcast/edge:{version}");
    let container = engine
        .docker_ok(&[
            "run",
            "-d",
            "--network",
            "host",
            "-e",
            &format!("GRIDCAST_HTTP__LISTEN=127.0.0.1:{http_port}"),
            "-e",
            &format!("GRIDCAST_MQTT__PORT={mqtt_port}"),
            "-e",
            "GRIDCAST_UPLOAD__URL=file:///var/lib/gridcast/triplets",
            &image,
        ])
        .trim()
        .to_owned();
    let health = await_health(&engine, &container, http_port, Duration::from_secs(60));
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["model_version"], sha256.as_str(), "the container serves the shipped model: {health}");
}

/// `/health` of the predictor in `container` once it answers 200; panics
/// with the container's log if it exits or `timeout` passes first.
fn await_health(engine: &Dockerd, container: &str, port: u16, timeout: Duration) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = http::request("GET", &format!("http://127.0.0.1:{port}/health"), &[], b"")
            && response.status == 200
        {
            return serde_json::from_slice(&response.body).expect("/health JSON");
        }
        let running = engine.docker_ok(&["inspect", "-f", "{{.State.Running}}", container]);
        let logs = || String::from_utf8_lossy(&engine.docker(&["logs", container]).stderr).into_owned();
        assert_eq!(running.trim(), "true", "the predictor container exited:\n{}", logs());
        assert!(Instant::now() < deadline, "no healthy /health within {timeout:?}:\n{}", logs());
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn credentials_reach_the_engine_and_a_wrong_password_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_user(dir.path(), "shipper", "right-password");
    let addr = registry.addr();
    let engine_dir = dir.path().join("engine");
    std::fs::create_dir(&engine_dir).unwrap();
    let engine = Dockerd::start(&engine_dir);
    let right = [("GRIDCAST_REGISTRY_USERNAME", "shipper"), ("GRIDCAST_REGISTRY_PASSWORD", "right-password")];
    let wrong = [("GRIDCAST_REGISTRY_USERNAME", "shipper"), ("GRIDCAST_REGISTRY_PASSWORD", "wrong")];
    let base = format!("{addr}/gridcast/predictor:base");
    let binary = tiny_elf(dir.path());
    shipped(&ship(&["base", "--binary", &binary, "--image", &base], &right, dir.path()));

    let image = format!("{addr}/gridcast/edge:wrong");
    let stderr = ship_failed(&ship_model_with_engine(&engine.host(), &base, &image, &wrong, dir.path()));
    println!("{stderr}");
    assert!(
        stderr.contains(&format!(
            "registry {addr} refused the credentials (user \"shipper\" from GRIDCAST_REGISTRY_USERNAME)"
        )),
        "{stderr}"
    );
    let stderr = ship_failed(&ship_model_with_engine(&engine.host(), &base, &image, &[], dir.path()));
    println!("{stderr}");
    assert!(stderr.contains("refused the credentials (anonymous)"), "{stderr}");

    // The right password: the engine pulls and pushes with it.
    let (digest, _) = shipped(&ship_model_with_engine(
        &engine.host(),
        &base,
        &format!("{addr}/gridcast/edge:right"),
        &right,
        dir.path(),
    ));
    assert!(digest.starts_with("sha256:"));
}

#[test]
fn a_registry_that_is_down_is_named_and_nothing_is_reported_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let engine_dir = dir.path().join("engine");
    std::fs::create_dir(&engine_dir).unwrap();
    let engine = Dockerd::start(&engine_dir);
    let addr = format!("127.0.0.1:{}", free_port());
    let output = ship_model_with_engine(
        &engine.host(),
        &format!("{addr}/gridcast/predictor:base"),
        &format!("{addr}/gridcast/edge"),
        &[],
        dir.path(),
    );
    let stderr = ship_failed(&output);
    println!("{stderr}");
    assert!(stderr.contains(&format!("cannot reach registry {addr}")), "{stderr}");
}

#[test]
fn no_engine_at_the_address_names_docker_host() {
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("unix://{}/no-such.sock", dir.path().display());
    // A socket file nobody listens on any more: connection refused.
    let stale_path = dir.path().join("stale.sock");
    drop(UnixListener::bind(&stale_path).unwrap());
    let stale = format!("unix://{}", stale_path.display());
    let base = "127.0.0.1:5000/gridcast/predictor:base";
    let image = "127.0.0.1:5000/gridcast/edge";

    for host in [&missing, &stale] {
        let stderr = ship_failed(&ship_model_with_engine(host, base, image, &[], dir.path()));
        println!("{stderr}");
        assert!(
            stderr.contains(&format!("cannot reach the Docker engine at {host} (from --docker-host)"))
                && stderr.contains("is dockerd running?")
                && stderr.contains("DOCKER_HOST"),
            "{stderr}"
        );
    }
    // From DOCKER_HOST, without the flag.
    let model = shipped_model();
    let args = ["model", "--engine", "--model", model.to_str().unwrap(), "--base", base, "--image", image];
    let stderr = ship_failed(&ship(&args, &[("DOCKER_HOST", &missing)], dir.path()));
    println!("{stderr}");
    assert!(stderr.contains(&format!("cannot reach the Docker engine at {missing} (from DOCKER_HOST)")), "{stderr}");
}

#[test]
fn a_corrupt_model_is_refused_before_the_engine_is_asked() {
    let dir = tempfile::tempdir().unwrap();
    let mut model = std::fs::read(shipped_model()).unwrap();
    let last = model.len() - 1;
    model[last] ^= 0x55;
    let corrupt = dir.path().join("corrupt.gcm");
    std::fs::write(&corrupt, &model).unwrap();
    // No engine there: had it been asked, the error would say so.
    let host = format!("unix://{}/no-such.sock", dir.path().display());
    let args = [
        "model",
        "--engine",
        "--docker-host",
        &host,
        "--model",
        corrupt.to_str().unwrap(),
        "--base",
        "127.0.0.1:5000/gridcast/predictor:base",
        "--image",
        "127.0.0.1:5000/gridcast/edge",
    ];
    let stderr = ship_failed(&ship(&args, &[], dir.path()));
    println!("{stderr}");
    assert!(stderr.contains("refusing to ship") && stderr.contains("corrupt.gcm"), "{stderr}");
}
