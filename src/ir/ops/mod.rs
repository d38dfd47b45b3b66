//! The op registry: one [`OpDef`] per supported ONNX op type.
//!
//! Each op declares
//! * `infer`: output facts (dtype, shape, and the constant value when all
//!   inputs that matter are constant: this is what folds shape subgraphs);
//! * `macs_weight`: which parameter input carries its multiply-accumulates and
//!   the factor (conv: output pixels; Gemm: 1), so that MACs = factor × numel(W)
//!   both before and after channel pruning;
//! * `params`: which inputs are trainable parameters;
//! * `channels`: how channel axes (axis 1) of inputs and outputs are tied and
//!   which axis of each parameter follows which channel axis;
//! * `fixup`: how the node itself changes when channels it touches are pruned
//!   (attributes or constants that encode a channel count, see [`fixup`]);
//! * `zeroable`: whether zeroing a parameter's channel zeroes the output channel
//!   (what masked references and zeroed channels rely on);
//! * `run`: the kernel, written against the primitives of an executing engine
//!   ([`kernel`]: why kernels live here and not in `train`);
//! * the roles other stages ask about instead of matching op-type strings:
//!   `buffers` (state training updates, BN running statistics), `window` (a conv's
//!   kernel, stride and group), `is_batch_norm`/`folds_bn` (BN insertion and
//!   folding), `output_overwritable`/`in_place` (in-place activations),
//!   `forwards_input` (Identity, Dropout: dropped at import), `target_shape`
//!   (Reshape: the import resolves its symbolic target).
//!
//! Adding an op is one file: its `OpDef` with its kernel and tests, registered by
//! the family's `register`. Errors are [`OpError`]s without the node: the code
//! that visits the nodes (inference, the executor, surgery) adds the node and op.
//!
//! Ops not in the table import as opaque barriers: their outputs get the shapes
//! declared in the file (if any) and every channel group touching them is fixed.
/// An [`OpError::Invalid`] with a formatted message.
macro_rules! bad {
    ($($t:tt)*) => {
        $crate::ir::ops::OpError::Invalid(format!($($t)*))
    };
}

pub mod conv;
mod elementwise;
pub mod fixup;
pub mod gemm;
pub mod kernel;
pub mod layout;
mod norm;
mod pool;
mod shape_ops;

use super::{DType, Dim, Node, Tensor};
pub use fixup::{Fixup, FixupCx, NodeChange};
pub use kernel::{Engine, RunCx, H};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// An op's error; the code visiting the node adds the node's name and op type.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum OpError {
    #[error("input {0} is missing")]
    MissingInput(usize),
    #[error("the shape of input {0} is unknown (it comes from an unsupported op)")]
    UnknownInput(usize),
    /// The node breaks the ONNX spec or its inputs disagree (shapes, ranks, attributes).
    #[error("{0}")]
    Invalid(String),
    /// Valid ONNX that rlal does not support.
    #[error("{0}")]
    Unsupported(String),
    /// The executing engine failed.
    #[error("{0}")]
    Engine(String),
    /// An attribute of the wrong kind.
    #[error(transparent)]
    Attr(#[from] super::AttrError),
}

impl From<String> for OpError {
    fn from(m: String) -> OpError {
        OpError::Invalid(m)
    }
}

impl From<&str> for OpError {
    fn from(m: &str) -> OpError {
        OpError::Invalid(m.to_string())
    }
}

/// A conv's window, for the agent's layer features and the search space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Largest kernel size (None when the weight's shape is unknown).
    pub kernel: Option<usize>,
    /// Largest stride.
    pub stride: usize,
    pub group: usize,
}

/// What shape inference knows about a value.
#[derive(Clone, Debug, PartialEq)]
pub struct Fact {
    pub dtype: DType,
    pub shape: Vec<Dim>,
    /// The value, when it is a compile-time constant small enough to evaluate
    /// with (large float initializers only set [`Fact::constant`]).
    pub konst: Option<Arc<Tensor>>,
    /// The value is a compile-time constant (an initializer or folded value).
    pub constant: bool,
    /// For small integer vectors computed from shapes: the elements, some symbolic.
    pub sym: Option<Vec<Dim>>,
}

