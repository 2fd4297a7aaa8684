//! Runtime::builder().config(config).build(): redaction on by default, stores from config, init semantics, tenants
//! on their own SQLite files.

use std::sync::Arc;
use std::time::Duration;

use tracecraft::config::{StorageUrl, TraceCraftConfig};
use tracecraft::core::{TraceQuery, TraceStore};
use tracecraft::{InitError, Runtime, StepType};

const KEY: &str = "sk-proj-Abc123Def456Ghi789Jkl012Mno345Pqr678";

fn sqlite_config(dir: &std::path::Path, name: &str) -> TraceCraftConfig {
    let mut c = TraceCraftConfig::default();
    c.storage.url = StorageUrl::Sqlite(dir.join(name));
    c.batch.flush_interval = std::time::Duration::from_millis(20);
    c
}

fn store_text(rt: &Runtime) -> Vec<String> {
    rt.store()
        .unwrap()
        .query(&TraceQuery::new())
        .unwrap()
        .iter()
        .map(tracecraft::core::json::to_json)
        .collect()
}

#[test]
fn default_config_redacts_before_the_sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    let rt = Runtime::builder()
        .config(sqlite_config(dir.path(), "t.db"))
        .build()
        .unwrap();
    {
        let run = rt
            .run("agent")
            .user_id("alice@example.com")
            .input(&format!("key {KEY}"))
            .start();
        let mut step = run
            .step(StepType::Llm, "chat")
            .model("gpt-4o", "openai")
            .input(
                "prompt",
                &format!("email bob@example.com, password=hunter2hunter2 and {KEY}"),
            )
            .start();
        step.output("text", &"ok");
    }
    assert!(rt.shutdown(Duration::from_secs(10)).is_clean());
    let stored = store_text(&rt);
    assert_eq!(stored.len(), 1);
    for secret in [
        KEY,
        "bob@example.com",
        "hunter2hunter2",
        "alice@example.com",
    ] {
        assert!(!stored[0].contains(secret), "{secret} reached the store");
    }
    assert!(stored[0].contains("[REDACTED]"));
    assert!(stored[0].contains("tracecraft.redaction.count"));
    // The raw database file holds no secret either.
    let bytes = std::fs::read(dir.path().join("t.db")).unwrap();
    assert!(!bytes.windows(KEY.len()).any(|w| w == KEY.as_bytes()));
}

#[test]
fn redaction_off_is_explicit() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = sqlite_config(dir.path(), "t.db");
    c.redaction.enabled = false;
    let rt = Runtime::builder().config(c).build().unwrap();
    drop(rt.run("agent").input(&KEY).start());
    rt.shutdown(Duration::from_secs(10));
    assert!(store_text(&rt)[0].contains(KEY));
}

#[test]
fn invalid_configs_fail_at_build_naming_the_problem() {
    let mut c = TraceCraftConfig::default();
    c.storage.url = StorageUrl::None;
    c.sampling.rate = 3.0;
    let e = Runtime::builder().config(c).build().unwrap_err();
    assert!(e.to_string().contains("sampling.rate"), "{e}");

    let mut c = TraceCraftConfig::default();
    c.storage.url = StorageUrl::None;
    c.redaction.custom_rules = vec![tracecraft::redact::CustomRule::new("lookbehind", "(?<=x)y")];
    let e = Runtime::builder().config(c).build().unwrap_err();
    assert!(e.to_string().contains("lookbehind"), "{e}");

    let mut c = TraceCraftConfig::default();
    c.storage.url = StorageUrl::None;
    c.redaction.mode = tracecraft::redact::RedactionMode::Hash;
    assert!(
        Runtime::builder().config(c).build().is_err(),
        "hash mode without a key must be refused"
    );
}

#[test]
fn init_twice_is_an_error_and_dropping_the_handle_shuts_the_global_runtime_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = sqlite_config(dir.path(), "global.db");
    // Nothing is exported before shutdown unless the handle's drop flushes.
    c.batch.flush_interval = std::time::Duration::from_secs(3_600);
    c.service_name = Some("first".into());
    let first = tracecraft::init(c.clone()).unwrap();
    c.service_name = Some("second".into());
    assert!(matches!(
        tracecraft::init(c),
        Err(InitError::AlreadyInitialized)
    ));
    let global = tracecraft::global().unwrap();
    assert_eq!(global.options().service_name.as_deref(), Some("first"));
    {
        let _run = global.run("queued at exit").start();
    }
    // A clone of the owning handle keeps the runtime up; `global()` handles do not.
    let clone = first.clone();
    drop(first);
    assert!(!global.is_shut_down());
    drop(clone);
    assert!(
        global.is_shut_down(),
        "dropping the init handle must shut down"
    );
    let store = tracecraft::open_store(&sqlite_config(dir.path(), "global.db").storage)
        .unwrap()
        .unwrap();
    let runs = store.query(&TraceQuery::new()).unwrap();
    assert_eq!(runs.len(), 1, "the queued run was flushed by the drop");
    assert_eq!(runs[0].name, "queued at exit");
}

