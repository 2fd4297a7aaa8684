//! The console exporter, through a pipeline, into a shared buffer.
#![cfg(feature = "pipeline")]

use std::io::Write;
use std::sync::{Arc, Mutex};

use tracecraft::pipeline::Pipeline;
use tracecraft::{ColorMode, ConsoleExporter, Runtime, RuntimeOptions, StepType};

#[derive(Clone, Default)]
struct Buf(Arc<Mutex<Vec<u8>>>);
impl Write for Buf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
impl Buf {
    fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

fn capture(console: ConsoleExporter) -> String {
    let buf = Buf::default();
    let pipeline = Pipeline::builder()
        .without_redaction()
        .exporter(console.with_writer(buf.clone()))
        .build()
        .unwrap();
    let rt = Runtime::builder()
        .options(RuntimeOptions::default())
        .pipeline(pipeline)
        .build()
        .unwrap();
    {
        let run = rt
            .run("agent_task")
            .input(&"where is \x1b[31mmy order")
            .start();
        let plan = run.step(StepType::Agent, "plan").start();
        run.step(StepType::Llm, "call")
            .model("gpt-4", "openai")
            .input("prompt", &"x".repeat(500))
            .tokens(10, 5)
            .cost_usd(0.01)
            .output("text", "hello")
            .start()
            .end();
        let mut tool = run.step(StepType::Tool, "search").start();
        tool.fail(&std::io::Error::other("not found"));
        drop(tool);
        drop(plan);
        run.step(StepType::Evaluation, "score\x1b[2J").start().end();
    }
    rt.shutdown(std::time::Duration::from_secs(1));
    buf.text()
}

#[test]
fn prints_a_tree_without_color() {
    let out = capture(ConsoleExporter::new().color(ColorMode::Never));
    let lines: Vec<&str> = out.lines().collect();
    assert!(lines[0].starts_with("agent_task ("), "{out}");
    assert!(
        lines[0].contains("[15 tokens]") && lines[0].contains("[$0.0100]"),
        "{out}"
    );
    assert!(lines[1].starts_with("├── agent plan "), "{out}");
    assert!(lines[2].starts_with("│   ├── llm call (gpt-4) "), "{out}");
    assert!(lines[2].contains("[10/5 tokens]"), "{out}");
    assert!(lines[3].starts_with("│   └── tool search "), "{out}");
    assert!(lines[3].ends_with("ERROR(Error): not found"), "{out}");
    assert!(
        lines[4].starts_with("└── evaluation score\\u{1b}[2J "),
        "{out}"
    );
    assert_eq!(lines.len(), 5);
    assert!(!out.contains('\x1b'));
    assert!(!out.contains("xxxx"), "inputs only in verbose mode");
}

#[test]
fn verbose_truncates_and_escapes() {
    let out = capture(
        ConsoleExporter::new()
            .color(ColorMode::Never)
            .verbose(true)
            .max_value_len(20),
    );
    assert!(out.contains("  input: \"where is \\u001b[31m…"), "{out}");
    assert!(out.contains("  inputs: {\"prompt\":\"xxxxxxxxx…"), "{out}");
    assert!(out.contains("  outputs: {\"text\":\"hello\"}"), "{out}");
    assert!(!out.contains('\x1b'), "control characters are escaped");
}

#[test]
fn colors_when_asked() {
    let out = capture(ConsoleExporter::new().color(ColorMode::Always));
    assert!(out.contains("\x1b[1;32mllm\x1b[0m"), "{out}");
    assert!(
        out.contains("\x1b[31mERROR(Error): not found\x1b[0m"),
        "{out}"
    );
    // Auto with a non-terminal writer: no color.
    let out = capture(ConsoleExporter::new());
    assert!(!out.contains('\x1b'));
}

#[test]
fn console_exporter_follows_the_exporter_contract() {
    tracecraft_core::exporter_contract::run_all(|| {
        ConsoleExporter::new().with_writer(std::io::sink())
    });
}
