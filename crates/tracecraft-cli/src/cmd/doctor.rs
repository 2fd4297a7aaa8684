//! `tracecraft doctor`: the security guide's production checklist, checked against the
//! effective configuration (file, environment), the stores it names and the current directory.
//!
//! One line per item: PASS, WARN or FAIL, what was found (never a value), and the fix. Exit 1
//! when any item fails, 0 otherwise; 2 when the configuration cannot be loaded.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use tracecraft::config::{Loaded, Source, StorageUrl};
use tracecraft::pipeline::ProcessorOrder;
use tracecraft_redact::{BuildError, CustomRule, RedactionConfig, RedactionMode, Redactor, Report};

use super::{CliError, load_config, shown};
use crate::{Exit, Global};

/// Arguments of `tracecraft doctor`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Machine-readable output: a JSON array of `{check, status, detail, fix}`.
    #[arg(long)]
    json: bool,
}

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Status {
    Pass,
    Warn,
    Fail,
}

impl Status {
    fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

struct Check {
    name: &'static str,
    status: Status,
    detail: String,
    fix: String,
}

fn check(
    name: &'static str,
    status: Status,
    detail: impl Into<String>,
    fix: impl Into<String>,
) -> Check {
    Check {
        name,
        status,
        detail: detail.into(),
        fix: fix.into(),
    }
}

/// Custom rules below this throughput (on adversarial text of their own alphabet) are
/// reported: the engine is linear, but a large automaton can still be slow.
const CUSTOM_RULE_BUDGET_MBPS: f64 = 50.0;

fn redaction_checks(loaded: &Loaded, out: &mut Vec<Check>) {
    let r = &loaded.config.redaction;
    out.push(if r.enabled {
        check("redaction enabled", Status::Pass, "redaction is on", "")
    } else {
        check(
            "redaction enabled",
            Status::Fail,
            format!(
                "redaction is disabled ({})",
                loaded.source("redaction.enabled")
            ),
            "remove `enabled = false` from [redaction] and unset TRACECRAFT_REDACTION_ENABLED",
        )
    });
    out.push(match (r.mode, &r.hash_key) {
        (RedactionMode::Hash, Some(k)) if k.is_unkeyed() => check(
            "hash mode keyed",
            Status::Fail,
            "hash mode is unkeyed (plain SHA-256: phone numbers and SSNs can be brute-forced)",
            "set TRACECRAFT_REDACTION_HASH_KEY to a random secret of 32+ bytes",
        ),
        (RedactionMode::Hash, None) => check(
            "hash mode keyed",
            Status::Fail,
            "hash mode has no key",
            "set TRACECRAFT_REDACTION_HASH_KEY to a random secret of 32+ bytes",
        ),
        (RedactionMode::Hash, Some(_)) => check(
            "hash mode keyed",
            Status::Pass,
            "hash mode uses a keyed HMAC",
            "",
        ),
        _ => check(
            "hash mode keyed",
            Status::Pass,
            format!("mode is {}", r.mode.as_str()),
            "",
        ),
    });
    out.push(if !r.include_defaults {
        check(
            "built-in rules",
            Status::Fail,
            "the 17 built-in rules are off (include_defaults = false)",
            "remove include_defaults = false; turn off single rules with `disable` instead",
        )
    } else if !r.disable.is_empty() {
        check(
            "built-in rules",
            Status::Warn,
            format!("built-in rules turned off: {}", r.disable.join(", ")),
            "keep every built-in rule unless a measured false positive requires otherwise; use an allowlist for known-safe values",
        )
    } else {
        check("built-in rules", Status::Pass, "all built-in rules are on", "")
    });
    custom_rule_checks(r, out);
    out.push(match loaded.config.processor_order {
        ProcessorOrder::Safety => check(
            "processor order",
            Status::Pass,
            "SAFETY: enrich -> redact -> sample",
            "",
        ),
        _ => check(
            "processor order",
            Status::Warn,
            "EFFICIENCY: sampling decides before enrichment (tokens counted on redacted text)",
            "set processor_order = \"safety\" unless sampling cost matters more",
        ),
    });
    allowlist_check(r, out);
    out.push(match (r.pseudonymize.is_empty(), &r.hash_key) {
        (true, _) => check(
            "identifiers pseudonymized",
            Status::Warn,
            "pseudonymize = []: user and session ids are masked, so per-person requests cannot be answered",
            "set [redaction] pseudonymize = [\"user_id\", \"session_id\"] and a hash key",
        ),
        (false, None) => check(
            "identifiers pseudonymized",
            Status::Warn,
            format!("{} are masked, not pseudonymized: no hash key", r.pseudonymize.join(", ")),
            "set TRACECRAFT_REDACTION_HASH_KEY to a random secret of 32+ bytes",
        ),
        (false, Some(k)) if k.is_unkeyed() => check(
            "identifiers pseudonymized",
            Status::Fail,
            "identifiers are hashed without a key: emails and phone numbers can be recovered by guessing",
            "set TRACECRAFT_REDACTION_HASH_KEY to a random secret of 32+ bytes",
        ),
        (false, Some(_)) => check(
            "identifiers pseudonymized",
            Status::Pass,
            format!("{} stored as keyed pseudonyms", r.pseudonymize.join(", ")),
            "",
        ),
    });
}

fn custom_rule_checks(r: &RedactionConfig, out: &mut Vec<Check>) {
    if r.custom_rules.is_empty() {
        out.push(check("custom rules", Status::Pass, "no custom rules", ""));
        return;
    }
    for rule in &r.custom_rules {
        // The rule alone, as configured: the build-time speed check applies unless the rule
        // sets `allow_slow`, and an accepted rule is then measured.
        let alone = |allow_slow: bool| RedactionConfig {
            include_defaults: false,
            custom_rules: vec![CustomRule {
                allow_slow,
                ..rule.clone()
            }],
            sensitive_keys: Some(Vec::new()),
            ..RedactionConfig::default()
        };
        let name = rule.name.clone();
        match Redactor::new(&alone(rule.allow_slow)) {
            Err(e @ BuildError::TooSlow { .. }) => out.push(check(
                "custom rules",
                Status::Fail,
                format!("{e}"),
                "bound its repetitions ({1,100} rather than {1,1000}) or anchor it on a literal prefix; `allow_slow = true` accepts it as it is",
            )),
            Err(e) => out.push(check(
                "custom rules",
                Status::Fail,
                format!("rule `{name}` does not compile: {e}"),
                "fix the pattern (no look-around or backreferences)",
            )),
            Ok(engine) => {
                // Growing probes, stopped as soon as one takes long: a pathological rule
                // is reported in a fraction of a second instead of hanging the doctor.
                // The slowest probe, and the same probe through the 17 built-in rules in this
                // process: a rule is slow when it is below the budget *and* well below what
                // the built-ins manage here (so a debug build or a loaded machine does not
                // flag every rule).
                let builtins = Redactor::new(&RedactionConfig::default()).ok();
                let mut mbps = f64::INFINITY;
                let mut reference = f64::INFINITY;
                for text in tracecraft_redact::probe_texts(&rule.pattern) {
                    let (rate, probed) = throughput(&engine, &text);
                    if rate < mbps {
                        mbps = rate;
                        reference = builtins
                            .as_ref()
                            .map_or(f64::INFINITY, |b| throughput(b, &text[..probed]).0);
                    }
                }
                out.push(if mbps < CUSTOM_RULE_BUDGET_MBPS && mbps * 4.0 < reference {
                    check(
                        "custom rules",
                        Status::Warn,
                        format!("rule `{name}` runs at {mbps:.0} MB/s on adversarial text (budget {CUSTOM_RULE_BUDGET_MBPS:.0} MB/s; accepted with `allow_slow`)"),
                        "bound its repetitions ({1,100} rather than {1,1000}) or anchor it on a literal prefix",
                    )
                } else {
                    check("custom rules", Status::Pass, format!("rule `{name}` runs at {mbps:.0} MB/s"), "")
                });
            }
        }
    }
}

/// MB/s of `engine` on growing prefixes of `text` (1 KiB, 8 KiB, 64 KiB), stopping after the
/// first that takes over 100 ms; returns the rate of the last prefix and its length.
fn throughput(engine: &Redactor, text: &str) -> (f64, usize) {
    let mut result = (f64::INFINITY, 0);
    for size in [1 << 10, 8 << 10, 64 << 10] {
        let probe = &text[..size.min(text.len())];
        let start = Instant::now();
        let _ = engine.redact_str(probe, &mut Report::default());
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        result = (probe.len() as f64 / secs / 1e6, probe.len());
        if secs > 0.1 {
            break;
        }
    }
    result
}

/// Domains reserved for examples (RFC 2606 / 6761): allowlisting them is harmless.
fn is_example_email(value: &str) -> bool {
    let domain = value.rsplit('@').next().unwrap_or("").to_ascii_lowercase();
    [
        "example.com",
        "example.org",
        "example.net",
        "test",
        "invalid",
        "localhost",
        "example",
    ]
    .iter()
    .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
}

fn allowlist_check(r: &RedactionConfig, out: &mut Vec<Check>) {
    let Ok(engine) = Redactor::new(&RedactionConfig::default()) else {
        return;
    };
    let mut suspicious = Vec::new();
    for (i, entry) in r.allowlist.iter().enumerate() {
        for f in engine.explain(entry) {
            let looks_real = match f.rule.as_str() {
                "email" => !is_example_email(entry),
                _ => true,
            };
            if looks_real {
                suspicious.push(format!("allowlist[{i}] looks like a real {}", f.rule));
                break;
            }
        }
    }
    out.push(if suspicious.is_empty() {
        check("allowlist", Status::Pass, format!("{} entr(y/ies), none look like production data", r.allowlist.len()), "")
    } else {
        check(
            "allowlist",
            Status::Warn,
            suspicious.join("; "),
            "allowlist patterns of test data (example.com, fixed test keys), not real customers' values or live keys",
        )
    });
}

fn credentials_check(loaded: &Loaded, out: &mut Vec<Check>) {
    let mut literal = Vec::new();
    if let Source::File { path, line } = loaded.source("redaction.hash_key")
        && loaded
            .config
            .redaction
            .hash_key
            .as_ref()
            .is_some_and(|k| !k.is_unkeyed())
    {
        literal.push(format!("redaction.hash_key at {}:{line}", path.display()));
    }
    for (name, _) in &loaded.config.otlp.headers {
        if let Source::File { path, line } = loaded.source(&format!("otlp.headers.{name}")) {
            literal.push(format!("otlp.headers.{name} at {}:{line}", path.display()));
        }
    }
    out.push(if literal.is_empty() {
        check("credentials not in the file", Status::Pass, "no credential written in the configuration file", "")
    } else {
        check(
            "credentials not in the file",
            Status::Fail,
            format!("written literally: {}", literal.join(", ")),
            "move them to the environment (TRACECRAFT_REDACTION_HASH_KEY, OTEL_EXPORTER_OTLP_HEADERS) from your secret store",
        )
    });
}

fn mode_of(path: &Path) -> Option<u32> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .ok()
            .map(|m| m.permissions().mode() & 0o7777)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        None
    }
}

