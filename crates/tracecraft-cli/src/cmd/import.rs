//! `tracecraft import FILE...`: AgentRun JSONL (ours or the Python package's) through the
//! configured pipeline (enrich, redact, sample), to stores, an OTLP collector, or stdout.
//!
//! Where runs go: the `--store` flags; else the configured store when the file or the
//! environment names one (`[storage] url`, `TRACECRAFT_STORAGE`); plus the `[jsonl]` export
//! and OTLP when enabled (`[otlp]`, `TRACECRAFT_OTLP_ENABLED`, `OTEL_EXPORTER_OTLP_*`, or
//! `--otlp`). With none of these, processed runs are written to stdout as JSONL.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;
use std::sync::Arc;

use tracecraft::config::{Source, StorageUrl};
use tracecraft::pipeline::Submitted;
use tracecraft_core::{ProcessedRun, TraceStore};

use super::{CliError, load_config, shown, store_flag};
use crate::{Exit, Global};

/// Arguments of `tracecraft import`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// AgentRun JSONL files (`-` for stdin). A UTF-8 byte order mark is accepted.
    #[arg(required = true, value_name = "FILE")]
    files: Vec<PathBuf>,
    /// Store processed runs here (`sqlite:PATH` or `jsonl:DIR`; repeatable), instead of the
    /// configured store. Created if missing.
    #[arg(long = "store", value_name = "URL")]
    stores: Vec<String>,
    /// Also export processed runs to this OTLP collector (overrides `otlp.endpoint`; a
    /// base URL such as `http://localhost:4318` gets `/v1/traces` for HTTP). Headers, TLS
    /// and compression come from `[otlp]` and the `OTEL_EXPORTER_OTLP_*` variables.
    #[arg(long, value_name = "ENDPOINT")]
    otlp: Option<String>,
    /// The OTLP protocol: `http/protobuf` (default), `http/json` or `grpc`.
    #[arg(long, value_name = "PROTOCOL")]
    otlp_protocol: Option<tracecraft::otlp::Protocol>,
    /// An OTLP header `name=value` (repeatable; wins over the configuration's of the same
    /// name). Prefer `OTEL_EXPORTER_OTLP_HEADERS` for credentials: flags show in `ps`.
    #[arg(long = "otlp-header", value_name = "NAME=VALUE")]
    otlp_headers: Vec<String>,
    /// Write processed runs to stdout even when stores or OTLP are configured.
    #[arg(long)]
    stdout: bool,
}

/// What happened to every run read.
#[derive(Default)]
struct Summary {
    read: u64,
    kept: u64,
    malformed: u64,
    failed: BTreeMap<String, u64>,
    dropped: BTreeMap<String, u64>,
    unreadable: Vec<String>,
}

const BATCH: usize = 256;

/// What became of one input line, computed on a worker thread.
enum Line {
    /// Kept: the run when an exporter takes it, with the worker that built it (its JSON,
    /// when stdout takes it, is in the chunk's output).
    Kept(Option<(ProcessedRun, usize)>),
    Dropped(String),
    Failed(String),
    Malformed(usize, String),
}

/// Hands the runs of an exported `batch` back to the workers that built them (`owners`), to
/// be freed there; a run whose worker is unknown is freed here.
fn free_on_workers(
    batch: &mut Vec<ProcessedRun>,
    owners: &mut Vec<usize>,
    graves: &[crossbeam_channel::Sender<Vec<ProcessedRun>>],
) {
    let mut each: Vec<Vec<ProcessedRun>> = graves.iter().map(|_| Vec::new()).collect();
    for (run, worker) in batch.drain(..).zip(owners.drain(..)) {
        if let Some(runs) = each.get_mut(worker) {
            runs.push(run);
        }
    }
    for (grave, runs) in graves.iter().zip(each) {
        if !runs.is_empty() {
            let _ = grave.send(runs);
        }
    }
}

/// A destination of processed runs, by the name its exporter reports, and how the summary
/// names it.
struct Destination {
    exporter: String,
    label: String,
    verb: &'static str,
    /// The store, for its count of runs merged into a trace it already held.
    store: Option<Arc<dyn TraceStore>>,
}

