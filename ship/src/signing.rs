//! Model signing keys on disk and in the environment, and `gridcast model
//! keygen|sign|verify`: the user's side of signed models (core's
//! `model::signature` does the cryptography, without I/O).
//!
//! A private key is 64 hex digits in a file of mode 0600 (`keygen` writes
//! one), or in `GRIDCAST_SIGNING_KEY`; its path may come from
//! `--signing-key-file` or `GRIDCAST_SIGNING_KEY_FILE` (a Kubernetes Secret
//! mounted as a file, a systemd credential). It is never printed: errors
//! name the file or variable, never the text. A public key is 64 hex digits
//! too: what a predictor's `[predict] trusted_keys` lists.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use gridcast_core::model::Model;
use gridcast_core::model::signature::{self, PublicKey, SigningKey};

/// The variable holding a private key itself (hex).
pub const ENV_SIGNING_KEY: &str = "GRIDCAST_SIGNING_KEY";
/// The variable naming a private key file.
pub const ENV_SIGNING_KEY_FILE: &str = "GRIDCAST_SIGNING_KEY_FILE";
/// What `keygen` names the two files in its folder.
pub const PRIVATE_KEY_FILE: &str = "signing.key";
pub const PUBLIC_KEY_FILE: &str = "signing.pub";

/// The private key in `file`.
pub fn read_signing_key(file: &Path) -> anyhow::Result<SigningKey> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading the signing key file {}", file.display()))?;
    SigningKey::from_hex(&text).with_context(|| format!("the signing key file {}", file.display()))
}

/// The signing key, if one is given: `file`, else the file
/// `GRIDCAST_SIGNING_KEY_FILE` names, else `GRIDCAST_SIGNING_KEY`'s value.
/// `None` when none is: models are then shipped unsigned.
pub fn signing_key(file: Option<&Path>) -> anyhow::Result<Option<SigningKey>> {
    let from_env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
    if let Some(file) = file.map(Path::to_path_buf).or_else(|| from_env(ENV_SIGNING_KEY_FILE).map(PathBuf::from)) {
        return read_signing_key(&file).map(Some);
    }
    match from_env(ENV_SIGNING_KEY) {
        Some(value) => {
            let text = value.into_string().map_err(|_| anyhow::anyhow!("{ENV_SIGNING_KEY} is not UTF-8"))?;
            SigningKey::from_hex(&text).map(Some).with_context(|| format!("the signing key in {ENV_SIGNING_KEY}"))
        }
        None => Ok(None),
    }
}

/// A new key pair in `dir`: `signing.key` (mode 0600, created only if
/// absent: a key is never overwritten) and `signing.pub`.
pub fn keygen(dir: &Path) -> anyhow::Result<(PathBuf, PathBuf, PublicKey)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("the OS random source failed: {e}"))?;
    let key = SigningKey::from_seed(&seed);
    seed.fill(0);
    let private = dir.join(PRIVATE_KEY_FILE);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&private).with_context(|| {
        format!("creating {} (an existing key is never overwritten: remove it first)", private.display())
    })?;
    file.write_all(format!("{}\n", key.expose_hex()).as_bytes())
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", private.display()))?;
    let public = dir.join(PUBLIC_KEY_FILE);
    std::fs::write(&public, format!("{}\n", key.public_key()))
        .with_context(|| format!("writing {}", public.display()))?;
    Ok((private, public, key.public_key()))
}

/// Public keys from a file: one a line (64 hex digits), `#` comments and
/// blank lines ignored.
pub fn read_public_keys(file: &Path) -> anyhow::Result<Vec<PublicKey>> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    signature::parse_public_keys(&text).with_context(|| format!("in {}", file.display()))
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    #[command(subcommand)]
    pub command: ModelCommand,
}

#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// Make a signing key pair: DIR/signing.key (private, mode 0600) and DIR/signing.pub.
    Keygen(KeygenArgs),
    /// Sign a model file in place (or to --out) with a private key.
    Sign(SignArgs),
    /// Check that a model file is signed by one of the given public keys.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The folder to write signing.key and signing.pub to.
    #[arg(long)]
    pub out: PathBuf,
}