impl Fact {
    pub fn new(dtype: DType, shape: Vec<Dim>) -> Fact {
        Fact { dtype, shape, konst: None, constant: false, sym: None }
    }
    pub fn konst(t: Tensor) -> Fact {
        let shape = t.shape.iter().map(|&d| Dim::Fixed(d)).collect();
        Fact { dtype: t.dtype, shape, konst: Some(Arc::new(t)), constant: true, sym: None }
    }
    /// A constant whose data is not kept in the fact (large weights).
    pub fn opaque_const(dtype: DType, shape: &[usize]) -> Fact {
        Fact { dtype, shape: fixed(shape), konst: None, constant: true, sym: None }
    }
    pub fn rank(&self) -> usize {
        self.shape.len()
    }
    /// Whether the value is a compile-time constant.
    pub fn is_const(&self) -> bool {
        self.constant || self.konst.is_some()
    }
    /// Fixed size of axis `i` (negative counts from the end).
    pub fn dim(&self, i: i64) -> Option<usize> {
        let r = self.rank() as i64;
        let i = if i < 0 { i + r } else { i };
        if i < 0 || i >= r {
            return None;
        }
        self.shape[i as usize].fixed()
    }
    /// Shape with symbolic dims replaced by `batch` (per-sample figures use 1).
    pub fn concrete(&self, batch: usize) -> Vec<usize> {
        self.shape.iter().map(|d| d.fixed().unwrap_or(batch)).collect()
    }
    /// Integer elements, with symbols: from the constant or from `sym`.
    pub fn int_elems(&self) -> Option<Vec<Dim>> {
        if let Some(s) = &self.sym {
            return Some(s.clone());
        }
        let t = self.konst.as_ref()?;
        Some(
            t.to_i64()?
                .into_iter()
                .map(|x| if x >= 0 { Dim::Fixed(x as usize) } else { Dim::Sym(format!("{x}")) })
                .collect(),
        )
    }
}

/// Inputs of a node for shape inference.
pub struct InferCx<'a> {
    pub node: &'a Node,
    pub inputs: Vec<Option<&'a Fact>>,
    pub opset: i64,
}

impl<'a> InferCx<'a> {
    /// Fact of input `i`; error if absent or unknown.
    pub fn input(&self, i: usize) -> Result<&'a Fact, OpError> {
        match self.inputs.get(i) {
            Some(Some(f)) => Ok(f),
            Some(None) if i < self.node.inputs.len() && self.node.inputs[i].is_some() => {
                Err(OpError::UnknownInput(i))
            }
            _ => Err(OpError::MissingInput(i)),
        }
    }
    pub fn opt(&self, i: usize) -> Option<&'a Fact> {
        self.inputs.get(i).copied().flatten()
    }
    /// Constant value of input `i`, if known.
    pub fn konst(&self, i: usize) -> Option<&'a Tensor> {
        self.opt(i).and_then(|f| f.konst.as_deref())
    }
    /// Constant integer vector of input `i`, or an error saying it must be one.
    pub fn const_ints(&self, i: usize, what: &str) -> Result<Vec<i64>, OpError> {
        let t = self.konst(i).ok_or_else(|| format!("{what} (input {i}) must be a constant that rlal can fold; it is computed at run time"))?;
        t.to_i64()
            .ok_or_else(|| bad!("{what} (input {i}) must be an integer tensor, found {}", t.dtype))
    }
    /// Input `i`'s rank-`want` fact with fixed non-batch dims.
    pub fn ranked(&self, i: usize, want: usize) -> Result<&'a Fact, OpError> {
        let f = self.input(i)?;
        if f.rank() != want {
            return Err(bad!(
                "input {i} must have rank {want}, found shape {}",
                super::fmt_shape(&f.shape)
            ));
        }
        Ok(f)
    }
}

/// Inputs of a node for cost and channel queries (after inference).
pub struct NodeCx<'a> {
    pub node: &'a Node,
    pub inputs: Vec<Option<&'a Fact>>,
    pub outputs: Vec<Option<&'a Fact>>,
}

