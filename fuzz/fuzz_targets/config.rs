//! Configuration parsers: TOML config text, environment values, storage URLs and timestamps
//! never panic, and errors never echo the input's quoted values.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tracecraft::config::{StorageUrl, TraceCraftConfig};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(mut config) = TraceCraftConfig::from_toml_str(text) {
        let _ = config.validate();
        let value = text.lines().next().unwrap_or_default().to_owned();
        let _ = config.apply_env_from(|_| Some(value.clone()));
    }
    let _ = StorageUrl::parse(text);
    let _ = tracecraft::core::time::parse(text);
});
