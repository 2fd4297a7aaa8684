//! Enrichment: token counts and cost estimates for LLM steps, then run totals.

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tracecraft_core::{AgentRun, JsonMap, Step, StepType};

use crate::processor::{Outcome, ProcessError, Processor};

/// Attribute set to `true` on a step whose token counts were estimated.
pub const TOKENS_ESTIMATED: &str = "tracecraft.tokens.estimated";
/// Attribute set to `true` on a step whose cost was estimated from the pricing table.
pub const COST_ESTIMATED: &str = "tracecraft.cost.estimated";

/// Counts tokens in text. Plug in a real tokenizer; the default is [`ApproxTokenCounter`].
pub trait TokenCounter: Send + Sync {
    /// Tokens in `text` for `model` (when known).
    fn count(&self, text: &str, model: Option<&str>) -> u64;

    /// Tokens in `parts` joined by single spaces (the text of a step's inputs or outputs, see
    /// [`EnrichmentProcessor`]). The default joins and calls [`count`](Self::count); override
    /// it when the parts can be counted without building the joined text.
    fn count_parts(&self, parts: &[&str], model: Option<&str>) -> u64 {
        self.count(&parts.join(" "), model)
    }
}

/// The Python package's fallback: characters / 4.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApproxTokenCounter;

impl TokenCounter for ApproxTokenCounter {
    fn count(&self, text: &str, _model: Option<&str>) -> u64 {
        (text.chars().count() / 4) as u64
    }

    fn count_parts(&self, parts: &[&str], _model: Option<&str>) -> u64 {
        let chars: usize = parts.iter().map(|p| p.chars().count()).sum();
        ((chars + parts.len().saturating_sub(1)) / 4) as u64
    }
}

/// Prices of one model, in US dollars per 1,000 tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPricing {
    /// The model name (normalized when matched: lower-case, no provider prefix or date).
    pub model: String,
    /// Dollars per 1,000 input tokens.
    pub input_per_1k: f64,
    /// Dollars per 1,000 output tokens.
    pub output_per_1k: f64,
}

impl ModelPricing {
    /// A price entry.
    #[must_use]
    pub fn new(model: impl Into<String>, input_per_1k: f64, output_per_1k: f64) -> Self {
        ModelPricing {
            model: model.into(),
            input_per_1k,
            output_per_1k,
        }
    }

    /// The cost of these token counts.
    #[must_use]
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        input_tokens as f64 * self.input_per_1k / 1000.0
            + output_tokens as f64 * self.output_per_1k / 1000.0
    }
}

/// The Python package's default table (per 1K tokens, January 2025).
#[must_use]
pub fn default_pricing() -> Vec<ModelPricing> {
    [
        ("gpt-4", 0.03, 0.06),
        ("gpt-4-turbo", 0.01, 0.03),
        ("gpt-4o", 0.0025, 0.01),
        ("gpt-4o-mini", 0.00015, 0.0006),
        ("gpt-3.5-turbo", 0.0005, 0.0015),
        ("o1", 0.015, 0.06),
        ("o1-mini", 0.003, 0.012),
        ("o1-preview", 0.015, 0.06),
        ("claude-3-opus", 0.015, 0.075),
        ("claude-3-sonnet", 0.003, 0.015),
        ("claude-3-haiku", 0.00025, 0.00125),
        ("claude-3.5-sonnet", 0.003, 0.015),
        ("claude-3.5-haiku", 0.0008, 0.004),
        ("claude-opus-4", 0.015, 0.075),
        ("claude-sonnet-4", 0.003, 0.015),
        ("gemini-1.5-pro", 0.00125, 0.005),
        ("gemini-1.5-flash", 0.000075, 0.0003),
        ("gemini-2.0-flash", 0.0001, 0.0004),
        ("gemini-pro", 0.0005, 0.0015),
        ("mistral-large", 0.002, 0.006),
        ("mistral-medium", 0.00275, 0.0081),
        ("mistral-small", 0.0002, 0.0006),
    ]
    .into_iter()
    .map(|(m, i, o)| ModelPricing::new(m, i, o))
    .collect()
}

/// Enrichment settings (the `[enrichment]` table).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EnrichmentConfig {
    /// Whether enrichment runs (default true).
    pub enabled: bool,
    /// Start from the built-in price table (default true).
    pub default_pricing: bool,
    /// Extra or overriding prices.
    pub pricing: Vec<ModelPricing>,
}

