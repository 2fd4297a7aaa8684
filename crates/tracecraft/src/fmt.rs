//! Redaction for the rest of a `tracing` subscriber: what `tracing_subscriber::fmt` prints.
//!
//! TraceCraft redacts the runs it records. The other layers of your subscriber see every
//! span field and event as your code wrote it: a `fmt` layer prints the prompt, the email and
//! the API key in clear. Two adapters run the same redaction rules on what it prints:
//!
//! - [`RedactingFields`], a field formatter (`.fmt_fields(..)`): each field is redacted
//!   before it is formatted, with the field's name, so sensitive-key rules apply
//!   (`password = "hunter2"` is masked whole, whatever the value looks like). Span fields
//!   are formatted once, when recorded, so they are stored redacted too.
//! - [`RedactingWriter`], a [`MakeWriter`] (`.with_writer(..)`): every line written is
//!   redacted before it reaches the inner writer: messages, fields, span names, whatever the
//!   formatter produced. Use it with formatters you do not control (JSON, custom).
//!
//! Both are one line on an existing `fmt` layer; use both for defence in depth:
//!
//! ```
//! use tracing_subscriber::layer::SubscriberExt;
//! use tracecraft::fmt::{RedactingFields, RedactingWriter};
//! use tracecraft::redact::RedactionConfig;
//!
//! let rules = RedactionConfig::default();
//! let fmt = tracing_subscriber::fmt::layer()
//!     .with_ansi(false)
//!     .fmt_fields(RedactingFields::new(&rules)?)
//!     .with_writer(RedactingWriter::new(std::io::stderr, &rules)?);
//! let subscriber = tracing_subscriber::registry().with(fmt);
//! tracing::subscriber::with_default(subscriber, || {
//!     tracing::info!(user = "jane.doe@example.com", "signed in"); // prints user="[REDACTED]"
//! });
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # What this does not cover
//! Only what goes through these adapters: other layers and writers (a JSON exporter of
//! your own, an OpenTelemetry layer, `println!`) are not redacted; text the rules do not
//! recognise is printed as is. Turn ANSI colours off (`.with_ansi(false)`) when using the
//! writer alone: escape codes inside a secret can hide it from the value rules.

use std::io::{self, Write};

use serde_json::Value;
use tracecraft_core::JsonMap;
use tracecraft_redact::{BuildError, RedactionConfig, Redactor, Report};
use tracing::field::{Field, Visit};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FormatFields, MakeWriter};

/// A field formatter for `tracing_subscriber::fmt` that redacts each field; see the
/// [module docs](self).
///
/// Prints like the default formatter: the message first, then `name=value` pairs (strings
/// quoted), separated by spaces.
#[derive(Debug, Clone)]
pub struct RedactingFields {
    redactor: Redactor,
}

impl RedactingFields {
    /// A formatter applying `rules`.
    ///
    /// # Errors
    /// The rules' [`BuildError`] (invalid or non-linear pattern, naming the rule).
    pub fn new(rules: &RedactionConfig) -> Result<Self, BuildError> {
        Ok(Self::from_redactor(Redactor::new(rules)?))
    }

    /// A formatter applying an already compiled rule set.
    #[must_use]
    pub fn from_redactor(redactor: Redactor) -> Self {
        RedactingFields { redactor }
    }
}

/// Collects fields as JSON values, in order.
#[derive(Default)]
struct Collect(JsonMap);

impl Visit for Collect {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_owned(), Value::String(format!("{value:?}")));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_owned()));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_owned(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_owned(), Value::String(value.to_string()));
    }
}

impl<'writer> FormatFields<'writer> for RedactingFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut collected = Collect::default();
        fields.record(&mut collected);
        let mut map = collected.0;
        self.redactor.redact_map(&mut map, &mut Report::new());
        let mut first = true;
        for (name, value) in &map {
            if !first {
                writer.write_char(' ')?;
            }
            first = false;
            match (name.as_str(), value) {
                ("message", Value::String(s)) => writer.write_str(s)?,
                (_, Value::String(s)) => write!(writer, "{name}={s:?}")?,
                (_, other) => write!(writer, "{name}={other}")?,
            }
        }
        Ok(())
    }
}

/// A [`MakeWriter`] that redacts what the inner writer would receive; see the
/// [module docs](self).
///
/// Each writer it makes buffers what is written and hands the redacted text to the inner
/// writer when flushed or dropped (`fmt` makes one writer per event), and in the meantime
/// at line ends once more than 64 KiB are buffered, so memory stays bounded for writers
/// that live long.
#[derive(Debug, Clone)]
pub struct RedactingWriter<M> {
    inner: M,
    redactor: Redactor,
}

