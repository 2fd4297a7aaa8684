//! Candidates: where each rule must be verified, from the prefilter events of a text (anchor
//! occurrences from `anchors.rs`, digit clusters from `digits.rs`). Start-anchored rules get
//! one candidate per anchor; windowed and digit rules get windows around anchors and clusters,
//! merged as they arrive; anchors where no match can begin (a rule's `Viable` or `Need` says
//! so) and digit runs no match can lie on are dropped here, before any regex runs. The events
//! of a later pass are carried over from the previous one (`carry`) instead of collected again.

use crate::anchors::Anchors;
use crate::digits::{digit_clusters, digit_runs, is_digit_or_gap};
use crate::engine::{Engine, How, SLOTS};
use crate::replace::Replaced;
use crate::rules::{Need, Shapes};

/// Bytes of a text searched for anchors at a time by [`Engine::collect_at_most`] (a text of
/// up to twice that at once: the CLI's chunks of 256 KiB in one piece).
const COLLECT_SEGMENT: usize = 256 << 10;

/// An anchor occurrence: start, the anchor's id (see `Anchors::targets`), length. 16 bytes:
/// keyword-dense texts make many (ids and lengths are those of the built-in anchors, far
/// below `u32::MAX`).
pub(crate) type AnchorEvent = (usize, u32, u32);

/// The event of the anchor `id` found at `start..end`.
#[inline]
fn anchor_event(id: usize, start: usize, end: usize) -> AnchorEvent {
    (start, id as u32, (end - start) as u32)
}

/// Prefilter events of one text: anchor occurrences and digit clusters (first digit, last
/// digit + 1).
#[derive(Default)]
pub(crate) struct Events {
    pub(crate) anchors: Vec<AnchorEvent>,
    pub(crate) clusters: Vec<(usize, usize)>,
}

/// A place where one rule must be verified: its anchored search at `start` (start-anchored
/// rules, `start == end`), or its search over the window `start..end`.
#[derive(Clone, Copy)]
pub(crate) struct Cand {
    pub(crate) rule: u16,
    pub(crate) start: usize,
    pub(crate) end: usize,
}

/// The candidates of one search as they are built.
struct Cands {
    list: Vec<Cand>,
    /// Per windowed rule (every one is built in, so its index is below SLOTS), its last
    /// window in `list`: a window that overlaps or touches it is merged into it instead of
    /// pushed (the windows are merged the same way when verified, so the searched spans do not
    /// change; dense `@` or digits stay few candidates).
    last: [usize; SLOTS],
}

impl Cands {
    fn new() -> Cands {
        Cands {
            list: Vec::new(),
            last: [usize::MAX; SLOTS],
        }
    }

    #[inline]
    fn push_start(&mut self, rule: u16, at: usize) {
        self.list.push(Cand {
            rule,
            start: at,
            end: at,
        });
    }

    #[inline]
    fn push_window(&mut self, rule: u16, start: usize, end: usize) {
        let slot = self.last.get_mut(usize::from(rule));
        if let Some(&i) = slot.as_deref()
            && let Some(c) = self.list.get_mut(i)
            && start <= c.end
            && c.start <= end
        {
            c.start = c.start.min(start);
            c.end = c.end.max(end);
            return;
        }
        if let Some(slot) = slot {
            *slot = self.list.len();
        }
        self.list.push(Cand { rule, start, end });
    }
}

impl Engine {
    /// The prefilter pass: every anchor occurrence and every digit cluster of `text` (the
    /// engine asks [`collect_at_most`](Self::collect_at_most)).
    #[cfg(test)]
    pub(crate) fn collect(&self, text: &str, ev: &mut Events) {
        self.collect_at_most(text, ev, usize::MAX);
    }

    /// [`collect`](Self::collect), unless `text` holds more than `cap` anchor occurrences:
    /// then `false`, with the events incomplete (and at most `cap` of them kept).
    pub(crate) fn collect_at_most(&self, text: &str, ev: &mut Events, cap: usize) -> bool {
        self.collect_in_segments(text, ev, cap, COLLECT_SEGMENT)
    }