impl Default for EnrichmentConfig {
    fn default() -> Self {
        EnrichmentConfig {
            enabled: true,
            default_pricing: true,
            pricing: Vec::new(),
        }
    }
}

/// Normalizes a model name for price lookup: lower-case, provider prefix (`openai/`, ...)
/// removed, a trailing date (`-20240229`, `-2024-08-06`) or 4-digit version (`-0613`)
/// removed, and Anthropic's dashed versions (`claude-3-5-sonnet`) dotted.
#[must_use]
pub fn normalize_model(model: &str) -> String {
    normalized(model).into_owned()
}

/// Whether [`normalize_model`] would return `model` unchanged (the common case: a plain
/// lower-case name such as `gpt-4o-mini`), decided without allocating.
fn is_normalized(model: &str) -> bool {
    let b = model.as_bytes();
    let plain = !b.is_empty()
        && b.iter().all(|&c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'.' || c == b'_'
        });
    // Anything a rule below could strip or rewrite ends in a digit or starts with `claude`
    // or `anthropic.`; those take the slow path.
    plain
        && !b.last().is_some_and(u8::is_ascii_digit)
        && !model.starts_with("claude")
        && !model.starts_with("anthropic.")
}

fn normalized(model: &str) -> std::borrow::Cow<'_, str> {
    if is_normalized(model) {
        return std::borrow::Cow::Borrowed(model);
    }
    std::borrow::Cow::Owned(normalize_slow(model))
}

fn normalize_slow(model: &str) -> String {
    let mut m = model.trim().to_lowercase();
    // Provider prefixes: anything up to the last '/' (`openai/`, `azure/`, `bedrock/anthropic/`).
    if let Some(i) = m.rfind('/') {
        m = m[i + 1..].to_owned();
    }
    // Anthropic on Bedrock / Vertex: `anthropic.claude-3-haiku-20240307-v1:0`, `claude-3@2024`.
    if let Some(rest) = m.strip_prefix("anthropic.") {
        m = rest.to_owned();
    }
    for sep in ['@', ':'] {
        if let Some(i) = m.find(sep) {
            m.truncate(i);
        }
    }
    if let Some(i) = m.rfind("-v")
        && i + 2 < m.len()
        && m[i + 2..].chars().all(|c| c.is_ascii_digit())
    {
        m.truncate(i);
    }
    let strip_date = |m: &mut String| {
        let b = m.as_bytes();
        let digits_back = b.iter().rev().take_while(|c| c.is_ascii_digit()).count();
        // -YYYYMMDD or -MMDD
        if (digits_back == 8 || digits_back == 4)
            && b.len() > digits_back
            && b[b.len() - digits_back - 1] == b'-'
        {
            m.truncate(b.len() - digits_back - 1);
            return true;
        }
        // -YYYY-MM-DD
        // (bytes, not a `str` slice: the name may end in multi-byte characters)
        if b.len() > 11 {
            let tb = &b[b.len() - 11..];
            if tb[0] == b'-'
                && tb[5] == b'-'
                && tb[8] == b'-'
                && tb[1..5]
                    .iter()
                    .chain(&tb[6..8])
                    .chain(&tb[9..])
                    .all(u8::is_ascii_digit)
            {
                m.truncate(m.len() - 11);
                return true;
            }
        }
        false
    };
    strip_date(&mut m);
    for (variant, canonical) in [
        ("claude-3-5-", "claude-3.5-"),
        ("claude-35-", "claude-3.5-"),
        ("claude-3-7-", "claude-3.7-"),
        ("claude-4-opus", "claude-opus-4"),
        ("claude-4-sonnet", "claude-sonnet-4"),
    ] {
        if m.starts_with(variant) {
            m = format!("{canonical}{}", &m[variant.len()..]);
        }
    }
    m
}

