#[tracecraft_macros::trace_llm(modle = "gpt-4o")]
fn chat(prompt: &str) -> String {
    prompt.to_owned()
}

fn main() {}