impl<'a> NodeCx<'a> {
    /// `node` with the facts of its inputs and outputs.
    pub fn new(node: &'a Node, facts: &'a super::infer::Facts) -> NodeCx<'a> {
        let fact = |v: &Option<usize>| v.and_then(|v| facts[v].as_ref());
        NodeCx {
            node,
            inputs: node.inputs.iter().map(fact).collect(),
            outputs: node.outputs.iter().map(fact).collect(),
        }
    }
    pub fn input(&self, i: usize) -> Option<&'a Fact> {
        self.inputs.get(i).copied().flatten()
    }
    pub fn output(&self, i: usize) -> Option<&'a Fact> {
        self.outputs.get(i).copied().flatten()
    }
    /// Whether input `i` is a constant (an initializer or folded value).
    pub fn is_const(&self, i: usize) -> bool {
        self.input(i).is_some_and(|f| f.is_const())
    }
    /// Channel count (axis 1) of input `i`, for rank >= 2 values.
    pub fn in_channels(&self, i: usize) -> Option<usize> {
        self.input(i).filter(|f| f.rank() >= 2).and_then(|f| f.dim(1))
    }
    pub fn out_channels(&self, i: usize) -> Option<usize> {
        self.output(i).filter(|f| f.rank() >= 2).and_then(|f| f.dim(1))
    }
}

/// The part a value slot plays for channel pruning.
#[derive(Clone, Debug, PartialEq)]
pub enum Role {
    /// Channels pass through, tied by `links` (activations, BN, pools, ...).
    Pass,
    /// The op creates these channels from weights (conv/Gemm output).
    Producer,
    /// The op reduces over these channels with weights (conv/Gemm input).
    Consumer,
    /// Not a channel-carrying operand (weights, shapes, scalars).
    Ignore,
    /// Pruning may not cross this slot.
    Fixed(String),
}

/// Where an axis of a parameter tensor takes its indices from.
#[derive(Clone, Debug, PartialEq)]
pub enum Tie {
    Input(usize),
    Output(usize),
}

/// Axis `axis` of the tensor in input slot `slot` follows the channel axis of `tie`
/// index for index (so pruning those channels slices this axis).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamTie {
    pub slot: usize,
    pub axis: usize,
    pub tie: Tie,
}

/// How an op relates channel axes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ChannelSpec {
    pub inputs: Vec<Role>,
    pub outputs: Vec<Role>,
    /// (input slot, input channel, output slot, output channel) identities.
    pub links: Vec<(usize, usize, usize, usize)>,
    pub params: Vec<ParamTie>,
}

impl ChannelSpec {
    /// Every slot fixed with the same reason.
    pub fn fixed(n_in: usize, n_out: usize, why: &str) -> ChannelSpec {
        ChannelSpec {
            inputs: vec![Role::Fixed(why.to_string()); n_in],
            outputs: vec![Role::Fixed(why.to_string()); n_out],
            ..Default::default()
        }
    }
    /// Channel c of every input in `slots` is channel c of output 0.
    pub fn per_channel(cx: &NodeCx, slots: &[usize]) -> ChannelSpec {
        let n_in = cx.node.inputs.len();
        let mut s = ChannelSpec {
            inputs: vec![Role::Ignore; n_in],
            outputs: vec![Role::Pass; cx.node.outputs.len()],
            ..Default::default()
        };
        let Some(c) = cx.out_channels(0) else {
            return ChannelSpec {
                inputs: vec![Role::Ignore; n_in],
                outputs: vec![Role::Ignore; cx.node.outputs.len()],
                ..Default::default()
            };
        };
        for &i in slots {
            if cx.in_channels(i) == Some(c) {
                s.inputs[i] = Role::Pass;
                s.links.extend((0..c).map(|k| (i, k, 0, k)));
            }
        }
        s
    }
}

