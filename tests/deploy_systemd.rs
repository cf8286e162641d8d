//! The bare-Pi install (`deploy/systemd/`, `scripts/install-systemd`),
//! checked without a running systemd: the script installs into a temp root
//! with this build's binary, and then
//! - `systemd-analyze verify --root=<root>` accepts the installed units with
//!   not one warning (Debian bookworm's systemd 252), also with the
//!   credential lines their comments document (`LoadCredential=`,
//!   `GRIDCAST_MQTT__PASSWORD_FILE=%d/...`) turned on in a drop-in;
//! - `systemd-analyze security --offline` rates each unit's exposure under 2.0;
//! - every unit runs `gridcast <service> --config <file>` on a config the
//!   script installed, which loads (`--print-config`), and whose spool (or
//!   state) folder is the unit's `StateDirectory=`;
//! - the env files are 0600, the configs 0640, the credentials folder 0700;
//! - a second install keeps edited configs and env files.
//!
//! `systemd-analyze` comes with Debian's `systemd` package, which
//! `scripts/install-deps` installs; without it this test fails, naming that.

mod support;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::command_output as text;

const UNITS: [&str; 3] = ["gridcast-ingest.service", "gridcast-predict.service", "gridcast-agent.service"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn systemd_analyze() -> PathBuf {
    support::find_binary("systemd-analyze", "/usr/bin/systemd-analyze")
}

/// `scripts/install-systemd --root ROOT --binary <this build's gridcast>`.
fn install(root: &Path) -> Output {
    let output = Command::new(repo().join("scripts/install-systemd"))
        .arg("--root")
        .arg(root)
        .arg("--binary")
        .arg(env!("CARGO_BIN_EXE_gridcast"))
        .output()
        .expect("run scripts/install-systemd");
    assert!(output.status.success(), "scripts/install-systemd failed: {}", text(&output));
    output
}

/// With `--root`, systemd-analyze resolves everything in the root: the
/// binary in ExecStart= (the installed one), and the targets the units pull
/// in by default dependencies (sysinit.target, basic.target, shutdown.target)
/// or name (network-online.target, multi-user.target). A Pi's root has
/// systemd's own targets; the temp root gets this machine's copies.
fn add_systemd_targets(root: &Path) {
    let host = ["/usr/lib/systemd/system", "/lib/systemd/system"]
        .into_iter()
        .map(Path::new)
        .find(|dir| dir.join("sysinit.target").is_file())
        .expect("systemd's own units (sysinit.target) are not installed: run scripts/install-deps");
    let dest = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&dest).unwrap();
    for entry in std::fs::read_dir(host).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "target") && path.is_file() {
            std::fs::copy(&path, dest.join(path.file_name().unwrap())).unwrap();
        }
    }
}

/// `systemd-analyze verify --root=ROOT UNITS...`: its status and stderr
/// (where it prints every warning).
fn verify(root: &Path) -> (Output, String) {
    let output = Command::new(systemd_analyze())
        .arg("verify")
        .arg(format!("--root={}", root.display()))
        .args(UNITS)
        .current_dir(root)
        .env("SYSTEMD_PAGER", "")
        .output()
        .expect("run systemd-analyze verify");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    (output, stderr)
}

fn assert_verifies_clean(root: &Path, what: &str) {
    let (output, stderr) = verify(root);
    println!("systemd-analyze verify ({what}): {}, stderr {:?}", output.status, stderr);
    assert!(output.status.success() && stderr.trim().is_empty(), "verify {what}: {}", text(&output));
}

/// A unit's `Key=value` settings, in order (comments and sections left out).
fn settings(unit_text: &str) -> Vec<(String, String)> {
    unit_text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with('['))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

/// Run the installed binary as the unit would, with `--print-config` added,
/// and without this process's GRIDCAST_* variables.
fn print_config(root: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(root.join("usr/local/bin/gridcast"));
    command.args(args).arg("--print-config");
    for (key, _) in std::env::vars() {
        if key.starts_with("GRIDCAST_") {
            command.env_remove(key);
        }
    }
    command.envs(env.iter().copied()).output().expect("run the installed gridcast")
}

fn lookup<'a>(value: &'a toml::Value, dotted: &str) -> &'a toml::Value {
    dotted.split('.').fold(value, |v, key| v.get(key).unwrap_or_else(|| panic!("no {dotted} in {value}")))
}

