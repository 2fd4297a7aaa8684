//! WAL checkpoints off the committing thread (ADR 0011).
//!
//! SQLite's automatic checkpoint runs inside the `COMMIT` that makes the WAL pass its
//! threshold: the thread that saves runs then copies ~4 MB of pages into the database file
//! and `fsync`s it before `save_batch` returns (about a fifth of the gateway's store thread,
//! `docs/perf/gateway.md`). Here the writer connection counts the WAL's frames with a WAL
//! hook instead ([`install`], read back by [`take_frames`] right after the commit), and past
//! the same threshold it wakes a [`Checkpointer`]: a thread with its own connection that runs
//! a `PASSIVE` checkpoint, which copies committed pages while the writer goes on appending.
//! The bound is kept: should the WAL reach [`FALLBACK_FACTOR`] times the threshold anyway
//! (the checkpointer cannot keep up, or has failed), the writer checkpoints itself, as
//! SQLite would. [`Checkpointer::exclusive`] lets `flush` and `vacuum` run their `TRUNCATE`
//! checkpoint without racing the thread (two checkpoints at once make one return "busy"
//! without doing anything).

use std::cell::Cell;
use std::os::raw::c_int;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::{Condvar, Mutex, MutexGuard};
use rusqlite::Connection;
use rusqlite::hooks::Wal;

/// When the WAL holds this many times the checkpoint threshold, the writer checkpoints
/// itself instead of waiting for the checkpointer.
pub(crate) const FALLBACK_FACTOR: i64 = 2;

thread_local! {
    /// Frames in the WAL after the last commit on this thread, as the WAL hook saw them.
    static WAL_FRAMES: Cell<c_int> = const { Cell::new(0) };
}

fn hook(_: &Wal, frames: c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.set(frames);
    Ok(())
}

/// Counts `conn`'s WAL after each of its commits (replacing SQLite's automatic checkpoint,
/// which is itself a WAL hook: do not set `wal_autocheckpoint` on `conn` afterwards).
pub(crate) fn install(conn: &Connection) {
    conn.wal_hook(Some(hook));
}

/// The WAL's frames after the last commit on this thread (0 if none since the last call).
/// The WAL hook runs on the committing thread, inside the commit, so a thread reads the
/// count of its own commit.
pub(crate) fn take_frames() -> i64 {
    i64::from(WAL_FRAMES.replace(0))
}

/// Runs `PASSIVE` checkpoint of `conn`'s database (never waits for readers or the writer).
pub(crate) fn passive(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

#[derive(Default)]
struct State {
    requested: bool,
    stop: bool,
    /// Checkpoints run so far without error (for tests).
    done: u64,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
    /// Held while a checkpoint runs, by the thread or by [`Checkpointer::exclusive`].
    running: Mutex<()>,
}

/// The checkpointing thread of a store; stopped (and joined) on drop.
pub(crate) struct Checkpointer {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread with its own connection to the database.
    ///
    /// # Errors
    /// When the thread cannot be started (the connection is dropped).
    pub(crate) fn start(conn: Connection) -> std::io::Result<Checkpointer> {
        let shared = Arc::new(Shared::default());
        let s = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("tracecraft-sqlite-checkpoint".into())
            .spawn(move || run(&conn, &s))?;
        Ok(Checkpointer {
            shared,
            thread: Some(thread),
        })
    }

    /// Asks for a checkpoint (several requests before it starts make one).
    pub(crate) fn request(&self) {
        self.shared.state.lock().requested = true;
        self.shared.wake.notify_one();
    }

    /// Waits for a running checkpoint to end and keeps the thread from starting another
    /// while the guard lives.
    pub(crate) fn exclusive(&self) -> MutexGuard<'_, ()> {
        self.shared.running.lock()
    }

    /// Checkpoints the thread has run without error.
    #[cfg(test)]
    pub(crate) fn done(&self) -> u64 {
        self.shared.state.lock().done
    }
}

fn run(conn: &Connection, shared: &Shared) {
    loop {
        {
            let mut state = shared.state.lock();
            while !state.requested && !state.stop {
                shared.wake.wait(&mut state);
            }
            if state.stop {
                return;
            }
            state.requested = false;
        }
        let result = {
            let _running = shared.running.lock();
            passive(conn)
        };
        match result {
            Ok(()) => shared.state.lock().done += 1,
            // The writer checkpoints itself once the WAL reaches the fallback size.
            Err(e) => tracing::warn!(error = %e, "background WAL checkpoint failed"),
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.shared.state.lock().stop = true;
        self.shared.wake.notify_one();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)] // runs wrapped as processed runs
    use tracecraft_core::{AgentRun, ProcessedRun, TraceStore};

    use crate::{SqliteConfig, SqliteStore};

    /// Past the threshold the writer wakes the thread, which checkpoints: 6 MB of runs in
    /// 600 KB transactions (the WAL stays under the fallback size, where the writer would
    /// checkpoint itself).
    #[test]
    fn the_thread_checkpoints_once_the_wal_passes_the_threshold() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(SqliteConfig::new(dir.path().join("t.db"))).unwrap();
        let thread = store.checkpointer.as_ref().unwrap();
        assert_eq!(thread.done(), 0);
        for b in 0..10 {
            let runs: Vec<ProcessedRun> = (0..10)
                .map(|i| {
                    let mut run = AgentRun::builder(format!("run {b} {i}")).build();
                    run.input = serde_json::json!("lorem ipsum ".repeat(5_000));
                    ProcessedRun::assume_processed(run)
                })
                .collect();
            store.save_batch(&runs).unwrap();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while thread.done() == 0 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(thread.done() >= 1, "no checkpoint ran on the thread");
    }
}
