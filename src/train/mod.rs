//! Training engine: an imported ONNX graph as a trainable libtorch network.
//!
//! * [`exec`]: the libtorch engine whose primitives the ops' kernels compose
//!   (each op's kernel lives beside its shape rules in [`crate::ir::ops`]);
//! * [`Net`] ([`net`]): VarStore of named parameters, forward in train/eval
//!   mode, weights written back to the graph;
//! * [`masks`]: per-group channel masks (exact removal semantics), channel
//!   norms and the group-lasso penalty;
//! * [`optim`] (SGD with momentum/Nesterov/weight decay, checkpointable),
//!   [`schedule`] (step/cosine with warm-up), [`trainer`] (epochs, eval,
//!   metrics JSONL, checkpoints), [`checkpoint`], [`recipe`] (YAML).
pub mod bn_init;
pub mod checkpoint;
pub mod cuda;
pub mod exec;
pub mod masks;
pub mod net;
pub mod optim;
pub mod recipe;
pub mod schedule;
pub mod setup;
pub mod trainer;

pub use net::Net;
pub use trainer::{evaluate, EvalResult};

/// Errors of the training engine; each names the node, file or field concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    #[error("node {node} is an unsupported op '{op}' and cannot be executed by the tch engine; supported ops: {}", crate::ir::ops::supported().join(", "))]
    Unsupported { node: String, op: String },
    #[error("node {node}: {msg}")]
    Node { node: String, msg: String },
    /// A node's kernel failed.
    #[error("node {node}: {error}")]
    Op { node: String, error: crate::ir::ops::OpError },
    #[error("{0}")]
    Graph(String),
    /// Shape inference of a graph the training engine changed (BN insertion).
    #[error(transparent)]
    Ir(#[from] crate::ir::IrError),
    /// A collective of a data-parallel job (MPI or NCCL) failed.
    #[error(transparent)]
    Dist(#[from] crate::dist::DistError),
    #[error("mask: {0}")]
    Mask(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("{path}: {msg}")]
    File { path: String, msg: String },
    #[error("libtorch: {0}")]
    Torch(tch::TchError),
    /// The training loss became non-finite; `field` is the recipe's learning rate.
    #[error("the loss became {value} at epoch {epoch} step {step}; lower the learning rate (`{field}` in the recipe)")]
    Diverged { value: f64, epoch: usize, step: usize, field: &'static str },
}

crate::util::from_inner!(tch::TchError => TrainError::Torch);

/// Whether every element of `t` is finite (a NaN or an infinity is not).
pub fn all_finite(t: &tch::Tensor) -> bool {
    tch::no_grad(|| t.isfinite().all().int64_value(&[]) != 0)
}

impl TrainError {
    /// A [`TrainError::Diverged`] names `field` as the learning rate to lower
    /// (fine-tuning: `finetune.lr`); other errors are returned as they are.
    pub fn lr_field(self, field: &'static str) -> TrainError {
        match self {
            TrainError::Diverged { value, epoch, step, .. } => {
                TrainError::Diverged { value, epoch, step, field }
            }
            e => e,
        }
    }

    pub fn node(n: &crate::ir::Node, msg: impl Into<String>) -> TrainError {
        TrainError::Node { node: n.label(), msg: msg.into() }
    }
}