/// The files and directories a store is made of, and the directory to check with git.
fn store_paths(url: &StorageUrl) -> Option<(Vec<PathBuf>, PathBuf)> {
    match url {
        StorageUrl::Sqlite(p) => {
            let files = ["", "-wal", "-shm"]
                .iter()
                .map(|s| {
                    let mut o = p.clone().into_os_string();
                    o.push(s);
                    PathBuf::from(o)
                })
                .filter(|p| p.exists())
                .collect();
            let dir = p
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .map_or_else(|| PathBuf::from("."), Path::to_path_buf);
            Some((files, dir))
        }
        StorageUrl::Jsonl(d) => {
            let mut paths = vec![d.clone()];
            if let Ok(entries) = std::fs::read_dir(d) {
                paths.extend(entries.flatten().map(|e| e.path()).filter(|p| p.is_file()));
            }
            Some((paths, d.clone()))
        }
        _ => None,
    }
}

fn storage_checks(loaded: &Loaded, out: &mut Vec<Check>) {
    let storage = &loaded.config.storage;
    let Some((paths, dir)) = store_paths(&storage.url) else {
        out.push(check(
            "storage permissions",
            Status::Pass,
            "no store (storage.url = none)",
            "",
        ));
        return;
    };
    let existing: Vec<&PathBuf> = paths.iter().filter(|p| p.exists()).collect();
    if existing.is_empty() {
        out.push(check(
            "storage permissions",
            Status::Pass,
            format!(
                "{} does not exist yet (it will be created 0600 / 0700)",
                storage.url
            ),
            "",
        ));
    } else {
        let loose: Vec<String> = existing
            .iter()
            .filter_map(|p| {
                let mode = mode_of(p)?;
                let allowed = if p.is_dir() { 0o700 } else { 0o600 };
                (mode & !allowed != 0).then(|| format!("{} is {mode:o}", p.display()))
            })
            .collect();
        out.push(if loose.is_empty() {
            check("storage permissions", Status::Pass, format!("{}: files 0600, directories 0700", storage.url), "")
        } else {
            check(
                "storage permissions",
                Status::Fail,
                loose.join(", "),
                "chmod 600 the files and 700 the store directory, or set [storage] permissions = \"tighten\"",
            )
        });
    }
    // Inside a git repository, the trace directory must be ignored.
    let inside = std::process::Command::new("git")
        .args(["rev-parse", "--is-inside-work-tree"])
        .output()
        .is_ok_and(|o| o.status.success());
    if inside {
        let target = paths.first().cloned().unwrap_or(dir.clone());
        let ignored = std::process::Command::new("git")
            .args(["check-ignore", "-q", "--no-index"])
            .arg(&target)
            .status()
            .is_ok_and(|s| s.success());
        out.push(if ignored {
            check(
                "traces ignored by git",
                Status::Pass,
                format!("{} is ignored", target.display()),
                "",
            )
        } else {
            check(
                "traces ignored by git",
                Status::Fail,
                format!(
                    "{} is inside a git repository and not ignored",
                    target.display()
                ),
                format!("add `{}/` to .gitignore", dir.display()),
            )
        });
    } else {
        out.push(check(
            "traces ignored by git",
            Status::Pass,
            "not inside a git repository",
            "",
        ));
    }
    out.push(match storage.max_age() {
        Some(age) => check(
            "retention",
            Status::Pass,
            format!("runs are kept {}", humantime::format_duration(age)),
            "",
        ),
        None => check(
            "retention",
            Status::Warn,
            "no retention: runs are kept forever",
            "set [storage] retention = \"90d\" to keep only what you need (GDPR minimization); the runtime and the gateway apply it in the background",
        ),
    });
    // Opened without retention: the doctor looks, it does not purge.
    let mut look = storage.clone();
    look.retention_days = None;
    look.retention = None;
    if let Some(age) = storage.max_age()
        && let Ok(Some(store)) = tracecraft::open_existing_store(&look)
    {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
        let old = store
            .count(&tracecraft_core::TraceQuery::new().started(None, Some(cutoff)))
            .unwrap_or(0);
        if old > 0 {
            out.push(check(
                "retention applied",
                Status::Warn,
                format!(
                    "{old} run(s) older than the retention ({}) are stored",
                    humantime::format_duration(age)
                ),
                "run `tracecraft traces purge --older-than AGE`, or keep a runtime or gateway running (they apply retention in the background)",
            ));
        }
    }
}

