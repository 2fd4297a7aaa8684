//! Finds every occurrence of every anchor literal, ASCII case-insensitively, at every position
//! (overlapping), like an overlapping Aho-Corasick search, but with a SIMD searcher.
//!
//! An ASCII case-insensitive Aho-Corasick automaton over ~80 anchors cannot use its SIMD
//! prefilter. Instead the text is case-folded block by block into a small buffer (a loop the
//! compiler vectorises), and a case-sensitive packed (Teddy) searcher looks for a few 3-byte
//! needles shared by the folded anchors (`key` for `api_key`, `accesskey`, ...; see [`needles`]);
//! each hit is verified against the anchors containing that needle, at its offset in each.
//! Case-sensitive anchors are searched on the text itself by their 3-byte prefixes. Anchors
//! without an ASCII letter in their first 3 bytes (`://`, `-----BEGIN`, fullwidth digits) are
//! found with `memmem`, one-byte anchors (`@`) with `memchr`. When no packed searcher can be built
//! (no SIMD on the target, too many prefixes, an anchor of 2 bytes), an ASCII case-insensitive
//! Aho-Corasick automaton does the same job, more slowly.

use std::collections::HashMap;

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

/// Texts up to this length are searched by [`Short`] (no SIMD setup per call). At most 64
/// (one bit mask).
pub(crate) const SHORT: usize = 64;

/// Bytes per folded block.
const BLOCK: usize = 4096;
/// Texts up to this length use a small folding buffer.
const SMALL: usize = 256;
/// Length of the packed searcher's prefixes.
const PREFIX: usize = 3;

/// One distinct anchor and what it stands for.
struct Lit<T> {
    /// As given when `exact`, else ASCII lower case.
    bytes: Vec<u8>,
    /// Matched case-sensitively.
    exact: bool,
    targets: Vec<T>,
    /// The first `min(8, len)` bytes of `bytes` as a little-endian word (zero above them).
    head: u64,
    /// `0x20` in each byte of `head` that is a letter of a case-insensitive literal (a text
    /// byte there may differ from it by case).
    fold: u64,
    /// `0xFF` in each byte of `head` (the literal's bytes), `0` past the literal.
    keep: u64,
}

impl<T> Lit<T> {
    fn new(bytes: Vec<u8>, exact: bool) -> Lit<T> {
        let (mut head, mut fold, mut keep) = (0u64, 0u64, 0u64);
        for (i, &b) in bytes.iter().take(8).enumerate() {
            head |= u64::from(b) << (8 * i);
            keep |= 0xFF << (8 * i);
            if !exact && b.is_ascii_lowercase() {
                fold |= 0x20 << (8 * i);
            }
        }
        Lit {
            bytes,
            exact,
            targets: Vec::new(),
            head,
            fold,
            keep,
        }
    }

    /// `Some(end)` when the literal occurs at `at` (ASCII case-insensitively unless `exact`).
    #[inline]
    fn at(&self, text: &[u8], at: usize) -> Option<usize> {
        let e = at + self.bytes.len();
        if let Some(w) = text.get(at..at + 8) {
            // One word compare for the first 8 bytes: a text byte `t` equals a lower-case
            // literal letter `c` ignoring ASCII case iff `t | 0x20 == c` (`c ^ 0x20` is its
            // upper case); other bytes must be equal.
            let mut x = [0u8; 8];
            x.copy_from_slice(w);
            let word = u64::from_le_bytes(x);
            if (word | self.fold) & self.keep != self.head {
                return None;
            }
            if self.bytes.len() <= 8 {
                return Some(e);
            }
        }
        let s = text.get(at..e)?;
        let ok = if self.exact {
            s == self.bytes.as_slice()
        } else {
            s.eq_ignore_ascii_case(&self.bytes)
        };
        ok.then_some(e)
    }
}

/// Packed searchers for distinct 3-byte needles and, per needle, the literals to verify:
/// `(literal, offset of the needle in it)`. More than [`PART`] needles are split (in sorted
/// order) among several searchers: Teddy's buckets lose selectivity with every needle, and on
/// trace text two searchers of 12 similar needles each run ~4x faster than one of 24.
struct Prefixes {
    parts: Vec<Part>,
}

