#[tracecraft_macros::trace_tool(model = "gpt-4o")]
fn lookup(order: u32) -> u32 {
    order
}

fn main() {}
