//! Runs ONNX models in tract (pure Rust; no shared library to load), the
//! second, independent engine and the fallback when ONNX Runtime is missing.
//!
//! tract optimises a model for fixed input shapes: the first run at a new
//! shape builds and caches a plan for it.
use super::{ort::Output, ValidateError};
use std::collections::HashMap;
use std::sync::Arc;
use tract_onnx::prelude::*;

type Plan = Arc<TypedRunnableModel>;

/// A loaded model and its plans per input shape.
pub struct TractModel {
    model: InferenceModel,
    plans: HashMap<Vec<usize>, Plan>,
}

fn rt(e: impl std::fmt::Display) -> ValidateError {
    ValidateError::Tract(format!("{e:#}"))
}

impl TractModel {
    /// Parses encoded model bytes. Intermediate `value_info` shapes are
    /// dropped first: tract treats them as constraints, and a symbolic batch
    /// dim there (`N`) does not unify with the concrete batch of a run.
    pub fn from_bytes(bytes: &[u8]) -> Result<TractModel, ValidateError> {
        use prost::Message;
        let mut proto = crate::onnx::pb::ModelProto::decode(bytes).map_err(rt)?;
        if let Some(g) = proto.graph.as_mut() {
            g.value_info.clear();
        }
        let bytes = proto.encode_to_vec();
        let model = tract_onnx::onnx().model_for_read(&mut &bytes[..]).map_err(rt)?;
        Ok(TractModel { model, plans: HashMap::new() })
    }

    fn plan(&mut self, shape: &[usize]) -> Result<Plan, ValidateError> {
        if let Some(p) = self.plans.get(shape) {
            return Ok(p.clone());
        }
        let p = self
            .model
            .clone()
            .with_input_fact(0, f32::fact(shape).into())
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .map_err(rt)?;
        self.plans.insert(shape.to_vec(), p.clone());
        Ok(p)
    }

    /// Runs the model on one f32 input (the first graph input); returns all outputs.
    pub fn run(&mut self, shape: &[usize], data: Vec<f32>) -> Result<Vec<Output>, ValidateError> {
        let plan = self.plan(shape)?;
        let input = Tensor::from_shape(shape, &data).map_err(rt)?;
        let outs = plan.run(tvec!(input.into())).map_err(rt)?;
        outs.iter()
            .map(|o| {
                let v = o.to_plain_array_view::<f32>().map_err(rt)?;
                Ok((v.shape().to_vec(), v.iter().copied().collect()))
            })
            .collect()
    }
}
