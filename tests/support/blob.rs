//! Blob stores for the predictor tests: the shared moto (S3) and Azurite
//! from `scripts/test-servers` (`GRIDCAST_TEST_S3`, `GRIDCAST_TEST_AZURITE`,
//! bucket/container `gridcast-test`), a private moto a test starts late (a
//! store that is down for the first part of a run), and reading every
//! object under a prefix back through object_store.

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::{ObjectStore, ObjectStoreExt};

/// The bucket (S3) and container (Azurite) the test servers create.
pub const BUCKET: &str = "gridcast-test";
/// Azurite's well-known development account and key.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// Which store, and how the predictor reaches it.
#[derive(Debug, Clone)]
pub enum Blob {
    S3 { endpoint: String },
    Azurite { endpoint: String },
}

impl Blob {
    pub fn shared_s3() -> Blob {
        Blob::S3 { endpoint: super::required_env("GRIDCAST_TEST_S3") }
    }

    pub fn shared_azurite() -> Blob {
        Blob::Azurite { endpoint: super::required_env("GRIDCAST_TEST_AZURITE") }
    }

    /// The `[upload]` keys (url and options) of a predictor config.
    pub fn upload_toml(&self) -> String {
        match self {
            Blob::S3 { endpoint } => format!(
                "url = \"s3://{BUCKET}\"\n[upload.options]\naws_endpoint = \"{endpoint}\"\naws_allow_http = \"true\"\n\
                 aws_access_key_id = \"test\"\naws_secret_access_key = \"test\"\naws_region = \"us-east-1\"\n"
            ),
            Blob::Azurite { endpoint } => format!(
                "url = \"az://{BUCKET}\"\n[upload.options]\nazure_storage_endpoint = \"{endpoint}/{AZURITE_ACCOUNT}\"\n\
                 azure_allow_http = \"true\"\nazure_storage_account_name = \"{AZURITE_ACCOUNT}\"\n\
                 azure_storage_account_key = \"{AZURITE_KEY}\"\n"
            ),
        }
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        match self {
            Blob::S3 { endpoint } => Arc::new(
                AmazonS3Builder::new()
                    .with_endpoint(endpoint)
                    .with_allow_http(true)
                    .with_bucket_name(BUCKET)
                    .with_access_key_id("test")
                    .with_secret_access_key("test")
                    .with_region("us-east-1")
                    .build()
                    .expect("S3 client"),
            ),
            Blob::Azurite { endpoint } => Arc::new(
                MicrosoftAzureBuilder::new()
                    .with_endpoint(format!("{endpoint}/{AZURITE_ACCOUNT}"))
                    .with_allow_http(true)
                    .with_account(AZURITE_ACCOUNT)
                    .with_access_key(AZURITE_KEY)
                    .with_container_name(BUCKET)
                    .build()
                    .expect("Azure client"),
            ),
        }
    }

    /// Store `bytes` under `key`.
    pub fn put(&self, key: &str, bytes: &[u8]) {
        let store = self.store();
        let path = object_store::path::Path::from(key);
        let payload = object_store::PutPayload::from(bytes.to_vec());
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(store.put(&path, payload)).unwrap_or_else(|e| panic!("put {key}: {e}"));
    }

    /// Every object under `prefix`: (key, bytes), in key order.
    pub fn objects(&self, prefix: &str) -> Vec<(String, Vec<u8>)> {
        let store = self.store();
        let prefix = object_store::path::Path::from(prefix);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let metas: Vec<_> = store.list(Some(&prefix)).try_collect().await.expect("list objects");
            let mut out = Vec::new();
            for m in metas {
                let bytes = store.get(&m.location).await.expect("get object").bytes().await.expect("read object");
                out.push((m.location.to_string(), bytes.to_vec()));
            }
            out.sort();
            out
        })
    }
}

/// A private moto S3 server on a port chosen before it starts, so a
/// predictor can be pointed at it while it is still down.
pub struct LateMoto {
    pub port: u16,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl LateMoto {
    pub fn new(dir: &Path) -> LateMoto {
        LateMoto { port: super::free_port(), log: dir.join("moto.log"), child: None }
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Start it now, wait until it answers, and create the bucket.
    pub fn start(&mut self) {
        let log = std::fs::File::create(&self.log).expect("moto log");
        // The Python that has moto (scripts/moto-python), as test-servers found it.
        let python = super::required_env("GRIDCAST_TEST_MOTO_PYTHON");
        let child = Command::new(python)
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start moto (scripts/install-deps installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "moto did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(50));
        }
        let url = format!("{}/{BUCKET}", self.endpoint());
        let r = super::http::request("PUT", &url, &[], b"").expect("create bucket");
        assert!(r.status < 300, "moto: create bucket: {}", r.text());
    }
}

impl Drop for LateMoto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
