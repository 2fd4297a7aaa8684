#[tracecraft_macros::trace_tool(capture_inputs = "no")]
fn a() {}

#[tracecraft_macros::trace_tool(exclude_inputs = [token])]
fn b(token: &str) {
    let _ = token;
}

#[tracecraft_macros::trace_tool(name = "a", name = "b")]
fn c() {}

fn main() {}
