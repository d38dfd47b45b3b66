//! BatchNormalization rewrites for training and export.
//!
//! * [`insert_bn`]: after every Conv not followed by a BatchNormalization, adds
//!   one with identity parameters (scale 1, bias 0, mean 0, and a variance `v`
//!   with `v + eps == 1` exactly in f32), so the function is unchanged at
//!   insertion; the conv keeps its output name's consumers through the BN.
//! * [`fold_bn`]: folds each BatchNormalization that is the only consumer of a
//!   Conv output into that conv (`W·s`, `(b − mean)·s + β`, `s = γ/√(var+eps)`).
use crate::ir::infer::Facts;
use crate::ir::ops;
use crate::ir::{Attr, Graph, Node, NodeId, Tensor, Value, ValueId};

const EPS: f32 = 1e-5;

/// The f32 variance `v` closest to `1 - eps` with `v + eps == 1` exactly.
fn identity_var(eps: f32) -> f32 {
    let mut v = 1.0f32 - eps;
    for _ in 0..64 {
        let s = v + eps;
        if s == 1.0 {
            return v;
        }
        v = if s > 1.0 { f32::from_bits(v.to_bits() - 1) } else { f32::from_bits(v.to_bits() + 1) };
    }
    v
}

/// The nodes after which a batch normalisation folds ([`ops::OpDef::folds_bn`], the
/// convs) whose output 0 no batch normalisation reads, with that output.
pub fn without_bn(g: &Graph) -> Vec<(NodeId, ValueId)> {
    let consumers = g.consumers();
    let is_bn = |n: NodeId| ops::is(&g.nodes[n], |op| op.is_batch_norm());
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, node)| ops::is(node, |op| op.folds_bn()))
        .filter_map(|(n, node)| Some((n, node.outputs.first().copied().flatten()?)))
        .filter(|&(_, out)| !consumers[out].iter().any(|&(c, s)| s == 0 && is_bn(c)))
        .collect()
}

/// Whether node `n` is a batch normalisation with exactly the parameters [`insert_bn`]
/// gives (scale 1, bias 0, mean 0, variance `v` with `v + eps == 1`): one that no data
/// has touched yet.
pub fn at_identity(g: &Graph, n: NodeId) -> bool {
    let node = &g.nodes[n];
    if !ops::is(node, |op| op.is_batch_norm()) {
        return false;
    }
    let Ok(eps) = node.attr_float("epsilon", 1e-5) else { return false };
    let all = |slot: usize, want: f32| {
        node.inputs
            .get(slot)
            .copied()
            .flatten()
            .and_then(|v| g.values[v].init.as_ref())
            .and_then(|t| t.as_f32())
            .is_some_and(|x| x.iter().all(|&e| e == want))
    };
    all(1, 1.0) && all(2, 0.0) && all(3, 0.0) && all(4, identity_var(eps))
}

/// Adds identity BatchNormalization after convs lacking one; returns how many.
pub fn insert_bn(g: &mut Graph, facts: &Facts) -> usize {
    let mut todo = Vec::new();
    for (n, out) in without_bn(g) {
        let w = g.nodes[n].inputs.get(1).copied().flatten();
        let channels = w.and_then(|w| facts.get(w).and_then(|f| f.as_ref()).and_then(|f| f.dim(0)));
        if let Some(c) = channels {
            todo.push((n, out, c));
        }
    }
    let var = identity_var(EPS);
    for &(n, out, c) in todo.iter().rev() {
        let base = if g.nodes[n].name.is_empty() {
            g.values[out].name.clone()
        } else {
            g.nodes[n].name.clone()
        };
        let add = |g: &mut Graph, suffix: &str, v: f32| {
            let name = g.fresh_name(&format!("{base}.bn.{suffix}"));
            g.add_value(Value {
                name,
                init: Some(Tensor::f32(vec![c], vec![v; c])),
                ..Default::default()
            })
        };
        let scale = add(g, "weight", 1.0);
        let bias = add(g, "bias", 0.0);
        let mean = add(g, "running_mean", 0.0);
        let varv = add(g, "running_var", var);
        let pre_name = g.fresh_name(&format!("{}_prebn", g.values[out].name));
        let pre = g.add_value(Value { name: pre_name, ..Default::default() });
        g.nodes[n].outputs[0] = Some(pre);
        let bn_name = format!("{base}_bn");
        let bn = Node {
            name: bn_name,
            op_type: "BatchNormalization".into(),
            inputs: vec![Some(pre), Some(scale), Some(bias), Some(mean), Some(varv)],
            outputs: vec![Some(out)],
            attrs: vec![
                ("epsilon".into(), Attr::Float(EPS)),
                ("momentum".into(), Attr::Float(0.9)),
            ],
            ..Default::default()
        };
        g.nodes.insert(n + 1, bn);
    }
    todo.len()
}