    /// [`collect_at_most`](Self::collect_at_most), reading `segment` bytes at a time (a text
    /// of up to twice that at once).
    pub(crate) fn collect_in_segments(
        &self,
        text: &str,
        ev: &mut Events,
        cap: usize,
        segment: usize,
    ) -> bool {
        let segment = segment.max(1);
        if let Some(anchors) = &self.anchors {
            // Segment by segment (each read with the `max_len - 1` bytes after it, keeping
            // the occurrences that begin in it: the same occurrences as the whole text's),
            // so that a text past the cap is not read to its end: a 1 MB line dense with
            // keywords was read whole twice before its search in blocks.
            let b = text.as_bytes();
            let n = b.len();
            let over = std::cell::Cell::new(false);
            let mut push = |id: usize, s: usize, e: usize| {
                if ev.anchors.len() < cap {
                    ev.anchors.push(anchor_event(id, s, e));
                } else {
                    over.set(true);
                }
            };
            if n <= 2 * segment {
                // One segment (most texts): no offsets to add, no end to check.
                anchors.find_ids(b, &mut push);
            } else {
                let max_lit = anchors.max_len().max(1);
                let mut at = 0;
                while at < n && !over.get() {
                    let end = if n - at <= 2 * segment {
                        n
                    } else {
                        at + segment
                    };
                    let z = end.saturating_add(max_lit - 1).min(n);
                    anchors.find_ids(&b[at..z], |id, ms, me| {
                        if at + ms < end {
                            push(id, at + ms, at + me);
                        }
                    });
                    at = end;
                }
            }
            if over.get() {
                return false;
            }
        }
        if !self.digit_rules.is_empty() {
            digit_clusters(text.as_bytes(), |s, e| ev.clusters.push((s, e)));
        }
        true
    }

    /// The prefilter events of `out`, the output of a pass over a text with events `prev` that
    /// replaced `spans`, without a full prefilter pass: an anchor occurrence depends only on
    /// its own bytes, a digit cluster `s..e` only on the bytes `s - 4..e + 4` (its digits, its
    /// gaps, and the up to 4 bytes that would link it to another digit). Events of `prev` whose
    /// bytes no replacement touched are moved to their place in `out`; events of `out` whose
    /// bytes touch a replacement are found by searching near each replacement. The result is
    /// exactly what [`collect`](Self::collect) would find on `out`, in another order (the
    /// candidates built from events do not depend on their order).
    pub(crate) fn carry(&self, out: &str, prev: &Events, spans: &[Replaced]) -> Events {
        let mut ev = Events::default();
        carry_untouched(prev, spans, &mut ev);
        let b = out.as_bytes();
        for (a, z) in self.regions_around(b, spans) {
            self.collect_touching(b, a, z, spans, &mut ev);
        }
        ev
    }

    /// Regions of `out` (`b`) around the replacements `spans`: anchors (at most `max_lit - 1`
    /// bytes on either side), clusters (8 bytes, then to the ends of the run of digits and gap
    /// bytes, so that no chain crosses a region's edge). Regions are merged when they meet, so
    /// every byte is searched at most once.
    fn regions_around(&self, b: &[u8], spans: &[Replaced]) -> Vec<(usize, usize)> {
        let n = b.len();
        let max_lit = self.anchors.as_ref().map_or(0, Anchors::max_len);
        let reach = max_lit.max(8);
        let mut regions: Vec<(usize, usize)> = Vec::new();
        for r in spans {
            let mut a = r.out_start.saturating_sub(reach);
            let mut z = (r.out_end + reach).min(n);
            let floor = regions.last().map_or(0, |&(_, e)| e);
            while a > floor && is_digit_or_gap(b[a - 1]) {
                a -= 1;
            }
            while z < n && is_digit_or_gap(b[z]) {
                z += 1;
            }
            match regions.last_mut() {
                Some(last) if a <= last.1 => last.1 = last.1.max(z),
                _ => regions.push((a, z)),
            }
        }
        regions
    }

