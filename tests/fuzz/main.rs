//! Mutation fuzzing on stable Rust, as part of the test suite: malformed models,
//! recipes and datasets must give errors, never panics or hangs.
//!
//! * Models: the reference graphs in `graphs/`, mutated byte by byte (truncation,
//!   bit flips, huge varints, spliced garbage) and structurally through
//!   `rlal::onnx::pb` (dropped initializers, dangling inputs, cycles, unknown ops
//!   and domains, absurd attributes and dims, wrong-rank or half-length weights,
//!   duplicate outputs, conv groups larger than channels, scalar or missing graph
//!   inputs), go in process through what `rlal import`, `rlal export` (dry run and
//!   surgery) and `rlal eval`'s model loading call; a sample also goes through
//!   the real binary, which must exit 0 or 2 (naming the file), as in process.
//! * Recipes: random edits of `recipes/*.yaml` through both recipe parsers.
//! * Datasets: truncated or corrupted MNIST IDX and CIFAR binary files, image
//!   folders with garbage files, opened and read through `rlal::data`.
//! * Checkpoints: the two kept checkpoints of `rlal train --checkpoint-dir` (states
//!   and tensor files) corrupted, some without their digests, loaded and restored
//!   as a resume does.
//!
//! Each case runs in its own thread under `catch_unwind` with a time limit.
//! `RLAL_FUZZ_CASES` (model cases; recipes, datasets and checkpoints scale with it) and
//! `RLAL_FUZZ_SEED` scale up or vary a run (`tools/fuzz.sh N`); a failing case
//! is written to `target/fuzz-failures/` to be replayed.
mod checkpoints;
mod data;
mod models;
mod recipes;
mod regressions;

use rlal::rng::Rng;
use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Model cases of a plain `cargo test` (recipes: twice as many, datasets: a fifth,
/// checkpoints: a fortieth):
/// about a minute in the debug test profile on 2 cores.
const DEFAULT_CASES: usize = 4000;

/// Longest a case may run before it counts as a hang.
const LIMIT: Duration = Duration::from_secs(10);

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.trim().parse().ok())
}

/// Model cases of this run (`RLAL_FUZZ_CASES`, default `default`).
fn cases(default: usize) -> usize {
    env_u64("RLAL_FUZZ_CASES").map_or(default, |n| n as usize)
}

/// `RLAL_FUZZ_VERBOSE=1`: print every case and what became of it.
fn verbose() -> bool {
    std::env::var_os("RLAL_FUZZ_VERBOSE").is_some()
}

fn seed(stream: u64) -> Rng {
    Rng::new(env_u64("RLAL_FUZZ_SEED").unwrap_or(15) ^ stream.wrapping_mul(0x9e37_79b9_7f4a_7c15))
}

// ---------------------------------------------------------------- harness

enum Outcome<T> {
    Done(T),
    Panic(String),
    Hang,
}

thread_local! {
    /// Whether this thread runs a fuzz case (its panics are expected and recorded).
    static IN_CASE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static WHERE: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
}

/// Silences the default panic output (a fuzz run panics on purpose) and keeps
/// the location of each thread's last panic.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CASE.with(|c| c.get()) {
                return default(info);
            }
            let at =
                info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
            WHERE.with(|w| *w.borrow_mut() = at);
        }))
    });
}

/// Runs `f` in its own thread: its value, its panic (message and location), or a hang.
fn guarded<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Outcome<T> {
    quiet_panics();
    let (tx, rx) = mpsc::channel();
    std::thread::Builder::new()
        .stack_size(64 << 20)
        .spawn(move || {
            IN_CASE.with(|c| c.set(true));
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
                let msg = p
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| p.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                format!("{msg} at {}", WHERE.with(|w| w.borrow().clone()))
            });
            let _ = tx.send(r);
        })
        .expect("spawning a fuzz case");
    match rx.recv_timeout(LIMIT) {
        Ok(Ok(v)) => Outcome::Done(v),
        Ok(Err(m)) => Outcome::Panic(m),
        Err(_) => Outcome::Hang,
    }
}

/// Failures of one fuzz target: printed, written for replay, and failed at the end.
struct Failures {
    target: &'static str,
    list: Vec<String>,
}

impl Failures {
    fn new(target: &'static str) -> Failures {
        Failures { target, list: Vec::new() }
    }

    fn add(&mut self, case: usize, what: &str, msg: String, repro: Option<(&str, &[u8])>) {
        let mut line = format!("{} case {case} ({what}): {msg}", self.target);
        if let Some((ext, bytes)) = repro {
            let dir = root().join("target/fuzz-failures");
            let p = dir.join(format!("{}-{case}.{ext}", self.target));
            if std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&p, bytes)).is_ok() {
                line += &format!(" [{}]", p.display());
            }
        }
        eprintln!("{line}");
        self.list.push(line);
    }

    /// Runs case `case` ([`guarded`]), recording a panic or a hang under `what`.
    fn run(&mut self, case: usize, what: &str, f: impl FnOnce() + Send + 'static) {
        match guarded(f) {
            Outcome::Done(()) => {}
            Outcome::Panic(m) => self.add(case, what, format!("panicked: {m}"), None),
            Outcome::Hang => self.add(case, what, format!("ran longer than {LIMIT:?}"), None),
        }
    }

    fn check(self, n: usize, t0: Instant) {
        eprintln!(
            "fuzz {}: {n} cases in {:.1}s, {} failures",
            self.target,
            t0.elapsed().as_secs_f64(),
            self.list.len()
        );
        assert!(
            self.list.is_empty(),
            "{} of {n} {} cases panicked or hung:\n{}",
            self.list.len(),
            self.target,
            self.list.join("\n")
        );
    }
}
