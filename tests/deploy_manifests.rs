//! The site stack (`deploy/compose/`) and the cloud side (`deploy/k8s/`),
//! checked without pulling an image or running a cluster:
//! - `docker-compose config` (Debian's Compose 1.29) accepts the compose file
//!   with `.env.example`; it names only the project's own images
//!   (`REGISTRY/gridcast/...`) and pinned upstream ones; no secret of the env
//!   file is in the compose file, and each reaches only the services that
//!   need it; every gridcast service loads its config (`gridcast <service>
//!   --config <the file it mounts> --print-config`, with the service's
//!   environment) and keeps its spool or state in a named volume; the agent's
//!   predictor container mounts the volume the agent-less `predict` service
//!   does; Grafana gets the provisioning and the dashboards where the
//!   provider looks; the upstream services have health checks that ingest and
//!   the agent wait for;
//! - every Kubernetes manifest validates offline against the 1.29 schemas
//!   (kubernetes-validate, strict: unknown fields are errors), the Secret the
//!   kustomization generates too; the kustomization lists every manifest; the
//!   configs in the ConfigMaps load with this build's binary with the pod's
//!   mounts and environment (ConfigMaps, the Secret's keys from
//!   `secrets.env.example`, volumes as temp folders); ingest is a
//!   StatefulSet of replicas in one `$share` group, each with its pod name
//!   as client id and its spool on its own claim; the trainer
//!   publishes where it reads its champion, fails its Job without a retry on
//!   exit 3 and 4 and is sized from `bench/results/retrain-year.json`.
//!
//! `docker-compose` and `kubernetes-validate` (in a virtualenv, with PyYAML,
//! which also reads the YAML here) are installed by `scripts/install-deps`;
//! without them this test fails, naming that script.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;
use support::command_output as text;

const COMPOSE: &str = "deploy/compose/docker-compose.yml";
const COMPOSE_ENV: &str = "deploy/compose/.env.example";
const K8S: &str = "deploy/k8s";
const K8S_VERSION: &str = "1.29.0";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker_compose() -> PathBuf {
    support::find_binary("docker-compose", "/usr/bin/docker-compose")
}

/// The Python of the virtualenv `scripts/install-deps` makes for
/// kubernetes-validate (PyYAML comes with it).
fn k8s_python() -> PathBuf {
    let venv = std::env::var_os("GRIDCAST_K8S_VENV").map(PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").expect("HOME is not set")).join(".cache"));
        cache.join("gridcast/k8s-venv")
    });
    let python = venv.join("bin/python3");
    let version = Command::new(&python).args(["-m", "kubernetes_validate", "--version"]).output();
    let imports = Command::new(&python).args(["-c", "import kubernetes_validate, yaml"]).output();
    match (version, imports) {
        (Ok(version), Ok(imports)) if version.status.success() && imports.status.success() => {
            println!("kubernetes-validate {}", String::from_utf8_lossy(&version.stdout).trim());
            python
        }
        _ => panic!(
            "kubernetes-validate is not installed in {} (a virtualenv with kubernetes-validate and PyYAML): \
             run scripts/install-deps",
            venv.display()
        ),
    }
}

/// YAML documents as JSON values, read by PyYAML (empty documents left out).
fn yaml_docs(python: &Path, yaml: &str) -> Vec<Value> {
    let mut child = Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; json.dump([d for d in yaml.safe_load_all(sys.stdin) if d is not None], sys.stdout)",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run PyYAML");
    child.stdin.take().unwrap().write_all(yaml.as_bytes()).unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "PyYAML could not read:\n{yaml}\n{}", text(&output));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn yaml_file(python: &Path, path: &Path) -> Vec<Value> {
    yaml_docs(python, &std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value.as_str().unwrap_or_else(|| panic!("{what}: not a string: {value}"))
}

fn array<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value.as_array().unwrap_or_else(|| panic!("{what}: not a list: {value}"))
}

/// `KEY=VALUE` lines of an env file (comments and blank lines left out).
fn env_file(path: &Path) -> BTreeMap<String, String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("{}: not KEY=VALUE: {l}", path.display()));
            (k.to_string(), v.to_string())
        })
        .collect()
}

/// Whether git ignores `path` (a file the docs say to create and keep out of git).
fn git_ignores(path: &str) -> bool {
    let output = Command::new("git").args(["check-ignore", "-q", path]).current_dir(repo()).output().expect("run git");
    output.status.success()
}

/// `gridcast ARGS --print-config` with exactly `env` as its GRIDCAST_* (and
/// other) variables, none of this process's GRIDCAST_* ones.
fn print_config(args: &[&str], env: &BTreeMap<String, String>) -> (Output, Option<toml::Value>) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gridcast"));
    command.args(args).arg("--print-config");
    for (key, _) in std::env::vars() {
        if key.starts_with("GRIDCAST_") || key.starts_with("AWS_") {
            command.env_remove(key);
        }
    }
    command.envs(env);
    let output = command.output().expect("run gridcast");
    let printed = output.status.success().then(|| toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap());
    (output, printed)
}

fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> &'a toml::Value {
    dotted.split('.').fold(value, |v, key| v.get(key).unwrap_or_else(|| panic!("no {dotted} in\n{value}")))
}

fn toml_str<'a>(value: &'a toml::Value, dotted: &str) -> &'a str {
    lookup(value, dotted).as_str().unwrap_or_else(|| panic!("{dotted} is not a string"))
}

/// The port of a `HOST:PORT` listen address or of an `http://HOST:PORT/...` URL.
fn port_of(address: &str) -> u16 {
    let authority = address.split("://").last().unwrap().split('/').next().unwrap();
    authority.rsplit_once(':').and_then(|(_, p)| p.parse().ok()).unwrap_or_else(|| panic!("no port in {address}"))
}

fn is_at_or_under(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    path == dir || path.starts_with(&format!("{dir}/"))
}

// --- docker compose ---------------------------------------------------------------

/// `docker-compose -f deploy/compose/docker-compose.yml --env-file ENV config`
/// with a clean environment: compose ranks the shell's variables above the
/// env file's.
fn compose_config(compose: &Path, env: &Path) -> Output {
    let mut command = Command::new(docker_compose());
    command.current_dir(repo()).arg("-f").arg(compose).arg("--env-file").arg(env).arg("config");
    command.env_clear();
    for key in ["PATH", "HOME", "LANG"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command.output().expect("run docker-compose")
}

/// One mount of a compose service: a named volume or a bind of a host path.
#[derive(Debug)]
struct Mount {
    source: String,
    target: String,
    named: bool,
}

/// A service's volumes, in Compose 1.29's short syntax or Compose 2's long one.
fn mounts(service: &Value) -> Vec<Mount> {
    let Some(volumes) = service.get("volumes") else { return vec![] };
    array(volumes, "volumes")
        .iter()
        .map(|v| match v {
            Value::String(s) => {
                let mut parts = s.splitn(3, ':');
                let source = parts.next().unwrap().to_string();
                let target = parts.next().unwrap_or_else(|| panic!("volume {s} has no target")).to_string();
                let named = !source.starts_with('/') && !source.starts_with('.');
                Mount { source, target, named }
            }
            Value::Object(o) => Mount {
                source: str_of(&o["source"], "volume source").to_string(),
                target: str_of(&o["target"], "volume target").to_string(),
                named: o["type"] == "volume",
            },
            other => panic!("a volume that is neither a string nor a map: {other}"),
        })
        .collect()
}

fn environment(service: &Value) -> BTreeMap<String, String> {
    match service.get("environment") {
        None => BTreeMap::new(),
        Some(Value::Object(map)) => map
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().map(str::to_string).unwrap_or_else(|| v.to_string())))
            .collect(),
        Some(other) => panic!("environment is not a map: {other}"),
    }
}

fn canonical(path: &str) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The bind of `host` (a repository path) in `service`, its target.
fn bind_target(service: &Value, host: &Path) -> Option<String> {
    let host = std::fs::canonicalize(host).unwrap();
    mounts(service).into_iter().find(|m| !m.named && canonical(&m.source) == host).map(|m| m.target)
}

/// Whether `image` is one of ours (`REGISTRY/gridcast/...`) or a pinned
/// upstream release of the four the stack uses.
fn allowed_image(image: &str, registry: &str) -> bool {
    let Some((name, tag)) = image.rsplit_once(':').filter(|(_, tag)| !tag.contains('/') && !tag.is_empty()) else {
        return false;
    };
    let release = |major: &str| tag == major || tag.starts_with(&format!("{major}."));
    let version = tag.split('.').all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()));
    match name {
        "eclipse-mosquitto" => tag.starts_with("2.0.") && version,
        "influxdb" => release("1.8") && version,
        "grafana/grafana-oss" => version && tag.split('.').count() == 3,
        "registry" => release("2") && version,
        _ => [format!("{registry}/gridcast/predictor"), format!("{registry}/gridcast/gridcast")]
            .contains(&name.to_string()),
    }
}

