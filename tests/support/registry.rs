//! A private container registry (Debian's `docker-registry`, the CNCF
//! Distribution server) for the `gridcast ship` tests: its storage under the
//! test's directory, on a free loopback port, plain HTTP, optionally with
//! htpasswd (bcrypt) basic auth; killed when dropped.
//!
//! Plus a small reader of the registry HTTP API (`/v2/...`) that also returns
//! response headers: the tests compare `Docker-Content-Digest` with what
//! `gridcast ship` printed.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use super::process::{Launch, ServerProcess, find_binary, fresh_log};

/// What `Accept` a manifest GET sends: both kinds `gridcast ship` may push.
pub const MANIFEST_ACCEPT: &str =
    "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

pub struct Registry {
    process: ServerProcess,
}

impl Registry {
    /// An open registry: anyone may pull and push.
    pub fn start(dir: impl AsRef<Path>) -> Self {
        Self::launch(dir.as_ref(), None)
    }

    /// A registry that asks for basic auth and knows one user.
    pub fn start_with_user(dir: impl AsRef<Path>, user: &str, password: &str) -> Self {
        Self::launch(dir.as_ref(), Some((user, password)))
    }

    fn launch(dir: &Path, user: Option<(&str, &str)>) -> Self {
        let storage = dir.join("registry-storage");
        fs::create_dir_all(&storage).unwrap_or_else(|e| panic!("create {}: {e}", storage.display()));
        let auth = match user {
            None => String::new(),
            Some((user, password)) => {
                let htpasswd = dir.join("htpasswd");
                // Distribution reads bcrypt only; $2a$ is the variant every
                // bcrypt implementation reads.
                let hash = bcrypt::hash_with_result(password, 4)
                    .expect("bcrypt a test password")
                    .format_for_version(bcrypt::Version::TwoA);
                fs::write(&htpasswd, format!("{user}:{hash}\n")).expect("write htpasswd");
                format!("auth:\n  htpasswd:\n    realm: gridcast-test\n    path: {}\n", htpasswd.display())
            }
        };
        let config = dir.join("registry.yml");
        let program = find_binary("docker-registry", "/usr/bin/docker-registry");
        let log = fresh_log(&dir.join("registry.log"));
        let process = ServerProcess::start("docker-registry", log, registry_answers, |port| {
            let yaml = format!(
                "version: 0.1\n\
                 log:\n  level: info\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n  secret: gridcast-test-secret\n\
                 {auth}",
                storage.display()
            );
            fs::write(&config, yaml).unwrap_or_else(|e| panic!("write {}: {e}", config.display()));
            Launch { program: program.clone(), args: vec!["serve".into(), config.clone().into()], env_remove: vec![] }
        });
        Registry { process }
    }

    /// `127.0.0.1:PORT`, as an image reference starts.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.process.port())
    }

    /// SIGTERM, and wait until it is gone (a registry outage).
    pub fn stop(&mut self) {
        self.process.stop();
    }

    /// Start it again on the same port and storage.
    pub fn restart(&mut self) {
        self.process.restart();
    }
}

/// `GET /v2/` answers 200 (open) or 401 (auth required) once it serves.
fn registry_answers(port: u16) -> bool {
    fetch("GET", &format!("127.0.0.1:{port}"), "/v2/", &[]).is_ok_and(|r| r.status == 200 || r.status == 401)
}

/// A registry API response.
#[derive(Debug)]
pub struct ApiResponse {
    pub status: u16,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl ApiResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// `method http://addr/path` with `headers`, one request per connection. The
/// registry sends manifests and filesystem blobs with a Content-Length (no
/// chunking, no redirect), which is all this reads.
pub fn fetch(method: &str, addr: &str, path: &str, headers: &[(&str, &str)]) -> std::io::Result<ApiResponse> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    let bad = || std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{method} {path}: malformed response"));
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().and_then(|l| l.split(' ').nth(1)).and_then(|s| s.parse().ok()).ok_or_else(bad)?;
    let headers: BTreeMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    assert!(
        headers.get("transfer-encoding").is_none_or(|t| !t.contains("chunked")),
        "{method} {path}: chunked responses are not read here"
    );
    Ok(ApiResponse { status, headers, body: raw[split + 4..].to_vec() })
}

/// GET on the registry API, panicking unless it answers 200.
pub fn get_ok(addr: &str, path: &str, headers: &[(&str, &str)]) -> ApiResponse {
    let response = fetch("GET", addr, path, headers).unwrap_or_else(|e| panic!("GET {path} on {addr}: {e}"));
    assert_eq!(response.status, 200, "GET {path}: {}", String::from_utf8_lossy(&response.body));
    response
}
