//! [`ExportFailure`]: why an OTLP export failed, typed, with a `Display` fit for one summary
//! line (the cause, the collector, a hint, the attempts; never a payload, a header value or the
//! server's free text).

use std::fmt;
use std::time::Duration;

/// Why an export to a collector failed. Reached through
/// [`ExportError::cause`](tracecraft_core::ExportError::cause):
///
/// ```
/// # fn f(e: &tracecraft_core::ExportError) {
/// use tracecraft_otlp::{Cause, ExportFailure};
/// if let Some(f) = e.cause().and_then(|c| c.downcast_ref::<ExportFailure>()) {
///     if let Cause::Http { status: 401, .. } = f.cause { /* wrong credentials */ }
/// }
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ExportFailure {
    /// The collector (`host:port`).
    pub collector: String,
    /// What went wrong.
    pub cause: Cause,
    /// Attempts made (1 when the failure is not retryable).
    pub attempts: u32,
}

/// The cause of an [`ExportFailure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cause {
    /// The collector answered with an HTTP error status.
    Http {
        /// The status code.
        status: u16,
    },
    /// The collector answered with a gRPC error status.
    Grpc {
        /// The status code.
        code: tonic::Code,
    },
    /// The TLS handshake failed. Never retried: a certificate does not get better in seconds.
    Tls(TlsProblem),
    /// No connection, or the connection broke before the reply.
    Connect(ConnectProblem),
    /// No answer within the per-attempt timeout. The collector may still have stored the
    /// spans: delivery is at-least-once, and a collector that deduplicates by span id sees
    /// each span once.
    Timeout {
        /// The timeout.
        after: Duration,
    },
    /// The request could not be encoded (compression failed).
    Encode,
}

/// Why a TLS handshake failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TlsProblem {
    /// The collector's certificate is signed by a CA we do not trust (set `ca_file`).
    UnknownIssuer,
    /// The collector's certificate has expired.
    Expired,
    /// The collector's certificate is not valid yet.
    NotYetValid,
    /// The collector's certificate is not valid for the host name in the endpoint.
    WrongName,
    /// The collector's certificate was revoked.
    Revoked,
    /// The collector's certificate is otherwise invalid.
    BadCertificate,
    /// The collector refused the handshake (a TLS alert): usually a missing or untrusted
    /// client certificate where mutual TLS is required.
    RefusedByCollector,
    /// Another handshake failure (protocol versions, cipher suites, ...).
    Handshake,
}

/// Why a connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConnectProblem {
    /// Nothing listens at the address.
    Refused,
    /// The host name did not resolve.
    Dns,
    /// No route to the host or network.
    Unreachable,
    /// The connection was reset or closed before the reply.
    Closed,
    /// Another I/O or HTTP/2 failure.
    Other,
}

impl Cause {
    /// Whether another attempt may succeed (the OpenTelemetry specification's list: HTTP 429,
    /// 502, 503, 504; gRPC `UNAVAILABLE`, `DEADLINE_EXCEEDED`, ...; connection failures and
    /// timeouts). TLS problems are never retried.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        use tonic::Code as C;
        match *self {
            Cause::Http { status } => matches!(status, 429 | 502 | 503 | 504),
            Cause::Grpc { code } => matches!(
                code,
                C::Cancelled
                    | C::DeadlineExceeded
                    | C::Aborted
                    | C::OutOfRange
                    | C::Unavailable
                    | C::DataLoss
            ),
            Cause::Tls(_) | Cause::Encode => false,
            Cause::Connect(_) | Cause::Timeout { .. } => true,
        }
    }

    /// What to check, where the cause says.
    #[must_use]
    pub fn hint(&self) -> Option<&'static str> {
        use tonic::Code as C;
        Some(match *self {
            Cause::Http { status: 401 | 403 }
            | Cause::Grpc {
                code: C::Unauthenticated | C::PermissionDenied,
            } => "check the credentials in the OTLP headers",
            Cause::Http { status: 404 | 405 } => {
                "is the endpoint the collector's OTLP/HTTP traces URL (.../v1/traces)?"
            }
            Cause::Http { status: 400 | 422 } => {
                "the collector refused the request: does it require a header (e.g. x-mlflow-experiment-id for MLflow, a tenant or project id)?"
            }
            Cause::Http { status: 413 }
            | Cause::Grpc {
                code: C::ResourceExhausted,
            } => "the request is too large for the collector: lower max_request_bytes",
            Cause::Http { status: 415 } => "the collector does not accept OTLP/HTTP protobuf",
            Cause::Http { status: 300..=399 } => "redirects are not followed: use the final URL",
            Cause::Grpc {
                code: C::Unimplemented,
            } => "is the endpoint an OTLP/gRPC collector (host:port, usually 4317, no path)?",
            Cause::Tls(TlsProblem::UnknownIssuer) => {
                "set ca_file to the CA that signed the collector's certificate"
            }
            Cause::Tls(TlsProblem::WrongName) => {
                "the endpoint's host name must be one the certificate names"
            }
            Cause::Tls(TlsProblem::RefusedByCollector) => {
                "does the collector require a client certificate (client_cert_file, client_key_file)?"
            }
            Cause::Connect(ConnectProblem::Refused) => "is the collector running?",
            Cause::Connect(ConnectProblem::Closed) => {
                "does the collector require a client certificate (it then closes the connection after the handshake)?"
            }
            Cause::Timeout { .. } => "the collector may have stored the spans anyway",
            _ => return None,
        })
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Cause::Http { status } => {
                let reason = http::StatusCode::from_u16(*status)
                    .ok()
                    .and_then(|s| s.canonical_reason())
                    .unwrap_or("");
                write!(f, "HTTP {status} {reason}")
            }
            Cause::Grpc { code } => write!(f, "gRPC status {}", code_name(*code)),
            Cause::Tls(p) => write!(f, "TLS handshake failed: {p}"),
            Cause::Connect(p) => write!(f, "cannot connect: {p}"),
            Cause::Timeout { after } => write!(f, "no answer within {after:?}"),
            Cause::Encode => f.write_str("the request could not be compressed"),
        }
    }
}

