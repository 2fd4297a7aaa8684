//! The example agent's stored runs: the tree the attributes and the layer build together
//! across concurrent tasks, outputs, excluded arguments, and no secret anywhere (store and
//! printed log).

use std::sync::{Arc, Mutex};

use serde_json::json;
use tracecraft::core::testing::MemoryStore;
use tracecraft::core::{AgentRun, Step, StepType, TraceQuery, TraceStore};
use tracecraft::redact::RedactionConfig;

const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345";
const EMAIL: &str = "jane.doe@example.com";

#[derive(Clone, Default)]
struct Log(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Log {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn step<'a>(steps: &'a [Step], name: &str) -> &'a Step {
    steps
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no step {name}"))
}

#[test]
fn the_stored_runs_have_the_tree_outputs_exclusions_and_no_secret() {
    let store = Arc::new(MemoryStore::new());
    let runtime = tracecraft::Runtime::builder()
        .store(store.clone())
        .build()
        .unwrap();
    let log = Log::default();
    let printed = log.clone();
    let sub = support_agent::subscriber(&runtime, &RedactionConfig::default(), move || log.clone())
        .unwrap();
    // Global: spans and events on tokio's worker threads reach it.
    tracing::subscriber::set_global_default(sub).unwrap();

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    let (ok, missing) = tokio.block_on(async {
        let question = format!("Where is order A-1001? Mail me at {EMAIL}");
        let a = tokio::spawn(async move {
            support_agent::handle("user-7", "s-1", &question, "A-1001", KEY).await
        });
        let b = tokio::spawn(async {
            support_agent::handle("user-8", "s-2", "And A-0000?", "A-0000", KEY).await
        });
        (a.await.unwrap(), b.await.unwrap())
    });
    assert!(ok.is_ok());
    assert!(missing.is_err());
    runtime.shutdown(std::time::Duration::from_secs(5));

    let runs = store.query(&TraceQuery::new()).unwrap();
    assert_eq!(runs.len(), 2);
    let (answered, failed): (Vec<&AgentRun>, Vec<&AgentRun>) = runs
        .iter()
        .partition(|r| r.steps.iter().any(|s| s.name == "chat"));
    let run = answered[0];
    assert_eq!(run.name, "support_agent");

    // The tree: both concurrent tasks under the run, then the LLM call and the guardrail.
    let mut names: Vec<&str> = run.steps.iter().map(|s| s.name.as_str()).collect();
    names[..2].sort_unstable();
    assert_eq!(
        names,
        ["lookup_order", "search_docs", "chat", "check_answer"]
    );
    let lookup = step(&run.steps, "lookup_order");
    assert_eq!(lookup.step_type, StepType::Tool);
    assert_eq!(lookup.inputs["order_id"], json!("A-1001"));
    assert_eq!(
        lookup.outputs["result"],
        json!({"id": "A-1001", "status": "shipped", "eta_days": 2})
    );
    let search = step(&run.steps, "search_docs");
    assert_eq!(search.step_type, StepType::Retrieval);
    assert_eq!(
        search.children.len(),
        1,
        "the tracing span nests under the attribute step"
    );
    assert_eq!(search.children[0].name, "vector_search");
    assert_eq!(search.children[0].outputs["hits"], json!(2));
    assert_eq!(search.outputs["result"].as_array().map(Vec::len), Some(2));

    let chat = step(&run.steps, "chat");
    assert_eq!(chat.step_type, StepType::Llm);
    assert_eq!(chat.model_name.as_deref(), Some("gpt-4o"));
    assert!(chat.input_tokens.is_some() && chat.output_tokens.is_some());
    assert_eq!(chat.inputs["customer_notes"], json!(tracecraft::EXCLUDED));
    assert!(chat.inputs.contains_key("api_key"));
    assert_eq!(
        chat.outputs["result"],
        json!("Your order has shipped and arrives in 2 days.")
    );
    let guard = step(&run.steps, "check_answer");
    assert_eq!(guard.step_type, StepType::Guardrail);
    assert_eq!(guard.outputs["result"], json!("true"));
    assert_eq!(
        run.output,
        json!({"answer": "Your order has shipped and arrives in 2 days."})
    );
    assert_eq!(run.input["messages"][0]["role"], json!("user"));

    // The missing order: the tool's error, with its type.
    let lookup = step(&failed[0].steps, "lookup_order");
    assert_eq!(lookup.error.as_deref(), Some("no such order"));
    assert_eq!(lookup.error_type.as_deref(), Some("AgentError"));

    // No secret in what was stored, nor in what the fmt layer printed.
    let stored: String = runs.iter().map(tracecraft::core::json::to_json).collect();
    let printed = String::from_utf8(printed.0.lock().unwrap().clone()).unwrap();
    assert!(printed.contains("support_agent"), "{printed}");
    for (what, text) in [("stored", &stored), ("printed", &printed)] {
        for secret in [KEY, EMAIL, "VIP", "complained"] {
            assert!(!text.contains(secret), "{secret} in {what}: {text}");
        }
    }
}
