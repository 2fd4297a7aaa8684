//! Serializing a batch of runs on several threads while the calling thread writes the lines
//! in batch order.

use std::collections::HashMap;

use parking_lot::Mutex;
use tracecraft_core::AgentRun;

/// Output buffers per serializing thread: how many chunks it may get ahead of the writer.
pub(crate) const ENCODE_BUFFERS_PER_THREAD: usize = 3;

/// The largest output buffer an encoding slot keeps between batches (a chunk of 8 corpus
/// runs is ~140 KB).
pub(crate) const ENCODED_KEEP_BYTES: usize = 1 << 20;

/// Runs per unit of work handed to a serializing thread; a batch needs two of them at least
/// to be worth a thread.
pub(crate) const ENCODE_CHUNK: usize = 8;

/// One chunk serialized by a thread: the JSON lines of consecutive runs, and the end offset
/// of each line in `buf` (lines carry no newline).
#[derive(Debug, Default)]
pub(crate) struct Encoded {
    pub(crate) buf: Vec<u8>,
    pub(crate) ends: Vec<usize>,
}

impl Encoded {
    pub(crate) fn clear(&mut self) {
        self.buf.clear();
        self.ends.clear();
    }

    pub(crate) fn encode(&mut self, runs: &[&AgentRun]) {
        self.clear();
        for run in runs {
            tracecraft_core::json::write_json(&mut self.buf, run);
            self.ends.push(self.buf.len());
        }
    }

    pub(crate) fn lines(&self) -> impl Iterator<Item = &[u8]> {
        self.ends.iter().scan(0, |start, &end| {
            Some(&self.buf[std::mem::replace(start, end)..end])
        })
    }
}

/// Serializes `chunks` on `threads - 1` scoped threads and the calling thread, and hands
/// each chunk to `write` in order (`write(k, Some(lines))`, or `write(k, None)` for a chunk
/// the caller must serialize itself: one the calling thread took on when it was the next to
/// write, or one whose thread panicked), while the threads go on with later chunks: writing
/// overlaps serializing.
///
/// Threads claim chunks from a shared counter, so a thread the scheduler leaves idle on a busy
/// machine holds nobody up, and serialize into buffers from a pool of
/// [`ENCODE_BUFFERS_PER_THREAD`] per thread, which bounds how far they run ahead of the
/// writer. The calling thread serializes too when it would otherwise wait. An error of
/// `write` stops the threads (they find the pool closed) and is returned. Buffers end up in
/// `kept` for the next batch.
pub(crate) fn encode_pipelined<E>(
    chunks: &[&[&AgentRun]],
    threads: usize,
    kept: &mut Vec<Encoded>,
    mut write: impl FnMut(usize, Option<&Encoded>) -> Result<(), E>,
) -> Result<(), E> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    /// Reports a chunk as failed if its thread unwinds before finishing it.
    struct Unfinished<'a> {
        chunk: usize,
        done: &'a mpsc::Sender<(usize, Option<Encoded>)>,
    }
    impl Drop for Unfinished<'_> {
        fn drop(&mut self) {
            let _ = self.done.send((self.chunk, None));
        }
    }

    let n = chunks.len();
    let next = AtomicUsize::new(0);
    let (spare_tx, spare_rx) = mpsc::channel::<Encoded>();
    let spare_rx = Mutex::new(spare_rx);
    for _ in 0..ENCODE_BUFFERS_PER_THREAD * (threads - 1) {
        let _ = spare_tx.send(kept.pop().unwrap_or_default());
    }
    let (done_tx, done_rx) = mpsc::channel::<(usize, Option<Encoded>)>();
    let result = std::thread::scope(|scope| {
        for _ in 1..threads {
            let done = done_tx.clone();
            let (next, spare_rx) = (&next, &spare_rx);
            let _ = std::thread::Builder::new()
                .name("tracecraft-jsonl-encode".into())
                .spawn_scoped(scope, move || {
                    // A buffer first, then a chunk: a claimed chunk is always being
                    // serialized, never waiting for a buffer.
                    loop {
                        // The pool's lock only for taking a buffer, not while serializing.
                        let taken = spare_rx.lock().recv();
                        let Ok(mut e) = taken else { break };
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(chunk) = chunks.get(k) else {
                            let _ = done.send((usize::MAX, Some(e)));
                            break;
                        };
                        let unfinished = Unfinished {
                            chunk: k,
                            done: &done,
                        };
                        e.encode(chunk);
                        std::mem::forget(unfinished);
                        if done.send((k, Some(e))).is_err() {
                            break;
                        }
                    }
                });
        }
        drop(done_tx);
        let mut ready: HashMap<usize, Option<Encoded>> = HashMap::new();
        let mut own: Vec<Encoded> = Vec::new();
        let mut written = 0;
        let outcome = (|| {
            while written < n {
                while let Ok((k, e)) = done_rx.try_recv() {
                    match k {
                        k if k < n => drop(ready.insert(k, e)),
                        _ => own.extend(e),
                    }
                }
                if let Some(e) = ready.remove(&written) {
                    write(written, e.as_ref())?;
                    written += 1;
                    if let Some(e) = e {
                        // Back to the pool while the threads have chunks left.
                        if let Err(mpsc::SendError(e)) = spare_tx.send(e) {
                            own.push(e);
                        }
                    }
                    continue;
                }
                // The next chunk to write is not ready: serialize one here rather than wait
                // (straight into the writer's buffer when it is that chunk).
                if ready.len() < ENCODE_BUFFERS_PER_THREAD * threads {
                    let k = next.fetch_add(1, Ordering::Relaxed);
                    if k == written {
                        write(k, None)?;
                        written += 1;
                        continue;
                    }
                    if let Some(chunk) = chunks.get(k) {
                        let mut e = own.pop().or_else(|| kept.pop()).unwrap_or_default();
                        e.encode(chunk);
                        ready.insert(k, Some(e));
                        continue;
                    }
                }
                match done_rx.recv() {
                    Ok((k, e)) if k < n => drop(ready.insert(k, e)),
                    Ok((_, e)) => own.extend(e),
                    // Every thread is gone and the chunk never came: serialize it here.
                    Err(_) => {
                        write(written, None)?;
                        written += 1;
                    }
                }
            }
            Ok(())
        })();
        // Closing the pool stops the threads; the scope waits for them.
        drop(spare_tx);
        own.extend(ready.into_values().flatten());
        kept.append(&mut own);
        outcome
    });
    kept.extend(done_rx.try_iter().filter_map(|(_, e)| e));
    kept.extend(spare_rx.lock().try_iter());
    // Keep what corpus-sized chunks need, not what a chunk of huge runs took.
    kept.retain(|e| e.buf.capacity() <= ENCODED_KEEP_BYTES);
    kept.truncate(ENCODE_BUFFERS_PER_THREAD * threads + 1);
    for e in kept.iter_mut() {
        e.clear();
    }
    result
}

