//! The speed guarantee for custom rules.
//!
//! Every pattern the engine accepts runs in linear time, but the constant can be ruinous: a
//! rule such as `(?:[a-z]{1,100}){1,100}[0-9]{1,1000}` expands to thousands of automaton
//! states, its lazy DFA outgrows its cache on ordinary text, and the search falls back to an
//! engine that pays for every state at every byte (kilobytes per second). So each custom rule
//! is checked when the engine is built, deterministically (no timing):
//!
//! 1. **Size.** Its Thompson NFA, bounded repetitions expanded, has at most
//!    [`MAX_NFA_STATES`] states.
//! 2. **Behaviour.** Its lazy DFA, with the cache the engine gives it, scans each of
//!    [`probe_texts`] (64 KiB of text made of the pattern's own characters) without giving up
//!    (a DFA that gives up there would hand real traces to the slow engine) and without
//!    clearing its cache more than `MAX_CACHE_CLEARS` times (states thrown away and built
//!    again at every few bytes).
//!
//! A rule that fails either check is rejected with [`BuildError::TooSlow`], naming the rule and
//! the reason, unless the rule sets `allow_slow = true`. `tracecraft doctor` measures each
//! custom rule's throughput on the same probe texts.

use regex_automata::hybrid::dfa::{Cache, DFA};
use regex_automata::nfa::thompson;
use regex_automata::{Anchored, Input};
use regex_syntax::hir::Hir;

use crate::BuildError;
use crate::engine::SIZE_LIMIT;

/// Most NFA states a custom rule may compile to (the 17 built-in rules stay far below it).
pub const MAX_NFA_STATES: usize = 10_000;

/// Most times the lazy DFA's cache may be cleared over all the probe texts: each clear
/// throws away the states built so far, which are then built again (the built-in `email`
/// rule, the largest, clears it 8 times as a whole-text rule).
const MAX_CACHE_CLEARS: usize = 10;

/// Bytes of each probe text.
const PROBE_LEN: usize = 64 * 1024;

/// Checks that the custom rule `rule` (parsed as `hir`) stays fast (see the module docs).
pub(crate) fn check_custom_rule(rule: &str, pattern: &str, hir: &Hir) -> Result<(), BuildError> {
    let too_slow = |reason: String| BuildError::TooSlow {
        rule: rule.to_owned(),
        reason,
    };
    let nfa = thompson::Compiler::new()
        .configure(
            thompson::Config::new()
                .nfa_size_limit(Some(SIZE_LIMIT))
                .which_captures(thompson::WhichCaptures::None),
        )
        .build_from_hir(hir)
        .map_err(|_| BuildError::TooLarge {
            rule: rule.to_owned(),
            limit: SIZE_LIMIT,
        })?;
    let states = nfa.states().len();
    if states > MAX_NFA_STATES {
        return Err(too_slow(format!(
            "its repetitions expand to {states} automaton states (at most {MAX_NFA_STATES})"
        )));
    }
    let dfa = DFA::builder()
        // As the engine's lazy DFA: a Unicode `\b` holds on ASCII text (the probes are).
        .configure(DFA::config().unicode_word_boundary(true))
        .build_from_nfa(nfa)
        .map_err(|_| too_slow("its automaton does not fit the search cache".to_owned()))?;
    let mut cache = dfa.create_cache();
    let probes = probe_texts(pattern);
    for text in &probes {
        if gives_up(&dfa, &mut cache, text) {
            return Err(too_slow(format!(
                "on {} KiB of text made of its own characters its automaton outgrows the \
                 search cache and the search falls back to a slow engine",
                PROBE_LEN / 1024
            )));
        }
    }
    let clears = cache.clear_count();
    if clears > MAX_CACHE_CLEARS {
        return Err(too_slow(format!(
            "on {} KiB of text made of its own characters its automaton outgrows the search \
             cache {clears} times (at most {MAX_CACHE_CLEARS})",
            probes.len() * PROBE_LEN / 1024
        )));
    }
    Ok(())
}

