//! Whole-process parallelism for `redact` and `import`: input read in chunks of whole lines,
//! chunks processed on every core, results written in input order, with a fixed number of
//! chunks in flight (bounded memory whatever the input size).

use std::collections::BTreeMap;
use std::io::Read;

/// Bytes per chunk: large enough that per-chunk costs vanish, small enough that a few in
/// flight per core stay well inside the memory budget. 256 KB: as fast as 1 MB on the
/// corpus (`redact`, `import`), and `import` of small runs (whose JSON out is ~7x their
/// JSON in) peaked at 81 MB with 1 MB chunks, 41 MB with these.
pub(crate) const CHUNK_BYTES: usize = 256 << 10;

/// The number of worker threads: the available cores.
pub(crate) fn workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Bytes read at once past [`CHUNK_BYTES`] (while a chunk must grow to keep a block or a
/// long line together).
const READ_BLOCK: usize = 64 << 10;

/// Spare room past a block so that `read_to_end` never finds the chunk full when the block
/// ends exactly at its capacity (it would probe, then double the vector).
const PROBE_BYTES: usize = 64;

/// How far a chunk may grow past [`CHUNK_BYTES`] to keep lines together (a token wrapped
/// across them). A chunk of base64 lines (a wrapped blob, every line end a possible wrap)
/// costs the engine a few times its size: at 16 MB past, a 16 MB blob peaked at 108 MB; at
/// 3 MB, 68 MB (the chunks in flight are counted, not their bytes). A wrapped token longer
/// than that is cut (its pieces are still searched on their own).
pub(crate) const KEEP_TOGETHER_BYTES: usize = 3 << 20;

/// Chunks of whole lines read from `input`: each holds at least [`CHUNK_BYTES`] (the last may
/// hold less), ends with a line break (the last may not), and a line longer than that is one
/// chunk on its own. The input is read in blocks straight into the chunk, never line by line:
/// the bytes after a chunk's last line break wait in `carry` for the next chunk. `input` needs
/// no buffering of its own.
pub(crate) struct Chunks<R> {
    input: R,
    carry: Vec<u8>,
    /// Bytes searched for line breaks so far (tests check each byte is searched once).
    #[cfg(test)]
    scanned: usize,
}

impl<R: Read> Chunks<R> {
    pub(crate) fn new(input: R) -> Chunks<R> {
        Chunks {
            input,
            carry: Vec::new(),
            #[cfg(test)]
            scanned: 0,
        }
    }

    /// The next chunk, `Ok(None)` at the end. `open_block` is shown the lines read so far,
    /// a run of whole lines at a time (each byte once), and says whether the chunk must not
    /// end after them (a line that may end with half of a wrapped token): the chunk then
    /// grows, up to [`KEEP_TOGETHER_BYTES`] more, until it may end.
    pub(crate) fn next_chunk(
        &mut self,
        open_block: &mut dyn FnMut(&[u8]) -> bool,
    ) -> std::io::Result<Option<Vec<u8>>> {
        let mut chunk = std::mem::take(&mut self.carry);
        // Room for the chunk and one more block: the read that fills it to `CHUNK_BYTES`
        // usually ends inside a line, and the block read to finish that line must not make
        // the vector double (a copy of the whole chunk, then twice its memory).
        chunk.reserve((CHUNK_BYTES + READ_BLOCK + PROBE_BYTES).saturating_sub(chunk.len()));
        // Bytes of `chunk` already shown to `open_block` (whole lines).
        let mut shown = 0;
        // Bytes of `chunk` already searched for a line break: only the bytes read since are
        // searched (a line of many megabytes is scanned once, not once per block read).
        let mut searched = 0;
        loop {
            let found = memchr::memrchr(b'\n', &chunk[searched..]).map(|nl| searched + nl);
            #[cfg(test)]
            {
                self.scanned += chunk.len() - searched;
            }
            searched = chunk.len();
            if let Some(nl) = found {
                let end = nl + 1;
                let open = open_block(&chunk[shown..end]);
                shown = end;
                if end >= CHUNK_BYTES && (!open || end >= CHUNK_BYTES + KEEP_TOGETHER_BYTES) {
                    self.carry = chunk.split_off(end);
                    return Ok(Some(chunk));
                }
            }
            // Straight into the chunk (no intermediate buffer), a block at a time.
            let want = CHUNK_BYTES.saturating_sub(chunk.len()).max(READ_BLOCK) as u64;
            if (&mut self.input).take(want).read_to_end(&mut chunk)? == 0 {
                return Ok((!chunk.is_empty()).then_some(chunk));
            }
        }
    }
}

/// Runs `work` over every item `next` yields on `workers` threads and hands the results to
/// `sink` in the order the items came. At most `2 * workers + 1` items are read ahead of
/// `sink`. The first error from `next` or `sink` stops the reading and is returned.
pub(crate) fn ordered<I, O, E>(
    workers: usize,
    mut next: impl FnMut() -> Result<Option<I>, E> + Send,
    work: impl Fn(I) -> O + Sync,
    mut sink: impl FnMut(O) -> Result<(), E>,
) -> Result<(), E>
where
    I: Send,
    O: Send,
    E: Send,
{
    let workers = workers.max(1);
    if workers == 1 {
        while let Some(item) = next()? {
            sink(work(item))?;
        }
        return Ok(());
    }
    let in_flight = 2 * workers + 1;
    let (job_tx, job_rx) = crossbeam_channel::bounded::<(u64, I)>(in_flight);
    let (done_tx, done_rx) = crossbeam_channel::unbounded::<(u64, O)>();
    // One ticket per item in flight: the reader takes one before reading, the sink returns
    // it after writing, so results waiting behind a slow item stay bounded.
    let (ticket_tx, ticket_rx) = crossbeam_channel::bounded::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = ticket_tx.send(());
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> Result<(), E> {
            let mut seq = 0u64;
            while ticket_rx.recv().is_ok() {
                match next()? {
                    Some(item) => {
                        if job_tx.send((seq, item)).is_err() {
                            break;
                        }
                        seq += 1;
                    }
                    None => break,
                }
            }
            Ok(())
        });
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            let work = &work;
            scope.spawn(move || {
                for (seq, item) in job_rx {
                    if done_tx.send((seq, work(item))).is_err() {
                        break;
                    }
                }
            });
        }
        drop(job_rx);
        drop(done_tx);
        let mut waiting = BTreeMap::new();
        let mut expected = 0u64;
        let mut result = Ok(());
        let mut tickets = Some(ticket_tx);
        for (seq, out) in done_rx {
            if result.is_err() {
                continue; // drain so the workers finish
            }
            waiting.insert(seq, out);
            while let Some(out) = waiting.remove(&expected) {
                expected += 1;
                match sink(out) {
                    Ok(()) => {
                        if let Some(t) = &tickets {
                            let _ = t.send(());
                        }
                    }
                    Err(e) => {
                        result = Err(e);
                        // No more tickets: the reader stops once those it holds are used.
                        tickets = None;
                        waiting.clear();
                        break;
                    }
                }
            }
        }
        drop(tickets);
        let read = reader.join().unwrap_or(Ok(()));
        result.and(read)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_in_input_order_whatever_the_work_takes() {
        let mut items = (0..200u64).collect::<Vec<_>>().into_iter();
        let mut out = Vec::new();
        ordered(
            3,
            || Ok::<_, ()>(items.next()),
            |i| {
                if i % 7 == 0 {
                    std::thread::sleep(std::time::Duration::from_millis(2));
                }
                i * 2
            },
            |o| {
                out.push(o);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(out, (0..200u64).map(|i| i * 2).collect::<Vec<_>>());
    }

    #[test]
    fn read_ahead_is_bounded() {
        use std::sync::atomic::{AtomicU64, Ordering};
        let read = AtomicU64::new(0);
        let mut written = 0u64;
        ordered(
            2,
            || {
                let n = read.fetch_add(1, Ordering::SeqCst);
                Ok::<_, ()>((n < 100).then_some(n))
            },
            |i| i,
            |_| {
                written += 1;
                let ahead = read.load(Ordering::SeqCst) - written;
                assert!(ahead <= 2 * 2 + 2, "{ahead} items read ahead of the sink");
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(written, 100);
    }

    #[test]
    fn a_sink_error_stops_the_run() {
        let mut n = 0u64;
        let r = ordered(
            2,
            || {
                n += 1;
                Ok(Some(n))
            },
            |i| i,
            |o| if o == 10 { Err("full") } else { Ok(()) },
        );
        assert_eq!(r, Err("full"));
    }

    #[test]
    fn chunks_end_on_line_boundaries() {
        let line = "x".repeat(1000) + "\n";
        let text = line.repeat(3000);
        let mut input = Chunks::new(std::io::Cursor::new(text.as_bytes()));
        let mut total = 0;
        while let Some(chunk) = input.next_chunk(&mut |_| false).unwrap() {
            assert!(chunk.ends_with(b"\n"));
            assert!(chunk.len() >= CHUNK_BYTES || total + chunk.len() == text.len());
            total += chunk.len();
        }
        assert_eq!(total, text.len());
    }

    /// A chunk of short lines is read into the room reserved for it: the block read to finish
    /// its last line does not make the vector double (which copied every chunk once and left
    /// it twice its size).
    #[test]
    fn chunks_of_short_lines_are_not_reallocated() {
        let line = "y".repeat(999) + "\n";
        let text = line.repeat(2000);
        let mut input = Chunks::new(std::io::Cursor::new(text.as_bytes()));
        let mut chunks = 0;
        while let Some(chunk) = input.next_chunk(&mut |_| false).unwrap() {
            assert!(
                chunk.capacity() <= CHUNK_BYTES + READ_BLOCK + PROBE_BYTES,
                "a chunk of {} bytes holds {} bytes of memory",
                chunk.len(),
                chunk.capacity()
            );
            chunks += 1;
        }
        assert!(chunks > 4);
    }

    /// A line of many megabytes, read a block at a time, is searched for line breaks once
    /// (it was searched again from its start after every 64 KB block: quadratic).
    #[test]
    fn a_long_line_is_searched_once() {
        let mut text = vec![b'a'; 8 << 20];
        text.extend_from_slice(b"\nshort line\n");
        // A reader that hands out at most 4 KB per read, as a pipe does.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
                let n = buf.len().min(self.0.len()).min(4096);
                buf[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut input = Chunks::new(Trickle(&text));
        let mut chunks = Vec::new();
        while let Some(chunk) = input.next_chunk(&mut |_| false).unwrap() {
            chunks.push(chunk);
        }
        assert_eq!(chunks.concat(), text);
        assert_eq!(
            chunks.len(),
            1,
            "the long line and what follows it fit one chunk"
        );
        assert!(
            input.scanned <= text.len(),
            "{} bytes searched for {} bytes of input",
            input.scanned,
            text.len()
        );
    }
}
