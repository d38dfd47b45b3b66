//! The runtime layer: every engine that runs an ONNX model lives here, ONNX Runtime
//! ([`ort`], loaded dynamically from the `onnxruntime` wheel), tract ([`tract`], pure
//! Rust) and rlal's own libtorch executor, behind one [`Runner`]. [`Engine`] is the
//! choice a user makes, [`open`] the one place that picks ONNX Runtime and falls back
//! to tract, [`accuracy`] the one top-1 loop over a loader, [`latency`] the timing
//! (and the latency table's sessions), [`score`] the reward scorer's side-by-side
//! sessions, [`compare`] the one before/after validation of a pruned model (`rlal
//! export`, `rlal prune`'s report), [`profile`] ONNX Runtime's per-op profile.
//!
//! Nothing outside this module names an engine's API: a new runtime is a file here
//! (its model type and `impl Runner`) and a variant of [`Engine`].
pub mod compare;
pub mod latency;
pub mod ort;
pub mod profile;
pub mod score;
pub mod tract;

pub use ort::{check_ep, Ep, Output};

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
    /// The tch engine could not build its network from the graph.
    #[error(transparent)]
    Net(#[from] crate::train::TrainError),
    /// `err`, met while doing `what` ("loading the pruned model").
    #[error("{what}: {err}")]
    In { what: String, err: Box<ValidateError> },
}

impl ValidateError {
    /// This error as met while doing `what`.
    pub fn during(self, what: impl Into<String>) -> ValidateError {
        ValidateError::In { what: what.into(), err: Box::new(self) }
    }

    /// Whether the input is at fault (a dataset that cannot be read, a graph the tch
    /// engine cannot execute), rather than the engine.
    pub fn is_input(&self) -> bool {
        match self {
            ValidateError::Data(_) | ValidateError::Net(_) => true,
            ValidateError::In { err, .. } => err.is_input(),
            _ => false,
        }
    }
}

/// The engine that runs a model (`rlal eval --engine`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Engine {
    /// rlal's libtorch executor.
    Tch,
    /// ONNX Runtime (falls back to tract, with a warning, when libonnxruntime cannot be loaded).
    Ort,
    /// tract (pure Rust).
    Tract,
}

/// Where and how an [`Engine`] runs.
#[derive(Clone, Copy, Debug)]
pub struct EngineOptions {
    /// Intra-op threads (0: the engine's default).
    pub threads: usize,
    /// ONNX Runtime's execution provider.
    pub ep: Ep,
    /// The tch engine's device.
    pub device: tch::Device,
}

impl Engine {
    /// A runner of graph `g` (analysed as `an`) on this engine.
    pub fn open(
        self,
        g: &crate::ir::Graph,
        an: &crate::analysis::Analysis,
        o: EngineOptions,
    ) -> Result<Box<dyn Runner>, ValidateError> {
        match self {
            Engine::Tch => {
                if o.threads > 0 {
                    tch::set_num_threads(o.threads as i32);
                }
                Ok(Box::new(crate::train::Net::new(g, an, o.device)?))
            }
            Engine::Ort => open(&crate::onnx::to_bytes(g), o.threads, o.ep),
            Engine::Tract => {
                Ok(Box::new(tract::TractModel::from_bytes(&crate::onnx::to_bytes(g))?))
            }
        }
    }
}

/// Whether ONNX Runtime can be loaded (the shared library and its environment).
pub fn ort_available() -> Result<(), ValidateError> {
    ort::OrtModel::probe()
}

/// ONNX Runtime on the CPU with `threads` intra-op threads (0: its default), without
/// the fallback of [`open`]: the engine of the latency table and of ONNX Runtime rewards.
pub fn open_ort(bytes: &[u8], threads: usize) -> Result<Box<dyn Runner>, ValidateError> {
    Ok(Box::new(ort::OrtModel::from_bytes(bytes, threads)?))
}

/// Max |a - b| over the first outputs of two runs.
pub fn max_diff(a: &[Output], b: &[Output]) -> Result<f32, ValidateError> {
    let no = || ValidateError::Model("the model has no output".into());
    let (x, y) = (&a.first().ok_or_else(no)?.1, &b.first().ok_or_else(no)?.1);
    if x.len() != y.len() {
        return Err(ValidateError::Model(format!(
            "outputs have {} and {} elements",
            x.len(),
            y.len()
        )));
    }
    Ok(x.iter().zip(y).map(|(p, q)| (p - q).abs()).fold(0.0, f32::max))
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
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError>;
}

impl Runner for ort::OrtModel {
    fn engine(&self) -> &'static str {
        match self.ep() {
            ort::Ep::Cpu => "ort",
            ort::Ep::Cuda => "ort-cuda",
        }
    }
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError> {
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
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError> {
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
    fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError> {
        tract::TractModel::run(self, shape, data)
    }
}
