//! Opening what a configuration names: the store (creating it, or only if it exists), the
//! JSONL export, the OTLP exporter, and background retention.

use std::sync::Arc;

use tracecraft_core::TraceStore;

use crate::config::{ConfigError, StorageConfig, StorageUrl, TraceCraftConfig};
use crate::error::InitError;

/// Opens (creating it if missing) the store a [`StorageConfig`] names (`None` for
/// `storage.url = "none"`), with its `[storage.sqlite]` / `[storage.jsonl]` settings, retention
/// and permission policy. For commands that write.
///
/// # Errors
/// [`InitError::Store`] naming the file, or [`InitError::Config`] when the store's feature is
/// not built in.
pub fn open_store(storage: &StorageConfig) -> Result<Option<Arc<dyn TraceStore>>, InitError> {
    open_store_as(storage, true)
}

/// Opens the store a [`StorageConfig`] names only if it exists: for commands that read or
/// erase, which never create a store (DESIGN invariant 12).
///
/// # Errors
/// [`InitError::Store`] with [`StoreError::NotFound`](tracecraft_core::StoreError::NotFound)
/// naming the path when there is no store there; otherwise as [`open_store`].
pub fn open_existing_store(
    storage: &StorageConfig,
) -> Result<Option<Arc<dyn TraceStore>>, InitError> {
    open_store_as(storage, false)
}

#[cfg_attr(
    not(any(feature = "sqlite", feature = "jsonl")),
    allow(unused_variables)
)]
fn open_store_as(
    storage: &StorageConfig,
    create: bool,
) -> Result<Option<Arc<dyn TraceStore>>, InitError> {
    storage.validate_owned()?;
    match &storage.url {
        StorageUrl::None => Ok(None),
        #[cfg(feature = "sqlite")]
        StorageUrl::Sqlite(path) => {
            let mut cfg = storage.sqlite.clone();
            cfg.path = path.clone();
            let cfg = cfg.create(create).permissions(storage.permissions);
            let store: Arc<dyn TraceStore> =
                Arc::new(tracecraft_store_sqlite::SqliteStore::open(cfg)?);
            apply_retention(&*store, storage)?;
            Ok(Some(store))
        }
        #[cfg(feature = "jsonl")]
        StorageUrl::Jsonl(dir) => {
            let mut cfg = storage.jsonl.clone();
            cfg.dir = dir.clone();
            let cfg = cfg.create(create).permissions(storage.permissions);
            let store: Arc<dyn TraceStore> =
                Arc::new(tracecraft_store_jsonl::JsonlStore::open(cfg)?);
            apply_retention(&*store, storage)?;
            Ok(Some(store))
        }
        #[allow(unreachable_patterns)]
        other => Err(ConfigError::Invalid {
            field: "storage.url".into(),
            message: format!(
                "`{other}` needs the `{}` feature of the tracecraft crate",
                match other {
                    StorageUrl::Sqlite(_) => "sqlite",
                    _ => "jsonl",
                }
            ),
        }
        .into()),
    }
}

/// Purges runs older than the storage's retention (when it has one), logging how many.
#[cfg_attr(not(any(feature = "sqlite", feature = "jsonl")), allow(dead_code))]
fn apply_retention(store: &dyn TraceStore, storage: &StorageConfig) -> Result<u64, InitError> {
    let Some(age) = storage.max_age() else {
        return Ok(0);
    };
    let age = chrono::Duration::from_std(age).unwrap_or(chrono::Duration::MAX);
    let cutoff = chrono::Utc::now()
        .checked_sub_signed(age)
        .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
    let purged = store.purge_older_than(cutoff)?;
    if purged > 0 {
        tracing::info!(
            store = store.name(),
            purged,
            "retention: purged runs older than the configured age"
        );
    }
    Ok(purged)
}

/// Applies `max_age` retention to `store` in the background, on a `tracecraft-retention`
/// thread: every tenth of the age (at least 100 ms, at most an hour), runs that started
/// longer ago are purged, counted and logged. The thread holds only a weak reference: it ends
/// by itself once the store is dropped.
pub fn spawn_retention(store: &Arc<dyn TraceStore>, max_age: std::time::Duration) {
    let weak = Arc::downgrade(store);
    let interval = (max_age / 10).clamp(
        std::time::Duration::from_millis(100),
        std::time::Duration::from_secs(3600),
    );
    let tick = interval.min(std::time::Duration::from_millis(200));
    let spawned = std::thread::Builder::new()
        .name("tracecraft-retention".into())
        .spawn(move || {
            let age = chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
            let mut waited = std::time::Duration::ZERO;
            loop {
                std::thread::sleep(tick);
                waited += tick;
                let Some(store) = weak.upgrade() else {
                    return;
                };
                if waited < interval {
                    continue;
                }
                waited = std::time::Duration::ZERO;
                let cutoff = chrono::Utc::now()
                    .checked_sub_signed(age)
                    .unwrap_or(chrono::DateTime::<chrono::Utc>::MIN_UTC);
                match store.purge_older_than(cutoff) {
                    Ok(0) => {}
                    Ok(purged) => tracing::info!(
                        store = store.name(),
                        purged,
                        "retention: purged runs older than the configured age"
                    ),
                    Err(e) => tracing::warn!(store = store.name(), error = %e, "retention failed"),
                }
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "retention thread not started: retention applies only when stores open");
    }
}

pub(crate) fn open_jsonl_export(
    config: &TraceCraftConfig,
) -> Result<Option<Arc<dyn TraceStore>>, InitError> {
    if !config.jsonl.enabled {
        return Ok(None);
    }
    #[cfg(feature = "jsonl")]
    {
        // The same store as `storage.url = "jsonl:DIR"`, with the storage's retention and
        // permission policy.
        let dir = config.jsonl.path.clone().unwrap_or_else(|| "traces".into());
        open_store(&StorageConfig {
            url: StorageUrl::Jsonl(dir),
            ..config.storage.clone()
        })
    }
    #[cfg(not(feature = "jsonl"))]
    Err(ConfigError::Invalid {
        field: "jsonl.enabled".into(),
        message: "JSONL export needs the `jsonl` feature of the tracecraft crate".into(),
    }
    .into())
}

/// Builds the OTLP exporter the `[otlp]` table describes (`None` when disabled).
///
/// # Errors
/// [`InitError::Config`] naming the `otlp.*` field that is malformed, or `otlp.enabled` when
/// the `otlp` feature is not built in.
#[cfg(feature = "otlp")]
pub fn open_otlp_export(
    config: &TraceCraftConfig,
) -> Result<Option<tracecraft_otlp::OtlpExporter>, InitError> {
    let otlp = &config.otlp;
    if !otlp.enabled {
        return Ok(None);
    }
    let invalid = |e: tracecraft_otlp::BuildError| ConfigError::Invalid {
        // The builder names its duration `timeout`; the file names it `timeout_ms`.
        field: format!(
            "otlp.{}",
            match e.setting {
                "timeout" => "timeout_ms",
                other => other,
            }
        ),
        message: e.message,
    };
    let mut builder = otlp.exporter().map_err(invalid)?;
    if let Some(service) = &config.service_name {
        builder = builder.service_name(service.clone());
    }
    let exporter = builder.build().map_err(invalid)?;
    Ok(Some(exporter))
}
