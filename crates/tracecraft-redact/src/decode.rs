//! Decoders: secrets inside encoded text.
//!
//! **What is decoded.**
//! - *percent-encoding*: each run of URL characters (no spaces, quotes, `&`, `?` or `#`)
//!   holding a `%XX`, decoded with the `percent-encoding` crate (`api_key%3Dsk-...`,
//!   `%2B44%207700...`, `user%40example.com`);
//! - *base64 and base64url*: each run of at least [`MIN_B64`] base64 characters that decodes
//!   (with the `base64` crate) to UTF-8 text that is mostly printable (Kubernetes Secrets,
//!   `Authorization: Basic ...`, data URIs, blobs in tool results);
//! - *JSON escapes*: around each `\/`, `\uXXXX` (surrogate pairs too) or `\\`, the
//!   non-whitespace segment (up to 1 KiB each side) with every escape in it undone; double
//!   escaping (`\\n`) is undone by the next level;
//! - *wrapped lines*: a raw or escaped line break (`\n`, `\r\n`, `\\n`) between a run of at
//!   least 16 token characters (`[A-Za-z0-9_+/.-]`) and another token that is not a key
//!   (`key:`, `key=`) is removed, joining the halves; the joined token alone is scanned.
//!
//! **Where.** Only where the prefilter sees a candidate: a `%XX`, a base64 run of
//! [`MIN_B64`]+ characters (probed 8 bytes at a time), a `\`, a line break between token
//! characters. Text with none costs a few `memchr` passes and a word-by-word probe; what is decoded is
//! the candidate's segment, never the whole text.
//!
//! **Depth and budget.** Decoded text is scanned by every rule and, again, by the decoders, up
//! to [`MAX_DEPTH`] levels; at most `BUDGET_FACTOR * len + BUDGET_EXTRA` bytes are decoded per
//! call in all, then decoding stops (what was found is still redacted). Work is linear in the
//! input.
//!
//! **Result.** A finding in decoded text redacts the source bytes it came from: the whole run
//! for percent and base64 (never the decoded copy only), the exact source span for escapes and
//! joins (a join's break included), under the inner rule's name. One the plain scan made on
//! the same bytes is not made twice.

use base64::Engine as _;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use crate::candidates::{ceil_char, floor_char};
use crate::engine::{Engine, Hit};
use crate::replace::Replaced;

/// Levels of decoding: decoded text is decoded again up to this depth.
pub(crate) const MAX_DEPTH: u8 = 3;
/// Shortest base64 run that is decoded.
pub(crate) const MIN_B64: usize = 20;
const BUDGET_FACTOR: usize = 4;
const BUDGET_EXTRA: usize = 64 * 1024;

/// Decoded text and, per decoded byte, the source range it came from, kept as runs: a
/// joined token or unescaped JSON text is mostly source text copied as it is, and a range per
/// byte (16 bytes of map per byte of text) made a long wrapped block cost 17 times its size.
struct Decoded {
    /// A wrapped token joined (not decoded): scanned only where the plain scan found
    /// nothing (a PEM body inside its block is not scanned again).
    joined: bool,
    text: String,
    /// Ascending by `at`, the first starting at 0: each run of `text` and its source.
    runs: Vec<Run>,
}

/// Bytes `at..` of a decoded text (up to the next run) and where they came from.
#[derive(Clone, Copy)]
struct Run {
    at: usize,
    /// Copied (`src + k` is byte `at + k`, each character mapped to its own bytes), or every
    /// byte decoded from the whole range `src..src_end`.
    copied: bool,
    src: usize,
    src_end: usize,
}

impl Decoded {
    fn with_capacity(n: usize) -> Self {
        Decoded {
            joined: false,
            text: String::with_capacity(n),
            runs: Vec::new(),
        }
    }

    /// Appends `s`, every byte from source `a..z`.
    fn push(&mut self, s: &str, a: usize, z: usize) {
        self.push_run(s, false, a, z);
    }

    /// Appends `s`, copied from the source at `base`: each character from its own bytes.
    fn push_copied(&mut self, s: &str, base: usize) {
        self.push_run(s, true, base, base + s.len());
    }

    fn push_run(&mut self, s: &str, copied: bool, src: usize, src_end: usize) {
        if s.is_empty() {
            return;
        }
        self.runs.push(Run {
            at: self.text.len(),
            copied,
            src,
            src_end,
        });
        self.text.push_str(s);
    }

    /// The source range of decoded byte `i` (`i < text.len()`).
    fn src(&self, i: usize) -> (usize, usize) {
        let r = self.runs[self.runs.partition_point(|r| r.at <= i) - 1];
        if !r.copied {
            return (r.src, r.src_end);
        }
        let cs = floor_char(&self.text, i);
        let len = self.text[cs..].chars().next().map_or(1, char::len_utf8);
        (r.src + (cs - r.at), r.src + (cs - r.at) + len)
    }

    /// The source start of decoded byte `i`.
    fn start(&self, i: usize) -> usize {
        self.src(i).0
    }

    /// The source end of decoded byte `i`.
    fn end(&self, i: usize) -> usize {
        self.src(i).1
    }

    /// The first decoded byte in `s..e` whose source range is wider than one byte.
    fn first_wide(&self, s: usize, e: usize) -> Option<usize> {
        let first = self.runs.partition_point(|r| r.at <= s).max(1) - 1;
        for (n, r) in self.runs.iter().enumerate().skip(first) {
            let run_end = self.runs.get(n + 1).map_or(self.text.len(), |next| next.at);
            let (lo, hi) = (r.at.max(s), run_end.min(e));
            if lo >= hi {
                if r.at >= e {
                    return None;
                }
                continue;
            }
            if !r.copied {
                if r.src_end - r.src > 1 {
                    return Some(lo);
                }
                continue;
            }
            // A byte of a character of more than one byte (not ASCII).
            if let Some(k) = (lo..hi).find(|&k| self.text.as_bytes()[k] >= 0x80) {
                return Some(k);
            }
        }
        None
    }
}

/// Decoding state of one redaction call.
pub(crate) struct Budget {
    left: usize,
}

impl Budget {
    pub(crate) fn for_text(len: usize) -> Budget {
        Budget {
            left: len
                .saturating_mul(BUDGET_FACTOR)
                .saturating_add(BUDGET_EXTRA),
        }
    }

