//! Channel-dependency analysis: union-find over the channel axes of all values,
//! driven by each op's declared ties, then grouping and prunability.
//!
//! Every channel of every value with a channel axis (axis 1, rank >= 2) is an
//! element; an op's links unite elements. Classes that span the same set of
//! values form a *group*: the unit that channel pruning removes from
//! consistently. A group is prunable when its channels are produced by convs
//! (or Gemm) and reach only consumers that reduce over them (convs, Gemm),
//! through per-channel ops; residual adds, graph inputs/outputs, barriers and
//! channel-mixing reshapes make it fixed, with the reason recorded.
use crate::ir::infer::Facts;
use crate::ir::ops::{self, ChannelSpec, NodeCx, Role, Tie};
use crate::ir::{Graph, NodeId, ValueId};
use std::collections::{BTreeMap, BTreeSet};

/// A channel group.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Group {
    pub id: usize,
    /// Number of channels that move together.
    pub channels: usize,
    pub prunable: bool,
    /// Why the group is fixed (first reason found), when it is.
    pub reason: Option<String>,
    /// Values carrying the group, with each group channel's indices in them
    /// (several per channel after a flatten).
    #[serde(skip)]
    pub members: Vec<(ValueId, Vec<Vec<usize>>)>,
    /// Nodes creating the channels from weights (conv/Gemm outputs).
    pub producers: Vec<NodeId>,
    /// Nodes reducing over the channels with weights (conv/Gemm inputs).
    pub consumers: Vec<NodeId>,
    /// Per-channel nodes the channels pass through (BN, activations, depthwise conv, pools, ...).
    pub passes: Vec<NodeId>,
    /// Parameter tensors sliced when the group is pruned: (initializer, axis, indices per group channel multiplicity).
    #[serde(skip)]
    pub params: Vec<ParamSlice>,
}

/// Axis `axis` of initializer `value` follows the group's channels; each group
/// channel owns `mult` consecutive-or-mapped indices, given by `member` (a member value).
#[derive(Clone, Debug, PartialEq)]
pub struct ParamSlice {
    pub value: ValueId,
    pub axis: usize,
    /// The member value whose channel indices this axis follows.
    pub follows: ValueId,
    pub node: NodeId,
}

struct Uf {
    p: Vec<usize>,
}
impl Uf {
    fn find(&mut self, mut x: usize) -> usize {
        while self.p[x] != x {
            self.p[x] = self.p[self.p[x]];
            x = self.p[x];
        }
        x
    }
    fn union(&mut self, a: usize, b: usize) {
        let (a, b) = (self.find(a), self.find(b));
        if a != b {
            self.p[a.max(b)] = a.min(b);
        }
    }
}

/// The channel spec of every node (barriers for unsupported ops).
pub fn specs(g: &Graph, facts: &Facts) -> Vec<ChannelSpec> {
    g.nodes
        .iter()
        .map(|node| {
            let cx = NodeCx::new(node, facts);
            match ops::lookup(node) {
                Some(op) => op.channels(&cx),
                None => ChannelSpec::fixed(
                    node.inputs.len(),
                    node.outputs.len(),
                    &format!("unsupported op '{}' at node {}", node.op_type, node.label()),
                ),
            }
        })
        .collect()
}

/// Finds all channel groups.
pub fn groups(g: &Graph, facts: &Facts, specs: &[ChannelSpec]) -> Vec<Group> {
    // Element ids.
    let mut base = vec![usize::MAX; g.values.len()];
    let mut width = vec![0usize; g.values.len()];
    let mut n = 0;
    // Channels on axis 1, but on the last axis where the images are still channels-last.
    let last = crate::ir::inputs::channels_last(g);
    for (v, f) in facts.iter().enumerate() {
        if g.values[v].init.is_some() {
            continue;
        }
        let f = f.as_ref().filter(|f| f.rank() >= 2 && !f.is_const());
        if let Some(c) = f.and_then(|f| f.dim(if last.contains(&v) { -1 } else { 1 })) {
            base[v] = n;
            width[v] = c;
            n += c;
        }
    }
    let mut owner = vec![(0usize, 0usize); n];
    for v in 0..g.values.len() {
        for k in 0..width[v] {
            owner[base[v] + k] = (v, k);
        }
    }
    let mut uf = Uf { p: (0..n).collect() };
    for (node, spec) in g.nodes.iter().zip(specs) {
        for &(is, ic, os, oc) in &spec.links {
            let (Some(Some(iv)), Some(Some(ov))) = (node.inputs.get(is), node.outputs.get(os))
            else {
                continue;
            };
            if ic < width[*iv] && oc < width[*ov] {
                uf.union(base[*iv] + ic, base[*ov] + oc);
            }
        }
    }
    // Classes -> signature (set of values) -> group.
    let mut classes: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
    for e in 0..n {
        let r = uf.find(e);
        classes.entry(r).or_default().push(e);
    }
    let mut by_sig: BTreeMap<Vec<ValueId>, Vec<Vec<usize>>> = BTreeMap::new();
    for (_, elems) in classes {
        let sig: BTreeSet<ValueId> = elems.iter().map(|&e| owner[e].0).collect();
        by_sig.entry(sig.into_iter().collect()).or_default().push(elems);
    }
    let producers = g.producers();
    let consumers = g.consumers();
    let outputs: BTreeSet<ValueId> = g.outputs.iter().copied().collect();
    let inputs: BTreeSet<ValueId> = g.inputs.iter().copied().collect();
    let mut out = Vec::new();
    for (sig, mut cls) in by_sig {
        // Order channels by their index in the first value.
        let anchor = sig[0];
        cls.sort_by_key(|c| c.iter().filter(|&&e| owner[e].0 == anchor).map(|&e| owner[e].1).min());
        let members: Vec<(ValueId, Vec<Vec<usize>>)> = sig
            .iter()
            .map(|&v| {
                (
                    v,
                    cls.iter()
                        .map(|c| {
                            c.iter().filter(|&&e| owner[e].0 == v).map(|&e| owner[e].1).collect()
                        })
                        .collect(),
                )
            })
            .collect();
        let mut grp = Group {
            id: out.len(),
            channels: cls.len(),
            prunable: true,
            reason: None,
            members,
            producers: vec![],
            consumers: vec![],
            passes: vec![],
            params: vec![],
        };
        let ctx = Ctx {
            g,
            specs,
            producers: &producers,
            consumers: &consumers,
            inputs: &inputs,
            outputs: &outputs,
        };
        classify(&ctx, &sig, &mut grp);
        attach_params(&ctx, &sig, &mut grp);
        out.push(grp);
    }
    // Graph order: by first producer (then first member value).
    out.sort_by_key(|gr| (gr.producers.first().copied().unwrap_or(usize::MAX), gr.members[0].0));
    for (i, gr) in out.iter_mut().enumerate() {
        gr.id = i;
    }
    out
}