#[test]
fn the_compose_stack_is_accepted_with_its_env_file_and_every_gridcast_service_loads_its_config() {
    let python = k8s_python();
    let compose_file = repo().join(COMPOSE);
    let env_example = repo().join(COMPOSE_ENV);
    let output = compose_config(&compose_file, &env_example);
    assert!(output.status.success(), "docker-compose config: {}", text(&output));
    let version = Command::new(docker_compose()).arg("version").arg("--short").output().unwrap();
    println!("docker-compose {} accepts {COMPOSE} with {COMPOSE_ENV}", String::from_utf8_lossy(&version.stdout).trim());
    let config = yaml_docs(&python, &String::from_utf8_lossy(&output.stdout)).remove(0);
    let services = config["services"].as_object().expect("services");
    let settings = env_file(&env_example);
    let registry = settings["GRIDCAST_REGISTRY"].clone();

    // The check is live: compose refuses an unknown key, and a missing
    // mandatory variable names the env file.
    let dir = tempfile::tempdir().unwrap();
    let broken = dir.path().join("docker-compose.yml");
    let compose_text = std::fs::read_to_string(&compose_file).unwrap();
    std::fs::write(&broken, compose_text.replacen("  ingest:\n", "  ingest:\n    no_such_option: 1\n", 1)).unwrap();
    let output = compose_config(&broken, &env_example);
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("no_such_option"),
        "{}",
        text(&output)
    );
    let empty_env = dir.path().join("empty.env");
    std::fs::write(&empty_env, "").unwrap();
    let output = compose_config(&compose_file, &empty_env);
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stderr).contains("in .env"),
        "{}",
        text(&output)
    );

    // Images: ours from the registry, or pinned upstream releases.
    let mut ours = BTreeSet::new();
    for (name, service) in services {
        let image = str_of(&service["image"], name);
        assert!(allowed_image(image, &registry), "service {name}: image {image} is not on the allow-list");
        if image.starts_with(&format!("{registry}/gridcast/")) {
            ours.insert(name.clone());
        }
        // No bridge on these devices.
        assert_eq!(service["network_mode"], "host", "service {name}");
        println!("service {name}: {image}");
    }
    assert_eq!(ours, BTreeSet::from(["agent".into(), "ingest".into(), "predict".into()]));

    // Secrets: in the env file only, each handed to the services that need it.
    let recipients: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::from([
        ("GRAFANA_ADMIN_PASSWORD", BTreeSet::from(["grafana"])),
        ("AWS_ACCESS_KEY_ID", BTreeSet::from(["agent", "predict"])),
        ("AWS_SECRET_ACCESS_KEY", BTreeSet::from(["agent", "predict"])),
        ("GRIDCAST_REGISTRY_USERNAME", BTreeSet::from(["agent"])),
        ("GRIDCAST_REGISTRY_PASSWORD", BTreeSet::from(["agent"])),
    ]);
    let secret_like =
        |key: &str| ["PASSWORD", "SECRET", "ACCESS_KEY", "TOKEN", "USERNAME"].iter().any(|s| key.contains(s));
    for (key, value) in settings.iter().filter(|(k, _)| secret_like(k)) {
        let expected = recipients.get(key.as_str()).unwrap_or_else(|| panic!("{COMPOSE_ENV}: {key} reaches whom?"));
        assert!(value.len() >= 8, "{key}: a placeholder long enough to look for");
        assert!(!compose_text.contains(value.as_str()), "{COMPOSE} holds the value of {key}");
        let holders: BTreeSet<&str> = services
            .iter()
            .filter(|(_, s)| environment(s).values().any(|v| v.contains(value.as_str())))
            .map(|(n, _)| n.as_str())
            .collect();
        assert_eq!(&holders, expected, "{key} reaches {holders:?}");
    }
    assert!(git_ignores("deploy/compose/.env"), "deploy/compose/.env (the real secrets) is not gitignored");

    // Broker, InfluxDB and Grafana as the repository configures them.
    let mosquitto = &services["mosquitto"];
    let conf_path = repo().join("deploy/mosquitto/mosquitto.conf");
    assert!(bind_target(mosquitto, &conf_path).is_some(), "mosquitto does not mount {}", conf_path.display());
    let conf = std::fs::read_to_string(&conf_path).unwrap();
    let setting = |key: &str| {
        conf.lines().find_map(|l| l.strip_prefix(key).map(str::trim)).unwrap_or_else(|| panic!("no {key} in the conf"))
    };
    let persistence = setting("persistence_location ");
    assert!(
        mounts(mosquitto).iter().any(|m| m.named && is_at_or_under(persistence, &m.target)),
        "mosquitto's persistence_location {persistence} is in no volume"
    );
    let listener: Vec<&str> = setting("listener ").split_whitespace().collect();
    let broker = format!("{}:{}", listener[1], listener[0]);
    let influxdb = environment(&services["influxdb"]);
    let influx_url = format!("http://{}", influxdb["INFLUXDB_HTTP_BIND_ADDRESS"]);
    assert_eq!(influxdb["INFLUXDB_DB"], "gridcast");
    assert!(mounts(&services["influxdb"]).iter().any(|m| m.named && m.target == "/var/lib/influxdb"));

    let grafana = &services["grafana"];
    assert_eq!(
        bind_target(grafana, &repo().join("grafana/provisioning")).as_deref(),
        Some("/etc/grafana/provisioning")
    );
    let providers = yaml_file(&python, &repo().join("grafana/provisioning/dashboards/gridcast.yaml")).remove(0);
    let dashboards = str_of(&providers["providers"][0]["options"]["path"], "dashboard provider path");
    assert_eq!(bind_target(grafana, &repo().join("grafana/dashboards")).as_deref(), Some(dashboards));
    let datasource = std::fs::read_to_string(repo().join("grafana/provisioning/datasources/gridcast.yaml")).unwrap();
    assert!(datasource.contains("GRIDCAST_INFLUXDB_URL"));
    assert_eq!(environment(grafana)["GRIDCAST_INFLUXDB_URL"], influx_url);

    // Health checks on the upstream services; ingest and the agent wait for them.
    for name in ["mosquitto", "influxdb", "grafana", "registry"] {
        assert!(services[name]["healthcheck"]["test"].is_array(), "{name} has no health check");
    }
    for name in ["ingest", "agent", "predict"] {
        for dependency in ["mosquitto", "influxdb"] {
            assert_eq!(
                services[name]["depends_on"][dependency]["condition"], "service_healthy",
                "{name} does not wait for {dependency}"
            );
        }
    }

    // Every gridcast service: its config loads with its environment, and its
    // spool or state is in a named volume.
    let mut printed_configs = BTreeMap::new();
    for name in &ours {
        let service = &services[name];
        let image = str_of(&service["image"], name);
        let args: Vec<String> = match service.get("command") {
            Some(command) => array(command, "command").iter().map(|a| str_of(a, "argument").to_string()).collect(),
            // The predictor image's own Cmd (deploy/docker/Dockerfile, `gridcast ship base`).
            None => {
                assert!(image.contains("/gridcast/predictor:"), "{name}: no command and not the predictor image");
                ["predict", "--config", "/etc/gridcast/predict.toml"].map(String::from).to_vec()
            }
        };
        let [subcommand, flag, in_container] = &args[..] else { panic!("{name}: command {args:?}") };
        assert_eq!(flag, "--config", "{name}: command {args:?}");
        let host = mounts(service)
            .into_iter()
            .find(|m| !m.named && &m.target == in_container)
            .map(|m| PathBuf::from(m.source))
            .or_else(|| {
                // The config the predictor image carries.
                (in_container == "/etc/gridcast/predict.toml" && image.contains("/gridcast/predictor:"))
                    .then(|| repo().join("deploy/docker/predict.toml"))
            })
            .unwrap_or_else(|| panic!("{name}: {in_container} is neither mounted nor in the image"));
        let env = environment(service);
        let (output, printed) = print_config(&[subcommand, "--config", host.to_str().unwrap()], &env);
        let printed = printed
            .unwrap_or_else(|| panic!("{name}: gridcast {subcommand} --config {}: {}", host.display(), text(&output)));
        let state_key = if subcommand == "agent" { "agent.state_dir" } else { "spool.dir" };
        let state = toml_str(&printed, state_key);
        let volume = mounts(service)
            .into_iter()
            .find(|m| m.named && is_at_or_under(state, &m.target))
            .unwrap_or_else(|| panic!("{name}: {state_key} = {state} is in no named volume"));
        println!(
            "{name}: gridcast {subcommand} --config {} loads; {state_key} = {state} in volume {}",
            host.display(),
            volume.source
        );
        printed_configs.insert(name.clone(), printed);
    }

    // Ingest reads the stack's broker and writes the stack's InfluxDB.
    let ingest = &printed_configs["ingest"];
    assert_eq!(format!("{}:{}", toml_str(ingest, "mqtt.host"), lookup(ingest, "mqtt.port")), broker);
    let ingest_sinks = lookup(ingest, "sinks").as_array().unwrap();
    assert!(ingest_sinks.iter().all(|s| s["url"].as_str() == Some(influx_url.as_str())), "{ingest_sinks:?}");

    // The agent's predictor: the image's config with the container env the
    // agent passes, its spool in the volume `predict` mounts.
    let agent = &printed_configs["agent"];
    assert_eq!(toml_str(agent, "container.network"), "host");
    assert_eq!(
        toml_str(agent, "agent.image"),
        format!("{registry}/gridcast/predictor:{}", settings["GRIDCAST_FOLLOW_TAG"])
    );
    let container_env: BTreeMap<String, String> = lookup(agent, "container.env")
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let (k, v) = e.as_str().unwrap().split_once('=').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(container_env["GRIDCAST_UPLOAD__DEVICE"], settings["GRIDCAST_DEVICE"]);
    let image_config = repo().join("deploy/docker/predict.toml");
    let (output, predictor) = print_config(&["predict", "--config", image_config.to_str().unwrap()], &container_env);
    let predictor = predictor.unwrap_or_else(|| panic!("the agent's predictor config: {}", text(&output)));
    let spool = toml_str(&predictor, "spool.dir");
    let declared: BTreeMap<&str, &str> = config["volumes"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, v)| (str_of(&v["name"], "volume name"), key.as_str()))
        .collect();
    let bind = lookup(agent, "container.binds")
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_str().unwrap().split(':').collect::<Vec<_>>())
        .find(|b| is_at_or_under(spool, b[1]))
        .unwrap_or_else(|| panic!("the agent's predictor has its spool {spool} in no bind"));
    let key = declared
        .get(bind[0])
        .unwrap_or_else(|| panic!("the agent binds {}, no volume the compose file names (`name:`)", bind[0]));
    assert!(
        mounts(&services["predict"]).iter().any(|m| m.named && &m.source == key && m.target == bind[1]),
        "`predict` does not mount {key} at {}",
        bind[1]
    );
    assert_eq!(toml_str(&predictor, "upload.device"), settings["GRIDCAST_DEVICE"]);
    assert_eq!(toml_str(&predictor, "upload.url"), settings["GRIDCAST_UPLOAD_URL"]);
    assert_eq!(port_of(toml_str(agent, "container.health_url")), port_of(toml_str(&predictor, "http.listen")));
    let ports = [
        port_of(toml_str(ingest, "http.listen")),
        port_of(toml_str(agent, "http.listen")),
        port_of(toml_str(&predictor, "http.listen")),
    ];
    assert_eq!(ports.iter().collect::<BTreeSet<_>>().len(), 3, "ingest, agent, predictor ports {ports:?}");
    println!("the agent's predictor: spool {spool} in volume {} ({key}), also `predict`'s", bind[0]);
}