#[test]
fn installed_units_verify_and_their_configs_load_with_spools_in_the_state_directories() {
    let analyze = systemd_analyze();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let output = install(root);
    println!("{}", String::from_utf8_lossy(&output.stderr));
    add_systemd_targets(root);

    // The units as installed.
    assert_verifies_clean(root, "the installed units");

    // The check is live: verify reads our units (and their drop-ins) and
    // says so when something is off.
    let dropins = root.join("etc/systemd/system/gridcast-ingest.service.d");
    std::fs::create_dir_all(&dropins).unwrap();
    std::fs::write(dropins.join("broken.conf"), "[Service]\nNoSuchSetting=1\n").unwrap();
    let (_, stderr) = verify(root);
    assert!(stderr.contains("NoSuchSetting"), "verify did not see a broken drop-in: {stderr}");
    std::fs::remove_file(dropins.join("broken.conf")).unwrap();

    // The credential lines each unit documents, turned on in a drop-in (as
    // `systemctl edit` would), with their source files in place.
    for unit in UNITS {
        let unit_text = std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        let documented: Vec<&str> = unit_text
            .lines()
            .filter_map(|l| l.strip_prefix('#'))
            .filter(|l| l.starts_with("LoadCredential=") || l.starts_with("Environment="))
            .collect();
        assert!(
            documented.iter().any(|l| l.starts_with("LoadCredential=")) && documented.iter().any(|l| l.contains("%d")),
            "{unit} documents no credential with %d: {documented:?}"
        );
        for line in &documented {
            if let Some(spec) = line.strip_prefix("LoadCredential=") {
                let source = root.join(spec.split_once(':').unwrap().1.trim_start_matches('/'));
                std::fs::write(&source, "secret\n").unwrap();
            }
        }
        let dropins = root.join(format!("etc/systemd/system/{unit}.d"));
        std::fs::create_dir_all(&dropins).unwrap();
        std::fs::write(dropins.join("credentials.conf"), format!("[Service]\n{}\n", documented.join("\n"))).unwrap();
    }
    assert_verifies_clean(root, "with the documented credentials");

    // Exposure as systemd rates it (0 best, 10 worst).
    for unit in UNITS {
        let output = Command::new(&analyze)
            .args(["security", "--offline=yes", "--threshold=20", "--no-pager"])
            .arg(format!("--root={}", root.display()))
            .arg(unit)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        println!("{}", stdout.lines().last().unwrap_or(""));
        assert!(output.status.success(), "{unit} exposure over 2.0: {}", text(&output));
    }

    // Permissions.
    let etc = root.join("etc/gridcast");
    assert_eq!(mode(&etc.join("credentials")), 0o700);
    for service in ["ingest", "predict", "agent"] {
        assert_eq!(mode(&etc.join(format!("{service}.env"))), 0o600, "{service}.env");
        assert_eq!(mode(&etc.join(format!("{service}.toml"))), 0o640, "{service}.toml");
    }
    assert_eq!(mode(&root.join("usr/local/bin/gridcast")), 0o755);

    // Each unit: its hardening, its env file, its config, its state.
    let spool_key = BTreeMap::from([("ingest", "spool.dir"), ("predict", "spool.dir"), ("agent", "agent.state_dir")]);
    let mut state_dirs = Vec::new();
    for unit in UNITS {
        let unit_text = std::fs::read_to_string(root.join("etc/systemd/system").join(unit)).unwrap();
        let settings = settings(&unit_text);
        let all = |key: &str| settings.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect::<Vec<_>>();
        for (key, value) in [
            ("User", "gridcast"),
            ("Restart", "on-failure"),
            ("NoNewPrivileges", "yes"),
            ("ProtectSystem", "strict"),
            ("ProtectHome", "yes"),
            ("PrivateTmp", "yes"),
            ("ProtectKernelTunables", "yes"),
            ("ProtectKernelModules", "yes"),
            ("ProtectKernelLogs", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
            ("SystemCallFilter", "@system-service"),
        ] {
            assert!(all(key).contains(&value), "{unit}: no {key}={value}");
        }
        assert!(all("ReadWritePaths").is_empty(), "{unit}: writes only its StateDirectory");

        let env_files = all("EnvironmentFile");
        let [env_file] = env_files[..] else { panic!("{unit}: one EnvironmentFile= expected, got {env_files:?}") };
        let env_file = root.join(env_file.trim_start_matches('-').trim_start_matches('/'));
        assert_eq!(mode(&env_file), 0o600, "{}", env_file.display());

        let exec = all("ExecStart");
        let [exec] = exec[..] else { panic!("{unit}: one ExecStart= expected") };
        let args: Vec<&str> = exec.split_whitespace().collect();
        let ["/usr/local/bin/gridcast", service, "--config", config] = args[..] else {
            panic!("{unit}: ExecStart={exec}")
        };
        let config = root.join(config.trim_start_matches('/'));
        let output = print_config(root, &[service, "--config", config.to_str().unwrap()], &[]);
        assert!(
            output.status.success(),
            "gridcast {service} --config {} --print-config: {}",
            config.display(),
            text(&output)
        );
        let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
        let spool = lookup(&printed, spool_key[service]).as_str().unwrap().to_string();

        let state = all("StateDirectory");
        let [state] = state[..] else { panic!("{unit}: one StateDirectory= expected, got {state:?}") };
        assert_eq!(
            spool,
            format!("/var/lib/{state}"),
            "{unit}: {} is not its StateDirectory={state}",
            spool_key[service]
        );
        state_dirs.push(state.to_string());
        println!(
            "{unit}: {service} --config {} loads; {} = {spool} = StateDirectory",
            config.display(),
            spool_key[service]
        );
    }
    state_dirs.sort();
    state_dirs.dedup();
    assert_eq!(state_dirs.len(), UNITS.len(), "each service its own state folder: {state_dirs:?}");

    // The agent's /metrics does not take ingest's port (both run on a Pi with Docker).
    let listen = |service: &str| {
        let config = etc.join(format!("{service}.toml"));
        let output = print_config(root, &[service, "--config", config.to_str().unwrap()], &[]);
        let printed: toml::Value = toml::from_str(&String::from_utf8_lossy(&output.stdout)).unwrap();
        lookup(&printed, "http.listen").as_str().unwrap().to_string()
    };
    assert_ne!(listen("agent"), listen("ingest"));
    assert_ne!(listen("agent"), listen("predict"));

    // The unit's credential route, end to end up to systemd: the password
    // file named by GRIDCAST_MQTT__PASSWORD_FILE (what %d/mqtt-password
    // becomes) is read, and --print-config shows its path, not the secret.
    let credential = root.join("mqtt-password");
    std::fs::write(&credential, "pi-broker-secret\n").unwrap();
    let config = etc.join("ingest.toml");
    let output = print_config(
        root,
        &["ingest", "--config", config.to_str().unwrap()],
        &[("GRIDCAST_MQTT__PASSWORD_FILE", credential.to_str().unwrap())],
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success() && stdout.contains("password_file"), "{}", text(&output));
    assert!(!stdout.contains("pi-broker-secret"), "the secret was printed:\n{stdout}");
    let missing = root.join("no-such-credential");
    let output = print_config(
        root,
        &["ingest", "--config", config.to_str().unwrap()],
        &[("GRIDCAST_MQTT__PASSWORD_FILE", missing.to_str().unwrap())],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{}", text(&output));
    assert!(stderr.contains("password_file") && stderr.contains(missing.to_str().unwrap()), "{stderr}");
}

#[test]
fn a_second_install_keeps_edited_configs_and_env_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root);
    let etc = root.join("etc/gridcast");
    let config = etc.join("ingest.toml");
    let edited = std::fs::read_to_string(&config).unwrap().replace("port = 1883", "port = 1884");
    std::fs::write(&config, &edited).unwrap();
    std::fs::write(etc.join("ingest.env"), "GRIDCAST_MQTT__PASSWORD=mine\n").unwrap();
    std::fs::set_permissions(etc.join("ingest.env"), std::fs::Permissions::from_mode(0o644)).unwrap();

    let output = install(root);
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), edited, "{log}");
    assert!(etc.join("ingest.toml.new").is_file(), "{log}");
    assert!(!etc.join("predict.toml.new").exists(), "an unchanged config gets no .new: {log}");
    assert_eq!(std::fs::read_to_string(etc.join("ingest.env")).unwrap(), "GRIDCAST_MQTT__PASSWORD=mine\n");
    assert_eq!(mode(&etc.join("ingest.env")), 0o600, "a loosened env file is made 0600 again");
}