fn configure(args: &Args, global: &Global) -> Result<tracecraft::config::Loaded, CliError> {
    let mut loaded = load_config(global)?;
    if let Some(url) = args.stores.first() {
        store_flag(&mut loaded, url)?;
    }
    if let Some(endpoint) = &args.otlp {
        let otlp = &mut loaded.config.otlp;
        otlp.enabled = true;
        otlp.endpoint = None;
        otlp.base_endpoint = None;
        // A URL with a path is the traces URL; a bare base URL is completed like
        // OTEL_EXPORTER_OTLP_ENDPOINT (`/v1/traces` for HTTP).
        let base_only = endpoint
            .split_once("://")
            .is_some_and(|(_, rest)| !rest.trim_end_matches('/').contains('/'));
        if !base_only {
            otlp.endpoint = Some(endpoint.clone());
        } else {
            otlp.base_endpoint = Some(endpoint.clone());
            tracing::info!("--otlp has no path: sending to {endpoint}/v1/traces for HTTP");
        }
        loaded.flag("otlp.endpoint", "--otlp");
        loaded.flag("otlp.enabled", "--otlp");
    }
    if let Some(p) = &args.otlp_protocol {
        loaded.config.otlp.protocol = Some(*p);
        loaded.flag("otlp.protocol", "--otlp-protocol");
    }
    for h in &args.otlp_headers {
        let (name, value) = h
            .split_once('=')
            .filter(|(k, _)| !k.trim().is_empty())
            .ok_or_else(|| CliError("--otlp-header: expected NAME=VALUE".into()))?;
        let headers = &mut loaded.config.otlp.headers;
        headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name.trim()));
        headers.push((name.trim().to_owned(), value.to_owned()));
        loaded.flag(&format!("otlp.headers.{}", name.trim()), "--otlp-header");
    }
    loaded.config.validate()?;
    Ok(loaded)
}

/// Opens every input before anything is created, so that an import whose inputs are all
/// unreadable creates no store; unreadable ones are reported and counted.
fn open_inputs(
    files: &[PathBuf],
    summary: &mut Summary,
) -> Vec<(PathBuf, Option<u64>, Box<dyn Read + Send>)> {
    let mut inputs = Vec::new();
    for file in files {
        if file.as_os_str() == "-" {
            inputs.push((
                file.clone(),
                None,
                Box::new(std::io::stdin()) as Box<dyn Read + Send>,
            ));
            continue;
        }
        match std::fs::File::open(file) {
            Ok(f) => {
                let size = f.metadata().ok().map(|m| m.len());
                inputs.push((file.clone(), size, Box::new(f)));
            }
            Err(e) => {
                let msg = format!("cannot read {}: {e}", file.display());
                tracing::error!("{msg}");
                summary.unreadable.push(msg);
            }
        }
    }
    inputs
}