#[test]
fn two_tenants_on_their_own_sqlite_files_never_cross_write() {
    let dir = tempfile::tempdir().unwrap();
    let a = Runtime::builder()
        .config(sqlite_config(dir.path(), "a.db"))
        .build()
        .unwrap();
    let b = Runtime::builder()
        .config(sqlite_config(dir.path(), "b.db"))
        .build()
        .unwrap();
    let handles: Vec<_> = (0..8)
        .map(|i| {
            let rt = if i % 2 == 0 { a.clone() } else { b.clone() };
            let tenant = if i % 2 == 0 { "tenant-a" } else { "tenant-b" };
            std::thread::spawn(move || {
                for j in 0..25 {
                    let run = rt.run(tenant).start();
                    for _ in 0..3 {
                        let _s = run
                            .step(StepType::Tool, format!("{tenant}-step-{j}"))
                            .start();
                    }
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    a.shutdown(Duration::from_secs(20));
    b.shutdown(Duration::from_secs(20));
    for (rt, me, other) in [(&a, "tenant-a", "tenant-b"), (&b, "tenant-b", "tenant-a")] {
        let store: &Arc<dyn TraceStore> = rt.store().unwrap();
        let runs = store.query(&TraceQuery::new()).unwrap();
        assert_eq!(runs.len(), 100);
        for run in &runs {
            assert_eq!(run.name, me);
            assert_eq!(run.step_count(), 3);
            assert!(
                run.walk()
                    .all(|s| s.name.starts_with(me) && !s.name.contains(other))
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_tenants_in_async_tasks_on_their_own_sqlite_files() {
    use tracecraft::InRun;
    let dir = tempfile::tempdir().unwrap();
    let a = Runtime::builder()
        .config(sqlite_config(dir.path(), "a.db"))
        .build()
        .unwrap();
    let b = Runtime::builder()
        .config(sqlite_config(dir.path(), "b.db"))
        .build()
        .unwrap();
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (rt, tenant) = if i % 2 == 0 {
            (a.clone(), "tenant-a")
        } else {
            (b.clone(), "tenant-b")
        };
        tasks.push(tokio::spawn(async move {
            let run = rt.run(tenant).start();
            async {
                for j in 0..3 {
                    let _s = tracecraft::step(StepType::Tool, format!("{tenant}-step-{j}")).start();
                    tokio::task::yield_now().await; // may resume on the other worker thread
                }
            }
            .in_current_run()
            .await;
            drop(run);
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (a2, b2) = (a.clone(), b.clone());
    tokio::task::spawn_blocking(move || {
        a2.shutdown(Duration::from_secs(20));
        b2.shutdown(Duration::from_secs(20));
    })
    .await
    .unwrap();
    for (rt, me) in [(&a, "tenant-a"), (&b, "tenant-b")] {
        let runs = rt.store().unwrap().query(&TraceQuery::new()).unwrap();
        assert_eq!(runs.len(), 20, "{me}");
        for run in &runs {
            assert_eq!(run.name, me);
            assert_eq!(run.step_count(), 3, "{me}: steps lost or crossed");
            assert!(run.walk().all(|s| s.name.starts_with(me)));
        }
    }
}

/// Inputs saved by `cargo xtask fuzz config` are replayed here: none may panic.
#[test]
fn config_fuzz_regressions_do_not_panic() {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/regressions/config");
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        if let Ok(mut c) = TraceCraftConfig::from_toml_str(&text) {
            let _ = c.validate();
            let v = text.lines().next().unwrap_or_default().to_owned();
            let _ = c.apply_env_from(|_| Some(v.clone()));
        }
        let _ = StorageUrl::parse(&text);
        let _ = tracecraft::core::time::parse(&text);
    }
}

#[test]
fn retention_runs_by_itself_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = sqlite_config(dir.path(), "ret.db");
    config.storage.retention = Some(tracecraft::config::Retention(Duration::from_secs(1)));
    let rt = Runtime::builder().config(config).build().unwrap();
    {
        let _run = rt.run("short-lived").start();
    }
    rt.force_flush().unwrap();
    let store = rt.store().unwrap();
    assert_eq!(store.count(&TraceQuery::new()).unwrap(), 1);
    // No call purges it: the runtime's retention thread does, soon after it is a second old.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while store.count(&TraceQuery::new()).unwrap() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "retention did not run in the background"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.shutdown(Duration::from_secs(5));
}

#[test]
fn retention_is_written_as_an_age_and_not_twice() {
    let c = TraceCraftConfig::from_toml_str("[storage]\nretention = \"90d\"\n").unwrap();
    assert_eq!(c.storage.max_age(), Some(Duration::from_secs(90 * 86_400)));
    let c = TraceCraftConfig::from_toml_str("[storage]\nretention = \"90d\"\nretention_days = 3\n")
        .unwrap();
    assert!(c.validate().unwrap_err().to_string().contains("retention"));
    assert!(TraceCraftConfig::from_toml_str("[storage]\nretention = \"soon\"\n").is_err());
}
