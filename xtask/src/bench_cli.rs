//! `cargo xtask bench cli [--runs N] [--quick] [--no-python]`: what users run, measured
//! whole-process (issue 19). Builds the release binary, then times it beside the Python
//! reference (tracecraft 0.2.1, installed once into a virtualenv under
//! `target/bench-cli/venv` from `../shared/bench/requirements-lock.txt`) in the same run:
//!
//! - the shared corpus: `redact < corpus_dirty.txt`, `import runs.jsonl > out`,
//!   `import runs.jsonl --store sqlite:...` (a fresh database each run), with the ratio
//!   ours / Python beside its target;
//! - adversarial single-line inputs (generated deterministically into
//!   `target/bench-cli/adv`) at 1, 8 and 32 MB: throughput, growth per 8x input (linear
//!   means <= 9x) and peak RSS against the budget 64 MB + 3 x the longest line; Python
//!   once at 1 MB (given up after 60 s).
//!
//! Times are wall clock, the median of N runs (default 3), each waited for without watching
//! it: the bench sleeps in `wait` while the child runs (a watcher that woke every
//! millisecond took CPU from a child using both cores). Peak RSS comes from one more run,
//! watched: the largest `VmHWM` of `/proc/<pid>/status` sampled every 2 ms while the child
//! runs (a lower bound: growth in the child's last milliseconds is missed). A run with a
//! timeout (Python on the adversarial inputs) is watched, to be given up in time.
//!
//! `--quick`: one run each, adversarial sizes 1 and 8 MB only. `--no-python`: ours only.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::adversarial::{FAMILIES, Family};
use crate::util::{cargo, exec, root, target_dir};

/// How long the Python reference may take on one adversarial input before it is given up.
const PY_ADV_TIMEOUT: Duration = Duration::from_secs(60);
/// Whole-process throughput every adversarial family must keep, at every size.
const ADV_TARGET_MBPS: f64 = 200.0;
/// Time for 8x the input must stay below this multiple of the time for 1x (linear growth).
const ADV_GROWTH_LIMIT: f64 = 9.0;
/// Peak RSS budget: this many bytes plus `RSS_PER_LINE` times the longest line.
const RSS_BASE: f64 = 64e6;
const RSS_PER_LINE: f64 = 3.0;

struct Options {
    runs: usize,
    quick: bool,
    python: bool,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        runs: 3,
        quick: false,
        python: true,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                o.runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            "--quick" => o.quick = true,
            "--no-python" => o.python = false,
            other => {
                return Err(format!(
                    "bench cli: unknown argument {other:?} (--runs N, --quick, --no-python)"
                ));
            }
        }
    }
    if o.quick {
        o.runs = 1;
    }
    Ok(o)
}

pub(crate) fn run(args: &[String]) -> Result<(), String> {
    let opts = options(args)?;
    let root = root();
    let mut build = cargo();
    // `cargo xtask` runs us with the variables cargo sets for a package (CARGO_PKG_NAME=xtask,
    // CARGO_MANIFEST_DIR, ...); build scripts that watch them (ring's do) would rebuild.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*k,
                "CARGO_CRATE_NAME" | "CARGO_BIN_NAME" | "CARGO_PRIMARY_PACKAGE"
            )
        {
            build.env_remove(&*k);
        }
    }
    exec(build.args(["build", "--release", "-p", "tracecraft-cli"]))?;
    let ours = target_dir().join("release").join("tracecraft");
    let corpus = crate::bench::ensure_corpus()?;
    let work = root.join("target").join("bench-cli");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;
    let python = if opts.python {
        Some(ensure_venv(&root, &work)?)
    } else {
        None
    };
    let script = root.join("xtask").join("py").join("cli_reference.py");
    let ctx = Ctx {
        ours,
        python: python.map(|p| (p, script)),
        work,
        runs: opts.runs,
    };
    println!("{}", environment());
    corpus_table(&ctx, &corpus)?;
    adversarial_table(&ctx, opts.quick)?;
    println!("{} at the end", environment());
    Ok(())
}

struct Ctx {
    ours: PathBuf,
    /// The venv's interpreter and the reference script.
    python: Option<(PathBuf, PathBuf)>,
    work: PathBuf,
    runs: usize,
}

