//! The compiled engine: one anchor search (`anchors.rs`) plus a digit scan (`digits.rs`) find
//! candidates for all rules (`candidates.rs`); the rules' lazy DFAs verify only around
//! candidates; the decoders (`decode.rs`) and tables (`tables.rs`) add theirs; the hits are
//! replaced (`replace.rs`), in passes until the output is stable.

use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::{Arc, OnceLock};

use regex_automata::meta::{self, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::syntax;
use regex_automata::{Anchored, Input, Match};

use crate::BuildError;
use crate::anchors::{Anchors, SHORT};
use crate::blocks::{BLOCK, BLOCKED_ABOVE, MAX_EVENTS};
use crate::candidates::{Cand, Events};
use crate::config::{RedactionConfig, RedactionMode};
use crate::decode::{Budget, MAX_DEPTH, scan_encoded};
use crate::digits::count_short;
use crate::memo;
use crate::replace::Hasher;
use crate::report::Report;
use crate::rules::{
    BUILTINS, DEFAULT_SENSITIVE_KEYS, Fits, Kind, LOOSE, Loose, Need, Shapes, Validator, Viable,
};

/// Per-rule state arrays of one search (windows, run cursors) have a slot for every built-in
/// detector: windowed, digit and `Need` rules are all built in (custom rules are searched
/// whole), and the build fails to compile when the built-ins outgrow the slots.
pub(crate) const SLOTS: usize = 64;
const _: () = assert!(BUILTINS.len() <= SLOTS);

/// Texts of at least this many bytes look for their encoded parts on a second thread while
/// their plain scan runs (see `Engine::plain_and_decoded`). Above the chunks the CLI cuts
/// multi-line input into (256 KiB), so that only long lines, one unit of work each, take a
/// second thread.
pub(crate) const PARALLEL_ABOVE: usize = 512 << 10;

/// Whether a text of `len` bytes takes a second thread: it is at least [`PARALLEL_ABOVE`]
/// bytes long and the process may run on more than one core (asked once).
pub(crate) fn beside(len: usize) -> bool {
    static SPARE: OnceLock<bool> = OnceLock::new();
    len >= PARALLEL_ABOVE
        && *SPARE.get_or_init(|| std::thread::available_parallelism().is_ok_and(|n| n.get() > 1))
}

/// `there()` on a second thread (named `name`) while `here()` runs on this one, and both
/// results. When no thread can be started, `there()` runs here after `here()`; a panic on
/// the second thread is raised again here.
pub(crate) fn on_two_threads<A: Send, B>(
    name: &str,
    there: impl Fn() -> A + Sync,
    here: impl FnOnce() -> B,
) -> (A, B) {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn_scoped(scope, &there);
        let b = here();
        let a = match thread {
            Ok(thread) => thread
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
            Err(_) => there(),
        };
        (a, b)
    })
}

/// NFA size limit per rule (bytes of heap).
pub(crate) const SIZE_LIMIT: usize = 2 * 1024 * 1024;

/// Names reserved for non-pattern findings.
const RESERVED: &[&str] = &["field_path", "sensitive_key"];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RuleKind {
    Start,
    Window,
    Digits,
    /// Custom rules: searched over the whole text once a combined gate matched.
    Full,
}

pub(crate) struct Rule {
    pub(crate) name: Arc<str>,
    /// A built-in rule's pattern, compiled on first use (see [`Rule::regex`]); `None` for a
    /// custom rule, compiled (and checked) when the engine is built.
    source: Option<&'static str>,
    compiled: OnceLock<Compiled>,
    /// A cheaper pattern searched first ([`Loose`]), compiled on first use.
    loose: Option<&'static Loose>,
    loose_compiled: OnceLock<Regex>,
    pub(crate) kind: RuleKind,
    validator: Option<Validator>,
    pub(crate) viable: Option<Viable>,
    pub(crate) need: Option<Need>,
    pub(crate) replacement: Option<String>,
}

/// A rule's automaton, and whether its pattern has capture groups (the spans it redacts).
pub(crate) struct Compiled {
    regex: Regex,
    has_groups: bool,
}