// --- Kubernetes -------------------------------------------------------------------

/// `text` with every mount path that starts a TOML string (`"/etc/gridcast...`)
/// replaced by the folder standing in for it, in one pass.
fn remap(text: &str, mounts: &[(String, PathBuf)]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < text.len() {
        let rest = &text[i..];
        if i > 0
            && text.as_bytes()[i - 1] == b'"'
            && let Some((path, dir)) = mounts
                .iter()
                .filter(|(p, _)| {
                    rest.starts_with(p.as_str()) && matches!(rest.as_bytes().get(p.len()), Some(b'/' | b'"'))
                })
                .max_by_key(|(p, _)| p.len())
        {
            out.push_str(dir.to_str().unwrap());
            i += path.len();
            continue;
        }
        let c = rest.chars().next().unwrap();
        out.push(c);
        i += c.len_utf8();
    }
    out
}

/// Kubernetes quantities as the manifests write them: cores and MiB.
fn cores(quantity: &Value) -> f64 {
    let q = str_of(quantity, "cpu quantity");
    match q.strip_suffix('m') {
        Some(milli) => milli.parse::<f64>().unwrap() / 1000.0,
        None => q.parse().unwrap(),
    }
}

fn mib(quantity: &Value) -> f64 {
    let q = str_of(quantity, "memory quantity");
    if let Some(m) = q.strip_suffix("Mi") {
        m.parse().unwrap()
    } else if let Some(g) = q.strip_suffix("Gi") {
        g.parse::<f64>().unwrap() * 1024.0
    } else {
        panic!("memory quantity {q}: write it in Mi or Gi")
    }
}

