//! The search of long texts (and of texts dense with anchors) in blocks, with memory bounded by the block size instead of the
//! text's: the prefilter events and candidates of one block at a time (anchors that begin in
//! the block, digit clusters that begin in it), verified with what each rule's search carries
//! from block to block (a start-anchored rule's end of last match, a windowed rule's windows
//! that a later block may still extend). The spans searched are exactly those of the search
//! of the whole text at once (`Engine::find_from_plain`), so the hits are the same:
//!
//! - an anchor occurrence depends only on its own bytes, so each block's search reads the
//!   block and the `max_len - 1` bytes after it, and keeps the occurrences that begin in it;
//! - a start-anchored rule verifies its candidates in ascending order with the end of its last
//!   match, which is what it carries;
//! - a windowed rule's windows are merged where they overlap or touch, and a merged window is
//!   searched once no window of a later block can reach it: every such window begins at most
//!   [`Engine::reach`] bytes before that block;
//! - table keywords are kept only where they can start a header (within `MAX_HEADER` bytes
//!   of their line's start), which `find_tables` would check anyway.
//!
//! The digit clusters of the whole text are found first: one event per cluster of at least 9
//! digits, never more than one per 9 bytes.

use crate::candidates::{Cand, Events};
use crate::digits::digit_clusters_list;
use crate::engine::{Engine, Hit, How, RuleKind, beside, dense};
use crate::tables::MAX_HEADER;

/// Texts longer than this are searched in blocks.
pub(crate) const BLOCKED_ABOVE: usize = 2 << 20;

/// Texts with more anchor occurrences than this are searched in blocks too, whatever their
/// length: 64 Ki events (1 MB) and their candidates, where 1 MB of `sk-` makes 333 Ki
/// events and three candidates each (50 MB with their sorted copy).
pub(crate) const MAX_EVENTS: usize = 1 << 16;

/// Bytes per block. A block of a text dense with anchors holds up to one event per byte and a
/// candidate per event and rule: 256 KB keeps them to a few megabytes (1 MB blocks took 20 MB
/// more on 8 MB of `sk-`; 64-256 KB blocks take the same CPU time on every family).
pub(crate) const BLOCK: usize = 256 << 10;

/// What one rule's search carries from block to block.
#[derive(Default)]
struct RuleState {
    /// Start-anchored: no candidate before this is searched (the end of the last match).
    next: usize,
    /// Start-anchored: no match at or after the last candidate searched, so none at all.
    done: bool,
    /// Windowed: windows not searched yet, disjoint and ascending once merged.
    pending: Vec<(usize, usize)>,
}

/// Where a table header may start, from the table keywords of the blocks in ascending order.
#[derive(Default)]
struct Keywords {
    kept: Vec<usize>,
    prev: usize,
    line: usize,
}

impl Keywords {
    /// Keeps the keywords at `ks` (ascending, after every keyword seen before) that lie within
    /// `MAX_HEADER` bytes of their line's start: the others start no header.
    fn add(&mut self, b: &[u8], ks: &[usize]) {
        for &k in ks {
            if let Some(i) = memchr::memrchr(b'\n', &b[self.prev..k]) {
                self.line = self.prev + i + 1;
            }
            self.prev = k;
            if k - self.line <= MAX_HEADER {
                self.kept.push(k);
            }
        }
    }
}

/// Blocks whose events and candidates ([`Engine::block_candidates`]) are found ahead of their
/// verification: a second thread claims the next unclaimed block, at most [`AHEAD`] blocks
/// past the one being verified, and the verifying thread takes each block's when it is
/// found, or claims and finds it itself when no thread has yet (so that neither thread waits
/// for work the other could do: the share each takes follows what verification costs).
#[derive(Default)]
struct Ahead {
    state: std::sync::Mutex<AheadState>,
    changed: std::sync::Condvar,
}

/// What a block's verification needs of its prefilter events: its candidates, and where its
/// table keywords begin (see [`Engine::block_candidates`]).
type BlockFound = (Vec<Cand>, Vec<usize>);

