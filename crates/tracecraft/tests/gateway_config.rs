//! The `[gateway]` table is part of the one configuration tree (feature `gateway`).
#![cfg(feature = "gateway")]

use tracecraft::config::TraceCraftConfig;

#[test]
fn gateway_table_is_read_and_validated() {
    let c = TraceCraftConfig::from_toml_str(
        r#"
        [gateway]
        http = "127.0.0.1:14318"
        quiet_period_ms = 250
        tenant_store = "sqlite:traces/{tenant}.db"
        [[gateway.tokens]]
        env = "ACME_TOKEN"
        tenant = "acme"
        "#,
    )
    .unwrap();
    assert_eq!(c.gateway.http.unwrap().port(), 14318);
    assert_eq!(c.gateway.quiet_period_ms, 250);
    assert_eq!(c.gateway.tokens[0].tenant.as_deref(), Some("acme"));
    c.validate().unwrap();

    let c = TraceCraftConfig::from_toml_str("[gateway]\ngrpc = \"0.0.0.0:4317\"\n").unwrap();
    let e = c.validate().unwrap_err().to_string();
    assert!(e.contains("gateway.grpc"), "{e}");
    // Unknown keys are refused with their name.
    let e = TraceCraftConfig::from_toml_str("[gateway]\nlisten = \"x\"\n").unwrap_err();
    assert!(e.to_string().contains("listen"), "{e}");
}
