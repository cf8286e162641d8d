//! `gridcast ship`, daemonless, against a real registry (Debian's
//! `docker-registry`, started by each test on a free port): the base image
//! from this build's own binary, a model as one layer on top, and what the
//! registry then holds, read back through its HTTP API.

mod support;

use serde_json::Value;
use support::gridcast::shipped_model;
use support::image::{blob, config, layer_digests as digests, manifest, ship, shipped, tiny_elf, unpack};
use support::registry::{Registry, fetch, get_ok};

const GRIDCAST: &str = env!("CARGO_BIN_EXE_gridcast");

fn catalog(addr: &str) -> Vec<String> {
    let body: Value = serde_json::from_slice(&get_ok(addr, "/v2/_catalog", &[]).body).expect("catalog JSON");
    body["repositories"].as_array().map_or(vec![], |r| r.iter().map(|v| v.as_str().unwrap().to_owned()).collect())
}

#[test]
fn a_model_ships_as_one_new_layer_on_the_reused_base_image() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let addr = registry.addr();
    let base_image = format!("{addr}/gridcast/predictor:base");

    // The base image, from this build's own binary.
    let (base_digest, report) =
        shipped(&ship(&["base", "--binary", GRIDCAST, "--image", &base_image], &[], dir.path()));
    assert!(report.contains("uploaded 1 layer(s)") && report.contains("reused 0 layer(s)"), "{report}");
    let (base_manifest, registry_digest) = manifest(&addr, "gridcast/predictor", "base");
    assert_eq!(base_digest, registry_digest, "printed digest = the registry's for the tag");
    let base_layers = digests(&base_manifest);
    assert_eq!(base_layers.len(), 1);
    let base_layer = blob(&addr, "gridcast/predictor", &base_layers[0]);
    let (files, base_diff_id) = unpack(&base_layer);
    let binary = std::fs::read(GRIDCAST).unwrap();
    let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(paths, ["etc/gridcast/predict.toml", "etc/ssl/certs/ca-certificates.crt", "gridcast"]);
    assert!(files[2].1 == binary, "the base layer holds this build's gridcast binary at /gridcast");
    let base_config = config(&addr, "gridcast/predictor", &base_manifest);
    assert_eq!(base_config["config"]["Entrypoint"], serde_json::json!(["/gridcast"]));
    assert_eq!(base_config["config"]["Cmd"], serde_json::json!(["predict", "--config", "/etc/gridcast/predict.toml"]));
    assert_eq!(base_config["architecture"], "amd64");
    println!("base layer: {} bytes compressed, binary {} bytes", base_layer.len(), binary.len());

    // The same binary again: the same image, nothing sent (deterministic layer).
    let (again, report) = shipped(&ship(&["base", "--binary", GRIDCAST, "--image", &base_image], &[], dir.path()));
    assert_eq!(again, base_digest, "the base image is built deterministically");
    assert!(report.contains("uploaded 0 layer(s)") && report.contains("config reused"), "{report}");

    // The model on top, into another repository of the registry (the base
    // layer is mounted) and tagged by default with the model version.
    let model_path = shipped_model();
    let model = std::fs::read(&model_path).unwrap();
    let version = support::gridcast::model_version(&model)[..12].to_owned();
    let (model_digest, report) = shipped(&ship(
        &[
            "model",
            "--model",
            model_path.to_str().unwrap(),
            "--base",
            &base_image,
            "--image",
            &format!("{addr}/gridcast/edge"),
        ],
        &[],
        dir.path(),
    ));
    assert!(
        report.contains("uploaded 1 layer(s)") && report.contains("reused 1 layer(s)"),
        "only the model layer is uploaded: {report}"
    );
    let (model_manifest, registry_digest) = manifest(&addr, "gridcast/edge", &version);
    assert_eq!(model_digest, registry_digest, "printed digest = the registry's for the model-version tag");
    let layers = digests(&model_manifest);
    assert_eq!(layers.len(), base_layers.len() + 1, "base layers + exactly one new layer");
    assert_eq!(layers[..base_layers.len()], base_layers[..], "the base layers are the very same blobs");

    let config = config(&addr, "gridcast/edge", &model_manifest);
    let diff_ids = config["rootfs"]["diff_ids"].as_array().unwrap();
    assert_eq!(diff_ids.len(), layers.len(), "one diff_id per layer");
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        // The base layer was unpacked above (the same blob, by its digest).
        let uncompressed = if *layer == base_layers[0] {
            base_diff_id.clone()
        } else {
            unpack(&blob(&addr, "gridcast/edge", layer)).1
        };
        assert_eq!(diff_id.as_str().unwrap(), uncompressed, "diff_id of {layer} = sha256 of its tar");
    }
    let model_layer = blob(&addr, "gridcast/edge", layers.last().unwrap());
    let (files, _) = unpack(&model_layer);
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "models/current.gcm");
    assert!(files[0].1 == model, "the model layer holds exactly the model's bytes");
    assert_eq!(config["config"]["Labels"]["io.gridcast.model.version"], version.as_str());
    assert_eq!(config["config"]["Entrypoint"], base_config["config"]["Entrypoint"], "the base's config is kept");
    assert_eq!(config["history"].as_array().unwrap().len(), 2);
    println!("model layer: {} bytes compressed, model {} bytes", model_layer.len(), model.len());

    // Into the base's own repository with an explicit tag: the same image.
    let (same_repo, report) = shipped(&ship(
        &[
            "model",
            "--model",
            model_path.to_str().unwrap(),
            "--base",
            &base_image,
            "--image",
            &format!("{addr}/gridcast/predictor:current"),
        ],
        &[],
        dir.path(),
    ));
    assert!(report.contains("uploaded 1 layer(s)") && report.contains("reused 1 layer(s)"), "{report}");
    assert_eq!(same_repo, model_digest, "the model image is the same whichever repository holds it");
    assert_eq!(manifest(&addr, "gridcast/predictor", "current").1, model_digest);
}