/// One supported op.
pub trait OpDef: Sync + Send {
    /// Output facts; errors are messages (the caller adds the node's name).
    fn infer(&self, cx: &InferCx) -> Result<Vec<Fact>, OpError>;
    /// (parameter input slot, factor): MACs per sample = factor × numel(input slot).
    fn macs_weight(&self, _cx: &NodeCx) -> Option<(usize, u64)> {
        None
    }
    /// Input slots holding trainable parameters (when they are constants).
    fn params(&self, _cx: &NodeCx) -> Vec<usize> {
        Vec::new()
    }
    /// Channel ties; the default makes the op a barrier for pruning.
    fn channels(&self, cx: &NodeCx) -> ChannelSpec {
        ChannelSpec::fixed(
            cx.node.inputs.len(),
            cx.node.outputs.len(),
            &format!("{} does not support channel pruning", cx.node.op_type),
        )
    }
    /// The node's own edit when a value it touches loses channels (none by default:
    /// parameters are sliced through [`ChannelSpec::params`]); errors are messages
    /// (the caller adds the node's name).
    fn fixup(&self, _cx: &FixupCx) -> Result<Option<Fixup>, OpError> {
        Ok(None)
    }
    /// Whether zeroing a channel of the parameter in input `slot` keeps that output
    /// channel zero (false for a divisor: 0 / 0 is NaN). Masking skips such slots.
    fn zeroable(&self, _slot: usize) -> bool {
        true
    }
    /// The kernel: the outputs computed with `e`'s primitives.
    fn run(&self, cx: &RunCx, e: &mut dyn Engine) -> Result<Vec<H>, OpError>;
    /// Input slots of state that training updates without training it (BN running statistics).
    fn buffers(&self) -> Vec<usize> {
        Vec::new()
    }
    /// The window of a conv (None for other ops).
    fn window(&self, _cx: &NodeCx) -> Option<Window> {
        None
    }
    /// Batch normalisation (what BN insertion adds and folding folds away).
    fn is_batch_norm(&self) -> bool {
        false
    }
    /// The op reads input 0 as `[N, C, spatial...]` (convolution, pooling over a
    /// window or globally, normalisation): the import takes the graph input as NCHW
    /// when such an op reads it before a layout `Transpose` (see `ir::inputs::detect`).
    fn channels_first(&self) -> bool {
        false
    }
    /// A batch normalisation right after this op folds into its weight (axis 0: the
    /// output channels) and bias; BN insertion follows such ops.
    fn folds_bn(&self) -> bool {
        false
    }
    /// The backward pass never reads this op's output, so the next op may overwrite it.
    fn output_overwritable(&self) -> bool {
        false
    }
    /// The kernel of this node can compute in place on input 0 ([`RunCx::inplace`]).
    fn in_place(&self) -> bool {
        false
    }
    /// At inference output 0 is input 0 (Identity, Dropout): the import drops the node
    /// when its other outputs are unused.
    fn forwards_input(&self) -> bool {
        false
    }
    /// The input slot of `node`'s target shape in which a 0 copies the input's dim at
    /// that position (Reshape without `allowzero`): the import writes the symbolic
    /// entries of a computed target as such copies.
    fn target_shape(&self, _node: &Node) -> Option<usize> {
        None
    }
}

/// Whether `node` is a registered op for which `query` holds.
pub fn is(node: &Node, query: impl FnOnce(&dyn OpDef) -> bool) -> bool {
    lookup(node).is_some_and(query)
}

type Registry = HashMap<&'static str, Box<dyn OpDef>>;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| {
        let mut r: Registry = HashMap::new();
        conv::register(&mut r);
        norm::register(&mut r);
        elementwise::register(&mut r);
        pool::register(&mut r);
        gemm::register(&mut r);
        layout::register(&mut r);
        shape_ops::register(&mut r);
        r
    })
}

/// The definition of a node's op (default ONNX domain only).
pub fn lookup(node: &Node) -> Option<&'static dyn OpDef> {
    if !(node.domain.is_empty() || node.domain == "ai.onnx") {
        return None;
    }
    registry().get(node.op_type.as_str()).map(|b| b.as_ref())
}

/// Supported op types, sorted.
pub fn supported() -> Vec<&'static str> {
    let mut v: Vec<&'static str> = registry().keys().copied().collect();
    v.sort_unstable();
    v
}

/// Normalises a possibly negative axis.
pub fn norm_axis(axis: i64, rank: usize) -> Result<usize, OpError> {
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if a < 0 || a >= r {
        return Err(bad!("axis {axis} is out of range for rank {rank}"));
    }
    Ok(a as usize)
}