/// See [`Ahead::next_for`].
enum Next {
    Found(BlockFound),
    Yours,
    Other(usize),
}

/// How many blocks past the one being verified the second thread may work on.
const AHEAD: usize = 2;

#[derive(Default)]
struct AheadState {
    /// The first block no thread has claimed.
    next: usize,
    /// The block being verified.
    verifying: usize,
    /// Found, not taken yet.
    found: Vec<(usize, BlockFound)>,
    /// The verification is over (or failed): the second thread stops.
    stop: bool,
    /// The second thread is gone (or never started): the verifying thread finds every
    /// block it has not found.
    helper_gone: bool,
}

/// Sets something on the state of an [`Ahead`] when dropped, and wakes the other thread.
struct OnExit<'a, F: FnMut(&mut AheadState)> {
    ahead: &'a Ahead,
    set: F,
}

impl<F: FnMut(&mut AheadState)> Drop for OnExit<'_, F> {
    fn drop(&mut self) {
        (self.set)(&mut self.ahead.lock());
        self.ahead.changed.notify_all();
    }
}

impl Ahead {
    fn lock(&self) -> std::sync::MutexGuard<'_, AheadState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait<'a>(
        &self,
        guard: std::sync::MutexGuard<'a, AheadState>,
    ) -> std::sync::MutexGuard<'a, AheadState> {
        self.changed
            .wait(guard)
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn on_exit<F: FnMut(&mut AheadState)>(&self, set: F) -> OnExit<'_, F> {
        OnExit { ahead: self, set }
    }

    /// The second thread's next block, once it is at most [`AHEAD`] past the one being
    /// verified; `None` when there is none left or the verification is over.
    fn claim(&self, blocks: usize) -> Option<usize> {
        let mut st = self.lock();
        loop {
            if st.stop || st.next >= blocks {
                return None;
            }
            if st.next <= st.verifying + AHEAD {
                st.next += 1;
                return Some(st.next - 1);
            }
            st = self.wait(st);
        }
    }

    /// What the second thread found of block `k`.
    fn put(&self, k: usize, found: BlockFound) {
        self.lock().found.push((k, found));
        self.changed.notify_all();
    }

    /// What the verifying thread does next for block `k`: take its events and candidates,
    /// find them itself (no thread claimed the block, or the second thread is gone), or,
    /// while the second thread finds them, find those of a later block.
    fn next_for(&self, k: usize, blocks: usize) -> Next {
        let mut st = self.lock();
        if st.verifying != k {
            st.verifying = k;
            self.changed.notify_all();
        }
        loop {
            if let Some(i) = st.found.iter().position(|(j, _)| *j == k) {
                return Next::Found(st.found.swap_remove(i).1);
            }
            if st.next <= k {
                st.next = k + 1;
                return Next::Yours;
            }
            if st.helper_gone {
                return Next::Yours;
            }
            if st.next < blocks && st.next <= k + AHEAD {
                st.next += 1;
                return Next::Other(st.next - 1);
            }
            st = self.wait(st);
        }
    }
}

impl Engine {
    /// How far before its event a window can begin: the longest look-back of a windowed
    /// rule's anchors, the 8 bytes before a digit cluster, and a character boundary's 3.
    pub(crate) fn reach(&self) -> usize {
        let back = self.anchors.as_ref().map_or(0, |a| {
            (0..a.len())
                .flat_map(|id| a.targets(id).iter())
                .map(|&(_, how)| match how {
                    How::Start => 0,
                    How::Window { back, .. } => back,
                })
                .max()
                .unwrap_or(0)
        });
        back.max(8) + 3
    }

