//! `gridcast ship base|model`: the command line over `push`. Prints the
//! pushed manifest digest alone on stdout (so `digest=$(gridcast ship ...)`
//! works) and one line on stderr saying what was uploaded and what reused.
//! `ship model --engine` goes through a Docker engine (`engine`) instead.

use clap::{Args, Subcommand};

use crate::push::{self, BaseImage, DEFAULT_PREDICT_CONFIG, ModelImage};
use crate::{engine, signing};

#[derive(Debug, Args)]
pub struct ShipArgs {
    #[command(subcommand)]
    pub command: ShipCommand,
}

#[derive(Debug, Subcommand)]
pub enum ShipCommand {
    /// Build the predictor base image (the binary at /gridcast, a predict config) and push it.
    Base(BaseArgs),
    /// Put a model on top of the base image as one layer, push it, tag it with the model version.
    Model(ModelArgs),
}

#[derive(Debug, Args)]
pub struct BaseArgs {
    /// The `gridcast` binary to put at /gridcast: statically linked, for the device's
    /// architecture (scripts/build-image builds one).
    #[arg(long)]
    pub binary: String,
    /// REGISTRY/REPOSITORY:TAG to push, e.g. 127.0.0.1:5000/gridcast/predictor:base.
    #[arg(long)]
    pub image: String,
    /// Predictor config to put at /etc/gridcast/predict.toml [default: deploy/docker/predict.toml,
    /// built in].
    #[arg(long)]
    pub predict_config: Option<String>,
    /// CA certificate bundle to put at /etc/ssl/certs/ca-certificates.crt, for the predictor's
    /// HTTPS clients (Debian package ca-certificates).
    #[arg(long, default_value = "/etc/ssl/certs/ca-certificates.crt")]
    pub ca_certificates: String,
    /// A label for the image config, KEY=VALUE; may be repeated.
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Allow plain HTTP to a registry that is not on this machine.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The model file (.gcm); validated before anything is pushed.
    #[arg(long)]
    pub model: String,
    /// The predictor base image, REGISTRY/REPOSITORY:TAG or @sha256:DIGEST.
    #[arg(long)]
    pub base: String,
    /// REGISTRY/REPOSITORY[:TAG] to push; without a tag, the model version (the first 12 hex of
    /// its payload sha256).
    #[arg(long)]
    pub image: String,
    /// Allow plain HTTP to a registry that is not on this machine.
    #[arg(long, conflicts_with = "engine")]
    pub insecure: bool,
    /// Have a Docker engine pull the base, build the model image and push it, instead of pushing
    /// daemonlessly (the engine's own insecure-registries setting then decides about plain HTTP).
    #[arg(long)]
    pub engine: bool,
    /// The engine's socket, unix:///PATH [default: DOCKER_HOST, else
    /// unix:///var/run/docker.sock].
    #[arg(long, requires = "engine")]
    pub docker_host: Option<String>,
    /// Sign the model with this private key before shipping it (the predictor and agent accept
    /// only models signed by their trusted keys) [else GRIDCAST_SIGNING_KEY_FILE, else the key in
    /// GRIDCAST_SIGNING_KEY; none: shipped as it is].
    #[arg(long)]
    pub signing_key_file: Option<std::path::PathBuf>,
}

fn parse_label(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

pub async fn run(args: ShipArgs) -> anyhow::Result<()> {
    let (report, digest) = match args.command {
        ShipCommand::Base(args) => {
            let predict_config = match &args.predict_config {
                Some(path) => std::fs::read_to_string(path)
                    .map_err(|e| anyhow::anyhow!("reading the predictor config {path}: {e}"))?,
                None => DEFAULT_PREDICT_CONFIG.to_owned(),
            };
            let report = push::push_base(&BaseImage {
                binary: args.binary,
                predict_config,
                ca_certificates: args.ca_certificates,
                image: args.image,
                labels: args.labels,
                insecure: args.insecure,
            })
            .await?;
            (report.to_string(), report.digest)
        }
        ShipCommand::Model(args) => {
            let signing_key = signing::signing_key(args.signing_key_file.as_deref())?.map(std::sync::Arc::new);
            if let Some(key) = &signing_key {
                eprintln!("gridcast ship: signing the model with key {}", key.public_key());
            }
            let model = ModelImage {
                model: args.model,
                base: args.base,
                image: args.image,
                insecure: args.insecure,
                signing_key,
            };
            if args.engine {
                let report = engine::push_model_with_engine(&model, args.docker_host.as_deref()).await?;
                (report.to_string(), report.digest)
            } else {
                let report = push::push_model(&model).await?;
                (report.to_string(), report.digest)
            }
        }
    };
    eprintln!("gridcast ship: {report}");
    println!("{digest}");
    Ok(())
}