/// A price table with longest-prefix matching on normalized names.
///
/// A known name matches when it equals the normalized model or is followed by `-` in it:
/// `gpt-4-0613` and `gpt-4-turbo-preview` match, but `gpt-4.1` does not match `gpt-4`
/// (it is a different model with different prices) and is left unpriced.
#[derive(Debug, Clone, Default)]
pub struct PriceTable {
    entries: Vec<(String, ModelPricing)>,
    /// Index into `entries` by exact normalized name (most lookups end here).
    exact: std::collections::HashMap<String, usize>,
    /// Identifies these contents in the per-thread lookup cache ([`recent`]): a fresh value
    /// from a global counter at every change, `0` while the table is empty (never cached).
    generation: u64,
}

/// Per-thread memo of the last few model names looked up, so that the names a trace repeats
/// step after step (`claude-3-5-sonnet-20241022`, `gpt-4o-2024-08-06`) are normalized and
/// matched once, not at every step.
///
/// Keyed by [`PriceTable::generation`], which no two table contents share (a global counter,
/// never reused), so a result never outlives the table contents it was computed from.
mod recent {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicU64, Ordering};

    /// Entries per thread; replaced round-robin.
    const SLOTS: usize = 8;
    /// Longer names are not memoized (keeps the memo small whatever the input).
    pub(super) const MAX_NAME: usize = 64;

    static NEXT_GENERATION: AtomicU64 = AtomicU64::new(1);

    pub(super) fn next_generation() -> u64 {
        NEXT_GENERATION.fetch_add(1, Ordering::Relaxed)
    }

    #[derive(Default)]
    struct Memo {
        slots: Vec<(u64, String, Option<usize>)>,
        next: usize,
    }

    thread_local! {
        static MEMO: RefCell<Memo> = RefCell::default();
    }

    /// The memoized result for `model` in table `generation`, if any. None as well when the
    /// thread's memo is gone (a lookup from another thread-local's destructor at thread exit):
    /// the caller then computes the answer itself.
    pub(super) fn get(generation: u64, model: &str) -> Option<Option<usize>> {
        MEMO.try_with(|m| {
            m.borrow()
                .slots
                .iter()
                .find(|(g, name, _)| *g == generation && name == model)
                .map(|&(_, _, found)| found)
        })
        .ok()
        .flatten()
    }

    /// Remembers a result (nothing when the thread's memo is gone).
    pub(super) fn put(generation: u64, model: &str, found: Option<usize>) {
        let _ = MEMO.try_with(|m| {
            let mut m = m.borrow_mut();
            let entry = (generation, model.to_owned(), found);
            if m.slots.len() < SLOTS {
                m.slots.push(entry);
            } else {
                let i = m.next;
                m.slots[i] = entry;
                m.next = (i + 1) % SLOTS;
            }
        });
    }
}

impl PriceTable {
    /// A table from entries; later entries override earlier ones of the same name.
    #[must_use]
    pub fn new(entries: impl IntoIterator<Item = ModelPricing>) -> Self {
        let mut table = PriceTable::default();
        for p in entries {
            table.insert(p);
        }
        table
    }

    /// Adds or replaces an entry.
    pub fn insert(&mut self, pricing: ModelPricing) {
        let key = normalize_model(&pricing.model);
        self.entries.retain(|(k, _)| *k != key);
        self.entries.push((key, pricing));
        // Longest first, so the first match is the most specific.
        self.entries.sort_by_key(|e| std::cmp::Reverse(e.0.len()));
        self.exact = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        self.generation = recent::next_generation();
    }

    /// The price of `model`, if known.
    #[must_use]
    pub fn lookup(&self, model: &str) -> Option<&ModelPricing> {
        if self.generation == 0 || model.len() > recent::MAX_NAME {
            return self.find(model).map(|i| &self.entries[i].1);
        }
        let found = match recent::get(self.generation, model) {
            Some(found) => found,
            None => {
                let found = self.find(model);
                recent::put(self.generation, model, found);
                found
            }
        };
        found.map(|i| &self.entries[i].1)
    }

    /// Index of the entry for `model`: normalized, then exact or longest-prefix match.
    fn find(&self, model: &str) -> Option<usize> {
        let m = normalized(model);
        if let Some(&i) = self.exact.get(m.as_ref()) {
            return Some(i);
        }
        self.entries.iter().position(|(k, _)| {
            m.starts_with(k.as_str()) && m.as_bytes().get(k.len()) == Some(&b'-')
        })
    }
}

