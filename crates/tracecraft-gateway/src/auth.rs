//! Bearer tokens: held as SHA-256 digests, compared in constant time.

use std::sync::Arc;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{ConfigError, TokenConfig, invalid};

/// Who sent a request: the tenant its token is bound to, if any.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Caller {
    pub(crate) tenant: Option<Arc<str>>,
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AuthError {
    Missing,
    Invalid,
}

impl AuthError {
    pub(crate) fn message(self) -> &'static str {
        match self {
            AuthError::Missing => "missing bearer token (Authorization: Bearer ...)",
            AuthError::Invalid => "invalid bearer token",
        }
    }
}

/// The accepted tokens.
pub(crate) struct Tokens {
    digests: Vec<([u8; 32], Option<Arc<str>>)>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokens")
            .field("count", &self.digests.len())
            .finish()
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl Tokens {
    /// Reads every token source (files, environment variables).
    pub(crate) fn load(configs: &[TokenConfig]) -> Result<Tokens, ConfigError> {
        let mut digests = Vec::with_capacity(configs.len());
        for (i, t) in configs.iter().enumerate() {
            let d = if let Some(hex_digest) = &t.sha256 {
                let mut d = [0u8; 32];
                hex::decode_to_slice(hex_digest, &mut d).map_err(|_| {
                    invalid(format!("tokens[{i}].sha256"), "expected 64 hex digits")
                })?;
                d
            } else if let Some(path) = &t.file {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    invalid(
                        format!("tokens[{i}].file"),
                        format!("cannot read {}: {e}", path.display()),
                    )
                })?;
                let token = text.trim();
                if token.is_empty() {
                    return Err(invalid(format!("tokens[{i}].file"), "the file is empty"));
                }
                digest(token.as_bytes())
            } else if let Some(var) = &t.env {
                let token = std::env::var(var).map_err(|_| {
                    invalid(
                        format!("tokens[{i}].env"),
                        format!("environment variable {var} is not set"),
                    )
                })?;
                if token.trim().is_empty() {
                    return Err(invalid(format!("tokens[{i}].env"), "the variable is empty"));
                }
                digest(token.trim().as_bytes())
            } else {
                return Err(invalid(
                    format!("tokens[{i}]"),
                    "give exactly one of sha256, file, env",
                ));
            };
            digests.push((d, t.tenant.as_deref().map(Arc::from)));
        }
        Ok(Tokens { digests })
    }

    /// No tokens configured: every request is accepted, without a tenant.
    pub(crate) fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// The caller a request's `Authorization` header identifies. Every configured digest
    /// is compared (in constant time), whichever matches.
    pub(crate) fn check(&self, authorization: Option<&[u8]>) -> Result<Caller, AuthError> {
        if self.is_open() {
            return Ok(Caller { tenant: None });
        }
        let header = authorization.ok_or(AuthError::Missing)?;
        let token = header
            .strip_prefix(b"Bearer ")
            .or_else(|| header.strip_prefix(b"bearer "))
            .ok_or(AuthError::Missing)?
            .trim_ascii();
        let presented = digest(token);
        let mut found: Option<&Option<Arc<str>>> = None;
        for (d, tenant) in &self.digests {
            if bool::from(d.ct_eq(&presented)) && found.is_none() {
                found = Some(tenant);
            }
        }
        match found {
            Some(tenant) => Ok(Caller {
                tenant: tenant.clone(),
            }),
            None => Err(AuthError::Invalid),
        }
    }
}

/// The SHA-256 digest (hex) of a token, as `tokens[].sha256` expects.
#[must_use]
pub fn token_digest(token: &str) -> String {
    hex::encode(digest(token.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_map_to_tenants_and_others_are_refused() {
        let tokens = Tokens::load(&[
            TokenConfig::sha256(token_digest("t-acme")).tenant("acme"),
            TokenConfig::sha256(token_digest("t-open")),
        ])
        .unwrap();
        let c = tokens.check(Some(b"Bearer t-acme")).unwrap();
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert_eq!(tokens.check(Some(b"Bearer t-open")).unwrap().tenant, None);
        assert_eq!(tokens.check(Some(b"Bearer nope")), Err(AuthError::Invalid));
        assert_eq!(tokens.check(Some(b"Basic x")), Err(AuthError::Missing));
        assert_eq!(tokens.check(None), Err(AuthError::Missing));
    }

    #[test]
    fn file_and_env_sources() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("tok");
        std::fs::write(&f, "from-file\n").unwrap();
        let tokens = Tokens::load(&[TokenConfig::file(&f)]).unwrap();
        assert!(tokens.check(Some(b"Bearer from-file")).is_ok());
        let e = Tokens::load(&[TokenConfig::env("TRACECRAFT_GATEWAY_TEST_UNSET_VAR")]).unwrap_err();
        assert!(e.to_string().contains("tokens[0].env"));
    }
}