#[test]
fn a_corrupt_model_is_refused_and_nothing_is_pushed() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let addr = registry.addr();
    let mut model = std::fs::read(shipped_model()).unwrap();
    let last = model.len() - 1;
    model[last] ^= 0x55;
    let corrupt = dir.path().join("corrupt.gcm");
    std::fs::write(&corrupt, &model).unwrap();

    let output = ship(
        &[
            "model",
            "--model",
            corrupt.to_str().unwrap(),
            "--base",
            &format!("{addr}/gridcast/predictor:base"),
            "--image",
            &format!("{addr}/gridcast/edge:bad"),
        ],
        &[],
        dir.path(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(output.stdout.is_empty(), "no digest printed");
    assert!(
        stderr.contains("refusing to ship") && stderr.contains("corrupt.gcm") && stderr.contains("nothing was pushed"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(catalog(&addr).is_empty(), "no repository was created: {:?}", catalog(&addr));
}

#[test]
fn credentials_come_from_env_or_docker_config_and_a_wrong_password_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start_with_user(dir.path(), "shipper", "right-password");
    let addr = registry.addr();
    let binary = tiny_elf(dir.path());
    let image = format!("{addr}/gridcast/predictor:base");
    let base = ["base", "--binary", binary.as_str(), "--image", image.as_str()];

    let wrong =
        ship(&base, &[("GRIDCAST_REGISTRY_USERNAME", "shipper"), ("GRIDCAST_REGISTRY_PASSWORD", "wrong")], dir.path());
    let stderr = String::from_utf8_lossy(&wrong.stderr);
    assert_eq!(wrong.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "registry {addr} refused the credentials (user \"shipper\" from GRIDCAST_REGISTRY_USERNAME)"
        )),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");

    let anonymous = ship(&base, &[], dir.path());
    let stderr = String::from_utf8_lossy(&anonymous.stderr);
    assert!(!anonymous.status.success() && stderr.contains("refused the credentials (anonymous)"), "{stderr}");

    let (digest, _) = shipped(&ship(
        &base,
        &[("GRIDCAST_REGISTRY_USERNAME", "shipper"), ("GRIDCAST_REGISTRY_PASSWORD", "right-password")],
        dir.path(),
    ));

    // `docker login` writes auths.<registry>.auth = base64(user:password).
    let docker_config = dir.path().join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    let auth = base64_encode(b"shipper:right-password");
    std::fs::write(docker_config.join("config.json"), format!(r#"{{"auths":{{"{addr}":{{"auth":"{auth}"}}}}}}"#))
        .unwrap();
    let (again, report) = shipped(&ship(&base, &[], &docker_config));
    assert_eq!(again, digest);
    assert!(report.contains("reused 1 layer(s)"), "{report}");
}

#[test]
fn an_unreachable_registry_is_named_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let binary = tiny_elf(dir.path());
    let addr = format!("127.0.0.1:{}", support::free_port());
    let output =
        ship(&["base", "--binary", &binary, "--image", &format!("{addr}/gridcast/predictor:base")], &[], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("cannot reach registry {addr}")), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    // And nothing answered there: the check above did not race a server.
    assert!(fetch("GET", &addr, "/v2/", &[]).is_err());
}

/// Standard base64 with padding, as `docker login` writes it.
fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