    /// The same hits as collecting the prefilter events of `text` and calling
    /// `find_from_plain`, with the events and candidates of `block` bytes at a time. A long
    /// text on a machine with a second core has the events and candidates of every other
    /// block found on a second thread (they depend only on the text, see
    /// [`block_candidates`](Self::block_candidates)), at most two blocks ahead; the blocks are
    /// verified in order here, with what each rule carries from one to the next.
    pub(crate) fn find_plain_blocks(&self, text: &str, block: usize, hits: &mut Vec<Hit>) {
        self.find_plain_blocks_beside(text, block, beside(text.len()), hits);
    }

    /// [`find_plain_blocks`](Self::find_plain_blocks), with a second thread when `beside`.
    pub(crate) fn find_plain_blocks_beside(
        &self,
        text: &str,
        block: usize,
        beside: bool,
        hits: &mut Vec<Hit>,
    ) {
        let n = text.len();
        let block = block.max(1);
        let clusters = if self.digit_rules.is_empty() {
            Vec::new()
        } else {
            digit_clusters_list(text.as_bytes(), beside)
        };
        let blocks = n.div_ceil(block);
        if !beside || blocks < 2 {
            self.verify_blocks(text, block, &clusters, hits, &mut |_| None);
            return;
        }
        let ahead = Ahead::default();
        std::thread::scope(|scope| {
            let clusters = &clusters;
            let ahead = &ahead;
            let helper = std::thread::Builder::new()
                .name("tracecraft-redact-blocks".into())
                .spawn_scoped(scope, move || {
                    let _gone = ahead.on_exit(|st| st.helper_gone = true);
                    let mut ev = Events::default();
                    while let Some(k) = ahead.claim(blocks) {
                        let found =
                            self.block_candidates(text, k * block, block, clusters, &mut ev);
                        ahead.put(k, found);
                    }
                });
            if helper.is_err() {
                ahead.lock().helper_gone = true;
            }
            {
                // However the verification ends (a panic too), the helper stops.
                let _stop = ahead.on_exit(|st| st.stop = true);
                let mut ev = Events::default();
                self.verify_blocks(text, block, clusters, hits, &mut |k| loop {
                    match ahead.next_for(k, blocks) {
                        Next::Found(found) => return Some(found),
                        Next::Yours => return None,
                        Next::Other(j) => {
                            let found =
                                self.block_candidates(text, j * block, block, clusters, &mut ev);
                            ahead.put(j, found);
                        }
                    }
                });
            }
            if let Ok(helper) = helper {
                helper
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            }
        });
    }

    /// What the verification of the block of `text` at `at` (`block` bytes long, the last one
    /// shorter) needs of its prefilter events (anchors that begin in the block, digit clusters
    /// that begin in it; `clusters` are those of the whole text; `ev` is scratch space): its
    /// candidates, and where its table keywords begin, ascending.
    fn block_candidates(
        &self,
        text: &str,
        at: usize,
        block: usize,
        clusters: &[(usize, usize)],
        ev: &mut Events,
    ) -> BlockFound {
        let b = text.as_bytes();
        let n = b.len();
        let end = at.saturating_add(block).min(n);
        ev.anchors.clear();
        ev.clusters.clear();
        if let Some(anchors) = &self.anchors {
            let max_lit = anchors.max_len().max(1);
            let z = end.saturating_add(max_lit - 1).min(n);
            anchors.find_ids(&b[at..z], |id, ms, me| {
                if at + ms < end {
                    ev.anchors.push((at + ms, id as u32, (me - ms) as u32));
                }
            });
        }
        let first = clusters.partition_point(|c| c.0 < at);
        let last = clusters.partition_point(|c| c.0 < end);
        ev.clusters.extend_from_slice(&clusters[first..last]);
        let cands = self.candidates(text, ev);
        let mut keywords = Vec::new();
        if self.table_rule.is_some() {
            keywords.extend(
                ev.anchors
                    .iter()
                    .filter(|&&(_, id, _)| self.table_keyword(id as usize))
                    .map(|&(ms, _, _)| ms),
            );
            keywords.sort_unstable();
        }
        (cands, keywords)
    }