    fn take(&mut self, n: usize) -> bool {
        if n > self.left {
            self.left = 0;
            return false;
        }
        self.left -= n;
        true
    }
}

/// The encoded parts of a text found before its plain hits are known: percent-encoded runs,
/// JSON string segments, base64 runs, in that order, and the line breaks where a wrapped
/// token may continue (see [`token_runs`]).
pub(crate) struct Encoded {
    parts: Vec<Decoded>,
    breaks: Vec<usize>,
}

/// The [`Encoded`] parts of `text`; the naive oracle looks for percent runs and JSON
/// segments without the cheap test for `%` and `\`.
pub(crate) fn scan_encoded(text: &str, naive: bool) -> Encoded {
    let b = text.as_bytes();
    let mut parts: Vec<Decoded> = Vec::new();
    if naive || memchr::memchr(b'%', b).is_some() {
        percent_runs(text, &mut parts);
    }
    if naive || memchr::memchr(b'\\', b).is_some() {
        json_segments(text, &mut parts);
    }
    // Base64 runs and wrap candidates come from one pass over the runs of token
    // characters; the naive oracle finds its wraps at every line break instead.
    let mut breaks = Vec::new();
    token_runs(text, &mut parts, &mut breaks);
    Encoded { parts, breaks }
}

impl Engine {
    /// Adds the findings inside encoded parts of `text` (see the module docs), scanning
    /// decoded text with the fast path, or with the naive oracle when `naive`.
    pub(crate) fn find_decoded(
        &self,
        text: &str,
        naive: bool,
        depth: u8,
        budget: &mut Budget,
        hits: &mut Vec<Hit>,
    ) {
        if depth == 0 || text.len() < 4 {
            return;
        }
        let scanned = scan_encoded(text, naive);
        self.find_decoded_scanned(text, naive, depth, budget, hits, scanned);
    }

    /// [`find_decoded`](Self::find_decoded) with the encoded parts of `text` already found
    /// ([`scan_encoded`], which does not depend on the plain scan's hits and can run beside
    /// it).
    pub(crate) fn find_decoded_scanned(
        &self,
        text: &str,
        naive: bool,
        depth: u8,
        budget: &mut Budget,
        hits: &mut Vec<Hit>,
        scanned: Encoded,
    ) {
        if depth == 0 || text.len() < 4 {
            return;
        }
        let Encoded { mut parts, breaks } = scanned;
        // A joined token whose source lies inside what the plain scan redacts (a PEM body
        // inside its block) is not built nor scanned: all it could find is redacted with
        // those bytes already. (Decoded parts are: what they hold is reported under its own
        // rule.)
        let covered = merged_spans(hits);
        if naive {
            wrapped_segments(text, &covered, &mut parts);
        } else {
            wrapped_at(text, &breaks, &covered, &mut parts);
        }
        if parts.is_empty() {
            return;
        }
        // What the plain scan found on the same bytes is not found twice.
        let plain: std::collections::HashSet<(usize, usize, u16)> =
            hits.iter().map(|h| (h.start, h.end, h.rule)).collect();
        for d in parts {
            if !budget.take(d.text.len()) {
                return;
            }
            let mut inner = Vec::new();
            self.find_at_depth(&d.text, naive, depth - 1, budget, &mut inner);
            for h in inner {
                if h.start < h.end && h.end <= d.text.len() {
                    let (start, end) = (d.start(h.start), d.end(h.end - 1));
                    if d.joined && extends_a_whole_match(&d, h.start, h.end, &plain) {
                        continue;
                    }
                    if !plain.contains(&(start, end, h.rule)) {
                        hits.push(Hit {
                            start,
                            end,
                            rule: h.rule,
                        });
                    }
                }
            }
        }
    }
}

impl Engine {
    /// [`find_decoded`](Self::find_decoded) for a pass after the first, on `text`, the output
    /// of the pass before, whose replacements are `spans`: only the lines around the
    /// replacements are decoded (see [`regions_near`]), unless they are most of the text.
    ///
    /// Every decoder reads within a line (percent and base64 runs, JSON segments: no run or
    /// segment holds a line break), except joins, which cross breaks between token characters
    /// (the regions reach over those). A part of the text that the pass before left as it was
    /// decodes as it did then: to nothing that was found (what was found was replaced, so it
    /// is in a region), so only the regions can find more. Findings of the plain scan in
    /// `hits` are seen by each region as they are (one crossing a region's edge, cut at the
    /// edge, covers as before but is never taken for the same finding).
    pub(crate) fn find_decoded_near(&self, text: &str, spans: &[Replaced], hits: &mut Vec<Hit>) {
        let mut budget = Budget::for_text(text.len());
        let regions = regions_near(text.as_bytes(), spans);
        let near: usize = regions.iter().map(|&(a, z)| z - a).sum();
        if near > text.len() / 2 {
            self.find_decoded(text, false, MAX_DEPTH, &mut budget, hits);
            return;
        }
        // The plain findings by start, swept with the regions (both ascending): each finding
        // is taken up once and dropped once, so many regions and findings cost no product.
        let mut plain: Vec<Hit> = hits.clone();
        plain.sort_unstable_by_key(|h| h.start);
        let (mut next, mut active): (usize, Vec<Hit>) = (0, Vec::new());
        let mut local = Vec::new();
        for (a, z) in regions {
            active.retain(|h| h.end > a);
            while next < plain.len() && plain[next].start < z {
                if plain[next].end > a {
                    active.push(plain[next]);
                }
                next += 1;
            }
            local.clear();
            local.extend(active.iter().map(|h| {
                let inside = h.start >= a && h.end <= z;
                Hit {
                    start: h.start.max(a) - a,
                    end: h.end.min(z) - a,
                    rule: if inside { h.rule } else { u16::MAX },
                }
            }));
            let seen = local.len();
            self.find_decoded(&text[a..z], false, MAX_DEPTH, &mut budget, &mut local);
            hits.extend(local[seen..].iter().map(|h| Hit {
                start: h.start + a,
                end: h.end + a,
                rule: h.rule,
            }));
        }
    }
}

