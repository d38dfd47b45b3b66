//! Graph rewrites after analysis: channel surgery (the pruned model).
//!
//! Lifecycle of a prune:
//! 1. [`rank`] turns a per-layer ratio vector into keep-sets (group channel
//!    indices) from filter norms (L1/L2, deterministic tie-break by index);
//! 2. [`plan::Plan::build`] checks the keep-sets against the analysis and
//!    derives every concrete edit (sliced initializers, depthwise `group`,
//!    Split sizes, Slice bounds, Reshape constants) — a value that can be
//!    printed (`rlal export --dry-run`);
//! 3. [`surgery::apply`] applies the plan to a copy of the graph, refreshes
//!    declared shapes, drops unused initializers and runs [`check::check`]
//!    (structure + shape inference);
//! 4. [`surgery::mask`] builds the reference: the original graph with the
//!    removed channels zeroed, which the pruned graph must compute exactly.
pub mod check;
pub mod plan;
pub mod rank;
pub mod surgery;

pub use plan::{Edit, GroupChange, KeepSets, Plan};
pub use rank::Criterion;

use crate::ir::ops::OpError;
use crate::ir::IrError;

/// Errors of surgery; each names the group, node or value concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RewriteError {
    /// The keep-set of a group cannot be applied.
    #[error("{group}: {msg}")]
    Plan { group: String, msg: String },
    /// A parameter of a pruned group does not have the shape the group implies.
    #[error("initializer '{value}': {msg}")]
    Param { value: String, msg: String },
    /// A node's op cannot fix the node up after a prune ([`crate::ir::ops::OpDef::fixup`]).
    #[error("node {node}: {error}")]
    Op { node: String, error: OpError },
    /// An edit of the plan does not apply; `edit` is its label, which names the
    /// initializer or the node (and its op type) edited.
    #[error("the pruned graph fails its check: {edit}: {error}")]
    Edit { edit: String, error: OpError },
    /// The rewritten graph fails a structural or shape check.
    #[error("the pruned graph fails its check: {0}")]
    Check(String),
    /// The rewritten graph fails to sort or its shape inference (the error names the node).
    #[error("the pruned graph fails its check: {0}")]
    Ir(IrError),
}

crate::util::from_inner!(IrError => RewriteError::Ir);
