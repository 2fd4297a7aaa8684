#[tracecraft_macros::trace_llm(exclude_inputs = ["apikey"])]
fn chat(prompt: &str, api_key: &str) -> String {
    format!("{prompt}{api_key}")
}

fn main() {}
