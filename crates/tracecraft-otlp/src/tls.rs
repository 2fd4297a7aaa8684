//! The rustls client configuration shared by both transports: Mozilla's roots (webpki-roots),
//! the platform's roots where it has any, and an optional CA file for private collectors.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::config::BuildError;

/// Reads every certificate of a PEM file; errors name `setting` and the file.
fn read_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            BuildError::new(
                setting,
                format!("{}: cannot read PEM certificates: {e}", path.display()),
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            BuildError::new(
                setting,
                format!("{}: not valid PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(BuildError::new(
            setting,
            format!("{}: contains no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
}

/// A client certificate chain and its private key, for collectors that require mutual TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientIdentity<'a> {
    pub(crate) cert_file: &'a Path,
    pub(crate) key_file: &'a Path,
}

/// The root store: webpki roots, platform roots (when it has any), and `ca_file`.
pub(crate) fn root_store(ca_file: Option<&Path>) -> Result<RootCertStore, BuildError> {
    let mut roots = RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    };
    let native = rustls_native_certs::load_native_certs();
    if !native.errors.is_empty() {
        tracing::debug!(
            errors = native.errors.len(),
            "some platform certificates could not be loaded"
        );
    }
    let _ = roots.add_parsable_certificates(native.certs);
    if let Some(path) = ca_file {
        for cert in read_certs("ca_file", path)? {
            roots.add(cert).map_err(|e| {
                BuildError::new(
                    "ca_file",
                    format!("{}: unusable CA certificate: {e}", path.display()),
                )
            })?;
        }
    }
    Ok(roots)
}

/// A rustls client configuration on the `ring` provider (no C toolchain beyond a C compiler,
/// no cmake, no OpenSSL), presenting `identity` to servers that ask for a client certificate.
pub(crate) fn client_config(
    ca_file: Option<&Path>,
    identity: Option<ClientIdentity<'_>>,
) -> Result<rustls::ClientConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::new("ca_file", format!("TLS setup failed: {e}")))?
        .with_root_certificates(root_store(ca_file)?);
    let Some(identity) = identity else {
        return Ok(builder.with_no_client_auth());
    };
    let chain = read_certs("client_cert_file", identity.cert_file)?;
    // The key's content is never echoed: only the file and what is wrong.
    let key = PrivateKeyDer::from_pem_file(identity.key_file).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::Io(io) => format!("cannot read it: {io}"),
            _ => "not a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned(),
        };
        BuildError::new(
            "client_key_file",
            format!("{}: {why}", identity.key_file.display()),
        )
    })?;
    builder.with_client_auth_cert(chain, key).map_err(|e| {
        BuildError::new(
            "client_key_file",
            format!(
                "{} does not fit the client certificate {}: {e}",
                identity.key_file.display(),
                identity.cert_file.display()
            ),
        )
    })
}
