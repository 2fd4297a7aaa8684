//! A per-thread memo of the short strings an engine found nothing in.
//!
//! Traces repeat their short strings: the 2,000 runs of the benchmark corpus hold 824,589
//! object keys of 67 distinct spellings, and 502,601 string values of at most 64 bytes of
//! which 62% were seen before (`user`, `tool_calls`, `gpt-4o`, `stop`, ...). Each one costs
//! the engine a few hundred instructions even when it is clean (the anchor pairs, the digit
//! count, the decoders' check; for keys, the sensitive-key suffixes), so a walk over a run
//! spent more on its keys and short values than on its long texts.
//!
//! The memo remembers strings that needed nothing, per engine and per thread:
//! - [`Kind::Clean`]: no rule finds anything in the text (the engine's `find` is empty);
//! - [`Kind::Key`]: an object key that needs nothing: no rule finds anything in it (as
//!   text), and it is neither a field-path leaf nor a sensitive key (as a key); one lookup
//!   answers both questions a walk asks of each key.
//!
//! It holds only strings the engine cleared, never one with a finding, and compares the whole
//! string on a hit (the hash only picks the slot), so a memoised answer is the answer the
//! engine would give. It is direct-mapped: a fixed number of slots per kind, a new string
//! replaces the one in its slot, so memory is bounded (at most `2 * SLOTS` strings of at
//! most [`MAX_LEN`] bytes per thread) and a stream of distinct strings (ids, UUIDs) cannot
//! grow it. The slots are keyed by a random per-thread hash (an input cannot be crafted to
//! make strings share a slot). An engine has its own id ([`next_engine_id`]); a thread that
//! meets another engine empties its memo first, so a memo never answers for another
//! configuration.

use std::cell::RefCell;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

/// Strings up to this many bytes are memoised (the engine's short-text path).
pub(crate) const MAX_LEN: usize = crate::anchors::SHORT;

/// Slots per kind (a power of two).
const SLOTS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// No rule finds anything in the text.
    Clean = 0,
    /// A key that needs nothing: clean as text, and no field-path leaf nor sensitive key.
    Key = 1,
}

struct Memo {
    engine: u64,
    state: foldhash::fast::RandomState,
    /// `SLOTS` slots of [`Kind::Clean`], then `SLOTS` of [`Kind::Key`].
    slots: Vec<Option<Box<str>>>,
}

impl Memo {
    fn slot(&self, kind: Kind, text: &str) -> usize {
        (kind as usize) * SLOTS + (self.state.hash_one(text) as usize & (SLOTS - 1))
    }
}

thread_local! {
    static MEMO: RefCell<Option<Memo>> = const { RefCell::new(None) };
}

/// A new engine id (never 0, never reused within the process).
pub(crate) fn next_engine_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// Whether `text` is remembered as `kind` for the engine `engine` on this thread.
#[inline]
pub(crate) fn contains(engine: u64, kind: Kind, text: &str) -> bool {
    if text.len() > MAX_LEN {
        return false;
    }
    MEMO.with(|m| {
        let m = m.borrow();
        m.as_ref().is_some_and(|m| {
            m.engine == engine && m.slots[m.slot(kind, text)].as_deref() == Some(text)
        })
    })
}

/// Remembers `text` as `kind` for the engine `engine` on this thread (replacing whatever its
/// slot held; a memo of another engine is emptied first). Longer texts are not remembered.
pub(crate) fn insert(engine: u64, kind: Kind, text: &str) {
    if text.len() > MAX_LEN {
        return;
    }
    MEMO.with(|m| {
        let mut m = m.borrow_mut();
        let m = m.get_or_insert_with(|| Memo {
            engine,
            state: foldhash::fast::RandomState::default(),
            slots: vec![None; 2 * SLOTS],
        });
        if m.engine != engine {
            m.engine = engine;
            m.slots.iter_mut().for_each(|s| *s = None);
        }
        let i = m.slot(kind, text);
        m.slots[i] = Some(text.into());
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_per_engine_and_kind() {
        let (a, b) = (next_engine_id(), next_engine_id());
        assert_ne!(a, b);
        assert!(!contains(a, Kind::Clean, "user"));
        insert(a, Kind::Clean, "user");
        assert!(contains(a, Kind::Clean, "user"));
        assert!(!contains(a, Kind::Key, "user"), "kinds are apart");
        assert!(
            !contains(a, Kind::Clean, "users"),
            "whole strings are compared"
        );
        assert!(!contains(b, Kind::Clean, "user"), "another engine's memo");
        insert(b, Kind::Key, "role");
        assert!(
            !contains(a, Kind::Clean, "user"),
            "emptied for the other engine"
        );
        assert!(contains(b, Kind::Key, "role"));
    }

    #[test]
    fn long_texts_are_not_remembered() {
        let e = next_engine_id();
        let long = "x".repeat(MAX_LEN + 1);
        insert(e, Kind::Clean, &long);
        assert!(!contains(e, Kind::Clean, &long));
        let edge = "x".repeat(MAX_LEN);
        insert(e, Kind::Clean, &edge);
        assert!(contains(e, Kind::Clean, &edge));
    }

    #[test]
    fn bounded_by_its_slots() {
        let e = next_engine_id();
        for i in 0..5 * SLOTS {
            insert(e, Kind::Clean, &format!("value-{i}"));
        }
        let kept = MEMO.with(|m| {
            let m = m.borrow();
            m.as_ref()
                .unwrap()
                .slots
                .iter()
                .filter(|s| s.is_some())
                .count()
        });
        assert!(kept <= SLOTS, "{kept}");
        // The latest string is always in its slot.
        assert!(contains(
            e,
            Kind::Clean,
            &format!("value-{}", 5 * SLOTS - 1)
        ));
    }
}