    /// The events of `out` (`b`) in the region `a..z` (see
    /// [`regions_around`](Self::regions_around)) whose bytes touch a replacement.
    fn collect_touching(&self, b: &[u8], a: usize, z: usize, spans: &[Replaced], ev: &mut Events) {
        // Anchors: a region starts and ends at least `max_lit - 1` bytes from every
        // replacement in it, so each occurrence touching one lies inside it; occurrences
        // touching none are already carried.
        if let Some(anchors) = &self.anchors {
            anchors.find_ids(&b[a..z], |id, ms, me| {
                if touches(spans, (a + ms) as isize, (a + me) as isize, false) {
                    ev.anchors.push(anchor_event(id, a + ms, a + me));
                }
            });
        }
        // Clusters: a region begins after a byte that no chain crosses (or at the start, or
        // at the end of the previous region, which ended the same way) and ends before
        // one, so its chains are those of `out`.
        if !self.digit_rules.is_empty() {
            digit_clusters(&b[a..z], |s, e| {
                let (da, dz) = cluster_dep(a + s, a + e);
                if touches(spans, da, dz, false) {
                    ev.clusters.push((a + s, a + e));
                }
            });
        }
    }

    /// The candidates of `text` from its prefilter events `ev`, ordered by `(rule, start, end)`.
    pub(crate) fn candidates(&self, text: &str, ev: &Events) -> Vec<Cand> {
        let mut cands = Cands::new();
        self.anchor_candidates(text, &ev.anchors, &mut cands);
        self.cluster_candidates(text, &ev.clusters, &mut cands);
        let mut cands = cands.list;
        if cands.len() <= 64 {
            cands.sort_unstable_by_key(|c| (c.rule, c.start, c.end));
        } else {
            cands = self.sort_cands(&cands);
        }
        cands
    }

    /// Per anchor occurrence, a candidate for each rule it is an anchor of, unless the rule's
    /// `Viable` or `Need` shows that no match can begin there.
    fn anchor_candidates(&self, text: &str, anchors: &[AnchorEvent], cands: &mut Cands) {
        let n = text.len();
        // Per rule with a `Need` (built in: index below SLOTS): where its runs were last looked for.
        let mut cursors = [RunCursor::default(); SLOTS];
        for &(ms, id, len) in anchors {
            let me = ms + len as usize;
            let targets = self
                .anchors
                .as_ref()
                .map_or(&[][..], |a| a.targets(id as usize));
            for &(rule, how) in targets {
                let r = &self.rules[usize::from(rule)];
                if let Some(v) = r.viable
                    && !v(text.as_bytes(), ms, me)
                {
                    continue;
                }
                if let Some(need) = &r.need
                    && let Some(cursor) = cursors.get_mut(usize::from(rule))
                    && !cursor.reaches(text.as_bytes(), ms + need.min, ms + need.max, need)
                {
                    continue;
                }
                match how {
                    How::Start => cands.push_start(rule, ms),
                    How::Window { back, fwd } => cands.push_window(
                        rule,
                        floor_char(text, ms.saturating_sub(back)),
                        ceil_char(text, (me + fwd).min(n)),
                    ),
                }
            }
        }
    }

    /// Per digit cluster, a window for each digit rule: around the whole cluster when it is
    /// short, around the runs of digits a rule's matches can lie on when it is long.
    fn cluster_candidates(&self, text: &str, clusters: &[(usize, usize)], cands: &mut Cands) {
        let n = text.len();
        let b = text.as_bytes();
        // Digit runs of the current long cluster.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &(s, e) in clusters {
            // A match of a digit rule never overlaps a run of more than 19 ASCII digits: each
            // of its digit runs lies between non-digits (a separator, `+`, `(`, `)`, or a word
            // boundary) and has at most 19 digits (a card; phones at most 15, SSNs 4). So a
            // cluster that is one such run has nothing to find.
            if e - s > 19 && b[s..e].iter().all(u8::is_ascii_digit) {
                continue;
            }
            let start = floor_char(text, s.saturating_sub(8));
            let end = ceil_char(text, (e + 8).min(n));
            if e - s <= LONG_CLUSTER {
                for &rule in &self.digit_rules {
                    cands.push_window(rule, start, end);
                }
                continue;
            }
            // A long cluster: each rule's window only around the runs that its matches can
            // be (see `Shapes`; every match lies on such runs, so the windows still hold every
            // match, and the searched windows, disjoint once merged, find the same matches).
            digit_runs(&b[s..e], s, &mut runs);
            for (&rule, shapes) in self.digit_rules.iter().zip(&self.digit_shapes) {
                if shapes.whole || any_of(&b[start..end], shapes.unless) {
                    cands.push_window(rule, start, end);
                } else {
                    shaped_windows(b, rule, shapes, &runs, cands);
                }
            }
        }
    }

    /// `cands` ordered by `(rule, start, end)`, like `sort_unstable_by_key` (equal keys are
    /// equal candidates), but faster for many: grouped by rule with a counting sort that keeps
    /// their order, then each rule's candidates, which arrive as a few ascending runs (one per
    /// anchor literal and source), merged by a stable sort that finds those runs.
    fn sort_cands(&self, cands: &[Cand]) -> Vec<Cand> {
        let mut offs = vec![0usize; self.rules.len() + 1];
        for c in cands {
            offs[usize::from(c.rule) + 1] += 1;
        }
        for i in 1..offs.len() {
            offs[i] += offs[i - 1];
        }
        let mut pos = offs.clone();
        let mut out = vec![
            Cand {
                rule: 0,
                start: 0,
                end: 0
            };
            cands.len()
        ];
        for c in cands {
            let p = &mut pos[usize::from(c.rule)];
            out[*p] = *c;
            *p += 1;
        }
        for w in offs.windows(2) {
            out[w[0]..w[1]].sort_by_key(|c| (c.start, c.end));
        }
        out
    }
}

