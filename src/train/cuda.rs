//! Loading libtorch's CUDA backend.
//!
//! torch-sys asks the linker for `libtorch_cuda.so`, but nothing in tch references
//! a symbol of it, so the default `--as-needed` link drops it and CUDA is never
//! visible (`tch::Cuda::is_available()` is false even on a GPU machine with the CUDA
//! build of the `torch` wheel). rlal therefore opens the library itself, globally,
//! before the first CUDA query: by name (the binary's rpath to the wheel's
//! `torch/lib`, or `LD_LIBRARY_PATH`), else from the libtorch directory recorded at
//! build time. CPU runs never pay for it: it is only tried for `device: auto|cuda`.
use crate::dist::LoadError;
use std::sync::OnceLock;

static LOADED: OnceLock<Result<String, LoadError>> = OnceLock::new();

/// Loads libtorch_cuda.so once; `Ok(path)` when it is loaded (CUDA kernels and
/// hooks registered), `Err` naming each path tried and why it did not load (CPU-only
/// libtorch, or a CUDA build whose CUDA libraries are missing). Must run before the
/// first CUDA query.
pub fn load_backend() -> Result<String, LoadError> {
    LOADED.get_or_init(load).clone()
}

fn load() -> Result<String, LoadError> {
    let mut candidates = vec![std::path::PathBuf::from("libtorch_cuda.so")];
    if let Some(dir) = option_env!("RLAL_LIBTORCH_LIB") {
        candidates.push(std::path::Path::new(dir).join("libtorch_cuda.so"));
    }
    let (lib, path) = crate::dist::open_first(&candidates)?;
    // Keep it loaded for the life of the process.
    std::mem::forget(lib);
    Ok(path)
}

#[cfg(test)]
mod tests {
    #[test]
    fn loading_is_idempotent_and_explains_failure() {
        let a = super::load_backend();
        let b = super::load_backend();
        assert_eq!(a, b);
        if let Err(why) = a {
            assert!(why.to_string().contains("libtorch_cuda.so"), "{why}");
        }
    }
}