/// The regions of `b` that a decoder may read differently after the replacements `spans`
/// (their places in `b`): the lines each replacement is on, and the lines joined to those
/// across a break that may be a wrap (a token character before it and one after it; see
/// [`wraps`]); ascending, merged where they meet. A region begins at a line start and ends at
/// a line end (its `\n` not included), so it is whole UTF-8.
fn regions_near(b: &[u8], spans: &[Replaced]) -> Vec<(usize, usize)> {
    let n = b.len();
    // Each search stops at the region before (`floor`) or at the first line break: every
    // byte is looked at a bounded number of times, however many replacements share a line.
    let line_start = |floor: usize, p: usize| {
        memchr::memrchr(b'\n', &b[floor..p]).map_or(floor, |i| floor + i + 1)
    };
    let line_end = |p: usize| memchr::memchr(b'\n', &b[p..]).map_or(n, |i| p + i);
    // The break `\n` at `p` (a `\r` before it belongs to it) may join two tokens.
    let joinable = |p: usize| {
        let before = if p > 0 && b[p - 1] == b'\r' {
            p.checked_sub(2)
        } else {
            p.checked_sub(1)
        };
        before.is_some_and(|i| token_char(b[i])) && b.get(p + 1).is_some_and(|&c| token_char(c))
    };
    let reach_down = |mut z: usize| {
        while z < n && joinable(z) {
            z = line_end(z + 1);
        }
        z
    };
    let mut regions: Vec<(usize, usize)> = Vec::new();
    for r in spans {
        let (os, oe) = (r.out_start.min(n), r.out_end.min(n));
        if let Some(last) = regions.last_mut()
            && os <= last.1
        {
            // On the last region's lines: only its end can move.
            if oe > last.1 {
                last.1 = reach_down(line_end(oe));
            }
            continue;
        }
        let floor = regions.last().map_or(0, |l| l.1);
        let mut a = line_start(floor, os);
        while a > floor && joinable(a - 1) {
            a = line_start(floor, a - 1);
        }
        let z = reach_down(line_end(oe));
        match regions.last_mut() {
            Some(last) if a <= last.1 + 1 => last.1 = last.1.max(z),
            _ => regions.push((a, z)),
        }
    }
    regions
}

/// Whether a match `s..e` of the joined token `d` only adds a weak tail to a match the plain
/// scan found on the piece before the break: the halves do not need each other, so the break
/// is a line end, not a wrap (`ghp_...` at the end of a line, `gho` beginning the next one),
/// and the line break and the next line's first word are left alone. A tail that looks like
/// the rest of a token ([`token_tail`]) is still joined, so that a wrapped key that already
/// matches on its first line leaves no tail behind.
fn extends_a_whole_match(
    d: &Decoded,
    s: usize,
    e: usize,
    plain: &std::collections::HashSet<(usize, usize, u16)>,
) -> bool {
    // The first character after a break carries the break in its source range (token
    // characters are ASCII: every other one has a range of one byte).
    let Some(k) = d.first_wide(s + 1, e) else {
        return false;
    };
    let (start, brk) = (d.start(s), d.start(k));
    plain.iter().any(|&(a, z, _)| a <= start && z == brk) && !token_tail(&d.text[k..e])
}

/// Whether `tail` (the joined text after a break) looks like the rest of a token rather than a
/// word: at least 8 characters mixing two of upper case, lower case and digits.
fn token_tail(tail: &str) -> bool {
    let b = tail.as_bytes();
    let classes = [
        b.iter().any(u8::is_ascii_uppercase),
        b.iter().any(u8::is_ascii_lowercase),
        b.iter().any(u8::is_ascii_digit),
    ];
    b.len() >= 8 && classes.iter().filter(|&&c| c).count() >= 2
}

/// Whether `a..z` lies inside one of `covered` (sorted, merged spans).
fn inside(covered: &[(usize, usize)], a: usize, z: usize) -> bool {
    let i = covered.partition_point(|c| c.1 < z);
    covered.get(i).is_some_and(|c| c.0 <= a)
}

/// The spans of `hits`, sorted and merged where they overlap or touch.
fn merged_spans(hits: &[Hit]) -> Vec<(usize, usize)> {
    let mut spans: Vec<(usize, usize)> = hits.iter().map(|h| (h.start, h.end)).collect();
    spans.sort_unstable();
    let mut merged: Vec<(usize, usize)> = Vec::with_capacity(spans.len());
    for (a, z) in spans {
        match merged.last_mut() {
            Some(last) if a <= last.1 => last.1 = last.1.max(z),
            _ => merged.push((a, z)),
        }
    }
    merged
}

/// A character of a URL run (no spaces, quotes, `&`, `?`, `#`, angle brackets).
fn url_char(c: u8) -> bool {
    c.is_ascii_graphic() && !matches!(c, b'"' | b'\'' | b'&' | b'?' | b'#' | b'<' | b'>' | b'`')
}

/// Every run of URL characters holding a `%XX`, decoded, mapped to the whole run.
fn percent_runs(text: &str, out: &mut Vec<Decoded>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'%', &b[i..]) {
        let p = i + k;
        let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
        if !(hex(p + 1) && hex(p + 2)) {
            i = p + 1;
            continue;
        }
        let mut a = p;
        while a > 0 && url_char(b[a - 1]) {
            a -= 1;
        }
        let mut z = p;
        while z < b.len() && url_char(b[z]) {
            z += 1;
        }
        let decoded = percent_encoding::percent_decode(&b[a..z]).decode_utf8_lossy();
        let mut d = Decoded::with_capacity(decoded.len());
        d.push(&decoded, a, z);
        out.push(d);
        i = z;
    }
}

/// The base64 alphabets, padding optional, trailing bits allowed.
fn b64_engine(url: bool) -> &'static GeneralPurpose {
    // Built once (at compile time): building one per run cost ~140 instructions, a run of
    // base64 broken by `=` every ~60 characters having thousands of runs per MB.
    const CONFIG: GeneralPurposeConfig = GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true);
    static STANDARD: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::STANDARD, CONFIG);
    static URL_SAFE: GeneralPurpose = GeneralPurpose::new(&base64::alphabet::URL_SAFE, CONFIG);
    if url { &URL_SAFE } else { &STANDARD }
}

/// `[A-Za-z0-9+/_-]`, as a table (the probe loop runs over all text).
static B64_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'-' | b'_');
        c += 1;
    }
    t
};

#[inline]
fn b64_char(c: u8) -> bool {
    B64_CHARS[usize::from(c)]
}