fn of_kind<'a>(docs: &'a [Value], kind: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    docs.iter().filter(move |d| d["kind"] == kind)
}

/// A container's config, loaded as the pod would load it.
struct Loaded {
    printed: toml::Value,
    /// Mount path -> (the folder standing in for it, the volume's kind).
    mounts: BTreeMap<String, (PathBuf, &'static str)>,
}

impl Loaded {
    /// The kind of the volume `path` (as printed, remapped) is in.
    fn volume_of(&self, path: &str) -> Option<(&str, &'static str)> {
        self.mounts
            .iter()
            .find(|(_, (dir, _))| is_at_or_under(path, dir.to_str().unwrap()))
            .map(|(mount, (_, kind))| (mount.as_str(), *kind))
    }
}

#[test]
fn the_kubernetes_manifests_validate_offline_and_their_configs_load() {
    let python = k8s_python();
    let dir = repo().join(K8S);
    let mut manifests: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| (n.ends_with(".yaml") || n.ends_with(".yml")) && n != "kustomization.yaml")
        .collect();
    manifests.sort();

    // The kustomization lists every manifest, and makes the one Secret.
    let kustomization = yaml_file(&python, &dir.join("kustomization.yaml")).remove(0);
    let mut listed: Vec<String> =
        array(&kustomization["resources"], "resources").iter().map(|r| str_of(r, "resource").to_string()).collect();
    listed.sort();
    assert_eq!(listed, manifests, "kustomization.yaml resources vs the manifests in {K8S}");
    let generator = &array(&kustomization["secretGenerator"], "secretGenerator")[0];
    let secret_name = str_of(&generator["name"], "secret name");
    let envs = array(&generator["envs"], "envs");
    assert_eq!(envs.len(), 1);
    let secrets_file = str_of(&envs[0], "envs");
    assert!(git_ignores(&format!("{K8S}/{secrets_file}")), "{K8S}/{secrets_file} (the real secrets) is not gitignored");
    let secrets = env_file(&dir.join(format!("{secrets_file}.example")));

