//! The runtime layer: ONNX models run by independent engines, ONNX Runtime
//! ([`ort`], loaded dynamically from the `onnxruntime` wheel) and tract ([`tract`],
//! pure Rust), behind one [`Runner`]; [`open`] is the one place that picks ONNX
//! Runtime and falls back to tract, [`accuracy`] the one top-1 loop over a loader,
//! [`latency`] the timing.
pub mod latency;
pub mod ort;
pub mod profile;
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
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{0}")]
    Model(String),
}

/// An engine for the model `bytes`: ONNX Runtime with `threads` intra-op threads on
/// `ep`, or tract when ONNX Runtime cannot be loaded (said once per process, on
/// stderr); a missing CUDA execution provider is an error, not a fallback.
pub fn open(bytes: &[u8], threads: usize, ep: ort::Ep) -> Result<Box<dyn Runner>, ValidateError> {
    match ort::OrtModel::with_ep(bytes, threads, ep) {
        Ok(m) => Ok(Box::new(m)),
        Err(e @ ValidateError::Load { .. }) => {
            static WARN: std::sync::Once = std::sync::Once::new();
            WARN.call_once(|| {
                eprintln!("warning: {e}; falling back to tract (its latency and accuracy)")
            });
            Ok(Box::new(tract::TractModel::from_bytes(bytes)?))
        }
        Err(e) => Err(e),
    }
}

/// Index of the largest value (the first of equal ones, as `argmax`).
pub fn argmax(row: &[f32]) -> usize {
    row.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |m, (i, &v)| if v > m.1 { (i, v) } else { m })
        .0
}

/// Top-1 figures of a runner over a loader.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Accuracy {
    pub correct: usize,
    pub samples: usize,
    /// Seconds inside the engine (data loading excluded).
    pub seconds: f64,
    pub batches: usize,
}

impl Accuracy {
    pub fn rate(&self) -> f64 {
        self.correct as f64 / self.samples.max(1) as f64
    }
}

/// Top-1 accuracy of `r` (its first output: logits, classes last) over every batch of `loader`.
pub fn accuracy(
    r: &mut dyn Runner,
    loader: &crate::data::Loader,
) -> Result<Accuracy, ValidateError> {
    let mut a = Accuracy::default();
    for b in loader.epoch(0) {
        let b = b?;
        let t0 = std::time::Instant::now();
        let out = r.run(&b.shape, b.data)?;
        a.seconds += t0.elapsed().as_secs_f64();
        a.batches += 1;
        let (shape, logits) = out
            .into_iter()
            .next()
            .ok_or_else(|| ValidateError::Model("the model has no output".into()))?;
        let k =
            *shape.last().ok_or_else(|| ValidateError::Model("the output is a scalar".into()))?;
        for (row, &y) in logits.chunks(k.max(1)).zip(&b.labels) {
            a.correct += (argmax(row) as i64 == y) as usize;
            a.samples += 1;
        }
    }
    Ok(a)
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

/// rlal's own libtorch executor as an engine (`rlal eval --engine tch`).
impl Runner for crate::train::Net {
    fn engine(&self) -> &'static str {
        if self.device().is_cuda() {
            "tch-cuda"
        } else {
            "tch"
        }
    }
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<ort::Output>, ValidateError> {
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let x = tch::Tensor::from_slice(&data).reshape(&dims);
        let outs = tch::no_grad(|| self.forward_all(&x, false))
            .map_err(|e| ValidateError::Runtime(e.to_string()))?;
        outs.into_iter()
            .map(|t| {
                let shape = t.size().iter().map(|&d| d as usize).collect();
                let t = t
                    .to_device(tch::Device::Cpu)
                    .to_kind(tch::Kind::Float)
                    .contiguous()
                    .flatten(0, -1);
                Vec::<f32>::try_from(&t)
                    .map(|v| (shape, v))
                    .map_err(|e| ValidateError::Runtime(e.to_string()))
            })
            .collect()
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