impl fmt::Display for TlsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TlsProblem::UnknownIssuer => "the collector's certificate is signed by an unknown CA",
            TlsProblem::Expired => "the collector's certificate has expired",
            TlsProblem::NotYetValid => "the collector's certificate is not valid yet",
            TlsProblem::WrongName => "the collector's certificate is not valid for this host name",
            TlsProblem::Revoked => "the collector's certificate was revoked",
            TlsProblem::BadCertificate => "the collector's certificate is invalid",
            TlsProblem::RefusedByCollector => "the collector refused the handshake (TLS alert)",
            TlsProblem::Handshake => "no common protocol or cipher suite",
        })
    }
}

impl fmt::Display for ConnectProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ConnectProblem::Refused => "connection refused",
            ConnectProblem::Dns => "the host name does not resolve",
            ConnectProblem::Unreachable => "no route to the host",
            ConnectProblem::Closed => "the connection was closed before the reply",
            ConnectProblem::Other => "transport error",
        })
    }
}

impl fmt::Display for ExportFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cause)?;
        if let Some(hint) = self.cause.hint() {
            write!(f, ": {hint}")?;
        }
        write!(f, " (collector {}", self.collector)?;
        if self.attempts > 1 {
            write!(f, ", after {} attempts", self.attempts)?;
        }
        f.write_str(")")
    }
}

impl std::error::Error for ExportFailure {}

/// The canonical gRPC status name.
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "CANCELLED",
        C::Unknown => "UNKNOWN",
        C::InvalidArgument => "INVALID_ARGUMENT",
        C::DeadlineExceeded => "DEADLINE_EXCEEDED",
        C::NotFound => "NOT_FOUND",
        C::AlreadyExists => "ALREADY_EXISTS",
        C::PermissionDenied => "PERMISSION_DENIED",
        C::ResourceExhausted => "RESOURCE_EXHAUSTED",
        C::FailedPrecondition => "FAILED_PRECONDITION",
        C::Aborted => "ABORTED",
        C::OutOfRange => "OUT_OF_RANGE",
        C::Unimplemented => "UNIMPLEMENTED",
        C::Internal => "INTERNAL",
        C::Unavailable => "UNAVAILABLE",
        C::DataLoss => "DATA_LOSS",
        C::Unauthenticated => "UNAUTHENTICATED",
    }
}

fn tls_problem(e: &rustls::Error) -> TlsProblem {
    use rustls::CertificateError as C;
    match e {
        rustls::Error::InvalidCertificate(c) => match c {
            C::UnknownIssuer => TlsProblem::UnknownIssuer,
            C::Expired | C::ExpiredContext { .. } => TlsProblem::Expired,
            C::NotValidYet | C::NotValidYetContext { .. } => TlsProblem::NotYetValid,
            C::NotValidForName | C::NotValidForNameContext { .. } => TlsProblem::WrongName,
            C::Revoked => TlsProblem::Revoked,
            _ => TlsProblem::BadCertificate,
        },
        rustls::Error::AlertReceived(_) => TlsProblem::RefusedByCollector,
        _ => TlsProblem::Handshake,
    }
}

