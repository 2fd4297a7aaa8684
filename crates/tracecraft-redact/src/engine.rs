//! The compiled engine: one anchor search (`anchors.rs`) plus a digit scan find candidates for all
//! rules; the rules' lazy DFAs verify only around candidates.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, Match};
use sha2::{Digest, Sha256};

use crate::BuildError;
use crate::anchors::{Anchors, SHORT};
use crate::config::{RedactionConfig, RedactionMode};
use crate::decode::{Budget, MAX_DEPTH};
use crate::report::{Finding, Report};
use crate::rules::{BUILTINS, DEFAULT_SENSITIVE_KEYS, Kind, Need, Shapes, Validator, Viable};

/// Per-rule state arrays of one search (windows, run cursors) have a slot for every built-in
/// detector: windowed, digit and `Need` rules are all built in (custom rules are searched
/// whole), and the build fails to compile when the built-ins outgrow the slots.
const SLOTS: usize = 64;
const _: () = assert!(BUILTINS.len() <= SLOTS);

/// NFA size limit per rule (bytes of heap).
pub(crate) const SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// Names reserved for non-pattern findings.
const RESERVED: &[&str] = &["field_path", "sensitive_key"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RuleKind {
    Start,
    Window,
    Digits,
    /// Custom rules: searched over the whole text once a combined gate matched.
    Full,
}

pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    regex: Regex,
    has_groups: bool,
    kind: RuleKind,
    validator: Option<Validator>,
    viable: Option<Viable>,
    need: Option<Need>,
    replacement: Option<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum How {
    Start,
    Window { back: usize, fwd: usize },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) rule: u16,
}

/// An anchor occurrence: start, the anchor's id (see `Anchors::targets`), length. 16 bytes:
/// keyword-dense texts make many (ids and lengths are those of the built-in anchors, far
/// below `u32::MAX`).
type AnchorEvent = (usize, u32, u32);

/// The event of the anchor `id` found at `start..end`.
#[inline]
fn anchor_event(id: usize, start: usize, end: usize) -> AnchorEvent {
    (start, id as u32, (end - start) as u32)
}

/// Prefilter events of one text: anchor occurrences and digit clusters (first digit, last
/// digit + 1).
#[derive(Default)]
struct Events {
    anchors: Vec<AnchorEvent>,
    clusters: Vec<(usize, usize)>,
}

/// One replaced span: `start..end` of a pass's input became `out_start..out_end` of its
/// output. Ascending and disjoint, never empty in the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Replaced {
    start: usize,
    end: usize,
    out_start: usize,
    out_end: usize,
}

#[derive(Clone, Copy)]
struct Cand {
    rule: u16,
    start: usize,
    end: usize,
}

enum Hasher {
    None,
    Unkeyed,
    Keyed(Hmac<Sha256>),
}

pub(crate) struct Engine {
    pub(crate) enabled: bool,
    pub(crate) rules: Vec<Rule>,
    pub(crate) anchors: Option<Anchors<(u16, How)>>,
    digit_rules: Vec<u16>,
    /// The shapes of `digit_rules`' matches, in the same order.
    digit_shapes: Vec<Shapes>,
    custom_gate: Option<Regex>,
    custom_rules: Vec<u16>,
    /// The rule that reports table cells (`tables.rs`): `password_field`, when enabled.
    pub(crate) table_rule: Option<u16>,
    /// Per anchor id: whether it is a keyword of a rule whose anchors are table keywords
    /// (`password_field`, `generic_api_key_param`; see `table_keyword`).
    pub(crate) table_keywords: Vec<bool>,
    allow: HashSet<String>,
    allow_re: Option<Regex>,
    mode: RedactionMode,
    hasher: Hasher,
    pub(crate) field_leaf: HashSet<String>,
    pub(crate) field_dotted: HashSet<String>,
    pub(crate) max_dotted_depth: usize,
    pub(crate) sensitive: HashSet<String>,
    /// Bit `n`: some normalised sensitive key is `n` bytes long (`n < 64`).
    pub(crate) sensitive_lens: u64,
    /// The longest normalised sensitive key, in bytes.
    pub(crate) sensitive_max: usize,
    /// The same keys as a short list when there are few (compared faster than hashed).
    pub(crate) sensitive_few: Option<Vec<String>>,
}