fn progress_bar(total: Option<u64>) -> Option<indicatif::ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = match total {
        Some(bytes) => {
            let bar = indicatif::ProgressBar::new(bytes);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, ETA {eta}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        }
        None => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {bytes} read ({bytes_per_sec}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            bar
        }
    };
    Some(bar)
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let loaded = configure(&args, global)?;
    let config = &loaded.config;
    let mut summary = Summary::default();
    let inputs = open_inputs(&args.files, &mut summary);
    if inputs.is_empty() {
        return Err(CliError(format!(
            "nothing imported: {}",
            summary.unreadable.join("; ")
        )));
    }

    let mut builder = config.pipeline_config().builder()?;
    let mut stores: Vec<Arc<dyn TraceStore>> = Vec::new();
    let mut destinations: Vec<Destination> = Vec::new();
    let configured_store = !matches!(loaded.source("storage.url"), Source::Default);
    let urls: Vec<String> = if !args.stores.is_empty() {
        args.stores.clone()
    } else if configured_store && config.storage.url != StorageUrl::None {
        vec![config.storage.url.to_string()]
    } else {
        Vec::new()
    };
    for url in &urls {
        let mut storage = config.storage.clone();
        storage.url =
            StorageUrl::parse(url).map_err(|e| CliError(format!("--store {url}: {e}")))?;
        let store = tracecraft::open_store(&storage)
            .map_err(|e| CliError(format!("store {url}: {e}")))?
            .ok_or_else(|| CliError(format!("store {url}: stores nothing")))?;
        destinations.push(Destination {
            exporter: store.name().to_owned(),
            label: url.clone(),
            verb: "stored in",
            store: Some(Arc::clone(&store)),
        });
        builder = builder.exporter(Arc::clone(&store));
        stores.push(store);
    }
    if config.jsonl.enabled {
        let mut storage = config.storage.clone();
        let dir = config.jsonl.path.clone().unwrap_or_else(|| "traces".into());
        storage.url = StorageUrl::Jsonl(dir);
        let label = storage.url.to_string();
        let store = tracecraft::open_store(&storage)?
            .ok_or_else(|| CliError("jsonl export: stores nothing".into()))?;
        destinations.push(Destination {
            exporter: store.name().to_owned(),
            label,
            verb: "stored in",
            store: Some(Arc::clone(&store)),
        });
        builder = builder.exporter(Arc::clone(&store));
        stores.push(store);
    }
    let mut otlp_stats = None;
    if config.otlp.enabled {
        // Synchronous: the import waits for each batch to reach the collector.
        let exporter = tracecraft::open_otlp_export(config)
            .map_err(|e| CliError(format!("otlp ({}): {e}", loaded.source("otlp.endpoint"))))?
            .ok_or_else(|| CliError("otlp: OTLP export is disabled".into()))?;
        otlp_stats = Some(exporter.stats_handle());
        destinations.push(Destination {
            exporter: tracecraft_core::Exporter::name(&exporter).to_owned(),
            label: exporter.endpoint().to_string(),
            verb: "exported to",
            store: None,
        });
        builder = builder.exporter(exporter);
    }
    let to_stdout = args.stdout || destinations.is_empty();
    let exporting = !destinations.is_empty();
    let pipeline = builder.build()?;

    let total: Option<u64> = inputs.iter().map(|(_, size, _)| *size).sum();
    let progress = progress_bar(total);
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut batch: Vec<ProcessedRun> = Vec::with_capacity(BATCH);
    // The worker that built each run of `batch`.
    let mut owners: Vec<usize> = Vec::with_capacity(BATCH);
    let mut write_error: Option<String> = None;
    let names: Vec<PathBuf> = inputs.iter().map(|(f, _, _)| f.clone()).collect();
    let mut readers = inputs.into_iter().map(|(_, _, reader)| {
        let reader: Box<dyn Read + Send> = match &progress {
            Some(bar) => Box::new(bar.wrap_read(reader)),
            None => reader,
        };
        crate::parallel::Chunks::new(reader)
    });
    // Chunks of whole lines, from one file after the other: (file, first line, bytes).
    let mut current = readers.next().map(|r| (0usize, 1u64, r));
    let next = || -> Result<Option<(usize, u64, Vec<u8>)>, CliError> {
        while let Some((file, line, reader)) = current.as_mut() {
            let chunk = reader
                .next_chunk(&mut |_| false)
                .map_err(|e| CliError(format!("cannot read {}: {e}", names[*file].display())))?;
            match chunk {
                Some(c) => {
                    let first = *line;
                    *line += memchr::memchr_iter(b'\n', &c).count() as u64
                        + u64::from(!c.ends_with(b"\n"));
                    return Ok(Some((*file, first, c)));
                }
                None => {
                    let file = *file + 1;
                    current = readers.next().map(|r| (file, 1u64, r));
                }
            }
        }
        Ok(None)
    };
    // On the workers: parse and process each line; the JSON for stdout is written there too.
    // The JSON lines of a chunk's kept runs go into one buffer, written out at once: one
    // allocation per chunk, not one per run (a `String` per run, allocated on a worker and
    // freed on the writing thread, took 160 MB for 16 MB of small runs).
    // Written buffers go back to the workers: each keeps the capacity a chunk's output needed,
    // so buffers are not grown again (and the grown-out ones freed) chunk after chunk.
    let (spare_tx, spare_rx) = crossbeam_channel::unbounded::<Vec<u8>>();
    // Exported runs are freed on the worker that built them: once a batch is exported, the
    // writing thread sends each worker its runs back, and the worker frees them before its
    // next chunk. Memory freed on another thread than the one that allocated it costs the
    // allocator about twice as much (a 2,000-run import into SQLite spent 250 M instructions
    // of its writing thread freeing runs, against ~110 M on the workers).
    let workers = crate::parallel::workers();
    let (graves_tx, graves_rx): (Vec<_>, Vec<_>) = (0..workers)
        .map(|_| crossbeam_channel::unbounded::<Vec<ProcessedRun>>())
        .unzip();
    let worker_threads = std::sync::Mutex::new(Vec::<std::thread::ThreadId>::new());
    let worker_index = || -> usize {
        let me = std::thread::current().id();
        let mut known = worker_threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        known.iter().position(|t| *t == me).unwrap_or_else(|| {
            known.push(me);
            known.len() - 1
        })
    };
    let work = |(file, first, chunk): (usize, u64, Vec<u8>)| -> (Vec<Line>, Vec<u8>) {
        let me = worker_index();
        if let Some(grave) = graves_rx.get(me) {
            while let Ok(runs) = grave.try_recv() {
                drop(runs);
            }
        }
        let mut lines = Vec::new();
        let mut json = spare_rx.try_recv().unwrap_or_default();
        // Line by line; the chunk's bytes are freed once its last line is parsed, before
        // that run is processed: a run of many megabytes (one line, one chunk) is not held
        // a third time while it is redacted and written out.
        let ends: Vec<usize> = memchr::memchr_iter(b'\n', &chunk)
            .map(|i| i + 1)
            .chain((!chunk.ends_with(b"\n")).then_some(chunk.len()))
            .collect();
        let mut chunk = Some(chunk);
        let mut from = 0;
        for (i, &end) in ends.iter().enumerate() {
            let n = first + i as u64;
            let Some(bytes) = chunk.as_deref().map(|c| &c[from..end]) else {
                break;
            };
            from = end;
            let mut bytes = bytes.trim_ascii();
            if n == 1 {
                bytes = bytes
                    .strip_prefix(b"\xEF\xBB\xBF".as_slice())
                    .unwrap_or(bytes)
                    .trim_ascii();
            }
            if bytes.is_empty() {
                continue;
            }
            let line_len = bytes.len();
            let parsed = tracecraft_core::json::parse_run_slice(bytes);
            if i + 1 == ends.len() {
                chunk = None;
            }
            let run = match parsed {
                Ok(run) => run,
                Err(e) => {
                    lines.push(Line::Malformed(file, e.at_line(n).to_string()));
                    continue;
                }
            };
            lines.push(match pipeline.process(run) {
                Submitted::Exported(p) => {
                    if to_stdout {
                        // A run's JSON out is about as long as its line in: room for it at
                        // once, rather than doublings whose freed blocks the allocator keeps
                        // resident a while (a 32 MB run).
                        if line_len > 1 << 20 {
                            json.reserve(line_len + (line_len >> 4));
                        }
                        tracecraft_core::json::write_json(&mut json, p.run());
                        json.push(b'\n');
                    }
                    // With nothing to export to, the run is freed here, on the worker that
                    // built it, not carried to the writing thread.
                    Line::Kept(exporting.then_some((p, me)))
                }
                Submitted::Dropped(reason) => Line::Dropped(reason),
                Submitted::Failed { processor } => Line::Failed(processor),
            });
        }
        (lines, json)
    };
    let sink = |(lines, mut json): (Vec<Line>, Vec<u8>)| -> Result<(), CliError> {
        if write_error.is_none()
            && let Err(e) = out.write_all(&json)
        {
            write_error = Some(format!("stdout: {e}"));
        }
        json.clear();
        let _ = spare_tx.send(json);
        for line in lines {
            summary.read += 1;
            match line {
                Line::Kept(p) => {
                    summary.kept += 1;
                    if let Some((p, worker)) = p {
                        batch.push(p);
                        owners.push(worker);
                        if batch.len() >= BATCH {
                            pipeline.export(&batch);
                            free_on_workers(&mut batch, &mut owners, &graves_tx);
                        }
                    }
                }
                Line::Dropped(reason) => *summary.dropped.entry(reason).or_default() += 1,
                Line::Failed(processor) => *summary.failed.entry(processor).or_default() += 1,
                Line::Malformed(file, e) => {
                    summary.malformed += 1;
                    let msg = shown(&format!(
                        "tracecraft: {}: {e}; skipped",
                        names[file].display()
                    ));
                    match &progress {
                        Some(bar) => bar.println(msg),
                        None => eprintln!("{msg}"),
                    }
                }
            }
        }
        Ok(())
    };
    let read_result = crate::parallel::ordered(workers, next, work, sink);
    pipeline.export(&batch);
    batch.clear();
    if let Err(e) = read_result {
        summary.unreadable.push(e.0);
    }
    if let Err(e) = out.flush()
        && write_error.is_none()
    {
        write_error = Some(format!("stdout: {e}"));
    }
    drop(out);
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    // Stores buffer: their flush errors count as failures of every run they were handed.
    let mut flush_errors = Vec::new();
    for store in &stores {
        if let Err(e) = store.flush() {
            flush_errors.push(format!("{}: {e}", store.name()));
        }
    }
    // Closes the OTLP connection (every batch was already sent synchronously).
    let shutdown = pipeline.shutdown(std::time::Duration::from_secs(30));
    let stats = pipeline.stats();
    let mut partial = summary.malformed > 0
        || !summary.failed.is_empty()
        || !summary.unreadable.is_empty()
        || write_error.is_some()
        || !flush_errors.is_empty()
        || !shutdown.is_clean();
    let mut lines = Vec::new();
    let dropped_total: u64 = summary.dropped.values().sum();
    let failed_total: u64 = summary.failed.values().sum();
    let reasons = |map: &BTreeMap<String, u64>| {
        map.iter()
            .map(|(r, n)| format!("{r}: {n}"))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let mut head = format!(
        "tracecraft import: {} read, {} kept, {} dropped",
        summary.read, summary.kept, dropped_total
    );
    if dropped_total > 0 {
        head.push_str(&format!(" ({})", reasons(&summary.dropped)));
    }
    head.push_str(&format!(", {failed_total} failed"));
    if failed_total > 0 {
        head.push_str(&format!(" (processor {})", reasons(&summary.failed)));
    }
    head.push_str(&format!(", {} malformed", summary.malformed));
    lines.push(head);
    for d in &destinations {
        let ok = stats.exported.get(&d.exporter).copied().unwrap_or(0);
        let bad = stats.export_failed.get(&d.exporter).copied().unwrap_or(0);
        let mut line = format!("  {ok} {} {}", d.verb, d.label);
        // Runs whose trace id the store already held (or that came twice) are merged into
        // that trace (the store contract), so the store gained fewer traces than it took.
        if let Some(merged) = d.store.as_ref().map(|s| s.merged()).filter(|&m| m > 0) {
            line.push_str(&format!(" ({merged} merged into existing traces)"));
        }
        if bad > 0 {
            partial = true;
            let not = if d.verb == "stored in" {
                "not stored"
            } else {
                "not exported"
            };
            for (cause, n) in stats
                .export_failure_causes
                .get(&d.exporter)
                .into_iter()
                .flatten()
            {
                line.push_str(&format!("; {n} {not}: {cause}"));
            }
        }
        lines.push(line);
    }
    // Requests the collector did not take are spooled (counted above as exported): say so.
    if let Some(spool) = otlp_stats.map(|h| h.get().spool)
        && (spool.spooled_batches + spool.resent_batches + spool.evicted_batches) > 0
    {
        lines.push(format!(
            "  OTLP spool: {} spans in {} requests spooled for later delivery, {} spans re-sent, {} spans evicted (tracecraft spool status)",
            spool.spooled_spans, spool.spooled_batches, spool.resent_spans, spool.evicted_spans
        ));
    }
    if to_stdout {
        lines.push(format!(
            "  {} written to stdout",
            if write_error.is_some() {
                0
            } else {
                summary.kept
            }
        ));
    }
    for e in summary
        .unreadable
        .iter()
        .chain(write_error.iter())
        .chain(flush_errors.iter())
    {
        lines.push(format!("  error: {e}"));
    }
    for (exporter, e) in &shutdown.errors {
        lines.push(format!("  error: {exporter} shutdown: {e}"));
    }
    for line in lines {
        eprintln!("{}", shown(&line));
    }
    Ok(if partial { Exit::Partial } else { Exit::Done })
}