impl Rule {
    /// The rule's automaton. A built-in rule is compiled the first time a search needs it:
    /// compiling all of them was most of the start-up of a process (~10 ms, the e-mail rule
    /// alone 6 ms), paid even by inputs that never reach most rules. Built-in patterns are
    /// constants that `every_builtin_compiles` compiles, so this cannot fail at run time.
    #[inline]
    pub(crate) fn compiled(&self) -> &Compiled {
        self.compiled.get_or_init(|| {
            let source = self.source.unwrap_or_default();
            let (regex, has_groups) = compile(&self.name, source, false)
                .expect("built-in patterns compile (tested by every_builtin_compiles)");
            Compiled { regex, has_groups }
        })
    }

    #[inline]
    pub(crate) fn regex(&self) -> &Regex {
        &self.compiled().regex
    }

    /// Captures for the rule's groups, or `None` when it has none.
    pub(crate) fn captures(&self) -> Option<Captures> {
        let c = self.compiled();
        c.has_groups.then(|| c.regex.create_captures())
    }

    /// The rule's [`Loose`] pattern, compiled on first use, and its check; `None` for most
    /// rules. Loose patterns are constants that `every_builtin_compiles` compiles.
    #[inline]
    fn loose(&self) -> Option<(&Regex, Fits)> {
        let loose = self.loose?;
        let regex = self.loose_compiled.get_or_init(|| {
            compile(&self.name, loose.pattern, false)
                .expect("loose patterns compile (tested by every_builtin_compiles)")
                .0
        });
        Some((regex, loose.fits))
    }
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

pub(crate) struct Engine {
    /// This engine's memo id (`memo.rs`): what a thread remembers of one engine never
    /// answers for another.
    pub(crate) id: u64,
    pub(crate) enabled: bool,
    pub(crate) rules: Vec<Rule>,
    pub(crate) anchors: Option<Anchors<(u16, How)>>,
    pub(crate) digit_rules: Vec<u16>,
    /// The shapes of `digit_rules`' matches, in the same order.
    pub(crate) digit_shapes: Vec<Shapes>,
    custom_gate: Option<Regex>,
    custom_rules: Vec<u16>,
    /// The rule that reports table cells (`tables.rs`): `password_field`, when enabled.
    pub(crate) table_rule: Option<u16>,
    /// Per anchor id: whether it is a keyword of a rule whose anchors are table keywords
    /// (`password_field`, `generic_api_key_param`; see `table_keyword`).
    pub(crate) table_keywords: Vec<bool>,
    allow: HashSet<String>,
    allow_re: Option<Regex>,
    pub(crate) mode: RedactionMode,
    pub(crate) hasher: Hasher,
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

/// The rules of a configuration as they are compiled, with what the prefilter needs of them.
#[derive(Default)]
struct RuleSet {
    rules: Vec<Rule>,
    /// Anchor literals: (literal, whether it is matched exactly, its rule and how).
    anchor_list: Vec<(&'static str, bool, (u16, How))>,
    digit_rules: Vec<u16>,
    digit_shapes: Vec<Shapes>,
    custom_rules: Vec<u16>,
    custom_gate: Option<Regex>,
}

impl RuleSet {
    /// The enabled built-in rules, in their fixed order.
    fn add_builtins(&mut self, cfg: &RedactionConfig) -> Result<(), BuildError> {
        for b in BUILTINS {
            if cfg.disable.iter().any(|d| d == b.name) {
                continue;
            }
            let idx = u16::try_from(self.rules.len()).map_err(|_| BuildError::BadRuleName {
                name: b.name.to_owned(),
            })?;
            let mut add_lit = |how: How| {
                for a in b.anchors {
                    self.anchor_list.push((a, b.exact, (idx, how)));
                }
            };
            let kind = match b.kind {
                Kind::Start => {
                    add_lit(How::Start);
                    RuleKind::Start
                }
                Kind::Window { back, fwd } => {
                    add_lit(How::Window { back, fwd });
                    RuleKind::Window
                }
                Kind::Digits(shapes) => {
                    add_lit(How::Window { back: 64, fwd: 64 });
                    self.digit_rules.push(idx);
                    self.digit_shapes.push(shapes);
                    RuleKind::Digits
                }
            };
            self.rules.push(Rule {
                name: Arc::from(b.name),
                source: Some(b.pattern),
                compiled: OnceLock::new(),
                loose: LOOSE.iter().find(|l| l.rule == b.name),
                loose_compiled: OnceLock::new(),
                kind,
                validator: b.validator,
                viable: b.viable,
                need: b.need,
                replacement: None,
            });
        }
        Ok(())
    }

