//! Shared test harness: a gateway on 127.0.0.1:0 whose tenants store in memory.
#![allow(dead_code, unreachable_pub)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};
use tracecraft_core::testing::MemoryStore;
use tracecraft_core::{AgentRun, TraceQuery, TraceStore};
use tracecraft_gateway::{Gateway, GatewayConfigBuilder};
use tracecraft_pipeline::PipelineConfig;

/// Secrets the tests send; none may be stored.
pub const SECRETS: &[&str] = &[
    "sk-proj-Abc123def456GHI789jkl012mno",
    "ghp_abcdefghijklmnopqrstuvwxyz0123456789",
    "jane.doe@corp-mail.com",
    "AKIAQWERTYUIOPASDFGH",
];

pub type Stores = Arc<Mutex<HashMap<Option<String>, Arc<MemoryStore>>>>;

pub struct Harness {
    pub gateway: Gateway,
    pub stores: Stores,
}

impl Harness {
    pub fn start(builder: GatewayConfigBuilder) -> Harness {
        let config = builder
            .grpc(Some("127.0.0.1:0".parse().unwrap()))
            .http(Some("127.0.0.1:0".parse().unwrap()))
            .log_interval_s(0)
            .build()
            .unwrap();
        let stores: Stores = Arc::default();
        let s = Arc::clone(&stores);
        let gateway = Gateway::start(&config, move |tenant: Option<&str>| {
            let store = Arc::new(MemoryStore::new());
            s.lock()
                .unwrap()
                .insert(tenant.map(str::to_owned), Arc::clone(&store));
            PipelineConfig::default()
                .builder()
                .and_then(|b| b.store(store).build())
                .map_err(|e| e.to_string())
        })
        .unwrap();
        Harness { gateway, stores }
    }

    pub fn http_url(&self) -> String {
        format!("http://{}", self.gateway.http_addr().unwrap())
    }

    pub fn grpc_url(&self) -> String {
        format!("http://{}", self.gateway.grpc_addr().unwrap())
    }

    /// Runs stored for a tenant (`None`: no tenant).
    pub fn runs(&self, tenant: Option<&str>) -> Vec<AgentRun> {
        let stores = self.stores.lock().unwrap();
        match stores.get(&tenant.map(str::to_owned)) {
            Some(s) => s.query(&TraceQuery::default()).unwrap(),
            None => Vec::new(),
        }
    }

    /// Waits until `f` holds (processing is asynchronous), up to 10 s.
    pub fn wait_for(&self, mut f: impl FnMut(&Harness) -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if f(self) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        f(self)
    }
}

pub fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

pub fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// A span of trace `trace` (one byte repeated), id `id`, parent `parent` (0: root).
pub fn span(trace: u8, id: u8, parent: u8, name: &str, attrs: Vec<KeyValue>) -> Span {
    let start = now_ns() - 1_000_000_000 + u64::from(id) * 1000;
    Span {
        trace_id: vec![trace; 16],
        span_id: vec![id; 8],
        parent_span_id: if parent == 0 {
            Vec::new()
        } else {
            vec![parent; 8]
        },
        name: name.into(),
        start_time_unix_nano: start,
        end_time_unix_nano: start + 1000,
        attributes: attrs,
        ..Default::default()
    }
}

pub fn request(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![kv("service.name", s("agent"))],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                spans,
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// POSTs a body to the gateway; returns (status, headers, body).
pub fn post(url: &str, body: Vec<u8>, headers: &[(&str, &str)]) -> (u16, http::HeaderMap, Vec<u8>) {
    use http_body_util::{BodyExt, Full};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<bytes::Bytes>>();
        let mut req = http::Request::post(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client
            .request(req.body(Full::new(bytes::Bytes::from(body))).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let headers = resp.headers().clone();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, headers, body)
    })
}

pub fn get(url: &str, headers: &[(&str, &str)]) -> (u16, String) {
    use http_body_util::{BodyExt, Empty};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Empty<bytes::Bytes>>();
        let mut req = http::Request::get(url);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = client
            .request(req.body(Empty::new()).unwrap())
            .await
            .unwrap();
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec();
        (status, String::from_utf8_lossy(&body).into_owned())
    })
}

pub fn protobuf(req: &ExportTraceServiceRequest) -> Vec<u8> {
    prost::Message::encode_to_vec(req)
}

/// Every stored run as JSON, to search for secrets.
pub fn stored_json(runs: &[AgentRun]) -> String {
    runs.iter()
        .map(tracecraft_core::json::to_json)
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn assert_no_secrets(json: &str) {
    for secret in SECRETS {
        assert!(!json.contains(secret), "secret {secret} stored: {json}");
    }
}