/// The windows of a digit rule with `shapes` in a long cluster whose digit runs are `runs`:
/// one over each sequence of runs that fits one of the shapes.
fn shaped_windows(
    b: &[u8],
    rule: u16,
    shapes: &Shapes,
    runs: &[(usize, usize)],
    cands: &mut Cands,
) {
    // Bit `l`: some shape's first run may be `l` digits long.
    let starts = shapes
        .runs
        .iter()
        .filter_map(|shape| shape.first())
        .flat_map(|r| r.min..=r.max)
        .fold(0u64, |m, l| m | 1u64.checked_shl(l as u32).unwrap_or(0));
    for i in 0..runs.len() {
        let l = runs[i].1 - runs[i].0;
        if l >= 64 || (starts >> l) & 1 == 0 {
            continue;
        }
        for shape in shapes.runs {
            let Some(seq) = runs.get(i..i + shape.len()) else {
                continue;
            };
            let mut fits = true;
            for (k, r) in shape.iter().enumerate() {
                let (a, z) = seq[k];
                if z - a < r.min || z - a > r.max || b[a] < r.first {
                    fits = false;
                    break;
                }
            }
            if fits && let (Some(first), Some(last)) = (seq.first(), seq.last()) {
                cands.push_window(rule, first.0, last.1);
            }
        }
    }
}

/// The events of `prev` whose bytes no replacement of `spans` touched, moved to their place
/// in the output.
fn carry_untouched(prev: &Events, spans: &[Replaced], ev: &mut Events) {
    for &(ms, id, len) in &prev.anchors {
        let me = ms + len as usize;
        if !touches(spans, ms as isize, me as isize, true) {
            ev.anchors.push((moved(spans, ms), id, len));
        }
    }
    for &(s, e) in &prev.clusters {
        let (a, z) = cluster_dep(s, e);
        if !touches(spans, a, z, true) {
            ev.clusters
                .push((moved(spans, s), moved(spans, s) + (e - s)));
        }
    }
}

/// The bytes a digit cluster `s..e` depends on. Unclamped: a cluster within 4 bytes of an end
/// depends on where the text ends.
#[inline]
fn cluster_dep(s: usize, e: usize) -> (isize, isize) {
    (s as isize - 4, e as isize + 4)
}

/// Whether `a..z` (in the output, or in the old text with `old`; it may reach past either
/// end, which then is one of the things it depends on) touches a replacement of `spans`: it
/// overlaps one, or straddles the place of an empty one.
#[inline]
fn touches(spans: &[Replaced], a: isize, z: isize, old: bool) -> bool {
    let key = |r: &Replaced| {
        let (s, e) = if old {
            (r.start, r.end)
        } else {
            (r.out_start, r.out_end)
        };
        (s as isize, e as isize)
    };
    // The first replacement that ends at or after `a`.
    let i = spans.partition_point(|r| key(r).1 < a);
    spans[i..].iter().take_while(|r| key(r).0 <= z).any(|r| {
        let (s, e) = key(r);
        !(z <= s || a >= e)
    })
}