    /// The custom rules, after the built-ins, and their combined gate.
    fn add_custom(&mut self, cfg: &RedactionConfig) -> Result<(), BuildError> {
        let mut custom_patterns = Vec::new();
        for c in &cfg.custom_rules {
            if c.name.trim().is_empty()
                || RESERVED.contains(&c.name.as_str())
                || self.rules.iter().any(|r: &Rule| *r.name == *c.name)
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
            let idx = u16::try_from(self.rules.len()).map_err(|_| BuildError::BadRuleName {
                name: c.name.clone(),
            })?;
            self.custom_rules.push(idx);
            custom_patterns.push(c.pattern.as_str());
            self.rules.push(Rule {
                name: Arc::from(c.name.as_str()),
                source: None,
                compiled: OnceLock::from(Compiled {
                    regex,
                    has_groups: false,
                }),
                loose: None,
                loose_compiled: OnceLock::new(),
                kind: RuleKind::Full,
                validator: None,
                viable: None,
                need: None,
                replacement: c.replacement.clone(),
            });
        }
        self.custom_gate = if custom_patterns.len() > 1 {
            // One pass for all custom rules; each has already compiled alone, so this only
            // fails on the combined size, and then each rule simply runs on its own.
            multi_pattern_builder().build_many(&custom_patterns).ok()
        } else {
            None
        };
        Ok(())
    }

