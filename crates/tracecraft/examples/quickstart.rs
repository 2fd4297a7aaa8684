//! Quickstart: a small agent run with nested steps, printed as AgentRun JSON.
//!
//! `cargo run --example quickstart -p tracecraft`
#![allow(clippy::print_stdout, clippy::disallowed_macros)]

use tracecraft::{AgentRun, Step, StepType};

fn main() {
    let mut run = AgentRun::builder("support_agent")
        .session_id("sess-42")
        .user_id("user-7")
        .tag("quickstart")
        .input(serde_json::json!({"question": "Where is my order?"}))
        .build();
    let trace = run.id;

    let plan = Step::builder(trace, StepType::Llm, "plan")
        .model("gpt-4o-mini", "openai")
        .input("prompt", "Plan how to answer: Where is my order?")
        .output("plan", "look up the order, then answer")
        .tokens(24, 9)
        .build();
    let lookup = Step::builder(trace, StepType::Tool, "lookup_order")
        .input("order_id", "A-1001")
        .output("status", "shipped")
        .build();
    let answer = Step::builder(trace, StepType::Llm, "answer")
        .model("gpt-4o-mini", "openai")
        .input("prompt", "The order A-1001 has shipped. Tell the customer.")
        .output("text", "Your order has shipped and arrives Thursday.")
        .tokens(31, 12)
        .build();
    let agent = Step::builder(trace, StepType::Agent, "support_agent")
        .child(plan)
        .child(lookup)
        .child(answer)
        .build();
    run.push_step(agent);
    run.output = serde_json::json!("Your order has shipped and arrives Thursday.");
    run.finish_at(tracecraft::core::time::now());
    run.aggregate();

    println!("{}", tracecraft::core::json::to_json(&run));
    println!(
        "run {} : {} steps, {} tokens",
        run.id,
        run.step_count(),
        run.total_tokens
    );
}