/// Whether all 8 bytes of `w` are [`b64_char`]s.
fn b64_word(w: &[u8]) -> bool {
    let mut a = [0u8; 8];
    a.copy_from_slice(&w[..8]);
    let raw = u64::from_le_bytes(a);
    b64_lanes(raw) & !raw & 0x8080_8080_8080_8080 == 0x8080_8080_8080_8080
}

/// The high bit of each lane of `raw` whose low 7 bits are a [`b64_char`], computed on the
/// word at once (per byte lane, with no carry between lanes: range checks by adding to 7-bit
/// values). Lanes with their own high bit set must be masked out by the caller.
#[inline]
fn b64_lanes(raw: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let x = raw & !HIGH;
    // High bit of a lane: `lo <= x <= hi`.
    let range = |lo: u64, hi: u64| (x + ONES * (0x80 - lo)) & !(x + ONES * (0x7F - hi));
    // High bit of a lane: `x == c`.
    let eq = |c: u64| !((x ^ (ONES * c)) | HIGH).wrapping_sub(ONES) & HIGH;
    (range(0x30, 0x39)
        | range(0x41, 0x5A)
        | range(0x61, 0x7A)
        | eq(0x2B)
        | eq(0x2F)
        | eq(0x2D)
        | eq(0x5F))
        & HIGH
}

/// One pass over the runs of token characters (`[A-Za-z0-9_+/.-]`) of `text`, looking only
/// where an 8-byte-aligned word is all token characters (every run of 15 or more holds one):
/// - each run of at least [`MIN_B64`] base64 characters (a token run split at `.`, plus `=`
///   padding) that decodes to mostly printable UTF-8, mapped to the whole run, into `out`;
/// - each line break right after at least [`MIN_WRAPPED`] token characters (where a wrapped
///   token may continue), into `breaks`, ascending.
fn token_runs(text: &str, out: &mut Vec<Decoded>, breaks: &mut Vec<usize>) {
    let b = text.as_bytes();
    // The end of the last run looked at: no run begins before it.
    let mut done = 0;
    let mut w = 0;
    while let Some(word) = b.get(w..w + 8) {
        let x = load(word);
        // The cheap test first, which rejects most words of prose.
        if has_space_like(x) || !token_word(x) {
            w += 8;
            continue;
        }
        // To the run's end: byte by byte for a short run (most), 8 bytes at a time past
        // 16 more (a run of megabytes was read at ~8 instructions a byte).
        let mut z = w + 8;
        let near = (z + 16).min(b.len());
        while z < near && token_char(b[z]) {
            z += 1;
        }
        if z == near {
            while let Some(word) = b.get(z..z + 8) {
                if !token_word(load(word)) {
                    break;
                }
                z += 8;
            }
            while z < b.len() && token_char(b[z]) {
                z += 1;
            }
        }
        let mut a = w;
        while a > done && token_char(b[a - 1]) {
            a -= 1;
        }
        done = z;
        w = z;
        if z - a >= MIN_WRAPPED && z < b.len() && break_len(b, z) > 0 {
            breaks.push(z);
        }
        if z - a < MIN_B64 {
            continue;
        }
        // The base64 runs of the token run: its pieces between dots (looked for with a
        // vectorized search in a long run, byte by byte in a short one).
        let long = z - a > LONG_RUN;
        let mut pa = a;
        loop {
            let dot = if long {
                memchr::memchr(b'.', &b[pa..z]).map_or(z, |i| pa + i)
            } else {
                (pa..z).find(|&i| b[i] == b'.').unwrap_or(z)
            };
            if dot - pa >= MIN_B64 {
                base64_run(text, pa, dot, out);
            }
            if dot >= z {
                break;
            }
            pa = dot + 1;
        }
    }
}

/// A token run longer than this is searched with vectorized searches (their set-up costs
/// more than a byte loop over a short run).
const LONG_RUN: usize = 64;

/// The base64 characters decoded first from a long run (a multiple of 4: whole bytes).
const PROBE_B64: usize = 4096;

/// The base64 run `b[a..z]` (maximal), decoded into `out` if it is one (one alphabet, mixed
/// case, mostly printable UTF-8 once decoded), mapped to the run and its `=` padding.
fn base64_run(text: &str, a: usize, z: usize, out: &mut Vec<Decoded>) {
    let b = text.as_bytes();
    let run = &b[a..z];
    let any2 = |x: u8, y: u8| {
        if run.len() > LONG_RUN {
            memchr::memchr2(x, y, run).is_some()
        } else {
            run.iter().any(|&c| c == x || c == y)
        }
    };
    let url = any2(b'-', b'_');
    if url && any2(b'+', b'/') {
        return;
    }
    // Mixed case: words, hex hashes and UUIDs (one case) are not base64.
    if !mixed_case(run) {
        return;
    }
    let mut zz = z;
    while zz < b.len() && b[zz] == b'=' && zz - z < 2 {
        zz += 1;
    }
    let engine = b64_engine(url);
    // A run is first decoded in part: bytes that are not UTF-8 there (random data, an image,
    // compressed bytes) are not UTF-8 in the whole either (only a character cut at the
    // part's end is forgiven), and the whole run need not be decoded. Its first 16
    // characters (12 bytes, on the stack), and the first 4,096 of a long run.
    let not_text = |head: &[u8]| std::str::from_utf8(head).is_err_and(|e| e.error_len().is_some());
    if zz - a > 32 {
        let mut head = [0u8; 12];
        if engine
            .decode_slice(&b[a..a + 16], &mut head)
            .is_ok_and(|n| not_text(&head[..n]))
        {
            return;
        }
    }
    if zz - a > 2 * PROBE_B64
        && let Ok(head) = engine.decode(&b[a..a + PROBE_B64])
        && not_text(&head)
    {
        return;
    }
    let Ok(bytes) = engine.decode(&b[a..zz]) else {
        return;
    };
    let Ok(s) = std::str::from_utf8(&bytes) else {
        return;
    };
    if !mostly_printable(s) {
        return;
    }
    let mut d = Decoded::with_capacity(s.len());
    d.push(s, a, zz);
    out.push(d);
}

/// The 8 bytes of `w` as a little-endian word.
#[inline]
fn load(w: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&w[..8]);
    u64::from_le_bytes(a)
}

