//! Quickstart: a simulated agent whose inputs carry an email, a phone number, an OpenAI key and
//! a password. TraceCraft redacts them before anything is printed or stored, prints the run as
//! a tree, stores it in the embedded SQLite default (`traces/tracecraft.db`), imports a sample
//! of Python-format runs through the same pipeline, and lists what the store holds.
//!
//! `cargo run --example quickstart -p tracecraft`
#![allow(clippy::print_stdout, clippy::disallowed_macros)]

use std::time::Duration;

use tracecraft::config::TraceCraftConfig;
use tracecraft::core::{TraceQuery, read_jsonl};
use tracecraft::{Runtime, StepType};

/// A few runs in the Python tracecraft 0.2.1 JSONL format.
const SAMPLE: &str = include_str!("../../tracecraft-core/testdata/runs_sample.jsonl");

#[derive(Debug)]
struct ToolTimeout;

impl std::fmt::Display for ToolTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("order service timed out after 2s")
    }
}

impl std::error::Error for ToolTimeout {}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // tracecraft.toml and TRACECRAFT_* variables apply if present; the defaults are the
    // embedded SQLite store and redaction on. Code overrides come last.
    let mut config = TraceCraftConfig::load()?;
    config
        .service_name
        .get_or_insert_with(|| "quickstart".into());
    let mut console = config.clone();
    console.console.enabled = true;
    console.console.verbose = true;
    let runtime = Runtime::builder().config(console).build()?;

    // --- A simulated support agent -----------------------------------------------------
    let question = "Hi, I'm jane.doe@example.com (call me on +1 415-555-0132). \
                    Where is order A-1001? My password=Sup3rSecret!";
    {
        let mut run = runtime
            .run("support_agent")
            .user_id("user-7")
            .session_id("sess-42")
            .tag("quickstart")
            .input(&question)
            .start();

        {
            let mut plan = run
                .step(StepType::Llm, "plan")
                .model("gpt-4o-mini", "openai")
                .input("prompt", &format!("Plan an answer to: {question}"))
                .input("api_key", &"sk-proj-Q7xLm2Vt9Rk4Wn8Yp3Zs6Bd1Hf5Jc0Ge")
                .start();
            plan.output("plan", &"look up the order, then answer");
            plan.set_tokens(42, 9);
        }
        for attempt in 1..=2 {
            let mut tool = run
                .step(StepType::Tool, "lookup_order")
                .input("order_id", &"A-1001")
                .input("attempt", &attempt)
                .start();
            if attempt == 1 {
                tool.fail(&ToolTimeout); // the first call fails and is retried
            } else {
                tool.output("status", &"shipped, arrives Thursday");
            }
        }
        {
            let mut answer = run
                .step(StepType::Llm, "answer")
                .model("gpt-4o-mini", "openai")
                .input(
                    "prompt",
                    &"Order A-1001 shipped; tell the customer (jane.doe@example.com).",
                )
                .start();
            answer.output("text", &"Your order has shipped and arrives Thursday.");
            answer.set_tokens(31, 12);
        }
        run.set_output(&"Your order has shipped and arrives Thursday.");
    } // the run ends here: enriched, redacted, sampled, then printed and stored

    // Drain the queues: everything accepted is exported before we go on.
    let report = runtime.shutdown(Duration::from_secs(30));
    if !report.is_clean() {
        println!("shutdown: {:?}", report.errors);
    }

    // --- The same pipeline for runs captured elsewhere (Python JSONL), console off ---------
    let importer = Runtime::builder().config(config).build()?;
    let mut imported = 0;
    for (line, parsed) in read_jsonl(SAMPLE.as_bytes()) {
        match parsed {
            Ok(run) => imported += usize::from(importer.record(run)),
            Err(e) => println!("sample line {line}: {e}"),
        }
    }
    importer.shutdown(Duration::from_secs(30));
    let runtime = importer;

    // --- What the embedded store holds ----------------------------------------------------
    let store = runtime.store().ok_or("no store configured")?;
    let recent = store.query(&TraceQuery::new().limit(5))?;
    let stats = store.stats()?;
    println!();
    println!(
        "Stored in {}: {} traces ({} imported now), {} tokens, ${:.4}. Most recent:",
        runtime_store_location(),
        stats.traces,
        imported,
        stats.total_tokens,
        stats.total_cost_usd
    );
    for r in recent {
        println!(
            "  {}  {:<24} {:>4} steps  {:>6} tokens  errors: {}",
            r.id,
            r.name,
            r.step_count(),
            r.total_tokens,
            r.error_count
        );
    }
    println!("Query them with: cargo run -p tracecraft-cli -- traces list");
    Ok(())
}

fn runtime_store_location() -> String {
    std::env::var("TRACECRAFT_STORAGE").unwrap_or_else(|_| "sqlite:traces/tracecraft.db".into())
}