/// What classifying a group reads.
struct Ctx<'a> {
    g: &'a Graph,
    specs: &'a [ChannelSpec],
    producers: &'a [Option<NodeId>],
    consumers: &'a [Vec<(NodeId, usize)>],
    inputs: &'a BTreeSet<ValueId>,
    outputs: &'a BTreeSet<ValueId>,
}

impl Group {
    /// Marks the group fixed; the first reason given stays.
    fn fix(&mut self, why: String) {
        if self.reason.is_none() {
            self.reason = Some(why);
        }
        self.prunable = false;
    }
}

/// The producers, consumers and pass-through nodes of group `grp` (values `sig`) from
/// the op specs, and every reason it cannot be pruned.
fn classify(cx: &Ctx, sig: &[ValueId], grp: &mut Group) {
    for &v in sig {
        let name = &cx.g.values[v].name;
        if cx.inputs.contains(&v) {
            grp.fix(format!("carried by the graph input '{name}'"));
        }
        if cx.outputs.contains(&v) {
            grp.fix(format!("reaches the graph output '{name}'"));
        }
        if let Some(p) = cx.producers[v] {
            let slot = cx.g.nodes[p].outputs.iter().position(|o| *o == Some(v)).unwrap_or(0);
            match &cx.specs[p].outputs.get(slot).cloned().unwrap_or(Role::Fixed("?".into())) {
                Role::Producer => grp.producers.push(p),
                Role::Pass => grp.passes.push(p),
                Role::Fixed(r) => grp.fix(r.clone()),
                _ => grp.fix(format!(
                    "channels of '{name}' are not tracked through {}",
                    cx.g.nodes[p].label()
                )),
            }
        }
        for &(c, slot) in &cx.consumers[v] {
            match &cx.specs[c].inputs.get(slot).cloned().unwrap_or(Role::Fixed("?".into())) {
                Role::Consumer => grp.consumers.push(c),
                Role::Pass => grp.passes.push(c),
                Role::Fixed(r) => grp.fix(r.clone()),
                Role::Ignore => grp.fix(format!(
                    "{} reads '{name}' without a channel mapping",
                    cx.g.nodes[c].label()
                )),
                Role::Producer => grp.fix("inconsistent op spec".into()),
            }
        }
    }
    for list in [&mut grp.producers, &mut grp.consumers, &mut grp.passes] {
        list.sort_unstable();
        list.dedup();
    }
    if grp.producers.is_empty() && grp.prunable {
        grp.fix("its channels are not produced by a conv or Gemm (e.g. created by Pad)".into());
    }
    let mult: BTreeSet<usize> =
        grp.members.iter().flat_map(|(_, per)| per.iter().map(|i| i.len())).collect();
    if grp
        .members
        .iter()
        .any(|(_, per)| per.iter().map(|i| i.len()).collect::<BTreeSet<_>>().len() > 1)
        && grp.prunable
    {
        grp.fix(format!("channels map to unequal feature blocks {mult:?}"));
    }
}

/// The parameters (initializer, axis) that follow group `grp`'s channels.
fn attach_params(cx: &Ctx, sig: &[ValueId], grp: &mut Group) {
    // Parameters that follow these channels.
    let touched: BTreeSet<NodeId> =
        grp.producers.iter().chain(&grp.consumers).chain(&grp.passes).copied().collect();
    for &nid in &touched {
        let node = &cx.g.nodes[nid];
        for t in &cx.specs[nid].params {
            let follows = match t.tie {
                Tie::Input(s) => node.inputs.get(s).copied().flatten(),
                Tie::Output(s) => node.outputs.get(s).copied().flatten(),
            };
            let (Some(follows), Some(Some(value))) = (follows, node.inputs.get(t.slot)) else {
                continue;
            };
            if sig.contains(&follows) && cx.g.values[*value].init.is_some() {
                grp.params.push(ParamSlice { value: *value, axis: t.axis, follows, node: nid });
            } else if sig.contains(&follows) && grp.prunable {
                grp.fix(format!(
                    "{} takes a computed tensor where a per-channel parameter is expected",
                    node.label()
                ));
            }
        }
    }
}