#[derive(Debug, Args)]
pub struct SignArgs {
    /// The private key file [else GRIDCAST_SIGNING_KEY_FILE, else the key in GRIDCAST_SIGNING_KEY].
    #[arg(long, alias = "signing-key-file")]
    pub key_file: Option<PathBuf>,
    /// Where to write the signed model [default: over MODEL].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// The model file (.gcm).
    pub model: PathBuf,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A trusted public key (64 hex digits); may be repeated.
    #[arg(long = "key")]
    pub keys: Vec<String>,
    /// A file of trusted public keys, one a line.
    #[arg(long)]
    pub keys_file: Option<PathBuf>,
    /// The model file (.gcm).
    pub model: PathBuf,
}

pub fn run(args: ModelArgs) -> anyhow::Result<()> {
    match args.command {
        ModelCommand::Keygen(args) => {
            let (private, public, key) = keygen(&args.out)?;
            eprintln!("wrote {} (private: keep it secret) and {}", private.display(), public.display());
            println!("{key}");
        }
        ModelCommand::Sign(args) => {
            let key = signing_key(args.key_file.as_deref())?.ok_or_else(|| {
                anyhow::anyhow!("no signing key: give --key-file, or set {ENV_SIGNING_KEY_FILE} or {ENV_SIGNING_KEY}")
            })?;
            let bytes = std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
            let signed =
                signature::sign(&bytes, &key).with_context(|| format!("refusing to sign {}", args.model.display()))?;
            let out = args.out.unwrap_or_else(|| args.model.clone());
            write_replacing(&out, &signed)?;
            let version = Model::from_bytes(&signed)?.payload_sha256();
            eprintln!(
                "signed {} (version {}) with key {} as {}",
                args.model.display(),
                &version[..12],
                key.public_key(),
                out.display()
            );
        }
        ModelCommand::Verify(args) => {
            let mut keys = args.keys.iter().map(|k| k.parse::<PublicKey>()).collect::<Result<Vec<_>, _>>()?;
            if let Some(file) = &args.keys_file {
                keys.extend(read_public_keys(file)?);
            }
            anyhow::ensure!(!keys.is_empty(), "no trusted key: give --key or --keys-file");
            let bytes = std::fs::read(&args.model).with_context(|| format!("reading {}", args.model.display()))?;
            let key = signature::verify(&bytes, &keys).with_context(|| format!("{} refused", args.model.display()))?;
            println!("{}: signed by {key}", args.model.display());
        }
    }
    Ok(())
}

/// `bytes` to `path` through a temp file beside it and a rename, so a
/// predictor polling `path` never reads half a model.
fn write_replacing(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
    let staged = dir.join(format!(".{name}.signing-{}.tmp", std::process::id()));
    std::fs::write(&staged, bytes).with_context(|| format!("writing {}", staged.display()))?;
    std::fs::rename(&staged, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keygen_writes_a_private_key_only_its_owner_reads_and_never_overwrites_it() {
        let dir = tempfile::tempdir().unwrap();
        let (private, public, key) = keygen(dir.path()).unwrap();
        let back = read_signing_key(&private).unwrap();
        assert_eq!(back.public_key(), key);
        assert_eq!(read_public_keys(&public).unwrap(), vec![key]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&private).unwrap().permissions().mode() & 0o777, 0o600);
        }
        let e = keygen(dir.path()).unwrap_err().to_string();
        assert!(e.contains("never overwritten"), "{e}");
        assert_eq!(read_signing_key(&private).unwrap().public_key(), key);
    }

    #[test]
    fn a_bad_key_file_is_named_and_its_text_is_not_printed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, "not-a-key-s3cr3t\n").unwrap();
        let e = format!("{:#}", read_signing_key(&file).unwrap_err());
        assert!(e.contains(&file.display().to_string()) && !e.contains("s3cr3t"), "{e}");
    }

    #[test]
    fn public_key_files_skip_comments_and_name_a_bad_line() {
        let k = SigningKey::from_seed(&[3; 32]).public_key();
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("trusted.pub");
        std::fs::write(&file, format!("# ops\n\n{k}  # laptop\n")).unwrap();
        assert_eq!(read_public_keys(&file).unwrap(), vec![k]);
        std::fs::write(&file, format!("{k}\nnope\n")).unwrap();
        let e = format!("{:#}", read_public_keys(&file).unwrap_err());
        assert!(e.contains("line 2"), "{e}");
    }
}
