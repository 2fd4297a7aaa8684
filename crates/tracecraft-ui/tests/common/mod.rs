//! Fixtures and a minimal HTTP/1.1 client shared by the API, browser and perf tests.
#![allow(dead_code, unreachable_pub, missing_docs, clippy::disallowed_methods)] // fixtures are wrapped as processed runs

pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use tracecraft_core::{
    AgentRun, DateTime, ProcessedRun, Step, StepType, TraceStore, Utc, Uuid, json,
};
use tracecraft_store_sqlite::{SqliteConfig, SqliteStore};

/// One HTTP response.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON body")
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Sends one HTTP/1.1 request with `Connection: close` and reads the answer.
pub fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Resp {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    s.write_all(req.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    // Read the head, then exactly Content-Length bytes (some servers keep the socket
    // open whatever the request says), or to the end.
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).expect("read response");
        raw.extend_from_slice(&buf[..n]);
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if let Some(len) = len {
                while raw.len() < end + 4 + len {
                    let n = s.read(&mut buf).expect("read body");
                    if n == 0 {
                        break;
                    }
                    raw.extend_from_slice(&buf[..n]);
                }
                break;
            }
        }
        if n == 0 {
            break;
        }
    }
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Resp {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("end of headers");
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut resp = Resp {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    };
    if resp
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        resp.body = dechunk(&resp.body);
    }
    resp
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = b.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&b[..eol]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&b[eol + 2..eol + 2 + size]);
        b = &b[eol + 2 + size + 2..];
    }
    out
}

pub fn get(addr: SocketAddr, path: &str) -> Resp {
    request(addr, "GET", path, &[], b"")
}

/// A SQLite store in a fresh directory.
pub fn sqlite_store(dir: &std::path::Path) -> Arc<SqliteStore> {
    Arc::new(SqliteStore::open(SqliteConfig::new(dir.join("traces.db"))).expect("open store"))
}

pub fn at(base: DateTime<Utc>, ms: i64) -> DateTime<Utc> {
    base + chrono::Duration::milliseconds(ms)
}

pub fn step(
    run: &AgentRun,
    t: StepType,
    name: &str,
    base: DateTime<Utc>,
    from: i64,
    to: i64,
) -> Step {
    Step::builder(run.id, t, name)
        .start_time(at(base, from))
        .end_time(at(base, to))
        .build()
}

fn finish(step: &mut Step) {
    if let Some(end) = step.end_time {
        step.duration_ms = Some(tracecraft_core::model::duration_ms(step.start_time, end));
    }
    for c in &mut step.children {
        finish(c);
    }
}

pub const CHAT_SYSTEM: &str = "You are a careful support agent. Answer in two sentences.";
pub const CHAT_USER: &str = "Where is my order #4411? It was due on Monday.";
pub const CHAT_TOOL_RESULT: &str = "{\"status\": \"in transit\", \"eta\": \"Thursday\"}";
pub const CHAT_ANSWER: &str =
    "Your order #4411 is in transit and should arrive on Thursday. Sorry for the delay!";

/// The showcase run: an agent that calls an LLM (with a tool call), runs two tools in
/// parallel, and answers; its redaction summary says two rules fired.
pub fn support_run(base: DateTime<Utc>) -> AgentRun {
    let mut run = AgentRun::builder("support_agent")
        .session_id("sess-7f3a")
        .user_id("user-4b1c")
        .tag("prod")
        .tag("eu")
        .build();
    run.start_time = base;
    run.input = json!({"question": CHAT_USER});
    run.output = json!({"answer": CHAT_ANSWER});
    run.attributes
        .insert("tracecraft.redaction.count".into(), json!(3));
    run.attributes
        .insert("tracecraft.redaction.rule.email".into(), json!(2));
    run.attributes
        .insert("tracecraft.redaction.rule.api_key".into(), json!(1));
    let mut plan = step(&run, StepType::Agent, "support_agent.plan", base, 0, 2400);
    let mut llm = step(&run, StepType::Llm, "openai.chat", base, 20, 900);
    llm.model_name = Some("gpt-4o".into());
    llm.model_provider = Some("openai".into());
    llm.input_tokens = Some(412);
    llm.output_tokens = Some(58);
    llm.cost_usd = Some(0.00161);
    llm.inputs.insert(
        "messages".into(),
        json!([
            {"role": "system", "content": CHAT_SYSTEM},
            {"role": "user", "content": CHAT_USER},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "lookup_order", "arguments": "{\"order_id\": \"4411\"}"}}
            ]},
            {"role": "tool", "tool_call_id": "call_1", "content": CHAT_TOOL_RESULT}
        ]),
    );
    llm.outputs.insert(
        "choices".into(),
        json!([{"message": {"role": "assistant", "content": CHAT_ANSWER}}]),
    );
    let search = step(&run, StepType::Tool, "search_kb", base, 950, 1900);
    let mut orders = step(&run, StepType::Tool, "lookup_order", base, 1000, 1700);
    orders.inputs.insert("order_id".into(), json!("4411"));
    orders.outputs.insert("status".into(), json!("in transit"));
    let retr = step(&run, StepType::Retrieval, "vector_search", base, 1010, 1400);
    orders.push_child(retr);
    let mut answer = step(&run, StepType::Llm, "openai.chat.final", base, 1950, 2380);
    answer.model_name = Some("gpt-4o-mini".into());
    answer.input_tokens = Some(230);
    answer.output_tokens = Some(41);
    answer.cost_usd = Some(0.00006);
    answer
        .attributes
        .insert("tracecraft.tokens.estimated".into(), json!(true));
    plan.push_child(llm);
    plan.push_child(search);
    plan.push_child(orders);
    plan.push_child(answer);
    finish(&mut plan);
    run.push_step(plan);
    run.finish_at(at(base, 2400));
    run.aggregate();
    run
}