/// Lower-cases and drops `-` and `_`.
pub(crate) fn normalize_key(k: &str) -> String {
    k.chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

fn pos_of(pattern: &str, offset: usize) -> (usize, usize) {
    let before = &pattern[..offset.min(pattern.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// A [`BuildError::InvalidPattern`] at `offset` of `pattern`, with its line and column.
fn invalid_pattern(rule: &str, pattern: &str, offset: usize, message: String) -> BuildError {
    let (line, column) = pos_of(pattern, offset);
    BuildError::InvalidPattern {
        rule: rule.to_owned(),
        offset,
        line,
        column,
        message,
    }
}

/// Parses `pattern` and compiles it, rejecting what cannot run in linear time.
pub(crate) fn compile(
    rule: &str,
    pattern: &str,
    allow_empty: bool,
) -> Result<(Regex, bool), BuildError> {
    use regex_syntax::ast::ErrorKind as AK;
    let ast = regex_syntax::ast::parse::Parser::new()
        .parse(pattern)
        .map_err(|e| {
            let offset = e.span().start.offset;
            match e.kind() {
                AK::UnsupportedLookAround => BuildError::NotLinear {
                    rule: rule.to_owned(),
                    feature: "look-around",
                    offset,
                },
                AK::UnsupportedBackreference => BuildError::NotLinear {
                    rule: rule.to_owned(),
                    feature: "a backreference",
                    offset,
                },
                kind => invalid_pattern(rule, pattern, offset, kind.to_string()),
            }
        })?;
    let hir = regex_syntax::hir::translate::Translator::new()
        .translate(pattern, &ast)
        .map_err(|e| invalid_pattern(rule, pattern, e.span().start.offset, e.kind().to_string()))?;
    if !allow_empty && hir.properties().minimum_len() == Some(0) {
        return Err(BuildError::EmptyMatch {
            rule: rule.to_owned(),
        });
    }
    let has_groups = hir.properties().explicit_captures_len() > 0;
    let regex = meta::Builder::new()
        .configure(
            meta::Config::new()
                .nfa_size_limit(Some(SIZE_LIMIT))
                .onepass_size_limit(Some(SIZE_LIMIT))
                // No full DFA: building them was a fifth of start-up (a 17 MB input
                // searched no faster with them, the lazy DFA serves); the literal prefilters
                // are kept (they cost a fifth of start-up too, but save more on any input
                // of a few megabytes).
                .dfa(false)
                .which_captures(if has_groups {
                    regex_automata::nfa::thompson::WhichCaptures::All
                } else {
                    regex_automata::nfa::thompson::WhichCaptures::Implicit
                }),
        )
        .syntax(syntax::Config::new())
        .build_from_hir(&hir)
        .map_err(|e| match e.size_limit() {
            Some(limit) => BuildError::TooLarge {
                rule: rule.to_owned(),
                limit,
            },
            None => BuildError::InvalidPattern {
                rule: rule.to_owned(),
                offset: 0,
                line: 1,
                column: 1,
                message: e.to_string(),
            },
        })?;
    Ok((regex, has_groups))
}

impl Engine {
    pub(crate) fn new(cfg: &RedactionConfig) -> Result<Engine, BuildError> {
        for name in &cfg.disable {
            if !BUILTINS.iter().any(|b| b.name == name) {
                return Err(BuildError::UnknownRule { name: name.clone() });
            }
        }
        let hasher = match (&cfg.mode, &cfg.hash_key) {
            (RedactionMode::Hash, None) => return Err(BuildError::MissingHashKey),
            (_, Some(k)) if k.is_unkeyed() => Hasher::Unkeyed,
            (_, Some(k)) => Hasher::Keyed(
                Hmac::<Sha256>::new_from_slice(k.expose())
                    .map_err(|_| BuildError::MissingHashKey)?,
            ),
            (_, None) => Hasher::None,
        };
        let mut rules = Vec::new();
        let mut anchor_list: Vec<(&str, bool, (u16, How))> = Vec::new();
        let mut digit_rules = Vec::new();
        let mut digit_shapes = Vec::new();
        let mut add_lit = |lit: &'static str, exact: bool, rule: u16, how: How| {
            anchor_list.push((lit, exact, (rule, how)));
        };
        if cfg.include_defaults {
            for b in BUILTINS {
                if cfg.disable.iter().any(|d| d == b.name) {
                    continue;
                }
                let (regex, has_groups) = compile(b.name, b.pattern, false)?;
                let idx = u16::try_from(rules.len()).map_err(|_| BuildError::BadRuleName {
                    name: b.name.to_owned(),
                })?;
                let kind = match b.kind {
                    Kind::Start => {
                        for a in b.anchors {
                            add_lit(a, b.exact, idx, How::Start);
                        }
                        RuleKind::Start
                    }
                    Kind::Window { back, fwd } => {
                        for a in b.anchors {
                            add_lit(a, b.exact, idx, How::Window { back, fwd });
                        }
                        RuleKind::Window
                    }
                    Kind::Digits(shapes) => {
                        for a in b.anchors {
                            add_lit(a, b.exact, idx, How::Window { back: 64, fwd: 64 });
                        }
                        digit_rules.push(idx);
                        digit_shapes.push(shapes);
                        RuleKind::Digits
                    }
                };
                rules.push(Rule {
                    name: Arc::from(b.name),
                    regex,
                    has_groups,
                    kind,
                    validator: b.validator,
                    viable: b.viable,
                    need: b.need,
                    replacement: None,
                });
            }
        }
        let mut custom_rules = Vec::new();
        let mut custom_patterns = Vec::new();
        for c in &cfg.custom_rules {
            if c.name.trim().is_empty()
                || RESERVED.contains(&c.name.as_str())
                || rules.iter().any(|r: &Rule| *r.name == *c.name)
                || BUILTINS.iter().any(|b| b.name == c.name)
            {
                return Err(BuildError::BadRuleName {
                    name: c.name.clone(),
                });
            }
            let (regex, _) = compile(&c.name, &c.pattern, false)?;
            if !c.allow_slow
                && let Ok(hir) = regex_syntax::parse(&c.pattern)
            {
                crate::speed::check_custom_rule(&c.name, &c.pattern, &hir)?;
            }
            let idx = u16::try_from(rules.len()).map_err(|_| BuildError::BadRuleName {
                name: c.name.clone(),
            })?;
            custom_rules.push(idx);
            custom_patterns.push(c.pattern.as_str());
            rules.push(Rule {
                name: Arc::from(c.name.as_str()),
                regex,
                has_groups: false,
                kind: RuleKind::Full,
                validator: None,
                viable: None,
                need: None,
                replacement: c.replacement.clone(),
            });
        }
        let custom_gate = if custom_patterns.len() > 1 {
            // One pass for all custom rules; each has already compiled alone, so this only
            // fails on the combined size, and then each rule simply runs on its own.
            multi_pattern_builder().build_many(&custom_patterns).ok()
        } else {
            None
        };
        let anchors = if anchor_list.is_empty() {
            None
        } else {
            Some(
                Anchors::new(&anchor_list).ok_or_else(|| BuildError::TooLarge {
                    rule: "anchors".to_owned(),
                    limit: SIZE_LIMIT,
                })?,
            )
        };
        let allow_re = if cfg.allowlist_patterns.is_empty() {
            None
        } else {
            let mut hirs = Vec::new();
            for (i, p) in cfg.allowlist_patterns.iter().enumerate() {
                let name = format!("allowlist_patterns[{i}]");
                // Validate alone for a precise error, then wrap for a full match.
                compile(&name, p, true)?;
                let wrapped = format!(r"\A(?:{p})\z");
                hirs.push(regex_syntax::parse(&wrapped).map_err(|_| {
                    BuildError::InvalidPattern {
                        rule: name.clone(),
                        offset: 0,
                        line: 1,
                        column: 1,
                        message: "does not parse inside a group".to_owned(),
                    }
                })?);
            }
            Some(
                multi_pattern_builder()
                    .build_many_from_hir(&hirs)
                    .map_err(|_| BuildError::TooLarge {
                        rule: "allowlist_patterns".to_owned(),
                        limit: 4 * SIZE_LIMIT,
                    })?,
            )
        };
        let mut field_leaf = HashSet::new();
        let mut field_dotted = HashSet::new();
        let mut max_dotted_depth = 0;
        for p in &cfg.field_paths {
            if p.contains('.') {
                max_dotted_depth = max_dotted_depth.max(p.split('.').count());
                field_dotted.insert(p.clone());
            } else {
                field_leaf.insert(p.clone());
            }
        }
        let sensitive: HashSet<String> = match &cfg.sensitive_keys {
            None => DEFAULT_SENSITIVE_KEYS
                .iter()
                .map(|k| normalize_key(k))
                .collect(),
            Some(keys) => keys.iter().map(|k| normalize_key(k)).collect(),
        };
        let sensitive_lens = sensitive
            .iter()
            .filter(|k| k.len() < 64)
            .fold(0u64, |m, k| m | 1 << k.len());
        let sensitive_max = sensitive.iter().map(String::len).max().unwrap_or(0);
        let sensitive_few = (sensitive.len() <= 32).then(|| sensitive.iter().cloned().collect());
        let table_rules: Vec<u16> = rules
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(&*r.name, "password_field" | "generic_api_key_param"))
            .filter_map(|(i, _)| u16::try_from(i).ok())
            .collect();
        let table_rule = rules
            .iter()
            .position(|r| &*r.name == "password_field")
            .and_then(|i| u16::try_from(i).ok());
        let table_keywords = anchors.as_ref().map_or_else(Vec::new, |a| {
            (0..a.len())
                .map(|id| {
                    a.targets(id)
                        .iter()
                        .any(|&(rule, _)| table_rules.contains(&rule))
                })
                .collect()
        });
        Ok(Engine {
            enabled: cfg.enabled,
            table_keywords,
            rules,
            anchors,
            table_rule,
            digit_rules,
            digit_shapes,
            custom_gate,
            custom_rules,
            allow: cfg.allowlist.iter().cloned().collect(),
            allow_re,
            mode: cfg.mode,
            hasher,
            field_leaf,
            field_dotted,
            max_dotted_depth,
            sensitive,
            sensitive_lens,
            sensitive_max,
            sensitive_few,
        })
    }

    fn allowlisted(&self, value: &str) -> bool {
        (!self.allow.is_empty() && self.allow.contains(value))
            || self.allow_re.as_ref().is_some_and(|r| r.is_match(value))
    }

    /// Records the redacted spans of one match, if it passes the validator.
    fn accept(
        &self,
        text: &str,
        rule: u16,
        start: usize,
        end: usize,
        caps: Option<&Captures>,
        hits: &mut Vec<Hit>,
    ) {
        let r = &self.rules[usize::from(rule)];
        let mut spans = [(0usize, 0usize); 4];
        let mut n = 0;
        match caps {
            Some(c) => {
                for g in 1..c.group_len() {
                    if let Some(s) = c.get_group(g)
                        && !s.is_empty()
                        && n < spans.len()
                    {
                        spans[n] = (s.start, s.end);
                        n += 1;
                    }
                }
            }
            None => {
                spans[0] = (start, end);
                n = 1;
            }
        }
        let spans = &spans[..n];
        // Digit rules never match right after `]` or right before `[`: a replacement there
        // would otherwise create a word boundary the original text did not have, and
        // redacting the output again would find a new number.
        if r.kind == RuleKind::Digits {
            let b = text.as_bytes();
            if (start > 0 && b[start - 1] == b']') || b.get(end) == Some(&b'[') {
                return;
            }
        }
        if let Some(v) = r.validator
            && !v(text, start, end, spans)
        {
            return;
        }
        for &(s, e) in spans {
            if !self.allowlisted(&text[s..e]) {
                hits.push(Hit {
                    start: s,
                    end: e,
                    rule,
                });
            }
        }
    }

    /// All matches of `rule` in `span` (leftmost-first, non-overlapping).
    fn search_span(&self, text: &str, rule: u16, s: usize, e: usize, hits: &mut Vec<Hit>) {
        let r = &self.rules[usize::from(rule)];
        let input = Input::new(text).range(s..e);
        let mut caps = r.has_groups.then(|| r.regex.create_captures());
        for m in r.regex.find_iter(input) {
            self.accept_match(text, rule, m, caps.as_mut(), hits);
        }
    }

    /// Accepts the match `m` of `rule` (see [`accept`](Self::accept)), with its groups when
    /// the rule has some (`caps`). The groups are searched on the match's own bytes only: a
    /// capturing search over a long haystack runs on a slow engine (the bounded backtracker
    /// only takes short ones), the match itself was found by the lazy DFA. The leftmost-first
    /// match that begins at `m.start()` within `m`'s span is `m` (look-around assertions see
    /// the bytes outside the span), so these are the groups a capturing search would have
    /// found. A match longer than [`LONG_MATCH`] (a keyword and megabytes of value) is taken
    /// whole: its groups would cost a slow engine's pass over it, and redacting the keyword
    /// with the value hides nothing that should show.
    fn accept_match(
        &self,
        text: &str,
        rule: u16,
        m: Match,
        caps: Option<&mut Captures>,
        hits: &mut Vec<Hit>,
    ) {
        let Some(caps) = caps.filter(|_| m.len() <= LONG_MATCH) else {
            self.accept(text, rule, m.start(), m.end(), None, hits);
            return;
        };
        let r = &self.rules[usize::from(rule)];
        let input = Input::new(text)
            .range(m.start()..m.end())
            .anchored(Anchored::Yes);
        r.regex.search_captures(&input, caps);
        if let Some(m) = caps.get_match() {
            self.accept(text, rule, m.start(), m.end(), Some(caps), hits);
        }
    }

    /// For short texts (most strings of a trace: names, ids, keys), a check cheaper than
    /// [`find`](Self::find): no anchor can occur and there are fewer than 9 ASCII digits (a
    /// digit cluster needs 9), and there are no custom rules. `true` means `find` finds nothing.
    #[inline]
    pub(crate) fn surely_clean(&self, text: &str) -> bool {
        let b = text.as_bytes();
        b.len() <= SHORT
            && self.custom_rules.is_empty()
            && (self.digit_rules.is_empty() || b.len() < 9 || count_short(b) < 9)
            && self.anchors.as_ref().is_none_or(|a| !a.may_match_short(b))
            && !crate::decode::may_decode(b)
    }

    /// The fast path: candidates from one prefilter pass, verified locally.
    pub(crate) fn find(&self, text: &str, hits: &mut Vec<Hit>) {
        let mut ev = Events::default();
        self.collect(text, &mut ev);
        self.find_from(text, &ev, hits);
    }

    /// The prefilter pass: every anchor occurrence and every digit cluster of `text`.
    fn collect(&self, text: &str, ev: &mut Events) {
        if let Some(anchors) = &self.anchors {
            anchors.find_ids(text.as_bytes(), |id, ms, me| {
                ev.anchors.push(anchor_event(id, ms, me));
            });
        }
        if !self.digit_rules.is_empty() {
            digit_clusters(text.as_bytes(), |s, e| ev.clusters.push((s, e)));
        }
    }

    /// The prefilter events of `out`, the output of a pass over a text with events `prev` that
    /// replaced `spans`, without a full prefilter pass: an anchor occurrence depends only on
    /// its own bytes, a digit cluster `s..e` only on the bytes `s - 4..e + 4` (its digits, its
    /// gaps, and the up to 4 bytes that would link it to another digit). Events of `prev` whose
    /// bytes no replacement touched are moved to their place in `out`; events of `out` whose
    /// bytes touch a replacement are found by searching near each replacement. The result is
    /// exactly what [`collect`](Self::collect) would find on `out`, in another order (the
    /// candidates built from events do not depend on their order).
    fn carry(&self, out: &str, prev: &Events, spans: &[Replaced]) -> Events {
        let n = out.len();
        let b = out.as_bytes();
        // Whether `a..z` (in `out`, or in the old text with `old`; it may reach past either
        // end, which then is one of the things it depends on) touches a replacement: it
        // overlaps one, or straddles the place of an empty one.
        let touches = |a: isize, z: isize, old: bool| -> bool {
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
        };
        // Position `p` of the old text, outside the replacements, in `out`.
        let moved = |p: usize| -> usize {
            let i = spans.partition_point(|r| r.end <= p);
            match i.checked_sub(1).map(|k| &spans[k]) {
                Some(r) => p - r.end + r.out_end,
                None => p,
            }
        };
        let mut ev = Events::default();
        for &(ms, id, len) in &prev.anchors {
            let me = ms + len as usize;
            if !touches(ms as isize, me as isize, true) {
                ev.anchors.push((moved(ms), id, len));
            }
        }
        // Unclamped: a cluster within 4 bytes of an end depends on where the text ends.
        let dep = |s: usize, e: usize| (s as isize - 4, e as isize + 4);
        for &(s, e) in &prev.clusters {
            let (a, z) = dep(s, e);
            if !touches(a, z, true) {
                ev.clusters.push((moved(s), moved(s) + (e - s)));
            }
        }
        // Regions of `out` around the replacements: anchors (at most `max_lit - 1` bytes on
        // either side), clusters (8 bytes, then to the ends of the run of digits and gap bytes,
        // so that no chain crosses a region's edge). Regions are merged when they meet, so
        // every byte is searched at most once.
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
        for &(a, z) in &regions {
            // Anchors: a region starts and ends at least `max_lit - 1` bytes from every
            // replacement in it, so each occurrence touching one lies inside it; occurrences
            // touching none are already carried.
            if let Some(anchors) = &self.anchors {
                anchors.find_ids(&b[a..z], |id, ms, me| {
                    if touches((a + ms) as isize, (a + me) as isize, false) {
                        ev.anchors.push(anchor_event(id, a + ms, a + me));
                    }
                });
            }
            // Clusters: a region begins after a byte that no chain crosses (or at the start, or
            // at the end of the previous region, which ended the same way) and ends before
            // one, so its chains are those of `out`.
            if !self.digit_rules.is_empty() {
                digit_clusters(&b[a..z], |s, e| {
                    let (da, dz) = dep(a + s, a + e);
                    if touches(da, dz, false) {
                        ev.clusters.push((a + s, a + e));
                    }
                });
            }
        }
        ev
    }

    /// Candidates from prefilter events, verified locally; then the decoders.
    fn find_from(&self, text: &str, ev: &Events, hits: &mut Vec<Hit>) {
        self.find_from_plain(text, ev, hits);
        let mut budget = Budget::for_text(text.len());
        self.find_decoded(text, false, MAX_DEPTH, &mut budget, hits);
    }

    /// One level of the search with the decoders below it: the fast path, or the naive
    /// oracle when `naive` (for text the decoders produced).
    pub(crate) fn find_at_depth(
        &self,
        text: &str,
        naive: bool,
        depth: u8,
        budget: &mut Budget,
        hits: &mut Vec<Hit>,
    ) {
        if naive {
            self.find_naive_plain(text, hits);
        } else {
            let mut ev = Events::default();
            self.collect(text, &mut ev);
            self.find_from_plain(text, &ev, hits);
        }
        self.find_decoded(text, naive, depth, budget, hits);
    }

    /// Candidates from prefilter events, verified locally.
    fn find_from_plain(&self, text: &str, ev: &Events, hits: &mut Vec<Hit>) {
        let mut cands: Vec<Cand> = Vec::new();
        let n = text.len();
        // Per windowed rule (every one is built in, so its index is below SLOTS), its last window in `cands`: a window that overlaps or
        // touches it is merged into it instead of pushed (the windows are merged the same way
        // below, so the searched spans do not change; dense `@` or digits stay few candidates).
        let mut last = [usize::MAX; SLOTS];
        let mut push_window = |cands: &mut Vec<Cand>, rule: u16, start: usize, end: usize| {
            let slot = last.get_mut(usize::from(rule));
            if let Some(&i) = slot.as_deref()
                && let Some(c) = cands.get_mut(i)
                && start <= c.end
                && c.start <= end
            {
                c.start = c.start.min(start);
                c.end = c.end.max(end);
                return;
            }
            if let Some(slot) = slot {
                *slot = cands.len();
            }
            cands.push(Cand { rule, start, end });
        };
        // Per rule with a `Need` (built in: index below SLOTS): where its runs were last looked for.
        let mut cursors = [RunCursor::default(); SLOTS];
        for &(ms, id, len) in &ev.anchors {
            let me = ms + len as usize;
            let targets = self
                .anchors
                .as_ref()
                .map_or(&[][..], |a| a.targets(id as usize));
            {
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
                        How::Start => cands.push(Cand {
                            rule,
                            start: ms,
                            end: ms,
                        }),
                        How::Window { back, fwd } => push_window(
                            &mut cands,
                            rule,
                            floor_char(text, ms.saturating_sub(back)),
                            ceil_char(text, (me + fwd).min(n)),
                        ),
                    }
                }
            }
        }
        // Digit runs of the current long cluster.
        let mut runs: Vec<(usize, usize)> = Vec::new();
        for &(s, e) in &ev.clusters {
            // A match of a digit rule never overlaps a run of more than 19 ASCII digits: each
            // of its digit runs lies between non-digits (a separator, `+`, `(`, `)`, or a word
            // boundary) and has at most 19 digits (a card; phones at most 15, SSNs 4). So a
            // cluster that is one such run has nothing to find.
            if e - s > 19 && text.as_bytes()[s..e].iter().all(u8::is_ascii_digit) {
                continue;
            }
            let start = floor_char(text, s.saturating_sub(8));
            let end = ceil_char(text, (e + 8).min(n));
            if e - s <= LONG_CLUSTER {
                for &rule in &self.digit_rules {
                    push_window(&mut cands, rule, start, end);
                }
                continue;
            }
            // A long cluster: each rule's window only around the runs that its matches can
            // be (see `Shapes`; every match lies on such runs, so the windows still hold every
            // match, and the searched windows, disjoint once merged, find the same matches).
            digit_runs(&text.as_bytes()[s..e], s, &mut runs);
            let b = text.as_bytes();
            for (&rule, shapes) in self.digit_rules.iter().zip(&self.digit_shapes) {
                if shapes.whole || any_of(&b[start..end], shapes.unless) {
                    push_window(&mut cands, rule, start, end);
                    continue;
                }
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
                            push_window(&mut cands, rule, first.0, last.1);
                        }
                    }
                }
            }
        }
        if !cands.is_empty() {
            if cands.len() <= 64 {
                cands.sort_unstable_by_key(|c| (c.rule, c.start, c.end));
            } else {
                cands = self.sort_cands(&cands);
            }
            let mut i = 0;
            while i < cands.len() {
                let rule = cands[i].rule;
                let mut j = i;
                while j < cands.len() && cands[j].rule == rule {
                    j += 1;
                }
                let group = &cands[i..j];
                let r = &self.rules[usize::from(rule)];
                match r.kind {
                    RuleKind::Start => {
                        let mut caps = r.has_groups.then(|| r.regex.create_captures());
                        let mut next = 0usize;
                        for (k, c) in group.iter().enumerate() {
                            if c.start < next {
                                continue;
                            }
                            next = c.start + 1;
                            let mut at = c.start;
                            if dense(group.len() - k, n - c.start) {
                                // Every match of a start-anchored rule begins at one of its
                                // anchors, so the leftmost match from here begins at the first
                                // candidate whose anchored search would match, and is that
                                // match: one unanchored search replaces the anchored searches
                                // up to it. No match: none at any later candidate either.
                                let input = Input::new(text).range(c.start..);
                                match r.regex.search(&input) {
                                    Some(m) => at = m.start(),
                                    None => break,
                                }
                            }
                            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
                            let Some(m) = r.regex.search(&input) else {
                                continue;
                            };
                            next = m.end();
                            self.accept_match(text, rule, m, caps.as_mut(), hits);
                        }
                    }
                    RuleKind::Window | RuleKind::Digits => {
                        let (mut ws, mut we) = (group[0].start, group[0].end);
                        for c in &group[1..] {
                            if c.start <= we {
                                we = we.max(c.end);
                            } else {
                                self.search_span(text, rule, ws, we, hits);
                                (ws, we) = (c.start, c.end);
                            }
                        }
                        self.search_span(text, rule, ws, we, hits);
                    }
                    RuleKind::Full => {}
                }
                i = j;
            }
        }
        if self.table_rule.is_some() {
            let keywords: Vec<usize> = ev
                .anchors
                .iter()
                .filter(|&&(_, id, _)| self.table_keyword(id as usize))
                .map(|&(ms, _, _)| ms)
                .collect();
            self.find_tables(text, Some(&keywords), hits);
        }
        if !self.custom_rules.is_empty() {
            let gate = self.custom_gate.as_ref().is_none_or(|g| g.is_match(text));
            if gate {
                for &rule in &self.custom_rules {
                    self.search_span(text, rule, 0, n, hits);
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

    /// The naive oracle: every rule searched over the whole text on its own, and the
    /// decoders with no prefilter.
    pub(crate) fn find_naive(&self, text: &str, hits: &mut Vec<Hit>) {
        self.find_naive_plain(text, hits);
        let mut budget = Budget::for_text(text.len());
        self.find_decoded(text, true, MAX_DEPTH, &mut budget, hits);
    }

    fn find_naive_plain(&self, text: &str, hits: &mut Vec<Hit>) {
        for rule in 0..self.rules.len() {
            let rule = u16::try_from(rule).unwrap_or(u16::MAX);
            self.search_span(text, rule, 0, text.len(), hits);
        }
        self.find_tables(text, None, hits);
    }

    /// The replacement for one merged span.
    pub(crate) fn replacement<'r>(&'r self, rule: Option<u16>, original: &str) -> Cow<'r, str> {
        if let Some(rule) = rule
            && let Some(rep) = &self.rules[usize::from(rule)].replacement
        {
            return Cow::Borrowed(rep);
        }
        match self.mode {
            RedactionMode::Mask => Cow::Borrowed("[REDACTED]"),
            RedactionMode::Remove => Cow::Borrowed(""),
            RedactionMode::Hash => {
                let digest: [u8; 32] = match &self.hasher {
                    Hasher::Keyed(mac) => {
                        let mut mac = mac.clone();
                        mac.update(original.as_bytes());
                        mac.finalize().into_bytes().into()
                    }
                    // Unreachable in practice: HASH without a key fails to build.
                    Hasher::Unkeyed | Hasher::None => Sha256::digest(original.as_bytes()).into(),
                };
                Cow::Owned(format!("[HASH:{}]", hex::encode(&digest[..8])))
            }
        }
    }

    /// Finds and applies, then runs the rules again on the output while that changes it (at
    /// most three more passes; the decoders run in the first pass only: a replacement holds
    /// nothing to decode and ends every run a decoder reads), so that redacting the output
    /// again changes nothing: a replacement can
    /// change word boundaries at its edges, shorten a context window, or free an anchor that
    /// an earlier match of the same rule had consumed. Findings of the extra passes are
    /// relative to the partly redacted text.
    pub(crate) fn redact<'a>(
        &self,
        text: &'a str,
        report: &mut Report,
        naive: bool,
    ) -> Cow<'a, str> {
        if !naive && self.surely_clean(text) {
            return Cow::Borrowed(text);
        }
        let mut hits = Vec::new();
        if naive {
            self.find_naive(text, &mut hits);
            let mut out = self.apply(text, &mut hits, report, None);
            let mut passes = 0;
            while matches!(out, Cow::Owned(_)) && passes < 3 {
                passes += 1;
                hits.clear();
                self.find_naive_plain(&out, &mut hits);
                match self.apply(&out, &mut hits, report, None) {
                    Cow::Owned(next) => out = Cow::Owned(next),
                    Cow::Borrowed(_) => break,
                }
            }
            return out;
        }
        // The extra passes carry the prefilter events of the previous one (see `carry`).
        let mut ev = Events::default();
        self.collect(text, &mut ev);
        self.find_from(text, &ev, &mut hits);
        let mut spans = Vec::new();
        let mut out = self.apply(text, &mut hits, report, Some(&mut spans));
        let mut passes = 0;
        while matches!(out, Cow::Owned(_)) && passes < 3 {
            passes += 1;
            hits.clear();
            ev = self.carry(&out, &ev, &spans);
            self.find_from_plain(&out, &ev, &mut hits);
            spans.clear();
            match self.apply(&out, &mut hits, report, Some(&mut spans)) {
                Cow::Owned(next) => out = Cow::Owned(next),
                Cow::Borrowed(_) => break,
            }
        }
        out
    }

    /// Merges hits and writes the output.
    pub(crate) fn apply<'a>(
        &self,
        text: &'a str,
        hits: &mut [Hit],
        report: &mut Report,
        mut spans: Option<&mut Vec<Replaced>>,
    ) -> Cow<'a, str> {
        if hits.is_empty() {
            return Cow::Borrowed(text);
        }
        hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.rule));
        let mut out = String::with_capacity(text.len());
        let mut copied = 0;
        let mut i = 0;
        while i < hits.len() {
            let (gs, mut ge, first) = (hits[i].start, hits[i].end, hits[i].rule);
            report.add(
                &self.rules[usize::from(first)].name,
                hits[i].start,
                hits[i].end,
            );
            i += 1;
            while i < hits.len() && hits[i].start <= ge {
                ge = ge.max(hits[i].end);
                // Two detectors of one rule on the same bytes are one finding.
                let prev = &hits[i - 1];
                let name = &self.rules[usize::from(hits[i].rule)].name;
                if (prev.start, prev.end) != (hits[i].start, hits[i].end)
                    || self.rules[usize::from(prev.rule)].name != *name
                {
                    report.add(name, hits[i].start, hits[i].end);
                }
                i += 1;
            }
            out.push_str(&text[copied..gs]);
            let out_start = out.len();
            out.push_str(&self.replacement(Some(first), &text[gs..ge]));
            if let Some(spans) = spans.as_deref_mut() {
                spans.push(Replaced {
                    start: gs,
                    end: ge,
                    out_start,
                    out_end: out.len(),
                });
            }
            copied = ge;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    pub(crate) fn findings(&self, hits: &mut [Hit]) -> Vec<Finding> {
        hits.sort_unstable_by_key(|h| (h.start, std::cmp::Reverse(h.end), h.rule));
        let mut out: Vec<Finding> = hits
            .iter()
            .map(|h| Finding {
                rule: self.rules[usize::from(h.rule)].name.to_string(),
                start: h.start,
                end: h.end,
            })
            .collect();
        // Two detectors of one rule on the same bytes are one finding (as in `apply`).
        out.dedup();
        out
    }
}

