//! # tracecraft-ui
//!
//! The local TraceCraft trace browser behind `tracecraft ui`: an HTTP server that serves a
//! read-only JSON API over any [`TraceStore`](tracecraft_core::TraceStore) (SQLite, JSONL,
//! memory) and an embedded front end (a runs list, run waterfalls, chat views of LLM steps,
//! sessions, users and an overview). **Guarantee:** every answer is bounded — lists page
//! through the store and never load it whole; the page inserts every stored value as text
//! (never as HTML) under a Content-Security-Policy that forbids inline script and `eval`; on a
//! non-loopback address the server refuses to start without an access token.
//!
//! ```no_run
//! use std::sync::Arc;
//! use tracecraft_core::testing::MemoryStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = Arc::new(MemoryStore::new());
//! let server = tracecraft_ui::Server::builder()
//!     .store(store)
//!     .bind("127.0.0.1:0".parse()?)
//!     .build()?;
//! println!("open {}", server.url());
//! let handle = server.spawn()?; // serves on its own thread
//! // ... later
//! handle.shutdown()?;
//! # Ok(()) }
//! ```
//!
//! ## Security
//! - Binds `127.0.0.1:6007` unless told otherwise; any non-loopback address needs a token
//!   ([`BuildError::TokenRequired`]). The token travels once in the printed URL, then as an
//!   `HttpOnly; SameSite=Strict` cookie (or `Authorization: Bearer`), compared in constant
//!   time.
//! - On loopback, requests whose `Host` is not a loopback name are refused (DNS rebinding).
//! - Read-only unless [`ServerBuilder::allow_erase`]; erasure then needs a confirmation that
//!   travels as the [`ERASE_HEADER`] header, which a cross-site request cannot set.
//! - Every response carries [`CONTENT_SECURITY_POLICY`], `X-Content-Type-Options: nosniff`,
//!   `X-Frame-Options: DENY` and `Referrer-Policy: no-referrer`. The front end builds the DOM
//!   with `textContent` and never assigns HTML.
//! - Nothing secret is shown because nothing secret is stored: runs are redacted before they
//!   reach a store. A run stored with redaction disabled (attribute
//!   [`tracecraft_pipeline::REDACTION_ATTRIBUTE`] = `"disabled"`) gets a banner.
//! - Errors and logs name parameters and ids, never stored values.
//!
//! ## Performance
//! The runs list is one store query (limit and offset) plus one count; a run view is one
//! `get` that returns an outline of the steps (bodies are fetched one step at a time), drawn
//! with a virtualized waterfall. Text search is the store's (`TraceQuery::text`: an FTS5
//! index in SQLite) and the overview too (`TraceStore::overview`: SQL over every matching
//! run, the model of any step included), and so are the sessions and users views
//! (`TraceStore::groups`); the page's first API requests start from preload hints in its
//! `<head>`. No request reads more runs than the page shows.
//! Figures: `docs/perf/ui.md`.
//!
//! ## Crate features
//! None.

mod api;
mod assets;
mod overview;
mod params;
mod preload;
mod server;

pub use server::{
    BuildError, CONTENT_SECURITY_POLICY, DEFAULT_ADDR, ERASE_HEADER, MIN_TOKEN_LEN, Server,
    ServerBuilder, ServerHandle,
};