struct Part {
    packed: packed::Searcher,
    /// Per needle, in the packed searcher's pattern order: the literals to verify.
    groups: Vec<Vec<Verify>>,
    /// The needles, in the same order.
    needles: Vec<[u8; PREFIX]>,
    /// Bit `k` of entry `c`: needle `k` begins with the byte `c`.
    first: Box<[u16; 256]>,
}

/// One literal to verify at a needle hit: its index, the needle's offset in it, and (when
/// that offset is not 0) its folded byte just before the needle, which the text must have
/// there (folded) for the literal to occur: one compare rejects `api_secret` at the `secret`
/// of `my secret` before a full verification.
#[derive(Clone, Copy)]
struct Verify {
    lit: usize,
    off: usize,
    before: u8,
}

/// After two hits at most this many bytes apart, the bytes that follow are checked one by
/// one (a table look-up each) until this many pass without a hit: a packed search per hit
/// costs about as much as a byte-by-byte check of 16 bytes, so hits denser than that
/// (`password token secret ...`) are cheaper found byte by byte (32 was slower on
/// `adversarial_keywords`: its `sk-` hits, 30 bytes apart, were then scanned byte by byte).
const DENSE: usize = 16;

impl Part {
    /// The first needle occurrence beginning in `hay[from..to]` (`to + PREFIX - 1 <=
    /// hay.len()`), byte by byte: (start, needle index).
    #[inline]
    fn scalar(&self, hay: &[u8], from: usize, to: usize) -> Option<(usize, usize)> {
        for i in from..to {
            let mut m = self.first[usize::from(hay[i])];
            while m != 0 {
                let k = m.trailing_zeros() as usize;
                m &= m - 1;
                let t = &self.needles[k];
                if hay[i + 1] == t[1] && hay[i + 2] == t[2] {
                    return Some((i, k));
                }
            }
        }
        None
    }
}

/// Most needles per packed searcher.
const PART: usize = 16;
// One bit per needle of a part in `Part::masks`.
const _: () = assert!(PART <= 16);

impl Prefixes {
    /// `needles`: (needle, literal, offset of the needle in the literal).
    fn new<T>(
        lits: &[Lit<T>],
        needles: Vec<([u8; PREFIX], usize, usize)>,
    ) -> Option<Option<Prefixes>> {
        if needles.is_empty() {
            return Some(None);
        }
        let mut distinct: Vec<[u8; PREFIX]> = needles.iter().map(|&(p, _, _)| p).collect();
        distinct.sort_unstable();
        distinct.dedup();
        let k = distinct.len().div_ceil(PART);
        let size = distinct.len().div_ceil(k);
        let mut parts = Vec::new();
        for chunk in distinct.chunks(size) {
            let groups = chunk
                .iter()
                .map(|t| {
                    needles
                        .iter()
                        .filter(|&&(p, _, _)| p == *t)
                        .map(|&(_, lit, off)| Verify {
                            lit,
                            off,
                            before: off.checked_sub(1).map_or(0, |j| fold(lits[lit].bytes[j])),
                        })
                        .collect()
                })
                .collect();
            let packed = packed::Config::new()
                .match_kind(PackedKind::LeftmostFirst)
                .builder()
                .extend(chunk)
                .build()?;
            let mut first = Box::new([0u16; 256]);
            for (k, t) in chunk.iter().enumerate() {
                first[usize::from(t[0])] |= 1 << k;
            }
            parts.push(Part {
                packed,
                groups,
                needles: chunk.to_vec(),
                first,
            });
        }
        Some(Some(Prefixes { parts }))
    }

    /// Hits starting in `hay[..limit]`, verified against `text` (`hay` is `text[base..]`,
    /// maybe folded).
    #[inline]
    fn scan<T>(
        &self,
        lits: &[Lit<T>],
        hay: &[u8],
        limit: usize,
        text: &[u8],
        base: usize,
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        // Needles that fit in `hay` (the caller's blocks overlap by `PREFIX - 1` bytes, so all
        // those beginning before `limit` fit, but at the text's end).
        let fits = limit.min((hay.len() + 1).saturating_sub(PREFIX));
        for part in &self.parts {
            let mut p = 0;
            // The last hit, and whether the bytes after it are checked one by one.
            let mut prev: Option<usize> = None;
            let mut dense = false;
            while p < limit {
                let (s, k) = if dense {
                    let to = (p + DENSE).min(fits).max(p);
                    match part.scalar(hay, p, to) {
                        Some(hit) => hit,
                        None => {
                            (p, dense, prev) = (to, false, None);
                            continue;
                        }
                    }
                } else {
                    let Some(m) = part.packed.find_in(hay, Span::from(p..hay.len())) else {
                        break;
                    };
                    if m.start() >= limit {
                        break;
                    }
                    (m.start(), m.pattern().as_usize())
                };
                dense = prev.is_some_and(|h| s - h <= DENSE);
                prev = Some(s);
                let at = base + s;
                for v in &part.groups[k] {
                    if v.off > 0 && at.checked_sub(1).is_none_or(|i| fold(text[i]) != v.before) {
                        continue;
                    }
                    if let Some(at) = at.checked_sub(v.off)
                        && let Some(e) = lits[v.lit].at(text, at)
                    {
                        f(v.lit, at, e);
                    }
                }
                p = s + 1;
            }
        }
    }
}