/// A rustls error's `Display` text (`received fatal alert: ...`, `invalid peer certificate:
/// ...`), for layers that kept the text only. Never echoes the text itself.
fn tls_problem_in_text(text: &str) -> Option<TlsProblem> {
    if text.contains("received fatal alert") {
        return Some(TlsProblem::RefusedByCollector);
    }
    let rest = text.split("invalid peer certificate: ").nth(1)?;
    Some(if rest.starts_with("UnknownIssuer") {
        TlsProblem::UnknownIssuer
    } else if rest.starts_with("Expired") {
        TlsProblem::Expired
    } else if rest.starts_with("NotValidYet") {
        TlsProblem::NotYetValid
    } else if rest.starts_with("NotValidForName") || rest.contains("not valid for name") {
        TlsProblem::WrongName
    } else if rest.starts_with("Revoked") {
        TlsProblem::Revoked
    } else {
        TlsProblem::BadCertificate
    })
}

/// The cause of a transport failure, from its error chain: a rustls error anywhere in it is a
/// TLS problem; else the first telling I/O error kind; else DNS when the connector says so.
pub(crate) fn transport_cause(e: &(dyn std::error::Error + 'static)) -> Cause {
    let mut kind = None;
    let mut dns = false;
    let mut current = Some(e);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Cause::Tls(tls_problem(tls));
        }
        let text = err.to_string();
        // Some layers keep only the text of the rustls error (an io::Error with a message).
        if let Some(problem) = tls_problem_in_text(&text) {
            return Cause::Tls(problem);
        }
        dns |= text.starts_with("dns error") || text.contains("failed to lookup address");
        current = err.source();
        if let Some(h) = err.downcast_ref::<hyper::Error>()
            && (h.is_canceled() || h.is_closed() || h.is_incomplete_message())
        {
            kind = kind.or(Some(ConnectProblem::Closed));
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind as K;
            let problem = match io.kind() {
                K::ConnectionRefused => Some(ConnectProblem::Refused),
                K::ConnectionReset
                | K::ConnectionAborted
                | K::BrokenPipe
                | K::UnexpectedEof
                | K::NotConnected => Some(ConnectProblem::Closed),
                K::HostUnreachable | K::NetworkUnreachable | K::AddrNotAvailable => {
                    Some(ConnectProblem::Unreachable)
                }
                _ => None,
            };
            kind = kind.or(problem);
            // An io::Error's `source()` skips its inner error (which may be another io::Error
            // around the rustls error): walk into the inner error instead.
            if let Some(inner) = io.get_ref() {
                current = Some(inner as &(dyn std::error::Error + 'static));
            }
        }
    }
    Cause::Connect(kind.unwrap_or(if dns {
        ConnectProblem::Dns
    } else {
        ConnectProblem::Other
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_problems_are_read_from_text_only_errors() {
        let io = |text: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, text.to_owned());
        for (text, cause) in [
            (
                "received fatal alert: CertificateRequired",
                Cause::Tls(TlsProblem::RefusedByCollector),
            ),
            (
                "invalid peer certificate: UnknownIssuer",
                Cause::Tls(TlsProblem::UnknownIssuer),
            ),
            (
                "invalid peer certificate: Expired",
                Cause::Tls(TlsProblem::Expired),
            ),
            ("something else", Cause::Connect(ConnectProblem::Other)),
        ] {
            assert_eq!(transport_cause(&io(text)), cause, "{text}");
        }
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert_eq!(
            transport_cause(&refused),
            Cause::Connect(ConnectProblem::Refused)
        );
        let typed = std::io::Error::other(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        ));
        assert_eq!(transport_cause(&typed), Cause::Tls(TlsProblem::WrongName));
    }

    #[test]
    fn summary_lines_are_one_line_with_hint_and_attempts() {
        let f = ExportFailure {
            collector: "c:4318".into(),
            cause: Cause::Http { status: 401 },
            attempts: 1,
        };
        assert_eq!(
            f.to_string(),
            "HTTP 401 Unauthorized: check the credentials in the OTLP headers (collector c:4318)"
        );
        let f = ExportFailure {
            collector: "c:4317".into(),
            cause: Cause::Connect(ConnectProblem::Refused),
            attempts: 3,
        };
        assert_eq!(
            f.to_string(),
            "cannot connect: connection refused: is the collector running? (collector c:4317, after 3 attempts)"
        );
        assert!(!Cause::Tls(TlsProblem::Expired).is_retryable());
        assert!(Cause::Http { status: 503 }.is_retryable());
    }
}