    /// One search for every anchor literal, or `None` without any.
    fn anchors(&self) -> Result<Option<Anchors<(u16, How)>>, BuildError> {
        if self.anchor_list.is_empty() {
            return Ok(None);
        }
        Anchors::new(&self.anchor_list)
            .map(Some)
            .ok_or_else(|| BuildError::TooLarge {
                rule: "anchors".to_owned(),
                limit: SIZE_LIMIT,
            })
    }
}

/// One automaton for the allowlist patterns (each must match a whole value), or `None`.
fn allowlist_regex(cfg: &RedactionConfig) -> Result<Option<Regex>, BuildError> {
    if cfg.allowlist_patterns.is_empty() {
        return Ok(None);
    }
    let mut hirs = Vec::new();
    for (i, p) in cfg.allowlist_patterns.iter().enumerate() {
        let name = format!("allowlist_patterns[{i}]");
        // Validate alone for a precise error, then wrap for a full match.
        compile(&name, p, true)?;
        let wrapped = format!(r"\A(?:{p})\z");
        hirs.push(
            regex_syntax::parse(&wrapped).map_err(|_| BuildError::InvalidPattern {
                rule: name.clone(),
                offset: 0,
                line: 1,
                column: 1,
                message: "does not parse inside a group".to_owned(),
            })?,
        );
    }
    multi_pattern_builder()
        .build_many_from_hir(&hirs)
        .map(Some)
        .map_err(|_| BuildError::TooLarge {
            rule: "allowlist_patterns".to_owned(),
            limit: 4 * SIZE_LIMIT,
        })
}

/// The field paths of `cfg`: leaf keys, dotted paths, and the most segments of a dotted one.
fn field_paths(cfg: &RedactionConfig) -> (HashSet<String>, HashSet<String>, usize) {
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
    (field_leaf, field_dotted, max_dotted_depth)
}

/// The table rule (`password_field`) and, per anchor id, whether it is a keyword of a rule
/// whose anchors are table keywords (`password_field`, `generic_api_key_param`).
fn table_keywords(
    rules: &[Rule],
    anchors: Option<&Anchors<(u16, How)>>,
) -> (Option<u16>, Vec<bool>) {
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
    let table_keywords = anchors.map_or_else(Vec::new, |a| {
        (0..a.len())
            .map(|id| {
                a.targets(id)
                    .iter()
                    .any(|&(rule, _)| table_rules.contains(&rule))
            })
            .collect()
    });
    (table_rule, table_keywords)
}

impl Engine {
    pub(crate) fn new(cfg: &RedactionConfig) -> Result<Engine, BuildError> {
        for name in &cfg.disable {
            if !BUILTINS.iter().any(|b| b.name == name) {
                return Err(BuildError::UnknownRule { name: name.clone() });
            }
        }
        let hasher = Hasher::new(cfg)?;
        let mut set = RuleSet::default();
        if cfg.include_defaults {
            set.add_builtins(cfg)?;
        }
        set.add_custom(cfg)?;
        let anchors = set.anchors()?;
        let allow_re = allowlist_regex(cfg)?;
        let (field_leaf, field_dotted, max_dotted_depth) = field_paths(cfg);
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
        let (table_rule, table_keywords) = table_keywords(&set.rules, anchors.as_ref());
        Ok(Engine {
            id: crate::memo::next_engine_id(),
            enabled: cfg.enabled,
            table_keywords,
            rules: set.rules,
            anchors,
            table_rule,
            digit_rules: set.digit_rules,
            digit_shapes: set.digit_shapes,
            custom_gate: set.custom_gate,
            custom_rules: set.custom_rules,
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

    /// All matches of `rule` in `s..e` (leftmost-first, non-overlapping): those of its
    /// [`Loose`] pattern when it has one and they all fit (then they are the rule's own, see
    /// [`Loose`]), else those of its own pattern.
    pub(crate) fn search_span(
        &self,
        text: &str,
        rule: u16,
        s: usize,
        e: usize,
        hits: &mut Vec<Hit>,
    ) {
        let r = &self.rules[usize::from(rule)];
        if let Some((loose, fits)) = r.loose() {
            let mark = hits.len();
            let mut all_fit = true;
            for m in loose.find_iter(Input::new(text).range(s..e)) {
                if !fits(text, m.start(), m.end()) {
                    all_fit = false;
                    break;
                }
                // Rules with a loose pattern have no groups (tested).
                self.accept(text, rule, m.start(), m.end(), None, hits);
            }
            if all_fit {
                return;
            }
            hits.truncate(mark);
        }
        self.search_span_exact(text, rule, s, e, hits);
    }

    /// [`search_span`](Self::search_span) with the rule's own pattern only (the naive oracle's).
    pub(crate) fn search_span_exact(
        &self,
        text: &str,
        rule: u16,
        s: usize,
        e: usize,
        hits: &mut Vec<Hit>,
    ) {
        let r = &self.rules[usize::from(rule)];
        let input = Input::new(text).range(s..e);
        let mut caps = r.captures();
        for m in r.regex().find_iter(input) {
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
    pub(crate) fn accept_match(
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
        r.regex().search_captures(&input, caps);
        if let Some(m) = caps.get_match() {
            self.accept(text, rule, m.start(), m.end(), Some(caps), hits);
        }
    }

    /// Whether `text` is short and surely clean: remembered as clean on this thread
    /// (`memo.rs`), or [`surely_clean`](Self::surely_clean) (then remembered).
    #[inline]
    pub(crate) fn clean_short(&self, text: &str) -> bool {
        if text.len() > memo::MAX_LEN {
            return false;
        }
        if memo::contains(self.id, memo::Kind::Clean, text) {
            return true;
        }
        if self.surely_clean(text) {
            memo::insert(self.id, memo::Kind::Clean, text);
            return true;
        }
        false
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
        self.plain_and_decoded(text, beside(text.len()), hits, |e, hits| {
            e.find_plain(text, hits);
        });
    }

    /// The plain scan (`plain`), then the decoders' search of `text`. When `beside` (the
    /// callers' choice for a text of at least [`PARALLEL_ABOVE`] bytes on a machine with a
    /// second core), `text` is searched for its encoded parts ([`scan_encoded`], which does
    /// not need the plain hits) on a second thread while the plain scan runs: a long line is
    /// one unit of work for the callers, and its plain scan and the decoders' were one core's
    /// work one after the other. The hits are the same, in the same order.
    pub(crate) fn plain_and_decoded(
        &self,
        text: &str,
        beside: bool,
        hits: &mut Vec<Hit>,
        plain: impl FnOnce(&Self, &mut Vec<Hit>),
    ) {
        let mut budget = Budget::for_text(text.len());
        if !beside {
            plain(self, hits);
            self.find_decoded(text, false, MAX_DEPTH, &mut budget, hits);
            return;
        }
        let (scanned, ()) = on_two_threads(
            "tracecraft-redact-scan",
            || scan_encoded(text, false),
            || plain(self, hits),
        );
        self.find_decoded_scanned(text, false, MAX_DEPTH, &mut budget, hits, scanned);
    }

    /// The fast path without the decoders: the events of the whole text at once, or of a
    /// block at a time for a long text (`blocks.rs`: the same hits, in bounded memory).
    fn find_plain(&self, text: &str, hits: &mut Vec<Hit>) {
        let mut ev = Events::default();
        if text.len() <= BLOCKED_ABOVE && self.collect_at_most(text, &mut ev, MAX_EVENTS) {
            self.find_from_plain(text, &ev, hits);
        } else {
            drop(ev);
            self.find_plain_blocks(text, BLOCK, hits);
        }
    }

    /// Candidates from prefilter events, verified locally; then the decoders.
    pub(crate) fn find_from(&self, text: &str, ev: &Events, hits: &mut Vec<Hit>) {
        self.plain_and_decoded(text, beside(text.len()), hits, |e, hits| {
            e.find_from_plain(text, ev, hits);
        });
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
            self.find_plain(text, hits);
        }
        self.find_decoded(text, naive, depth, budget, hits);
    }

    /// Candidates from prefilter events, verified locally; then the tables and custom rules.
    pub(crate) fn find_from_plain(&self, text: &str, ev: &Events, hits: &mut Vec<Hit>) {
        let cands = self.candidates(text, ev);
        self.verify(text, &cands, hits);
        if self.table_rule.is_some() {
            let keywords: Vec<usize> = ev
                .anchors
                .iter()
                .filter(|&&(_, id, _)| self.table_keyword(id as usize))
                .map(|&(ms, _, _)| ms)
                .collect();
            self.find_tables(text, Some(&keywords), hits);
        }
        self.find_custom(text, hits);
    }

    /// The custom rules, each over the whole text once their combined gate matched.
    pub(crate) fn find_custom(&self, text: &str, hits: &mut Vec<Hit>) {
        if !self.custom_rules.is_empty() {
            let gate = self.custom_gate.as_ref().is_none_or(|g| g.is_match(text));
            if gate {
                for &rule in &self.custom_rules {
                    self.search_span(text, rule, 0, text.len(), hits);
                }
            }
        }
    }

    /// Runs each rule at its candidates (`cands`, ordered by rule, start and end).
    fn verify(&self, text: &str, cands: &[Cand], hits: &mut Vec<Hit>) {
        for group in cands.chunk_by(|a, b| a.rule == b.rule) {
            let rule = group[0].rule;
            match self.rules[usize::from(rule)].kind {
                RuleKind::Start => self.verify_starts(text, rule, group, hits),
                RuleKind::Window | RuleKind::Digits => {
                    self.verify_windows(text, rule, group, hits);
                }
                RuleKind::Full => {}
            }
        }
    }

    /// A start-anchored rule: its anchored search at each candidate past the last match.
    fn verify_starts(&self, text: &str, rule: u16, group: &[Cand], hits: &mut Vec<Hit>) {
        let r = &self.rules[usize::from(rule)];
        let n = text.len();
        let mut caps = r.captures();
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
                match r.regex().search(&input) {
                    Some(m) => at = m.start(),
                    None => break,
                }
            }
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            let Some(m) = r.regex().search(&input) else {
                continue;
            };
            next = m.end();
            self.accept_match(text, rule, m, caps.as_mut(), hits);
        }
    }

    /// A windowed or digit rule: its search over each of the windows, merged where they
    /// overlap or touch.
    fn verify_windows(&self, text: &str, rule: u16, group: &[Cand], hits: &mut Vec<Hit>) {
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
            self.search_span_exact(text, rule, 0, text.len(), hits);
        }
        self.find_tables(text, None, hits);
    }

    /// Finds and applies, then runs the rules again on the output while that changes it (at
    /// most three more passes, the decoders included: a replacement ends the runs a decoder
    /// reads, so the run beside it can decode now when it did not before, and it can free a
    /// keyword whose value only a decoder sees), so that redacting the output again changes
    /// nothing: a replacement can also change word boundaries at its edges, shorten a context
    /// window, or free an anchor that an earlier match of the same rule had consumed.
    /// Findings of the extra passes are relative to the partly redacted text.
    pub(crate) fn redact<'a>(
        &self,
        text: &'a str,
        report: &mut Report,
        naive: bool,
    ) -> Cow<'a, str> {
        if naive {
            return self.redact_naive(text, report);
        }
        self.redact_events(text, report, true)
    }

