//! Runs ONNX models in ONNX Runtime (CPU execution provider).
//!
//! The shared library is found through `ORT_DYLIB_PATH`, else the path the
//! build recorded from `.cargo/config.toml` (the `.venv` made by tools/setup.sh).
use super::ValidateError;
use std::sync::OnceLock;

/// Path of libonnxruntime that will be loaded.
pub fn dylib_path() -> Option<String> {
    std::env::var("ORT_DYLIB_PATH").ok().or_else(|| option_env!("RLAL_ORT_DYLIB_DEFAULT").map(String::from))
}

fn environment() -> Result<&'static ort::environment::Environment, ValidateError> {
    static ENV: OnceLock<Result<ort::environment::Environment, ValidateError>> = OnceLock::new();
    ENV.get_or_init(|| {
        let path = dylib_path().ok_or_else(|| ValidateError::Load { path: "(none)".into(), msg: "no ORT_DYLIB_PATH and no path recorded at build time".into() })?;
        if !std::path::Path::new(&path).exists() {
            return Err(ValidateError::Load { path, msg: "file not found".into() });
        }
        let builder = ort::init_from(&path).map_err(|e| ValidateError::Load { path: path.clone(), msg: e.to_string() })?;
        builder.with_name("rlal").build().map_err(|e| ValidateError::Load { path, msg: e.to_string() })
    })
    .as_ref()
    .map_err(|e| match e {
        ValidateError::Load { path, msg } => ValidateError::Load { path: path.clone(), msg: msg.clone() },
        other => ValidateError::Runtime(other.to_string()),
    })
}

/// A loaded model.
pub struct OrtModel {
    session: ort::session::Session,
}

/// An output tensor: shape and f32 data.
pub type Output = (Vec<usize>, Vec<f32>);

impl OrtModel {
    /// Whether ONNX Runtime can be loaded (the shared library and its environment).
    pub fn probe() -> Result<(), ValidateError> {
        environment().map(|_| ())
    }

    /// Loads encoded model bytes with `threads` intra-op threads (0: ORT's default).
    pub fn from_bytes(bytes: &[u8], threads: usize) -> Result<OrtModel, ValidateError> {
        let env = environment()?;
        let rt = |e: String| ValidateError::Runtime(e);
        let mut b = ort::session::Session::builder(env).map_err(|e| rt(e.to_string()))?;
        if threads > 0 {
            b = b.with_intra_threads(threads).map_err(|e| rt(e.to_string()))?;
        }
        let session = b.commit_from_memory(bytes).map_err(|e| rt(e.to_string()))?;
        Ok(OrtModel { session })
    }
    /// Runs the model on one f32 input (the first graph input); returns all outputs.
    pub fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError> {
        let rt = |e: String| ValidateError::Runtime(e);
        let name = self.session.inputs().first().map(|i| i.name().to_string()).ok_or_else(|| rt("the model has no inputs".into()))?;
        let t = ort::value::Tensor::from_array((shape.to_vec(), data)).map_err(|e| rt(e.to_string()))?;
        let outs = self.session.run(ort::inputs![name => t]).map_err(|e| rt(e.to_string()))?;
        let mut res = Vec::new();
        for (_, v) in outs.iter() {
            let (s, d) = v.try_extract_tensor::<f32>().map_err(|e| rt(e.to_string()))?;
            res.push((s.iter().map(|&x| x as usize).collect(), d.to_vec()));
        }
        Ok(res)
    }
}