/// Whether all 8 bytes of the word `raw` are token characters ([`b64_word`] or `.`).
#[inline]
fn token_word(raw: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let x = raw & !HIGH;
    let eq = |c: u64| !((x ^ (ONES * c)) | HIGH).wrapping_sub(ONES) & HIGH;
    (b64_lanes(raw) | eq(u64::from(b'.'))) & !raw & HIGH == HIGH
}

/// Whether one of the 8 bytes of the word `x` is below `+` (0x2B) or not ASCII: no base64 character
/// is (a superset test of `!b64_word`, a third of its cost).
#[inline]
fn has_space_like(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    // High bit of a lane: the byte is below 0x2B (exact for the first such lane; a borrow
    // can only mark lanes above one that is), or the byte is not ASCII.
    ((x.wrapping_sub(ONES * 0x2B) & !x) | x) & HIGH != 0
}

fn mixed_case(run: &[u8]) -> bool {
    has_in(run, b'A', b'Z') && has_in(run, b'a', b'z')
}

/// Whether a byte of `run` is in `lo..=hi` (ASCII), 8 bytes at a time: a long run of one
/// case (hex, a repeated word) was read byte by byte to its end.
fn has_in(run: &[u8], lo: u8, hi: u8) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = ONES * 0x80;
    let (lo, hi) = (u64::from(lo), u64::from(hi));
    let mut words = run.chunks_exact(8);
    for w in &mut words {
        let raw = load(w);
        let x = raw & !HIGH;
        // High bit of a lane: `lo <= x <= hi` (and the byte is ASCII).
        if (x + ONES * (0x80 - lo)) & !(x + ONES * (0x7F - hi)) & !raw & HIGH != 0 {
            return true;
        }
    }
    words
        .remainder()
        .iter()
        .any(|c| (lo..=hi).contains(&u64::from(*c)))
}

/// For a short text: `false` when no decoder can find anything in it (no `%`, `\`, line
/// break, or mixed-case base64 run of [`MIN_B64`]+ characters).
pub(crate) fn may_decode(b: &[u8]) -> bool {
    if memchr::memchr3(b'%', b'\\', b'\n', b).is_some() {
        return true;
    }
    // A run of MIN_B64 holds an 8-byte-aligned word of base64 characters.
    if b.len() < MIN_B64 || !b.chunks_exact(8).any(b64_word) {
        return false;
    }
    let (mut run, mut upper, mut lower) = (0usize, false, false);
    for &c in b {
        if matches!(c, b'%' | b'\\' | b'\n') {
            return true;
        }
        if b64_char(c) {
            run += 1;
            upper |= c.is_ascii_uppercase();
            lower |= c.is_ascii_lowercase();
            if run >= MIN_B64 && upper && lower {
                return true;
            }
        } else {
            (run, upper, lower) = (0, false, false);
        }
    }
    false
}

/// At least 90% of the characters are not control characters (line breaks and tabs are
/// printable here), and there are some.
fn mostly_printable(s: &str) -> bool {
    let (mut n, mut bad) = (0usize, 0usize);
    for c in s.chars() {
        n += 1;
        if c.is_control() && !matches!(c, '\n' | '\r' | '\t') {
            bad += 1;
        }
    }
    n >= 8 && bad * 10 <= n
}

/// Longest segment decoded around an escape or a join, in bytes on each side.
const MAX_SEG: usize = 1024;

/// Around each `\/`, `\uXXXX` or `\\` (escapes that can hide a secret's characters; `\n`,
/// `\t` and `\"` only separate words, which the rules read through): the segment of
/// non-whitespace around it (at most [`MAX_SEG`] bytes each side), with every JSON escape in
/// it undone. Overlapping segments are one.
fn json_segments(text: &str, out: &mut Vec<Decoded>) {
    let b = text.as_bytes();
    let mut i = 0;
    while let Some(k) = memchr::memchr(b'\\', &b[i..]) {
        let p = i + k;
        let hides = match b.get(p + 1) {
            Some(b'/' | b'\\') => true,
            Some(b'u') => unicode_escape(b, p).is_some(),
            _ => false,
        };
        if !hides {
            i = p + 1;
            continue;
        }
        let lo = p.saturating_sub(MAX_SEG).max(i);
        let a = b[lo..p]
            .iter()
            .rposition(u8::is_ascii_whitespace)
            .map_or(lo, |j| lo + j + 1);
        let hi = (p + MAX_SEG).min(b.len());
        let z = b[p..hi]
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(hi, |j| p + j);
        let (a, z) = (floor_char(text, a), ceil_char(text, z));
        if let Some(d) = json_unescape(&text[a..z], a) {
            out.push(d);
        }
        i = z.max(p + 1);
    }
}

/// `text` (which begins at `base` of the source) with its JSON escapes undone, or `None`
/// when it has none.
fn json_unescape(text: &str, base: usize) -> Option<Decoded> {
    let b = text.as_bytes();
    let mut d = Decoded::with_capacity(text.len());
    let mut i = 0;
    let mut copied = 0;
    let mut any = false;
    while let Some(k) = memchr::memchr(b'\\', &b[i..]) {
        let p = i + k;
        let unit: Option<(String, usize)> = match b.get(p + 1) {
            Some(b'/') => Some(("/".into(), 2)),
            Some(b'"') => Some(("\"".into(), 2)),
            Some(b'\\') => Some(("\\".into(), 2)),
            Some(b'n') => Some(("\n".into(), 2)),
            Some(b'r') => Some(("\r".into(), 2)),
            Some(b't') => Some(("\t".into(), 2)),
            Some(b'u') => unicode_escape(b, p),
            _ => None,
        };
        let Some((s, len)) = unit else {
            i = p + 1;
            continue;
        };
        any = true;
        push_chars(&mut d, &text[copied..p], base + copied);
        d.push(&s, base + p, base + p + len);
        copied = p + len;
        i = copied;
    }
    if !any {
        return None;
    }
    push_chars(&mut d, &text[copied..], base + copied);
    Some(d)
}

/// Appends `s` (at `base` of the source) as it is.
fn push_chars(d: &mut Decoded, s: &str, base: usize) {
    d.push_copied(s, base);
}