impl<M> RedactingWriter<M> {
    /// Wraps `inner` (`std::io::stderr`, a `tracing_appender` writer, ...), applying `rules`.
    ///
    /// # Errors
    /// The rules' [`BuildError`] (invalid or non-linear pattern, naming the rule).
    pub fn new(inner: M, rules: &RedactionConfig) -> Result<Self, BuildError> {
        Ok(Self::from_redactor(inner, Redactor::new(rules)?))
    }

    /// Wraps `inner`, applying an already compiled rule set.
    #[must_use]
    pub fn from_redactor(inner: M, redactor: Redactor) -> Self {
        RedactingWriter { inner, redactor }
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingWriter<M> {
    type Writer = RedactingWrite<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWrite::new(self.inner.make_writer(), &self.redactor)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        RedactingWrite::new(self.inner.make_writer_for(meta), &self.redactor)
    }
}

/// What [`RedactingWriter`] makes: an [`io::Write`] that redacts before writing.
pub struct RedactingWrite<'a, W: Write> {
    inner: W,
    redactor: &'a Redactor,
    buf: Vec<u8>,
    /// What the text written out so far leaves open (a private key block, a table, a
    /// wrapped token) for the text still buffered.
    stream: tracecraft_redact::StreamTracker,
    /// `stream` fed on with the buffered lines up to `probed`: where the buffer may be cut.
    /// Kept across writes, so that each buffered byte is looked at once however long the
    /// buffer grows (a long line, a block that cannot be cut).
    probe: Option<tracecraft_redact::StreamTracker>,
    /// Buffered bytes fed to `probe` (whole lines).
    probed: usize,
    /// Buffered bytes searched for line ends.
    scanned: usize,
    /// The last place (within `probed`) where the buffer may be cut.
    cut: usize,
}

impl<W: Write> std::fmt::Debug for RedactingWrite<'_, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the buffered text.
        f.debug_struct("RedactingWrite")
            .field("buffered", &self.buf.len())
            .finish_non_exhaustive()
    }
}

/// Buffered bytes past which complete lines are written out before the writer is flushed.
const EAGER_LINES: usize = 64 * 1024;

impl<'a, W: Write> RedactingWrite<'a, W> {
    fn new(inner: W, redactor: &'a Redactor) -> Self {
        RedactingWrite {
            inner,
            redactor,
            buf: Vec::new(),
            stream: redactor.stream_tracker(),
            probe: None,
            probed: 0,
            scanned: 0,
            cut: 0,
        }
    }

    /// Redacts and writes the first `n` buffered bytes, in the context the text written
    /// before them left.
    fn emit(&mut self, n: usize) -> io::Result<()> {
        if n == 0 {
            return Ok(());
        }
        let chunk: Vec<u8> = self.buf.drain(..n).collect();
        let text = String::from_utf8_lossy(&chunk);
        let context = self.stream.context();
        self.stream.feed(&chunk);
        let clean = self
            .redactor
            .redact_piece(&context, &text, &mut Report::new());
        self.inner.write_all(clean.as_bytes())
    }
}

impl<W: Write> Write for RedactingWrite<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() > EAGER_LINES {
            // Whole lines only, up to the last line end where the text may be cut (not in
            // the middle of a wrapped token; a private key block or a table is continued by
            // the next piece): found by a copy of the tracker fed on with each new line,
            // then written out.
            let probe = self.probe.get_or_insert_with(|| self.stream.clone());
            let from = self.scanned;
            self.scanned = self.buf.len();
            let ends = self.buf[from..].iter().enumerate();
            for nl in ends.filter(|&(_, &b)| b == b'\n').map(|(i, _)| from + i) {
                if probe.feed(&self.buf[self.probed..=nl]) {
                    self.cut = nl + 1;
                }
                self.probed = nl + 1;
            }
            let cut = std::mem::take(&mut self.cut);
            self.probed -= cut;
            self.scanned -= cut;
            self.emit(cut)?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        (self.probe, self.probed, self.scanned, self.cut) = (None, 0, 0, 0);
        self.emit(self.buf.len())?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWrite<'_, W> {
    fn drop(&mut self) {
        // Nowhere to report a failure from a drop; the inner writer's own policy applies.
        let _ = self.flush();
    }
}
