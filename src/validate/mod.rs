//! Validation of ONNX models with independent runtimes: ONNX Runtime
//! ([`ort`], loaded dynamically from the `onnxruntime` wheel).
pub mod latency;
pub mod ort;
pub mod tract;

/// Errors of the validation layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ValidateError {
    #[error("ONNX Runtime could not be loaded from {path}: {msg} (run tools/setup.sh, or set ORT_DYLIB_PATH to a libonnxruntime.so)")]
    Load { path: String, msg: String },
    #[error("ONNX Runtime: {0}")]
    Runtime(String),
    #[error("ONNX Runtime execution provider '{ep}': {msg}")]
    Ep { ep: &'static str, msg: String },
    #[error("tract: {0}")]
    Tract(String),
}

/// Something that runs an ONNX classifier on a batch: ONNX Runtime, tract, or
/// rlal's own libtorch executor. Input: NCHW f32; output: every graph output.
pub trait Runner {
    /// Short engine name for reports ("ort", "tract", "tch").
    fn engine(&self) -> &'static str;
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<ort::Output>, ValidateError>;
}

impl Runner for ort::OrtModel {
    fn engine(&self) -> &'static str {
        match self.ep() {
            ort::Ep::Cpu => "ort",
            ort::Ep::Cuda => "ort-cuda",
        }
    }
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<ort::Output>, ValidateError> {
        ort::OrtModel::run(self, shape, data)
    }
}

impl Runner for tract::TractModel {
    fn engine(&self) -> &'static str {
        "tract"
    }
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<ort::Output>, ValidateError> {
        tract::TractModel::run(self, shape, data)
    }
}
