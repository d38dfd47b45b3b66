//! Validation of ONNX models with independent runtimes: ONNX Runtime
//! ([`ort`], loaded dynamically from the `onnxruntime` wheel).
pub mod ort;

/// Errors of the validation layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    #[error("ONNX Runtime could not be loaded from {path}: {msg} (run tools/setup.sh, or set ORT_DYLIB_PATH to a libonnxruntime.so)")]
    Load { path: String, msg: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
}