/// Fills token counts and costs of LLM steps, then recomputes run totals.
///
/// - Token counts are only estimated when a step has none (the counter sees the string values
///   of inputs/outputs, and `content` of message objects); the step gets
///   [`TOKENS_ESTIMATED`]` = true`.
/// - Cost is only estimated when a step has none and its model is priced; the step gets
///   [`COST_ESTIMATED`]` = true`.
/// - Run totals are recomputed over the whole tree afterwards (the Python package computes them
///   before enrichment, so its totals stay 0).
#[derive(Clone)]
pub struct EnrichmentProcessor {
    prices: Arc<PriceTable>,
    counter: Arc<dyn TokenCounter>,
}

impl std::fmt::Debug for EnrichmentProcessor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnrichmentProcessor")
            .field("prices", &self.prices.entries.len())
            .finish()
    }
}

impl Default for EnrichmentProcessor {
    fn default() -> Self {
        EnrichmentProcessor::new(&EnrichmentConfig::default())
    }
}

impl EnrichmentProcessor {
    /// From configuration, with the approximate token counter.
    #[must_use]
    pub fn new(config: &EnrichmentConfig) -> Self {
        let mut entries = if config.default_pricing {
            default_pricing()
        } else {
            Vec::new()
        };
        entries.extend(config.pricing.iter().cloned());
        EnrichmentProcessor {
            prices: Arc::new(PriceTable::new(entries)),
            counter: Arc::new(ApproxTokenCounter),
        }
    }

    /// Uses a real tokenizer.
    #[must_use]
    pub fn with_counter(mut self, counter: impl TokenCounter + 'static) -> Self {
        self.counter = Arc::new(counter);
        self
    }

    /// The price table.
    #[must_use]
    pub fn prices(&self) -> &PriceTable {
        &self.prices
    }

    /// Enriches one step (not its children).
    pub fn enrich_step(&self, step: &mut Step) {
        if step.step_type != StepType::Llm {
            return;
        }
        let model = step.model_name.as_deref();
        let mut estimated = false;
        let mut parts = Vec::new();
        if step.input_tokens.is_none() {
            text_parts(&step.inputs, &mut parts);
            if has_text(&parts) {
                step.input_tokens = Some(self.counter.count_parts(&parts, model));
                estimated = true;
            }
        }
        if step.output_tokens.is_none() {
            parts.clear();
            text_parts(&step.outputs, &mut parts);
            if has_text(&parts) {
                step.output_tokens = Some(self.counter.count_parts(&parts, model));
                estimated = true;
            }
        }
        drop(parts);
        if estimated {
            step.attributes
                .insert(TOKENS_ESTIMATED.to_owned(), Value::Bool(true));
        }
        if step.cost_usd.is_none()
            && let Some(pricing) = step
                .model_name
                .as_deref()
                .and_then(|m| self.prices.lookup(m))
        {
            step.cost_usd = Some(pricing.cost(
                step.input_tokens.unwrap_or(0),
                step.output_tokens.unwrap_or(0),
            ));
            step.attributes
                .insert(COST_ESTIMATED.to_owned(), Value::Bool(true));
        }
    }

    /// Enriches every step and recomputes the run's totals.
    pub fn enrich(&self, run: &mut AgentRun) {
        run.walk_mut(|step, _| self.enrich_step(step));
        if !run.steps.is_empty() {
            run.aggregate();
        } else {
            // No steps: keep caller-provided totals; only the error count is derivable.
            let tokens = run.total_tokens;
            let cost = run.total_cost_usd;
            run.aggregate();
            run.total_tokens = tokens;
            run.total_cost_usd = cost;
        }
    }
}

/// The text a tokenizer should see: string values, strings in lists, and `content` of
/// message objects (top level and one level down), joined by spaces — as the Python package.
fn text_parts<'a>(map: &'a JsonMap, parts: &mut Vec<&'a str>) {
    fn content(v: &Value) -> Option<&str> {
        match v {
            // A message object has a few keys: comparing them beats hashing `content`.
            Value::Object(m) if m.len() <= 8 => m
                .iter()
                .find(|(k, _)| k.as_str() == "content")
                .and_then(|(_, v)| v.as_str()),
            _ => v.get("content").and_then(Value::as_str),
        }
    }
    for value in map.values() {
        match value {
            Value::String(s) => parts.push(s),
            Value::Array(items) => {
                for item in items {
                    match item {
                        Value::String(s) => parts.push(s),
                        Value::Object(_) => parts.extend(content(item)),
                        _ => {}
                    }
                }
            }
            Value::Object(_) => parts.extend(content(value)),
            _ => {}
        }
    }
}