    /// [`redact`](Self::redact)'s fast path. The passes after the first decode only near
    /// what the pass before replaced when `near` (see `find_decoded_near`), else the whole
    /// text again (tests compare the two).
    pub(crate) fn redact_events<'a>(
        &self,
        text: &'a str,
        report: &mut Report,
        near: bool,
    ) -> Cow<'a, str> {
        if self.clean_short(text) {
            return Cow::Borrowed(text);
        }
        // The extra passes carry the prefilter events of the previous one (see `carry`),
        // unless the text is long or dense with anchors (then see `blocks.rs`).
        let mut ev = Events::default();
        if text.len() > BLOCKED_ABOVE || !self.collect_at_most(text, &mut ev, MAX_EVENTS) {
            drop(ev);
            return self.redact_long(text, report);
        }
        let mut hits = Vec::new();
        self.find_from(text, &ev, &mut hits);
        if hits.is_empty() {
            memo::insert(self.id, memo::Kind::Clean, text);
            return Cow::Borrowed(text);
        }
        let mut spans = Vec::new();
        let mut out = self.apply(text, &mut hits, report, Some(&mut spans));
        let mut passes = 0;
        while matches!(out, Cow::Owned(_)) && passes < 3 {
            passes += 1;
            hits.clear();
            ev = self.carry(&out, &ev, &spans);
            self.find_from_plain(&out, &ev, &mut hits);
            if near {
                self.find_decoded_near(&out, &spans, &mut hits);
            } else {
                let mut budget = Budget::for_text(out.len());
                self.find_decoded(&out, false, MAX_DEPTH, &mut budget, &mut hits);
            }
            spans.clear();
            match self.apply(&out, &mut hits, report, Some(&mut spans)) {
                Cow::Owned(next) => out = Cow::Owned(next),
                Cow::Borrowed(_) => break,
            }
        }
        out
    }