/// Needles for the case-insensitive literals `folded` (indices into `lits`): a few shared
/// 3-byte substrings instead of one prefix each, since a packed searcher's buckets lose
/// selectivity with every needle (8 needles search ~3x faster than 13 on trace text). Greedy
/// set cover: the substring contained in the most literals not yet covered; a literal's own
/// prefix on ties, and an inner substring only when it covers at least 3 literals (`key` for
/// `api_key`, `access-key`, `appkey`, ...), so that short common words (`are` in `bearer`
/// and `sharedaccesssignature`) do not become needles. Returns (folded needle, literal,
/// offset of the needle in the literal).
fn needles<T>(lits: &[Lit<T>], folded: Vec<usize>) -> Vec<([u8; PREFIX], usize, usize)> {
    let window = |i: usize, off: usize| -> [u8; PREFIX] {
        let b = &lits[i].bytes;
        [b[off], b[off + 1], b[off + 2]].map(fold)
    };
    let find = |i: usize, t: [u8; PREFIX]| -> Option<usize> {
        (0..=lits[i].bytes.len() - PREFIX).find(|&off| window(i, off) == t)
    };
    let mut out = Vec::new();
    let mut left = folded;
    // Per 3-byte window: how many literals left hold it, and whether one begins with it.
    let mut score: HashMap<[u8; PREFIX], (usize, bool)> = HashMap::new();
    let mut seen: Vec<[u8; PREFIX]> = Vec::new();
    while !left.is_empty() {
        score.clear();
        for &j in &left {
            seen.clear();
            for off in 0..=lits[j].bytes.len() - PREFIX {
                let t = window(j, off);
                if !seen.contains(&t) {
                    seen.push(t);
                    score.entry(t).or_default().0 += 1;
                }
            }
            score.entry(window(j, 0)).or_default().1 = true;
        }
        // Most covered, then a prefix, then the smallest bytes (deterministic); a window
        // that covers fewer than 3 literals is only taken as some literal's prefix.
        let best = score
            .iter()
            .filter(|&(_, &(covers, prefix))| covers >= 3 || prefix)
            .max_by(|(ta, a), (tb, b)| a.cmp(b).then_with(|| tb.cmp(ta)))
            .map(|(&t, _)| t);
        let Some(t) = best else {
            break;
        };
        left.retain(|&j| match find(j, t) {
            Some(off) => {
                out.push((t, j, off));
                false
            }
            None => true,
        });
    }
    out
}

/// A scalar search for short texts, where the packed searchers' per-call setup (and their
/// Rabin-Karp fallback below 16-32 bytes) costs more than the search: one bit per raw byte
/// pair that can begin an anchor (every case variant of a case-insensitive anchor; exact
/// anchors as written, so `AKIA` does not make every `ak` a hit), one bit per hashed folded
/// 3-byte prefix, then the sorted distinct folded prefixes and the literals sharing each.
/// Reports exactly what the packed searchers report: literal `l` at `i` iff `l.at(text, i)`
/// (its folded prefix then equals the text's folded prefix).
struct Short {
    /// Bit `a << 8 | b`: some anchor may begin with the bytes `a b` (for a one-byte anchor
    /// `a`, every `b`, and `0` past the end).
    pairs: Box<[u64; 1024]>,
    /// Bit [`tri_hash`] of each folded 3-byte prefix.
    tris: Box<[u64; 1024]>,
    /// Sorted distinct folded 3-byte prefixes, and per prefix the literals to verify.
    prefixes: Vec<[u8; PREFIX]>,
    groups: Vec<Vec<usize>>,
}