/// Whether the joined text would be non-empty (the Python package skips empty text).
fn has_text(parts: &[&str]) -> bool {
    parts.len() > 1 || parts.first().is_some_and(|p| !p.is_empty())
}

impl Processor for EnrichmentProcessor {
    fn name(&self) -> &str {
        "enrich"
    }
    fn process(&self, mut run: AgentRun) -> Result<Outcome, ProcessError> {
        self.enrich(&mut run);
        Ok(Outcome::Keep(run))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn approx_counter_counts_parts_like_the_joined_text() {
        let c = ApproxTokenCounter;
        let cases: [&[&str]; 6] = [
            &[],
            &[""],
            &["", ""],
            &["abc"],
            &["abc", "d"],
            &["héllo wörld", "日本語のテキスト", "", "emoji 🎉🎉"],
        ];
        for parts in cases {
            assert_eq!(
                c.count_parts(parts, None),
                c.count(&parts.join(" "), None),
                "{parts:?}"
            );
        }
        assert!(!has_text(&[]) && !has_text(&[""]) && has_text(&["", ""]) && has_text(&["a"]));
    }

    #[test]
    fn fast_path_agrees_with_full_normalization() {
        // Every combination of a few fragments, including each rule's trigger.
        let parts = [
            "",
            "gpt-4o",
            "GPT",
            "openai/",
            "claude-3-5-",
            "anthropic.",
            "-20240229",
            "-0613",
            "-2024-08-06",
            "@2024",
            ":0",
            "-v1",
            "mini",
            "-",
            ".",
            "_x",
            "é",
            " ",
            "sonnet",
        ];
        for a in parts {
            for b in parts {
                for c in parts {
                    let m = format!("{a}{b}{c}");
                    assert_eq!(normalized(&m), normalize_slow(&m), "{m:?}");
                    if is_normalized(&m) {
                        assert_eq!(normalize_slow(&m), m, "{m:?} is not already normalized");
                    }
                }
            }
        }
        let table = PriceTable::new(default_pricing());
        for m in [
            "gpt-4o-mini",
            "GPT-4o-mini",
            "openai/gpt-4o-mini-2024-07-18",
        ] {
            assert_eq!(
                table.lookup(m).map(|p| p.model.as_str()),
                Some("gpt-4o-mini")
            );
        }
    }

    #[test]
    fn normalizes_like_the_reference_and_more() {
        assert_eq!(normalize_model("OpenAI/GPT-4-0613"), "gpt-4");
        assert_eq!(
            normalize_model("claude-3-sonnet-20240229"),
            "claude-3-sonnet"
        );
        assert_eq!(normalize_model("gpt-4o-2024-08-06"), "gpt-4o");
        assert_eq!(
            normalize_model("claude-3-5-sonnet-20241022"),
            "claude-3.5-sonnet"
        );
        assert_eq!(
            normalize_model("anthropic.claude-3-haiku-20240307-v1:0"),
            "claude-3-haiku"
        );
        assert_eq!(normalize_model("gpt-4.1"), "gpt-4.1");
    }

    #[test]
    fn longest_prefix_with_boundary() {
        let t = PriceTable::new(default_pricing());
        assert_eq!(t.lookup("gpt-4").unwrap().model, "gpt-4");
        assert_eq!(t.lookup("gpt-4-0613").unwrap().model, "gpt-4");
        assert_eq!(
            t.lookup("gpt-4-turbo-preview").unwrap().model,
            "gpt-4-turbo"
        );
        assert_eq!(
            t.lookup("gpt-4o-mini-2024-07-18").unwrap().model,
            "gpt-4o-mini"
        );
        assert_eq!(t.lookup("openai/gpt-4o").unwrap().model, "gpt-4o");
        assert_eq!(
            t.lookup("claude-3-5-haiku-latest").unwrap().model,
            "claude-3.5-haiku"
        );
        assert_eq!(
            t.lookup("gemini-1.5-pro-002").unwrap().model,
            "gemini-1.5-pro"
        );
        assert!(
            t.lookup("gpt-4.1").is_none(),
            "gpt-4.1 must not be priced as gpt-4"
        );
        assert!(t.lookup("gpt-4.1-mini").is_none());
        assert!(t.lookup("o1x").is_none());
        assert!(t.lookup("").is_none());
    }

    #[test]
    fn user_prices_override_and_extend() {
        let cfg = EnrichmentConfig {
            pricing: vec![
                ModelPricing::new("gpt-4", 1.0, 2.0),
                ModelPricing::new("gpt-4.1", 0.002, 0.008),
            ],
            ..EnrichmentConfig::default()
        };
        let p = EnrichmentProcessor::new(&cfg);
        assert_eq!(p.prices().lookup("gpt-4").unwrap().input_per_1k, 1.0);
        assert_eq!(
            p.prices()
                .lookup("gpt-4.1-2025-04-14")
                .unwrap()
                .input_per_1k,
            0.002
        );
    }

    /// The per-thread memo never serves a result computed from other table contents: not
    /// for another table, not after `insert` changes this one, not for a changed clone.
    #[test]
    fn lookup_memo_follows_table_contents() {
        let names = [
            "claude-3-5-sonnet-20241022",
            "gpt-4o-2024-08-06",
            "llama-3.1-70b-instruct",
            "gpt-4.1",
        ];
        let mut t = PriceTable::new(default_pricing());
        let fresh = |t: &PriceTable, n: &str| t.find(n).map(|i| t.entries[i].1.clone());
        for _ in 0..3 {
            for n in names {
                assert_eq!(t.lookup(n).cloned(), fresh(&t, n), "{n}");
            }
        }
        let before = t.clone();
        t.insert(ModelPricing::new("llama-3.1-70b", 0.5, 0.7));
        t.insert(ModelPricing::new("claude-3.5-sonnet", 9.0, 9.0));
        assert_eq!(
            t.lookup("llama-3.1-70b-instruct").unwrap().input_per_1k,
            0.5
        );
        assert_eq!(
            t.lookup("claude-3-5-sonnet-20241022").unwrap().input_per_1k,
            9.0
        );
        // The clone taken before keeps its own answers.
        assert!(before.lookup("llama-3.1-70b-instruct").is_none());
        assert_ne!(
            before
                .lookup("claude-3-5-sonnet-20241022")
                .unwrap()
                .input_per_1k,
            9.0
        );
        // More names than memo slots, twice over, still answer like a fresh lookup.
        let many: Vec<String> = (0..40).map(|i| format!("gpt-4o-{i:04}")).collect();
        for n in many.iter().chain(&many) {
            assert_eq!(t.lookup(n).cloned(), fresh(&t, n), "{n}");
        }
        // Names past the memo's length cap, and the empty table.
        let long = format!("gpt-4o-{}", "x".repeat(100));
        assert_eq!(t.lookup(&long).unwrap().model, "gpt-4o");
        assert!(PriceTable::default().lookup("gpt-4o").is_none());
    }

    /// A lookup from a thread-local destructor at thread exit, after the thread's memo is
    /// gone (a runtime kept in a thread-local, processing inline as it is dropped), still
    /// answers instead of panicking.
    #[test]
    fn lookup_works_after_the_thread_memo_is_destroyed() {
        use std::cell::RefCell;
        use std::sync::mpsc;
        struct AtExit(Arc<PriceTable>, mpsc::Sender<Option<String>>);
        impl Drop for AtExit {
            fn drop(&mut self) {
                let found = self.0.lookup("claude-3-5-sonnet-20241022");
                let _ = self.1.send(found.map(|p| p.model.clone()));
            }
        }
        thread_local! {
            static GUARD: RefCell<Option<AtExit>> = const { RefCell::new(None) };
        }
        let table = Arc::new(PriceTable::new(default_pricing()));
        let (tx, rx) = mpsc::channel();
        let t = Arc::clone(&table);
        std::thread::spawn(move || {
            // The guard's slot is set up before the memo, so it is destroyed after it.
            GUARD.with(|g| *g.borrow_mut() = Some(AtExit(Arc::clone(&t), tx)));
            assert!(t.lookup("gpt-4o-2024-08-06").is_some());
        })
        .join()
        .unwrap();
        assert_eq!(rx.recv().unwrap().as_deref(), Some("claude-3.5-sonnet"));
    }
}
