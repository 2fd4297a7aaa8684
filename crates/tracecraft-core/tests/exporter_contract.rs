//! The `Exporter` contract suite against the memory exporter and the store adapter.
#![cfg(feature = "testing")]

use std::sync::Arc;

use tracecraft_core::testing::{MemoryExporter, MemoryStore};
use tracecraft_core::{StoreExporter, exporter_contract};

#[test]
fn memory_exporter_follows_the_contract() {
    exporter_contract::run_all(MemoryExporter::new);
}

#[test]
fn store_adapter_follows_the_contract() {
    exporter_contract::run_all(|| StoreExporter::new(Arc::new(MemoryStore::new())));
}

#[test]
fn store_adapter_writes_through_to_the_shared_store() {
    use tracecraft_core::{AgentRun, Exporter, ProcessedRun, TraceStore};
    let store = Arc::new(MemoryStore::new());
    let mut e = StoreExporter::new(Arc::clone(&store));
    #[allow(clippy::disallowed_methods)]
    let run = ProcessedRun::assume_processed(AgentRun::new("r"));
    e.export(&[run]).unwrap();
    assert_eq!(
        store
            .count(&tracecraft_core::TraceQuery::default())
            .unwrap(),
        1
    );
}