#[cfg(test)]
mod tests {
    #![allow(clippy::disallowed_methods)]
    use super::*;
    use tracecraft_core::contract;

    #[test]
    fn pipelined_encoding_hands_over_chunks_in_order_and_stops_on_error() {
        let runs = contract::fixture_runs(203);
        let refs: Vec<&AgentRun> = runs.iter().collect();
        let chunks: Vec<&[&AgentRun]> = refs.chunks(ENCODE_CHUNK).collect();
        for threads in [2, 3, 4, 8] {
            let mut kept = Vec::new();
            for round in 0..3 {
                // Every chunk once, in order, with its own lines (from a thread or not).
                let mut seen = Vec::new();
                let mut inline = 0;
                let r: Result<(), ()> = encode_pipelined(&chunks, threads, &mut kept, |k, e| {
                    seen.push(k);
                    // A slow writer: the threads get ahead and fill the pool.
                    std::thread::sleep(std::time::Duration::from_micros(200));
                    match e {
                        Some(e) => {
                            let lines: Vec<&[u8]> = e.lines().collect();
                            assert_eq!(lines.len(), chunks[k].len());
                            for (line, run) in lines.iter().zip(chunks[k]) {
                                assert_eq!(*line, tracecraft_core::to_json(run).as_bytes());
                            }
                        }
                        None => inline += 1,
                    }
                    Ok(())
                });
                assert_eq!(r, Ok(()));
                assert_eq!(
                    seen,
                    (0..chunks.len()).collect::<Vec<_>>(),
                    "{threads} {round}"
                );
                // (Which chunks the threads serialize depends on scheduling: not asserted.)
                let _ = inline;
                assert!(kept.len() <= ENCODE_BUFFERS_PER_THREAD * threads + 1);
            }
            // A failing write stops everything and is returned; the threads are joined.
            let mut calls = 0;
            let r = encode_pipelined(&chunks, threads, &mut kept, |k, _| {
                calls += 1;
                if k == 5 { Err(k) } else { Ok(()) }
            });
            assert_eq!((r, calls), (Err(5), 6));
        }
    }
}