/// Numpy-style broadcast of shapes.
pub fn broadcast(a: &[Dim], b: &[Dim]) -> Result<Vec<Dim>, OpError> {
    let n = a.len().max(b.len());
    let mut out = Vec::with_capacity(n);
    for i in 0..n {
        let da = if i + a.len() >= n { Some(&a[i + a.len() - n]) } else { None };
        let db = if i + b.len() >= n { Some(&b[i + b.len() - n]) } else { None };
        out.push(match (da, db) {
            (Some(x), None) | (None, Some(x)) => x.clone(),
            (Some(x), Some(y)) if x == y => x.clone(),
            (Some(Dim::Fixed(1)), Some(y)) => y.clone(),
            (Some(x), Some(Dim::Fixed(1))) => x.clone(),
            (Some(Dim::Sym(_)), Some(y)) | (Some(y), Some(Dim::Sym(_))) => y.clone(),
            (Some(_), Some(_)) => {
                return Err(bad!(
                    "shapes {} and {} do not broadcast",
                    super::fmt_shape(a),
                    super::fmt_shape(b)
                ))
            }
            (None, None) => unreachable!(),
        });
    }
    Ok(out)
}

/// Shape of fixed dims.
pub fn fixed(shape: &[usize]) -> Vec<Dim> {
    shape.iter().map(|&d| Dim::Fixed(d)).collect()
}

/// Tiny graphs for the op unit tests: built with the IR API, shapes inferred by
/// [`crate::ir::infer::infer`] (the registry drives it), then one node's op
/// queried for its MACs, parameters and channel ties.
#[cfg(test)]
pub(crate) mod testkit {
    use super::{lookup, ChannelSpec, Fixup, FixupCx, NodeCx, OpError, ParamTie, Role, Tie};
    use crate::ir::infer::{infer, Facts};
    use crate::ir::{Attr, DType, Dim, Graph, Node, Tensor, Value, ValueId};

    /// The symbolic batch dimension `N`.
    pub fn n() -> Dim {
        Dim::Sym("N".into())
    }

    /// `[N, dims..]`: a batch of samples of shape `dims`.
    pub fn batch(dims: &[usize]) -> Vec<Dim> {
        let mut v = vec![n()];
        v.extend(dims.iter().map(|&d| Dim::Fixed(d)));
        v
    }
    pub fn int(v: i64) -> Attr {
        Attr::Int(v)
    }
    pub fn ints(v: &[i64]) -> Attr {
        Attr::Ints(v.to_vec())
    }
    pub fn text(s: &str) -> Attr {
        Attr::Str(s.as_bytes().to_vec())
    }
    /// Links of channel k of input `i` to channel k of output `o`, k < c.
    pub fn same(i: usize, o: usize, c: usize) -> Vec<(usize, usize, usize, usize)> {
        (0..c).map(|k| (i, k, o, k)).collect()
    }
    pub fn tie(slot: usize, axis: usize, tie: Tie) -> ParamTie {
        ParamTie { slot, axis, tie }
    }
    /// Whether every input and output role is `Fixed` with a reason containing `why`.
    pub fn all_fixed(s: &ChannelSpec, why: &str) -> bool {
        let ok = |r: &Role| matches!(r, Role::Fixed(m) if m.contains(why));
        !s.outputs.is_empty() && s.inputs.iter().chain(&s.outputs).all(ok) && s.links.is_empty()
    }

    /// A graph under construction (opset 13 unless told).
    pub struct T {
        pub g: Graph,
    }