/// A run whose tool failed.
pub fn failing_run(base: DateTime<Utc>) -> AgentRun {
    let mut run = AgentRun::builder("billing_agent")
        .user_id("user-9d2e")
        .build();
    run.start_time = base;
    let mut tool = step(&run, StepType::Tool, "charge_card", base, 10, 300);
    tool.error = Some("card declined".into());
    tool.error_type = Some("PaymentError".into());
    finish(&mut tool);
    run.push_step(tool);
    run.finish_at(at(base, 320));
    run.aggregate();
    run
}

/// The title the XSS payloads would set and the global they would define.
pub const PWNED: &str = "pwned";

/// Runs whose names, inputs, attributes, tags and ids carry script payloads.
pub fn xss_runs(base: DateTime<Utc>) -> Vec<AgentRun> {
    let payloads = [
        "<script>window.__xss=1;document.title='pwned'</script>",
        "<img src=x onerror=\"window.__xss=2;document.title='pwned'\">",
        "javascript:window.__xss=3;document.title='pwned'",
        "<svg onload=\"window.__xss=4;document.title='pwned'\"></svg>",
    ];
    payloads
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut run = AgentRun::builder(format!("xss {p}"))
                .tag(*p)
                .user_id(*p)
                .session_id(format!("javascript:alert({i})"))
                .build();
            let base = at(base, i64::try_from(i).unwrap() * 1000);
            run.start_time = base;
            run.description = Some((*p).to_owned());
            run.input = json!({"html": p, "href": "javascript:window.__xss=5"});
            run.output = json!(p);
            run.attributes.insert((*p).into(), json!(p));
            run.attributes
                .insert("tracecraft.redaction.rule.<b>x</b>".into(), json!(1));
            let mut s = step(&run, StepType::Llm, p, base, 0, 100);
            s.model_name = Some((*p).into());
            s.inputs.insert(
                "messages".into(),
                json!([{"role": p, "content": p, "name": p}]),
            );
            s.outputs.insert("content".into(), json!(p));
            s.error = Some((*p).into());
            finish(&mut s);
            run.push_step(s);
            run.finish_at(at(base, 100));
            run.aggregate();
            run
        })
        .collect()
}

/// A run stored with redaction disabled.
pub fn unredacted_run(base: DateTime<Utc>) -> AgentRun {
    let mut run = AgentRun::builder("debug_session").build();
    run.start_time = base;
    run.attributes
        .insert("tracecraft.redaction".into(), json!("disabled"));
    run.finish_at(at(base, 50));
    run
}

/// `n` small runs, one a minute before `base`, alternating names and models.
pub fn filler_runs(base: DateTime<Utc>, n: usize) -> Vec<AgentRun> {
    (0..n)
        .map(|i| {
            let name = ["research_agent", "triage_agent", "summarizer"][i % 3];
            let mut run = AgentRun::builder(name)
                .session_id(format!("sess-{:02}", i % 5))
                .user_id(format!("user-{:02}", i % 4))
                .build();
            let start = base - chrono::Duration::minutes(i64::try_from(i + 1).unwrap() * 7);
            run.start_time = start;
            let ms = 300 + i64::try_from(i).unwrap() * 37 % 2000;
            let mut s = step(&run, StepType::Llm, "anthropic.messages", start, 5, ms - 5);
            s.model_name = Some(
                if i % 2 == 0 {
                    "claude-sonnet-4"
                } else {
                    "gpt-4o-mini"
                }
                .into(),
            );
            s.input_tokens = Some(100 + i as u64 * 3);
            s.output_tokens = Some(40);
            s.cost_usd = Some(0.0004 * (1 + i % 3) as f64);
            if i % 7 == 3 {
                s.error = Some("rate limited".into());
                s.error_type = Some("RateLimitError".into());
            }
            finish(&mut s);
            run.push_step(s);
            run.finish_at(at(start, ms));
            run.aggregate();
            run
        })
        .collect()
}

/// Saves runs (fixtures stand for runs that went through the pipeline).
pub fn save(store: &dyn TraceStore, runs: Vec<AgentRun>) {
    let runs: Vec<ProcessedRun> = runs
        .into_iter()
        .map(ProcessedRun::assume_processed)
        .collect();
    store.save_batch(&runs).expect("save");
    store.flush().expect("flush");
}

/// A store with the showcase, failing, XSS, unredacted and filler runs; returns the
/// showcase run's id.
pub fn populated(store: &dyn TraceStore) -> Uuid {
    let now = Utc::now();
    let base = now - chrono::Duration::seconds(30);
    let support = support_run(base);
    let id = support.id;
    let mut runs = vec![
        support,
        failing_run(now - chrono::Duration::minutes(3)),
        unredacted_run(now - chrono::Duration::minutes(5)),
    ];
    runs.extend(xss_runs(now - chrono::Duration::minutes(2)));
    runs.extend(filler_runs(now - chrono::Duration::minutes(6), 60));
    save(store, runs);
    id
}