    /// The blocks of `text` verified in order; block `k`'s events and candidates are
    /// `ready(k)` when found elsewhere, else found here.
    fn verify_blocks(
        &self,
        text: &str,
        block: usize,
        clusters: &[(usize, usize)],
        hits: &mut Vec<Hit>,
        ready: &mut dyn FnMut(usize) -> Option<BlockFound>,
    ) {
        let b = text.as_bytes();
        let n = b.len();
        let reach = self.reach();
        let mut states: Vec<RuleState> = (0..self.rules.len())
            .map(|_| RuleState::default())
            .collect();
        let mut keywords = Keywords::default();
        let mut ev = Events::default();
        let mut at = 0;
        let mut k = 0;
        while at < n {
            let end = at.saturating_add(block).min(n);
            let (cands, ks) = ready(k)
                .unwrap_or_else(|| self.block_candidates(text, at, block, clusters, &mut ev));
            k += 1;
            // Every window of a later block begins at or after this.
            let frontier = if end == n {
                usize::MAX
            } else {
                end - reach.min(end)
            };
            for group in cands.chunk_by(|a, b| a.rule == b.rule) {
                let rule = group[0].rule;
                let state = &mut states[usize::from(rule)];
                match self.rules[usize::from(rule)].kind {
                    RuleKind::Start => self.starts_carried(text, rule, group, end, state, hits),
                    RuleKind::Window | RuleKind::Digits => {
                        state.pending.extend(group.iter().map(|c| (c.start, c.end)));
                        self.windows_carried(text, rule, frontier, state, hits);
                    }
                    RuleKind::Full => {}
                }
            }
            keywords.add(b, &ks);
            at = end;
        }
        for (rule, state) in states.iter_mut().enumerate() {
            if !state.pending.is_empty() {
                let rule = u16::try_from(rule).unwrap_or(u16::MAX);
                self.windows_carried(text, rule, usize::MAX, state, hits);
            }
        }
        if self.table_rule.is_some() {
            self.find_tables(text, Some(&keywords.kept), hits);
        }
        self.find_custom(text, hits);
    }

    /// `verify_starts` over one block's candidates of a start-anchored rule (ascending, all
    /// before `end`), carrying the end of the last match in `state`.
    fn starts_carried(
        &self,
        text: &str,
        rule: u16,
        group: &[Cand],
        end: usize,
        state: &mut RuleState,
        hits: &mut Vec<Hit>,
    ) {
        use regex_automata::{Anchored, Input};
        let r = &self.rules[usize::from(rule)];
        let mut caps = r.captures();
        for (k, c) in group.iter().enumerate() {
            if state.done {
                return;
            }
            if c.start < state.next {
                continue;
            }
            state.next = c.start + 1;
            let mut at = c.start;
            // Density judged within the block (the candidates of later blocks are not known
            // yet); either way the match found is the same (see `verify_starts`).
            if dense(group.len() - k, end - c.start) {
                let input = Input::new(text).range(c.start..);
                match r.regex().search(&input) {
                    Some(m) => at = m.start(),
                    None => {
                        state.done = true;
                        return;
                    }
                }
            }
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            let Some(m) = r.regex().search(&input) else {
                continue;
            };
            state.next = m.end();
            self.accept_match(text, rule, m, caps.as_mut(), hits);
        }
    }