/// Whether `cands` candidates of one start-anchored rule in the last `span` bytes of a text are
/// dense enough (at least 16, one per 64 bytes or more) that one unanchored search (at most a
/// scan of the span) costs less than one anchored search per candidate.
#[inline]
fn dense(cands: usize, span: usize) -> bool {
    cands >= 16 && cands.saturating_mul(64) >= span
}

/// Longest match whose capture groups are searched (see `Engine::accept_match`).
const LONG_MATCH: usize = 64 << 10;

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

/// The maximal runs of ASCII digits of `b` (`b` begins at `base` of the text), as
/// `(start, end)` in the text, into `runs` (cleared first).
fn digit_runs(b: &[u8], base: usize, runs: &mut Vec<(usize, usize)>) {
    runs.clear();
    let mut i = 0;
    while i < b.len() {
        if !b[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let a = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        runs.push((base + a, base + i));
    }
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

const BLOCK: usize = 32;

#[inline]
fn count_digits(block: &[u8]) -> u32 {
    let mut c = 0u8;
    for &b in block {
        c += u8::from(b.wrapping_sub(b'0') < 10);
    }
    u32::from(c)
}

/// [`count_digits`] of a full block, with 64-bit words: per word, the high bit of each digit
/// byte shifted down to its low bit; the sum of the four words (at most 4 per byte) is added
/// up across bytes by one multiplication.
#[inline]
fn count_block(block: &[u8]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let mut sum = 0u64;
    for w in block.chunks_exact(8) {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        let t = u64::from_le_bytes(x) ^ (ONES * u64::from(b'0'));
        sum += (!((t | HIGH) - ONES * 10) & !t & HIGH) >> 7;
    }
    (sum.wrapping_mul(ONES) >> 56) as u32
}

/// [`count_digits`] of a text of at most [`SHORT`] bytes, eight bytes at a time (the last
/// word zero-padded; per byte lane at most 8 words, added across lanes by one multiplication).
#[inline]
fn count_short(b: &[u8]) -> u32 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let digits = |x: [u8; 8]| {
        let t = u64::from_le_bytes(x) ^ (ONES * u64::from(b'0'));
        (!((t | HIGH) - ONES * 10) & !t & HIGH) >> 7
    };
    let mut sum = 0u64;
    let mut words = b.chunks_exact(8);
    for w in &mut words {
        let mut x = [0u8; 8];
        x.copy_from_slice(w);
        sum += digits(x);
    }
    let rest = words.remainder();
    let mut x = [0u8; 8];
    x[..rest.len()].copy_from_slice(rest);
    sum += digits(x);
    (sum.wrapping_mul(ONES) >> 56) as u32
}

/// The first ASCII digit in `b[from..to]`, or `to`; eight bytes at a time.
#[inline]
fn next_digit(b: &[u8], mut from: usize, to: usize) -> usize {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    while from + 8 <= to {
        let mut w = [0u8; 8];
        w.copy_from_slice(&b[from..from + 8]);
        // Per byte, with no borrow between bytes: `t = x ^ '0'` is below 10 exactly for
        // digits; `(t | 0x80) - 10` has its high bit set iff `t & 0x7f >= 10`.
        let t = u64::from_le_bytes(w) ^ (ONES * u64::from(b'0'));
        let digit = !((t | HIGH) - ONES * 10) & !t & HIGH;
        if digit != 0 {
            return from + (digit.trailing_zeros() / 8) as usize;
        }
        from += 8;
    }
    while from < to && !b[from].is_ascii_digit() {
        from += 1;
    }
    from
}

const ONES: u128 = u128::from_le_bytes([1; 16]);
const HIGH: u128 = ONES * 0x80;

/// The high bit of each byte of `w` that is an ASCII digit.
#[inline]
fn digit_bits(w: u128) -> u128 {
    // As in `next_digit`: `t = x ^ '0'` is below 10 exactly for digits.
    let t = w ^ (ONES * u128::from(b'0'));
    !((t | HIGH) - ONES * 10) & !t & HIGH
}

/// The high bit of each byte of `w` that cannot be in a digit cluster: an ASCII byte outside
/// `0x20..=0x39` (the ASCII gap bytes `-. ()` and the digits lie in that range; the NBSP bytes
/// are not ASCII). Per byte, with no carry between bytes: `y + 0x60` reaches `0x80` iff
/// `y >= 0x20`, `y + 0x46` iff `y >= 0x3A`.
#[inline]
fn breaker_bits(w: u128) -> u128 {
    let a = w & !HIGH;
    let below = !(a + ONES * 0x60) & HIGH;
    let above = (a + ONES * 0x46) & HIGH;
    (below | above) & !w & HIGH
}

/// For a digit at `p`: the number of bytes that a scan for clusters may skip from `p`, because
/// no cluster starts in them and none reaches past them: up to the last byte within 16 bytes
/// that cannot be in a cluster when no run of 9 bytes that can comes before it (a cluster of
/// 9 digits spans 9 bytes at least), else up to the first such byte when fewer than 9 digits
/// come before it; else 0.
#[inline]
fn short_run(b: &[u8], p: usize) -> usize {
    let Some(w) = b.get(p..p + 16) else {
        return 0;
    };
    let mut x = [0u8; 16];
    x.copy_from_slice(w);
    let w = u128::from_le_bytes(x);
    let br = breaker_bits(w);
    if br == 0 {
        return 0;
    }
    // High bit of byte `j`: bytes `j..j + 9` all may be in a cluster.
    let ok = !br & HIGH;
    let ok2 = ok & (ok >> 8);
    let ok4 = ok2 & (ok2 >> 16);
    let ok9 = ok4 & (ok4 >> 32) & (ok >> 64);
    // The last breaker: byte `last` (< 16); runs of 9 that end before it start below `last - 8`.
    let last = 15 - br.leading_zeros() as usize / 8;
    if last < 9 || ok9 & ((1u128 << (8 * (last - 8))) - 1) == 0 {
        return last + 1;
    }
    // `br`'s lowest set bit is the high bit of byte `k` (< 16).
    let k = br.trailing_zeros() as usize / 8;
    // Fewer than 9 bytes before it hold fewer than 9 digits (no popcount on baseline x86-64).
    if k < 9 || (digit_bits(w) & ((1u128 << (8 * k)) - 1)).count_ones() < 9 {
        k + 1
    } else {
        0
    }
}

#[inline]
fn is_digit_or_gap(b: u8) -> bool {
    b.is_ascii_digit() || is_gap(b)
}

#[inline]
fn is_gap(b: u8) -> bool {
    matches!(b, b'-' | b'.' | b' ' | b'(' | b')' | 0xC2 | 0xA0)
}

/// Calls `f(first_digit, last_digit + 1)` for clusters of at least 9 ASCII digits whose
/// gaps are at most 3 bytes of `-. ()` or NBSP. Only 64-byte regions with 9 digits are
/// scanned byte by byte; the rest is counted in 32-byte blocks.
pub(crate) fn digit_clusters(b: &[u8], mut f: impl FnMut(usize, usize)) {
    let n = b.len();
    let nblocks = n.div_ceil(BLOCK);
    let count = |i: usize| -> u32 {
        match b.get(i * BLOCK..(i + 1) * BLOCK) {
            Some(block) => count_block(block),
            None if i < nblocks => count_digits(&b[i * BLOCK..]),
            None => 0,
        }
    };
    let mut scanned = 0usize;
    let mut cur = count(0);
    for i in 0..nblocks {
        let next = count(i + 1);
        if cur + next >= 9 {
            let region_end = ((i + 2) * BLOCK).min(n);
            let mut p = (i * BLOCK).saturating_sub(40).max(scanned);
            while p < region_end {
                p = next_digit(b, p, region_end);
                if p >= region_end {
                    break;
                }
                let skip = short_run(b, p);
                if skip > 0 {
                    p += skip;
                    continue;
                }
                let start = p;
                let mut digits = 0u32;
                let mut last = p;
                let mut j = p;
                loop {
                    if j < n && b[j].is_ascii_digit() {
                        digits += 1;
                        last = j;
                        j += 1;
                        continue;
                    }
                    let mut g = j;
                    while g < n && g - last <= 3 && is_gap(b[g]) {
                        g += 1;
                    }
                    if g < n && g - last <= 4 && g > j && b[g].is_ascii_digit() {
                        j = g;
                    } else {
                        break;
                    }
                }
                if digits >= 9 {
                    f(start, last + 1);
                }
                p = last + 1;
            }
            scanned = scanned.max(p);
        }
        cur = next;
    }
}

/// A builder for one automaton over many patterns (custom-rule gate, allowlist): a larger NFA
/// budget than a single rule, no capture groups.
fn multi_pattern_builder() -> meta::Builder {
    let mut builder = meta::Builder::new();
    builder.configure(
        meta::Config::new()
            .nfa_size_limit(Some(4 * SIZE_LIMIT))
            .which_captures(regex_automata::nfa::thompson::WhichCaptures::None),
    );
    builder
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::strategy::Strategy;

    fn clusters(s: &str) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        digit_clusters(s.as_bytes(), |a, b| v.push((a, b)));
        v
    }

    #[test]
    fn builtin_anchors_use_packed_search() {
        let e = Engine::new(&RedactionConfig::default()).unwrap();
        assert!(e.anchors.as_ref().unwrap().is_packed());
    }

    #[test]
    fn next_digit_matches_scalar() {
        let bytes: Vec<u8> = (0..=255u8)
            .chain((0..=255u8).rev())
            .chain(b"ab9".iter().copied())
            .collect();
        for from in 0..bytes.len() {
            for to in [from, from + 1, from + 9, bytes.len()] {
                let to = to.min(bytes.len());
                let want = (from..to)
                    .find(|&i| bytes[i].is_ascii_digit())
                    .unwrap_or(to);
                assert_eq!(next_digit(&bytes, from, to), want, "{from}..{to}");
            }
        }
    }

    /// The definition: every maximal chain of digits (consecutive digits at most 3 gap bytes
    /// apart) with at least 9 digits, scanned byte by byte from the start.
    fn clusters_naive(b: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        let mut p = 0;
        while p < b.len() {
            if !b[p].is_ascii_digit() {
                p += 1;
                continue;
            }
            let (start, mut last, mut digits) = (p, p, 1);
            let mut j = p + 1;
            while j < b.len() && j - last <= 4 {
                if b[j].is_ascii_digit() {
                    (last, digits) = (j, digits + 1);
                } else if !is_gap(b[j]) {
                    break;
                }
                j += 1;
            }
            if digits >= 9 {
                v.push((start, last + 1));
            }
            p = last + 1;
        }
        v
    }

    #[test]
    fn count_short_matches_scalar() {
        let mut bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        bytes.extend(b"0123456789".repeat(8));
        for i in 0..bytes.len() {
            for len in 0..=SHORT.min(bytes.len() - i) {
                let t = &bytes[i..i + len];
                assert_eq!(count_short(t), count_digits(t), "{i} {len}");
            }
        }
    }

    #[test]
    fn count_block_matches_scalar() {
        let mut bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
        bytes.extend(b"0123456789".repeat(8));
        for i in 0..bytes.len() - BLOCK {
            let block = &bytes[i..i + BLOCK];
            assert_eq!(count_block(block), count_digits(block), "{i}");
        }
        assert_eq!(count_block(&[b'7'; BLOCK]), 32);
    }

    #[test]
    fn short_run_examples() {
        // A breaker within 16 bytes with fewer than 9 digits before it: skip past it.
        assert_eq!(short_run(b"2025-03-14T10:00:00.000Z", 0), 11);
        // Every run before the last breaker in 16 bytes is shorter than 9: skip past it.
        assert_eq!(short_run(b"10:00:00.000Z ab", 0), 16);
        assert_eq!(short_run(b"1234567x9abcdefgh", 0), 16);
        assert_eq!(short_run(b"12345678 x12", 0), 0);
        // 9 digits before the breaker, no breaker, or fewer than 16 bytes: no skip.
        assert_eq!(short_run(b"123456789x......", 0), 0);
        assert_eq!(short_run(b"1 2 3 4 5 6 7 8 9", 0), 0);
        assert_eq!(short_run(b"12345x", 0), 0);
        // Non-ASCII bytes (NBSP and others) never count as breakers.
        assert_eq!(short_run("1\u{a0}2é3日4567890123".as_bytes(), 0), 0);
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 512, ..Default::default() })]

        /// The block filter and the 16-byte skip find exactly the clusters of the definition,
        /// across 32-byte blocks and next to non-ASCII characters.
        #[test]
        fn clusters_equal_naive(
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    4 => "[0-9]{1,12}",
                    2 => proptest::sample::select(vec![
                        "-", ".", " ", "(", ")", "\u{a0}", "  ", "---", "- ", "....",
                    ]).prop_map(str::to_owned),
                    1 => "[a-zA-Z:T/_,]{1,3}",
                    1 => proptest::sample::select(vec![
                        "é", "日", "\u{c2a0}", "\u{ff15}", "\u{20ac}", "\n",
                    ]).prop_map(str::to_owned),
                ],
                0..60,
            )
        ) {
            let s = parts.concat();
            let b = s.as_bytes();
            for from in 0..b.len().min(40) {
                let t = &b[from..];
                let mut got = Vec::new();
                digit_clusters(t, |a, z| got.push((a, z)));
                proptest::prop_assert_eq!(got, clusters_naive(t));
            }
        }
    }

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

    fn engines() -> &'static [Engine; 3] {
        static E: std::sync::OnceLock<[Engine; 3]> = std::sync::OnceLock::new();
        E.get_or_init(|| {
            let mode = |mode| {
                Engine::new(&RedactionConfig {
                    mode,
                    hash_key: Some("k".into()),
                    ..RedactionConfig::default()
                })
                .unwrap()
            };
            [
                mode(RedactionMode::Mask),
                mode(RedactionMode::Remove),
                mode(RedactionMode::Hash),
            ]
        })
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
            for e in engines() {
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

    #[test]
    fn clusters_found() {
        assert_eq!(clusters("call 555-123-4567 now"), vec![(5, 17)]);
        assert!(clusters("2025-03-14T10:00:00.000Z").is_empty());
        assert_eq!(clusters("(635) 743-4106"), vec![(1, 14)]);
        let long = format!("{}{}", "x".repeat(100), "595\u{a0}206\u{a0}5450");
        assert_eq!(clusters(&long), vec![(100, 114)]);
        assert!(clusters("1 2 3 4 5 6 7 8").is_empty());
    }
}
