#[tracecraft_macros::trace_tool]
struct Lookup;

#[tracecraft_macros::trace_tool]
const fn answer() -> u32 {
    42
}

fn main() {
    let _ = (Lookup, answer());
}