fn is_loopback_url(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let host = rest.split(['/', '?']).next().unwrap_or("");
    let host = if let Some(v6) = host.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    host == "localhost"
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|a| a.is_loopback())
}

fn otlp_check(loaded: &Loaded, out: &mut Vec<Check>) {
    let otlp = &loaded.config.otlp;
    if !otlp.enabled {
        out.push(check(
            "OTLP over TLS",
            Status::Pass,
            "OTLP export is off",
            "",
        ));
        return;
    }
    let url = otlp
        .endpoint
        .clone()
        .or_else(|| otlp.base_endpoint.clone())
        .unwrap_or_else(|| "http://localhost:4318/v1/traces".into());
    out.push(if url.starts_with("https://") || is_loopback_url(&url) {
        check("OTLP over TLS", Status::Pass, "the collector is reached over TLS or on this machine", "")
    } else {
        check(
            "OTLP over TLS",
            Status::Fail,
            "the OTLP endpoint is plain http:// to another host: redacted runs and headers travel in clear",
            "use an https:// endpoint (and otlp.ca_file for a private CA)",
        )
    });
}

/// The gateway (`tracecraft serve`) bound to loopback, or protected by TLS and tokens.
fn gateway_check(loaded: &Loaded, out: &mut Vec<Check>) {
    let g = &loaded.config.gateway;
    let exposed: Vec<String> = [g.grpc, g.http]
        .into_iter()
        .flatten()
        .filter(|a| !a.ip().is_loopback())
        .map(|a| a.to_string())
        .collect();
    out.push(if exposed.is_empty() {
        check(
            "gateway exposure",
            Status::Pass,
            "the gateway binds loopback only",
            "",
        )
    } else if g.tls.is_some() && !g.tokens.is_empty() {
        check(
            "gateway exposure",
            Status::Pass,
            format!("{} served over TLS with bearer tokens", exposed.join(", ")),
            "",
        )
    } else {
        check(
            "gateway exposure",
            Status::Fail,
            format!(
                "{} reachable from other hosts without {}",
                exposed.join(", "),
                match (g.tls.is_some(), g.tokens.is_empty()) {
                    (false, true) => "TLS or tokens",
                    (false, false) => "TLS",
                    _ => "tokens",
                }
            ),
            "bind 127.0.0.1, or set [gateway] tls (cert and key) and tokens",
        )
    });
}

