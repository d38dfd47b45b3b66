//! Runs ONNX models in ONNX Runtime: CPU execution provider by default, CUDA
//! ([`Ep::Cuda`]) when the loaded libonnxruntime was built with it.
//!
//! The shared library is found through `ORT_DYLIB_PATH`, else the path the
//! build recorded from `.cargo/config.toml` (the `.venv` made by tools/setup.sh,
//! whose `onnxruntime` wheel is CPU-only; the `onnxruntime-gpu` wheel's
//! library has the CUDA execution provider).
use super::ValidateError;
use std::sync::OnceLock;

/// Path of libonnxruntime that will be loaded.
pub fn dylib_path() -> Option<String> {
    std::env::var("ORT_DYLIB_PATH")
        .ok()
        .or_else(|| option_env!("RLAL_ORT_DYLIB_DEFAULT").map(String::from))
}

fn environment() -> Result<&'static ort::environment::Environment, ValidateError> {
    static ENV: OnceLock<Result<ort::environment::Environment, ValidateError>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = dylib_path().ok_or_else(|| ValidateError::Load {
            path: "(none)".into(),
            msg: "no ORT_DYLIB_PATH and no path recorded at build time".into(),
        })?;
        if !std::path::Path::new(&path).exists() {
            return Err(ValidateError::Load { path, msg: "file not found".into() });
        }
        let builder = ort::init_from(&path)
            .map_err(|e| ValidateError::Load { path: path.clone(), msg: e.to_string() })?;
        builder
            .with_name("rlal")
            .build()
            .map_err(|e| ValidateError::Load { path, msg: e.to_string() })
    })
    .as_ref()
    .map_err(|e| match e {
        ValidateError::Load { path, msg } => {
            ValidateError::Load { path: path.clone(), msg: msg.clone() }
        }
        other => ValidateError::Runtime(other.to_string()),
    })
}

/// ONNX Runtime execution provider.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    clap::ValueEnum,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Ep {
    /// The CPU execution provider (every build has it).
    #[default]
    Cpu,
    /// The CUDA execution provider (needs a CUDA build of ONNX Runtime, e.g. the
    /// `onnxruntime-gpu` wheel's library in ORT_DYLIB_PATH, and a GPU). No silent
    /// fallback: a session that cannot use CUDA is an error.
    Cuda,
}

impl Ep {
    pub fn name(self) -> &'static str {
        match self {
            Ep::Cpu => "cpu",
            Ep::Cuda => "cuda",
        }
    }
}

/// Whether the loaded ONNX Runtime was built with `ep` ([`ValidateError::Ep`] if not;
/// [`ValidateError::Load`] when ONNX Runtime itself cannot be loaded).
pub fn check_ep(ep: Ep) -> Result<(), ValidateError> {
    use ort::ep::ExecutionProvider;
    environment()?;
    if ep == Ep::Cuda
        && !ort::ep::CUDA::is_available().map_err(|e| ValidateError::Runtime(e.to_string()))?
    {
        let path = dylib_path().unwrap_or_default();
        return Err(ValidateError::Ep {
            ep: "cuda",
            msg: format!("the ONNX Runtime library {path} was built without the CUDA execution provider (the `onnxruntime` wheel is CPU-only: install `onnxruntime-gpu` and set ORT_DYLIB_PATH to its libonnxruntime.so)"),
        });
    }
    Ok(())
}

/// A loaded model.
pub struct OrtModel {
    session: ort::session::Session,
    ep: Ep,
}

/// An output tensor: shape and f32 data.
pub type Output = (Vec<usize>, Vec<f32>);

impl OrtModel {
    /// Whether ONNX Runtime can be loaded (the shared library and its environment).
    pub fn probe() -> Result<(), ValidateError> {
        environment().map(|_| ())
    }

    /// Loads encoded model bytes with `threads` intra-op threads (0: ORT's default), CPU execution provider.
    pub fn from_bytes(bytes: &[u8], threads: usize) -> Result<OrtModel, ValidateError> {
        Self::with_ep(bytes, threads, Ep::Cpu)
    }

