//! `cargo run -p support-agent`: two customers at once; each run is redacted, then stored
//! (`./traces/tracecraft.db` by default; `tracecraft traces list` shows them).
#![allow(clippy::print_stdout, clippy::disallowed_macros)]

use tracecraft::config::TraceCraftConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = TraceCraftConfig::load()?;
    let rules = config.redaction.clone();
    let tracecraft = tracecraft::init(config)?; // dropped at the end of main: flushed, shut down
    let subscriber = support_agent::subscriber(&tracecraft, &rules, std::io::stderr)?;
    tracing::subscriber::set_global_default(subscriber)?;

    let key = std::env::var("OPENAI_API_KEY").unwrap_or_else(|_| "sk-demo-not-a-key".into());
    let (a, b) = tokio::join!(
        support_agent::handle(
            "user-7",
            "sess-1",
            "Where is order A-1001? Mail me at jane.doe@example.com",
            "A-1001",
            &key
        ),
        support_agent::handle("user-8", "sess-2", "And order A-0000?", "A-0000", &key),
    );
    println!(
        "user-7: {}",
        a.map_err(|e| e.to_string()).unwrap_or_else(|e| e)
    );
    println!(
        "user-8: {}",
        b.map_err(|e| e.to_string()).unwrap_or_else(|e| e)
    );
    Ok(())
}