    impl T {
        pub fn new() -> T {
            T::opset(13)
        }
        pub fn opset(v: i64) -> T {
            let mut g = Graph::default();
            g.meta.opsets = vec![(String::new(), v)];
            T { g }
        }
        fn value(&mut self, v: Value) -> ValueId {
            let name = format!("v{}", self.g.values.len());
            self.g.add_value(Value { name, ..v })
        }
        /// A float graph input of this shape.
        pub fn input(&mut self, shape: Vec<Dim>) -> ValueId {
            let id = self.value(Value {
                dtype: Some(DType::F32),
                shape: Some(shape),
                ..Default::default()
            });
            self.g.inputs.push(id);
            id
        }
        pub fn init(&mut self, t: Tensor) -> ValueId {
            self.value(Value { dtype: Some(t.dtype), init: Some(t), ..Default::default() })
        }
        /// A float initializer holding 1, 2, 3, ...
        pub fn weight(&mut self, shape: &[usize]) -> ValueId {
            let n = shape.iter().product::<usize>();
            self.init(Tensor::f32(shape.to_vec(), (1..=n).map(|v| v as f32).collect()))
        }
        /// An int64 vector initializer.
        pub fn ints(&mut self, v: &[i64]) -> ValueId {
            self.init(Tensor::i64_vec(v.to_vec()))
        }
        /// Appends a node with `n_out` outputs (named after it) and returns them.
        pub fn node(
            &mut self,
            op: &str,
            inputs: &[Option<ValueId>],
            n_out: usize,
            attrs: &[(&str, Attr)],
        ) -> Vec<ValueId> {
            let outs: Vec<ValueId> = (0..n_out).map(|_| self.value(Value::default())).collect();
            self.g.nodes.push(Node {
                name: format!("n{}", self.g.nodes.len()),
                op_type: op.into(),
                inputs: inputs.to_vec(),
                outputs: outs.iter().map(|&o| Some(o)).collect(),
                attrs: attrs.iter().map(|(k, a)| (k.to_string(), a.clone())).collect(),
                ..Default::default()
            });
            outs
        }
        /// A one-output node on present inputs.
        pub fn op(&mut self, op: &str, inputs: &[ValueId], attrs: &[(&str, Attr)]) -> ValueId {
            let inputs: Vec<Option<ValueId>> = inputs.iter().map(|&i| Some(i)).collect();
            self.node(op, &inputs, 1, attrs)[0]
        }
        pub fn facts(&self) -> Facts {
            infer(&self.g, None).unwrap_or_else(|e| panic!("inference failed: {e}"))
        }
        /// The inferred shape of `v`.
        pub fn shape(&self, v: ValueId) -> Vec<Dim> {
            self.facts()[v].as_ref().expect("a fact").shape.clone()
        }
        /// The inferred constant of `v` as integers.
        pub fn konst(&self, v: ValueId) -> Option<Vec<i64>> {
            self.facts()[v].as_ref()?.konst.as_ref()?.to_i64()
        }
        /// The inference error (which must name the failing node and its op type).
        pub fn err(&self) -> String {
            let e = infer(&self.g, None).expect_err("inference must fail").to_string();
            let last = self.g.nodes.last().expect("a node").label();
            assert!(e.contains(&last), "the error does not name {last}: {e}");
            e
        }
        /// Calls `f` with node `node`'s inputs and outputs as inferred.
        pub fn with_cx<R>(&self, node: usize, f: impl FnOnce(&NodeCx) -> R) -> R {
            let facts = self.facts();
            f(&NodeCx::new(&self.g.nodes[node], &facts))
        }
        /// The fix-up of node `node` when each value of `kept` keeps only those
        /// axis-1 indices.
        pub fn fixup(
            &self,
            node: usize,
            kept: &[(ValueId, Vec<usize>)],
        ) -> Result<Option<Fixup>, OpError> {
            let facts = self.facts();
            let kept = kept.iter().cloned().collect();
            let cx = FixupCx::new(&self.g, &facts, &self.g.nodes[node], &kept);
            lookup(cx.node()).expect("registered").fixup(&cx)
        }
        /// The channel spec of node `node`.
        pub fn spec(&self, node: usize) -> ChannelSpec {
            self.with_cx(node, |cx| lookup(cx.node).expect("registered").channels(cx))
        }
        /// MACs per sample the op declares: factor × elements of its weight slot.
        pub fn macs(&self, node: usize) -> Option<u64> {
            let facts = self.facts();
            let (slot, factor) =
                self.with_cx(node, |cx| lookup(cx.node).expect("registered").macs_weight(cx))?;
            let w = self.g.nodes[node].inputs[slot].expect("weight slot");
            let n: usize = facts[w].as_ref().expect("weight fact").concrete(1).iter().product();
            Some(factor * n as u64)
        }
        pub fn params(&self, node: usize) -> Vec<usize> {
            self.with_cx(node, |cx| lookup(cx.node).expect("registered").params(cx))
        }
    }
}
