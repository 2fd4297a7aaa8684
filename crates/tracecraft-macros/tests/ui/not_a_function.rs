#[tracecraft_macros::trace_tool]
struct Lookup;

fn main() {}