#[inline]
fn tri_hash(p: [u8; PREFIX]) -> usize {
    let h = u32::from(p[0]) | u32::from(p[1]) << 8 | u32::from(p[2]) << 16;
    (h.wrapping_mul(0x9E37_79B1) >> 16) as usize
}

#[inline]
fn bit(set: &[u64; 1024], i: usize) -> bool {
    set[i / 64] & (1 << (i % 64)) != 0
}

impl Short {
    fn new<T>(
        lits: &[Lit<T>],
        single: &[(u8, usize)],
        prefixes: &[([u8; PREFIX], usize)],
    ) -> Short {
        let mut pairs = Box::new([0u64; 1024]);
        let mut tris = Box::new([0u64; 1024]);
        let set = |s: &mut [u64; 1024], i: usize| s[i / 64] |= 1 << (i % 64);
        for &(b, _) in single {
            for c in 0..256 {
                set(&mut pairs, usize::from(b) << 8 | c);
            }
        }
        let mut all: Vec<([u8; PREFIX], usize)> =
            prefixes.iter().map(|&(p, i)| (p.map(fold), i)).collect();
        all.sort_unstable();
        let mut distinct: Vec<[u8; PREFIX]> = Vec::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (p, i) in all {
            let raw = &lits[i].bytes;
            if lits[i].exact {
                set(&mut pairs, usize::from(raw[0]) << 8 | usize::from(raw[1]));
            } else {
                // Every byte pair that `at` accepts: ASCII case variants.
                for a in [raw[0].to_ascii_lowercase(), raw[0].to_ascii_uppercase()] {
                    for b in [raw[1].to_ascii_lowercase(), raw[1].to_ascii_uppercase()] {
                        set(&mut pairs, usize::from(a) << 8 | usize::from(b));
                    }
                }
            }
            set(&mut tris, tri_hash(p));
            if distinct.last() == Some(&p) {
                if let Some(g) = groups.last_mut() {
                    g.push(i);
                }
            } else {
                distinct.push(p);
                groups.push(vec![i]);
            }
        }
        Short {
            pairs,
            tris,
            prefixes: distinct,
            groups,
        }
    }

    #[inline]
    fn find<T>(
        &self,
        lits: &[Lit<T>],
        single: &[(u8, usize)],
        text: &[u8],
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        let n = text.len();
        let mut base = 0;
        while base < n {
            let end = (base + 64).min(n);
            let mut mask = self.pair_mask(text, base, end);
            while mask != 0 {
                let i = base + mask.trailing_zeros() as usize;
                mask &= mask - 1;
                for &(c, li) in single {
                    if text[i] == c {
                        f(li, i, i + 1);
                    }
                }
                if i + PREFIX <= n {
                    let p = [fold(text[i]), fold(text[i + 1]), fold(text[i + 2])];
                    if bit(&self.tris, tri_hash(p))
                        && let Ok(g) = self.prefixes.binary_search(&p)
                    {
                        for &li in &self.groups[g] {
                            if let Some(e) = lits[li].at(text, i) {
                                f(li, i, e);
                            }
                        }
                    }
                }
            }
            base = end;
        }
    }

    /// Whether some anchor may occur in `text` (at most [`SHORT`] bytes): a byte pair, and
    /// for anchors of 3+ bytes the hashed folded 3-byte prefix, of one begins somewhere.
    /// `false` means that [`find`](Self::find) reports nothing.
    fn may_match(&self, single: &[(u8, usize)], text: &[u8]) -> bool {
        let n = text.len();
        let mut mask = self.pair_mask(text, 0, n);
        while mask != 0 {
            let i = mask.trailing_zeros() as usize;
            mask &= mask - 1;
            if single.iter().any(|&(c, _)| text[i] == c) {
                return true;
            }
            if i + PREFIX <= n
                && bit(
                    &self.tris,
                    tri_hash([fold(text[i]), fold(text[i + 1]), fold(text[i + 2])]),
                )
            {
                return true;
            }
        }
        false
    }

