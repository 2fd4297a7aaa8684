//! `tracecraft import FILE...`: AgentRun JSONL (ours or the Python package's) through the
//! configured pipeline (enrich, redact, sample), to stores, an OTLP collector, or stdout.

use std::io::{BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tracecraft::config::{StorageConfig, StorageUrl, TraceCraftConfig};
use tracecraft::pipeline::Submitted;
use tracecraft_core::{ProcessedRun, TraceStore, read_jsonl};

use super::CliError;

/// Arguments of `tracecraft import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// AgentRun JSONL files (`-` for stdin).
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// A tracecraft.toml: `processor_order`, `[redaction]`, `[sampling]`, `[enrichment]` are
    /// used (environment variables apply on top).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Store processed runs here (`sqlite:PATH` or `jsonl:DIR`; repeatable). Without it,
    /// processed runs are written to stdout as JSONL.
    #[arg(long = "store", value_name = "URL")]
    stores: Vec<String>,
    /// Also export processed runs to this OTLP collector (the traces URL, used as-is; e.g.
    /// `http://localhost:4318/v1/traces`). Headers, timeout, compression and CA file come from
    /// the configuration's `[otlp]` table and the `OTEL_EXPORTER_OTLP_*` variables.
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
    /// The OTLP protocol for `--otlp`: `http/protobuf` (default) or `grpc`.
    #[arg(long, value_name = "PROTOCOL", requires = "otlp")]
    otlp_protocol: Option<String>,
}

#[derive(Default)]
struct Summary {
    read: u64,
    kept: u64,
    malformed: u64,
    failed: u64,
    dropped: std::collections::BTreeMap<String, u64>,
}

const BATCH: usize = 256;

pub(crate) fn run(args: Args) -> Result<(), CliError> {
    let mut config = match &args.config {
        Some(path) => TraceCraftConfig::from_file(path)?,
        None => TraceCraftConfig::default(),
    };
    config.apply_env()?;
    config.validate()?;
    let mut builder = config.pipeline_config().builder()?;
    let mut stores: Vec<Arc<dyn TraceStore>> = Vec::new();
    for url in &args.stores {
        let storage = StorageConfig {
            url: StorageUrl::parse(url).map_err(|e| CliError(format!("--store {url}: {e}")))?,
            ..config.storage.clone()
        };
        let store = tracecraft::open_store(&storage)?
            .ok_or_else(|| CliError(format!("--store {url}: stores nothing")))?;
        builder = builder.exporter(Arc::clone(&store));
        stores.push(store);
    }
    if let Some(endpoint) = &args.otlp {
        config.otlp.enabled = true;
        config.otlp.endpoint = Some(endpoint.clone());
        if let Some(protocol) = &args.otlp_protocol {
            config.otlp.protocol = Some(protocol.clone());
        }
        config
            .validate()
            .map_err(|e| CliError(format!("--otlp: {e}")))?;
        // Synchronous: the import waits for each batch to reach the collector.
        let exporter = tracecraft::open_otlp_export(&config)
            .map_err(|e| CliError(format!("--otlp: {e}")))?
            .ok_or_else(|| CliError("--otlp: OTLP export is disabled".into()))?;
        builder = builder.exporter(exporter);
    }
    let to_stdout = stores.is_empty() && args.otlp.is_none();
    let pipeline = builder.build()?;

    let progress = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new_spinner();
        bar.set_style(
            indicatif::ProgressStyle::with_template("{spinner} {pos} runs read ({per_sec}) {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
        );
        bar
    });
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut summary = Summary::default();
    let mut batch: Vec<ProcessedRun> = Vec::with_capacity(BATCH);
    let flush = |batch: &mut Vec<ProcessedRun>, out: &mut dyn Write| -> Result<(), CliError> {
        if to_stdout {
            for p in batch.iter() {
                writeln!(out, "{}", tracecraft_core::json::to_json(p.run()))?;
            }
        } else {
            pipeline.export(batch);
        }
        batch.clear();
        Ok(())
    };
    for file in &args.files {
        let reader: Box<dyn std::io::BufRead> = if file.as_os_str() == "-" {
            Box::new(BufReader::new(std::io::stdin()))
        } else {
            Box::new(BufReader::new(std::fs::File::open(file).map_err(|e| {
                CliError(format!("cannot read {}: {e}", file.display()))
            })?))
        };
        for (line, parsed) in read_jsonl(reader) {
            summary.read += 1;
            if let Some(bar) = &progress {
                bar.inc(1);
            }
            let run = match parsed {
                Ok(run) => run,
                Err(e) => {
                    summary.malformed += 1;
                    let e = e.at_line(line);
                    let msg = format!("tracecraft: {}: {e}; skipped", file.display());
                    match &progress {
                        Some(bar) => bar.println(msg),
                        None => eprintln!("{msg}"),
                    }
                    continue;
                }
            };
            match pipeline.process(run) {
                Submitted::Exported(p) => {
                    summary.kept += 1;
                    batch.push(p);
                    if batch.len() >= BATCH {
                        flush(&mut batch, &mut out)?;
                    }
                }
                Submitted::Dropped(reason) => *summary.dropped.entry(reason).or_default() += 1,
                Submitted::Failed { .. } => summary.failed += 1,
            }
        }
    }
    flush(&mut batch, &mut out)?;
    out.flush()?;
    drop(out);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    for store in &stores {
        store.flush()?;
    }
    let stats = pipeline.stats();
    let export_failed: u64 = stats.export_failed.values().sum();
    let dropped_total: u64 = summary.dropped.values().sum();
    let reasons = summary
        .dropped
        .iter()
        .map(|(r, n)| format!("{r}: {n}"))
        .collect::<Vec<_>>()
        .join("; ");
    eprintln!(
        "tracecraft import: {} read, {} kept, {} dropped{}, {} failed, {} malformed{}",
        summary.read,
        summary.kept,
        dropped_total,
        if reasons.is_empty() {
            String::new()
        } else {
            format!(" ({reasons})")
        },
        summary.failed,
        summary.malformed,
        if export_failed > 0 {
            format!(", {export_failed} not stored or exported")
        } else {
            String::new()
        },
    );
    // Closes the OTLP connection (every batch was already sent synchronously).
    let _ = pipeline.shutdown(std::time::Duration::from_secs(30));
    if export_failed > 0 {
        return Err(CliError(format!(
            "{export_failed} run(s) could not be stored or exported"
        )));
    }
    Ok(())
}
