//! TLS to the broker, and what a refused connection means.
//!
//! [`client_config`] turns `[mqtt] tls`, `ca_file`, `client_cert_file` and
//! `client_key_file` into a rustls client config: the broker is trusted only
//! if its certificate chains to `ca_file` (no system roots: a device talks
//! to its own broker), and with a client certificate and key we present
//! them for mutual TLS. The files are read and checked when the config is
//! loaded ([`crate::config::MqttConfig::validate`]), so a missing or broken
//! one stops the service at start with the key and the path; it is never
//! retried. The crypto provider is aws-lc-rs, the one reqwest already
//! builds, named here so that no process-wide default is needed.
//!
//! [`explain`] reads a failed connection (`rumqttc::ConnectionError`) and
//! says what went wrong in terms of the config: an untrusted or expired
//! broker certificate, a client certificate the broker refused, a wrong
//! username or password. Those cannot heal by themselves, but the broker or
//! the files may be fixed while we wait, so the source still retries them
//! with backoff, logging this explanation each time. Pure functions of
//! their inputs: unit-tested below without a socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{ConnectReturnCode, ConnectionError};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{AlertDescription, CertificateError, ClientConfig, RootCertStore};

use crate::config::MqttConfig;

/// Why the TLS settings cannot be used: found at start, never retried.
/// The underlying errors are in the message, not chained as `source`:
/// `{:#}` at the binary's edge would print them twice.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("invalid [mqtt] section: {0}")]
    Settings(String),
    #[error("[mqtt] {key}: cannot read {}: {error}", path.display())]
    Read { key: &'static str, path: PathBuf, error: std::io::Error },
    #[error("[mqtt] {key}: {} holds no usable {what}: {detail}", path.display())]
    Pem { key: &'static str, path: PathBuf, what: &'static str, detail: String },
    #[error("[mqtt] ca_file: certificate {index} in {} is not a usable CA certificate: {error}", path.display())]
    BadCa { path: PathBuf, index: usize, error: rustls::Error },
    #[error(
        "[mqtt] client_cert_file {} and client_key_file {} cannot be used together: {error} \
         (is the key the one of this certificate, in PEM, RSA, ECDSA or Ed25519?)",
        cert.display(),
        key.display()
    )]
    ClientAuth { cert: PathBuf, key: PathBuf, error: rustls::Error },
    #[error("cannot set up TLS: {0}")]
    Rustls(rustls::Error),
}

/// The rustls config `[mqtt]` asks for, or `None` without `tls = true`.
/// Reads `ca_file` and, for mutual TLS, `client_cert_file` and
/// `client_key_file` (PEM). The key's bytes never appear in an error.
pub fn client_config(config: &MqttConfig) -> Result<Option<Arc<ClientConfig>>, TlsSetupError> {
    let client_files = match (&config.client_cert_file, &config.client_key_file) {
        (Some(cert), Some(key)) => Some((cert.as_path(), key.as_path())),
        (None, None) => None,
        (Some(_), None) | (None, Some(_)) => {
            return Err(TlsSetupError::Settings(
                "client_cert_file and client_key_file go together: set both (mutual TLS) or neither".into(),
            ));
        }
    };
    if !config.tls {
        if config.ca_file.is_some() || client_files.is_some() {
            return Err(TlsSetupError::Settings(
                "ca_file, client_cert_file or client_key_file is set but tls = false: set tls = true \
                 (and the broker's TLS port, often 8883), or remove them"
                    .into(),
            ));
        }
        return Ok(None);
    }
    let Some(ca_file) = &config.ca_file else {
        return Err(TlsSetupError::Settings(
            "tls = true needs ca_file: the PEM file of the CA that signed the broker's certificate".into(),
        ));
    };
    let mut roots = RootCertStore::empty();
    for (index, ca) in read_certificates("ca_file", ca_file)?.into_iter().enumerate() {
        roots.add(ca).map_err(|error| TlsSetupError::BadCa { path: ca_file.clone(), index: index + 1, error })?;
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Rustls)?
        .with_root_certificates(roots);
    let config = match client_files {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certificates("client_cert_file", cert)?;
            let private_key = read_private_key(key)?;
            builder.with_client_auth_cert(chain, private_key).map_err(|error| TlsSetupError::ClientAuth {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                error,
            })?
        }
    };
    Ok(Some(Arc::new(config)))
}

fn read_file(key: &'static str, path: &Path) -> Result<Vec<u8>, TlsSetupError> {
    std::fs::read(path).map_err(|error| TlsSetupError::Read { key, path: path.to_path_buf(), error })
}

