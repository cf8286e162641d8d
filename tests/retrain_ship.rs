//! `gridcast retrain` with `[ship]`: a model that is published is pushed as
//! a predictor image too, to the tag the edge agent follows. Against a real
//! registry (Debian's `docker-registry`, started by each test): what it then
//! holds under that tag, a registry that is down (exit 4, the model stays
//! published), and a champion that is kept (exit 3, nothing pushed).

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::gridcast::{model_version, shipped_model, weak_champion};
use support::image::{blob, config, layer_digests, manifest, ship, shipped, tiny_elf, unpack};
use support::meter::sample_csv;
use support::registry::{MANIFEST_ACCEPT, Registry, fetch};

/// A private registry (its storage and the test's files in `dir`) holding
/// the base image every test ships on: a tiny ELF, enough for a base in the
/// registry (it never runs here).
struct Setup {
    registry: Registry,
    addr: String,
    base: String,
    dir: tempfile::TempDir,
}

fn registry_with_base() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let registry = Registry::start(dir.path());
    let addr = registry.addr();
    let base = format!("{addr}/gridcast/predictor:base");
    shipped(&ship(&["base", "--binary", &tiny_elf(dir.path()), "--image", &base], &[], dir.path()));
    Setup { registry, addr, base, dir }
}

/// `gridcast retrain --config` on the sample, its champion `champion`, its
/// store `dir/store`, `[ship]` from `base` to `addr`'s `:stable`; no
/// registry credentials or engine inherited.
fn retrain(dir: &Path, champion: &Path, base: &str, addr: &str) -> Output {
    let config = dir.join("retrain.toml");
    std::fs::write(
        &config,
        format!(
            "[history]\ncsv = \"{}\"\n[champion]\nmodel = \"{}\"\n\
             [train]\ntrees = 40\nlearning_rate = 0.1\nthreads = 2\n\
             [publish]\nstore = \"{}\"\n\
             [ship]\nbase = \"{base}\"\nimage = \"{addr}/gridcast/predictor:stable\"\n",
            sample_csv().display(),
            champion.display(),
            dir.join("store").display(),
        ),
    )
    .unwrap();
    Command::new(env!("CARGO_BIN_EXE_gridcast"))
        .args(["retrain", "--config"])
        .arg(&config)
        .env_remove("GRIDCAST_REGISTRY_USERNAME")
        .env_remove("GRIDCAST_REGISTRY_PASSWORD")
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONFIG", dir)
        .output()
        .unwrap()
}

fn text(output: &Output) -> (String, String) {
    (String::from_utf8_lossy(&output.stdout).into_owned(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The `sha256:...` after `{image}@` on the line of `text` that starts with `prefix`.
fn digest_after(text: &str, prefix: &str, image: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with(prefix))?;
    let rest = &line[line.find(&format!("{image}@"))? + image.len() + 1..];
    Some(rest.chars().take(71).collect())
}

#[test]
fn a_shipping_retrain_pushes_the_published_bytes_to_the_stable_tag() {
    let Setup { registry: _registry, addr, base, dir } = registry_with_base();
    let champion = dir.path().join("store/models/current.gcm");
    let old = weak_champion(&champion);

    let output = retrain(dir.path(), &champion, &base, &addr);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(0), "{stdout}\n{stderr}");
    let published = std::fs::read(&champion).unwrap();
    assert_ne!(published, old, "the challenger was published over the weak champion");
    let version = model_version(&published);

    let (stable, registry_digest) = manifest(&addr, "gridcast/predictor", "stable");
    let image = format!("{addr}/gridcast/predictor:stable");
    assert_eq!(digest_after(&stdout, "shipped ", &image).as_ref(), Some(&registry_digest), "summary: {stdout}");
    assert_eq!(digest_after(&stderr, "retrain: pushed ", &image).as_ref(), Some(&registry_digest), "log: {stderr}");

    let layers = layer_digests(&stable);
    assert_eq!(layers.len(), 2, "the base's one layer and the model's");
    assert_eq!(layers[0], layer_digests(&manifest(&addr, "gridcast/predictor", "base").0)[0], "the base layer reused");
    let (files, _) = unpack(&blob(&addr, "gridcast/predictor", &layers[1]));
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].0, "models/current.gcm");
    assert!(files[0].1 == published, "the top layer holds exactly the published current.gcm");
    let labels = &config(&addr, "gridcast/predictor", &stable)["config"]["Labels"];
    assert_eq!(labels["io.gridcast.model.version"], version[..12], "{labels}");
    assert_eq!(labels["io.gridcast.model.sha256"], version.as_str(), "{labels}");
}

#[test]
fn a_registry_that_is_down_exits_4_naming_it_and_the_model_stays_published() {
    let Setup { mut registry, addr, base, dir } = registry_with_base();
    registry.stop();
    let champion = dir.path().join("store/models/current.gcm");
    let old = weak_champion(&champion);

    let output = retrain(dir.path(), &champion, &base, &addr);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(4), "{stdout}\n{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("gridcast: ")).unwrap_or_else(|| panic!("no error: {stderr}"));
    assert!(
        line.contains("did not ship") && line.contains(&format!("cannot reach registry {addr}")),
        "the error names the registry: {line}"
    );
    assert!(stdout.contains("published ") && stdout.contains("not shipped"), "{stdout}");

    let published = std::fs::read(&champion).unwrap();
    assert_ne!(published, old, "current.gcm is the new model");
    let versioned = champion.with_file_name(format!("{}.gcm", model_version(&published)));
    assert_eq!(std::fs::read(&versioned).unwrap(), published, "and its version is published beside it");
}

#[test]
fn a_kept_champion_exits_3_and_pushes_nothing() {
    let Setup { registry: _registry, addr, base, dir } = registry_with_base();

    // The shipped model has seen the sample's holdout: a 40-tree challenger
    // does not beat it.
    let output = retrain(dir.path(), &shipped_model(), &base, &addr);
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stdout.contains("verdict: keep the champion"), "{stdout}");
    assert!(!stderr.contains("shipping"), "{stderr}");
    let stable =
        fetch("GET", &addr, "/v2/gridcast/predictor/manifests/stable", &[("Accept", MANIFEST_ACCEPT)]).unwrap();
    assert_eq!(stable.status, 404, "no :stable tag");
}
