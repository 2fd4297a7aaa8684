//! The shared `TraceStore` contract suite, run against the in-memory store.
#![cfg(feature = "testing")]

use tracecraft_core::{contract, testing::MemoryStore};

#[test]
fn memory_store_passes_the_contract() {
    contract::run_all(MemoryStore::new);
}
