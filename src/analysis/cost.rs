//! MACs and parameter counts, for the full model and as exact functions of the
//! number of channels kept per group (the pruning cost model).
//!
//! Convention (the paper's): a conv costs output elements × Cin/groups × kh × kw
//! multiply-accumulates, Gemm/MatMul output elements × K; bias, BN, activations,
//! pooling and adds cost nothing. FLOPs = 2 × MACs. Figures are per sample.
//! Every weighted op declares `MACs = factor × numel(weight)`, so pruning,
//! which slices weight axes, changes MACs exactly as it changes the weight.
use super::channels::Group;
use crate::ir::infer::Facts;
use crate::ir::ops::{self, NodeCx};
use crate::ir::{Graph, ValueId};
use std::collections::BTreeMap;

/// The extent of one axis of a sliceable tensor: `fixed` indices that no prunable
/// group owns, plus `mult` indices per kept channel of each group in `groups`.
///
/// An axis follows several groups when the value it follows is shared by them: a
/// conv whose output a channel Split hands to two groups, a conv that reads the
/// Concat of two groups, or a value with prunable and fixed channels side by side.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AxisMap {
    pub fixed: u64,
    /// (group, indices per group channel).
    pub groups: Vec<(usize, u64)>,
}

impl AxisMap {
    /// Indices kept with `kept[g]` channels of each group.
    pub fn extent(&self, kept: &[usize]) -> u64 {
        self.groups
            .iter()
            .fold(self.fixed, |a, &(g, m)| a.saturating_add((kept[g] as u64).saturating_mul(m)))
    }
    /// Whether the axis shrinks when group `g` is pruned.
    pub fn follows(&self, g: usize) -> bool {
        self.groups.iter().any(|&(x, _)| x == g)
    }
    /// The axis as a sum of parts at `kept`: (owning group, or None for the fixed indices; size).
    fn parts(&self, kept: &[usize]) -> Vec<(Option<usize>, u64)> {
        let own = self.groups.iter().map(|&(g, m)| (Some(g), (kept[g] as u64).saturating_mul(m)));
        (self.fixed > 0).then_some((None, self.fixed)).into_iter().chain(own).collect()
    }
}

/// A sliceable tensor: full shape, and how each axis follows the groups.
#[derive(Clone, Debug)]
pub struct Sliceable {
    pub value: ValueId,
    pub shape: Vec<usize>,
    /// Per axis: its extent as a function of the kept channels (no groups: the full dim).
    pub axes: Vec<AxisMap>,
}