    // Every manifest validates against the 1.29 schemas, strictly; so does
    // the Secret the generator would make from the example.
    let tmp = tempfile::tempdir().unwrap();
    let generated = tmp.path().join("generated-secret.yaml");
    let data: String = secrets.iter().map(|(k, v)| format!("  {k}: {}\n", serde_json::to_string(v).unwrap())).collect();
    std::fs::write(
        &generated,
        format!("apiVersion: v1\nkind: Secret\nmetadata:\n  name: {secret_name}\ntype: Opaque\nstringData:\n{data}"),
    )
    .unwrap();
    let mut files: Vec<PathBuf> = manifests.iter().map(|m| dir.join(m)).collect();
    files.push(generated);
    let validate = |files: &[PathBuf]| {
        Command::new(&python)
            .args(["-m", "kubernetes_validate", "--strict", "-k", K8S_VERSION])
            .args(files)
            .output()
            .expect("run kubernetes-validate")
    };
    let output = validate(&files);
    let report = String::from_utf8_lossy(&output.stdout).into_owned() + &String::from_utf8_lossy(&output.stderr);
    print!("{report}");
    assert!(output.status.success() && !report.contains("WARN") && !report.contains("ERROR"), "{}", text(&output));
    for file in &files {
        assert!(
            report.contains(&format!("{} passed", file.display())),
            "{} was not validated:\n{report}",
            file.display()
        );
    }
    // The check is live: a field the schema does not know fails it.
    let statefulset = std::fs::read_to_string(dir.join("ingest-statefulset.yaml")).unwrap();
    let broken = tmp.path().join("broken.yaml");
    std::fs::write(&broken, statefulset.replacen("  replicas: 2\n", "  replicas: 2\n  replica: 2\n", 1)).unwrap();
    let output = validate(std::slice::from_ref(&broken));
    assert!(
        !output.status.success() && String::from_utf8_lossy(&output.stdout).contains("replica"),
        "{}",
        text(&output)
    );

    // The objects.
    let docs: Vec<Value> = manifests.iter().flat_map(|m| yaml_file(&python, &dir.join(m))).collect();
    let named = |kind: &str, name: &str| docs.iter().find(|d| d["kind"] == kind && d["metadata"]["name"] == name);
    assert!(of_kind(&docs, "Secret").next().is_none(), "a Secret in {K8S}: secrets come from {secrets_file} only");
    let namespace = of_kind(&docs, "Namespace").next().expect("a Namespace");
    assert_eq!(kustomization["namespace"], namespace["metadata"]["name"]);