    /// [`redact`](Self::redact) of a long or anchor-dense text: each pass searched in blocks (`blocks.rs`),
    /// without carrying the prefilter events of a pass to the next (that would keep the
    /// events of the whole text); the same passes, so the same output.
    pub(crate) fn redact_long<'a>(&self, text: &'a str, report: &mut Report) -> Cow<'a, str> {
        self.redact_in_passes(text, report, Self::find)
    }

    /// [`redact`](Self::redact) by the naive oracle: every pass searches the whole text with
    /// every rule.
    fn redact_naive<'a>(&self, text: &'a str, report: &mut Report) -> Cow<'a, str> {
        self.redact_in_passes(text, report, Self::find_naive)
    }

    /// The passes of [`redact`](Self::redact) with `find` searching each pass's whole text
    /// (no prefilter events carried from one pass to the next).
    fn redact_in_passes<'a>(
        &self,
        text: &'a str,
        report: &mut Report,
        find: fn(&Self, &str, &mut Vec<Hit>),
    ) -> Cow<'a, str> {
        let mut hits = Vec::new();
        find(self, text, &mut hits);
        let mut out = self.apply(text, &mut hits, report, None);
        let mut passes = 0;
        while matches!(out, Cow::Owned(_)) && passes < 3 {
            passes += 1;
            hits.clear();
            find(self, &out, &mut hits);
            match self.apply(&out, &mut hits, report, None) {
                Cow::Owned(next) => out = Cow::Owned(next),
                Cow::Borrowed(_) => break,
            }
        }
        out
    }
}

/// Engines of the default rules in MASK, REMOVE and HASH mode, built once for the tests.
#[cfg(test)]
pub(crate) fn every_mode() -> &'static [Engine; 3] {
    static E: OnceLock<[Engine; 3]> = OnceLock::new();
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

/// Whether `cands` candidates of one start-anchored rule in the last `span` bytes of a text are
/// dense enough (at least 16, one per 64 bytes or more) that one unanchored search (at most a
/// scan of the span) costs less than one anchored search per candidate.
#[inline]
pub(crate) fn dense(cands: usize, span: usize) -> bool {
    cands >= 16 && cands.saturating_mul(64) >= span
}