/// `\uXXXX` (or a surrogate pair `\uD83D\uDE00`) at `p`: the character and the escape's length.
fn unicode_escape(b: &[u8], p: usize) -> Option<(String, usize)> {
    let hex4 = |at: usize| -> Option<u32> {
        let h = b.get(at..at + 4)?;
        u32::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok()
    };
    let hi = hex4(p + 2)?;
    if (0xD800..0xDC00).contains(&hi) {
        if b.get(p + 6..p + 8) == Some(b"\\u") {
            let lo = hex4(p + 8)?;
            if (0xDC00..0xE000).contains(&lo) {
                let c = char::from_u32(0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00))?;
                return Some((c.to_string(), 12));
            }
        }
        return None;
    }
    Some((char::from_u32(hi)?.to_string(), 6))
}

/// `[A-Za-z0-9_+/.-]`, as a table (runs are scanned byte by byte).
static TOKEN_CHARS: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'/' | b'.');
        c += 1;
    }
    t
};

/// A character of a wrapped token (`.` for JWTs).
#[inline]
fn token_char(c: u8) -> bool {
    TOKEN_CHARS[usize::from(c)]
}

/// Token characters that must come right before a break for it to be a wrap.
const MIN_WRAPPED: usize = 16;

/// The length of the line break at `i` (a raw `\n` or `\r\n`, or an escaped `\n`, `\r\n`,
/// `\\n`), or 0.
fn break_len(b: &[u8], i: usize) -> usize {
    match b[i] {
        b'\n' => 1,
        b'\r' if b.get(i + 1) == Some(&b'\n') => 2,
        b'\\' => [&b"\\r\\n"[..], b"\\n", b"\\\\n"]
            .iter()
            .find(|p| b[i..].starts_with(p))
            .map_or(0, |p| p.len()),
        _ => 0,
    }
}

/// Whether the break at `i` (of length `brk`) splits a token: at least [`MIN_WRAPPED`] token
/// characters before it, a token after it that is not a key (`key:`, `key=`).
fn wraps(b: &[u8], i: usize, brk: usize) -> bool {
    let before = b[..i]
        .iter()
        .rev()
        .take(MIN_WRAPPED)
        .take_while(|&&c| token_char(c))
        .count();
    before >= MIN_WRAPPED && continues(b, i + brk)
}

/// Whether a wrapped token may still run on past the end of `lines` (whole lines; the last
/// one's line break included), given whether one could run on into them (`before`): the last
/// line ends with at least [`MIN_WRAPPED`] token characters (a wrap may begin there), or it
/// is all token characters (escaped breaks allowed) and a wrap ran on into it (a later piece
/// continues a token whatever its own length). Conservative: the line that follows is not
/// known, so any such break counts.
pub(crate) fn wrap_open_after(lines: &[u8], before: bool) -> bool {
    let body = lines.strip_suffix(b"\n").unwrap_or(lines);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    // From the last line back, while each line is all token characters.
    let mut end = body.len();
    loop {
        let start = memchr::memrchr(b'\n', &body[..end]).map_or(0, |i| i + 1);
        let line = &body[start..end];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let tail = line.iter().rev().take_while(|&&c| token_char(c)).count();
        if tail >= MIN_WRAPPED {
            return true;
        }
        let whole = !line.is_empty() && line.iter().all(|&c| token_char(c) || c == b'\\');
        if !whole {
            return false;
        }
        if start == 0 {
            return before;
        }
        end = start - 1;
    }
}

/// A token that is not a key (`key:`, `key=`) begins at `next`.
fn continues(b: &[u8], next: usize) -> bool {
    let after = b[next..].iter().take_while(|&&c| token_char(c)).count();
    after > 0 && !matches!(b.get(next + after), Some(b':' | b'='))
}

/// Each wrapped token (see [`wraps`]): from the start of its first piece (at most
/// [`MAX_SEG`] bytes back) through every following piece, with the breaks removed. Looks at
/// every line break (the oracle's way; [`wrapped_at`] is the fast path's).
fn wrapped_segments(text: &str, covered: &[(usize, usize)], out: &mut Vec<Decoded>) {
    let b = text.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let Some(k) = memchr::memchr2(b'\n', b'\\', &b[i..]) else {
            break;
        };
        // A `\r\n` is found at its `\n`; step back to its `\r`.
        let mut p = i + k;
        if b[p] == b'\n' && p > i && b[p - 1] == b'\r' {
            p -= 1;
        }
        i = join_wrapped(text, i, p, covered, out);
    }
}

/// [`wrapped_segments`], looking only at `breaks`: ascending positions that include every
/// line break with [`MIN_WRAPPED`] token characters right before it (from [`token_runs`]).
fn wrapped_at(text: &str, breaks: &[usize], covered: &[(usize, usize)], out: &mut Vec<Decoded>) {
    let mut i = 0;
    for &p in breaks {
        if p >= i {
            i = join_wrapped(text, i, p, covered, out);
        }
    }
}

