//! The `rlal` command: parse, run, print the whole error chain, exit with
//! 0 (success), 1 (the job failed) or 2 (bad usage or bad input).
mod cli;

use clap::Parser;

/// glibc's malloc returns every freed block above its (dynamic) mmap threshold to the
/// kernel, and trims the heap top above 2x that; a training step allocates and frees
/// the same large activation and gradient tensors every step, so each step then pays
/// for the kernel zeroing fresh pages again (measured: 37% of a MobileNetV2 CPU step in
/// `clear_page_erms`). Fixing the mmap threshold at its maximum (32 MiB) and never
/// trimming keeps those blocks in the heap for the next step (PyTorch's CPU tuning
/// guide recommends a caching malloc for the same reason). The environment variables
/// MALLOC_MMAP_THRESHOLD_ / MALLOC_TRIM_THRESHOLD_ still win when set.
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any threads start.
    unsafe {
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
        if std::env::var_os("MALLOC_TRIM_THRESHOLD_").is_none() {
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

fn main() {
    tune_malloc();
    // A closed pipe (`rlal import --json | head`) ends the process quietly, as for any
    // Unix tool, instead of a panic in println!.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let args = cli::Cli::parse();
    // Under mpirun/srun: join the job before any other thread or CUDA work.
    let world = match rlal::dist::init_from_env() {
        Ok(w) => w,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let prefix = world.map(|w| w.prefix()).unwrap_or_default();
    if !rlal::dist::is_root() {
        // One rank reports progress; the others speak only on errors.
        rlal::util::set_quiet(true);
    }
    if let Err(e) = cli::run(args) {
        // libtorch's C++ frames only with RUST_BACKTRACE=1.
        let line = |m: &dyn std::fmt::Display| rlal::util::readable_error(&m.to_string());
        eprintln!("error: {prefix}{}", line(&e.error));
        for cause in e.error.chain().skip(1) {
            eprintln!("  cause: {}", line(&cause));
        }
        match rlal::dist::parallel() {
            // The other ranks would wait for this one in their next collective: end them all.
            Some(w) => w.abort(e.code),
            None => std::process::exit(e.code),
        }
    }
    if let Some(w) = world {
        w.finalize();
    }
}
