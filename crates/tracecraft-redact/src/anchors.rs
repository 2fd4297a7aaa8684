//! Finds every occurrence of every anchor literal, ASCII case-insensitively, at every position
//! (overlapping), like an overlapping Aho-Corasick search, but with a SIMD searcher.
//!
//! An ASCII case-insensitive Aho-Corasick automaton over ~80 anchors cannot use its SIMD
//! prefilter. Instead the text is case-folded block by block into a small buffer (a loop the
//! compiler vectorises), and a case-sensitive packed (Teddy) searcher looks for the distinct
//! 3-byte prefixes of the folded anchors; each hit is verified against the anchors sharing that
//! prefix. One-byte anchors (`@`) are found with `memchr`. When no packed searcher can be built
//! (no SIMD on the target, too many prefixes, an anchor of 2 bytes), an ASCII case-insensitive
//! Aho-Corasick automaton does the same job, more slowly.

use aho_corasick::packed::{self, MatchKind as PackedKind};
use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind, Span};

/// Folding for the packed search: ASCII upper case to lower case, and the last bytes
/// `0x90..=0x99` of the fullwidth digits `U+FF10..=U+FF19` (`EF BC 90..99`) to `0x90`, so that
/// the ten fullwidth digits share one prefix. Folding only merges prefixes; every hit is
/// verified against the unfolded anchors (ASCII case-insensitively).
#[inline]
fn fold(b: u8) -> u8 {
    if b.wrapping_sub(b'A') < 26 {
        b | 0x20
    } else if b.wrapping_sub(0x90) < 10 {
        0x90
    } else {
        b
    }
}

/// Bytes per folded block.
const BLOCK: usize = 4096;
/// Length of the packed searcher's prefixes.
const PREFIX: usize = 3;

/// One distinct folded anchor and what it stands for.
struct Lit<T> {
    /// ASCII lower case.
    bytes: Vec<u8>,
    targets: Vec<T>,
}

enum Searcher {
    Packed {
        packed: packed::Searcher,
        /// Pattern id (a distinct prefix) to the literals that start with it.
        groups: Vec<Vec<usize>>,
        /// One-byte literals: (byte, literal index); found with `memchr`.
        single: Vec<(u8, usize)>,
    },
    Ac(AhoCorasick),
}

pub(crate) struct Anchors<T> {
    lits: Vec<Lit<T>>,
    searcher: Searcher,
}

impl<T: Copy + PartialEq> Anchors<T> {
    /// `anchors`: (literal, target). Returns `None` when the fallback automaton is too large.
    pub(crate) fn new(anchors: &[(&str, T)]) -> Option<Anchors<T>> {
        let mut lits: Vec<Lit<T>> = Vec::new();
        for &(a, t) in anchors {
            let bytes = a.as_bytes().to_ascii_lowercase();
            let i = match lits.iter().position(|l| l.bytes == bytes) {
                Some(i) => i,
                None => {
                    lits.push(Lit {
                        bytes,
                        targets: Vec::new(),
                    });
                    lits.len() - 1
                }
            };
            if !lits[i].targets.contains(&t) {
                lits[i].targets.push(t);
            }
        }
        let searcher = match Self::packed(&lits) {
            Some(s) => s,
            None => Searcher::Ac(
                AhoCorasickBuilder::new()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    .kind(Some(AhoCorasickKind::DFA))
                    .build(lits.iter().map(|l| &l.bytes))
                    .ok()?,
            ),
        };
        Some(Anchors { lits, searcher })
    }

    fn packed(lits: &[Lit<T>]) -> Option<Searcher> {
        let mut prefixes: Vec<[u8; PREFIX]> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut single = Vec::new();
        for (i, l) in lits.iter().enumerate() {
            match l.bytes.len() {
                0 => return None,
                1 if !l.bytes[0].is_ascii_alphabetic() => {
                    single.push((l.bytes[0], i));
                }
                n if n < PREFIX => return None,
                _ => {
                    let p = [fold(l.bytes[0]), fold(l.bytes[1]), fold(l.bytes[2])];
                    match prefixes.iter().position(|q| *q == p) {
                        Some(g) => groups[g].push(i),
                        None => {
                            prefixes.push(p);
                            groups.push(vec![i]);
                        }
                    }
                }
            }
        }
        if prefixes.is_empty() {
            return None;
        }
        let packed = packed::Config::new()
            .match_kind(PackedKind::LeftmostFirst)
            .builder()
            .extend(prefixes)
            .build()?;
        Some(Searcher::Packed {
            packed,
            groups,
            single,
        })
    }