impl Ctx {
    /// A command for our binary, isolated from any configuration file or variable.
    fn ours(&self, args: &[&str]) -> Command {
        let mut c = Command::new(&self.ours);
        c.args(args);
        self.isolate(&mut c);
        c
    }

    fn python(&self, args: &[&str]) -> Option<Command> {
        let (py, script) = self.python.as_ref()?;
        let mut c = Command::new(py);
        c.arg(script).args(args);
        self.isolate(&mut c);
        Some(c)
    }

    fn isolate(&self, c: &mut Command) {
        c.current_dir(&self.work);
        for (k, _) in std::env::vars_os() {
            let k = k.to_string_lossy();
            if k.starts_with("TRACECRAFT_") || k.starts_with("OTEL_") || k == "RUST_LOG" {
                c.env_remove(&*k);
            }
        }
    }
}

/// The virtualenv with the reference installed; created (once) when missing or when the
/// lock file changed since.
fn ensure_venv(root: &Path, work: &Path) -> Result<PathBuf, String> {
    let lock = root
        .join("..")
        .join("shared")
        .join("bench")
        .join("requirements-lock.txt");
    let wanted = std::fs::read_to_string(&lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let venv = work.join("venv");
    let stamp = venv.join("installed-lock.txt");
    let python = venv.join("bin").join("python");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    eprintln!(
        "bench cli: installing the Python reference into {} (once)",
        venv.display()
    );
    exec(Command::new("python3").arg("-m").arg("venv").arg(&venv))?;
    exec(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--disable-pip-version-check",
                "-q",
                "-r",
            ])
            .arg(&lock),
    )
    .map_err(|e| format!("{e} (no PyPI? `--no-python` measures ours only)"))?;
    std::fs::write(&stamp, wanted).map_err(|e| format!("{}: {e}", stamp.display()))?;
    Ok(python)
}

fn environment() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "bench cli: {cores} cores, load average {} (1, 5, 15 min)",
        load.join(" ")
    )
}

/// One finished run of a child: wall time, CPU time (user + system) and peak RSS.
#[derive(Clone, Copy)]
struct Sample {
    secs: f64,
    cpu_secs: f64,
    hwm_bytes: u64,
}

/// User + system time of this process's waited-for children, in seconds (`cutime` and
/// `cstime` of `/proc/self/stat`, in clock ticks of 1/100 s): the difference across a
/// child's run is that child's CPU time, which load on the machine does not inflate much.
fn children_cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after_name = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // Fields 16 and 17 of stat(5); `after_name` starts at field 3.
    (ticks(13) + ticks(14)) / 100.0
}

/// Runs `cmd` with stdin from `stdin` (else nothing) and stdout to `stdout`, timing it and
/// sampling its peak RSS. `None` when it ran past `timeout` (it is killed).
/// One run of `cmd`. `watch`: its peak RSS is sampled while it runs (and a `timeout` needs
/// it); otherwise the bench only waits for it and the peak is 0.
fn sample(
    cmd: &mut Command,
    stdin: Option<&Path>,
    stdout: &Path,
    timeout: Option<Duration>,
    watch: bool,
) -> Result<Option<Sample>, String> {
    let input = match stdin {
        Some(p) => Stdio::from(File::open(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => Stdio::null(),
    };
    let output = File::create(stdout).map_err(|e| format!("{}: {e}", stdout.display()))?;
    let shown = format!("{:?}", cmd);
    let cpu_before = children_cpu_secs();
    let start = Instant::now();
    let mut child = cmd
        .stdin(input)
        .stdout(output)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("could not start {shown}: {e}"))?;
    // Drain stderr on a thread so that a chatty child never blocks on a full pipe.
    let mut err_pipe = child.stderr.take();
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(p) = err_pipe.as_mut() {
            let _ = std::io::Read::read_to_string(p, &mut s);
        }
        s
    });
    let status_path = format!("/proc/{}/status", child.id());
    let mut hwm = 0;
    let mut last_sample: Option<Instant> = None;
    let status = if !watch && timeout.is_none() {
        child.wait().map_err(|e| format!("{shown}: {e}"))?
    } else {
        loop {
            if let Some(status) = child.try_wait().map_err(|e| format!("{shown}: {e}"))? {
                break status;
            }
            // The watcher shares the 2 cores with the child: it wakes often only while a run is
            // short (where the exit must be seen within a fraction of a millisecond), then every
            // millisecond, and reads the high-water mark every 2 ms (it only ever grows).
            let now = Instant::now();
            let elapsed = now - start;
            if last_sample.is_none_or(|t| now - t >= Duration::from_millis(2)) {
                hwm = hwm.max(vm_hwm(&status_path).unwrap_or(0));
                last_sample = Some(now);
            }
            if timeout.is_some_and(|t| elapsed > t) {
                let _ = child.kill();
                let _ = child.wait();
                return Ok(None);
            }
            std::thread::sleep(if elapsed < Duration::from_millis(20) {
                Duration::from_micros(200)
            } else {
                Duration::from_millis(1)
            });
        }
    };
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = children_cpu_secs() - cpu_before;
    let err = err_thread.join().unwrap_or_default();
    if !status.success() {
        let tail: String = err.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
        return Err(format!("{shown} failed ({status}): {tail}"));
    }
    Ok(Some(Sample {
        secs,
        cpu_secs,
        hwm_bytes: hwm,
    }))
}