    /// Bit `j`: an anchor may begin at `base + j`, for `base..end` (at most 64 bytes).
    /// Branch-free; a small function of its own, so that its loop keeps its state in
    /// registers.
    #[inline(never)]
    fn pair_mask(&self, text: &[u8], base: usize, end: usize) -> u64 {
        let pairs = &*self.pairs;
        let n = text.len();
        let mut mask = 0u64;
        for (j, w) in text[base..(end + 1).min(n)].windows(2).enumerate() {
            let k = usize::from(w[0]) << 8 | usize::from(w[1]);
            mask |= ((pairs[k / 64] >> (k % 64)) & 1) << j;
        }
        if end == n && end > base {
            // The last byte, followed by nothing (`0`).
            let k = usize::from(text[n - 1]) << 8;
            mask |= ((pairs[k / 64] >> (k % 64)) & 1) << (n - 1 - base);
        }
        mask
    }
}

/// Literals sharing a first 2 or 3 bytes that are found on their own (see
/// `Searcher::Packed::raw`), by the longest prefix they share.
struct Raw {
    finder: memchr::memmem::Finder<'static>,
    lits: Vec<usize>,
}

/// At most this many distinct keys are searched with `memmem` (one pass each); else those
/// literals stay in the packed searchers.
const MAX_RAW: usize = 3;

enum Searcher {
    Packed {
        /// Case-insensitive literals, over the folded text.
        folded: Option<Prefixes>,
        /// Case-sensitive literals, over the text itself.
        exact: Option<Prefixes>,
        /// One-byte literals: (byte, literal index); found with `memchr`.
        single: Vec<(u8, usize)>,
        /// Literals with no ASCII letter in their first 3 bytes (`://`, `-----BEGIN`, the
        /// fullwidth digits), grouped by those bytes (by the first 2 when the first is not
        /// ASCII, so that the ten fullwidth digits share one); each group found with `memmem`
        /// on the text itself. In a packed searcher, `EF BC 90` would share nibbles with most
        /// CJK text, and every extra needle makes its buckets less selective.
        raw: Vec<Raw>,
        /// All of the above, for texts of at most [`SHORT`] bytes.
        short: Short,
    },
    Ac(AhoCorasick),
}

pub(crate) struct Anchors<T> {
    lits: Vec<Lit<T>>,
    searcher: Searcher,
}

impl<T: Copy + PartialEq> Anchors<T> {
    /// `anchors`: (literal, case-sensitive?, target). Returns `None` when the fallback
    /// automaton is too large.
    pub(crate) fn new(anchors: &[(&str, bool, T)]) -> Option<Anchors<T>> {
        Self::build(anchors, false)
    }