impl Sliceable {
    /// Element count with `kept[g]` channels of each group.
    pub fn numel(&self, kept: &[usize]) -> u64 {
        self.axes.iter().map(|a| a.extent(kept)).fold(1u64, u64::saturating_mul)
    }
    /// Whether some axis shrinks when group `g` is pruned.
    pub fn follows(&self, g: usize) -> bool {
        self.axes.iter().any(|a| a.follows(g))
    }
    /// `numel(kept)` expanded into products of one part per axis: (the distinct
    /// groups of the product, its element count). The counts add up to `numel(kept)`.
    fn monomials(&self, kept: &[usize]) -> Vec<(Vec<usize>, u64)> {
        let mut out = vec![(Vec::new(), 1u64)];
        for a in &self.axes {
            let parts = a.parts(kept);
            out = out
                .iter()
                .flat_map(|(gs, n)| {
                    parts.iter().map(move |&(g, k)| {
                        let mut gs = gs.clone();
                        if let Some(g) = g.filter(|g| !gs.contains(g)) {
                            gs.push(g);
                        }
                        (gs, n.saturating_mul(k))
                    })
                })
                .collect();
        }
        out
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
        // Axis ties of prunable groups' parameters: every group whose channels an axis
        // follows (several when groups share the followed value), with its multiplicity.
        let mut ties: BTreeMap<(ValueId, usize), Vec<(usize, u64)>> = BTreeMap::new();
        for gr in groups.iter().filter(|gr| gr.prunable) {
            for p in &gr.params {
                let mult = gr
                    .members
                    .iter()
                    .find(|(v, _)| *v == p.follows)
                    .and_then(|(_, per)| per.first().map(|i| i.len()))
                    .unwrap_or(1);
                let tied = ties.entry((p.value, p.axis)).or_default();
                if !tied.iter().any(|&(g, _)| g == gr.id) {
                    tied.push((gr.id, mult as u64));
                }
            }
        }
        let full: Vec<usize> = groups.iter().map(|g| g.channels).collect();
        let sliceable = |v: ValueId| -> Option<Sliceable> {
            let t = g.values[v].init.as_ref()?;
            let axes = t
                .shape
                .iter()
                .enumerate()
                .map(|(a, &d)| {
                    let groups = ties.get(&(v, a)).cloned().unwrap_or_default();
                    let owned = groups.iter().fold(0u64, |s, &(g, m)| {
                        s.saturating_add((full[g] as u64).saturating_mul(m))
                    });
                    match (d as u64).checked_sub(owned) {
                        Some(fixed) => AxisMap { fixed, groups },
                        // Ties that claim more indices than the axis has cannot be
                        // sliced consistently: count the axis as fixed.
                        None => AxisMap { fixed: d as u64, groups: vec![] },
                    }
                })
                .collect();
            Some(Sliceable { value: v, shape: t.shape.clone(), axes })
        };
        let mut m = CostModel { full: full.clone(), ..Default::default() };
        let mut seen = std::collections::BTreeSet::new();
        for (nid, node) in g.nodes.iter().enumerate() {
            let Some(op) = ops::lookup(node) else { continue };
            let cx = NodeCx::new(node, facts);
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
    /// A term touching several groups counts for each: use [`CostModel::macs_shares`]
    /// to count every MAC once.
    pub fn group_macs(&self, g: usize) -> u64 {
        self.terms.iter().filter(|t| t.weight.follows(g)).fold(0u64, |a, t| {
            a.saturating_add(t.factor.saturating_mul(t.weight.numel(&self.full)))
        })
    }
    /// The full model's MACs that scale with some group, split among the groups so
    /// that every MAC counts once (entry `g`: group `g`'s share). Each term's weight
    /// extent is expanded into products of one part per axis (an axis after a Concat
    /// of two groups is the sum of their parts); a product that involves k groups
    /// gives 1/k of its MACs to each (a conv between two groups: half each; the
    /// remainder of the integer division to the first). The shares add up to
    /// `full_macs()` minus the MACs that no pruning changes.
    pub fn macs_shares(&self) -> Vec<u64> {
        let mut shares = vec![0u64; self.full.len()];
        for t in &self.terms {
            for (gs, n) in t.weight.monomials(&self.full) {
                let Some(&first) = gs.first() else { continue };
                let macs = t.factor.saturating_mul(n);
                let k = gs.len() as u64;
                for &g in &gs {
                    shares[g] = shares[g].saturating_add(macs / k);
                }
                shares[first] = shares[first].saturating_add(macs % k);
            }
        }
        shares
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

#[cfg(test)]
mod tests {
    use super::super::Analysis;
    use crate::ir::{Attr, DType, Dim, Graph, Node, Tensor, Value};

    /// A graph from `(name, op, inputs, outputs)` rows; `inits` are f32 initializers
    /// (a 1-D shape of 2 named "sizes" is the Split sizes), `x` is [N,1,8,8].
    fn graph(inits: &[(&str, Vec<usize>)], nodes: &[(&str, &str, &[&str], &[&str])]) -> Graph {
        let mut g = Graph::default();
        g.meta.opsets = vec![(String::new(), 13)];
        let x = g.add_value(Value {
            name: "x".into(),
            dtype: Some(DType::F32),
            shape: Some(vec![Dim::Sym("N".into()), Dim::Fixed(1), Dim::Fixed(8), Dim::Fixed(8)]),
            ..Default::default()
        });
        g.inputs.push(x);
        for (name, shape) in inits {
            let init = if *name == "sizes" {
                Tensor::i64_vec(vec![4, 4])
            } else {
                Tensor::f32(shape.clone(), vec![0.1; shape.iter().product()])
            };
            g.add_value(Value { name: name.to_string(), init: Some(init), ..Default::default() });
        }
        let id = |g: &mut Graph, n: &str| match g.values.iter().position(|v| v.name == n) {
            Some(i) => i,
            None => g.add_value(Value { name: n.into(), ..Default::default() }),
        };
        for (name, op, ins, outs) in nodes {
            let inputs = ins.iter().map(|i| Some(id(&mut g, i))).collect();
            let outputs = outs.iter().map(|o| Some(id(&mut g, o))).collect();
            let attrs = match *op {
                "Conv" => vec![("pads".to_string(), Attr::Ints(vec![1, 1, 1, 1]))],
                "Split" | "Concat" => vec![("axis".to_string(), Attr::Int(1))],
                _ => vec![],
            };
            let op_type = op.to_string();
            g.nodes.push(Node {
                name: name.to_string(),
                op_type,
                inputs,
                outputs,
                attrs,
                ..Default::default()
            });
        }
        let y = id(&mut g, "y");
        g.outputs.push(y);
        g
    }

    fn analyse(g: &Graph) -> Analysis {
        let facts = crate::ir::infer::infer(g, None).unwrap();
        Analysis::new(g, facts, vec![])
    }

    /// The group whose members include the value named `v`, among prunable groups.
    fn group_of(g: &Graph, a: &Analysis, v: &str) -> usize {
        let id = g.values.iter().position(|x| x.name == v).unwrap();
        let gr = a.groups.iter().filter(|gr| gr.prunable);
        gr.filter(|gr| gr.members.iter().any(|(m, _)| *m == id)).map(|gr| gr.id).next().unwrap()
    }

    #[test]
    fn a_weight_axis_shared_by_two_groups_follows_both() {
        // c1 (8 out) -> Split 4 + 4 -> ca, cb (4 -> 4) -> Relu -> Concat -> c2 (8 -> 2):
        // c1's output axis is the two split groups side by side, c2's input axis the two
        // branch groups.
        let g = graph(
            &[
                ("w1", vec![8, 1, 3, 3]),
                ("wa", vec![4, 4, 3, 3]),
                ("wb", vec![4, 4, 3, 3]),
                ("w2", vec![2, 8, 3, 3]),
                ("sizes", vec![2]),
            ],
            &[
                ("c1", "Conv", &["x", "w1"], &["c1"]),
                ("split", "Split", &["c1", "sizes"], &["sa", "sb"]),
                ("ca", "Conv", &["sa", "wa"], &["ya"]),
                ("cb", "Conv", &["sb", "wb"], &["yb"]),
                ("relu_a", "Relu", &["ya"], &["ra"]),
                ("relu_b", "Relu", &["yb"], &["rb"]),
                ("cat", "Concat", &["ra", "rb"], &["cat"]),
                ("c2", "Conv", &["cat", "w2"], &["y"]),
            ],
        );
        let a = analyse(&g);
        assert_eq!(a.layers.len(), 4);
        let [ga, gb, gya, gyb] = ["sa", "sb", "ya", "yb"].map(|v| group_of(&g, &a, v));
        let c = &a.cost;
        // 64 output pixels per channel: c1 8 x 9, ca and cb 4 x 36 each, c2 2 x 72.
        let (m1, ma, m2) = (64 * 8 * 9, 64 * 4 * 36, 64 * 2 * 72);
        assert_eq!(c.full_macs(), m1 + 2 * ma + m2);
        assert_eq!(c.full_params(), 72 + 2 * 144 + 144);
        // Each group's kept channels scale exactly its part of every shared axis.
        let at = |pairs: &[(usize, usize)]| {
            let mut k = c.full.clone();
            for &(g, n) in pairs {
                k[g] = n;
            }
            (c.macs(&k), c.params(&k))
        };
        // Split half a keeps 1 of 4: c1 loses 3 output channels, ca 3 input channels.
        assert_eq!(at(&[(ga, 1)]).0, c.full_macs() - 3 * (64 * 9 + 64 * 4 * 9));
        assert_eq!(at(&[(ga, 1)]).1, c.full_params() - 3 * (9 + 4 * 9));
        // Branch b keeps 2 of 4: cb loses 2 outputs, c2 2 of its 8 inputs.
        assert_eq!(at(&[(gyb, 2)]).0, c.full_macs() - 2 * (64 * 4 * 9 + 64 * 2 * 9));
        // Both halves and both branches at 2: c1 4 out, ca/cb 2 -> 2, c2 4 -> 2.
        let k = at(&[(ga, 2), (gb, 2), (gya, 2), (gyb, 2)]).0;
        assert_eq!(k, 64 * 4 * 9 + 2 * 64 * 2 * 18 + 64 * 2 * 36);
        // Every MAC once: c1 split by halves, ca/cb half to each side, c2 by branches.
        let s = c.macs_shares();
        assert_eq!([s[ga], s[gb]], [m1 / 2 + ma / 2; 2]);
        assert_eq!([s[gya], s[gyb]], [ma / 2 + m2 / 2; 2]);
        assert_eq!(s.iter().sum::<u64>(), c.full_macs());
        // The layers that scale a term: c1 for both halves, c2 for both branches.
        for gr in [ga, gb] {
            assert_eq!(c.group_macs(gr), m1 + ma);
        }
    }

    #[test]
    fn fixed_channels_beside_a_group_stay_counted() {
        // Concat of the graph input (1 fixed channel) and c1's 8 prunable channels: c2's
        // input axis is 1 fixed + 8 following c1's group.
        let g = graph(
            &[("w1", vec![8, 1, 3, 3]), ("w2", vec![2, 9, 3, 3])],
            &[
                ("c1", "Conv", &["x", "w1"], &["c1"]),
                ("relu", "Relu", &["c1"], &["r"]),
                ("cat", "Concat", &["x", "r"], &["cat"]),
                ("c2", "Conv", &["cat", "w2"], &["y"]),
            ],
        );
        let a = analyse(&g);
        assert_eq!(a.layers.len(), 1);
        let c = &a.cost;
        assert_eq!(c.full_macs(), 64 * 8 * 9 + 64 * 2 * 81);
        assert_eq!(c.full_params(), 72 + 162);
        let mut k = c.full.clone();
        k[a.layers[0].group] = 3;
        assert_eq!(c.macs(&k), 64 * 3 * 9 + 64 * 2 * (1 + 3) * 9);
        assert_eq!(c.params(&k), 27 + 2 * 4 * 9);
        // The fixed channel's c2 MACs scale with no group.
        let fixed = 64 * 2 * 9;
        assert_eq!(c.macs_shares()[a.layers[0].group], c.full_macs() - fixed);
    }
}
