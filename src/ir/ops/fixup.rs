//! Surgery fix-ups: how an op whose attributes or constants encode a channel
//! count follows a prune (depthwise Conv `group`, Split sizes, the channel entry
//! of a Slice, a Reshape target).
//!
//! Channel pruning slices parameters through [`super::ChannelSpec::params`];
//! an op that also needs its own node edited declares it with
//! [`super::OpDef::fixup`], which reads a [`FixupCx`] (the node, its facts before
//! pruning, its constant inputs and the kept channels of the values it touches)
//! and returns a [`Fixup`]: the change to the node and the label a plan prints.
use super::NodeCx;
use crate::ir::infer::Facts;
use crate::ir::{Graph, Node, Tensor, ValueId};
use std::collections::BTreeMap;

/// What an op's fix-up reads about a node touching a value that loses channels.
pub struct FixupCx<'a> {
    /// The node, with the facts of its inputs and outputs before pruning.
    pub base: NodeCx<'a>,
    /// The initializer in each input slot (None for computed or absent inputs).
    pub inits: Vec<Option<&'a Tensor>>,
    /// Kept axis-1 indices of each input slot whose value loses channels.
    pub kept_inputs: Vec<Option<&'a [usize]>>,
    /// Kept axis-1 indices of each output slot whose value loses channels.
    pub kept_outputs: Vec<Option<&'a [usize]>>,
}

impl<'a> FixupCx<'a> {
    /// The context of `node` in `g` (facts `facts`) where each value of `kept`
    /// keeps only the listed axis-1 indices.
    pub fn new(
        g: &'a Graph,
        facts: &'a Facts,
        node: &'a Node,
        kept: &'a BTreeMap<ValueId, Vec<usize>>,
    ) -> FixupCx<'a> {
        let kept_of = |slots: &[Option<ValueId>]| {
            slots.iter().map(|v| v.and_then(|v| kept.get(&v)).map(Vec::as_slice)).collect()
        };
        FixupCx {
            base: NodeCx::new(node, facts),
            inits: node.inputs.iter().map(|i| i.and_then(|i| g.values[i].init.as_ref())).collect(),
            kept_inputs: kept_of(&node.inputs),
            kept_outputs: kept_of(&node.outputs),
        }
    }
    pub fn node(&self) -> &'a Node {
        self.base.node
    }
    /// The initializer in input slot `i`.
    pub fn init(&self, i: usize) -> Option<&'a Tensor> {
        self.inits.get(i).copied().flatten()
    }
    /// Channels (axis 1) of input `i` before pruning; 0 when unknown.
    pub fn width_in(&self, i: usize) -> usize {
        self.base.input(i).and_then(|f| f.dim(1)).unwrap_or(0)
    }
    /// Kept axis-1 indices of input `i`: all of them when it loses none.
    pub fn kept_in(&self, i: usize) -> Vec<usize> {
        match self.kept_inputs.get(i).copied().flatten() {
            Some(k) => k.to_vec(),
            None => (0..self.width_in(i)).collect(),
        }
    }
    /// Channels of input `i` after pruning (None for an absent input).
    pub fn count_in(&self, i: usize) -> Option<usize> {
        let present = self.node().inputs.get(i).copied().flatten().is_some();
        let kept = self.kept_inputs.get(i).copied().flatten();
        present.then(|| kept.map_or_else(|| self.width_in(i), <[usize]>::len))
    }
    /// Channels of output `o` after pruning (None for an absent output).
    pub fn count_out(&self, o: usize) -> Option<usize> {
        let present = self.node().outputs.get(o).copied().flatten().is_some();
        let kept = self.kept_outputs.get(o).copied().flatten();
        let width = || self.base.output(o).and_then(|f| f.dim(1)).unwrap_or(0);
        present.then(|| kept.map_or_else(width, <[usize]>::len))
    }
}

/// An op's edit of its own node after a prune, with the label a plan prints.
#[derive(Clone, Debug, PartialEq)]
pub struct Fixup {
    /// e.g. `split sizes of '/Split' (Split): [8, 8] -> [4, 6]`.
    pub label: String,
    pub change: NodeChange,
}

/// The change to a node's attributes or constant inputs.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeChange {
    /// Set a depthwise Conv's `group` attribute.
    Group(i64),
    /// Set a channel-axis Split's sizes.
    SplitSizes(Vec<i64>),
    /// Make a channel-axis Slice pick these (new) input channels, in order.
    SliceChannels(Vec<usize>),
    /// Replace a Reshape's constant target.
    ReshapeTarget(Vec<i64>),
}