/// The wrapped token whose first break is at `p` (nothing is looked at before `i`), if it is
/// one and its source is not inside `covered`, into `out`; returns where to look next.
fn join_wrapped(
    text: &str,
    i: usize,
    p: usize,
    covered: &[(usize, usize)],
    out: &mut Vec<Decoded>,
) -> usize {
    let b = text.as_bytes();
    let brk = break_len(b, p);
    if brk == 0 || !wraps(b, p, brk) {
        return p + brk.max(1);
    }
    let lo = p.saturating_sub(MAX_SEG).max(i);
    let a = b[lo..p]
        .iter()
        .rposition(|&c| !token_char(c))
        .map_or(lo, |j| lo + j + 1);
    // A run right after an escaped break (`\n`) begins after its `n` (the oracle starts
    // looking after that break; the fast path's runs begin at the `n`).
    let a = if a > 0 && a < p && b[a - 1] == b'\\' && b[a] == b'n' {
        a + 1
    } else {
        a
    };
    // The pieces after the first: (the break before it, where it starts, where it ends).
    let mut pieces = Vec::new();
    let (mut q, mut brk) = (p, brk);
    loop {
        // `q` is a break of `brk` bytes that wraps; the next piece follows it.
        let start = q + brk;
        let end = start + b[start..].iter().take_while(|&&c| token_char(c)).count();
        pieces.push((q, start, end));
        q = end;
        if q >= b.len() || end - start > MAX_SEG {
            break;
        }
        // A later piece continues the token whatever its own length.
        brk = break_len(b, q);
        if brk == 0 || !continues(b, q + brk) {
            break;
        }
    }
    // Measured before it is built: a PEM body joined line after line is as long as the block.
    if !inside(covered, a, q) {
        let mut d = Decoded::with_capacity(q - a);
        d.joined = true;
        push_chars(&mut d, &text[a..p], a);
        for (brk_at, start, end) in pieces {
            // The first character after the break carries the break in its source range.
            d.push(&text[start..start + 1], brk_at, start + 1);
            push_chars(&mut d, &text[start + 1..end], start + 1);
        }
        out.push(d);
    }
    q.max(p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy as _;

    fn src(d: &Decoded, s: usize, e: usize) -> (usize, usize) {
        (d.start(s), d.end(e - 1))
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The passes after the first decode only near the replacements of the pass before
        /// (`find_decoded_near`), and find what decoding the whole text again finds: secrets
        /// plain, encoded, escaped and wrapped, with and without context words, beside and
        /// across line breaks, in every mode.
        #[test]
        fn passes_near_replacements_find_what_the_whole_text_does(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(vec![
                        "bob@example.com", "555-123-4567", "password: hunter22",
                        "sk-ant-abcdefghijklmnopqrstu", "Bearer abcdefghijklmnopqrstuv",
                        "YXBpX2tleT1zay1hYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3g=",
                        "dXNlckBleGFtcGxlLmNvbQ==", "user%40example.com",
                        "api_key%3Dsk-abcdefghijklmnopqrstuvwx", "bob\\u0040example.com",
                        "https:\\/\\/u:pw@h", "ghp_abcdefghijklmnopqrstuvwxyz0123",
                        "AKIAABCDEFGHIJKLMNOP", "abcdefghijklmnopqrst", "\\\\n", "\\n",
                        "token=", "secret ", "%2B44%207700%20900123",
                        "4111 1111 1111 1111", "123-45-6789", "ssn ", "phone: ", "@", "[",
                        "]", "https://x.io/a@b.co", "call 030 1234567", "(555) 234-5678",
                    ]).prop_map(str::to_owned),
                    2 => proptest::sample::select(vec![
                        "\n", "\r\n", " ", "", "=", ":", "\"", "\\", "/", "é",
                    ]).prop_map(str::to_owned),
                    2 => "[A-Za-z0-9+/_.-]{1,24}",
                    1 => "[a-z ]{1,12}",
                ],
                0..48,
            )
        ) {
            // Clean lines around, so that the regions are a small part of the text.
            let filler = "the quick brown fox; jumps over the lazy dog!\n".repeat(20);
            let text = format!("{filler}{}\n{filler}", parts.concat());
            for e in crate::engine::every_mode() {
                let (mut near, mut whole) = (crate::Report::new(), crate::Report::new());
                let a = e.redact_events(&text, &mut near, true);
                let b = e.redact_events(&text, &mut whole, false);
                proptest::prop_assert_eq!(&a, &b, "{:?}", text);
                proptest::prop_assert_eq!(near, whole, "{:?}", text);
            }
        }
    }

    #[test]
    fn regions_near_reach_over_wrapped_lines_only() {
        let r = |out_start, out_end| Replaced {
            start: 0,
            end: 0,
            out_start,
            out_end,
        };
        let text = b"one two!\n abc [X] def;\n three\n";
        // The replacement's line only: no token character meets the breaks.
        assert_eq!(regions_near(text, &[r(14, 17)]), vec![(9, 22)]);
        // Any two token characters around a break join the lines (a superset of the wraps).
        let text = b"one two\nabc [X] def\nthree\n";
        assert_eq!(regions_near(text, &[r(12, 15)]), vec![(0, 25)]);
        let text = b"aaaa\nbbbb[X]\ncccc\n\ndddd";
        // `aaaa` and `bbbb` may be one wrapped token; `]` ends the second line.
        assert_eq!(regions_near(text, &[r(9, 12)]), vec![(0, 12)]);
        let text = b"aaaa\r\nbb[X]bb\r\ncccc";
        assert_eq!(regions_near(text, &[r(8, 11)]), vec![(0, 19)]);
        // Two replacements on neighbouring lines: one region.
        let text = b"[X]\n[Y]\nzz";
        assert_eq!(regions_near(text, &[r(0, 3), r(4, 7)]), vec![(0, 7)]);
    }

    proptest::proptest! {
        /// The runs give each decoded byte the source range a range per byte gave: a copied
        /// character its own bytes (all of its bytes), a decoded piece its whole source.
        #[test]
        fn runs_map_every_byte_as_a_range_per_byte_did(
            pieces in proptest::collection::vec(
                (proptest::bool::ANY, "[a-zé€😀\\n]{0,6}", 1usize..9),
                0..12,
            )
        ) {
            let mut d = Decoded::with_capacity(0);
            let mut per_byte: Vec<(usize, usize)> = Vec::new();
            let mut src = 0usize;
            for (copied, piece, width) in &pieces {
                if *copied {
                    d.push_copied(piece, src);
                    for (j, ch) in piece.char_indices() {
                        for _ in 0..ch.len_utf8() {
                            per_byte.push((src + j, src + j + ch.len_utf8()));
                        }
                    }
                    src += piece.len();
                } else {
                    d.push(piece, src, src + width);
                    per_byte.extend(std::iter::repeat_n((src, src + width), piece.len()));
                    src += width;
                }
            }
            proptest::prop_assert_eq!(d.text.len(), per_byte.len());
            for (i, &range) in per_byte.iter().enumerate() {
                proptest::prop_assert_eq!((d.start(i), d.end(i)), range, "byte {}", i);
            }
            for s in 0..per_byte.len() {
                for e in s..=per_byte.len() {
                    let naive = (s..e).find(|&k| per_byte[k].1 - per_byte[k].0 > 1);
                    proptest::prop_assert_eq!(d.first_wide(s, e), naive, "{}..{}", s, e);
                }
            }
        }
    }

    #[test]
    fn json_unescape_maps_back() {
        let t = r#"a\/b \u00e9\n\uD83D\uDE00 x\"y"#;
        let d = json_unescape(t, 0).unwrap();
        assert_eq!(d.text, "a/b é\n😀 x\"y");
        let e = d.text.find('é').unwrap();
        assert_eq!(src(&d, e, e + 2), (5, 11));
        assert!(json_unescape("plain text", 0).is_none());
        assert!(json_unescape(r"\q \u12", 0).is_none());
        let mut out = Vec::new();
        json_segments(r"say hi to bob\u0040example.com \n now", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "bob@example.com");
        assert_eq!((out[0].start(0), out[0].end(14)), (10, 30));
    }

    #[test]
    fn unwrap_joins_token_halves_only() {
        let joined = |t: &str| {
            let mut out = Vec::new();
            wrapped_segments(t, &[], &mut out);
            out.into_iter().map(|d| d.text).collect::<Vec<_>>()
        };
        assert_eq!(
            joined("key sk-abcdefghijklmn\nopqrst end\nnext"),
            ["sk-abcdefghijklmnopqrst"]
        );
        assert_eq!(
            joined(r"AbCdEfGhIjKlMnOpQr\nStUv\r\nWx y"),
            ["AbCdEfGhIjKlMnOpQrStUvWx"]
        );
        assert!(joined("short\nline").is_empty());
        assert!(joined("DB_PASSWORD_LONG_NAME\nclientSecret: x").is_empty());
    }

    proptest::proptest! {
        /// The 8-bytes-at-a-time range test answers as a byte-by-byte one.
        #[test]
        fn has_in_finds_a_byte_in_range(run in proptest::collection::vec(proptest::num::u8::ANY, 0..40)) {
            for (lo, hi) in [(b'A', b'Z'), (b'a', b'z')] {
                proptest::prop_assert_eq!(
                    has_in(&run, lo, hi),
                    run.iter().any(|c| (lo..=hi).contains(c))
                );
            }
        }
    }

    /// Long runs: decoded when the whole decodes to printable text (the first part decoded
    /// alone, too, must not reject it), not when any of it is not UTF-8, wherever.
    #[test]
    fn long_base64_runs_decode_when_the_whole_is_text() {
        use base64::Engine as _;
        let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);
        let text: Vec<u8> = "api_key=sk-abcdefghijklmnopqrstuvwx Ünïcödé "
            .repeat(400)
            .into_bytes();
        let decoded = |run: &str| {
            let (mut out, mut breaks) = (Vec::new(), Vec::new());
            token_runs(&format!("x {run} y"), &mut out, &mut breaks);
            out
        };
        // Shifted by every amount of the 48-byte repeat: the first part ends inside a
        // two-byte character for some shifts.
        for shift in 0..48 {
            let mut t = b"a".repeat(shift);
            t.extend_from_slice(&text);
            let out = decoded(&b64(&t));
            assert_eq!(out.len(), 1, "shift {shift}");
            assert_eq!(out[0].text.as_bytes(), &t[..]);
        }
        // A character cut by the 12 bytes decoded first from every run.
        let short = "0123456789aÜ then api_key=sk-abcdefghijklmnopqrstuvwx".as_bytes();
        let out = decoded(&b64(short));
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text.as_bytes(), short);
        // Not UTF-8 at the start, in the middle, at the end.
        for at in [0, text.len() / 2, text.len() - 1] {
            let mut t = text.clone();
            t[at] = 0xFF;
            assert!(decoded(&b64(&t)).is_empty(), "0xFF at {at}");
        }
    }

    #[test]
    fn base64_runs_decode_printable_text_only() {
        let mut out = Vec::new();
        // "api_key=sk-abcdefghijklmnopqrstuvwx"
        let mut breaks = Vec::new();
        token_runs(
            "x YXBpX2tleT1zay1hYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3g= y",
            &mut out,
            &mut breaks,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "api_key=sk-abcdefghijklmnopqrstuvwx");
        assert_eq!((out[0].start(0), out[0].end(0)), (2, 50));
        out.clear();
        token_runs(
            "4d12bbb66309de39cb44c9218757b9fb7e6fb268 internationalization",
            &mut out,
            &mut breaks,
        );
        assert!(out.is_empty());
        assert!(breaks.is_empty());
    }

    #[test]
    fn token_runs_find_every_break_after_a_long_token() {
        // Breaks after 16+ token characters (raw, CRLF, escaped), at any alignment; none
        // after shorter runs or prose.
        for pad in 0..9 {
            let lead = " ".repeat(pad);
            let text = format!(
                "{lead}abcdefghij.klmnop\nrest short\nx 0123456789abcdef\r\ny \
                 eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0\\nabc words and words\nend"
            );
            let b = text.as_bytes();
            let (mut out, mut breaks) = (Vec::new(), Vec::new());
            token_runs(&text, &mut out, &mut breaks);
            let naive: Vec<usize> = (0..b.len())
                .filter(|&p| break_len(b, p) > 0 && p >= MIN_WRAPPED)
                .filter(|&p| b[p - MIN_WRAPPED..p].iter().all(|&c| token_char(c)))
                .collect();
            assert_eq!(breaks, naive, "pad {pad}");
            assert_eq!(breaks.len(), 3, "pad {pad}");
        }
    }

    #[test]
    fn percent_runs_map_to_the_run() {
        let mut out = Vec::new();
        percent_runs("GET /x?q=1&email=user%40example.com&y=2", &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].text, "email=user@example.com");
        assert_eq!((out[0].start(0), out[0].end(0)), (11, 35));
    }

    #[test]
    fn the_cheap_test_rejects_only_words_the_table_rejects() {
        let mut rng = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..200_000 {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            // Bytes around the boundaries: 0x20..0x30 and 0x78..0x88 mostly.
            let w: Vec<u8> = rng
                .to_le_bytes()
                .iter()
                .map(|&r| match r % 4 {
                    0 => 0x20 + r % 16,
                    1 => 0x78 + r % 16,
                    _ => r,
                })
                .collect();
            if has_space_like(load(&w)) {
                assert!(!w.iter().all(|&c| b64_char(c)), "{w:?}");
                assert!(w.iter().any(|&c| !(0x2B..0x80).contains(&c)), "{w:?}");
            } else {
                assert!(w.iter().all(|&c| (0x2B..0x80).contains(&c)), "{w:?}");
            }
        }
    }

    #[test]
    fn b64_word_equals_the_table() {
        for c in 0..=255u8 {
            for pos in 0..8 {
                let mut w = *b"AAAAAAAA";
                w[pos] = c;
                assert_eq!(b64_word(&w), b64_char(c), "{c:#x} at {pos}");
            }
        }
        assert!(b64_word(b"aZ09+/-_"));
    }

    #[test]
    fn budget_stops() {
        let mut b = Budget::for_text(0);
        assert!(b.take(BUDGET_EXTRA));
        assert!(!b.take(1));
    }
}