    /// Merges a windowed rule's pending windows and searches those that end before
    /// `frontier` (no later window can reach them); the others stay pending.
    fn windows_carried(
        &self,
        text: &str,
        rule: u16,
        frontier: usize,
        state: &mut RuleState,
        hits: &mut Vec<Hit>,
    ) {
        let pending = &mut state.pending;
        pending.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::with_capacity(pending.len());
        for &(s, e) in pending.iter() {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        pending.clear();
        for (s, e) in merged {
            if e < frontier {
                self.search_span(text, rule, s, e, hits);
            } else {
                pending.push((s, e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::candidates::Events;
    use crate::config::{RedactionConfig, RedactionMode};
    use crate::engine::{Engine, Hit};
    use crate::report::Report;
    use proptest::strategy::Strategy;

    fn engines() -> &'static [Engine; 2] {
        static E: std::sync::OnceLock<[Engine; 2]> = std::sync::OnceLock::new();
        E.get_or_init(|| {
            let mode = |mode| {
                Engine::new(&RedactionConfig {
                    mode,
                    hash_key: Some("k".into()),
                    ..RedactionConfig::default()
                })
                .unwrap()
            };
            [mode(RedactionMode::Mask), mode(RedactionMode::Hash)]
        })
    }

    fn sorted(mut hits: Vec<Hit>) -> Vec<(usize, usize, u16)> {
        let mut v: Vec<_> = hits.drain(..).map(|h| (h.start, h.end, h.rule)).collect();
        v.sort_unstable();
        v
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The search in blocks of any size finds exactly the hits of the search at once.
        #[test]
        fn blocks_find_what_the_whole_text_finds(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => proptest::sample::select(vec![
                        "bob@example.com", "555-123-4567", "4111 1111 1111 1111", "320-89-2209",
                        "token=abcd1234efgh", "password: hunter22", "sk-ant-abcdefghijklmnopqrstu",
                        "AKIAABCDEFGHIJKLMNOP", "https://u:pw@h", "Bearer abcdefghijklmnopqrstuv",
                        "api_key=ABCDEFGH12345678", "\u{ff10}\u{ff19}\u{ff10}-1234-5678",
                        "@", "sk-", "password=", "Bearer ", "secret ", "-----BEGIN RSA PRIVATE KEY-----",
                        "-----END RSA PRIVATE KEY-----", "ghp_", "xoxb-", "://", "pwd,name\n",
                        "user,password\n", "a,b\n", "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefgh",
                    ]).prop_map(str::to_owned),
                    3 => "[0-9]{1,10}",
                    2 => proptest::sample::select(vec![
                        "-", ".", " ", "(", ")", "  ", "=", ":", "\n", ",", "\t",
                    ]).prop_map(str::to_owned),
                    2 => "[a-zA-Z0-9+/_]{1,24}",
                    1 => proptest::sample::select(vec!["é", "日", "！"]).prop_map(str::to_owned),
                ],
                0..60,
            ),
            block in 1usize..200,
        ) {
            let text = parts.concat();
            for e in engines() {
                let mut ev = Events::default();
                e.collect(&text, &mut ev);
                // Read in segments of any size: the same events (in another order).
                let mut seg = Events::default();
                proptest::prop_assert!(e.collect_in_segments(&text, &mut seg, usize::MAX, block));
                let key = |ev: &Events| {
                    let mut a = ev.anchors.clone();
                    a.sort_unstable();
                    (a, ev.clusters.clone())
                };
                proptest::prop_assert_eq!(key(&ev), key(&seg), "{:?} segment {}", text, block);
                let mut whole = Vec::new();
                e.find_from_plain(&text, &ev, &mut whole);
                let mut blocks = Vec::new();
                e.find_plain_blocks(&text, block, &mut blocks);
                // With every other block's events and candidates found on a second thread
                // (and the digit clusters' second half): the same hits, in the same order.
                let mut beside = Vec::new();
                e.find_plain_blocks_beside(&text, block, true, &mut beside);
                proptest::prop_assert_eq!(&blocks, &beside, "{:?} block {}", text, block);
                proptest::prop_assert_eq!(sorted(whole), sorted(blocks), "{:?} block {}", text, block);
                // The passes of a long or dense text (no events carried) redact the same.
                let (mut carried, mut long) = (Report::default(), Report::default());
                proptest::prop_assert_eq!(
                    e.redact(&text, &mut carried, false),
                    e.redact_long(&text, &mut long),
                    "{:?}", text
                );
                proptest::prop_assert_eq!(carried, long);
            }
        }
    }
}
