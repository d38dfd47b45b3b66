//! Makes the binary find its native libraries without environment variables:
//! an rpath to libtorch (from torch-sys) and the path of libonnxruntime baked in
//! as the default for `ort`'s dynamic loading (both come from the PyPI wheels that
//! tools/setup.sh installs into .venv; see .cargo/config.toml, written by setup).
fn main() {
    println!("cargo:rerun-if-env-changed=ORT_DYLIB_PATH");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    if let Ok(lib) = std::env::var("DEP_TCH_LIBTORCH_LIB") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{lib}");
        // Where src/train/cuda.rs looks for libtorch_cuda.so when the rpath lookup fails.
        println!("cargo:rustc-env=RLAL_LIBTORCH_LIB={lib}");
    }
    if let Ok(p) = std::env::var("ORT_DYLIB_PATH") {
        let abs = std::fs::canonicalize(&p).map(|p| p.display().to_string()).unwrap_or(p);
        println!("cargo:rustc-env=RLAL_ORT_DYLIB_DEFAULT={abs}");
    }
}
