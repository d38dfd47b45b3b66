//! The graph IR and the op registry.
//!
//! * [`Graph`]/[`Node`]/[`Value`]: the graph, kept in topological order.
//! * [`ops`]: one entry per supported ONNX op declaring shape inference
//!   (with constant evaluation for shape arithmetic), MACs, parameter inputs
//!   and how the op ties channel axes (the basis of channel groups, surgery and
//!   the pruning cost model). Adding an op is adding one entry.
//! * [`passes`]: named normalisation rewrites run at import.
//! * [`inputs`]: the image input's layout (NCHW or NHWC), inputs bound to values.
//! * [`bn`]: BatchNormalization passes: identity BN inserted for training, BN
//!   folded into the convs for export.
mod attr;
pub mod bn;
mod graph;
pub mod infer;
pub mod inputs;
pub mod ops;
pub mod passes;
mod tensor;

pub use attr::{Attr, AttrError};
pub use graph::{fmt_shape, Dim, Graph, ModelMeta, Node, NodeId, Value, ValueId};
pub use inputs::{InputLayout, Layout};
pub use tensor::{DType, Data, Tensor};

/// Errors of the IR layer; each names the node or value concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IrError {
    #[error("{0}")]
    Structure(String),
    #[error("node {node}: {msg}")]
    Node { node: String, msg: String },
    /// An op's rule failed on a node (shape inference).
    #[error("node {node}: {error}")]
    Op { node: String, error: ops::OpError },
    #[error("node {node} is an unsupported op '{op}' and {needed}; supported ops: {}", ops::supported().join(", "))]
    Unsupported { node: String, op: String, needed: String },
    /// Values cannot be bound to graph input `input` (`--bind`, [`inputs::bind`]).
    #[error("--bind {input}: {msg}")]
    Bind { input: String, msg: String },
}

impl IrError {
    pub fn node(n: &Node, msg: impl Into<String>) -> IrError {
        IrError::Node { node: n.label(), msg: msg.into() }
    }
}
