//! Small shared helpers.
use std::io::Write;
use std::path::Path;

/// Writes `bytes` to `path` atomically: a temp file in the same folder, fsync, rename.
/// A crash never leaves a half-written `path`.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let fname =
        path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
    let tmp = dir.join(format!(".{fname}.{}.tmp", std::process::id()));
    let res = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if res.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    res
}

/// Keeps the first `n` lines of a JSON-lines file (the epochs a checkpoint covers) and
/// returns them; a missing file is an empty one.
pub fn truncate_lines(path: &Path, n: usize) -> std::io::Result<Vec<String>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let lines: Vec<String> = text.lines().take(n).map(str::to_string).collect();
    let mut body = lines.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    write_atomic(path, body.as_bytes())?;
    Ok(lines)
}

/// Set by the CLI's `--quiet`: no progress display at all.
static QUIET: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Turns every progress display off (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, std::sync::atomic::Ordering::Relaxed);
}

/// Whether progress is drawn in place: stderr is a terminal and `--quiet` is off.
fn redraws() -> bool {
    use std::io::IsTerminal;
    !QUIET.load(std::sync::atomic::Ordering::Relaxed) && std::io::stderr().is_terminal()
}

/// Redraws the progress line on stderr (`\r`, then `line`). Nothing when stderr is
/// not a terminal: a redirected log would otherwise hold every frame.
pub fn progress(line: std::fmt::Arguments) {
    if redraws() {
        let mut e = std::io::stderr().lock();
        let _ = write!(e, "\r{line}");
        let _ = e.flush();
    }
}

/// A line that ends a progress display (e.g. an epoch's summary): on a terminal it
/// overwrites the progress line (`\r` first, then erases what is left of it); in a log
/// it is a plain line.
pub fn progress_done(line: std::fmt::Arguments) {
    if redraws() {
        eprintln!("\r{line}\x1b[K");
    } else {
        eprintln!("{line}");
    }
}

/// For a file that was not found under a relative path: where that path was looked for
/// (relative paths, in recipes too, resolve against the working directory).
pub fn relative_hint(path: &Path, e: &std::io::Error) -> String {
    if e.kind() != std::io::ErrorKind::NotFound || path.is_absolute() {
        return String::new();
    }
    match std::env::current_dir() {
        Ok(d) => {
            format!(" (relative paths resolve against the working directory, here {})", d.display())
        }
        Err(_) => String::new(),
    }
}
