//! The rustls client configuration shared by both transports: Mozilla's roots (webpki-roots),
//! the platform's roots where it has any, and an optional CA file for private collectors.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::BuildError;

/// Reads every certificate of a PEM file.
fn read_ca_file(path: &Path) -> Result<Vec<CertificateDer<'static>>, BuildError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| {
            BuildError::new(
                "ca_file",
                format!("{}: cannot read PEM certificates: {e}", path.display()),
            )
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| {
            BuildError::new(
                "ca_file",
                format!("{}: not valid PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(BuildError::new(
            "ca_file",
            format!("{}: contains no PEM certificate", path.display()),
        ));
    }
    Ok(certs)
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
        for cert in read_ca_file(path)? {
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
/// no cmake, no OpenSSL).
pub(crate) fn client_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, BuildError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| BuildError::new("ca_file", format!("TLS setup failed: {e}")))?
        .with_root_certificates(root_store(ca_file)?)
        .with_no_client_auth();
    Ok(config)
}
