//! The stored run body: the whole [`AgentRun`], in one column of `traces`.
//!
//! - Schema v2 writes a BLOB: one format byte ([`MSGPACK_V1`]) and the run as MessagePack
//!   (`rmp-serde`, structs as arrays in the model's field order, UUIDs as 16 bytes, times as
//!   the wire-format strings). About 35% smaller than the JSON and cheaper to decode.
//! - Schema v1 wrote the run's JSON as TEXT. Those rows are read as JSON, as before, until the
//!   run is saved again (a merge rewrites the row in the current format).
//!
//! SQLite's storage class tells the two apart. A change to the fields of `AgentRun` or `Step`
//! (their order or number) changes the MessagePack arrays: it needs a new format byte and a
//! decoder for the old one, like a schema migration.

use rusqlite::types::ValueRef;
use tracecraft_core::AgentRun;

/// Format byte: MessagePack of `AgentRun` as `rmp-serde` 1.x writes it by default.
pub(crate) const MSGPACK_V1: u8 = 1;

/// Appends the body of `run` to `out` (cleared first).
pub(crate) fn encode(run: &AgentRun, out: &mut Vec<u8>) -> Result<(), String> {
    out.clear();
    out.push(MSGPACK_V1);
    rmp_serde::encode::write(out, run)
        .map_err(|e| tracecraft_core::json::elide_quoted(&e.to_string()))
}

/// Decodes a body read from the `run` column: MessagePack (v2) or JSON text (v1).
///
/// The error message never contains payload text.
pub(crate) fn decode(value: ValueRef<'_>) -> Result<AgentRun, String> {
    match value {
        ValueRef::Blob([MSGPACK_V1, rest @ ..]) => rmp_serde::from_slice(rest).map_err(|e| {
            format!(
                "bad MessagePack body: {}",
                tracecraft_core::json::elide_quoted(&e.to_string())
            )
        }),
        ValueRef::Blob([tag, ..]) => Err(format!(
            "unknown body format {tag} (written by a newer version?)"
        )),
        ValueRef::Text(json) => {
            tracecraft_core::json::parse_run_slice(json).map_err(|e| e.to_string())
        }
        _ => Err("run body is neither MessagePack nor JSON".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracecraft_core::contract;

    #[test]
    fn round_trips_and_reads_v1_json() {
        let mut buf = Vec::new();
        for run in contract::sample_runs()
            .into_iter()
            .chain(contract::fixture_runs(30))
        {
            encode(&run, &mut buf).unwrap();
            assert_eq!(buf[0], MSGPACK_V1);
            let back = decode(ValueRef::Blob(&buf)).unwrap();
            assert_eq!(back, run);
            // Byte-identical JSON after the round trip (exact floats, key order).
            assert_eq!(
                tracecraft_core::to_json(&back),
                tracecraft_core::to_json(&run)
            );
            let json = tracecraft_core::to_json(&run);
            assert_eq!(decode(ValueRef::Text(json.as_bytes())).unwrap(), run);
        }
    }

    #[test]
    fn bad_bodies_are_errors_without_payload() {
        let run = AgentRun::builder("secret-name")
            .input("sk-secret-value")
            .build();
        let mut buf = Vec::new();
        encode(&run, &mut buf).unwrap();
        for bad in [&buf[..buf.len() / 2], &[MSGPACK_V1][..], &[]] {
            let e = decode(ValueRef::Blob(bad)).unwrap_err();
            assert!(!e.contains("secret"), "{e}");
        }
        let mut newer = buf.clone();
        newer[0] = 9;
        assert!(
            decode(ValueRef::Blob(&newer))
                .unwrap_err()
                .contains("newer")
        );
        let e = decode(ValueRef::Text(b"{\"id\": \"secret-value")).unwrap_err();
        assert!(!e.contains("secret"), "{e}");
        assert!(decode(ValueRef::Integer(1)).is_err());
    }
}
