//! TLS configuration from PEM files, for MLLP listeners and clients.
//!
//! Map:
//! - [`server_config`]: certificate chain + private key, and optionally a CA file that client
//!   certificates must chain to (mutual TLS: a client without such a certificate is refused);
//! - [`client_config`]: the CA file that the server's certificate must chain to, and
//!   optionally a client certificate + key for mutual TLS;
//! - [`server_name`]: the name checked against the server's certificate.
//!
//! Invariants and choices:
//! - The cryptography is always rustls' `ring` provider, chosen explicitly, so the outcome
//!   does not depend on which provider another crate in the build happens to enable.
//! - Protocol versions are rustls' safe defaults (TLS 1.2 and 1.3).
//! - A client always needs a CA file. No trust roots are built in: `webpki-roots` is not a
//!   dependency, the platform store is not read, and a hospital interface engine should trust
//!   exactly the CAs it was configured with rather than every public CA.
//! - Every error names the file and what is wrong with it; no key material is ever printed.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};

/// What went wrong building a TLS configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// The file could not be read.
    #[error("cannot read {}: {error}", path.display())]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The file was read but does not hold what it should (no PEM section of the right kind,
    /// broken base64, a certificate that does not parse).
    #[error("{}: {problem}", path.display())]
    Content { path: PathBuf, problem: String },
    /// The files are each fine but rustls refuses them together (e.g. the key does not belong
    /// to the certificate).
    #[error("{} with {}: {problem}", cert.display(), key.display())]
    Pair {
        cert: PathBuf,
        key: PathBuf,
        problem: String,
    },
    /// The server name is not a DNS name or IP address.
    #[error("invalid tls server name {name:?}")]
    ServerName { name: String },
}

/// The crypto provider every configuration uses.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|error| TlsError::Read {
        path: path.to_path_buf(),
        error,
    })
}

fn content(path: &Path, problem: impl Into<String>) -> TlsError {
    TlsError::Content {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Every certificate in a PEM file, in file order; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not valid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "no CERTIFICATE section found"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = read(path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        rustls::pki_types::pem::Error::NoItemsFound => content(
            path,
            "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section found",
        ),
        other => content(path, format!("not valid PEM: {other}")),
    })
}

/// A root store holding every certificate of a CA file.
fn load_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for (i, cert) in load_certs(path)?.into_iter().enumerate() {
        roots.add(cert).map_err(|e| {
            content(
                path,
                format!("certificate {} is not usable as a trust anchor: {e}", i + 1),
            )
        })?;
    }
    Ok(roots)
}

/// A listener's TLS configuration.
///
/// `cert` holds the server's certificate first, then any intermediates; `key` its private
/// key. With `client_ca`, clients must present a certificate that chains to a CA in that file
/// (mutual TLS); without it, no client certificate is asked for.
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = load_certs(cert)?;
    let private_key = load_key(key)?;
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| content(cert, format!("no usable protocol version: {e}")))?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(load_roots(ca)?), provider)
                    .build()
                    .map_err(|e| {
                        content(
                            ca,
                            format!("cannot verify client certificates with it: {e}"),
                        )
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(chain, private_key)
        .map_err(|e| TlsError::Pair {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            problem: e.to_string(),
        })?;
    Ok(Arc::new(config))
}

/// A client's TLS configuration: the server must present a certificate that chains to a CA in
/// `ca`; with `client_cert` (certificate chain file, key file) the client proves itself too.
pub fn client_config(
    ca: &Path,
    client_cert: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let roots = load_roots(ca)?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| content(ca, format!("no usable protocol version: {e}")))?
        .with_root_certificates(roots);
    let config = match client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(load_certs(cert)?, load_key(key)?)
            .map_err(|e| TlsError::Pair {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
                problem: e.to_string(),
            })?,
    };
    Ok(Arc::new(config))
}

/// The name to check the server's certificate against: a DNS name or an IP address.
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string()).map_err(|_| TlsError::ServerName {
        name: name.to_string(),
    })
}

/// The host part of `host:port`, `[v6]:port` or a bare host, for the default server name.
pub fn host_of(addr: &str) -> &str {
    if let Some(rest) = addr.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match addr.rsplit_once(':') {
        // More than one colon and no brackets: a bare IPv6 address.
        Some((host, _)) if !host.contains(':') => host,
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_of_strips_the_port() {
        let cases = [
            ("lab.example.org:2575", "lab.example.org"),
            ("127.0.0.1:2575", "127.0.0.1"),
            ("[::1]:2575", "::1"),
            ("::1", "::1"),
            ("localhost", "localhost"),
        ];
        for (addr, host) in cases {
            assert_eq!(host_of(addr), host, "{addr}");
        }
    }

    #[test]
    fn server_names() {
        assert!(server_name("localhost").is_ok());
        assert!(server_name("127.0.0.1").is_ok());
        assert_eq!(
            server_name("not a name").unwrap_err().to_string(),
            "invalid tls server name \"not a name\""
        );
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let err = load_certs(&missing).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("cannot read {}: ", missing.display())),
            "{err}"
        );

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "just text\n").unwrap();
        assert_eq!(
            load_certs(&empty).unwrap_err().to_string(),
            format!("{}: no CERTIFICATE section found", empty.display())
        );
        assert_eq!(
            load_key(&empty).unwrap_err().to_string(),
            format!(
                "{}: no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY section found",
                empty.display()
            )
        );

        let broken = dir.path().join("broken.pem");
        std::fs::write(
            &broken,
            "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n",
        )
        .unwrap();
        let err = load_certs(&broken).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!("{}: not valid PEM: ", broken.display())),
            "{err}"
        );
    }
}
