//! MACs and parameter counts, for the full model and as exact functions of the
//! number of channels kept per group (the pruning cost model).
//!
//! Convention (the paper's): a conv costs output elements × Cin/groups × kh × kw
//! multiply-accumulates, Gemm/MatMul output elements × K; bias, BN, activations,
//! pooling and adds cost nothing. FLOPs = 2 × MACs. Figures are per sample.
//! Every weighted op declares `MACs = factor × numel(weight)`, so pruning,
//! which slices weight axes, changes MACs exactly as it changes the weight.
use super::channels::{node_cx, Group};
use crate::ir::infer::Facts;
use crate::ir::ops;
use crate::ir::{Graph, ValueId};
use std::collections::BTreeMap;

/// A sliceable tensor: full shape, and which axes follow which group.
#[derive(Clone, Debug)]
pub struct Sliceable {
    pub value: ValueId,
    pub shape: Vec<usize>,
    /// Per axis: (group, indices per group channel) when the axis follows a group.
    pub axes: Vec<Option<(usize, usize)>>,
}

impl Sliceable {
    /// Element count with `kept[g]` channels of each group.
    pub fn numel(&self, kept: &[usize]) -> u64 {
        self.shape
            .iter()
            .zip(&self.axes)
            .map(|(&d, a)| match a {
                Some((g, m)) => (kept[*g] as u64).saturating_mul(*m as u64),
                None => d as u64,
            })
            .fold(1u64, u64::saturating_mul)
    }
}

/// One weighted op: MACs = factor × numel(weight).
#[derive(Clone, Debug)]
pub struct MacTerm {
    pub node: usize,
    pub factor: u64,
    pub weight: Sliceable,
}

/// Exact MACs/params as functions of kept channels per group.
#[derive(Clone, Debug, Default)]
pub struct CostModel {
    pub terms: Vec<MacTerm>,
    pub params: Vec<Sliceable>,
    /// MACs that do not scale with pruning (MatMul of two computed tensors).
    pub fixed_macs: u64,
    /// Full channel count per group.
    pub full: Vec<usize>,
}

impl CostModel {
    pub fn build(g: &Graph, facts: &Facts, groups: &[Group]) -> CostModel {
        // Axis ties of prunable groups' parameters.
        let mut ties: BTreeMap<(ValueId, usize), (usize, usize)> = BTreeMap::new();
        for gr in groups.iter().filter(|gr| gr.prunable) {
            for p in &gr.params {
                let mult = gr
                    .members
                    .iter()
                    .find(|(v, _)| *v == p.follows)
                    .and_then(|(_, per)| per.first().map(|i| i.len()))
                    .unwrap_or(1);
                ties.insert((p.value, p.axis), (gr.id, mult));
            }
        }
        let sliceable = |v: ValueId| -> Option<Sliceable> {
            let t = g.values[v].init.as_ref()?;
            Some(Sliceable {
                value: v,
                shape: t.shape.clone(),
                axes: (0..t.rank()).map(|a| ties.get(&(v, a)).copied()).collect(),
            })
        };
        let mut m =
            CostModel { full: groups.iter().map(|g| g.channels).collect(), ..Default::default() };
        let mut seen = std::collections::BTreeSet::new();
        for (nid, node) in g.nodes.iter().enumerate() {
            let Some(op) = ops::lookup(node) else { continue };
            let cx = node_cx(node, facts);
            if let Some((slot, factor)) = op.macs_weight(&cx) {
                if let Some(w) = node.inputs.get(slot).copied().flatten().and_then(sliceable) {
                    m.terms.push(MacTerm { node: nid, factor, weight: w });
                }
            }
            m.fixed_macs = m.fixed_macs.saturating_add(ops::gemm::matmul_dynamic_macs(&cx));
            for slot in op.params(&cx) {
                if let Some(v) = node.inputs.get(slot).copied().flatten() {
                    if seen.insert(v) {
                        if let Some(s) = sliceable(v) {
                            m.params.push(s);
                        }
                    }
                }
            }
        }
        m
    }
    pub fn macs(&self, kept: &[usize]) -> u64 {
        // Saturating: absurd (fuzzed) shapes must not overflow.
        self.terms.iter().fold(self.fixed_macs, |a, t| {
            a.saturating_add(t.factor.saturating_mul(t.weight.numel(kept)))
        })
    }
    pub fn params(&self, kept: &[usize]) -> u64 {
        self.params.iter().fold(0u64, |a, p| a.saturating_add(p.numel(kept)))
    }
    pub fn full_macs(&self) -> u64 {
        self.macs(&self.full)
    }
    pub fn full_params(&self) -> u64 {
        self.params(&self.full)
    }
    /// MACs of the terms touching group `g` (those that shrink when it is pruned).
    pub fn group_macs(&self, g: usize) -> u64 {
        self.terms
            .iter()
            .filter(|t| t.weight.axes.iter().any(|a| matches!(a, Some((x, _)) if *x == g)))
            .fold(0u64, |a, t| {
                a.saturating_add(t.factor.saturating_mul(t.weight.numel(&self.full)))
            })
    }
    /// MACs per node (full model).
    pub fn node_macs(&self, n_nodes: usize) -> Vec<u64> {
        let mut v = vec![0; n_nodes];
        for t in &self.terms {
            v[t.node] += t.factor * t.weight.numel(&self.full);
        }
        v
    }
}