/// Every `CERTIFICATE` section of a PEM file; at least one.
fn read_certificates(key: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsSetupError> {
    let bytes = read_file(key, path)?;
    let pem_error = |detail: String| TlsSetupError::Pem {
        key,
        path: path.to_path_buf(),
        what: "PEM certificate (-----BEGIN CERTIFICATE-----)",
        detail,
    };
    let certs =
        CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(pem_error("no CERTIFICATE section found".into()));
    }
    Ok(certs)
}

/// The first private key of a PEM file (PKCS#8, PKCS#1 or SEC1). Its
/// content is a secret: errors say what is wrong, never what is there.
fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsSetupError> {
    let bytes = read_file("client_key_file", path)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsSetupError::Pem {
        key: "client_key_file",
        path: path.to_path_buf(),
        what: "PEM private key (-----BEGIN PRIVATE KEY-----, RSA or EC)",
        detail: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no private key section found".into(),
            rustls::pki_types::pem::Error::Base64Decode(_) => "a section is not valid base64".into(),
            rustls::pki_types::pem::Error::MissingSectionEnd { .. } => "a section has no END line".into(),
            rustls::pki_types::pem::Error::SectionTooLarge => "a section is too large".into(),
            _ => "not a PEM file".into(),
        },
    })
}

/// What a failed connection means, said in terms of the config, when it
/// is a refusal that needs a person (credentials, certificates, CA); `None`
/// for ordinary network trouble (a broker restarting, a cut link).
pub fn explain(error: &ConnectionError, config: &MqttConfig) -> Option<String> {
    if let ConnectionError::ConnectionRefused(code) = error {
        return Some(refused(*code, config));
    }
    let tls_error = rustls_error(error)?;
    let ca = config.ca_file.as_deref().map_or("(none)".into(), |p| p.display().to_string());
    let client_cert = config.client_cert_file.as_deref().map(|p| p.display().to_string());
    let ours = client_cert.as_deref().map_or("our client certificate (none is configured)".into(), |p| {
        format!("our client certificate (client_cert_file {p})")
    });
    Some(match tls_error {
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
            "the broker's certificate is not trusted by ca_file {ca}: UnknownIssuer (it was not signed by that CA: \
             point ca_file at the CA that signed the broker's certificate)"
        ),
        rustls::Error::InvalidCertificate(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            format!("the broker's certificate has expired ({tls_error}): renew it on the broker")
        }
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => format!(
            "the broker's certificate is not valid yet ({tls_error}): check this device's clock, or the certificate's dates"
        ),
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => format!(
            "the broker's certificate is not valid for host {:?} ({tls_error}): set [mqtt] host to a name or address \
             the certificate lists (its subjectAltName)",
            config.host
        ),
        rustls::Error::InvalidCertificate(_) => {
            format!("the broker's certificate was refused ({tls_error}); ca_file is {ca}")
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateExpired) => {
            format!("the broker refused {ours}: it has expired (CertificateExpired): renew it")
        }
        rustls::Error::AlertReceived(AlertDescription::CertificateRequired) => {
            "the broker requires a client certificate (CertificateRequired): set [mqtt] client_cert_file and \
             client_key_file"
                .to_string()
        }
        rustls::Error::AlertReceived(
            alert @ (AlertDescription::UnknownCA
            | AlertDescription::BadCertificate
            | AlertDescription::UnsupportedCertificate
            | AlertDescription::CertificateRevoked
            | AlertDescription::CertificateUnknown
            | AlertDescription::AccessDenied),
        ) => format!(
            "the broker refused {ours} ({alert:?}): it must be valid and signed by a CA in the broker's own cafile"
        ),
        rustls::Error::AlertReceived(alert) => {
            format!("the broker ended the TLS handshake ({alert:?}): see the broker's log for why")
        }
        rustls::Error::InvalidMessage(_) => format!(
            "the broker did not answer in TLS ({tls_error}): is port {} its TLS listener, not a plain one?",
            config.port
        ),
        other => format!("TLS with the broker failed: {other}"),
    })
}

fn refused(code: ConnectReturnCode, config: &MqttConfig) -> String {
    match (code, &config.username) {
        (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized, Some(user)) => format!(
            "the broker refused our username/password ({code:?}) for user {user:?}: check [mqtt] username and \
             password (or password_file) against the broker's password file"
        ),
        (ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized, None) => format!(
            "the broker refused us without a username/password ({code:?}): set [mqtt] username and password \
             (or password_file)"
        ),
        (ConnectReturnCode::BadClientId, _) => {
            format!("the broker refused our client id {:?} ({code:?}): set another [mqtt] client_id", config.client_id)
        }
        _ => format!("the broker refused the connection ({code:?})"),
    }
}

