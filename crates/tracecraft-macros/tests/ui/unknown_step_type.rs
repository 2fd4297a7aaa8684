#[tracecraft_macros::trace_step(type = toool)]
fn lookup() {}

#[tracecraft_macros::trace_step(name = "x")]
fn untyped() {}

fn main() {}