/// `VmHWM` (peak resident set) of a live process, in bytes.
fn vm_hwm(status_path: &str) -> Option<u64> {
    let text = std::fs::read_to_string(status_path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The median time of `runs` runs, and the peak RSS of one more, watched (`None`: one timed
/// out).
fn measure(
    runs: usize,
    mut cmd: impl FnMut() -> Command,
    stdin: Option<&Path>,
    stdout: &Path,
    timeout: Option<Duration>,
    mut before_each: impl FnMut(),
) -> Result<Option<Sample>, String> {
    let mut samples = Vec::with_capacity(runs);
    for _ in 0..runs {
        before_each();
        match sample(&mut cmd(), stdin, stdout, timeout, false)? {
            Some(s) => samples.push(s),
            None => return Ok(None),
        }
    }
    // The peak RSS from one more run, watched (the timed runs are not).
    let mut hwm_bytes = samples.iter().map(|s| s.hwm_bytes).max().unwrap_or(0);
    if timeout.is_none() {
        before_each();
        if let Some(s) = sample(&mut cmd(), stdin, stdout, None, true)? {
            hwm_bytes = hwm_bytes.max(s.hwm_bytes);
        }
    }
    let median = |f: fn(&Sample) -> f64| {
        let mut v: Vec<f64> = samples.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(Some(Sample {
        secs: median(|s| s.secs),
        cpu_secs: median(|s| s.cpu_secs),
        hwm_bytes,
    }))
}

fn mark(met: bool) -> &'static str {
    if met { "met" } else { "NOT MET" }
}

fn mb(bytes: u64) -> String {
    format!("{:.0} MB", bytes as f64 / 1e6)
}

/// Removes the database `db` (and its journals) before each run: every store run starts from
/// nothing. No database: nothing to do.
fn fresh(db: Option<&Path>) -> impl FnMut() + '_ {
    move || {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            if let Some(db) = db {
                let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
            }
        }
    }
}

/// The three corpus works, ours beside Python's.
fn corpus_table(ctx: &Ctx, corpus: &Path) -> Result<(), String> {
    let dirty = corpus.join("corpus_dirty.txt");
    let runs_file = corpus.join("runs.jsonl");
    let runs_path = runs_file.to_string_lossy().into_owned();
    let dirty_bytes = std::fs::metadata(&dirty)
        .map_err(|e| format!("{}: {e}", dirty.display()))?
        .len();
    let n_runs = std::fs::read(&runs_file)
        .map_err(|e| format!("{}: {e}", runs_file.display()))?
        .split(|b| *b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count();
    let out = ctx.work.join("out");
    let ours_db = ctx.work.join("ours.db");
    let py_db = ctx.work.join("python.db");
    let ours_store = format!("sqlite:{}", ours_db.display());
    let py_store = format!("sqlite:{}", py_db.display());

    struct Row<'a> {
        work: String,
        unit: &'static str,
        amount: f64,
        target: f64,
        ours: Vec<&'a str>,
        py: Vec<&'a str>,
        stdin: Option<&'a Path>,
        db: Option<(&'a Path, &'a Path)>,
    }
    let rows = [
        Row {
            work: format!(
                "redact < corpus_dirty.txt ({:.1} MB)",
                dirty_bytes as f64 / 1e6
            ),
            unit: "MB/s",
            amount: dirty_bytes as f64 / 1e6,
            target: 150.0,
            ours: vec!["redact"],
            py: vec!["redact"],
            stdin: Some(&dirty),
            db: None,
        },
        Row {
            work: format!("import runs.jsonl > out ({n_runs} runs)"),
            unit: "runs/s",
            amount: n_runs as f64,
            target: 100.0,
            ours: vec!["import", &runs_path],
            py: vec!["import", &runs_path],
            stdin: None,
            db: None,
        },
        Row {
            work: "import runs.jsonl --store sqlite:(fresh)".into(),
            unit: "runs/s",
            amount: n_runs as f64,
            target: 30.0,
            ours: vec!["import", &runs_path, "--store", &ours_store],
            py: vec!["import", &runs_path, "--store", &py_store],
            stdin: None,
            db: Some((&ours_db, &py_db)),
        },
    ];
    println!();
    let h = [
        "work (whole process)",
        "ours (wall, CPU, peak RSS)",
        "Python (wall, CPU, peak RSS)",
        "ratio",
        "target",
        "",
    ];
    println!(
        "{:<42} {:>44} {:>44} {:>7} {:>7} {:>7}",
        h[0], h[1], h[2], h[3], h[4], h[5]
    );
    for r in &rows {
        let ours = measure(
            ctx.runs,
            || ctx.ours(&r.ours),
            r.stdin,
            &out,
            None,
            fresh(r.db.map(|d| d.0)),
        )?
        .ok_or("unreachable: no timeout")?;
        let py = match ctx.python(&r.py) {
            Some(_) => measure(
                ctx.runs,
                || ctx.python(&r.py).unwrap_or_else(|| Command::new("false")),
                r.stdin,
                &out,
                None,
                fresh(r.db.map(|d| d.1)),
            )?,
            None => None,
        };
        let rate = |s: &Sample| r.amount / s.secs;
        let show = |s: &Sample| {
            format!(
                "{:.1} {} ({:.2} s, CPU {:.2} s, {})",
                rate(s),
                r.unit,
                s.secs,
                s.cpu_secs,
                mb(s.hwm_bytes)
            )
        };
        let ratio = py.as_ref().map(|p| rate(&ours) / rate(p));
        println!(
            "{:<42} {:>44} {:>44} {:>7} {:>7} {:>7}",
            r.work,
            show(&ours),
            py.as_ref().map_or("-".into(), show),
            ratio.map_or("-".into(), |x| format!("{x:.1}x")),
            format!(">={:.0}x", r.target),
            ratio.map_or("-", |x| mark(x >= r.target)),
        );
    }
    Ok(())
}

/// The input of `family` at `mb` MB under `dir`, generated when missing.
fn adversarial_input(dir: &Path, family: &Family, mb: usize) -> Result<PathBuf, String> {
    let path = dir.join(format!("{}-{mb}MB.txt", family.name));
    if !path.exists() {
        let data = family.generate(mb * 1_000_000);
        std::fs::write(&path, data).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(path)
}

/// The longest line of a file, in bytes.
fn longest_line(path: &Path) -> Result<usize, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(data
        .split(|b| *b == b'\n')
        .map(<[u8]>::len)
        .max()
        .unwrap_or(0))
}

fn adversarial_table(ctx: &Ctx, quick: bool) -> Result<(), String> {
    let sizes: &[usize] = if quick { &[1, 8] } else { &[1, 8, 32] };
    let dir = ctx.work.join("adv");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let out = ctx.work.join("out");
    println!();
    println!(
        "adversarial inputs, `tracecraft redact < FILE > out` (targets: >= {ADV_TARGET_MBPS:.0} MB/s \
         at every size; time x{ADV_GROWTH_LIMIT:.0} at most per 8x input, pro rata for 8 -> 32 MB; peak RSS <= 64 MB + 3 x longest line)"
    );
    let h = [
        "family", "size", "MB/s", "wall s", "CPU s", "growth", "peak RSS", "budget", "Python",
        "met?",
    ];
    println!(
        "{:<20} {:>5} {:>8} {:>8} {:>8} {:>7} {:>9} {:>7} {:>8}  {}",
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]
    );
    // What every size pays before its first byte: start-up and engine construction.
    let empty = measure(ctx.runs, || ctx.ours(&["redact"]), None, &out, None, || {})?
        .ok_or("unreachable: no timeout")?;
    println!(
        "{:<20} {:>5} {:>8} {:>8.3} {:>8.2} {:>7} {:>9}",
        "(empty stdin)",
        "0 MB",
        "-",
        empty.secs,
        empty.cpu_secs,
        "-",
        mb(empty.hwm_bytes)
    );
    let mut missed = Vec::new();
    for family in FAMILIES {
        // The previous size and its time: growth is checked per step, scaled to its factor
        // (1 -> 8 MB: at most 9x; 8 -> 32 MB: at most 4.5x).
        let mut prev: Option<(usize, f64)> = None;
        for &size in sizes {
            let input = adversarial_input(&dir, family, size)?;
            let bytes = (size * 1_000_000) as f64;
            let s = measure(
                ctx.runs,
                || ctx.ours(&["redact"]),
                Some(&input),
                &out,
                None,
                || {},
            )?
            .ok_or("unreachable: no timeout")?;
            let mbps = bytes / 1e6 / s.secs;
            let growth = prev.map(|(p_size, p_secs)| {
                let limit = ADV_GROWTH_LIMIT * (size as f64 / p_size as f64) / 8.0;
                (s.secs / p_secs, limit)
            });
            prev = Some((size, s.secs));
            let budget = RSS_BASE + RSS_PER_LINE * longest_line(&input)? as f64;
            let py = if size == 1 {
                match ctx.python(&["redact"]) {
                    Some(mut c) => {
                        match sample(&mut c, Some(&input), &out, Some(PY_ADV_TIMEOUT), true)? {
                            Some(p) => format!("{:.2}", bytes / 1e6 / p.secs),
                            None => format!("<{:.3}", bytes / 1e6 / PY_ADV_TIMEOUT.as_secs_f64()),
                        }
                    }
                    None => "-".into(),
                }
            } else {
                String::new()
            };
            let checks = [
                (mbps >= ADV_TARGET_MBPS, "speed"),
                (growth.is_none_or(|(g, limit)| g <= limit), "growth"),
                ((s.hwm_bytes as f64) <= budget, "RSS"),
            ];
            let failed: Vec<&str> = checks.iter().filter(|c| !c.0).map(|c| c.1).collect();
            if !failed.is_empty() {
                missed.push(format!("{} {size} MB: {}", family.name, failed.join(", ")));
            }
            println!(
                "{:<20} {:>2} MB {:>8.1} {:>8.3} {:>8.2} {:>7} {:>9} {:>7} {:>8}  {}",
                family.name,
                size,
                mbps,
                s.secs,
                s.cpu_secs,
                growth.map_or("-".into(), |(g, _)| format!("{g:.1}x")),
                mb(s.hwm_bytes),
                mb(budget as u64),
                py,
                if failed.is_empty() {
                    "met".to_owned()
                } else {
                    format!("NOT MET ({})", failed.join(", "))
                },
            );
        }
    }
    println!();
    if missed.is_empty() {
        println!("adversarial: every target met");
    } else {
        println!("adversarial: {} target(s) not met:", missed.len());
        for m in &missed {
            println!("  {m}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn options_parse() {
        let o = options(&args(&[])).unwrap();
        assert_eq!((o.runs, o.quick, o.python), (3, false, true));
        let o = options(&args(&["--runs", "5", "--no-python"])).unwrap();
        assert_eq!((o.runs, o.quick, o.python), (5, false, false));
        assert_eq!(options(&args(&["--runs", "5", "--quick"])).unwrap().runs, 1);
        assert!(options(&args(&["--runs", "0"])).is_err());
        assert!(options(&args(&["--runs"])).is_err());
        assert!(options(&args(&["--bogus"])).is_err());
    }

    #[test]
    fn reads_our_own_peak_rss() {
        let hwm = vm_hwm("/proc/self/status").unwrap();
        assert!(hwm > 100_000, "{hwm}");
    }

    #[test]
    fn longest_line_counts_bytes_between_newlines() {
        let dir = std::env::temp_dir().join(format!("bench-cli-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("lines.txt");
        std::fs::write(&f, "ab\nabcd\n\nabc").unwrap();
        assert_eq!(longest_line(&f).unwrap(), 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