/// The rustls error under a connection error, if any. A TLS failure comes
/// wrapped in an `io::Error` (tokio-rustls), either while connecting
/// (`ConnectionError::Tls`) or on the first read after it: with TLS 1.3
/// the broker judges our certificate after our side of the handshake is
/// done, so its refusal arrives as an alert while we read the ConnAck
/// (Mosquitto's, for an expired certificate, came as
/// `ConnectionError::MqttState`, a deserialization error over the
/// `io::Error`). `io::Error::source` skips the wrapped error itself, so
/// each `io::Error` is opened with `get_ref`.
fn rustls_error(error: &ConnectionError) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = next {
        if let Some(tls) = current.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = current.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            if let Some(tls) = inner.downcast_ref::<rustls::Error>() {
                return Some(tls);
            }
            next = Some(inner);
            continue;
        }
        next = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn io_wrapped(error: rustls::Error) -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, error)
    }

    fn tls_config() -> MqttConfig {
        MqttConfig {
            tls: true,
            port: 8883,
            ca_file: Some("/etc/gridcast/ca.pem".into()),
            client_cert_file: Some("/etc/gridcast/client.pem".into()),
            client_key_file: Some("/etc/gridcast/client.key".into()),
            username: Some("meter-gw".into()),
            ..MqttConfig::default()
        }
    }

    #[test]
    fn an_untrusted_broker_certificate_names_ca_file_during_the_handshake() {
        let error = ConnectionError::Tls(rumqttc::TlsError::Io(io_wrapped(rustls::Error::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ))));
        let message = explain(&error, &tls_config()).unwrap();
        assert!(message.contains("not trusted by ca_file /etc/gridcast/ca.pem: UnknownIssuer"), "{message}");
    }

    #[test]
    fn an_expired_client_certificate_is_read_from_the_alert_after_the_handshake() {
        let error = ConnectionError::Io(io_wrapped(rustls::Error::AlertReceived(AlertDescription::CertificateExpired)));
        let message = explain(&error, &tls_config()).unwrap();
        assert!(
            message.contains("refused our client certificate (client_cert_file /etc/gridcast/client.pem)")
                && message.contains("expired"),
            "{message}"
        );
        let expired = rustls::Error::InvalidCertificate(CertificateError::Expired);
        let message = explain(&ConnectionError::Io(io_wrapped(expired)), &tls_config()).unwrap();
        assert!(message.contains("the broker's certificate has expired"), "{message}");
    }

    #[test]
    fn a_refused_connack_says_which_credentials_to_check() {
        for code in [ConnectReturnCode::BadUserNamePassword, ConnectReturnCode::NotAuthorized] {
            let message = explain(&ConnectionError::ConnectionRefused(code), &tls_config()).unwrap();
            assert!(message.contains("the broker refused our username/password"), "{message}");
        }
        let anonymous = MqttConfig::default();
        let message =
            explain(&ConnectionError::ConnectionRefused(ConnectReturnCode::NotAuthorized), &anonymous).unwrap();
        assert!(message.contains("set [mqtt] username and password"), "{message}");
    }

    #[test]
    fn ordinary_network_trouble_is_not_explained_as_a_refusal() {
        let reset = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        assert_eq!(explain(&ConnectionError::Io(reset), &tls_config()), None);
        assert_eq!(explain(&ConnectionError::NetworkTimeout, &tls_config()), None);
    }

    #[test]
    fn inconsistent_tls_settings_are_refused_before_any_file_is_read() {
        let mut config = tls_config();
        config.client_key_file = None;
        let error = client_config(&config).unwrap_err().to_string();
        assert!(error.contains("client_cert_file and client_key_file go together"), "{error}");
        let config = MqttConfig { ca_file: Some("/x/ca.pem".into()), ..MqttConfig::default() };
        let error = client_config(&config).unwrap_err().to_string();
        assert!(error.contains("tls = false"), "{error}");
        let config = MqttConfig { tls: true, ..MqttConfig::default() };
        let error = client_config(&config).unwrap_err().to_string();
        assert!(error.contains("tls = true needs ca_file"), "{error}");
        assert!(client_config(&MqttConfig::default()).unwrap().is_none());
    }

    #[test]
    fn a_missing_or_non_pem_file_is_named_with_its_key_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("no-ca.pem");
        let config = MqttConfig { tls: true, ca_file: Some(missing.clone()), ..MqttConfig::default() };
        let error = client_config(&config).unwrap_err().to_string();
        assert!(error.contains("[mqtt] ca_file: cannot read") && error.contains(missing.to_str().unwrap()), "{error}");
        let not_pem = dir.path().join("ca.der");
        std::fs::write(&not_pem, b"\x30\x82 binary").unwrap();
        let config = MqttConfig { tls: true, ca_file: Some(not_pem.clone()), ..MqttConfig::default() };
        let error = client_config(&config).unwrap_err().to_string();
        assert!(error.contains("no usable PEM certificate") && error.contains(not_pem.to_str().unwrap()), "{error}");
    }
}