    fn build(anchors: &[(&str, bool, T)], force_ac: bool) -> Option<Anchors<T>> {
        let mut lits: Vec<Lit<T>> = Vec::new();
        for &(a, exact, t) in anchors {
            let exact = exact && a.bytes().any(|b| b.is_ascii_alphabetic());
            let bytes = if exact {
                a.as_bytes().to_vec()
            } else {
                a.as_bytes().to_ascii_lowercase()
            };
            let i = match lits
                .iter()
                .position(|l| l.bytes == bytes && l.exact == exact)
            {
                Some(i) => i,
                None => {
                    lits.push(Lit::new(bytes, exact));
                    lits.len() - 1
                }
            };
            if !lits[i].targets.contains(&t) {
                lits[i].targets.push(t);
            }
        }
        let searcher = match Self::packed(&lits).filter(|_| !force_ac) {
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
        let mut folded = Vec::new();
        let mut exact = Vec::new();
        let mut single = Vec::new();
        let mut raw: Vec<(Vec<u8>, usize)> = Vec::new();
        let mut all = Vec::new();
        for (i, l) in lits.iter().enumerate() {
            match l.bytes.len() {
                0 => return None,
                1 if !l.bytes[0].is_ascii_alphabetic() => {
                    single.push((l.bytes[0], i));
                }
                n if n < PREFIX => return None,
                _ => {
                    let p = [l.bytes[0], l.bytes[1], l.bytes[2]];
                    all.push((p, i));
                    if !p.iter().any(u8::is_ascii_alphabetic) {
                        let key = if p[0].is_ascii() { &p[..] } else { &p[..2] };
                        raw.push((key.to_vec(), i));
                    } else if l.exact && p.iter().all(|&b| fold(b) == b || b.is_ascii_alphabetic())
                    {
                        exact.push((p, i));
                    } else {
                        folded.push(i);
                    }
                }
            }
        }
        let mut keys: Vec<&[u8]> = raw.iter().map(|(k, _)| k.as_slice()).collect();
        keys.sort_unstable();
        keys.dedup();
        let raw_groups = if keys.len() <= MAX_RAW {
            keys.iter()
                .map(|k| {
                    let group: Vec<usize> = raw
                        .iter()
                        .filter(|(q, _)| q == k)
                        .map(|&(_, i)| i)
                        .collect();
                    // Searched for: the longest prefix the group's literals share (`-----BEGIN`,
                    // not `---`, which every Markdown rule and date range holds), up to the
                    // first ASCII letter unless all of them are case-sensitive.
                    let first = &lits[group[0]].bytes;
                    let all_exact = group.iter().all(|&i| lits[i].exact);
                    let len = (0..first.len())
                        .take_while(|&j| {
                            group
                                .iter()
                                .all(|&i| lits[i].bytes.get(j) == Some(&first[j]))
                                && (all_exact || !first[j].is_ascii_alphabetic())
                        })
                        .count();
                    Raw {
                        finder: memchr::memmem::Finder::new(&first[..len]).into_owned(),
                        lits: group,
                    }
                })
                .collect()
        } else {
            folded.extend(raw.iter().map(|&(_, i)| i));
            Vec::new()
        };
        let folded = Prefixes::new(lits, needles(lits, folded))?;
        let exact = Prefixes::new(lits, exact.into_iter().map(|(p, i)| (p, i, 0)).collect())?;
        let short = Short::new(lits, &single, &all);
        Some(Searcher::Packed {
            folded,
            exact,
            single,
            raw: raw_groups,
            short,
        })
    }

    /// For a text of at most [`SHORT`] bytes: `false` when [`find`](Self::find) surely
    /// reports nothing (checked more cheaply than finding); `true` when it may report
    /// something (or the text is longer, or the fallback automaton is in use).
    #[inline]
    pub(crate) fn may_match_short(&self, text: &[u8]) -> bool {
        match &self.searcher {
            Searcher::Packed { single, short, .. } if text.len() <= SHORT => {
                short.may_match(single, text)
            }
            _ => true,
        }
    }

    /// The length of the longest anchor, in bytes.
    pub(crate) fn max_len(&self) -> usize {
        self.lits.iter().map(|l| l.bytes.len()).max().unwrap_or(0)
    }

    /// Whether the packed searchers are used (not the fallback automaton).
    #[cfg(test)]
    pub(crate) fn is_packed(&self) -> bool {
        matches!(self.searcher, Searcher::Packed { .. })
    }

    /// The folded search, in blocks of `N - PREFIX + 1` bytes (overlapping by `PREFIX - 1`).
    fn scan_folded<const N: usize>(
        &self,
        folded: &Prefixes,
        text: &[u8],
        f: &mut impl FnMut(usize, usize, usize),
    ) {
        let block = N - (PREFIX - 1);
        let n = text.len();
        let mut buf = [0u8; N];
        let mut base = 0;
        while base < n {
            let end = (base + N).min(n);
            let len = end - base;
            for (d, s) in buf[..len].iter_mut().zip(&text[base..end]) {
                *d = fold(*s);
            }
            folded.scan(&self.lits, &buf[..len], block.min(len), text, base, f);
            base += block;
        }
    }

    /// Calls `f(targets, start, end)` for every occurrence of every anchor in `text`.
    #[cfg(test)]
    pub(crate) fn find<'s>(&'s self, text: &[u8], mut f: impl FnMut(&'s [T], usize, usize)) {
        self.find_ids(text, |li, s, e| f(&self.lits[li].targets, s, e));
    }

    /// What the anchor `id` (from [`find_ids`](Self::find_ids)) stands for.
    #[inline]
    /// The number of anchors (ids are `0..len()`).
    pub(crate) fn len(&self) -> usize {
        self.lits.len()
    }

    pub(crate) fn targets(&self, id: usize) -> &[T] {
        &self.lits[id].targets
    }

    /// Calls `f(id, start, end)` for every occurrence of every anchor in `text`, `id` naming
    /// the anchor (see [`targets`](Self::targets)).
    pub(crate) fn find_ids(&self, text: &[u8], mut f: impl FnMut(usize, usize, usize)) {
        match &self.searcher {
            Searcher::Ac(ac) => {
                for m in ac.find_overlapping_iter(text) {
                    let li = m.pattern().as_usize();
                    let lit = &self.lits[li];
                    if !lit.exact || lit.at(text, m.start()).is_some() {
                        f(li, m.start(), m.end());
                    }
                }
            }
            Searcher::Packed {
                folded,
                exact,
                single,
                raw,
                short,
            } => {
                if text.len() <= SHORT {
                    short.find(&self.lits, single, text, &mut f);
                    return;
                }
                for &(b, li) in single {
                    let mut i = 0;
                    while let Some(k) = memchr::memchr(b, &text[i..]) {
                        f(li, i + k, i + k + 1);
                        // The next 16 bytes one by one: a `memchr` call per hit costs more
                        // when hits are dense (`a@a@a@...`).
                        i += k + 1;
                        let end = (i + 16).min(text.len());
                        while i < end {
                            if text[i] == b {
                                f(li, i, i + 1);
                            }
                            i += 1;
                        }
                    }
                }
                if let Some(exact) = exact {
                    exact.scan(&self.lits, text, text.len(), text, 0, &mut f);
                }
                for w in raw {
                    // One step at a time: a key like `---` overlaps itself.
                    let mut p = 0;
                    while let Some(i) = w.finder.find(&text[p..]) {
                        let at = p + i;
                        for &li in &w.lits {
                            if let Some(e) = self.lits[li].at(text, at) {
                                f(li, at, e);
                            }
                        }
                        p = at + 1;
                    }
                }
                let Some(folded) = folded else {
                    return;
                };
                // A small buffer for short texts: zeroing 4 KiB would cost more than the search.
                if text.len() <= SMALL {
                    self.scan_folded::<{ SMALL + PREFIX - 1 }>(folded, text, &mut f);
                } else {
                    self.scan_folded::<{ BLOCK + PREFIX - 1 }>(folded, text, &mut f);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `text[i..i + len]`, both ends moved forward to character boundaries.
    fn slice_at(text: &str, i: usize, len: usize) -> &str {
        let (mut s, mut e) = (i, (i + len).min(text.len()));
        while !text.is_char_boundary(s) {
            s += 1;
        }
        while !text.is_char_boundary(e) {
            e += 1;
        }
        &text[s..e.max(s)]
    }

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

    fn naive(anchors: &[(&str, bool, u8)], text: &str) -> Vec<(u8, usize, usize)> {
        let b = text.as_bytes();
        let mut v = Vec::new();
        for &(a, exact, t) in anchors {
            for i in 0..b.len() {
                let e = i + a.len();
                if e <= b.len()
                    && (b[i..e] == *a.as_bytes()
                        || !exact && b[i..e].eq_ignore_ascii_case(a.as_bytes()))
                {
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
            ("@", false, 0u8),
            ("sk-", true, 1),
            ("sk-ant-", true, 2),
            ("secret", false, 3),
            ("secret_key", false, 4),
            ("AKIA", true, 5),
            ("akia", false, 8),
            ("\u{ff10}", false, 6),
            ("\u{ff19}", false, 6),
            ("://", true, 7),
        ];
        let a = Anchors::new(&anchors).unwrap();
        assert!(matches!(a.searcher, Searcher::Packed { .. }));
        let ac = Anchors::build(&anchors, true).unwrap();
        let mut text = String::new();
        for i in 0..3000 {
            let piece = [
                "x",
                "SK-Ant-",
                "sk-ant-",
                "AKIA",
                "@",
                "SeCrEt_KeY",
                "akia",
                "９",
                "０",
                ":/",
                "/",
                "é",
                "\u{ff15}",
                "！",
                "日本",
            ];
            text.push_str(piece[i % piece.len()]);
            if i % 7 == 0 {
                text.push_str("abc");
            }
        }
        assert_eq!(all(&a, &text), naive(&anchors, &text));
        assert_eq!(all(&ac, &text), naive(&anchors, &text));
        // Short texts (small buffer) and block edges.
        for i in (0..400).step_by(7) {
            for len in [3, 40, SMALL - 1, SMALL, SMALL + 1, 300, BLOCK + 1] {
                let t = slice_at(&text, i, len);
                assert_eq!(all(&a, t), naive(&anchors, t), "{t:?}");
            }
        }
        // Every short length (the scalar search), at many offsets.
        for i in (0..600).step_by(5) {
            for len in 0..=SHORT + 2 {
                let t = slice_at(&text, i, len);
                let want = naive(&anchors, t);
                assert_eq!(all(&a, t), want, "{t:?}");
                assert!(a.may_match_short(t.as_bytes()) || want.is_empty(), "{t:?}");
            }
        }
        // `U+FF15` is folded to the same prefix but is not an anchor here.
        assert!(all(&a, "\u{ff15}").is_empty());
        assert_eq!(all(&a, "s"), vec![]);
    }

    /// The built-in anchors: few shared needles (inner ones at offsets), every literal covered,
    /// and the packed search equal to the naive one across folding blocks.
    #[test]
    fn builtin_anchors_shared_needles_equal_naive() {
        let anchors: Vec<(&str, bool, u8)> = crate::rules::BUILTINS
            .iter()
            .enumerate()
            .flat_map(|(r, b)| b.anchors.iter().map(move |a| (*a, b.exact, r as u8)))
            .collect();
        let a = Anchors::new(&anchors).unwrap();
        let Searcher::Packed { folded, raw, .. } = &a.searcher else {
            panic!("not packed");
        };
        let folded = &folded.as_ref().unwrap().parts;
        assert_eq!(folded.len(), 1);
        // 11 with `eyj` (bare JWTs), `pin` and `authorization` (Basic credentials): some
        // needles share Teddy's 8 buckets.
        assert!(folded[0].groups.len() <= 11, "{}", folded[0].groups.len());
        assert!(folded[0].groups.iter().flatten().any(|v| v.off > 0));
        let Searcher::Packed { exact, .. } = &a.searcher else {
            panic!("not packed");
        };
        // 44 case-sensitive prefixes (the vendor tokens' among them), at most 16 a searcher.
        assert_eq!(exact.as_ref().unwrap().parts.len(), 3);
        assert_eq!(raw.len(), 3);
        let mut pieces: Vec<String> = anchors.iter().map(|&(s, _, _)| s.to_owned()).collect();
        pieces.extend(anchors.iter().map(|&(s, _, _)| s.to_ascii_uppercase()));
        pieces.extend(
            [
                "key", "_key", "KEY", "tok", "sec", "pas", "x", " ", "-", "--", "é", "！", ":/",
            ]
            .map(str::to_owned),
        );
        let mut text = String::new();
        let mut i = 0usize;
        while text.len() < 3 * BLOCK {
            i = i.wrapping_mul(31).wrapping_add(17);
            text.push_str(&pieces[(i >> 3) % pieces.len()]);
        }
        assert_eq!(all(&a, &text), naive(&anchors, &text));
        for start in (0..600).step_by(13) {
            for len in [20, SHORT + 5, SMALL - 7, SMALL + 9, 1000] {
                let t = slice_at(&text, start, len);
                assert_eq!(all(&a, t), naive(&anchors, t), "{t:?}");
            }
        }
    }

    #[test]
    fn non_ascii_anchors_found_alone_or_in_the_packed_search() {
        // `---key` is found by `---` (its case variants too), `===BEGIN` by all of it.
        let few = [
            ("\u{ff10}", false, 0u8),
            ("\u{ff19}", false, 1),
            ("token", false, 2),
            ("---key", false, 5),
            ("===BEGIN", true, 6),
        ];
        let many = [
            ("\u{ff10}", false, 0u8),
            ("€uro", false, 1),
            ("é!!", true, 2),
            ("日本", false, 3),
            ("token", false, 4),
        ];
        let few_a = Anchors::new(&few).unwrap();
        let many_a = Anchors::new(&many).unwrap();
        assert!(matches!(&few_a.searcher, Searcher::Packed { raw, .. } if raw.len() == 3));
        assert!(matches!(&many_a.searcher, Searcher::Packed { raw, .. } if raw.is_empty()));
        let pieces = [
            "０", "９", "１", "！", "€uro", "€URO", "€", "é!!", "é!", "日本", "日", "TOKEN", "x",
            " ", "\u{ef}", "---key", "---KeY", "-", "===BEGIN", "===begin", "=",
        ];
        let mut text = String::new();
        for i in 0..2000 {
            text.push_str(pieces[(i * 7 + i / 13) % pieces.len()]);
        }
        for (a, anchors) in [(&few_a, &few[..]), (&many_a, &many[..])] {
            assert_eq!(all(a, &text), naive(anchors, &text));
            for i in (0..500).step_by(11) {
                for len in [1, 30, SHORT + 1, 100, SMALL + 3] {
                    let t = slice_at(&text, i, len);
                    assert_eq!(all(a, t), naive(anchors, t), "{t:?}");
                }
            }
        }
    }
}
