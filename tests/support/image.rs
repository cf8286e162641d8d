//! Images for the `gridcast ship` tests: the statically linked `gridcast`
//! binary that goes into one (the binary cargo builds for the test run is
//! linked dynamically and would not start in a FROM scratch image), running
//! `gridcast ship`, and reading what it pushed back from the registry
//! (manifests, configs, layers' files).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::registry::{MANIFEST_ACCEPT, get_ok};

/// What builds the static binary (scripts/build-image and scripts/test run it).
pub const BUILD_COMMAND: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked \
     --no-default-features --target x86_64-unknown-linux-gnu --bin gridcast";

/// `GRIDCAST_IMAGE_BINARY`, else `<target dir>/x86_64-unknown-linux-gnu/release/gridcast`
/// (the target dir from `CARGO_TARGET_DIR`, else `target/` in the repository). Panics,
/// naming the command that builds it, when it is not there.
pub fn static_gridcast() -> PathBuf {
    if let Some(path) = std::env::var_os("GRIDCAST_IMAGE_BINARY").filter(|p| !p.is_empty()) {
        let path = PathBuf::from(path);
        assert!(path.is_file(), "GRIDCAST_IMAGE_BINARY={} is not a file", path.display());
        return path;
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"), PathBuf::from);
    let path = target_dir.join("x86_64-unknown-linux-gnu/release/gridcast");
    assert!(
        path.is_file(),
        "no static gridcast binary at {} (or GRIDCAST_IMAGE_BINARY): build it with `{BUILD_COMMAND}` \
         (scripts/test and scripts/build-image do)",
        path.display()
    );
    path
}

/// Runs `gridcast ship ARGS` (this build's binary) with `env` set, no
/// registry credentials or DOCKER_HOST inherited, and `docker_config` as the
/// Docker config folder.
pub fn ship(args: &[&str], env: &[(&str, &str)], docker_config: &Path) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridcast"));
    command
        .arg("ship")
        .args(args)
        .env_remove("GRIDCAST_REGISTRY_USERNAME")
        .env_remove("GRIDCAST_REGISTRY_PASSWORD")
        .env_remove("DOCKER_HOST")
        .env("DOCKER_CONFIG", docker_config);
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("run gridcast ship")
}

/// The digest printed on stdout and the report line on stderr, asserting success.
pub fn shipped(output: &Output) -> (String, String) {
    let stdout = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "gridcast ship failed: {stderr}");
    assert!(stdout.starts_with("sha256:") && stdout.len() == 71, "stdout is the digest alone: {stdout:?}");
    (stdout, stderr)
}

/// stderr of a `gridcast ship` that must fail with exit code 1, having
/// printed no digest and one line on stderr.
pub fn ship_failed(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(1), "gridcast ship should fail: {stderr}");
    assert!(output.stdout.is_empty(), "no digest printed: {}", String::from_utf8_lossy(&output.stdout));
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    stderr
}

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The manifest under `reference` (tag or digest), its body checked against
/// the `Docker-Content-Digest` the registry sends, which is returned.
pub fn manifest(addr: &str, repository: &str, reference: &str) -> (Value, String) {
    let response = get_ok(addr, &format!("/v2/{repository}/manifests/{reference}"), &[("Accept", MANIFEST_ACCEPT)]);
    let digest = response.header("Docker-Content-Digest").expect("Docker-Content-Digest header").to_owned();
    assert_eq!(sha256(&response.body), digest, "the registry's digest is of the manifest bytes");
    (serde_json::from_slice(&response.body).expect("manifest JSON"), digest)
}

/// A blob of `repository`, checked against its digest.
pub fn blob(addr: &str, repository: &str, digest: &str) -> Vec<u8> {
    let body = get_ok(addr, &format!("/v2/{repository}/blobs/{digest}"), &[]).body;
    assert_eq!(sha256(&body), digest, "blob {digest} has that digest");
    body
}

/// The image config a manifest names, as JSON.
pub fn config(addr: &str, repository: &str, manifest: &Value) -> Value {
    let digest = manifest["config"]["digest"].as_str().expect("a config digest");
    serde_json::from_slice(&blob(addr, repository, digest)).expect("config JSON")
}

/// A gzipped layer's files: path -> contents (directories left out), and the
/// digest of the uncompressed tar.
pub fn unpack(layer: &[u8]) -> (Vec<(String, Vec<u8>)>, String) {
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(layer).read_to_end(&mut tar).expect("a gzip layer");
    let mut files = Vec::new();
    for entry in tar::Archive::new(tar.as_slice()).entries().expect("a tar layer") {
        let mut entry = entry.expect("a tar entry");
        if entry.header().entry_type().is_dir() {
            continue;
        }
        let path = entry.path().expect("an entry path").to_string_lossy().into_owned();
        let mut contents = Vec::new();
        entry.read_to_end(&mut contents).expect("read a tar entry");
        files.push((path, contents));
    }
    (files, sha256(&tar))
}

/// The layer digests a manifest lists, in order.
pub fn layer_digests(manifest: &Value) -> Vec<String> {
    manifest["layers"].as_array().expect("layers").iter().map(|l| l["digest"].as_str().unwrap().to_owned()).collect()
}

/// A file the base image builder takes for a Linux x86-64 program: tests
/// that need a base image in a registry, not one that runs.
pub fn tiny_elf(dir: &Path) -> String {
    let mut elf = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\x3e\0".to_vec();
    elf.resize(64, 0);
    let path = dir.join("tiny-elf");
    std::fs::write(&path, elf).unwrap();
    path.to_str().unwrap().to_owned()
}