/// Whether a leftmost-first scan of all of `text` (match after match) makes the lazy DFA give
/// up.
fn gives_up(dfa: &DFA, cache: &mut Cache, text: &str) -> bool {
    let mut at = 0;
    while at < text.len() {
        let input = Input::new(text).range(at..).anchored(Anchored::No);
        match dfa.try_search_fwd(cache, &input) {
            Err(_) => return true,
            Ok(None) => return false,
            Ok(Some(m)) => at = m.offset().max(at + 1),
        }
    }
    false
}

/// Texts made of a pattern's own characters, 64 KiB each, on which a slow rule
/// shows: its literal ASCII characters (and `aZ09`) in a random order and cycled
/// irregularly, one letter repeated, and runs of a letter alternating with runs of a digit.
/// Deterministic.
pub fn probe_texts(pattern: &str) -> Vec<String> {
    let mut alphabet: Vec<char> = pattern
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "-_.@:/=+".contains(*c))
        .collect();
    alphabet.extend("aZ09".chars());
    alphabet.sort_unstable();
    alphabet.dedup();
    let fill = |f: &dyn Fn(usize) -> char| -> String { (0..PROBE_LEN).map(f).collect() };
    let letter = alphabet
        .iter()
        .copied()
        .find(char::is_ascii_lowercase)
        .unwrap_or('a');
    // A fixed xorshift sequence: random-looking, the same in every run.
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let random: String = (0..PROBE_LEN)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            alphabet[(state % alphabet.len() as u64) as usize]
        })
        .collect();
    vec![
        random,
        fill(&|i| alphabet[(i * 7 + i / 13) % alphabet.len()]),
        fill(&|_| letter),
        fill(&|i| if (i / 64) % 2 == 0 { letter } else { '7' }),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::BUILTINS;

    fn hir(p: &str) -> Hir {
        regex_syntax::parse(p).unwrap()
    }

    #[test]
    fn builtin_rules_pass_the_custom_rule_check() {
        // The guarantee is not stricter than what the product ships: every built-in pattern
        // would be accepted as a custom rule.
        for b in BUILTINS {
            check_custom_rule(b.name, b.pattern, &hir(b.pattern))
                .unwrap_or_else(|e| panic!("{}: {e}", b.name));
        }
    }

    #[test]
    fn ordinary_custom_rules_pass() {
        for p in [
            r"EMP-\d{6}",
            r"ACME-[A-Z0-9]{32}",
            r"(?i)internal[_-]?token\s*[:=]\s*\S{8,64}",
            r"\b[A-Z]{2}\d{2}[A-Z0-9]{11,30}\b",
            r"[a-z]{1,100}@corp\.example",
        ] {
            check_custom_rule("r", p, &hir(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
        }
    }

    #[test]
    fn the_issue_example_is_rejected_for_its_size() {
        let p = r"(?:[a-z]{1,100}){1,100}[0-9]{1,1000}";
        let err = check_custom_rule("slow", p, &hir(p)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("rule `slow`"), "{msg}");
        assert!(msg.contains("automaton states"), "{msg}");
        assert!(msg.contains("allow_slow"), "{msg}");
    }

    #[test]
    fn a_rule_whose_dfa_thrashes_is_rejected_by_the_probe() {
        // Small enough for the size check, but on random word characters every `a` may
        // begin a match that needs the next 22 characters remembered: the lazy DFA's
        // states are thrown away and rebuilt over and over.
        for p in [r"\w*a\w{22}c\w*", r"(?:[a-z]{1,60}){1,60}[0-9]{1,300}"] {
            let err = check_custom_rule("thrash", p, &hir(p))
                .unwrap_err()
                .to_string();
            assert!(err.contains("outgrows the search cache"), "{p}: {err}");
            assert!(err.contains("rule `thrash`"), "{p}: {err}");
        }
    }

    #[test]
    fn probes_are_deterministic_and_sized() {
        let a = probe_texts("ab[0-9]");
        assert_eq!(a, probe_texts("ab[0-9]"));
        assert!(a.iter().all(|t| t.len() == PROBE_LEN));
    }
}