/// Longest match whose capture groups are searched (see `Engine::accept_match`).
const LONG_MATCH: usize = 64 << 10;

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

    #[test]
    fn builtin_anchors_use_packed_search() {
        let e = Engine::new(&RedactionConfig::default()).unwrap();
        assert!(e.anchors.as_ref().unwrap().is_packed());
    }

    /// Built-in rules compile lazily (`Rule::compiled`), so their patterns are compiled here,
    /// within the size limit, and the groups found are the ones the rule declares.
    #[test]
    fn every_builtin_compiles() {
        let e = Engine::new(&RedactionConfig::default()).unwrap();
        assert_eq!(e.rules.len(), BUILTINS.len());
        for (r, b) in e.rules.iter().zip(BUILTINS) {
            assert!(r.compiled.get().is_none(), "{} compiled before use", b.name);
            let (regex, has_groups) =
                compile(b.name, b.pattern, false).unwrap_or_else(|err| panic!("{}: {err}", b.name));
            assert_eq!(r.compiled().has_groups, has_groups, "{}", b.name);
            assert_eq!(r.regex().pattern_len(), regex.pattern_len());
        }
        // Each loose pattern belongs to a built-in rule without groups (its matches are
        // accepted whole), compiles, and has no groups either.
        for l in LOOSE {
            let r = e.rules.iter().find(|r| *r.name == *l.rule).expect(l.rule);
            assert!(
                r.loose_compiled.get().is_none(),
                "{} compiled before use",
                l.rule
            );
            assert!(!r.compiled().has_groups, "{}", l.rule);
            let (_, groups) = compile(l.rule, l.pattern, false).unwrap();
            assert!(!groups, "{}", l.rule);
            assert!(r.loose().is_some());
        }
    }

    /// The hits of `text` by `rule`, with its loose pattern first (`search_span`) and with its
    /// own pattern only.
    fn loose_and_exact(e: &Engine, rule: u16, text: &str, s: usize, z: usize) -> [Vec<Hit>; 2] {
        let (mut loose, mut exact) = (Vec::new(), Vec::new());
        e.search_span(text, rule, s, z, &mut loose);
        e.search_span_exact(text, rule, s, z, &mut exact);
        [loose, exact]
    }

    fn email_rule(e: &Engine) -> u16 {
        let i = e.rules.iter().position(|r| &*r.name == "email").unwrap();
        u16::try_from(i).unwrap()
    }

    /// Addresses whose loose match fits are found without compiling the `email` pattern; a
    /// match that does not fit (a local part of 65 characters, 9 labels, a label of 64 ASCII
    /// or 16 other characters, a TLD with a character that is not a letter) sends the window
    /// to the `email` pattern, which finds what it always found.
    #[test]
    fn the_email_rule_searches_with_its_loose_pattern_and_falls_back_when_a_match_does_not_fit() {
        let e = Engine::new(&RedactionConfig::default()).unwrap();
        let rule = email_rule(&e);
        let r = &e.rules[usize::from(rule)];
        let fitting = "mail jane.doe+x@example.co.uk, \"john doe\"@b.org, josé@exämple.de, \
                       пётр@почта.рф and a@xn--p1ai.xn--p1ai";
        let [loose, exact] = loose_and_exact(&e, rule, fitting, 0, fitting.len());
        assert_eq!(loose, exact);
        assert_eq!(loose.len(), 5, "{loose:?}");
        let fresh = Engine::new(&RedactionConfig::default()).unwrap();
        fresh.search_span(fitting, rule, 0, fitting.len(), &mut Vec::new());
        assert!(fresh.rules[usize::from(rule)].compiled.get().is_none());
        assert!(r.compiled.get().is_some(), "search_span_exact compiled it");
        let long_local = format!("{}@example.com", "a".repeat(70));
        let nine = "x@aa.bb.cc.dd.ee.ff.gg.hh.ii.com".to_owned();
        let long_label = format!("x@{}.com x@{}.com y@ok.com", "a".repeat(64), "é".repeat(16));
        let not_letter = "x@example.日本。 y@example.日本".to_owned();
        for text in [long_local, nine, long_label, not_letter] {
            let fresh = Engine::new(&RedactionConfig::default()).unwrap();
            let mut loose = Vec::new();
            fresh.search_span(&text, rule, 0, text.len(), &mut loose);
            let own = &fresh.rules[usize::from(rule)].compiled;
            assert!(own.get().is_some(), "fell back: {text}");
            let [_, exact] = loose_and_exact(&fresh, rule, &text, 0, text.len());
            assert_eq!(loose, exact, "{text}");
            assert!(!loose.is_empty(), "{text}");
        }
    }

    #[test]
    fn non_ascii_letters_are_the_patterns_class() {
        for c in ['é', 'ж', '日', 'ǅ', 'ﬀ', 'ㄱ'] {
            assert!(crate::rules::non_ascii_letter(c), "{c}");
        }
        for c in ['a', 'Z', '1', '。', '٣', '€', '\u{300}', '🙂', '\u{a0}'] {
            assert!(!crate::rules::non_ascii_letter(c), "{c}");
        }
    }

    proptest::proptest! {
        /// The decoders' scan for encoded parts on a second thread beside the plain scan (as
        /// for long texts) finds the same hits, in the same order, as one after the other.
        #[test]
        fn the_encoded_parts_scanned_beside_the_plain_scan_give_the_same_hits(
            pieces in proptest::collection::vec(proptest::prop_oneof![
                proptest::sample::select(vec![
                    "cGFzc3dvcmQ9aHVudGVyMg==", "dXNlckBleGFtcGxlLmNvbQ==", "user%40example.com",
                    "{\\\"password\\\":\\\"s3cr3t\\\"}", "bob@example.com", "token=abcd1234efgh",
                    "-----BEGIN RSA PRIVATE KEY-----", "sk-ant-abcdefghijklmnopqrstu",
                    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abcdefgh", "4111 1111 1111 1111",
                ]).prop_map(str::to_owned),
                proptest::string::string_regex("[A-Za-z0-9+/=%\\\\]{1,40}").unwrap(),
                proptest::string::string_regex("[ \n,:=]").unwrap(),
            ], 0..40),
        ) {
            let text = pieces.concat();
            for e in every_mode() {
                let (mut after, mut beside) = (Vec::new(), Vec::new());
                e.plain_and_decoded(&text, false, &mut after, |e, h| e.find_plain(&text, h));
                e.plain_and_decoded(&text, true, &mut beside, |e, h| e.find_plain(&text, h));
                proptest::prop_assert_eq!(&after, &beside, "{:?}", text);
            }
        }

        /// Any text made of the pieces an address is made of (local parts of every length,
        /// quotes, dots, labels of every length and script, TLDs with and without letters):
        /// the loose search finds exactly what the `email` pattern finds, over the whole text
        /// and over any span of it.
        #[test]
        fn the_loose_email_search_finds_what_the_email_pattern_finds(
            pieces in proptest::collection::vec(proptest::prop_oneof![
                proptest::string::string_regex("[a-z0-9._%+'-]{0,70}").unwrap(),
                proptest::string::string_regex("[a-zA-Zéжπ]{1,20}").unwrap(),
                proptest::string::string_regex("\"[a-z @.]{0,66}\"").unwrap(),
                proptest::string::string_regex("@[a-z0-9-]{0,66}").unwrap(),
                proptest::string::string_regex("\\.[a-zé日本ж0-9-]{0,18}").unwrap(),
                proptest::string::string_regex("\\.[日本。٣€a-z]{1,8}").unwrap(),
                proptest::string::string_regex("\\.xn--[a-z0-9-]{0,22}").unwrap(),
                proptest::string::string_regex("[a-z]{60,70}@[a-z]{1,3}\\.[a-z]{2,3}").unwrap(),
                proptest::string::string_regex("@([a-zé]{1,3}\\.){5,11}[a-z日]{1,4}").unwrap(),
                proptest::string::string_regex("@([a-z]{60,66}|[éa]{13,18})\\.[a-z]{2,3}").unwrap(),
                proptest::string::string_regex("[ ,;<>\n]").unwrap(),
            ], 1..24),
            cut in 0usize..4096,
        ) {
            let text: String = pieces.concat();
            let e = &every_mode()[0];
            let rule = email_rule(e);
            let [loose, exact] = loose_and_exact(e, rule, &text, 0, text.len());
            proptest::prop_assert_eq!(loose, exact);
            let mut s = cut % (text.len() + 1);
            while !text.is_char_boundary(s) {
                s -= 1;
            }
            let [loose, exact] = loose_and_exact(e, rule, &text, s, text.len());
            proptest::prop_assert_eq!(loose, exact);
        }
    }

    /// A custom rule is compiled, and its speed checked, when the engine is built.
    #[test]
    fn custom_rules_compile_when_built() {
        let mut cfg = RedactionConfig::default();
        cfg.custom_rules
            .push(crate::CustomRule::new("ticket", r"TCK-[0-9]{6}"));
        let e = Engine::new(&cfg).unwrap();
        let custom = e.rules.last().unwrap();
        assert!(custom.compiled.get().is_some());
        cfg.custom_rules[0].pattern = "TCK-(".into();
        assert!(matches!(
            Engine::new(&cfg),
            Err(BuildError::InvalidPattern { .. })
        ));
    }
}