/// Position `p` of the old text, outside the replacements `spans`, in the output.
#[inline]
fn moved(spans: &[Replaced], p: usize) -> usize {
    let i = spans.partition_point(|r| r.end <= p);
    match i.checked_sub(1).map(|k| &spans[k]) {
        Some(r) => p - r.end + r.out_end,
        None => p,
    }
}

/// How far past a question's range [`RunCursor`] looks for runs.
const RUN_LOOKAHEAD: usize = 1024;

/// Whether a run of a rule's [`Need`] begins in `lo..=hi`, with what was learnt by the last
/// question kept for the next: the first run at or after some position, or that none begins
/// before some position (and where the scan stopped). Questions with ascending ranges, as
/// anchors arrive, read each byte at most twice in all; one question reads at most its range,
/// [`RUN_LOOKAHEAD`] bytes and a run's length.
#[derive(Clone, Copy, Default)]
struct RunCursor {
    /// `(from, what)`: what is known of the runs beginning at or after `from`.
    last: Option<(usize, Seen)>,
}

#[derive(Clone, Copy)]
enum Seen {
    /// The first run begins here.
    First(usize),
    /// None begins before `a`, and `b[a..good]` is all in the class (a scan's state).
    NoneBefore { a: usize, good: usize },
}

impl RunCursor {
    fn reaches(&mut self, b: &[u8], lo: usize, hi: usize, need: &Need) -> bool {
        let (mut from, mut a, mut good) = (lo, lo, lo);
        if let Some((f, seen)) = self.last
            && f <= lo
        {
            match seen {
                Seen::First(j) if j >= lo => return j <= hi,
                Seen::First(_) => {}
                Seen::NoneBefore { a: u, .. } if hi < u => return false,
                // Go on where the last scan stopped.
                Seen::NoneBefore { a: u, good: g } if lo <= u => (from, a, good) = (f, u, g),
                Seen::NoneBefore { good: g, .. } => good = g.max(lo),
            }
        }
        // A little past `hi`: the next anchors' questions are then answered without a scan
        // (probing reads about one byte in `len` where runs are rare).
        let last = hi.saturating_add(RUN_LOOKAHEAD);
        let (seen, found) = match next_run(b, a, good, last, need.len, need.class) {
            Ok(j) => (Seen::First(j), j <= hi),
            Err((a, good)) => (Seen::NoneBefore { a, good }, false),
        };
        self.last = Some((from, seen));
        found
    }
}

/// The first `j` in `a..=last` such that `b[j..j + len]` is all `class` (`len > 0`), given
/// that `b[a..good]` is (`a <= good`); or where the scan stopped: `(a, good)` with no run
/// beginning before `a` (`usize::MAX` when none begins at all) and `b[a..good]` in the class.
/// Probes the last byte of each possible run and checks backwards only the bytes not yet
/// known to be in the class, so each byte is read at most twice, and about `len` times fewer
/// where the class is rare.
fn next_run(
    b: &[u8],
    mut a: usize,
    mut good: usize,
    last: usize,
    len: usize,
    class: fn(u8) -> bool,
) -> Result<usize, (usize, usize)> {
    let n = b.len();
    loop {
        if a > last {
            return Err((a, good));
        }
        let q = match a.checked_add(len - 1) {
            Some(q) if q < n => q,
            _ => return Err((usize::MAX, usize::MAX)),
        };
        if !class(b[q]) {
            a = q + 1;
            good = a;
            continue;
        }
        // `b[good.max(a)..q]`, from the back (`good <= q + 1`).
        let from = good.max(a).min(q);
        match b[from..q].iter().rposition(|&c| !class(c)) {
            None => return Ok(a),
            Some(i) => {
                a = from + i + 1;
                good = q + 1;
            }
        }
    }
}

/// Clusters longer than this (first to last digit) are searched only around the digit runs
/// that can match (`Shapes`); shorter ones, one or two numbers, in one window.
const LONG_CLUSTER: usize = 32;

/// Whether `hay` holds one of the bytes `set` (at most 3; more are looked for one by one).
fn any_of(hay: &[u8], set: &[u8]) -> bool {
    match *set {
        [] => false,
        [a] => memchr::memchr(a, hay).is_some(),
        [a, b] => memchr::memchr2(a, b, hay).is_some(),
        [a, b, c] => memchr::memchr3(a, b, c, hay).is_some(),
        _ => hay.iter().any(|c| set.contains(c)),
    }
}

