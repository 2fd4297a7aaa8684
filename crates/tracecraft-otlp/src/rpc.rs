//! The few `google.rpc` messages needed to read a server's retry delay from a gRPC status
//! (`grpc-status-details-bin`) and to write one (the gateway's `UNAVAILABLE`), declared by
//! hand (no protoc, no build script).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse;
use prost::Message;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RpcStatus {
    #[prost(int32, tag = "1")]
    pub(crate) code: i32,
    #[prost(string, tag = "2")]
    pub(crate) message: String,
    #[prost(message, repeated, tag = "3")]
    pub(crate) details: Vec<ProtoAny>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoAny {
    #[prost(string, tag = "1")]
    pub(crate) type_url: String,
    #[prost(bytes = "vec", tag = "2")]
    pub(crate) value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct RetryInfo {
    #[prost(message, optional, tag = "1")]
    pub(crate) retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub(crate) struct ProtoDuration {
    #[prost(int64, tag = "1")]
    pub(crate) seconds: i64,
    #[prost(int32, tag = "2")]
    pub(crate) nanos: i32,
}

/// The OTLP trace service.
pub(crate) const TRACE_SERVICE: &str = "opentelemetry.proto.collector.trace.v1.TraceService";
/// Its `Export` method's path.
pub(crate) const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// The gRPC channel the exporter calls through: tonic's [`Channel`], with each response's
/// `grpc-status-details-bin` (in its headers or its trailers) dropped when it is not
/// base64. tonic's client decodes that header with an `expect` (tonic 0.14,
/// `Status::from_header_map`): a broken or hostile collector could otherwise panic the
/// exporting thread with one response. What is dropped is only the details (the status's
/// code and message stay), and a warning says so (never the value).
///
/// [`Channel`]: tonic::transport::Channel
#[derive(Debug, Clone)]
pub(crate) struct CheckedChannel(pub(crate) tonic::transport::Channel);

/// The header tonic decodes with an `expect`.
const GRPC_STATUS_DETAILS: &str = "grpc-status-details-bin";

/// Drops `grpc-status-details-bin` from `headers` unless tonic can decode it (standard
/// alphabet, padding optional: tonic's own engine).
fn check_details(headers: &mut http::HeaderMap) {
    use base64::Engine as _;
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    const TONIC_BASE64: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    let bad = headers
        .get_all(GRPC_STATUS_DETAILS)
        .iter()
        .any(|v| TONIC_BASE64.decode(v.as_bytes()).is_err());
    if bad {
        headers.remove(GRPC_STATUS_DETAILS);
        tracing::warn!(
            "the collector's gRPC status details are not base64: ignored (the status's code and message are kept)"
        );
    }
}

impl<B> tonic::codegen::Service<http::Request<B>> for CheckedChannel
where
    tonic::transport::Channel: tonic::codegen::Service<
            http::Request<B>,
            Response = http::Response<tonic::body::Body>,
            Error = tonic::transport::Error,
        >,
    <tonic::transport::Channel as tonic::codegen::Service<http::Request<B>>>::Future:
        Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = tonic::transport::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        tonic::codegen::Service::poll_ready(&mut self.0, cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let response = tonic::codegen::Service::call(&mut self.0, request);
        Box::pin(async move {
            let mut response = response.await?;
            check_details(response.headers_mut());
            Ok(response.map(|body| tonic::body::Body::new(CheckedBody(body))))
        })
    }
}

/// A response body whose trailers pass [`check_details`].
struct CheckedBody(tonic::body::Body);

impl hyper::body::Body for CheckedBody {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        std::pin::Pin::new(&mut self.0).poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|mut frame| {
                    if let Some(trailers) = frame.trailers_mut() {
                        check_details(trailers);
                    }
                    frame
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.0.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.0.size_hint()
    }
}

/// A gRPC codec that sends an already encoded `ExportTraceServiceRequest` (the direct
/// encoder's bytes) and decodes the `ExportTraceServiceResponse`.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawCodec;

/// Writes pre-encoded message bytes.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RawEncoder;

/// Decodes the export response.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ResponseDecoder;

impl tonic::codec::Codec for RawCodec {
    type Encode = bytes::Bytes;
    type Decode = ExportTraceServiceResponse;
    type Encoder = RawEncoder;
    type Decoder = ResponseDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> ResponseDecoder {
        ResponseDecoder
    }
}

impl tonic::codec::Encoder for RawEncoder {
    type Item = bytes::Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: bytes::Bytes,
        buf: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        use bytes::BufMut;
        buf.put_slice(&item);
        Ok(())
    }
}

impl tonic::codec::Decoder for ResponseDecoder {
    type Item = ExportTraceServiceResponse;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        buf: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<ExportTraceServiceResponse>, tonic::Status> {
        ExportTraceServiceResponse::decode(buf)
            .map(Some)
            .map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

const RETRY_INFO_TYPE: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// The trailer some servers send a bare `RetryInfo` in.
pub(crate) const RETRY_INFO_TRAILER: &str = "google.rpc.retryinfo-bin";

/// The delay of a bare encoded `RetryInfo` (the `google.rpc.retryinfo-bin` trailer form).
pub(crate) fn retry_info_delay(bytes: &[u8]) -> Option<Duration> {
    RetryInfo::decode(bytes).ok()?.retry_delay.map(to_duration)
}

fn to_duration(d: ProtoDuration) -> Duration {
    Duration::from_secs(u64::try_from(d.seconds).unwrap_or(0))
        + Duration::from_nanos(u64::try_from(d.nanos).unwrap_or(0))
}

/// A bare encoded `RetryInfo` of `delay` (for servers and tests).
#[cfg_attr(not(any(test, feature = "testing")), allow(dead_code))]
pub(crate) fn retry_info(delay: Duration) -> Vec<u8> {
    RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    }
    .encode_to_vec()
}

/// The `RetryInfo` delay in a status's details (`grpc-status-details-bin`, an encoded
/// `google.rpc.Status`), if any (negative delays count as zero).
#[must_use]
pub fn retry_delay(details: &[u8]) -> Option<Duration> {
    if details.is_empty() {
        return None;
    }
    let status = RpcStatus::decode(details).ok()?;
    status
        .details
        .iter()
        .filter(|d| d.type_url == RETRY_INFO_TYPE)
        .find_map(|d| RetryInfo::decode(d.value.as_slice()).ok()?.retry_delay)
        .map(to_duration)
}

/// Encodes a `google.rpc.Status` of `code` whose details carry a `RetryInfo` of `delay`: the
/// details of a gRPC status that tells OpenTelemetry SDKs when to retry.
#[must_use]
pub fn status_details_with_retry(code: i32, delay: Duration) -> Vec<u8> {
    let info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    RpcStatus {
        code,
        message: String::new(),
        details: vec![ProtoAny {
            type_url: RETRY_INFO_TYPE.to_owned(),
            value: info.encode_to_vec(),
        }],
    }
    .encode_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trip() {
        let d = status_details_with_retry(8, Duration::from_millis(1500));
        assert_eq!(retry_delay(&d), Some(Duration::from_millis(1500)));
        assert_eq!(retry_delay(&[]), None);
        assert_eq!(retry_delay(b"\xff\xff garbage"), None);
    }
}