    /// [`OrtModel::from_bytes`] on execution provider `ep`. [`Ep::Cuda`] fails with
    /// [`ValidateError::Ep`] when this ONNX Runtime has no CUDA execution provider or
    /// cannot start it (no GPU, missing CUDA/cuDNN libraries).
    pub fn with_ep(bytes: &[u8], threads: usize, ep: Ep) -> Result<OrtModel, ValidateError> {
        let env = environment()?;
        let rt = |e: String| ValidateError::Runtime(e);
        let mut b = ort::session::Session::builder(env).map_err(|e| rt(e.to_string()))?;
        if threads > 0 {
            b = b.with_intra_threads(threads).map_err(|e| rt(e.to_string()))?;
        }
        if ep == Ep::Cuda {
            check_ep(ep)?;
            let path = dylib_path().unwrap_or_default();
            b = b
                .with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()])
                .map_err(|e| ValidateError::Ep {
                ep: "cuda",
                msg: format!("{path}: the CUDA execution provider could not be started: {e}"),
            })?;
        }
        let session = b.commit_from_memory(bytes).map_err(|e| rt(e.to_string()))?;
        Ok(OrtModel { session, ep })
    }

    /// A CPU session for timing beside other sessions in the same process: its threads do
    /// not spin-wait after a run (ONNX Runtime's default), which on a few cores would slow
    /// whichever session runs next and blur interleaved measurements.
    pub fn timing(bytes: &[u8], threads: usize) -> Result<OrtModel, ValidateError> {
        Self::quiet_cpu(bytes, threads, None)
    }

    /// A CPU session that records ONNX Runtime's profile into `file` (a JSON trace,
    /// complete after [`OrtModel::end_profiling`]).
    pub fn profiling(
        bytes: &[u8],
        threads: usize,
        file: &std::path::Path,
    ) -> Result<OrtModel, ValidateError> {
        Self::quiet_cpu(bytes, threads, Some(file))
    }

    /// A CPU session without spin-waiting threads, profiling into `profile` when given.
    fn quiet_cpu(
        bytes: &[u8],
        threads: usize,
        profile: Option<&std::path::Path>,
    ) -> Result<OrtModel, ValidateError> {
        let env = environment()?;
        let rt = |e: String| ValidateError::Runtime(e);
        let mut b = ort::session::Session::builder(env).map_err(|e| rt(e.to_string()))?;
        if threads > 0 {
            b = b.with_intra_threads(threads).map_err(|e| rt(e.to_string()))?;
        }
        if let Some(file) = profile {
            b = b.with_profiling(file).map_err(|e| rt(e.to_string()))?;
        }
        b = b.with_intra_op_spinning(false).map_err(|e| rt(e.to_string()))?;
        let session = b.commit_from_memory(bytes).map_err(|e| rt(e.to_string()))?;
        Ok(OrtModel { session, ep: Ep::Cpu })
    }

    /// Ends a profiling session's trace; returns the file written.
    pub fn end_profiling(&mut self) -> Result<String, ValidateError> {
        self.session.end_profiling().map_err(|e| ValidateError::Runtime(e.to_string()))
    }

    /// The execution provider the session was created with.
    pub fn ep(&self) -> Ep {
        self.ep
    }
    /// Runs the model on one f32 input (the first graph input); returns all outputs.
    pub fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError> {
        self.run_ref(shape, &data)
    }

    /// [`OrtModel::run`] on borrowed input data (no copy into the runtime).
    pub fn run_ref(&mut self, shape: &[usize], data: &[f32]) -> Result<Vec<Output>, ValidateError> {
        let rt = |e: String| ValidateError::Runtime(e);
        let name = self
            .session
            .inputs()
            .first()
            .map(|i| i.name().to_string())
            .ok_or_else(|| rt("the model has no inputs".into()))?;
        let t = ort::value::TensorRef::from_array_view((shape.to_vec(), data))
            .map_err(|e| rt(e.to_string()))?;
        let outs = self.session.run(ort::inputs![name => t]).map_err(|e| rt(e.to_string()))?;
        let mut res = Vec::new();
        for (_, v) in outs.iter() {
            let (s, d) = v.try_extract_tensor::<f32>().map_err(|e| rt(e.to_string()))?;
            res.push((s.iter().map(|&x| x as usize).collect(), d.to_vec()));
        }
        Ok(res)
    }
}
