//! Replacement: merging the hits of one pass into spans and writing the output, with each
//! span's replacement (`[REDACTED]`, nothing, a keyed hash, or a custom rule's text) and its
//! findings in the report.

use std::borrow::Cow;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::BuildError;
use crate::config::{RedactionConfig, RedactionMode};
use crate::engine::{Engine, Hit};
use crate::report::{Finding, Report};

/// One replaced span: `start..end` of a pass's input became `out_start..out_end` of its
/// output. Ascending and disjoint, never empty in the input.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Replaced {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) out_start: usize,
    pub(crate) out_end: usize,
}

/// How HASH mode digests a value.
pub(crate) enum Hasher {
    None,
    Unkeyed,
    Keyed(Hmac<Sha256>),
}

impl Hasher {
    /// The hasher of `cfg`.
    ///
    /// # Errors
    /// [`BuildError::MissingHashKey`] for HASH mode without a key.
    pub(crate) fn new(cfg: &RedactionConfig) -> Result<Hasher, BuildError> {
        Ok(match (&cfg.mode, &cfg.hash_key) {
            (RedactionMode::Hash, None) => return Err(BuildError::MissingHashKey),
            (_, Some(k)) if k.is_unkeyed() => Hasher::Unkeyed,
            (_, Some(k)) => Hasher::Keyed(
                Hmac::<Sha256>::new_from_slice(k.expose())
                    .map_err(|_| BuildError::MissingHashKey)?,
            ),
            (_, None) => Hasher::None,
        })
    }
}

impl Engine {
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
            let (gs, first) = (hits[i].start, hits[i].rule);
            let (ge, next) = self.merge(hits, i, report);
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
            i = next;
        }
        out.push_str(&text[copied..]);
        Cow::Owned(out)
    }

    /// The hits from `hits[i]` on that overlap or touch its merged span (`hits` sorted by
    /// start): reports their findings and returns the span's end and the index of the first
    /// hit after the span.
    fn merge(&self, hits: &[Hit], mut i: usize, report: &mut Report) -> (usize, usize) {
        let mut ge = hits[i].end;
        report.add(
            &self.rules[usize::from(hits[i].rule)].name,
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
        (ge, i)
    }

    /// The findings of `hits`, sorted, each once.
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