    /// Calls `f(targets, start, end)` for every occurrence of every anchor in `text`.
    pub(crate) fn find(&self, text: &[u8], mut f: impl FnMut(&[T], usize, usize)) {
        match &self.searcher {
            Searcher::Ac(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    f(
                        &self.lits[m.pattern().as_usize()].targets,
                        m.start(),
                        m.end(),
                    );
                }
            }
            Searcher::Packed {
                packed,
                groups,
                single,
            } => {
                for &(b, li) in single {
                    for i in memchr::memchr_iter(b, text) {
                        f(&self.lits[li].targets, i, i + 1);
                    }
                }
                let n = text.len();
                let mut buf = [0u8; BLOCK + PREFIX - 1];
                let mut base = 0;
                while base < n {
                    let end = (base + BLOCK + PREFIX - 1).min(n);
                    let len = end - base;
                    for (d, s) in buf[..len].iter_mut().zip(&text[base..end]) {
                        *d = fold(*s);
                    }
                    let hay = &buf[..len];
                    let limit = BLOCK.min(len);
                    let mut p = 0;
                    while p < limit {
                        let Some(m) = packed.find_in(hay, Span::from(p..len)) else {
                            break;
                        };
                        let s = m.start();
                        if s >= limit {
                            break;
                        }
                        let at = base + s;
                        for &li in &groups[m.pattern().as_usize()] {
                            let lit = &self.lits[li];
                            let e = at + lit.bytes.len();
                            if e <= n && text[at..e].eq_ignore_ascii_case(&lit.bytes) {
                                f(&lit.targets, at, e);
                            }
                        }
                        p = s + 1;
                    }
                    base += BLOCK;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(a: &Anchors<u8>, text: &str) -> Vec<(u8, usize, usize)> {
        let mut v = Vec::new();
        a.find(text.as_bytes(), |t, s, e| {
            for &x in t {
                v.push((x, s, e));
            }
        });
        v.sort_unstable();
        v
    }

    fn naive(anchors: &[(&str, u8)], text: &str) -> Vec<(u8, usize, usize)> {
        let b = text.as_bytes();
        let mut v = Vec::new();
        for &(a, t) in anchors {
            for i in 0..b.len() {
                let e = i + a.len();
                if e <= b.len() && b[i..e].eq_ignore_ascii_case(a.as_bytes()) {
                    v.push((t, i, e));
                }
            }
        }
        v.sort_unstable();
        v.dedup();
        v
    }

    #[test]
    fn packed_equals_naive_across_blocks() {
        let anchors = [
            ("@", 0u8),
            ("sk-", 1),
            ("sk-ant-", 2),
            ("secret", 3),
            ("secret_key", 4),
            ("AKIA", 5),
            ("\u{ff10}", 6),
            ("\u{ff19}", 6),
            ("://", 7),
        ];
        let a = Anchors::new(&anchors).unwrap();
        let mut text = String::new();
        for i in 0..3000 {
            let piece = [
                "x",
                "SK-Ant-",
                "@",
                "SeCrEt_KeY",
                "akia",
                "９",
                "０",
                ":/",
                "/",
                "é",
                "\u{ff15}",
            ];
            text.push_str(piece[i % piece.len()]);
            if i % 7 == 0 {
                text.push_str("abc");
            }
        }
        assert_eq!(all(&a, &text), naive(&anchors, &text));
        // `U+FF15` is folded to the same prefix but is not an anchor here.
        assert!(all(&a, "\u{ff15}").is_empty());
        assert_eq!(all(&a, "s"), vec![]);
    }
}
