//! [`ConsoleExporter`]: a tree view of each run, for development.
//!
//! ```text
//! agent_task (12.3ms) [15 tokens] [$0.0100]
//! ├── agent plan 1.2ms
//! │   ├── llm call (gpt-4) 0.8ms [10/5 tokens]
//! │   └── tool search 0.1ms ERROR(Error): not found
//! └── evaluation score 0.0ms
//! ```
//!
//! It receives only [`ProcessedRun`]s, so what verbose mode prints (inputs, outputs) has
//! already been redacted by the pipeline. Names and values are printed with control characters
//! escaped, so a captured string cannot inject terminal escape sequences. This is the only
//! place the library writes to stdout, and only when it is given as an exporter.

use std::io::{IsTerminal, Write};

use serde_json::Value;
use tracecraft_core::{AgentRun, ExportError, Exporter, ProcessedRun, Step, StepType};

/// When to color the output with ANSI escape sequences.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ColorMode {
    /// Color when writing to stdout and stdout is a terminal, and `NO_COLOR` is not set.
    #[default]
    Auto,
    /// Always color.
    Always,
    /// Never color.
    Never,
}

/// Default length (in characters) beyond which verbose values are truncated.
pub const DEFAULT_MAX_VALUE_LEN: usize = 200;

/// Prints each run as a tree: name, duration, tokens, cost; per step its type, name, model,
/// duration, tokens and error. Verbose mode adds inputs and outputs, truncated.
pub struct ConsoleExporter {
    writer: Box<dyn Write + Send>,
    /// Whether the writer is stdout and stdout is a terminal.
    is_terminal: bool,
    color: ColorMode,
    verbose: bool,
    max_value_len: usize,
    shut_down: bool,
}

impl std::fmt::Debug for ConsoleExporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsoleExporter")
            .field("color", &self.color)
            .field("verbose", &self.verbose)
            .field("max_value_len", &self.max_value_len)
            .finish_non_exhaustive()
    }
}

impl Default for ConsoleExporter {
    fn default() -> Self {
        ConsoleExporter::new()
    }
}

impl ConsoleExporter {
    /// Writes to stdout, colors in [`ColorMode::Auto`], not verbose.
    #[must_use]
    pub fn new() -> Self {
        ConsoleExporter {
            writer: Box::new(std::io::stdout()),
            is_terminal: std::io::stdout().is_terminal(),
            color: ColorMode::Auto,
            verbose: false,
            max_value_len: DEFAULT_MAX_VALUE_LEN,
            shut_down: false,
        }
    }

    /// Writes to `writer` instead ([`ColorMode::Auto`] then means no color).
    #[must_use]
    pub fn with_writer(mut self, writer: impl Write + Send + 'static) -> Self {
        self.writer = Box::new(writer);
        self.is_terminal = false;
        self
    }

    /// Sets when to color.
    #[must_use]
    pub fn color(mut self, mode: ColorMode) -> Self {
        self.color = mode;
        self
    }

    /// Prints inputs and outputs (already redacted) under each step.
    #[must_use]
    pub fn verbose(mut self, on: bool) -> Self {
        self.verbose = on;
        self
    }

    /// Truncates verbose values to `len` characters (default [`DEFAULT_MAX_VALUE_LEN`]).
    #[must_use]
    pub fn max_value_len(mut self, len: usize) -> Self {
        self.max_value_len = len;
        self
    }

