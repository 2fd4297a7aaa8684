struct Client;
struct Answer;
struct Opaque;

#[tracecraft::trace_tool]
fn lookup(client: &Client, order: u32) -> u32 {
    let _ = client;
    order
}

#[tracecraft::trace_llm]
fn chat() -> Answer {
    Answer
}

#[tracecraft::trace_tool]
fn fallible() -> Result<u32, Opaque> {
    Err(Opaque)
}

#[tracecraft::trace_llm]
async fn chat_async() -> Answer {
    Answer
}

// Each has a way out: exclusion, no output capture.
#[tracecraft::trace_tool(exclude_inputs = ["client"], capture_outputs = false)]
fn fine(client: &Client) -> Answer {
    let _ = client;
    Answer
}

fn main() {
    let _ = (lookup(&Client, 1), chat(), fallible(), fine(&Client), chat_async());
}