/// Folds BatchNormalization into the preceding conv; returns how many were folded.
pub fn fold_bn(g: &mut Graph) -> usize {
    let mut folded = 0;
    let mut i = 0;
    while i < g.nodes.len() {
        if try_fold(g, i) {
            folded += 1;
        } else {
            i += 1;
        }
    }
    if folded > 0 {
        g.cleanup();
    }
    folded
}

fn try_fold(g: &mut Graph, bn_idx: usize) -> bool {
    let bn = &g.nodes[bn_idx];
    if !ops::is(bn, |op| op.is_batch_norm())
        || bn.outputs.iter().skip(1).any(|o| o.is_some())
        || bn.inputs.len() < 5
    {
        return false;
    }
    let Some(x) = bn.inputs[0] else { return false };
    let consumers = g.consumers();
    if consumers[x].len() != 1 || g.outputs.contains(&x) {
        return false;
    }
    let producers = g.producers();
    let Some(ci) = producers[x] else { return false };
    let conv = &g.nodes[ci];
    if !ops::is(conv, |op| op.folds_bn()) {
        return false;
    }
    let Some(Some(w)) = conv.inputs.get(1).copied() else { return false };
    let get =
        |k: usize| bn.inputs[k].and_then(|v| g.values[v].init.as_ref()).and_then(|t| t.to_f32());
    let (Some(gamma), Some(beta), Some(mean), Some(var)) = (get(1), get(2), get(3), get(4)) else {
        return false;
    };
    let Some(wt) = g.values[w].init.as_ref().and_then(|t| t.to_f32().map(|d| (t.shape.clone(), d)))
    else {
        return false;
    };
    let eps = bn.attr_float("epsilon", 1e-5).unwrap_or(1e-5);
    let c = wt.0[0];
    if gamma.len() != c || beta.len() != c || mean.len() != c || var.len() != c {
        return false;
    }
    let bias: Vec<f32> = match conv.inputs.get(2).copied().flatten() {
        Some(b) => match g.values[b].init.as_ref().and_then(|t| t.to_f32()) {
            Some(v) => v,
            None => return false,
        },
        None => vec![0.0; c],
    };
    let s: Vec<f32> = (0..c).map(|k| gamma[k] / (var[k] + eps).sqrt()).collect();
    let per = wt.1.len() / c;
    let neww: Vec<f32> = wt.1.iter().enumerate().map(|(j, v)| v * s[j / per]).collect();
    let newb: Vec<f32> = (0..c).map(|k| (bias[k] - mean[k]) * s[k] + beta[k]).collect();
    let out = bn.outputs[0];
    let conv_name = g.nodes[ci].name.clone();
    g.values[w].init = Some(Tensor::f32(wt.0, neww));
    let bname = g.fresh_name(&format!("{conv_name}.bias"));
    let b = g.add_value(Value {
        name: bname,
        init: Some(Tensor::f32(vec![c], newb)),
        ..Default::default()
    });
    let conv = &mut g.nodes[ci];
    if conv.inputs.len() < 3 {
        conv.inputs.resize(3, None);
    }
    conv.inputs[2] = Some(b);
    conv.outputs[0] = out;
    g.nodes.remove(bn_idx);
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn identity_variance_is_exact() {
        let v = super::identity_var(super::EPS);
        assert_eq!(v + super::EPS, 1.0);
        assert_eq!((v + super::EPS).sqrt(), 1.0);
    }
}