    fn use_color(&self) -> bool {
        match self.color {
            ColorMode::Always => true,
            ColorMode::Never => false,
            ColorMode::Auto => self.is_terminal && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    /// Renders `run` as the exporter would print it.
    #[must_use]
    pub fn render(&self, run: &AgentRun) -> String {
        let p = Painter {
            color: self.use_color(),
        };
        let mut out = String::new();
        out.push_str(&p.paint("1", &clean(&run.name)));
        if let Some(ms) = run.duration_ms {
            out.push(' ');
            out.push_str(&p.paint("2", &format!("({ms:.1}ms)")));
        }
        if run.total_tokens > 0 {
            out.push(' ');
            out.push_str(&p.paint("2", &format!("[{} tokens]", run.total_tokens)));
        }
        if run.total_cost_usd > 0.0 {
            out.push(' ');
            out.push_str(&p.paint("2", &format!("[${:.4}]", run.total_cost_usd)));
        }
        if run.has_run_error() {
            out.push(' ');
            out.push_str(&p.error(run.error.as_deref(), run.error_type.as_deref()));
        }
        out.push('\n');
        if self.verbose {
            self.value_line(&mut out, &p, "", "input", &run.input);
            self.value_line(&mut out, &p, "", "output", &run.output);
        }
        // Depth-first without recursion: (step, prefix of its line, is last sibling).
        let mut stack: Vec<(&Step, String, bool)> = Vec::new();
        let n = run.steps.len();
        for (i, s) in run.steps.iter().enumerate().rev() {
            stack.push((s, String::new(), i + 1 == n));
        }
        while let Some((step, prefix, last)) = stack.pop() {
            out.push_str(&prefix);
            out.push_str(if last { "└── " } else { "├── " });
            self.step_label(&mut out, &p, step);
            out.push('\n');
            let child_prefix = format!("{prefix}{}", if last { "    " } else { "│   " });
            if self.verbose {
                if !step.inputs.is_empty() {
                    let v = Value::Object(step.inputs.clone());
                    self.value_line(&mut out, &p, &child_prefix, "inputs", &v);
                }
                if !step.outputs.is_empty() {
                    let v = Value::Object(step.outputs.clone());
                    self.value_line(&mut out, &p, &child_prefix, "outputs", &v);
                }
            }
            let n = step.children.len();
            for (i, c) in step.children.iter().enumerate().rev() {
                stack.push((c, child_prefix.clone(), i + 1 == n));
            }
        }
        out
    }

    fn step_label(&self, out: &mut String, p: &Painter, step: &Step) {
        out.push_str(&p.paint(type_style(step.step_type), step.step_type.as_str()));
        out.push(' ');
        out.push_str(&clean(&step.name));
        if let Some(model) = &step.model_name {
            out.push(' ');
            out.push_str(&p.paint("2", &format!("({})", clean(model))));
        }
        if let Some(ms) = step.duration_ms {
            out.push(' ');
            out.push_str(&p.paint("2", &format!("{ms:.1}ms")));
        }
        if step.input_tokens.is_some() || step.output_tokens.is_some() {
            let (i, o) = (
                step.input_tokens.unwrap_or(0),
                step.output_tokens.unwrap_or(0),
            );
            out.push(' ');
            out.push_str(&p.paint("2", &format!("[{i}/{o} tokens]")));
        }
        if let Some(cost) = step.cost_usd.filter(|c| *c > 0.0) {
            out.push(' ');
            out.push_str(&p.paint("2", &format!("[${cost:.4}]")));
        }
        if step.has_error() {
            out.push(' ');
            out.push_str(&p.error(step.error.as_deref(), step.error_type.as_deref()));
        }
    }

    fn value_line(&self, out: &mut String, p: &Painter, prefix: &str, label: &str, v: &Value) {
        if v.is_null() {
            return;
        }
        let text = truncate(&clean(&v.to_string()), self.max_value_len);
        out.push_str(prefix);
        out.push_str(&p.paint("2", &format!("  {label}: {text}")));
        out.push('\n');
    }
}

struct Painter {
    color: bool,
}

impl Painter {
    fn paint(&self, style: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{style}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn error(&self, message: Option<&str>, error_type: Option<&str>) -> String {
        let t = error_type.map(clean).unwrap_or_default();
        let m = message.map(clean).unwrap_or_default();
        let text = if t.is_empty() {
            format!("ERROR: {m}")
        } else {
            format!("ERROR({t}): {m}")
        };
        self.paint("31", text.trim_end())
    }
}

fn type_style(t: StepType) -> &'static str {
    match t {
        StepType::Agent => "1;36",
        StepType::Llm => "1;32",
        StepType::Tool => "1;33",
        StepType::Retrieval => "1;34",
        StepType::Memory => "1;35",
        StepType::Guardrail => "1;37",
        StepType::Evaluation => "1",
        StepType::Workflow => "2",
        StepType::Error => "1;31",
    }
}

/// Escapes control characters (ANSI escapes, newlines) so captured text cannot restyle or
/// rewrite the terminal.
fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}

fn io_error(e: &std::io::Error) -> ExportError {
    ExportError::Transport {
        exporter: "console".into(),
        message: format!("write failed: {}", e.kind()),
    }
}

impl Exporter for ConsoleExporter {
    fn name(&self) -> &str {
        "console"
    }

    fn export(&mut self, batch: &[ProcessedRun]) -> Result<(), ExportError> {
        if self.shut_down {
            return Err(ExportError::Shutdown {
                exporter: "console".into(),
            });
        }
        for run in batch {
            let text = self.render(run.run());
            self.writer
                .write_all(text.as_bytes())
                .map_err(|e| io_error(&e))?;
        }
        self.writer.flush().map_err(|e| io_error(&e))
    }

    fn force_flush(&mut self) -> Result<(), ExportError> {
        self.writer.flush().map_err(|e| io_error(&e))
    }

    fn shutdown(&mut self, _timeout: std::time::Duration) -> Result<(), ExportError> {
        self.shut_down = true;
        self.force_flush()
    }
}