    // Images: ours, and each one named in the kustomization's images.
    let images: BTreeMap<&str, &Value> =
        array(&kustomization["images"], "images").iter().map(|i| (str_of(&i["name"], "image name"), i)).collect();
    let registry =
        str_of(&images.values().next().unwrap()["newName"], "newName").split('/').next().unwrap().to_string();
    let mut workloads = vec![];
    for statefulset in of_kind(&docs, "StatefulSet") {
        workloads.push((statefulset, &statefulset["spec"]["template"]["spec"]));
    }
    for cronjob in of_kind(&docs, "CronJob") {
        workloads.push((cronjob, &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]));
    }
    assert_eq!(workloads.len(), 2, "the ingest StatefulSet and the trainer CronJob");

    let retrain_peak_mib = serde_json::from_str::<Value>(
        &std::fs::read_to_string(repo().join("bench/results/retrain-year.json")).unwrap(),
    )
    .unwrap()["peak_rss_mib"]
        .as_f64()
        .unwrap();

    let mut loaded = BTreeMap::new();
    for (workload, pod) in &workloads {
        let workload_name = str_of(&workload["metadata"]["name"], "name");
        assert_eq!(pod["automountServiceAccountToken"], false, "{workload_name}");
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{workload_name}");
        let volumes = array(&pod["volumes"], "volumes");
        for container in array(&pod["containers"], "containers") {
            let name = str_of(&container["name"], "container name");
            let image = str_of(&container["image"], "image");
            let (repository, _) = image.rsplit_once(':').unwrap();
            assert!(images.contains_key(repository), "{name}: {image} is not in the kustomization's images");
            assert!(
                [format!("{registry}/gridcast/predictor"), format!("{registry}/gridcast/gridcast")]
                    .contains(&repository.to_string()),
                "{name}: {image} is not one of ours"
            );
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            for what in ["requests", "limits"] {
                for resource in ["cpu", "memory"] {
                    assert!(container["resources"][what][resource].is_string(), "{name}: no {what}.{resource}");
                }
            }

            // The volumes as temp folders: ConfigMaps' data, the Secret's keys
            // from the example, empty folders for claims and emptyDirs.
            let mut mounts = BTreeMap::new();
            let claim_templates =
                workload["spec"].get("volumeClaimTemplates").map(|t| array(t, "volumeClaimTemplates"));
            for (i, mount) in array(&container["volumeMounts"], "volumeMounts").iter().enumerate() {
                let volume_name = &mount["name"];
                let folder = tmp.path().join(format!("{name}-mount{i}"));
                std::fs::create_dir_all(&folder).unwrap();
                let template = claim_templates.and_then(|t| t.iter().find(|c| &c["metadata"]["name"] == volume_name));
                let volume = volumes.iter().find(|v| &v["name"] == volume_name);
                assert!(
                    template.is_none() || volume.is_none(),
                    "{name}: {volume_name} is a volume and a claim template"
                );
                let volume = volume.or(template).expect("the mount's volume");
                let kind = if template.is_some() {
                    "claim"
                } else if let Some(source) = volume.get("configMap") {
                    let map = str_of(&source["name"], "configMap name");
                    let map = named("ConfigMap", map).unwrap_or_else(|| panic!("{name}: no ConfigMap {map}"));
                    for (key, value) in map["data"].as_object().unwrap() {
                        std::fs::write(folder.join(key), str_of(value, key)).unwrap();
                    }
                    "configMap"
                } else if let Some(source) = volume.get("secret") {
                    assert_eq!(source["secretName"], secret_name, "{name}");
                    for item in array(&source["items"], "secret items") {
                        let key = str_of(&item["key"], "key");
                        let value = secrets.get(key).unwrap_or_else(|| panic!("{name}: no {key} in the secrets"));
                        std::fs::write(folder.join(str_of(&item["path"], "path")), value).unwrap();
                    }
                    "secret"
                } else if let Some(source) = volume.get("persistentVolumeClaim") {
                    let claim = str_of(&source["claimName"], "claimName");
                    assert!(named("PersistentVolumeClaim", claim).is_some(), "{name}: no claim {claim}");
                    "claim"
                } else if volume.get("emptyDir").is_some() {
                    "emptyDir"
                } else {
                    panic!("{name}: volume {volume}")
                };
                mounts.insert(str_of(&mount["mountPath"], "mountPath").to_string(), (folder, kind));
            }

            // The environment: values, and the Secret's keys.
            let mut env = BTreeMap::new();
            for var in container.get("env").map(|e| array(e, "env").clone()).unwrap_or_default() {
                let key = str_of(&var["name"], "env name").to_string();
                let value = match (var.get("value"), var.get("valueFrom")) {
                    (Some(value), None) => str_of(value, &key).to_string(),
                    (None, Some(from)) if from.get("fieldRef").is_some() => {
                        // The pod's own name, as the first replica's would be.
                        assert_eq!(from["fieldRef"]["fieldPath"], "metadata.name", "{name}: {key}");
                        format!("{workload_name}-0")
                    }
                    (None, Some(from)) => {
                        let reference = &from["secretKeyRef"];
                        assert_eq!(reference["name"], secret_name, "{name}: {key}");
                        let secret_key = str_of(&reference["key"], "key");
                        secrets
                            .get(secret_key)
                            .unwrap_or_else(|| panic!("{name}: no {secret_key} in the secrets"))
                            .clone()
                    }
                    _ => panic!("{name}: env {var}"),
                };
                env.insert(key, value);
            }

            // Its config, as the pod loads it.
            let args: Vec<&str> = array(&container["args"], "args").iter().map(|a| str_of(a, "arg")).collect();
            let [subcommand, "--config", config] = args[..] else { panic!("{name}: args {args:?}") };
            let (mount, (folder, kind)) = mounts
                .iter()
                .find(|(m, _)| is_at_or_under(config, m))
                .unwrap_or_else(|| panic!("{name}: {config} is in no volume"));
            assert_eq!(*kind, "configMap", "{name}: {config}");
            let config_text =
                std::fs::read_to_string(folder.join(config[mount.len()..].trim_start_matches('/'))).unwrap();
            let pairs: Vec<(String, PathBuf)> = mounts.iter().map(|(m, (f, _))| (m.clone(), f.clone())).collect();
            let config_file = tmp.path().join(format!("{name}.toml"));
            std::fs::write(&config_file, remap(&config_text, &pairs)).unwrap();
            let (output, printed) = print_config(&[subcommand, "--config", config_file.to_str().unwrap()], &env);
            let printed = printed.unwrap_or_else(|| {
                panic!("{workload_name}/{name}: gridcast {subcommand} --config ({config}): {}", text(&output))
            });
            println!(
                "{workload_name}/{name}: gridcast {subcommand} --config {config} loads with the pod's mounts and env"
            );
            loaded.insert(subcommand.to_string(), (Loaded { printed, mounts }, *workload, *pod, container));
        }
    }

    // Ingest: replicas in one shared-subscription group, each with its pod's
    // name as client id and its own spool claim, its secrets from files,
    // /health where the probes look.
    let (ingest, statefulset, pod, container) = &loaded["ingest"];
    assert!(statefulset["spec"]["replicas"].as_u64().unwrap() >= 2, "ingest scales out");
    let topics = lookup(&ingest.printed, "mqtt.topics").as_array().unwrap();
    assert!(topics.iter().all(|t| t.as_str().unwrap().starts_with("$share/gridcast-ingest/")), "{topics:?}");
    assert_eq!(toml_str(&ingest.printed, "mqtt.client_id"), "gridcast-ingest-0", "the pod's name is the client id");
    let service = named("Service", str_of(&statefulset["spec"]["serviceName"], "serviceName")).expect("its Service");
    assert_eq!(service["spec"]["clusterIP"], "None", "a StatefulSet's Service is headless");
    let spool = toml_str(&ingest.printed, "spool.dir");
    assert_eq!(ingest.volume_of(spool).map(|(_, k)| k), Some("claim"), "ingest's spool {spool}");
    let mut secret_files = vec![toml_str(&ingest.printed, "mqtt.password_file").to_string()];
    for sink in lookup(&ingest.printed, "sinks").as_array().unwrap() {
        if let Some(file) = sink.get("password_file").or(sink.get("token_file")) {
            secret_files.push(file.as_str().unwrap().to_string());
        }
    }
    for file in &secret_files {
        assert_eq!(ingest.volume_of(file).map(|(_, k)| k), Some("secret"), "ingest reads {file}");
    }
    let printed_text = toml::to_string(&ingest.printed).unwrap();
    for (key, value) in &secrets {
        assert!(!printed_text.contains(value.as_str()), "ingest's --print-config shows {key}");
    }
    let listen = toml_str(&ingest.printed, "http.listen");
    assert!(listen.starts_with("0.0.0.0:"), "the kubelet probes the pod's address, not {listen}");
    let http_port =
        array(&container["ports"], "ports").iter().find(|p| p["name"] == "http").expect("a port named http");
    assert_eq!(http_port["containerPort"], port_of(listen));
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(container[probe]["httpGet"]["path"], "/health", "{probe}");
        assert_eq!(container[probe]["httpGet"]["port"], "http", "{probe}");
    }
    assert!(pod["securityContext"]["fsGroup"].is_number(), "the claim must be writable for the non-root user");
    let pdb = of_kind(&docs, "PodDisruptionBudget").next().expect("a PodDisruptionBudget");
    let labels = statefulset["spec"]["template"]["metadata"]["labels"].as_object().unwrap();
    for (key, value) in pdb["spec"]["selector"]["matchLabels"].as_object().unwrap() {
        assert_eq!(labels.get(key), Some(value), "the PodDisruptionBudget selects ingest");
    }
    assert_eq!(pdb["spec"]["maxUnavailable"], 1, "one replica at a time");

    // The trainer: publishes where it reads its champion, pushes the image
    // the edge runs, keeps only /tmp, and its exit codes drive the Job.
    let (trainer, cronjob, pod, container) = &loaded["retrain"];
    let publish = |key: &str| toml_str(&trainer.printed, &format!("publish.{key}")).trim_matches('/').to_string();
    let store = publish("store");
    assert!(["s3://", "az://", "gs://"].iter().any(|s| store.starts_with(s)), "a pod's files do not last: {store}");
    let current: Vec<String> = [store, publish("prefix"), publish("site"), "models/current.gcm".into()]
        .into_iter()
        .filter(|p| !p.is_empty())
        .collect();
    assert_eq!(toml_str(&trainer.printed, "champion.model"), current.join("/"), "the champion is what publish writes");
    let ingest_image = str_of(&loaded["ingest"].3["image"], "image");
    assert_eq!(
        toml_str(&trainer.printed, "ship.base").rsplit_once(':').unwrap().0,
        ingest_image.rsplit_once(':').unwrap().0,
        "[ship] base is the predictor image the cluster runs"
    );
    assert!(toml_str(&trainer.printed, "ship.image").starts_with(&format!("{registry}/gridcast/predictor")));
    let state = toml_str(&trainer.printed, "trigger.state");
    assert_eq!(trainer.volume_of(state).map(|(_, k)| k), Some("emptyDir"), "the trigger state {state}");
    let threads = lookup(&trainer.printed, "train.threads").as_integer().unwrap() as f64;
    assert!(threads >= 1.0 && threads <= cores(&container["resources"]["limits"]["cpu"]), "[train] threads {threads}");
    let request = mib(&container["resources"]["requests"]["memory"]);
    let limit = mib(&container["resources"]["limits"]["memory"]);
    assert!(
        request >= retrain_peak_mib && limit >= 2.0 * retrain_peak_mib,
        "memory {request}/{limit} MiB vs the measured {retrain_peak_mib} MiB peak"
    );
    let job = &cronjob["spec"]["jobTemplate"]["spec"];
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    assert_eq!(pod["restartPolicy"], "Never", "podFailurePolicy needs it");
    let rules = array(&job["podFailurePolicy"]["rules"], "podFailurePolicy rules");
    let fail_job: BTreeSet<i64> = rules
        .iter()
        .filter(|r| r["action"] == "FailJob" && r["onExitCodes"]["operator"] == "In")
        .inspect(|r| assert_eq!(r["onExitCodes"]["containerName"], container["name"]))
        .flat_map(|r| array(&r["onExitCodes"]["values"], "values").iter().map(|v| v.as_i64().unwrap()))
        .collect();
    assert_eq!(fail_job, BTreeSet::from([3, 4]), "exit 3 (kept) and 4 (not pushed) end the Job, 1 is retried");
    assert!(job["backoffLimit"].as_i64().unwrap() >= 1, "an error (exit 1) is retried");
    println!(
        "trainer: champion {} = what it publishes; memory {request}/{limit} MiB vs {retrain_peak_mib} MiB measured",
        toml_str(&trainer.printed, "champion.model")
    );
}