fn checks(loaded: &Loaded) -> Vec<Check> {
    let mut out = Vec::new();
    redaction_checks(loaded, &mut out);
    credentials_check(loaded, &mut out);
    storage_checks(loaded, &mut out);
    otlp_check(loaded, &mut out);
    gateway_check(loaded, &mut out);
    out
}

pub(crate) fn run(args: Args, global: &Global) -> Result<Exit, CliError> {
    let loaded = load_config(global)?;
    let results = checks(&loaded);
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        let list: Vec<_> = results
            .iter()
            .map(|c| serde_json::json!({"check": c.name, "status": c.status.label(), "detail": shown(&c.detail), "fix": shown(&c.fix)}))
            .collect();
        writeln!(out, "{}", serde_json::Value::from(list))?;
    } else {
        for c in &results {
            writeln!(
                out,
                "{}  {:<28} {}",
                c.status.label(),
                c.name,
                shown(&c.detail)
            )?;
            if !c.fix.is_empty() && c.status != Status::Pass {
                writeln!(out, "      fix: {}", shown(&c.fix))?;
            }
        }
    }
    let worst = results
        .iter()
        .map(|c| c.status)
        .max()
        .unwrap_or(Status::Pass);
    let count = |s| results.iter().filter(|c| c.status == s).count();
    drop(out);
    eprintln!(
        "tracecraft doctor: {} pass, {} warn, {} fail",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    );
    Ok(if worst == Status::Fail {
        Exit::Partial
    } else {
        Exit::Done
    })
}