/// The last character boundary of `text` at or before `i`.
#[inline]
pub(crate) fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// The first character boundary of `text` at or after `i`.
#[inline]
pub(crate) fn ceil_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Report;
    use proptest::strategy::Strategy;

    /// `carry` finds exactly the prefilter events that a full pass over the output finds.
    fn check_carry(e: &Engine, text: &str) -> Result<(), proptest::test_runner::TestCaseError> {
        let sorted = |ev: &Events| {
            let mut a = ev.anchors.clone();
            let mut c = ev.clusters.clone();
            a.sort_unstable();
            c.sort_unstable();
            (a, c)
        };
        let mut input = text.to_owned();
        let mut ev = Events::default();
        e.collect(&input, &mut ev);
        for _ in 0..4 {
            let mut hits = Vec::new();
            e.find_from(&input, &ev, &mut hits);
            let mut spans = Vec::new();
            let out = e
                .apply(&input, &mut hits, &mut Report::default(), Some(&mut spans))
                .into_owned();
            if spans.is_empty() {
                break;
            }
            let carried = e.carry(&out, &ev, &spans);
            let mut full = Events::default();
            e.collect(&out, &mut full);
            proptest::prop_assert_eq!(sorted(&carried), sorted(&full), "{:?} -> {:?}", input, out);
            input = out;
            ev = full;
        }
        Ok(())
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 384, ..Default::default() })]

        /// Replacements next to digits, gaps, anchors and other secrets, in every mode.
        #[test]
        fn carried_events_equal_a_full_pass(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    3 => proptest::sample::select(vec![
                        "bob@example.com", "555-123-4567", "4111 1111 1111 1111", "320-89-2209",
                        "token=abcd1234efgh", "password: hunter22", "sk-ant-abcdefghijklmnopqrstu",
                        "AKIAABCDEFGHIJKLMNOP", "https://u:pw@h", "Bearer abcdefghijklmnopqrstuv",
                        "api_key=ABCDEFGH12345678", "\u{ff10}\u{ff19}\u{ff10}-1234-5678",
                        "@", "tok", "sec", "://", "-----BEGIN", "secret ",
                    ]).prop_map(str::to_owned),
                    3 => "[0-9]{1,10}",
                    2 => proptest::sample::select(vec![
                        "-", ".", " ", "(", ")", "\u{a0}", "  ", "[", "]", "=", ":", "\n",
                    ]).prop_map(str::to_owned),
                    1 => "[a-zA-Z_]{1,6}",
                    1 => proptest::sample::select(vec!["é", "日", "\u{c2a0}", "！"])
                        .prop_map(str::to_owned),
                ],
                0..40,
            )
        ) {
            let text = parts.concat();
            for e in crate::engine::every_mode() {
                check_carry(e, &text)?;
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// `next_run` and the cursor answer what a byte-by-byte search answers, for questions
        /// in any order (mostly ascending and overlapping, as the engine asks them).
        #[test]
        fn run_cursor_equals_naive(
            text in "[ab/+ .é]{0,120}",
            len in 1usize..8,
            qs in proptest::collection::vec((0usize..130, 0usize..20), 1..16),
            ascending in proptest::bool::ANY,
        ) {
            let b = text.as_bytes();
            let class = |c: u8| c == b'a' || c == b'b' || c == b'/' || c == b'+';
            let run = |j: usize| b.get(j..j + len).is_some_and(|r| r.iter().all(|&c| class(c)));
            let need = Need { class, len, min: 0, max: 0 };
            let mut qs = qs;
            if ascending {
                qs.sort_unstable();
            }
            let mut cursor = RunCursor::default();
            for &(lo, w) in &qs {
                let hi = lo + w;
                proptest::prop_assert_eq!(
                    next_run(b, lo, lo, hi, len, class).ok(),
                    (lo..=hi).find(|&j| run(j))
                );
                proptest::prop_assert_eq!(
                    cursor.reaches(b, lo, hi, &need),
                    (lo..=hi).any(run),
                    "{:?} {}..={}", text, lo, hi
                );
            }
        }
    }
}
