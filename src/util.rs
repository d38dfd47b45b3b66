//! Small shared helpers.
use std::io::Write;
use std::path::Path;

/// `impl From<$inner> for $outer` through the variant `$outer::$variant($inner)`, whose
/// message includes the inner error's and which is therefore no `source()` (the crate's
/// error convention, see the crate documentation; `#[from]` would make it one).
macro_rules! from_inner {
    ($inner:ty => $outer:ident::$variant:ident) => {
        impl From<$inner> for $outer {
            fn from(e: $inner) -> $outer {
                $outer::$variant(e)
            }
        }
    };
}
pub(crate) use from_inner;

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

/// A native library's error message (libtorch, ONNX Runtime) as one line a person can
/// read: libtorch appends the C++ exception's origin and a stack of `frame #N:` lines to
/// its message; those are dropped (kept with `RUST_BACKTRACE=1` or `full`), and what is
/// left is joined into one line.
pub fn readable_error(msg: &str) -> String {
    if std::env::var("RUST_BACKTRACE").is_ok_and(|v| v == "1" || v == "full") {
        return msg.to_string();
    }
    without_native_frames(msg)
}

fn without_native_frames(msg: &str) -> String {
    let native = |l: &str| {
        let l = l.trim_start();
        l.starts_with("Exception raised from")
            || l.starts_with("frame #")
            || l.contains("(most recent call first)")
    };
    let kept: Vec<&str> =
        msg.lines().take_while(|l| !native(l)).map(str::trim).filter(|l| !l.is_empty()).collect();
    kept.join(" ")
}

#[cfg(test)]
mod tests {
    use super::without_native_frames as readable_error;

    #[test]
    fn libtorch_frames_are_dropped_and_the_message_is_one_line() {
        let m = "Internal torch error: PytorchStreamReader failed reading zip archive: failed finding central directory\nException raised from valid at /pytorch/caffe2/serialize/inline_container.cc:236 (most recent call first):\nframe #0: c10::Error::Error(c10::SourceLocation, std::string) + 0x98 (0x7f in libc10.so)\nframe #1: <unknown function> + 0x1 (0x7f in libtorch_cpu.so)\n";
        assert_eq!(
            readable_error(m),
            "Internal torch error: PytorchStreamReader failed reading zip archive: failed finding central directory"
        );
        assert_eq!(readable_error("a\n  b\n"), "a b");
    }
}
